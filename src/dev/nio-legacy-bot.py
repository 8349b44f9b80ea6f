"""A stand-in for the old Python bot's crypto side (matrix-nio on libolm), for tests: it makes a
real nio crypto store. It logs in with a password and a given device id, joins the rooms it is
invited to, and syncs until it has decrypted a message with the expected body (so the store holds
that room's Megolm session and the Olm session it came through). Then it exits.

Prints one JSON line per step on stdout: {"joined": room}, {"decrypted": event_id}, {"done": ...}.
Development-only: run by test/integration/legacy-store.test.ts through src/dev/nio-venv.ts.
"""
import argparse
import asyncio
import json
import sys

from nio import AsyncClient, AsyncClientConfig, LoginResponse, MegolmEvent, RoomMessageText, SyncResponse


def say(**fields):
    print(json.dumps(fields), flush=True)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--homeserver", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--device-id", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--expect", required=True, help="body of the message to wait for")
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()

    # The old bot's settings: encryption on, the default pickle key ("DEFAULT_KEY").
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = AsyncClient(a.homeserver, a.user, device_id=a.device_id, store_path=a.store, config=config)
    seen = asyncio.get_running_loop().create_future()

    async def on_text(room, event):
        if event.body == a.expect and not seen.done():
            seen.set_result(event.event_id)

    async def on_undecryptable(room, event):
        say(undecryptable=event.event_id, session_id=event.session_id)

    client.add_event_callback(on_text, RoomMessageText)
    client.add_event_callback(on_undecryptable, MegolmEvent)
    login = await client.login(a.password, device_name="legacy nio bot")
    if not isinstance(login, LoginResponse):
        say(error=f"login failed: {login}")
        return 1
    say(logged_in=login.user_id, device_id=login.device_id)

    async def loop():
        failures = 0
        while not seen.done():
            response = await client.sync(timeout=1000)
            if not isinstance(response, SyncResponse):
                failures += 1
                if failures in (1, 10):
                    say(sync_error=str(response))
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            for room_id in list(client.invited_rooms):
                await client.join(room_id)
                say(joined=room_id)

    try:
        await asyncio.wait_for(asyncio.gather(loop(), seen), a.timeout)
    except asyncio.TimeoutError:
        say(error=f"no message {a.expect!r} decrypted within {a.timeout} s")
        await client.close()
        return 1
    say(decrypted=seen.result())
    keys = client.olm.account.identity_keys
    say(done=True, user_id=client.user_id, device_id=client.device_id, ed25519=keys["ed25519"], curve25519=keys["curve25519"])
    await client.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
