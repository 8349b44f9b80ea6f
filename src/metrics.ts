import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** One target's Deployment watch, as the metrics show it. */
export interface WatchState {
  /** The target's name in chat. */
  readonly target: string;
  readonly live: boolean;
  readonly stats: { readonly lists: number; readonly watches: number; readonly events: number; readonly relists: number };
}

/** The bot's Prometheus metrics, on a registry of its own so several bots can share a process (tests). */
export class Metrics {
  readonly registry = new Registry();
  readonly transactions = new Counter({
    name: 'openclaw_transactions_total',
    help: 'Appservice transactions and sync batches processed, by outcome',
    labelNames: ['source', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly events = new Counter({
    name: 'openclaw_events_total',
    help: 'Room events received, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly commands = new Counter({
    name: 'openclaw_commands_total',
    help: 'Commands from allowed users, by command, outcome and target (its name in chat; empty for commands before one is chosen, `all` for the status of all)',
    labelNames: ['command', 'outcome', 'target'] as const,
    registers: [this.registry],
  });
  readonly undecryptable = new Counter({
    name: 'openclaw_undecryptable_events_total',
    help: 'Encrypted events the bot could not decrypt, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly eventsSkipped = new Counter({
    name: 'openclaw_events_skipped_total',
    help: 'Events given up on for a failure no redelivery can fix (a 4xx from the homeserver, a malformed event) or ignored as too large to be a command (oversized), by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'openclaw_dead_letters_total',
    help: 'Events recorded as dead letters after their transaction kept failing, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly kubeLatency = new Histogram({
    name: 'openclaw_kube_request_duration_seconds',
    help: 'Kubernetes API call latency, by operation, outcome and target',
    labelNames: ['operation', 'outcome', 'target'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly batchDuration = new Histogram({
    name: 'openclaw_batch_duration_seconds',
    help: 'Time from receiving a transaction or sync batch to acknowledging it',
    labelNames: ['source'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  /** The Deployment watches, read at scrape time (set by watchSource): nothing runs between scrapes. */
  #watch: (() => readonly WatchState[]) | undefined;
  readonly watchUp = new Gauge({
    name: 'openclaw_kube_watch_up',
    help: '1 while the watch on the target\'s Deployment is connected (status and the "from" of a scale then need no request), 0 while it is down or not allowed (absent when the bot was given a client without one)',
    labelNames: ['target'] as const,
    registers: [this.registry],
    collect: () => {
      for (const w of this.#watch?.() ?? []) this.watchUp.set({ target: w.target }, w.live ? 1 : 0);
    },
  });
  readonly watchRequests = new Gauge({
    name: 'openclaw_kube_watch_requests',
    help: 'Requests the target\'s Deployment watch has made since start, by kind (list: a full read, after a start or a 410; watch: a connection)',
    labelNames: ['kind', 'target'] as const,
    registers: [this.registry],
    collect: () => {
      for (const w of this.#watch?.() ?? []) {
        this.watchRequests.set({ kind: 'list', target: w.target }, w.stats.lists);
        this.watchRequests.set({ kind: 'watch', target: w.target }, w.stats.watches);
      }
    },
  });

  /** Where the watch metrics are read from at each scrape: one state per watched target. */
  watchSource(read: () => readonly WatchState[]): void {
    this.#watch = read;
  }

  constructor(options: { defaultMetrics?: boolean } = {}) {
    // prom-client samples event-loop delay with a libuv timer at this resolution. Its default of
    // 10 ms wakes an idle bot 100 times a second, and even once a second costs a whole idle budget
    // (measured: ~0.02 CPU-s a minute). Once a minute costs nothing; the `lag` gauge is measured
    // afresh at every scrape anyway, which is what shows a blocked loop.
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'openclaw_', eventLoopMonitoringPrecision: 60_000 });
  }
}
