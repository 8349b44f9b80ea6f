/**
 * What each command does: Kubernetes calls, the Deployment's timed run, the audit Event, and the
 * reply. The Bot around it decides whether a message is a command to run at all (policy, trust,
 * exactly once); this decides what running it means.
 */
import { faultPoint } from '../fault-points.ts';
import type { Logger } from '../log.ts';
import { KubeError, type DeploymentTarget, type Kube } from '../kube/kube.ts';
import { startProgress } from '../kube/rollout.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { Metrics } from '../metrics.ts';
import type { StateDb } from '../store/state-db.ts';
import type { BotOptions } from './bot.ts';
import { systemClock, type Clock } from './clock.ts';
import type { CommandName, Parsed } from './commands.ts';
import type { Outbox } from './outbox.ts';
import * as replies from './replies.ts';
import type { Reply } from './replies.ts';
import { badArgument, upSince } from './run-replies.ts';
import { ProgressTracker, type ProgressPlan } from './progress-tracker.ts';
import { RunScheduler } from './run-scheduler.ts';
import { ScaleAudit } from './scale-audit.ts';
import { TimeText } from './time-text.ts';
import { TimedRuns, type StartPlan } from './timed-runs.ts';

type Command = Extract<Parsed, { kind: 'command' }>;
/** `help` is about all targets: the bot answers it, never one target's runner. */
export type TargetCommand = Command & { readonly name: Exclude<CommandName, 'help'> };

/** One target's runner: its Deployment (labelled with its name in chat), and what it shares with the others. */
export interface RunnerOptions extends Pick<BotOptions, 'commandPrefix' | 'runs' | 'progress'> {
  readonly target: DeploymentTarget & { readonly label: string };
  /** What a `start` scales it to. */
  readonly replicas: number;
  /** With several targets, its name goes into the commands replies suggest (`stop comfy`). */
  readonly several: boolean;
  readonly kube: Kube;
  readonly state: StateDb;
  readonly outbox: Outbox;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** One target's commands: its Deployment's timed run, timer, progress messages and audit Events. */
export class CommandRunner {
  readonly #o: RunnerOptions;
  readonly runs: TimedRuns;
  readonly timers: RunScheduler;
  readonly audit: ScaleAudit;
  readonly progress: ProgressTracker;
  /** Real time (a rollout's), which tests may replace apart from the timed runs' clock. */
  readonly #clock: Clock;

  constructor(options: RunnerOptions) {
    this.#o = options;
    const { target, state, kube, outbox, metrics } = options;
    const logger = options.logger.child({ target: target.label });
    const clock = options.runs?.clock ?? systemClock;
    this.audit = new ScaleAudit(kube, target, logger);
    this.runs = new TimedRuns({
      target, state, clock, limits: options.runs?.limits ?? { defaultMs: undefined, maxMs: undefined },
      time: options.runs?.time ?? new TimeText('UTC'), prefix: options.commandPrefix, outbox, changed: () => this.timers.reschedule(), logger,
      ...(options.several ? { sayTarget: target.label } : {}),
    });
    this.#clock = options.progress?.clock ?? systemClock;
    this.progress = new ProgressTracker({
      target, state, outbox, kube, clock: this.#clock, logger, enabled: options.progress?.enabled ?? true, deadlineMs: options.progress?.deadlineMs,
    });
    this.timers = new RunScheduler({ target, key: this.runs.key, state, clock, kube, outbox, audit: this.audit, words: () => this.runs.words(), metrics, logger });
  }

  /**
   * The start-up checks, each a warning when the Role lacks something: the Deployment itself (with
   * several targets, one whose RBAC is missing is named, and the others work on), then its audit
   * Events and its pods. A target that cannot be read at all gets that one warning, not three more
   * saying the same. Never throws; an unreachable API is the readiness probe's to report.
   */
  async check(): Promise<void> {
    try {
      await this.#o.kube.status(this.#o.target);
    } catch (error) {
      if (error instanceof KubeError && (error.kind === 'forbidden' || error.kind === 'not-found' || error.kind === 'unauthorized')) {
        const { label, namespace, name } = this.#o.target;
        this.#o.logger.warn({ kind: error.kind, status: error.status, namespace, deployment: name },
          `kubernetes: target ${label} (${namespace}/${name}) cannot be used: ${error.human}. Its status says so; ${this.#o.several ? 'the other targets work on. ' : ''}` +
          'Its Role and RoleBinding: config/kubernetes/README.md');
        return;
      }
    }
    await Promise.all([this.audit.check(), this.progress.check()]);
  }

  /** Why a command must not run as given (a run time over the maximum), before anything is done. */
  refusal(parsed: TargetCommand): Reply | undefined {
    return this.runs.refusal(parsed.name, parsed.duration);
  }

  badArgument(parsed: Extract<Parsed, { kind: 'invalid' }>): Reply {
    return badArgument(this.runs.words(), parsed.name, parsed.argument);
  }

  /** The target's chat name, its metrics label. */
  get name(): string {
    return this.#o.target.label;
  }

