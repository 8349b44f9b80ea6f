import { createHash } from 'node:crypto';
import type { Bot } from './bot/bot.ts';
import type { CryptoStep } from './crypto/crypto-step.ts';
import { BatchFailed, classify, errorMessage } from './failure.ts';
import { faultPoint } from './fault-points.ts';
import type { Logger } from './log.ts';
import { emptyBatch, type SyncBatch } from './matrix/batch.ts';
import type { Metrics } from './metrics.ts';
import type { StateDb } from './store/state-db.ts';

export type Source = 'appservice' | 'sync' | 'timer';

/**
 * The backstop's bound: a batch that failed this many times (the homeserver's 5th delivery comes
 * about 30 s after the first failure) or for this long is handled event by event instead.
 */
export const BACKSTOP_FAILURES = 4;
export const BACKSTOP_MS = 10 * 60_000;
/** How often events waiting for their room keys are tried again while no batch comes. */
const PENDING_RETRY_MS = 1000;

/**
 * The one consumer of batches from either source. Batches run strictly one after another (the
 * crypto engine's state must change in order), and `process` resolves only once the batch's
 * effects are durable, so a source may then acknowledge it (200 to Synapse, or save the sync token).
 */
export class Pipeline {
  readonly #crypto: CryptoStep;
  readonly #bot: Bot;
  readonly #state: StateDb;
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  readonly #now: () => number;
  #tail: Promise<unknown> = Promise.resolve();
  #wake: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: { crypto: CryptoStep; bot: Bot; state: StateDb; metrics: Metrics; logger: Logger; now?: () => number }) {
    this.#crypto = options.crypto;
    this.#bot = options.bot;
    this.#state = options.state;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
  }

  process(batch: SyncBatch, source: Source): Promise<void> {
    const run = this.#tail.then(() => this.#run(batch, source));
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Runs `work` in the queue, between batches (engine work outside a batch, e.g. after a new login). */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(work);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Runs an empty batch when the crypto step has events waiting, so they are settled in time. */
  async tick(): Promise<void> {
    if (!this.#crypto.hasPending()) return;
    await this.process(emptyBatch('timer'), 'timer').catch(() => undefined);
  }

  /**
   * Keeps a timer only while encrypted events wait for their keys (they are retried every second
   * even when no batch comes); an idle bot has none and sleeps.
   */
  wakeWhilePending(): void {
    if (this.#stopped || this.#wake !== undefined || !this.#crypto.hasPending()) return;
    this.#wake = setTimeout(() => {
      this.#wake = undefined;
      void this.tick();
    }, PENDING_RETRY_MS).unref();
  }

  /** Resolves when every batch accepted so far has finished; no timer is left afterwards. */
  async drain(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#wake);
    this.#wake = undefined;
    await this.#tail;
  }

  async #run(batch: SyncBatch, source: Source): Promise<void> {
    const timer = this.#metrics.batchDuration.startTimer({ source });
    const key = fingerprint(batch, source);
    try {
      this.#reportDropped(batch);
      const history = key === undefined ? undefined : this.#state.batchFailures(key);
      let acted: number;
      if (key !== undefined && history && (history.failures >= BACKSTOP_FAILURES || this.#now() - history.firstFailedAt >= BACKSTOP_MS)) {
        acted = await this.#oneByOne(batch, history);
      } else {
        acted = await this.#whole(batch);
      }
      if (key !== undefined && history) this.#state.batchSucceeded(key);
      this.#metrics.transactions.inc({ source, outcome: 'ok' });
      if (acted > 0) faultPoint('before-ack');
    } catch (error) {
      this.#metrics.transactions.inc({ source, outcome: 'error' });
      let failures: number | undefined;
      try {
        if (key !== undefined) failures = this.#state.batchFailed(key, this.#now()).failures;
      } catch {
        // The state store is what failed; the count resumes when it works again.
      }
      this.#logger.error({ batch: batch.label, failures, reason: classify(error).reason, err: errorMessage(error) }, 'batch failed; it will be redelivered');
      throw new BatchFailed(batch.label, { cause: error });
    } finally {
      timer();
      this.wakeWhilePending();
    }
  }

  /** Returns how many events the bot acted on. */
  async #whole(batch: SyncBatch): Promise<number> {
    const { events, notices } = await this.#crypto.process(batch);
    // Durable before acting: if the bot dies mid-batch, Synapse resends only the room events,
    // never the to-device keys, so the keys that decrypt them must already be on disk.
    await this.#crypto.flush();
    const { acted } = await this.#bot.handle(events);
    await this.#bot.announce(notices);
    await this.#crypto.flush();
    return acted;
  }

  /**
   * The backstop, for a batch that kept failing: whatever the cause, it must not hold back every
   * later event for ever. Its key material goes first, alone, then each room event on its own;
   * an event that still fails becomes a dead letter (recorded, logged, counted, never retried).
   */
  async #oneByOne(batch: SyncBatch, history: { failures: number; firstFailedAt: number }): Promise<number> {
    this.#logger.warn({ batch: batch.label, failures: history.failures, failing_for_s: Math.round((this.#now() - history.firstFailedAt) / 1000) }, 'this batch keeps failing: handling its events one by one; those that still fail become dead letters');
    try {
      await this.#whole({ ...batch, roomEvents: [] });
    } catch (error) {
      const reason = classify(error).reason;
      this.#metrics.deadLetters.inc({ reason });
      this.#logger.error({ batch: batch.label, reason, err: errorMessage(error) }, 'dead letter: gave up on the key material of this batch (to-device messages, device lists)');
    }
    let acted = 0;
    for (const event of batch.roomEvents) {
      try {
        acted += await this.#whole({ ...emptyBatch(batch.label), roomEvents: [event] });
      } catch (error) {
        await this.#bot.deadLetter(event, classify(error).reason, error);
      }
    }
    return acted;
  }

  #reportDropped(batch: SyncBatch): void {
    for (const { eventId, reason } of batch.dropped ?? []) {
      this.#metrics.eventsSkipped.inc({ reason: 'malformed' });
      this.#logger.warn({ batch: batch.label, event_id: eventId, reason }, 'dropped a malformed event');
    }
    if (batch.oversized) {
      // Legitimate traffic (a pasted log), possibly a flood of it: counted, and one debug line per batch at most.
      this.#metrics.eventsSkipped.inc({ reason: 'oversized' }, batch.oversized);
      this.#logger.debug({ batch: batch.label, oversized: batch.oversized }, 'ignored room messages too large to be commands');
    }
  }
}

/**
 * What identifies a batch across redeliveries: Synapse resends a failed transaction with its
 * room events only (and on SQLite restarts transaction ids), so the event ids are the identity;
 * a /sync batch without room events is identified by its token.
 */
function fingerprint(batch: SyncBatch, source: Source): string | undefined {
  const parts = batch.roomEvents.length > 0 ? batch.roomEvents.map((e) => e.event_id) : source === 'sync' ? [batch.label] : [];
  if (parts.length === 0) return undefined;
  return createHash('sha256').update(parts.join('\n')).digest('base64url');
}
