/**
 * A person with a real end-to-end-encrypted Matrix client, for integration tests, the demo and
 * benchmarks: matrix-js-sdk with its Rust crypto (the matrix-sdk-crypto core Element uses), talking
 * to the homeserver over the ordinary client-server API and /sync.
 *
 * - The crypto store is the SDK's **in-memory** Rust store (`initRustCrypto({ useIndexedDB: false })`):
 *   nothing touches IndexedDB, so this client neither needs nor disturbs the IndexedDB globals
 *   the bot installs (src/crypto/crypto-store.ts) when both run in one process. A human does not
 *   survive `stop()`: start a new one (new login → new device) instead.
 * - `startE2eeHuman` resolves once the first sync is done and the device's identity and one-time
 *   keys are on the server, so others can encrypt to it at once; by default it also bootstraps
 *   cross-signing, so its device is signed by its owner's identity.
 * - Room keys are shared with unverified devices (the SDK default, `AllDevicesIsolationMode`), so it
 *   encrypts to the bot without verifying it first. Nothing is auto-joined.
 * - matrix-js-sdk's logging is silenced unless `E2EE_HUMAN_DEBUG=1`.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { randomBytes } from 'node:crypto';
import {
  ClientEvent,
  createClient,
  EventType,
  MatrixError,
  MatrixEvent,
  MatrixEventEvent,
  MsgType,
  Method,
  Preset,
  RoomEvent,
  SyncState,
  type MatrixClient,
  type Room,
} from 'matrix-js-sdk';
import { DeviceId, EncryptionSettings, OlmMachine, RoomId, UserId } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { CryptoApi } from 'matrix-js-sdk/lib/crypto-api/index.js';
import { gateGlobalLogger, makeLogger, unrefSdkTimers } from './sdk-quirks.ts';
import { megolmIdentity } from '../crypto/megolm-index.ts';

export interface E2eeHumanOptions {
  baseUrl: string;
  userId: string;
  accessToken: string;
  deviceId: string;
  /** The account password: interactive auth when cross-signing keys are (re)placed. */
  password: string;
}

export interface StartE2eeHumanOptions extends E2eeHumanOptions {
  /**
   * Default true: make sure this device is signed by the user's cross-signing identity, creating
   * the identity when the user has none. False: leave the device unsigned and any existing
   * identity untouched (a "device not verified by its owner").
   */
  crossSign?: boolean;
  /**
   * With `crossSign`, when the user already has an identity on the server whose private keys this
   * (new) device does not hold: true replaces it with a new identity ("identity changed");
   * false (default) refuses with an error instead of silently resetting it.
   */
  replaceIdentity?: boolean;
}

/** One timeline message as this client sees it. */
export interface Message {
  eventId: string;
  roomId: string;
  sender: string;
  /** Always `m.room.message` (an undecryptable event has the SDK's `m.bad.encrypted` msgtype). */
  type: string;
  body: string | undefined;
  msgtype: string | undefined;
  /** Sent as `m.room.encrypted`. */
  encrypted: boolean;
  /** The SDK could not decrypt it (body is then the SDK's "Unable to decrypt" text). */
  decryptionFailed: boolean;
  /** The SDK's `DecryptionFailureCode` when `decryptionFailed`. */
  decryptionFailureReason: string | undefined;
  /** `m.relates_to` (threads, replies, edits). */
  relatesTo: Record<string, unknown> | undefined;
  /** The body this client shows for it now: the latest edit's (`m.replace`) when it has applied one, else `body`. */
  shown: string | undefined;
  /** The sending device: from the encrypted content, or the device owning the Megolm sender key. */
  senderDeviceId: string | undefined;
  content: Record<string, unknown>;
  ts: number;
  /** For Megolm-encrypted events: the session and message index, read from the ciphertext as sent. */
  megolm: { sessionId: string; index: number } | undefined;
}

