/**
 * What the E2EE human has seen of its rooms: every timeline event in arrival order, read as
 * messages and reactions, with waits that wake on each change (e2ee-human.ts feeds it the SDK's
 * events). Also `until`, the polling wait of the human's start-up and room operations.
 */
import { EventType, type MatrixEvent } from 'matrix-js-sdk';
import type { CryptoApi } from 'matrix-js-sdk/lib/crypto-api/index.js';
import { megolmIdentity } from '../crypto/megolm-index.ts';
import type { Message, Reaction } from './e2ee-human-types.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export class Timeline {
  readonly #userId: string;
  readonly #crypto: () => CryptoApi;
  readonly #stopped: () => boolean;
  readonly #events = new Map<string, MatrixEvent[]>();
  readonly #seen = new Set<MatrixEvent>();
  /** Sending device resolved from the Megolm sender key, by event object. */
  readonly #senderDevice = new WeakMap<MatrixEvent, string>();
  readonly #waiters = new Set<() => void>();

  /** `crypto` and `stopped` are the human's: read at each use, as the client starts and stops. */
  constructor(userId: string, crypto: () => CryptoApi, stopped: () => boolean) {
    this.#userId = userId;
    this.#crypto = crypto;
    this.#stopped = stopped;
  }

  wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  record(event: MatrixEvent, roomId: string | undefined): void {
    if (roomId === undefined || this.#seen.has(event)) return;
    this.#seen.add(event);
    let list = this.#events.get(roomId);
    if (!list) this.#events.set(roomId, (list = []));
    list.push(event);
    this.wake();
  }

  async resolveSenderDevice(event: MatrixEvent): Promise<void> {
    try {
      if (this.#stopped() || !event.isEncrypted() || this.#senderDevice.has(event)) return;
      const sender = event.getSender();
      const senderKey = event.getSenderKey();
      if (sender === undefined || senderKey === null) return;
      const devices = (await this.#crypto().getUserDeviceInfo([sender])).get(sender);
      for (const device of devices?.values() ?? []) {
        if (device.getIdentityKey() === senderKey) {
          this.#senderDevice.set(event, device.deviceId);
          this.wake();
          return;
        }
      }
    } catch {
      // best effort: stopped client, freed machine
    }
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
      if (left <= 0 || this.#stopped()) {
        throw new Error(`${this.#userId} timed out waiting for ${count} ${what()} (found ${now.length})`);
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
}
