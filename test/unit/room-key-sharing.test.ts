/**
 * Later messages skip the key-sharing steps when nothing changed (room-key-sharing.ts), and every
 * change that matters brings them back: a new member, a new device, the session's rotation, a
 * restart. Judged by the recipients: every device in the room decrypts what the bot sends.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { OlmCrypto } from '../../src/crypto/olm-crypto.ts';
import { megolmIdentity } from '../../src/crypto/megolm-index.ts';
import { decryptBody, EngineHomeserver, memoryDevice } from '../../src/dev/engine-homeserver.ts';
import { silentLogger } from '../../src/log.ts';
import { emptyBatch } from '../../src/matrix/batch.ts';
import { StateDb } from '../../src/store/state-db.ts';

const BOT = '@bot:example.org';
const ROOM = '!room:example.org';

let root: string;
let n = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'room-key-sharing-'))));
after(() => rmSync(root, { recursive: true, force: true }));

const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };

interface Bot {
  crypto: OlmCrypto;
  machine: OlmMachine;
  /** Times the engine was asked to share the room key. */
  shares: () => number;
  close(): Promise<void>;
}

async function startBot(dir: string, hs: EngineHomeserver, members: () => string[], now: () => number = Date.now): Promise<Bot> {
  const { machine, store, deviceId } = await openDeviceCrypto({ userId: BOT, dir, passphrase: undefined, devices, freshDeviceId: 'BOTDEVICE', logger: silentLogger() });
  let shares = 0;
  const share = machine.shareRoomKey.bind(machine);
  machine.shareRoomKey = (...args) => (shares++, share(...args));
  const state = StateDb.open(dir);
  const crypto = new OlmCrypto({ machine, store, client: hs.client(BOT, deviceId, ROOM, members), userId: BOT, allowedUsers: [], trust: 'any', state, logger: silentLogger(), keyWaitMs: 0, now });
  await crypto.setUp();
  return { crypto, machine, shares: () => shares, close: async () => (await crypto.close(), state.close()) };
}

async function send(bot: Bot, body: string): Promise<Record<string, unknown>> {
  const out = await bot.crypto.prepareSend(ROOM, 'm.room.message', { msgtype: 'm.text', body });
  return { type: 'm.room.encrypted', event_id: `$${body}`, room_id: ROOM, sender: BOT, origin_server_ts: Date.now(), content: out.content };
}

async function reads(hs: EngineHomeserver, device: OlmMachine, event: Record<string, unknown>): Promise<boolean> {
  await hs.deliver(device);
  return decryptBody(device, event).then((body) => body === event['event_id']?.toString().slice(1), () => false);
}

describe('key sharing before an encrypted message', () => {
  test('skipped while nothing changed; a new member and a new device get the key at once', async () => {
    const hs = new EngineHomeserver();
    const alice = await memoryDevice('@alice:example.org', 'ALICE1', hs);
    const members = ['@alice:example.org'];
    const bot = await startBot(join(root, `bot-${++n}`), hs, () => members);
    assert.ok(await reads(hs, alice, await send(bot, 'first')));
    const after = bot.shares();
    for (let i = 0; i < 5; i++) assert.ok(await reads(hs, alice, await send(bot, `later${i}`)));
    assert.equal(bot.shares(), after, 'later messages did not share again');

    // Bob joins (the room's member list changes): he reads the next message.
    const bob = await memoryDevice('@bob:example.org', 'BOB1', hs);
    members.push('@bob:example.org');
    await bot.crypto.process({ ...emptyBatch('join'), roomEvents: [{ event_id: '$join', room_id: ROOM, sender: '@bob:example.org', type: 'm.room.member', state_key: '@bob:example.org', origin_server_ts: 1, content: { membership: 'join' } }] });
    const toBob = await send(bot, 'withbob');
    assert.ok(await reads(hs, bob, toBob), 'the new member decrypts');
    assert.ok(await reads(hs, alice, toBob));

    // Alice signs in on a second device; the homeserver says her device list changed.
    const alice2 = await memoryDevice('@alice:example.org', 'ALICE2', hs);
    await bot.crypto.process({ ...emptyBatch('devices'), deviceLists: { changed: ['@alice:example.org'], left: [] } });
    assert.ok(await reads(hs, alice2, await send(bot, 'newdevice')), 'the new device decrypts');
    const settled = bot.shares();
    assert.ok(await reads(hs, alice2, await send(bot, 'settled')));
    assert.equal(bot.shares(), settled, 'and then skipped again');
    await bot.close();
    for (const m of [alice, alice2, bob]) m.close();
  });

  test('the session rotates after 100 messages without the engine ever encrypting with a due one', async () => {
    const hs = new EngineHomeserver();
    const alice = await memoryDevice('@alice:example.org', 'ALICE1', hs);
    const bot = await startBot(join(root, `bot-${++n}`), hs, () => ['@alice:example.org']);
    const sessions = new Set<string>();
    let last: Record<string, unknown> = {};
    for (let i = 0; i < 130; i++) {
      last = await send(bot, `m${i}`);
      sessions.add(megolmIdentity(last['content'] as Record<string, unknown>)?.sessionId ?? '');
    }
    assert.equal(sessions.size, 2, 'one rotation');
    assert.ok(await reads(hs, alice, last));
    assert.ok(bot.shares() < 10, `shares: ${bot.shares()}`);
    await bot.close();
    alice.close();
  });

  test('a restart shares once, then skips again (the session age survives); an old session is shared again', async () => {
    const hs = new EngineHomeserver();
    const alice = await memoryDevice('@alice:example.org', 'ALICE1', hs);
    const dir = join(root, `bot-${++n}`);
    let clock = Date.now();
    const first = await startBot(dir, hs, () => ['@alice:example.org'], () => clock);
    await send(first, 'a');
    await send(first, 'b');
    await first.close();

    const bot = await startBot(dir, hs, () => ['@alice:example.org'], () => clock);
    await send(bot, 'c');
    const shared = bot.shares();
    assert.equal(shared, 1, 'the first message after a restart shares');
    await send(bot, 'd');
    assert.equal(bot.shares(), shared, 'then, with the session age known, later messages skip');
    clock += 6.5 * 86_400_000; // less than a day before the week-long rotation period ends
    assert.ok(await reads(hs, alice, await send(bot, 'e')));
    assert.equal(bot.shares(), shared + 1, 'a session near the end of its period is shared (checked) every time');
    await bot.close();
    alice.close();
  });
});