/** One reaction (an `m.reaction` annotation) as this client sees it, once decrypted when it was encrypted. */
export interface Reaction {
  eventId: string;
  sender: string;
  /** The event reacted to, and the key (the emoji). */
  target: string | undefined;
  key: string | undefined;
  encrypted: boolean;
}

export interface DeviceTrust {
  /** This client has the device in the owner's device list. */
  known: boolean;
  /** The owner's self-signing key has signed the device ("verified by its owner"). */
  signedByOwner: boolean;
  /** The device is verified through cross-signing (owner's identity verified by us + signed by it). */
  crossSigningVerified: boolean;
  /** The device's Ed25519 fingerprint. */
  ed25519: string | undefined;
}

export interface E2eeHuman {
  readonly userId: string;
  readonly deviceId: string;
  /** Escape hatch: the underlying matrix-js-sdk client. */
  readonly client: MatrixClient;
  /** Creates a private room with `m.room.encryption` (Megolm), inviting `invite`; waits until this client knows it as encrypted. */
  createEncryptedRoom(invite: string[], options?: { name?: string; isDirect?: boolean }): Promise<string>;
  invite(roomId: string, userId: string): Promise<void>;
  /** Joins and waits until the room (with its state) is in this client's store. */
  join(roomId: string): Promise<void>;
  /** Waits until this client sees `userId` with `membership` (default `join`) in the room: send after that so they get the room key. */
  waitForMembership(roomId: string, userId: string, membership?: string, timeoutMs?: number): Promise<void>;
  /** Sends an `m.text` (encrypted by the SDK in an encrypted room); returns the event id. */
  send(roomId: string, body: string): Promise<string>;
  /**
   * The room's messages seen so far, in arrival order: plaintext ones, decrypted ones and ones the
   * SDK failed to decrypt (`decryptionFailed`); an encrypted event appears once its first decryption
   * attempt is over.
   */
  messages(roomId: string): Message[];
  /** Waits until `count` (default 1) messages match; throws, listing what was seen, on timeout (default 20 s). */
  waitForMessages(roomId: string, match: (m: Message) => boolean, options?: { count?: number; timeoutMs?: number }): Promise<Message[]>;
  /**
   * Reacts to `eventId` with `key`; returns the reaction's event id. matrix-js-sdk (Element Web)
   * sends reactions in plaintext even in an encrypted room, by design; `encrypt` sends it
   * encrypted instead, as clients on the Rust SDK (Element X) do.
   */
  react(roomId: string, eventId: string, key: string, options?: { encrypt?: boolean }): Promise<string>;
  /** The room's reactions seen so far, in arrival order (encrypted ones once decrypted). */
  reactions(roomId: string): Reaction[];
  /** Waits until `count` (default 1) reactions match; throws on timeout (default 20 s). */
  waitForReactions(roomId: string, match: (r: Reaction) => boolean, options?: { count?: number; timeoutMs?: number }): Promise<Reaction[]>;
  /** How this client sees another device (keys are downloaded afresh first). */
  deviceTrust(userId: string, deviceId: string): Promise<DeviceTrust>;
  /** Sends an `m.room.encrypted` event of a Megolm session nobody ever received; returns its event id. */
  sendUndecryptable(roomId: string): Promise<string>;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Starts an E2EE human on an existing login (access token + device id). */
export async function startE2eeHuman(o: StartE2eeHumanOptions): Promise<E2eeHuman> {
  gateGlobalLogger();
  const client = createClient({
    baseUrl: o.baseUrl,
    userId: o.userId,
    accessToken: o.accessToken,
    deviceId: o.deviceId,
    logger: makeLogger(`${o.userId}/${o.deviceId}`),
  });
  unrefSdkTimers(client);
  const human = new Person(client, o);
  try {
    await human.start(o.crossSign ?? true, o.replaceIdentity ?? false);
  } catch (err) {
    await human.stop().catch(() => undefined);
    throw err;
  }
  return human;
}

class Person implements E2eeHuman {
  readonly userId: string;
  readonly deviceId: string;
  readonly client: MatrixClient;
  readonly #password: string;
  readonly #events = new Map<string, MatrixEvent[]>();
  readonly #seen = new Set<MatrixEvent>();
  /** Sending device resolved from the Megolm sender key, by event object. */
  readonly #senderDevice = new WeakMap<MatrixEvent, string>();
  readonly #waiters = new Set<() => void>();
  #stopped = false;

