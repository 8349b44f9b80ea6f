import type { Health } from '../health.ts';
import { classify } from '../failure.ts';
import type { Logger } from '../log.ts';
import type { SyncBatch } from '../matrix/batch.ts';
import { MatrixError, type MatrixClient } from '../matrix/client.ts';
import { isRoomEvent, isToDeviceEvent, stringList, withoutOversized, type RoomEvent } from '../matrix/events.ts';
import type { StateDb } from '../store/state-db.ts';
import { StartupError } from '../startup-error.ts';
import { fillGap, markSeen } from './backfill.ts';
import type { PasswordSession } from './password-session.ts';

export interface SyncSourceOptions {
  readonly client: MatrixClient;
  readonly session: PasswordSession;
  readonly state: StateDb;
  readonly health: Health;
  /** Hands a batch to the pipeline; resolves when its effects are durable. */
  readonly process: (batch: SyncBatch) => Promise<void>;
  /** Consecutive failed attempts before giving up (0: never). */
  readonly maxRetries: number;
  readonly longPollMs: number;
  /** The bot's `maxCommandAgeSeconds`: a gap in a timeline is back-filled no further back than this (0: no bound). */
  readonly maxCommandAgeSeconds: number;
  /** After a new login on the same device (the token was rejected): re-check the device's keys. */
  readonly afterRelogin: () => Promise<void>;
  /** Called when the source gives up (retries exhausted, login refused). */
  readonly onFatal: (error: Error) => void;
  readonly logger: Logger;
}

const TOKEN_KEY = 'sync-token';
const MAX_BACKOFF_MS = 60_000;

/** Keeps what the bot needs: room timelines (members lazily), no presence, no account data, no receipts. */
const FILTER = JSON.stringify({
  presence: { types: [] },
  account_data: { types: [] },
  room: {
    timeline: { limit: 50, lazy_load_members: true },
    state: { lazy_load_members: true },
    ephemeral: { types: [] },
    account_data: { types: [] },
  },
});

interface SyncResponse {
  next_batch: string;
  to_device?: { events?: unknown[] };
  device_lists?: { changed?: unknown[]; left?: unknown[] };
  device_one_time_keys_count?: Record<string, unknown>;
  device_unused_fallback_key_types?: unknown[];
  'org.matrix.msc2732.device_unused_fallback_key_types'?: unknown[];
  rooms?: {
    join?: Record<string, { timeline?: { events?: unknown[]; limited?: boolean; prev_batch?: string } }>;
    invite?: Record<string, { invite_state?: { events?: unknown[] } }>;
  };
}

/**
 * The password-mode producer: long-polls /sync and turns each response into the same SyncBatch an
 * appservice transaction becomes. The next `since` token is saved only after the batch's effects
 * are durable, so a crash replays the batch (commands are still claimed once per event id).
 */
export class SyncSource {
  readonly #o: SyncSourceOptions;
  #running = false;
  #loop: Promise<void> | undefined;
  #abort = new AbortController();

  constructor(options: SyncSourceOptions) {
    this.#o = options;
  }