  /** What its runs, progress and buttons are stored under: `namespace/deployment`. */
  get key(): string {
    return this.runs.key;
  }

  get target(): DeploymentTarget & { readonly label: string } {
    return this.#o.target;
  }

  /** Counts a command about this target (the bot's answers before it ran: refused, too old). */
  count(command: string, outcome: string): void {
    this.#o.metrics.commands.inc({ command, outcome, target: this.#o.target.label });
  }

  /** Its line in the status of all targets; a failure to read it is said on the line (and logged). */
  async statusLine(): Promise<Reply> {
    try {
      const s = await this.#o.kube.status(this.#o.target);
      return replies.statusLine(this.#o.target, s, this.runs.stopsAt(s));
    } catch (error) {
      if (error instanceof KubeError) {
        this.#o.logger.warn({ kind: error.kind, status: error.status }, `kubernetes: ${error.human}`);
        return replies.statusLineFailure(this.#o.target, error.human);
      }
      this.#o.logger.error({ err: error }, 'status failed');
      return replies.statusLineFailure(this.#o.target, 'an internal error occurred; the operator can find it in the bot\'s log');
    }
  }

  async #status(): Promise<Reply> {
    const { kube, target } = this.#o;
    let s = await kube.status(target);
    let waiting: string | undefined;
    // Not ready, and the Deployment itself does not say why: its pods may (an image, a crash loop, the scheduler).
    if (s.desired > 0 && s.ready < s.desired && !s.problem && kube.rolloutNow) {
      const view = await kube.rolloutNow(target).catch(() => undefined);
      const r = view?.pods ? startProgress(view.deployment, view.pods) : undefined;
      if (r?.phase === 'failed') s = { ...s, problem: r.reason };
      else if (r?.phase === 'moving') waiting = r.reason;
    }
    // Not started from chat (or before the bot kept runs): how long it has been available, on the real clock (a rollout's).
    const up = s.state === 'running' && s.availableSince !== undefined ? upSince({ ...this.runs.words(), now: this.#clock.now() }, s.availableSince) : undefined;
    return replies.status(target, s, this.runs.describe(s) ?? up, waiting);
  }

  /** What to say for a start or stop cut short by a restart: not run again; the state now. */
  async interrupted(word: string): Promise<Reply> {
    let now: Reply;
    try {
      now = await this.#status();
    } catch (error) {
      now = error instanceof KubeError ? replies.kubeFailure('get the status of', this.#o.target, error) : replies.internalFailure('get the status of', this.#o.target);
    }
    return replies.interrupted(word, now);
  }

  /**
   * Runs a command (Kubernetes, the run's timer) and returns the reply, and for a start or stop that
   * was made the rollout to follow; a Kubernetes failure is a one-sentence reply.
   */
  async run(parsed: TargetCommand, event: RoomEvent, log: Logger): Promise<{ reply: Reply; progress?: ProgressPlan }> {
    const { target, kube } = this.#o;
    log = log.child({ target: target.label });
    const command = parsed.name;
    const action = command === 'status' ? 'get the status of' : command;
    let plan: StartPlan | undefined;
    try {
      let reply: Reply;
      let progress: ProgressPlan | undefined;
      switch (command) {
        case 'status':
          reply = await this.#status();
          break;
        case 'extend':
          reply = await this.runs.extend(event, parsed.duration ?? 0, () => kube.status(target));
          break;
        case 'start':
        case 'stop': {
          // The run (and its stop time) is on disk before the PATCH leaves: a crash after it keeps the timer.
          if (command === 'start') plan = this.runs.beforeStart(event, parsed.duration);
          const result = await kube.scale(target, command === 'start' ? this.#o.replicas : 0);
          faultPoint('after-patch');
          log.info({ command, namespace: target.namespace, deployment: target.name, from: result.previous, to: result.desired }, 'scaled deployment');
          const run = plan ? this.runs.started(event, plan, result, parsed.duration) : { sentence: this.runs.stopped(event), note: `stop by ${event.sender} in ${event.room_id}` };
          // Alongside the reply, never before it: the Event is best effort.
          if (result.previous !== result.desired) this.audit.record(command === 'start' ? 'Start' : 'Stop', run.note);
          const following = this.progress.enabled;
          reply = replies.withSentence(replies.scaled(target, result, following), run.sentence);
          if (following) progress = { action: command, suffix: run.sentence, noChange: result.previous === result.desired };
          break;
        }
      }
      this.count(command, 'ok');
      return progress ? { reply, progress } : { reply };
    } catch (error) {
      // A start that surely failed leaves the run as it was; one whose outcome is unknown keeps its timer.
      if (plan && !(error instanceof KubeError && error.kind === 'unknown-outcome')) this.runs.startFailed(plan);
      this.count(command, 'error');
      if (error instanceof KubeError) {
        log.error({ command, kind: error.kind, status: error.status, detail: error.cause instanceof Error ? error.cause.message : undefined }, `kubernetes: ${error.human}`);
        return { reply: replies.kubeFailure(action, target, error) };
      }
      log.error({ command, err: error }, 'command failed');
      return { reply: replies.internalFailure(action, target) };
    }
  }
}