  constructor(client: MatrixClient, o: E2eeHumanOptions) {
    this.client = client;
    this.userId = o.userId;
    this.deviceId = o.deviceId;
    this.#password = o.password;
  }

  get #crypto(): CryptoApi {
    const c = this.client.getCrypto();
    if (!c) throw new Error('crypto is not initialised');
    return c;
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  #record(event: MatrixEvent, roomId: string | undefined): void {
    if (roomId === undefined || this.#seen.has(event)) return;
    this.#seen.add(event);
    let list = this.#events.get(roomId);
    if (!list) this.#events.set(roomId, (list = []));
    list.push(event);
    this.#wake();
  }

  async #publishedDeviceKeys(): Promise<unknown> {
    const q = await this.client.http.authedRequest<{ device_keys?: Record<string, Record<string, unknown>> }>(
      Method.Post, '/keys/query', undefined, { device_keys: { [this.userId]: [this.deviceId] } },
    );
    return q.device_keys?.[this.userId]?.[this.deviceId];
  }

  async start(crossSign: boolean, replaceIdentity: boolean): Promise<void> {
    // The store is in memory: a device that already published keys cannot be taken over (its
    // identity keys are gone, and new one-time keys would clash with the old ones on the server).
    if ((await this.#publishedDeviceKeys()) !== undefined) {
      throw new Error(`device ${this.deviceId} of ${this.userId} already has keys on the server: log in again for a new device`);
    }
    // In-memory Rust crypto store: no IndexedDB involved.
    await this.client.initRustCrypto({ useIndexedDB: false });

    this.client.on(RoomEvent.Timeline, (event, room) => this.#record(event, room?.roomId ?? event.getRoomId()));
    this.client.on(MatrixEventEvent.Decrypted, (event) => {
      void this.#resolveSenderDevice(event);
      this.#wake();
    });
    this.client.on(RoomEvent.MyMembership, () => this.#wake());
    this.client.on(ClientEvent.Sync, () => this.#wake());

    const prepared = new Promise<void>((resolve, reject) => {
      const onSync = (state: SyncState, _prev: SyncState | null, data?: { error?: Error }): void => {
        if (state === SyncState.Prepared || state === SyncState.Syncing) {
          this.client.off(ClientEvent.Sync, onSync);
          resolve();
        } else if (state === SyncState.Error && data?.error instanceof MatrixError && data.error.httpStatus === 401) {
          this.client.off(ClientEvent.Sync, onSync);
          reject(new Error(`sync refused the access token: ${data.error.message}`));
        }
      };
      this.client.on(ClientEvent.Sync, onSync);
    });
    await this.client.startClient({ initialSyncLimit: 0, lazyLoadMembers: false });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('first sync did not finish within 30 s')), 30_000);
    });
    try {
      await Promise.race([prepared, timeout]);
    } finally {
      clearTimeout(timer);
    }

    await this.#waitForOwnKeysPublished();
    if (crossSign) await this.#crossSign(replaceIdentity);
  }

