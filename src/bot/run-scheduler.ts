/**
 * Timed runs, the timer side: the warning before the automatic stop, and the stop itself, for the
 * Deployment's run in `state.sqlite`. One timer for the next due moment (no polling: an idle bot
 * with no timed run has no timer at all), re-armed whenever the run changes; the work runs in the
 * pipeline's queue (`serialize`), between batches, so it never races a command.
 *
 * Exactly once, across crashes:
 * - The stop is marked `stopping` on disk before its PATCH leaves (as a command's "acting" mark). A
 *   restart that finds the mark reads the Deployment back: at 0 the stop happened; otherwise it had
 *   not taken effect and is made now (scaling to 0 again cannot do harm twice).
 * - The notices are recorded before they are sent and sent with ids derived from the run (its id and
 *   stop time), so a retry re-sends the same notice with the same transaction id.
 * - A stop that fell due while the bot was down runs at start-up (`start` runs due work before it
 *   returns), and its notice says how late it is.
 */
import { classify, errorMessage } from '../failure.ts';
import { faultPoint } from '../fault-points.ts';
import { KubeError, targetLabel, type DeploymentTarget, type Kube } from '../kube/kube.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { RunRecord, StateDb } from '../store/state-db.ts';
import { OneTimer, type Clock } from './clock.ts';
import { MINUTE_MS } from './durations.ts';
import type { Outbox } from './outbox.ts';
import * as words from './run-replies.ts';
import type { ScaleAudit } from './scale-audit.ts';
import { utcStamp } from './time-text.ts';

/** The warning comes this long before the automatic stop. */
export const WARNING_LEAD_MS = 10 * MINUTE_MS;
/** A stop this late was due while the bot was not running (a timer fires within milliseconds). */
const LATE_MS = MINUTE_MS;
/** Retries of a failed warning or stop: doubling from 30 s to 10 min. */
const RETRY_MS = { first: 30_000, max: 10 * MINUTE_MS };

export type Serialize = <T>(work: () => Promise<T>) => Promise<T>;

export interface RunSchedulerOptions {
  readonly target: DeploymentTarget;
  readonly key: string;
  readonly state: StateDb;
  readonly clock: Clock;
  readonly kube: Kube;
  readonly outbox: Outbox;
  readonly audit: ScaleAudit;
  readonly words: () => words.Words;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

type TimedRun = RunRecord & { stopsAt: number };

/** When the warning for this stop time is due, or undefined when none is (sent, or the stop time was set less than the lead before). */
export function warningAt(run: TimedRun): number | undefined {
  const at = run.stopsAt - WARNING_LEAD_MS;
  return run.warnedFor === run.stopsAt || at <= run.changedAt || run.stopping ? undefined : at;
}

export class RunScheduler {
  readonly #o: RunSchedulerOptions;
  readonly #timer: OneTimer;
  #serialize: Serialize | undefined;
  #failures = 0;
  #retryAt: number | undefined;
  /** Runs whose failing stop the room was told about by this process (a restart may say it again: the same transaction id). */
  readonly #failureSaid = new Set<string>();
  #inFlight: Promise<void> = Promise.resolve();

  constructor(options: RunSchedulerOptions) {
    this.#o = options;
    this.#timer = new OneTimer(options.clock, () => void this.#fire());
  }

  /** Runs what is due now (a stop that fell due while the bot was down), then arms the timer. */
  async start(serialize: Serialize): Promise<void> {
    this.#serialize = serialize;
    await this.#fire();
  }

  /** The run changed (a command, inside the queue): arm for its next due moment. */
  reschedule(): void {
    this.#failures = 0;
    this.#retryAt = undefined;
    this.#arm();
  }

  /** Resolves when the due work in flight (if any) is done; for tests. */
  settled(): Promise<void> {
    return this.#inFlight;
  }

  /** The moment the timer is armed for (undefined: none); for tests and the log. */
  get armedFor(): number | undefined {
    return this.#timer.at;
  }

  stop(): void {
    this.#serialize = undefined;
    this.#timer.disarm();
  }

  #arm(): void {
    if (!this.#serialize) return; // not started yet, or stopped
    const run = this.#o.state.runs.get(this.#o.key);
    if (!run || run.stopsAt === undefined) return this.#timer.disarm();
    const due = Math.min(run.stopsAt, warningAt(run as TimedRun) ?? Infinity);
    this.#timer.arm(Math.max(due, this.#retryAt ?? -Infinity));
  }

