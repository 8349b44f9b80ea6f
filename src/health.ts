/** Readiness of the parts the bot depends on; liveness is just "the process answers". */
export type Component = 'homeserver' | 'kubernetes' | 'store';

export interface ComponentState {
  readonly ok: boolean;
  readonly detail: string;
  readonly since: string;
}

export class Health {
  readonly #state = new Map<Component, ComponentState>();
  #stopping = false;

  constructor(components: readonly Component[]) {
    for (const c of components) this.#state.set(c, { ok: false, detail: 'not checked yet', since: new Date().toISOString() });
  }

  set(component: Component, ok: boolean, detail: string): void {
    const before = this.#state.get(component);
    if (before && before.ok === ok && before.detail === detail) return;
    this.#state.set(component, { ok, detail, since: before?.ok === ok ? before.since : new Date().toISOString() });
  }

  /** Shutting down: not ready any more, so nothing new is routed here. */
  markStopping(): void {
    this.#stopping = true;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  report(): { ready: boolean; components: Record<string, ComponentState> } {
    const components = Object.fromEntries(this.#state);
    const ready = !this.#stopping && [...this.#state.values()].every((s) => s.ok);
    return { ready, components };
  }
}