  /** Device keys and one-time keys on the server: others can now start Olm sessions with us. */
  async #waitForOwnKeysPublished(): Promise<void> {
    await until('this device\'s keys to be uploaded', 20_000, async () => {
      if ((await this.#publishedDeviceKeys()) === undefined) return undefined;
      const counts = await this.client.http.authedRequest<{ one_time_key_counts?: Record<string, number> }>(Method.Post, '/keys/upload', undefined, {});
      return (counts.one_time_key_counts?.['signed_curve25519'] ?? 0) > 0 ? true : undefined;
    }, 100);
  }

  async #crossSign(replaceIdentity: boolean): Promise<void> {
    const crypto = this.#crypto;
    const local = await crypto.getCrossSigningStatus();
    const haveKeys = local.privateKeysCachedLocally.masterKey && local.privateKeysCachedLocally.selfSigningKey;
    const onServer = await crypto.userHasCrossSigningKeys(this.userId, true);
    if (onServer && !haveKeys && !replaceIdentity) {
      throw new Error(
        `${this.userId} already has a cross-signing identity whose keys this device (${this.deviceId}) lacks; ` +
        'pass crossSign: false for an unsigned device, or replaceIdentity: true to reset the identity',
      );
    }
    await crypto.bootstrapCrossSigning({
      setupNewCrossSigning: onServer && !haveKeys,
      authUploadDeviceSigningKeys: async (makeRequest) => {
        try {
          // Synapse lets a user's *first* cross-signing upload through without interactive auth.
          return await makeRequest(null);
        } catch (err) {
          if (!(err instanceof MatrixError) || err.httpStatus !== 401) throw err;
          const session = typeof err.data['session'] === 'string' ? err.data['session'] : undefined;
          return await makeRequest({
            type: 'm.login.password',
            identifier: { type: 'm.id.user', user: this.userId },
            password: this.#password,
            ...(session === undefined ? {} : { session }),
          });
        }
      },
    });
    // The signature is uploaded; our own view of the device follows after a key query.
    await until(`${this.deviceId} to be signed by ${this.userId}'s identity`, 15_000, async () => {
      await crypto.getUserDeviceInfo([this.userId], true);
      const status = await crypto.getDeviceVerificationStatus(this.userId, this.deviceId);
      return status?.signedByOwner ? true : undefined;
    }, 100);
  }

  async #resolveSenderDevice(event: MatrixEvent): Promise<void> {
    try {
      if (this.#stopped || !event.isEncrypted() || this.#senderDevice.has(event)) return;
      const sender = event.getSender();
      const senderKey = event.getSenderKey();
      if (sender === undefined || senderKey === null) return;
      const devices = (await this.#crypto.getUserDeviceInfo([sender])).get(sender);
      for (const device of devices?.values() ?? []) {
        if (device.getIdentityKey() === senderKey) {
          this.#senderDevice.set(event, device.deviceId);
          this.#wake();
          return;
        }
      }
    } catch {
      // best effort: stopped client, freed machine
    }
  }

  async #waitForRoom(what: string, ready: () => boolean, timeoutMs = 15_000): Promise<void> {
    await until(what, timeoutMs, () => (ready() ? true : undefined));
  }

