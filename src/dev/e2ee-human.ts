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
 * - Its parts: the public types (e2ee-human-types.ts), what it has seen of its rooms and the waits
 *   on it (e2ee-human-timeline.ts), device keys and cross-signing (e2ee-human-devices.ts).
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import {
  ClientEvent,
  createClient,
  EventType,
  MatrixError,
  MatrixEvent,
  MatrixEventEvent,
  MsgType,
  Preset,
  RoomEvent,
  SyncState,
  type MatrixClient,
  type Room,
} from 'matrix-js-sdk';
import type { CryptoApi } from 'matrix-js-sdk/lib/crypto-api/index.js';
import { gateGlobalLogger, makeLogger, unrefSdkTimers } from './sdk-quirks.ts';
import type { DeviceTrust, E2eeHuman, E2eeHumanOptions, Message, Reaction, StartE2eeHumanOptions } from './e2ee-human-types.ts';
import { Timeline, until } from './e2ee-human-timeline.ts';
import { crossSign, deviceTrustOf, publishedDeviceKeys, sendUndecryptableEvent, waitForOwnKeysPublished } from './e2ee-human-devices.ts';

// The public types live in their own module; importers keep importing them from here.
export type * from './e2ee-human-types.ts';

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
  readonly #timeline: Timeline;
  #stopped = false;

  constructor(client: MatrixClient, o: E2eeHumanOptions) {
    this.client = client;
    this.userId = o.userId;
    this.deviceId = o.deviceId;
    this.#password = o.password;
    this.#timeline = new Timeline(o.userId, () => this.#crypto, () => this.#stopped);
  }

  get #crypto(): CryptoApi {
    const c = this.client.getCrypto();
    if (!c) throw new Error('crypto is not initialised');
    return c;
  }

  async start(crossSignDevice: boolean, replaceIdentity: boolean): Promise<void> {
    // The store is in memory: a device that already published keys cannot be taken over (its
    // identity keys are gone, and new one-time keys would clash with the old ones on the server).
    if ((await publishedDeviceKeys(this.client, this.userId, this.deviceId)) !== undefined) {
      throw new Error(`device ${this.deviceId} of ${this.userId} already has keys on the server: log in again for a new device`);
    }
    // In-memory Rust crypto store: no IndexedDB involved.
    await this.client.initRustCrypto({ useIndexedDB: false });

    this.client.on(RoomEvent.Timeline, (event, room) => this.#timeline.record(event, room?.roomId ?? event.getRoomId()));
    this.client.on(MatrixEventEvent.Decrypted, (event) => {
      void this.#timeline.resolveSenderDevice(event);
      this.#timeline.wake();
    });
    this.client.on(RoomEvent.MyMembership, () => this.#timeline.wake());
    this.client.on(ClientEvent.Sync, () => this.#timeline.wake());

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

    await waitForOwnKeysPublished(this.client, this.userId, this.deviceId);
    if (crossSignDevice) await crossSign(this.#crypto, { userId: this.userId, deviceId: this.deviceId, password: this.#password }, replaceIdentity);
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
    return this.#timeline.messages(roomId);
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
    return this.#timeline.reactions(roomId);
  }

  waitForReactions(roomId: string, match: (r: Reaction) => boolean, options: { count?: number; timeoutMs?: number } = {}): Promise<Reaction[]> {
    return this.#timeline.waitForReactions(roomId, match, options);
  }

  waitForMessages(roomId: string, match: (m: Message) => boolean, options: { count?: number; timeoutMs?: number } = {}): Promise<Message[]> {
    return this.#timeline.waitForMessages(roomId, match, options);
  }

  async deviceTrust(userId: string, deviceId: string): Promise<DeviceTrust> {
    return await deviceTrustOf(this.#crypto, userId, deviceId);
  }

  async sendUndecryptable(roomId: string): Promise<string> {
    return await sendUndecryptableEvent(this.client, this.userId, roomId);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.client.stopClient(); // also stops (and frees) the Rust crypto machine
    this.client.removeAllListeners();
    this.#timeline.wake();
  }
}
