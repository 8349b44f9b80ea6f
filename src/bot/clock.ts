/** Time as the timed runs see it: the system's, or a test's (src/dev/fake-clock.ts). */
export interface Clock {
  now(): number;
  /** Calls `fn` once after `ms`; the handle goes to `clearTimer`. Never keeps the process alive on its own. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Node's timers take at most 2^31-1 ms (~24.8 days); a longer delay fires at once (with a warning).
 * Longer waits are made of several timers, each re-armed when it fires.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One timer for the next due moment: arming it again replaces it, so a schedule that changes never
 * leaves a stale timer behind, and an idle bot with nothing due has no timer at all.
 */
export class OneTimer {
  readonly #clock: Clock;
  readonly #onDue: () => void;
  #handle: unknown;
  #at: number | undefined;

  constructor(clock: Clock, onDue: () => void) {
    this.#clock = clock;
    this.#onDue = onDue;
  }

  /** The moment it is armed for, if any. */
  get at(): number | undefined {
    return this.#at;
  }

  /** Fires `onDue` at `at` (at once if that has passed); undefined disarms. */
  arm(at: number | undefined): void {
    this.disarm();
    if (at === undefined) return;
    this.#at = at;
    const delay = Math.max(0, at - this.#clock.now());
    // Clamped: a wait beyond Node's limit is done in steps, each one re-arming for the same moment.
    this.#handle = this.#clock.setTimer(() => {
      this.#handle = undefined;
      if (delay > MAX_TIMER_MS && this.#clock.now() < at) this.arm(at);
      else {
        this.#at = undefined;
        this.#onDue();
      }
    }, Math.min(delay, MAX_TIMER_MS));
  }

  disarm(): void {
    if (this.#handle !== undefined) this.#clock.clearTimer(this.#handle);
    this.#handle = undefined;
    this.#at = undefined;
  }
}