  async createEncryptedRoom(invite: string[], options: { name?: string; isDirect?: boolean } = {}): Promise<string> {
    const { room_id: roomId } = await this.client.createRoom({
      preset: Preset.PrivateChat,
      invite,
      is_direct: options.isDirect ?? true,
      ...(options.name === undefined ? {} : { name: options.name }),
      initial_state: [{ type: EventType.RoomEncryption, state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }],
    });
    await this.#waitForRoom(`room ${roomId} to arrive encrypted by sync`, () => {
      const room = this.client.getRoom(roomId);
      return room !== null && room.getMyMembership() === 'join' && room.hasEncryptionStateEvent();
    });
    return roomId;
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await this.client.invite(roomId, userId);
  }

  async join(roomId: string): Promise<void> {
    await this.client.joinRoom(roomId);
    await this.#waitForRoom(`room ${roomId} to arrive by sync after joining`, () => this.client.getRoom(roomId)?.getMyMembership() === 'join');
  }

  async waitForMembership(roomId: string, userId: string, membership = 'join', timeoutMs = 15_000): Promise<void> {
    await this.#waitForRoom(`${userId} to be ${membership} in ${roomId}`, () => this.client.getRoom(roomId)?.getMember(userId)?.membership === membership, timeoutMs);
  }

  async send(roomId: string, body: string): Promise<string> {
    // An unknown room would be sent in plaintext by the SDK: make sure sync has delivered it.
    await this.#waitForRoom(`room ${roomId} before sending`, () => this.client.getRoom(roomId)?.getMyMembership() === 'join');
    const result = await this.client.sendMessage(roomId, { msgtype: MsgType.Text, body });
    return result.event_id;
  }

  messages(roomId: string): Message[] {
    const out: Message[] = [];
    const ids = new Set<string>();
    for (const event of this.#events.get(roomId) ?? []) {
      const eventId = event.getId();
      // Local echoes carry a temporary id until the server has the event.
      if (eventId === undefined || !eventId.startsWith('$') || ids.has(eventId)) continue;
      // Encrypted events show up once the first decryption attempt is over (success or failure).
      if (event.getType() !== EventType.RoomMessage) continue;
      const type = event.getType();
      ids.add(eventId);
      // As sent: getContent() would give the latest edit's content once the SDK has applied one.
      const content = event.getOriginalContent();
      const latest = event.getContent();
      const wire = event.getWireContent();
      const relatesTo = (content['m.relates_to'] ?? wire['m.relates_to']) as Record<string, unknown> | undefined;
      const wireDevice = typeof wire['device_id'] === 'string' ? wire['device_id'] : undefined;
      out.push({
        eventId,
        roomId,
        sender: event.getSender() ?? '',
        type,
        body: typeof content['body'] === 'string' ? content['body'] : undefined,
        shown: typeof latest['body'] === 'string' ? latest['body'] : undefined,
        msgtype: typeof content['msgtype'] === 'string' ? content['msgtype'] : undefined,
        encrypted: event.isEncrypted(),
        decryptionFailed: event.isDecryptionFailure(),
        decryptionFailureReason: event.decryptionFailureReason ?? undefined,
        relatesTo,
        senderDeviceId: wireDevice ?? this.#senderDevice.get(event),
        content,
        ts: event.getTs(),
        megolm: event.isEncrypted() ? megolmIdentity(wire) : undefined,
      });
    }
    return out;
  }

  async react(roomId: string, eventId: string, key: string, options: { encrypt?: boolean } = {}): Promise<string> {
    const content = { 'm.relates_to': { rel_type: 'm.annotation', event_id: eventId, key } };
    if (!options.encrypt) return (await this.client.sendEvent(roomId, EventType.Reaction, content as never)).event_id;
    // The SDK's own encryptor (room key shared with the members first), then sent as the ciphertext it made.
    const room = this.client.getRoom(roomId);
    if (!room) throw new Error(`room ${roomId} is unknown to ${this.userId}`);
    const event = new MatrixEvent({ type: EventType.Reaction, room_id: roomId, sender: this.userId, content });
    await (this.#crypto as unknown as { encryptEvent(e: MatrixEvent, r: Room): Promise<void> }).encryptEvent(event, room);
    return (await this.client.sendEvent(roomId, EventType.RoomMessageEncrypted as never, event.getWireContent() as never)).event_id;
  }

  reactions(roomId: string): Reaction[] {
    const out = new Map<string, Reaction>();
    for (const event of this.#events.get(roomId) ?? []) {
      const eventId = event.getId();
      if (eventId === undefined || !eventId.startsWith('$') || event.getType() !== EventType.Reaction) continue;
      // Encrypted reactions keep m.relates_to in the clear (the spec's rule for relations).
      const relates = (event.getContent()['m.relates_to'] ?? event.getWireContent()['m.relates_to']) as { event_id?: unknown; key?: unknown } | undefined;
      const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
      out.set(eventId, { eventId, sender: event.getSender() ?? '', target: str(relates?.event_id), key: str(relates?.key), encrypted: event.isEncrypted() });
    }
    return [...out.values()];
  }

  waitForReactions(roomId: string, match: (r: Reaction) => boolean, options: { count?: number; timeoutMs?: number } = {}): Promise<Reaction[]> {
    return this.#waitFor(() => this.reactions(roomId).filter(match), options, () => {
      const seen = this.reactions(roomId).map((r) => `  ${r.eventId} ${r.sender} ${r.encrypted ? 'encrypted' : 'plaintext'} ${String(r.key)} on ${String(r.target)}`);
      return `matching reaction(s) in ${roomId}; seen:\n${seen.join('\n') || '  (nothing)'}`;
    });
  }

  waitForMessages(roomId: string, match: (m: Message) => boolean, options: { count?: number; timeoutMs?: number } = {}): Promise<Message[]> {
    return this.#waitFor(() => this.messages(roomId).filter(match), options, () => {
      const seen = this.messages(roomId).map((m) =>
        `  ${m.eventId} ${m.sender}${m.senderDeviceId ? `/${m.senderDeviceId}` : ''} ${m.encrypted ? 'encrypted' : 'plaintext'}` +
        `${m.decryptionFailed ? ` UTD(${m.decryptionFailureReason ?? '?'})` : ''} ${m.msgtype ?? m.type}: ${JSON.stringify(m.body)}`);
      return `matching message(s) in ${roomId}; seen:\n${seen.join('\n') || '  (nothing)'}`;
    });
  }

  /** Waits until `found()` has `count` items; on timeout throws with `what()` (what was waited for, and what was seen). */
  async #waitFor<T>(found: () => T[], options: { count?: number; timeoutMs?: number }, what: () => string): Promise<T[]> {
    const count = options.count ?? 1;
    const deadline = Date.now() + (options.timeoutMs ?? 20_000);
    for (;;) {
      const now = found();
      if (now.length >= count) return now;
      const left = deadline - Date.now();
      if (left <= 0 || this.#stopped) {
        throw new Error(`${this.userId} timed out waiting for ${count} ${what()} (found ${now.length})`);
      }
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        // Also re-check periodically: decryption results may land without an event we listen to.
        const timer = setTimeout(wake, Math.min(left, 250));
        this.#waiters.add(wake);
      });
    }
  }

  async deviceTrust(userId: string, deviceId: string): Promise<DeviceTrust> {
    const crypto = this.#crypto;
    const devices = (await crypto.getUserDeviceInfo([userId], true)).get(userId);
    const device = devices?.get(deviceId);
    const status = device ? await crypto.getDeviceVerificationStatus(userId, deviceId) : null;
    return {
      known: device !== undefined,
      signedByOwner: status?.signedByOwner ?? false,
      crossSigningVerified: status?.crossSigningVerified ?? false,
      ed25519: device?.getFingerprint(),
    };
  }

  async sendUndecryptable(roomId: string): Promise<string> {
    // A real Megolm message from a throwaway in-memory device whose room key was shared with nobody:
    // what a recipient sees when the key never reached it (e.g. sent while it was down).
    const ghost = await OlmMachine.initialize(new UserId(this.userId), new DeviceId(`GHOST${randomBytes(4).toString('hex').toUpperCase()}`));
    try {
      await ghost.shareRoomKey(new RoomId(roomId), [], new EncryptionSettings());
      const content = JSON.parse(await ghost.encryptRoomEvent(new RoomId(roomId), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body: 'start' }))) as Record<string, unknown>;
      const txnId = `utd-${Date.now()}-${randomBytes(4).toString('hex')}`;
      // Straight to the API: the SDK's send path would try to encrypt (or refuse) it.
      const path = `/rooms/${encodeURIComponent(roomId)}/send/m.room.encrypted/${encodeURIComponent(txnId)}`;
      const result = await this.client.http.authedRequest<{ event_id: string }>(Method.Put, path, undefined, content);
      return result.event_id;
    } finally {
      ghost.close();
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.client.stopClient(); // also stops (and frees) the Rust crypto machine
    this.client.removeAllListeners();
    this.#wake();
  }
}