  /**
   * Runs the first sync (skipping the backlog on a first start), then keeps syncing in the
   * background. The first sync never long-polls: the bot is ready once it has caught up.
   */
  async start(): Promise<void> {
    this.#running = true;
    await this.#withRetries(() => this.#once(false));
    this.#loop = (async () => {
      while (this.#running) {
        try {
          await this.#withRetries(() => this.#once(true));
        } catch (error) {
          if (!this.#running) return;
          this.#running = false;
          this.#o.onFatal(error as Error);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#abort.abort();
    await this.#loop;
  }

  async #withRetries(step: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await step();
        this.#o.health.set('homeserver', true, 'syncing');
        return;
      } catch (error) {
        if (!this.#running) return;
        if (error instanceof MatrixError && error.errcode === 'M_UNKNOWN_TOKEN') {
          try {
            await this.#o.session.relogin();
            await this.#o.afterRelogin();
            continue;
          } catch (reloginError) {
            // A refused login is for the operator; an unreachable homeserver or Keycloak is
            // retried as a failed sync (the next sync meets the old token and logs in again).
            if (reloginError instanceof StartupError) throw reloginError;
            error = reloginError;
          }
        }
        if (!classify(error).transient) throw error;
        const max = this.#o.maxRetries;
        this.#o.health.set('homeserver', false, (error as Error).message);
        if (max > 0 && attempt > max) throw new Error(`gave up after ${max} failed attempts: ${(error as Error).message}`, { cause: error });
        const wait = error instanceof MatrixError && error.retryAfterMs ? error.retryAfterMs : Math.min(1000 * 2 ** (attempt - 1), MAX_BACKOFF_MS);
        this.#o.logger.warn({ attempt, max_attempts: max || undefined, retry_in_s: wait / 1000 }, `sync failed (attempt ${attempt}${max ? ` of ${max}` : ''}): ${(error as Error).message}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.#abort.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            resolve();
          }, { once: true });
        });
      }
    }
  }

  async #once(longPoll: boolean): Promise<void> {
    const since = this.#o.state.get(TOKEN_KEY);
    let sync: SyncResponse | undefined = await this.#o.client.request<SyncResponse>('GET', '/v3/sync', {
      query: { filter: FILTER, since, timeout: since && longPoll ? String(this.#o.longPollMs) : '0' },
      timeoutMs: this.#o.longPollMs + 30_000,
      signal: this.#abort.signal,
    });
    if (!this.#running) return;
    const next = sync.next_batch;
    const { batch, marks } = await this.#batch(sync, since);
    // The response may hold large messages the batch left out; a local would keep it alive across the await.
    sync = undefined;
    if (!this.#running) return;
    await this.#o.process(batch);
    // After the batch is durable, as the token: a crash before this replays the batch and its gaps.
    markSeen(this.#o.state, marks);
    this.#o.state.set(TOKEN_KEY, next);
  }

  async #batch(sync: SyncResponse, since: string | undefined): Promise<{ batch: SyncBatch; marks: Map<string, string> }> {
    const self = this.#o.session.userId;
    const roomEvents: RoomEvent[] = [];
    const marks = new Map<string, string>();
    let skipped = 0;
    let oversized = 0;
    for (const [roomId, room] of Object.entries(sync.rooms?.join ?? {})) {
      const timeline = room.timeline;
      const events = (timeline?.events ?? []).map((e) => ({ ...(e as object), room_id: roomId })).filter(isRoomEvent);
      const last = events.at(-1);
      if (last) marks.set(roomId, last.event_id);
      // First start: the old bot's "startup sync" - history is not acted on, only what comes after.
      if (since === undefined) {
        skipped += events.length;
        continue;
      }
      if (timeline?.limited && timeline.prev_batch) {
        const backfill = { client: this.#o.client, state: this.#o.state, logger: this.#o.logger, maxAgeMs: this.#o.maxCommandAgeSeconds * 1000, signal: this.#abort.signal };
        const inTimeline = new Set(events.map((e) => e.event_id));
        const gap = withoutOversized((await fillGap(backfill, roomId, timeline.prev_batch, since)).filter((e) => !inTimeline.has(e.event_id)));
        oversized += gap.oversized;
        roomEvents.push(...gap.kept);
      }
      const kept = withoutOversized(events);
      oversized += kept.oversized;
      roomEvents.push(...kept.kept);
    }
    for (const [roomId, room] of Object.entries(sync.rooms?.invite ?? {})) {
      // Invites come as stripped state, without an event id: one is made up per sighting, and the
      // join that follows is idempotent.
      const member = (room.invite_state?.events ?? []).find((e) => {
        const x = e as { type?: unknown; state_key?: unknown };
        return x.type === 'm.room.member' && x.state_key === self;
      }) as { sender?: string; content?: Record<string, unknown> } | undefined;
      if (!member?.sender || member.content?.['membership'] !== 'invite') continue;
      roomEvents.push({
        event_id: `~invite:${roomId}:${sync.next_batch}`,
        room_id: roomId,
        sender: member.sender,
        type: 'm.room.member',
        state_key: self,
        origin_server_ts: Date.now(),
        content: member.content,
      });
    }
    if (skipped > 0) this.#o.logger.info({ skipped }, 'first start: not acting on messages sent before the bot started');
    const counts = sync.device_one_time_keys_count;
    const batch: SyncBatch = {
      label: `sync ${sync.next_batch}`,
      roomEvents,
      toDevice: (sync.to_device?.events ?? []).filter(isToDeviceEvent),
      deviceLists: { changed: stringList(sync.device_lists?.changed), left: stringList(sync.device_lists?.left) },
      // In /sync, a missing count means zero (unlike appservice transactions), so it is always given.
      oneTimeKeyCounts: Object.fromEntries(Object.entries(counts ?? {}).filter((e): e is [string, number] => typeof e[1] === 'number')),
      unusedFallbackKeyTypes: sync.device_unused_fallback_key_types || sync['org.matrix.msc2732.device_unused_fallback_key_types']
        ? stringList(sync.device_unused_fallback_key_types ?? sync['org.matrix.msc2732.device_unused_fallback_key_types'])
        : undefined,
      oversized,
    };
    return { batch, marks };
  }
}
