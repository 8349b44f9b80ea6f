/**
 * A homeserver in memory for crypto engines (development only: tests and benchmarks). It keeps the
 * device keys and one-time keys devices upload, hands out one-time keys on a claim, and queues
 * to-device messages for the recipient's next batch: enough for real Olm sessions and Megolm room
 * keys between OlmMachines without Synapse. Engines are served either directly (`drain`, for
 * in-memory devices) or through `client()`, the client-server calls the bot's crypto step makes.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { DecryptionSettings, DeviceId, DeviceLists, EncryptionSettings, OlmMachine, RequestType, RoomId, TrustRequirement, UserId } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { MatrixClient } from '../matrix/client.ts';

type Json = Record<string, any>;
interface DeviceKeys {
  user_id: string;
  device_id: string;
}

export class EngineHomeserver {
  readonly #deviceKeys = new Map<string, Record<string, DeviceKeys>>();
  readonly #oneTimeKeys = new Map<string, Array<[string, unknown]>>();
  readonly #inbox = new Map<string, unknown[]>();
  /** Requests answered, by path, for a test that wants to see what a step cost. */
  readonly calls = new Map<string, number>();

  upload(userId: string, deviceId: string, body: Json): Json {
    const keys = body['device_keys'] as DeviceKeys | undefined;
    if (keys) this.#deviceKeys.set(keys.user_id, { ...this.#deviceKeys.get(keys.user_id), [keys.device_id]: keys });
    const otks = this.#oneTimeKeys.get(`${userId}|${deviceId}`) ?? [];
    otks.push(...Object.entries((body['one_time_keys'] ?? {}) as Record<string, unknown>));
    this.#oneTimeKeys.set(`${userId}|${deviceId}`, otks);
    return { one_time_key_counts: { signed_curve25519: otks.length } };
  }

  query(body: Json): Json {
    const users = Object.keys((body['device_keys'] ?? {}) as object);
    return { device_keys: Object.fromEntries(users.map((u) => [u, this.#deviceKeys.get(u) ?? {}])), failures: {} };
  }

  claim(body: Json): Json {
    const claimed: Record<string, Record<string, unknown>> = {};
    for (const [user, devices] of Object.entries(body['one_time_keys'] as Record<string, Record<string, string>>)) {
      for (const device of Object.keys(devices)) {
        const next = this.#oneTimeKeys.get(`${user}|${device}`)?.shift();
        if (next) claimed[user] = { ...claimed[user], [device]: Object.fromEntries([next]) };
      }
    }
    return { one_time_keys: claimed, failures: {} };
  }

  toDevice(sender: string, type: string, body: Json): Json {
    for (const [user, devices] of Object.entries(body['messages'] as Record<string, Record<string, unknown>>)) {
      for (const [device, content] of Object.entries(devices)) {
        const key = `${user}|${device}`;
        this.#inbox.set(key, [...(this.#inbox.get(key) ?? []), { sender, type, content }]);
      }
    }
    return {};
  }

  /** Answers every outgoing request of `machine` until it has none left. */
  async drain(machine: OlmMachine): Promise<void> {
    const user = machine.userId.toString();
    const device = machine.deviceId.toString();
    for (let round = 0; round < 10; round++) {
      const requests = await machine.outgoingRequests();
      if (requests.length === 0) return;
      for (const req of requests) {
        const body = JSON.parse(req.body) as Json;
        let response: Json = {};
        if (req.type === RequestType.KeysUpload) response = this.upload(user, device, body);
        else if (req.type === RequestType.KeysQuery) response = this.query(body);
        else if (req.type === RequestType.KeysClaim) response = this.claim(body);
        else if (req.type === RequestType.ToDevice) response = this.toDevice(user, (req as unknown as { event_type: string }).event_type, body);
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

  /** The to-device messages waiting for a device, taken out, shaped as an appservice transaction carries them. */
  takeToDevice(userId: string, deviceId: string): Json[] {
    const key = `${userId}|${deviceId}`;
    const events = (this.#inbox.get(key) ?? []) as Json[];
    this.#inbox.delete(key);
    return events.map((e) => ({ ...e, to_user_id: userId, to_device_id: deviceId }));
  }

  /** `from` shares its room key with `to` (Olm sessions first) and encrypts `body`: the event as delivered. */
  async send(from: OlmMachine, to: readonly string[], roomId: string, body: string, eventId: string): Promise<Json> {
    const users = (): UserId[] => to.map((u) => new UserId(u));
    await from.updateTrackedUsers(users());
    await this.drain(from);
    const claim = await from.getMissingSessions(users());
    if (claim) await from.markRequestAsSent(claim.id, claim.type, JSON.stringify(this.claim(JSON.parse(claim.body) as Json)));
    for (const req of await from.shareRoomKey(new RoomId(roomId), users(), new EncryptionSettings())) {
      this.toDevice(from.userId.toString(), req.event_type, JSON.parse(req.body) as Json);
      await from.markRequestAsSent(req.id, req.type, '{}');
    }
    const content = JSON.parse(await from.encryptRoomEvent(new RoomId(roomId), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body }))) as unknown;
    return { type: 'm.room.encrypted', event_id: eventId, room_id: roomId, sender: from.userId.toString(), origin_server_ts: Date.now(), content };
  }

  /**
   * The client-server API for the bot's device `userId`/`deviceId`, as its crypto step calls it,
   * with one encrypted room whose members are `members()`.
   */
  client(userId: string, deviceId: string, roomId: string, members: () => readonly string[]): MatrixClient {
    const count = (path: string): void => void this.calls.set(path, (this.calls.get(path) ?? 0) + 1);
    const fake = {
      getState: async (room: string, type: string) => (room === roomId && type === 'm.room.encryption' ? { algorithm: 'm.megolm.v1.aes-sha2' } : undefined),
      request: async (method: string, path: string, options: { body?: Json } = {}) => {
        const body = options.body ?? {};
        const route = path.startsWith('/v3/sendToDevice/') ? '/v3/sendToDevice' : path.endsWith('/members') ? '/v3/rooms/members' : path;
        count(route);
        if (route === '/v3/rooms/members') {
          const member = (user: string): Json => ({ event_id: `$${user}`, room_id: roomId, sender: user, type: 'm.room.member', state_key: user, origin_server_ts: 1, content: { membership: 'join' } });
          return { chunk: [userId, ...members()].map(member) };
        }
        if (route === '/v3/keys/upload') return this.upload(userId, deviceId, body);
        if (route === '/v3/keys/query') return this.query(body);
        if (route === '/v3/keys/claim') return this.claim(body);
        if (route === '/v3/sendToDevice') return this.toDevice(userId, decodeURIComponent(path.split('/')[3] ?? ''), body);
        if (route === '/v3/joined_rooms') return { joined_rooms: [roomId] };
        if (route === '/v3/keys/signatures/upload' || route === '/v3/keys/device_signing/upload') return {};
        throw new Error(`unexpected request ${method} ${path}`);
      },
    };
    return fake as unknown as MatrixClient;
  }
}

/** A device with its store in memory (the engine's own): the other party in a test. */
export async function memoryDevice(userId: string, deviceId: string, homeserver: EngineHomeserver): Promise<OlmMachine> {
  const machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(deviceId));
  await homeserver.drain(machine);
  return machine;
}

/** Decrypts a room event and returns its body (throws when the engine cannot decrypt it). */
export async function decryptBody(machine: OlmMachine, event: Json): Promise<string> {
  const decrypted = await machine.decryptRoomEvent(JSON.stringify(event), new RoomId(String(event['room_id'])), new DecryptionSettings(TrustRequirement.Untrusted));
  return (JSON.parse(decrypted.event) as { content: { body: string } }).content.body;
}

const b64 = (buf: Buffer): string => buf.toString('base64').replace(/=+$/, '');

/** A valid Ed25519 public key (the engine checks that it is a curve point). */
function rawEd25519(): Buffer {
  const spki = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32);
}

/**
 * `count` room keys in the key-export format, as a client exports them: the same records the
 * engine stores for a room key received in a to-device message. Spread over 50 rooms.
 */
export function exportedRoomKeys(count: number, tag: string): string {
  const sender = b64(randomBytes(32));
  const claimed = b64(rawEd25519());
  const keys = [];
  for (let i = 0; i < count; i++) {
    // A Megolm session export: version 1, message index, 128 bytes of ratchet, the session's Ed25519 public key.
    const pub = rawEd25519();
    const sessionKey = Buffer.concat([Buffer.from([1]), Buffer.alloc(4), randomBytes(128), pub]);
    keys.push({
      algorithm: 'm.megolm.v1.aes-sha2',
      room_id: `!room${(i % 50) + 1}-${tag}:example.org`,
      sender_key: sender,
      session_id: b64(pub),
      session_key: b64(sessionKey),
      sender_claimed_keys: { ed25519: claimed },
      forwarding_curve25519_key_chain: [],
    });
  }
  return JSON.stringify(keys);
}
