/**
 * Timed runs, the command side: what `start 2h`, a bare `start`, `stop`, `extend 1h` and `status`
 * mean for the Deployment's run (src/store/state-db.ts `runs`), and the sentences they add to the
 * replies. The timer side (warning, automatic stop) is run-scheduler.ts.
 *
 * Decisions the issue left open (README, "Timed runs"):
 * - The run belongs to the Deployment: anyone allowed may extend or stop it, and each change is
 *   recorded with who made it; a change made from another room is announced in the run's room.
 * - A bare `start` on a timed run keeps its stop time (and says so); `start 2h` on a running
 *   Deployment sets the stop to 2 h from now.
 * - With `bot.defaultRunTime` a bare `start` is timed; with only `bot.maxRunTime`, a bare `start`
 *   runs for the maximum. No run may be set to end more than `bot.maxRunTime` ahead (extend too).
 * - Exactly once: the run is written before the start's PATCH (a crash after the PATCH keeps its
 *   timer), and each change carries its event's id, so a redelivered command does not apply twice.
 */
import type { Logger } from '../log.ts';
import { targetKey, type DeploymentStatus, type DeploymentTarget, type ScaleResult } from '../kube/kube.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { RunRecord, StateDb } from '../store/state-db.ts';
import type { Clock } from './clock.ts';
import { compactDuration } from './durations.ts';
import type { Outbox } from './outbox.ts';
import * as words from './run-replies.ts';
import type { Reply } from './replies.ts';
import { utcStamp, type TimeText } from './time-text.ts';

export interface RunLimits {
  /** A bare `start` runs this long (`bot.defaultRunTime`). */
  readonly defaultMs: number | undefined;
  /** No run may be set to end further ahead (`bot.maxRunTime`). */
  readonly maxMs: number | undefined;
}

export interface TimedRunsOptions {
  readonly target: DeploymentTarget;
  readonly state: StateDb;
  readonly clock: Clock;
  readonly limits: RunLimits;
  readonly time: TimeText;
  readonly prefix: string;
  readonly outbox: Outbox;
  /** Called after every change of the run: the scheduler re-arms its one timer. */
  readonly changed: () => void;
  readonly logger: Logger;
  /** With several targets: its name, for the commands replies suggest (`extend comfy 1h`). */
  readonly sayTarget?: string;
}

/** A start's intent, written before its PATCH. */
export interface StartPlan {
  readonly prior: RunRecord | undefined;
  readonly next: RunRecord;
  readonly how: 'set' | 'default' | 'kept' | 'replaced' | 'untimed' | 'again';
}

export class TimedRuns {
  readonly #o: TimedRunsOptions;
  readonly key: string;

  constructor(options: TimedRunsOptions) {
    this.#o = options;
    this.key = targetKey(options.target);
  }

