/**
 * Follows a start or a stop after its reply is sent, and edits that reply (`m.replace`) as the
 * rollout moves, until it is ready, off, failed, or the deadline passes (issue 11, part 1). The
 * texts and the edit rule are progress.ts; this decides when to look and sends.
 *
 * - Event-driven: the Kubernetes client calls back on each change of the Deployment or its pods
 *   (`Kube.follow`); one timer covers the 2 s edit interval and the deadline. Nothing is followed,
 *   and no pod watch is open, while no start or stop is in progress.
 * - Exactly once, across crashes: the message to follow is recorded with the reply (one SQLite
 *   transaction); each edit is recorded before it is sent, with transaction id `<command>.edit.<n>`,
 *   and the row says how many were recorded. A restart re-sends the last one (the homeserver drops
 *   the copy) and finishes the same message.
 * - The work runs in the pipeline's queue (`serialize`): edits are encrypted like any reply.
 */
import { classify, errorMessage } from '../failure.ts';
import { faultPoint } from '../fault-points.ts';
import type { DeploymentTarget, Kube, RolloutFollow } from '../kube/kube.ts';
import { KubeError, targetKey } from '../kube/kube.ts';
import type { Logger } from '../log.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { ProgressRecord, StateDb } from '../store/state-db.ts';
import { OneTimer, type Clock } from './clock.ts';
import type { Outbox } from './outbox.ts';
import { deadlineMs, EDIT_INTERVAL_MS, lostText, nextEdit, progressState, supersededText, withSuffix, type ProgressAction, type ProgressState } from './progress.ts';
import { editContent, plain } from './replies.ts';
import type { Serialize } from './run-scheduler.ts';

/** A reply whose send never returned an id is waited for (its redelivery attaches it) this long, then forgotten. */
const UNSENT_KEPT_MS = 3_600_000;
/** Retries after a failed edit (the homeserver down): doubling up to a minute. */
const RETRY_MS = { first: 2_000, max: 60_000 };

export interface ProgressTrackerOptions {
  readonly target: DeploymentTarget;
  readonly state: StateDb;
  readonly outbox: Outbox;
  readonly kube: Kube;
  readonly clock: Clock;
  /** bot.progress: off, replies are sent once and never edited. */
  readonly enabled: boolean;
  /** bot.progressDeadlineSeconds; undefined: the Deployment's progressDeadlineSeconds, else 10 min. */
  readonly deadlineMs: number | undefined;
  readonly logger: Logger;
}

/** What a start or a stop asks to be followed, decided with its reply. */
export interface ProgressPlan {
  readonly action: ProgressAction;
  /** What the reply says besides the rollout (a timed run's stop time): kept under every edit. */
  readonly suffix: string;
  /** The scale changed nothing (already on or off). */
  readonly noChange: boolean;
}

export class ProgressTracker {
  readonly #o: ProgressTrackerOptions;
  readonly #key: string;
  readonly #timer: OneTimer;
  #serialize: Serialize | undefined;
  #follow: RolloutFollow | undefined;
  /** A look is queued in the pipeline: further changes until it runs need no other. */
  #queued = false;
  #failures = 0;
  #inFlight: Promise<void> = Promise.resolve();
  /** Rows whose last recorded edit this process has sent (after a restart it is sent once more). */
  readonly #sent = new Set<string>();
  #podsRefused = false;

  constructor(options: ProgressTrackerOptions) {
    this.#o = options;
    this.#key = targetKey(options.target);
    this.#timer = new OneTimer(options.clock, () => this.#wake());
  }

  /** Replies are edited only with a client that can follow a rollout (the lean client's watch). */
  get enabled(): boolean {
    return this.#o.enabled && this.#o.kube.follow !== undefined;
  }

