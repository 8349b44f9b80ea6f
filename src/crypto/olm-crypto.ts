import {
  DecryptionErrorCode,
  DecryptionSettings,
  DeviceLists,
  MegolmDecryptionError,
  OtherUserIdentity,
  ProcessedToDeviceEventType,
  RoomId,
  TrustRequirement,
  UserId,
  type OlmMachine,
} from '@matrix-org/matrix-sdk-crypto-wasm';
import type { TrustPolicy } from '../config/config.ts';
import type { Logger } from '../log.ts';
import type { SyncBatch } from '../matrix/batch.ts';
import type { MatrixClient } from '../matrix/client.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { Approval, DeviceApprover, IncomingEvent } from '../matrix/incoming.ts';
import type { StateDb } from '../store/state-db.ts';
import type { CryptoStep, Notice, Outgoing, ProcessedBatch } from './crypto-step.ts';
import type { CryptoStore } from './crypto-store.ts';
import { faultPoint } from '../fault-points.ts';
import { isRoomId } from '../matrix/ids.ts';
import { users } from './engine-user-ids.ts';
import { OutgoingRequests, type UiaAuth } from './outgoing-requests.ts';
import { OwnDevice } from './own-device.ts';
import { RoomKeySharing } from './room-key-sharing.ts';
import { RoomTracker } from './room-tracker.ts';
import { TrustJudge } from './trust.ts';

export interface OlmCryptoOptions {
  readonly machine: OlmMachine;
  readonly store: CryptoStore;
  readonly client: MatrixClient;
  readonly userId: string;
  readonly allowedUsers: readonly string[];
  readonly trust: TrustPolicy;
  readonly state: StateDb;
  readonly logger: Logger;
  /** How long an encrypted event may wait for its room key before the sender is told it failed. */
  readonly keyWaitMs: number;
  /** Answers the homeserver's user-interactive auth when the account's cross-signing keys must be replaced (password mode). */
  readonly uiaAuth?: UiaAuth;
  readonly now?: () => number;
}

type Decrypted = { kind: 'ok'; incoming: IncomingEvent } | { kind: 'missing' | 'failed'; message: string };

// Trust is judged by our policy (trust.ts), not by the engine: the engine's stricter settings
// would refuse every device of a user without cross-signing, which the default policy accepts.
const DECRYPT = (): DecryptionSettings => new DecryptionSettings(TrustRequirement.Untrusted);
/** Longest the engine goes without being fed a batch (it rotates fallback keys and the like on its own clock). */
const ENGINE_FEED_INTERVAL_MS = 60_000;

/**
 * End-to-end encryption with the wasm OlmMachine. Every call comes from the pipeline's single
 * queue, so engine state changes in batch order and outgoing requests are drained from one place.
 */
export class OlmCrypto implements CryptoStep, DeviceApprover {
  readonly #o: OlmCryptoOptions;
  readonly #outgoing: OutgoingRequests;
  readonly #ownDevice: OwnDevice;
  readonly #rooms: RoomTracker;
  readonly #sharing: RoomKeySharing;
  readonly #judge: TrustJudge;
  readonly #allowed: ReadonlySet<string>;
  /** Allowed users whose identity changed, reported by the engine, to be announced. */
  readonly #identityChanged = new Set<string>();
  readonly #pending = new Map<string, { event: RoomEvent; firstSeen: number }>();
  readonly #now: () => number;
  #toDeviceSeen = 0;
  #lastCounts = '';
  #lastFed = Number.NEGATIVE_INFINITY;
  #hintedToDevice = false;