  words(): words.Words {
    return { time: this.#o.time, now: this.#o.clock.now(), prefix: this.#o.prefix, target: this.#o.sayTarget };
  }

  current(): RunRecord | undefined {
    return this.#o.state.runs.get(this.key);
  }

  /** A `start <time>` over the maximum is refused before anything is done. */
  refusal(name: string, duration: number | undefined): Reply | undefined {
    const max = this.#o.limits.maxMs;
    if (name !== 'start' || duration === undefined || max === undefined || duration <= max) return undefined;
    return words.tooLong(this.words(), this.#o.target, duration, max);
  }

  /** Writes the run as the start will make it, before the PATCH leaves: a crash after the PATCH keeps the timer. */
  beforeStart(event: RoomEvent, duration: number | undefined): StartPlan {
    const now = this.#o.clock.now();
    const prior = this.current();
    if (prior?.changedEvent === event.event_id) return { prior, next: prior, how: 'again' }; // a redelivery: applied before
    const bare = duration === undefined;
    // A run whose automatic stop is under way (or failing) is over as far as a new start is concerned.
    const live = prior?.stopping ? undefined : prior;
    const ms = duration ?? (live?.stopsAt !== undefined ? undefined : this.#o.limits.defaultMs ?? this.#o.limits.maxMs);
    const change = { changedBy: event.sender, changedAt: now, changedEvent: event.event_id };
    let next: RunRecord;
    let how: StartPlan['how'];
    if (live) {
      how = ms === undefined ? (live.stopsAt === undefined ? 'untimed' : 'kept') : live.stopsAt === undefined ? (bare ? 'default' : 'set') : 'replaced';
      next = ms === undefined ? live : { ...live, ...change, stopsAt: now + ms, warnedFor: undefined };
    } else {
      how = ms === undefined ? 'untimed' : bare ? 'default' : 'set';
      next = this.#fresh(event, now, ms);
    }
    if (next !== prior) this.#o.state.runs.put(next);
    return { prior, next, how };
  }

  /** The start's PATCH failed for sure: the run is as it was. (A start whose outcome is unknown keeps its timer.) */
  startFailed(plan: StartPlan): void {
    if (plan.how === 'again' || plan.next === plan.prior) return;
    if (plan.prior) this.#o.state.runs.put(plan.prior);
    else this.#o.state.runs.delete(this.key, plan.next.runId);
  }

  /** After the start's PATCH: the run as it is now, and the sentence the reply gets (empty for an untimed run). */
  started(event: RoomEvent, plan: StartPlan, result: ScaleResult, duration: number | undefined): { sentence: string; note: string } {
    const now = this.#o.clock.now();
    let { next, how } = plan;
    // It was off: whatever run was recorded had ended behind the bot's back (kubectl). This is a new one.
    if (result.previous === 0 && plan.prior && plan.prior.runId !== event.event_id && how !== 'again') {
      const ms = duration ?? this.#o.limits.defaultMs ?? this.#o.limits.maxMs;
      next = this.#fresh(event, now, ms);
      how = ms === undefined ? 'untimed' : duration === undefined ? 'default' : 'set';
      this.#o.state.runs.put(next);
    }
    this.#o.changed();
    const w = this.words();
    const timed = next.stopsAt === undefined ? '' : how === 'kept' || how === 'again' ? ` (stops at ${utcStamp(next.stopsAt)})` : ` (timed ${compactDuration(next.stopsAt - now)})`;
    const note = `start by ${event.sender} in ${event.room_id}${timed}`;
    if (next.stopsAt === undefined || how === 'untimed') return { sentence: '', note };
    if (how === 'replaced' && plan.prior?.roomId !== undefined && plan.prior.roomId !== event.room_id) {
      this.#elsewhere(event, plan.prior.roomId, words.changedElsewhere(w, this.#o.target, event.sender, 'reset', next.stopsAt));
    }
    const shown = how === 'again' ? 'kept' : how;
    return { sentence: words.stopsIn(w, next.stopsAt, shown, plan.prior?.stopsAt), note };
  }

  /** After a stop's PATCH: the run is over and its timer cancelled; returns the sentence for the reply. */
  stopped(event: RoomEvent): string {
    const prior = this.current();
    if (!prior) return '';
    this.#o.state.runs.delete(this.key, prior.runId);
    this.#o.changed();
    if (prior.stopsAt === undefined) return '';
    const w = this.words();
    if (prior.roomId !== event.room_id) this.#elsewhere(event, prior.roomId, words.changedElsewhere(w, this.#o.target, event.sender, 'stopped', prior.stopsAt));
    return words.cancelled(w, prior.stopsAt);
  }

  /** `extend <time>`: more time before the automatic stop. `status` is asked only when there is no timed run. */
  async extend(event: RoomEvent, by: number, status: () => Promise<DeploymentStatus>): Promise<Reply> {
    const run = this.current();
    const w = this.words();
    if (!run || run.stopsAt === undefined) {
      const off = await status().then((s) => s.desired === 0, () => undefined);
      return words.nothingToExtend(w, this.#o.target, off);
    }
    if (run.stopping) return words.stopUnderWay(w, this.#o.target);
    if (run.changedEvent === event.event_id) {
      // Applied before a restart; said again as it was (the stop time before it is not kept).
      return words.extended(w, this.#o.target, { ...run, stopsAt: run.stopsAt }, by, run.stopsAt - by);
    }
    const stopsAt = Math.max(run.stopsAt, w.now) + by;
    const max = this.#o.limits.maxMs;
    if (max !== undefined && stopsAt - w.now > max) {
      return words.notExtended(w, this.#o.target, stopsAt, max, Math.max(0, max - (run.stopsAt - w.now)));
    }
    const next = { ...run, stopsAt, changedBy: event.sender, changedAt: w.now, changedEvent: event.event_id, warnedFor: undefined };
    this.#o.state.runs.put(next);
    this.#o.changed();
    this.#o.logger.info({ run_id: run.runId, by: event.sender, stops_at: new Date(stopsAt).toISOString() }, 'timed run extended');
    if (run.roomId !== event.room_id) this.#elsewhere(event, run.roomId, words.changedElsewhere(w, this.#o.target, event.sender, 'extended', stopsAt));
    return words.extended(w, this.#o.target, next, by, run.stopsAt);
  }

  /** The line `status` adds while the Deployment is on with a run started from chat. */
  describe(status: DeploymentStatus): string | undefined {
    const run = this.current();
    if (!run || status.desired === 0) return undefined;
    return words.runLine(this.words(), run, status.state === 'running');
  }

  /** For the status of all targets: `stops at 16:02 UTC (in 1 h 12 min)` while a timed run is on. */
  stopsAt(status: DeploymentStatus): string | undefined {
    const run = this.current();
    if (!run || status.desired === 0 || run.stopsAt === undefined) return undefined;
    return words.stopsAtShort(this.words(), run.stopsAt);
  }

  #fresh(event: RoomEvent, now: number, ms: number | undefined): RunRecord {
    return {
      target: this.key, runId: event.event_id, roomId: event.room_id, startedBy: event.sender, startedAt: now,
      stopsAt: ms === undefined ? undefined : now + ms, changedBy: event.sender, changedAt: now, changedEvent: event.event_id,
      warnedFor: undefined, stopping: false,
    };
  }

  /**
   * Announces a change in the run's own room. Only recorded here (with the command's event, so said
   * once); the bot sends it after its reply (`RUN_ROOM_PURPOSE`), and a redelivery re-sends it.
   */
  #elsewhere(event: RoomEvent, roomId: string, reply: Reply): void {
    this.#o.outbox.recordNotice(event.event_id, RUN_ROOM_PURPOSE, roomId, reply);
  }
}

/** The outbox purpose of a change announced in the run's room. */
export const RUN_ROOM_PURPOSE = 'run-room';