  /** At start-up: may the pods be watched? One warning if not (progress then comes from the Deployment alone). */
  async check(): Promise<void> {
    if (!this.enabled || !this.#o.kube.checkPods) return;
    try {
      await this.#o.kube.checkPods(this.#o.target);
    } catch (error) {
      if (!(error instanceof KubeError) || error.kind !== 'forbidden') {
        this.#o.logger.debug({ err: errorMessage(error) }, 'kubernetes: could not check access to pods at start-up');
        return;
      }
      this.#podsRefused = true;
      this.#o.logger.warn({ namespace: this.#o.target.namespace }, `kubernetes: cannot list the Deployment's pods (${error.human}); start and stop progress comes from the Deployment's own status, without the pods' reasons (image pull, crash loop, scheduling). The Role needs list and watch on pods: see config/kubernetes/role.yaml`);
    }
  }

  /** True once the start-up check found pods refused (tests, and the log). */
  get podsRefused(): boolean {
    return this.#podsRefused;
  }

  /** Resumes what a restart interrupted (in `serialize`, the pipeline's queue). */
  start(serialize: Serialize): void {
    this.#serialize = serialize;
    if (this.#mine().length > 0) this.#wake();
  }

  stop(): void {
    this.#serialize = undefined;
    this.#timer.disarm();
    this.#unfollow();
  }

  /** Resolves when the look in flight (if any) is done; for tests. */
  settled(): Promise<void> {
    return this.#inFlight;
  }

  /**
   * Records the message to follow, before the reply is recorded (call both in one transaction):
   * `text` is the reply's. A no-op start or stop while the same action is followed adds nothing: the
   * first message goes on.
   */
  plan(event: RoomEvent, plan: ProgressPlan, text: string): void {
    if (!this.enabled || this.#o.state.progress.get(event.event_id)) return;
    if (plan.noChange && this.#mine().some((r) => r.action === plan.action)) return;
    const now = this.#o.clock.now();
    this.#o.state.progress.put({
      eventId: event.event_id, target: this.#key, roomId: event.room_id, action: plan.action, messageId: undefined, startedAt: now,
      suffix: plan.suffix, noChange: plan.noChange, deadlineMs: undefined, lastText: text, lastEditAt: now, edits: 0, finished: false,
    });
  }

  /** The reply was sent as `messageId`; undefined (the homeserver refused it): there is nothing to edit. */
  attach(eventId: string, messageId: string | undefined): void {
    const row = this.#o.state.progress.get(eventId);
    if (!row || row.target !== this.#key) return; // not followed, or another target's
    if (messageId === undefined) return this.#o.state.progress.delete(eventId);
    if (row.messageId === undefined) this.#o.state.progress.put({ ...row, messageId });
    this.#sent.add(eventId);
    this.#wake();
  }

  #mine(): ProgressRecord[] {
    return this.#o.state.progress.all().filter((r) => r.target === this.#key);
  }

  /** Queues one look in the pipeline (changes arriving meanwhile are covered by it). */
  #wake(): void {
    const serialize = this.#serialize;
    if (!serialize || this.#queued) return;
    this.#queued = true;
    this.#timer.disarm();
    const look = serialize(() => {
      this.#queued = false;
      return this.#look();
    }).then((next) => {
      this.#failures = 0;
      this.#timer.arm(next);
    }, (error: unknown) => {
      const delay = Math.min(RETRY_MS.max, RETRY_MS.first * 2 ** this.#failures++);
      this.#o.logger.warn({ reason: classify(error).reason, err: errorMessage(error), retry_in_s: delay / 1000 }, 'progress: could not edit a start or stop message; trying again');
      this.#timer.arm(this.#o.clock.now() + delay);
    });
    this.#inFlight = look;
  }

  /** Inside the queue: edits what changed; returns when to look again without a change (undefined: only on a change). */
  async #look(): Promise<number | undefined> {
    if (!this.#serialize) return undefined; // stopped while this look waited in the queue
    const rows = this.#mine();
    const now = this.#o.clock.now();
    const live = rows.filter((r) => r.messageId !== undefined);
    for (const r of rows) if (r.messageId === undefined && now - r.startedAt > UNSENT_KEPT_MS) this.#o.state.progress.delete(r.eventId);
    if (live.length === 0) return this.#unfollow();
    this.#follow ??= this.#o.kube.follow!(this.#o.target, () => this.#wake());
    const view = this.#follow.view();
    const newest = live.at(-1)!;
    let next: number | undefined;
    for (const row of live) {
      // A restart: the last recorded edit may not have arrived. Same transaction id: sent once at most.
      if (!this.#sent.has(row.eventId)) {
        if (row.edits > 0 && await this.#o.outbox.sendRecorded(row.eventId, `edit.${row.edits}`) === undefined) {
          this.#o.state.progress.delete(row.eventId);
          continue;
        }
        this.#sent.add(row.eventId);
      }
      if (row.finished) {
        this.#o.state.progress.delete(row.eventId);
        continue;
      }
      let state: ProgressState | undefined;
      let current = row;
      if (row !== newest) state = { text: supersededText(row.action, this.#o.target, newest.action), final: true };
      else {
        if (row.deadlineMs === undefined && view) this.#o.state.progress.put(current = { ...row, deadlineMs: deadlineMs(this.#o.deadlineMs, view.deployment) });
        const deadline = current.startedAt + (current.deadlineMs ?? deadlineMs(this.#o.deadlineMs, undefined));
        const elapsedMs = now - row.startedAt;
        if (view) state = progressState(row.action, this.#o.target, view, elapsedMs, now >= deadline);
        else if (now >= deadline) state = { text: lostText(row.action, this.#o.target, elapsedMs), final: true };
        // Nothing happened and nothing was said: an already running (or off) Deployment needs no edit.
        if (state?.done && row.noChange && row.edits === 0) {
          this.#o.state.progress.delete(row.eventId);
          continue;
        }
        if (!state?.final) next = Math.min(next ?? Infinity, deadline);
      }
      if (!state) continue;
      if (state.transient) {
        // The Deployment's count follows in a moment and wakes the next look; the timer only in case it does not.
        next = Math.min(next ?? Infinity, now + EDIT_INTERVAL_MS);
        continue;
      }
      const text = withSuffix(state.text, row.suffix);
      if (nextEdit(current.lastText, current.lastEditAt, { text, final: state.final }, now)) {
        if (!(await this.#edit(current, text, state.final, now))) continue;
      } else if (text !== current.lastText) next = Math.min(next ?? Infinity, current.lastEditAt + EDIT_INTERVAL_MS);
      if (state.final) this.#o.state.progress.delete(row.eventId);
    }
    if (this.#mine().every((r) => r.messageId === undefined)) this.#unfollow();
    return next;
  }

  /** Nothing left to follow: the pods' watch closes with it. */
  #unfollow(): undefined {
    this.#follow?.close();
    this.#follow = undefined;
    return undefined;
  }

  /** Records and sends one edit; false when the homeserver refused it (the row is dropped: it cannot be edited). */
  async #edit(row: ProgressRecord, text: string, final: boolean, now: number): Promise<boolean> {
    const n = row.edits + 1;
    const { state, outbox } = this.#o;
    state.atomically(() => {
      outbox.recordEdit(row.eventId, n, row.roomId, editContent(row.messageId!, plain(text)));
      state.progress.put({ ...row, lastText: text, lastEditAt: now, edits: n, finished: final });
    });
    let sent: string | undefined;
    try {
      sent = await outbox.sendRecorded(row.eventId, `edit.${n}`);
    } catch (error) {
      // Recorded, not delivered: the next look sends this one again (same transaction id) before anything newer.
      this.#sent.delete(row.eventId);
      throw error;
    }
    if (sent !== undefined) {
      faultPoint('after-edit');
      return true;
    }
    state.progress.delete(row.eventId);
    return false;
  }
}