  constructor(options: OlmCryptoOptions) {
    this.#o = options;
    this.#outgoing = new OutgoingRequests(options.machine, options.client, options.logger, () => this.flush(), options.uiaAuth);
    this.#ownDevice = new OwnDevice(options.machine, options.client, options.userId, this.#outgoing, options.logger);
    this.#rooms = new RoomTracker(options.client, options.userId);
    this.#judge = new TrustJudge(options.machine, options.trust, options.state, options.logger, (userId) => this.#learnDevices(userId));
    this.#allowed = new Set(options.allowedUsers);
    this.#now = options.now ?? Date.now;
    this.#sharing = new RoomKeySharing(options.machine, this.#outgoing, options.state, users, this.#now);
    // A device list the engine learnt anew (a key query answered) may add or drop recipients.
    options.machine.registerDevicesUpdatedCallback(async () => this.#sharing.invalidate());
    for (const { eventJson, firstSeen } of options.state.pendingDecryptions()) {
      const event = JSON.parse(eventJson) as RoomEvent;
      this.#pending.set(event.event_id, { event, firstSeen });
    }
    options.machine.roomKeyRequestsEnabled = false; // no other device of ours could answer them
    options.machine.registerUserIdentityUpdatedCallback(async (id: UserId) => {
      const userId = id.toString();
      if (this.#allowed.has(userId)) this.#identityChanged.add(userId);
    });
  }

  /** Uploads keys, and cross-signs the bot's device the first time (so clients show it as verified by its owner). */
  async setUp(): Promise<void> {
    await this.#outgoing.drain();
    await this.#ownDevice.crossSign();
    await this.#outgoing.drain();
    await this.ensurePublished();
    await this.flush();
  }

  /** Makes sure the homeserver still holds this device's keys (own-device.ts); after a re-login too. */
  async ensurePublished(): Promise<void> {
    await this.#ownDevice.ensurePublished();
  }

  async process(batch: SyncBatch): Promise<ProcessedBatch> {
    const { machine } = this.#o;
    await this.#applyOperatorRequests();
    this.#toDeviceSeen += batch.toDevice.length;
    const counts = JSON.stringify([batch.oneTimeKeyCounts ?? null, batch.unusedFallbackKeyTypes ?? null]);
    // Feeding the engine costs ~10 ms even when nothing changed (it reloads its account), and most
    // batches carry only room events: skip it then, but not for long, so time-based key upkeep runs.
    const unchanged = batch.toDevice.length === 0 && batch.deviceLists.changed.length === 0 && batch.deviceLists.left.length === 0 &&
      (counts === this.#lastCounts || batch.oneTimeKeyCounts === undefined) && this.#now() - this.#lastFed < ENGINE_FEED_INTERVAL_MS;
    if (!unchanged) {
      // New devices, new or unwedged Olm sessions: the next message in each room shares its key again.
      if (batch.toDevice.length > 0 || batch.deviceLists.changed.length > 0 || batch.deviceLists.left.length > 0) this.#sharing.invalidate();
      const toDevice = JSON.stringify(batch.toDevice);
      const lists = new DeviceLists(users(batch.deviceLists.changed), users(batch.deviceLists.left));
      const fallback = batch.unusedFallbackKeyTypes ? new Set(batch.unusedFallbackKeyTypes) : undefined;
      const processed = batch.oneTimeKeyCounts
        ? await machine.receiveSyncChanges(toDevice, lists, new Map(Object.entries(batch.oneTimeKeyCounts)), fallback, DECRYPT())
        : // No counts in this batch means "unchanged" (MSC3202 omits them); the plain call would read zero and upload 50 keys.
          await machine.receiveSyncChangesMsc4186(toDevice, lists, new Map(), fallback, DECRYPT());
      this.#lastFed = this.#now();
      if (batch.oneTimeKeyCounts) this.#lastCounts = counts;
      for (const item of processed) {
        const raw = JSON.parse(item.rawEvent) as { type?: string; sender?: string };
        if (item.type === ProcessedToDeviceEventType.UnableToDecrypt) {
          this.#o.logger.warn({ sender: raw.sender, type: raw.type }, 'could not decrypt a to-device message (a room key may be lost)');
        } else {
          this.#o.logger.debug({ sender: raw.sender, type: raw.type, kind: ProcessedToDeviceEventType[item.type] }, 'to-device message');
        }
      }
    }

    const joined: string[] = [];
    for (const event of batch.roomEvents) joined.push(...this.#rooms.observe(event));
    if (joined.length > 0) await machine.updateTrackedUsers(users([...new Set(joined)]));
    if (!unchanged || joined.length > 0) await this.#outgoing.drain();

    // Events still waiting for their keys first (they are older), then this batch's.
    const events: IncomingEvent[] = [];
    const now = this.#now();
    for (const { event, firstSeen } of this.#pending.values()) {
      const result = await this.#decrypt(event);
      if (result.kind === 'missing' && now - firstSeen < this.#o.keyWaitMs) continue;
      this.#pending.delete(event.event_id);
      this.#o.state.removePendingDecryption(event.event_id);
      events.push(this.#settle(result, event));
    }
    for (const event of batch.roomEvents) {
      if (event.type !== 'm.room.encrypted') {
        events.push({ event, encrypted: false });
        continue;
      }
      if (!this.#allowed.has(event.sender)) {
        // Never obeyed whatever it says (the sender is checked against the envelope), so not worth decrypting.
        events.push({ event, encrypted: true });
        continue;
      }
      const result = await this.#decrypt(event);
      if (result.kind === 'missing' && this.#o.keyWaitMs > 0) {
        // The room key is usually a to-device message that Synapse delivers in a later transaction.
        this.#pending.set(event.event_id, { event, firstSeen: now });
        this.#o.state.addPendingDecryption(event.event_id, JSON.stringify(event), now);
        continue;
      }
      events.push(this.#settle(result, event));
    }
    return { events, notices: await this.#identityNotices() };
  }

  /** True while encrypted events wait for their keys: the pipeline then runs even without new batches. */
  hasPending(): boolean {
    return this.#pending.size > 0;
  }

  #settle(result: Decrypted, event: RoomEvent): IncomingEvent {
    if (result.kind === 'ok') return result.incoming;
    if (result.kind === 'missing' && this.#toDeviceSeen === 0 && !this.#hintedToDevice) {
      this.#hintedToDevice = true;
      this.#o.logger.warn('no to-device message has reached the bot since it started, so it cannot get room keys: check experimental_features.msc2409_to_device_messages_enabled and msc3202_transaction_extensions in homeserver.yaml (appservice mode)');
    }
    return { event, encrypted: true, decryptionFailure: { reason: result.kind === 'missing' ? 'missing-keys' : 'other', message: result.message } };
  }

  async #decrypt(event: RoomEvent): Promise<Decrypted> {
    if (!isRoomId(event.room_id)) return { kind: 'failed', message: 'the event has a malformed room id' };
    let decrypted: Awaited<ReturnType<OlmMachine['decryptRoomEvent']>>;
    try {
      decrypted = await this.#o.machine.decryptRoomEvent(JSON.stringify(event), new RoomId(event.room_id), DECRYPT());
    } catch (error) {
      if (!(error instanceof MegolmDecryptionError)) {
        // The engine refused this one event (a malformed field): no redelivery changes that.
        return { kind: 'failed', message: `the crypto engine could not read the event: ${error instanceof Error ? error.message : String(error)}` };
      }
      const missing = error.code === DecryptionErrorCode.MissingRoomKey || error.code === DecryptionErrorCode.UnknownMessageIndex;
      return { kind: missing ? 'missing' : 'failed', message: error.description };
    }
    let plain: { type?: unknown; content?: unknown };
    try {
      plain = JSON.parse(decrypted.event) as typeof plain;
    } catch {
      return { kind: 'failed', message: 'the decrypted payload is not JSON' };
    }
    const sender = decrypted.sender.toString();
    if (sender !== event.sender || typeof plain.type !== 'string' || plain.content === null || typeof plain.content !== 'object' || Array.isArray(plain.content)) {
      return { kind: 'failed', message: 'the decrypted payload does not match its envelope' };
    }
    if (decrypted.senderDevice === undefined && this.#allowed.has(sender)) {
      // The engine names the sending device only if it knows the sender's devices: not yet when the
      // room key came before the bot tracked the sender (a store imported from the old bot).
      await this.#learnDevices(sender);
      decrypted = await this.#o.machine.decryptRoomEvent(JSON.stringify(event), new RoomId(event.room_id), DECRYPT());
    }
    const deviceId = decrypted.senderDevice?.toString();
    // Outside the try: a key query that fails on the way is worth a redelivery, not a "could not decrypt".
    const verdict = this.#allowed.has(sender) ? await this.#judge.judge(sender, deviceId) : { deviceId, trusted: false, why: 'not an allowed user' };
    // The decrypted event keeps the envelope's id, room, sender and time; type and content come from the ciphertext.
    const incoming: IncomingEvent = { event: { ...event, type: plain.type, content: plain.content as Record<string, unknown> }, encrypted: true, senderDevice: verdict };
    return { kind: 'ok', incoming };
  }

  /** A user's `approve` from one of their devices (the bot calls it inside the pipeline's queue, as every engine call). */
  approve(userId: string, byDeviceId: string, deviceId: string): Promise<Approval> {
    return this.#judge.approve(userId, byDeviceId, deviceId);
  }

  /** Asks the homeserver for a user's devices now (a key query), so the engine can name and judge them. */
  async #learnDevices(userId: string): Promise<void> {
    await this.#o.machine.updateTrackedUsers(users([userId]));
    await this.#outgoing.drain();
  }

  async #applyOperatorRequests(): Promise<void> {
    const requests = this.#o.state.takeOperatorRequests();
    if (requests.length > 0) this.#sharing.invalidate(); // trust changes may change who gets room keys
    for (const request of requests) {
      const outcome = await this.#judge.apply(request);
      this.#o.logger.warn({ user_id: request.userId, device_id: request.deviceId }, `operator request: ${outcome}`);
      if (request.kind === 'repin') this.#o.state.set(`identity-announced:${request.userId}`, '');
    }
  }

  /** One notice per room per identity change of an allowed user, while it is unapproved. */
  async #identityNotices(): Promise<Notice[]> {
    const notices: Notice[] = [];
    for (const userId of this.#identityChanged) {
      this.#identityChanged.delete(userId);
      const identity = await this.#o.machine.getIdentity(new UserId(userId));
      const changed = identity instanceof OtherUserIdentity && (identity.identityNeedsUserApproval() || identity.hasVerificationViolation());
      const masterKey = identity instanceof OtherUserIdentity ? identity.masterKey : '';
      identity?.free();
      if (!changed) continue;
      const key = JSON.stringify(masterKey).slice(0, 200);
      if (this.#o.state.get(`identity-announced:${userId}`) === key) continue;
      this.#o.state.set(`identity-announced:${userId}`, key);
      this.#o.logger.warn({ user_id: userId }, "an allowed user's cryptographic identity changed; their commands are refused until an operator re-pins it");
      const text = `⚠️ ${userId}'s cryptographic identity changed (new cross-signing keys). Until an operator re-pins it ("trust repin ${userId}"), I will not obey commands from ${userId}` +
        (this.#o.trust === 'any' ? '; under the "any" policy I still do.' : '.');
      for (const roomId of await this.#rooms.roomsWith(userId)) notices.push({ roomId, text, key: `identity-${userId}-${Buffer.from(key).toString('base64url').slice(0, 16)}` });
    }
    return notices;
  }

  async prepareSend(roomId: string, type: string, content: Record<string, unknown>): Promise<Outgoing> {
    if (!(await this.#rooms.isEncrypted(roomId))) return { type, content };
    // Olm sessions and the room key for every member device, unless nothing changed since the last share.
    const ticket = await this.#sharing.ensureShared(roomId, await this.#rooms.members(roomId));
    const encrypted = JSON.parse(await this.#o.machine.encryptRoomEvent(new RoomId(roomId), type, JSON.stringify(content))) as Record<string, unknown>;
    this.#sharing.encrypted(ticket, encrypted);
    // Encrypting advanced the room's Megolm ratchet. Durable before the ciphertext leaves: a restart
    // from older state would encrypt under the same message index again, which other clients
    // reject as a replay (and two plaintexts under one key index is a cryptographic defect). The
    // store commits inside encryptRoomEvent; the flush waits for any write still in progress.
    await this.flush();
    faultPoint('after-encrypt');
    return { type: 'm.room.encrypted', content: encrypted };
  }

  async flush(): Promise<void> {
    await this.#o.store.flush();
  }

  async close(): Promise<void> {
    await this.flush();
    this.#o.machine.close();
    this.#o.store.close();
  }
}
