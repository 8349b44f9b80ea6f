import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

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
    help: 'Commands from allowed users, by command and outcome',
    labelNames: ['command', 'outcome'] as const,
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
    help: 'Kubernetes API call latency, by operation and outcome',
    labelNames: ['operation', 'outcome'] as const,
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

  /** The Deployment watch, read at scrape time (set by watchSource): nothing runs between scrapes. */
  #watch: (() => { live: boolean; stats: { lists: number; watches: number; events: number; relists: number } } | undefined) | undefined;
  readonly watchUp = new Gauge({
    name: 'openclaw_kube_watch_up',
    help: '1 while the watch on the Deployment is connected (status and the "from" of a scale then need no request), 0 while it is down or not allowed (or the bot was given a client without one)',
    registers: [this.registry],
    collect: () => {
      const w = this.#watch?.();
      if (w) this.watchUp.set(w.live ? 1 : 0);
    },
  });
  readonly watchRequests = new Gauge({
    name: 'openclaw_kube_watch_requests',
    help: 'Requests the Deployment watch has made since start, by kind (list: a full read, after a start or a 410; watch: a connection)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
    collect: () => {
      const w = this.#watch?.();
      if (!w) return;
      this.watchRequests.set({ kind: 'list' }, w.stats.lists);
      this.watchRequests.set({ kind: 'watch' }, w.stats.watches);
    },
  });

  /** Where the watch metrics are read from at each scrape. */
  watchSource(read: () => { live: boolean; stats: { lists: number; watches: number; events: number; relists: number } } | undefined): void {
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
