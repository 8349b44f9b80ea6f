import type { Bot } from './bot/bot.ts';
import type { CryptoStep } from './crypto/crypto-step.ts';
import type { Logger } from './log.ts';
import { emptyBatch, type SyncBatch } from './matrix/batch.ts';

export type Source = 'appservice' | 'sync' | 'timer';
import type { Metrics } from './metrics.ts';

/**
 * The one consumer of batches from either source. Batches run strictly one after another (the
 * crypto engine's state must change in order), and `process` resolves only once the batch's
 * effects are durable, so a source may then acknowledge it (200 to Synapse, or save the sync token).
 */
export class Pipeline {
  readonly #crypto: CryptoStep;
  readonly #bot: Bot;
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: { crypto: CryptoStep; bot: Bot; metrics: Metrics; logger: Logger }) {
    this.#crypto = options.crypto;
    this.#bot = options.bot;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
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

  /** Resolves when every batch accepted so far has finished. */
  async drain(): Promise<void> {
    await this.#tail;
  }

  async #run(batch: SyncBatch, source: Source): Promise<void> {
    const timer = this.#metrics.batchDuration.startTimer({ source });
    try {
      const { events, notices } = await this.#crypto.process(batch);
      // Durable before acting: if the bot dies mid-batch, Synapse resends only the room events,
      // never the to-device keys, so the keys that decrypt them must already be on disk.
      await this.#crypto.flush();
      await this.#bot.handle(events);
      await this.#bot.announce(notices);
      await this.#crypto.flush();
      this.#metrics.transactions.inc({ source, outcome: 'ok' });
    } catch (error) {
      this.#metrics.transactions.inc({ source, outcome: 'error' });
      this.#logger.error({ batch: batch.label, err: error instanceof Error ? error.message : String(error) }, 'batch failed; it will be redelivered');
      throw error;
    } finally {
      timer();
    }
  }
}
