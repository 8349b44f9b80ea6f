import { randomUUID } from 'node:crypto';
import type { Router } from 'express';
import type { Logger } from '../log.ts';
import { MatrixError, p, type MatrixClient } from '../matrix/client.ts';
import type { SyncBatch } from '../matrix/batch.ts';
import type { Registration } from './registration.ts';
import { appserviceRouter } from './routes.ts';
import { parseTransaction, type BotDevice } from './transaction.ts';

export interface AppserviceSourceOptions {
  readonly registration: Registration;
  readonly allowQueryToken: boolean;
  readonly client: MatrixClient;
  readonly isStopping: () => boolean;
  readonly logger: Logger;
}

/** Where transactions go once the bot is set up. */
export interface Consumer {
  /** The bot's user and device, to pick the device-scoped parts of a transaction. */
  readonly device: BotDevice;
  /** Hands a batch to the pipeline; resolves when its effects are durable. */
  readonly process: (batch: SyncBatch) => Promise<void>;
}

/** Longest a transaction is held while the bot finishes starting (Synapse itself gives up after 60 s). */
const ATTACH_WAIT_MS = 45_000;

/** How many recently acknowledged transactions are remembered, to answer a resend at once. */
const RECENT_LIMIT = 1024;

/**
 * A transaction from Synapse this recent proves that Synapse reaches the bot, whatever a ping
 * says: after the bot was killed, Synapse's first ping may go out on a pooled connection to the
 * dead process and fail while the transactions that follow arrive.
 */
const DELIVERY_PROVES_REACH_MS = 60_000;

/**
 * The appservice producer: Synapse pushes transactions, each becomes one SyncBatch.
 *
 * A resent transaction is answered from memory only when both its id and its body match one
 * already acknowledged: Synapse on SQLite restarts transaction ids at 1 after its own restart,
 * so an id alone does not identify a transaction. Correctness never rests on this shortcut;
 * per-event claims in the state store are what keep a command from running twice.
 */
export class AppserviceSource {
  readonly #o: AppserviceSourceOptions;
  readonly #recent = new Set<string>();
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #pings = new Map<string, () => void>();
  #consumer: Consumer | undefined;
  /** When Synapse last delivered a transaction (ms since the epoch; 0: never). */
  #lastDelivery = 0;
  readonly #attached: Promise<Consumer>;
  #attach!: (consumer: Consumer) => void;

  /**
   * The listener starts before the bot is set up, and holds transactions until `attach`: a
   * refused connection would put Synapse into its retry mode, where it drops to-device messages
   * (the room keys) for as long as it lasts.
   */
  constructor(options: AppserviceSourceOptions) {
    this.#o = options;
    this.#attached = new Promise((resolve) => (this.#attach = resolve));
  }

  attach(consumer: Consumer): void {
    this.#consumer = consumer;
    this.#attach(consumer);
  }

  router(): Router {
    return appserviceRouter({
      hsToken: this.#o.registration.hsToken,
      allowQueryToken: this.#o.allowQueryToken,
      onTransaction: (txnId, body, digest) => this.#transaction(txnId, body, digest),
      ownsUser: (userId) => userId === this.#consumer?.device.userId,
      onPing: (id) => {
        if (id) this.#pings.get(id)?.();
      },
      isStopping: this.#o.isStopping,
      logger: this.#o.logger,
    });
  }

  async #transaction(txnId: string, body: unknown, digest: string): Promise<void> {
    this.#lastDelivery = Date.now();
    const key = `${txnId}:${digest}`;
    if (this.#recent.has(key)) {
      this.#o.logger.debug({ txn_id: txnId }, 'transaction already acknowledged; answering again');
      return;
    }
    const running = this.#inFlight.get(key);
    if (running) return running;
    const consumer = this.#consumer ?? (await this.#waitForConsumer());
    const batch = parseTransaction(txnId, body, consumer.device);
    this.#o.logger.debug({ txn_id: txnId, events: batch.roomEvents.length, to_device: batch.toDevice.length }, 'transaction received');
    const work = consumer.process(batch).then(() => {
      this.#recent.add(key);
      if (this.#recent.size > RECENT_LIMIT) this.#recent.delete(this.#recent.values().next().value as string);
    });
    this.#inFlight.set(key, work);
    try {
      await work;
    } finally {
      this.#inFlight.delete(key);
    }
  }

  async #waitForConsumer(): Promise<Consumer> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the bot is still starting')), ATTACH_WAIT_MS);
    });
    try {
      return await Promise.race([this.#attached, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Asks the homeserver to call us back (MSC2659 ping). Proves the registration's URL reaches
   * this process, and makes Synapse retry at once any transactions it was backing off.
   * Returns a one-line diagnosis, or undefined when the round trip worked.
   */
  async ping(): Promise<string | undefined> {
    const id = randomUUID();
    const echoed = new Promise<void>((resolve) => this.#pings.set(id, resolve));
    try {
      await this.#o.client.request('POST', p`/_matrix/client/v1/appservice/${this.#o.registration.id}/ping`, {
        body: { transaction_id: id },
        asSelfOnly: true,
        timeoutMs: 20_000,
      });
      await Promise.race([echoed, new Promise((_, reject) => setTimeout(() => reject(new Error('no ping arrived')), 5_000))]);
      return undefined;
    } catch (error) {
      if (Date.now() - this.#lastDelivery < DELIVERY_PROVES_REACH_MS) {
        // Contradicted by the evidence: Synapse is delivering transactions to this very process.
        this.#o.logger.debug({ err: (error as Error).message }, 'appservice ping failed, but Synapse delivered a transaction just now: it reaches the bot');
        return undefined;
      }
      if (!(error instanceof MatrixError)) return `the homeserver said the ping worked, but it did not reach this process: is another instance answering at ${this.#o.registration.url}?`;
      switch (error.errcode) {
        case 'M_URL_NOT_SET':
          return 'the registration has no url, so Synapse cannot send events: set url to this bot\'s address and restart Synapse';
        case 'M_CONNECTION_FAILED':
        case 'M_CONNECTION_TIMEOUT':
        case 'M_BAD_STATUS':
          return `Synapse cannot reach the bot at ${this.#o.registration.url} (${error.errcode}): check the registration url, the Service and any network policy`;
        case 'M_FORBIDDEN':
          return `Synapse refused the ping (${error.message}): the registration id "${this.#o.registration.id}" may not match the one Synapse loaded`;
        case 'M_UNRECOGNIZED':
          return 'this homeserver does not support the appservice ping (MSC2659); cannot check reachability';
        default:
          return `appservice ping failed: ${error.message}`;
      }
    } finally {
      this.#pings.delete(id);
    }
  }
}