  #fire(): Promise<void> {
    const serialize = this.#serialize;
    if (!serialize) return Promise.resolve();
    const run = serialize(() => this.#due()).then(
      () => { this.#failures = 0; this.#retryAt = undefined; },
      (error: unknown) => {
        const delay = Math.min(RETRY_MS.max, RETRY_MS.first * 2 ** this.#failures++);
        this.#retryAt = this.#o.clock.now() + delay;
        this.#o.logger.warn({ reason: classify(error).reason, err: errorMessage(error), retry_in_s: delay / 1000 }, 'timed run: the warning or automatic stop failed; trying again later');
      },
    ).finally(() => this.#arm());
    this.#inFlight = run;
    return run;
  }

  /** Inside the queue: whatever is due for the run now. Throws for a failure worth retrying. */
  async #due(): Promise<void> {
    const run = this.#o.state.runs.get(this.#o.key);
    const now = this.#o.clock.now();
    if (!run || run.stopsAt === undefined) return;
    const timed = run as TimedRun;
    if (now >= timed.stopsAt || timed.stopping) return this.#stop(timed, now);
    const warnAt = warningAt(timed);
    if (warnAt !== undefined && now >= warnAt) await this.#warn(timed);
  }

  async #warn(run: TimedRun): Promise<void> {
    const { kube, target, state, outbox } = this.#o;
    // Stopped behind the bot's back (kubectl): there is no run left to warn about. (From the watch: no request.)
    const off = await kube.status(target).then((s) => s.desired === 0, () => false);
    if (off) {
      this.#o.logger.info({ run_id: run.runId }, 'timed run: the Deployment was stopped by someone else; its timer is dropped');
      state.runs.delete(run.target, run.runId);
      return;
    }
    await outbox.say(noticeId(run), `warning-${run.stopsAt}`, run.roomId, words.warning(this.#o.words(), target, run));
    state.runs.put({ ...run, warnedFor: run.stopsAt });
    this.#o.logger.info({ run_id: run.runId, stops_at: new Date(run.stopsAt).toISOString() }, 'timed run: warned before the automatic stop');
  }

  async #stop(run: TimedRun, now: number): Promise<void> {
    const { kube, target, state, outbox, logger } = this.#o;
    const lateMs = now - run.stopsAt > LATE_MS ? now - run.stopsAt : 0;
    let previous: number | undefined;
    let acted = false;
    // Marked before: it may have acted (a crash, or a failure whose outcome is unknown). Read back first.
    const done = run.stopping ? await kube.status(target).then((s) => s.desired === 0) : false;
    if (!done) {
      if (!run.stopping) state.runs.put({ ...run, stopping: true });
      try {
        const result = await kube.scale(target, 0);
        faultPoint('after-patch');
        previous = result.previous;
        acted = previous !== 0;
      } catch (error) {
        if (!(error instanceof KubeError)) throw error;
        this.#o.metrics.commands.inc({ command: 'auto-stop', outcome: 'error', target: targetLabel(this.#o.target) });
        logger.error({ run_id: run.runId, kind: error.kind, detail: error.cause instanceof Error ? error.cause.message : undefined }, `timed run: the automatic stop failed: kubernetes: ${error.human}`);
        const retryMs = Math.min(RETRY_MS.max, RETRY_MS.first * 2 ** this.#failures);
        // Said once per run: recorded first, and sent again only by a restarted process, with the same transaction id.
        if (!this.#failureSaid.has(run.runId)) {
          await outbox.say(noticeId(run), 'stop-failed', run.roomId, words.autoStopFailed(this.#o.words(), target, error, retryMs));
          this.#failureSaid.add(run.runId);
        }
        throw error;
      }
    }
    await outbox.say(noticeId(run), 'stop', run.roomId, words.autoStopped(this.#o.words(), target, run, previous, lateMs));
    state.runs.delete(run.target, run.runId);
    this.#o.metrics.commands.inc({ command: 'auto-stop', outcome: 'ok', target: targetLabel(this.#o.target) });
    logger.info({ run_id: run.runId, started_by: run.startedBy, from: previous, late_s: Math.round(lateMs / 1000) }, 'timed run: stopped automatically');
    if (acted) {
      const late = lateMs > 0 ? `, ${Math.round(lateMs / MINUTE_MS)} min late: the bot was not running when it fell due` : '';
      this.#o.audit.record('Stop', `stop by timer${late} (run started by ${run.startedBy} in ${run.roomId} at ${utcStamp(run.startedAt)}, due ${utcStamp(run.stopsAt)})`);
    }
  }
}

/** The id the run's notices are recorded under (purposes tell them apart): derived from the run, never random. */
export const noticeId = (run: RunRecord): string => `${run.runId}~run`;
