/** Readiness of the parts the bot depends on; liveness is just "the process answers". */
export type Component = 'homeserver' | 'kubernetes' | 'store';

export interface ComponentState {
  readonly ok: boolean;
  readonly detail: string;
  readonly since: string;
}

/**
 * Asks one dependency whether it answers, on demand. The probe records the answer itself with
 * `health.set` (as real traffic does); `signal` aborts when the answer is no longer awaited.
 */
export type Probe = (signal: AbortSignal) => Promise<void>;

export interface HealthOptions {
  /** An answer (from a probe or from real traffic) younger than this is taken as it is. */
  readonly maxAgeMs?: number;
  /** A probe that has not answered in this time marks its component not ready. */
  readonly probeTimeoutMs?: number;
  /** Called when a component turns ready or not ready (for one log line per change). */
  readonly onChange?: (component: Component, state: ComponentState) => void;
}

export const READY_MAX_AGE_MS = 3_000;
export const PROBE_TIMEOUT_MS = 2_000;

/**
 * What `/ready` reports. Readiness is checked when asked (Kubernetes asks every few seconds),
 * with a short cache and a bounded wait, instead of by a background timer: the answer is never
 * older than a few seconds, and an idle bot runs no timer for it.
 */
export class Health {
  readonly #state = new Map<Component, ComponentState>();
  /** performance.now() of the latest answer per component. */
  readonly #answeredAt = new Map<Component, number>();
  readonly #probes = new Map<Component, Probe>();
  readonly #running = new Map<Component, Promise<void>>();
  readonly #maxAgeMs: number;
  readonly #probeTimeoutMs: number;
  readonly #onChange: HealthOptions['onChange'];
  #stopping = false;

  constructor(components: readonly Component[], options: HealthOptions = {}) {
    for (const c of components) this.#state.set(c, { ok: false, detail: 'not checked yet', since: new Date().toISOString() });
    this.#maxAgeMs = options.maxAgeMs ?? READY_MAX_AGE_MS;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? PROBE_TIMEOUT_MS;
    this.#onChange = options.onChange;
  }

  set(component: Component, ok: boolean, detail: string): void {
    this.#answeredAt.set(component, performance.now());
    const before = this.#state.get(component);
    if (before && before.ok === ok && before.detail === detail) return;
    const state = { ok, detail, since: before?.ok === ok ? before.since : new Date().toISOString() };
    this.#state.set(component, state);
    if (before?.ok !== ok) this.#onChange?.(component, state);
  }

  /** How to ask `component` on demand; components without a probe show what traffic last said. */
  probe(component: Component, probe: Probe): void {
    this.#probes.set(component, probe);
  }

  /** Shutting down: not ready any more, so nothing new is routed here. */
  markStopping(): void {
    this.#stopping = true;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /**
   * Asks every component whose latest answer is older than the cache age, all at once; resolves
   * within the probe timeout whatever they do. Concurrent callers share the probes in flight.
   */
  async check(): Promise<void> {
    if (this.#stopping) return;
    const now = performance.now();
    const stale = [...this.#probes].filter(([c]) => now - (this.#answeredAt.get(c) ?? -Infinity) >= this.#maxAgeMs);
    await Promise.all(stale.map(([c, probe]) => this.#run(c, probe)));
  }

  #run(component: Component, probe: Probe): Promise<void> {
    const running = this.#running.get(component);
    if (running) return running;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        // Not waited for any longer: the next check starts afresh rather than joining a hung request.
        controller.abort(new Error('readiness probe timed out'));
        this.set(component, false, `no answer within ${this.#probeTimeoutMs / 1000} s`);
        resolve();
      }, this.#probeTimeoutMs);
      probe(controller.signal).then(resolve, (error: unknown) => {
        if (!controller.signal.aborted) this.set(component, false, error instanceof Error ? error.message : String(error));
        resolve();
      });
    }).finally(() => {
      clearTimeout(timer);
      if (this.#running.get(component) === done) this.#running.delete(component);
    });
    this.#running.set(component, done);
    return done;
  }

  report(): { ready: boolean; components: Record<string, ComponentState> } {
    const components = Object.fromEntries(this.#state);
    const ready = !this.#stopping && [...this.#state.values()].every((s) => s.ok);
    return { ready, components };
  }
}
