import type { Clock } from '../bot/clock.ts';

/**
 * A clock that moves only when a test says so: `advance` fires the timers that fall due, in order,
 * as the real clock would have. Delays are recorded so that tests can check the clamping of long waits.
 */
export class FakeClock implements Clock {
  #now: number;
  #next = 1;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  /** Every delay asked of setTimer, in order. */
  readonly delays: number[] = [];

  constructor(start = Date.UTC(2025, 5, 14, 14, 2)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, ms: number): unknown {
    this.delays.push(ms);
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** When the earliest pending timer is due, if any. */
  get nextAt(): number | undefined {
    let at: number | undefined;
    for (const t of this.#timers.values()) if (at === undefined || t.at < at) at = t.at;
    return at;
  }

  /** Timers pending now. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing each timer due on the way at its own moment. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (!first || entry[1].at < first[1].at)) first = entry;
      if (!first) break;
      this.#timers.delete(first[0]);
      this.#now = Math.max(this.#now, first[1].at);
      first[1].fn();
    }
    this.#now = end;
  }

  /**
   * Moves time forward by `ms` timer by timer, awaiting `settled` after each (the work a timer starts,
   * e.g. an automatic stop or an edit, finishes before the next falls due, as in real time).
   */
  async advanceSettling(ms: number, settled: () => Promise<void>): Promise<void> {
    const end = this.#now + ms;
    for (let at = this.nextAt; at !== undefined && at <= end; at = this.nextAt) {
      this.set(at);
      await settled();
    }
    this.set(end);
    await settled();
  }

  /** Sets the time (forward only), firing what falls due. */
  set(at: number): void {
    this.advance(Math.max(0, at - this.#now));
  }
}
