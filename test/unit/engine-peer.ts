/**
 * A homeserver in memory for crypto engines that talk to each other: it keeps the device keys and
 * one-time keys they upload, hands out one-time keys on a claim, and queues to-device messages for
 * the recipient's next batch. Enough for real Olm sessions and Megolm room keys between two
 * OlmMachines, without Synapse.
 */
import { DeviceLists, OlmMachine, RequestType, RoomId, UserId, EncryptionSettings, DecryptionSettings, TrustRequirement, DeviceId } from '@matrix-org/matrix-sdk-crypto-wasm';

interface DeviceKeys {
  user_id: string;
  device_id: string;
}

export class EngineHomeserver {
  readonly #deviceKeys = new Map<string, Record<string, DeviceKeys>>();
  readonly #oneTimeKeys = new Map<string, Array<[string, unknown]>>();
  readonly #inbox = new Map<string, unknown[]>();

  /** Answers every outgoing request of `machine` until it has none left. */
  async drain(machine: OlmMachine): Promise<void> {
    const me = `${machine.userId.toString()}|${machine.deviceId.toString()}`;
    for (let round = 0; round < 10; round++) {
      const requests = await machine.outgoingRequests();
      if (requests.length === 0) return;
      for (const req of requests) {
        const body = JSON.parse(req.body) as Record<string, any>;
        let response: unknown = {};
        if (req.type === RequestType.KeysUpload) {
          const keys = body['device_keys'] as DeviceKeys | undefined;
          if (keys) this.#deviceKeys.set(keys.user_id, { ...this.#deviceKeys.get(keys.user_id), [keys.device_id]: keys });
          const otks = this.#oneTimeKeys.get(me) ?? [];
          otks.push(...Object.entries((body['one_time_keys'] ?? {}) as Record<string, unknown>));
          this.#oneTimeKeys.set(me, otks);
          response = { one_time_key_counts: { signed_curve25519: otks.length } };
        } else if (req.type === RequestType.KeysQuery) {
          const users = Object.keys((body['device_keys'] ?? {}) as object);
          response = { device_keys: Object.fromEntries(users.map((u) => [u, this.#deviceKeys.get(u) ?? {}])), failures: {} };
        } else if (req.type === RequestType.KeysClaim) {
          response = this.#claim(body);
        } else if (req.type === RequestType.ToDevice) {
          const type = (req as unknown as { event_type: string }).event_type;
          for (const [user, devices] of Object.entries(body['messages'] as Record<string, Record<string, unknown>>)) {
            for (const [device, content] of Object.entries(devices)) {
              const key = `${user}|${device}`;
              this.#inbox.set(key, [...(this.#inbox.get(key) ?? []), { sender: machine.userId.toString(), type, content }]);
            }
          }
        }
        if (req.id !== undefined) await machine.markRequestAsSent(req.id, req.type, JSON.stringify(response));
      }
    }
    throw new Error('outgoing requests did not settle');
  }

  /** Feeds `machine` the to-device messages waiting for it, as one sync batch. */
  async deliver(machine: OlmMachine): Promise<void> {
    const key = `${machine.userId.toString()}|${machine.deviceId.toString()}`;
    const events = this.#inbox.get(key) ?? [];
    this.#inbox.delete(key);
    const counts = new Map([['signed_curve25519', this.#oneTimeKeys.get(key)?.length ?? 0]]);
    await machine.receiveSyncChanges(JSON.stringify(events), new DeviceLists(), counts, undefined, new DecryptionSettings(TrustRequirement.Untrusted));
    await this.drain(machine);
  }

  /**
   * `from` makes sure every device of `to` in `roomId` has the room key (Olm sessions first), and
   * encrypts `body` into the room. Returns the event as the homeserver would deliver it.
   */
  async send(from: OlmMachine, to: readonly string[], roomId: string, body: string, eventId: string): Promise<Record<string, unknown>> {
    const users = (): UserId[] => to.map((u) => new UserId(u));
    await from.updateTrackedUsers(users());
    await this.drain(from);
    const claim = await from.getMissingSessions(users());
    if (claim) {
      const response = this.#claim(JSON.parse(claim.body) as Record<string, any>);
      await from.markRequestAsSent(claim.id, claim.type, JSON.stringify(response));
    }
    for (const req of await from.shareRoomKey(new RoomId(roomId), users(), new EncryptionSettings())) {
      const body = JSON.parse(req.body) as { messages: Record<string, Record<string, unknown>> };
      for (const [user, devices] of Object.entries(body.messages)) {
        for (const [device, content] of Object.entries(devices)) {
          const key = `${user}|${device}`;
          this.#inbox.set(key, [...(this.#inbox.get(key) ?? []), { sender: from.userId.toString(), type: req.event_type, content }]);
        }
      }
      await from.markRequestAsSent(req.id, req.type, '{}');
    }
    const content = JSON.parse(await from.encryptRoomEvent(new RoomId(roomId), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body }))) as unknown;
    return { type: 'm.room.encrypted', event_id: eventId, room_id: roomId, sender: from.userId.toString(), origin_server_ts: Date.now(), content };
  }

  #claim(body: Record<string, any>): unknown {
    const claimed: Record<string, Record<string, unknown>> = {};
    for (const [user, devices] of Object.entries(body['one_time_keys'] as Record<string, Record<string, string>>)) {
      for (const device of Object.keys(devices)) {
        const next = this.#oneTimeKeys.get(`${user}|${device}`)?.shift();
        if (next) claimed[user] = { ...claimed[user], [device]: Object.fromEntries([next]) };
      }
    }
    return { one_time_keys: claimed, failures: {} };
  }
}

/** A device with its store in memory (the engine's own): the other party in a test. */
export async function memoryDevice(userId: string, deviceId: string, homeserver: EngineHomeserver): Promise<OlmMachine> {
  const machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(deviceId));
  await homeserver.drain(machine);
  return machine;
}

/** Decrypts a room event and returns its body (throws when the engine cannot decrypt it). */
export async function decryptBody(machine: OlmMachine, event: Record<string, unknown>): Promise<string> {
  const decrypted = await machine.decryptRoomEvent(JSON.stringify(event), new RoomId(String(event['room_id'])), new DecryptionSettings(TrustRequirement.Untrusted));
  return (JSON.parse(decrypted.event) as { content: { body: string } }).content.body;
}
