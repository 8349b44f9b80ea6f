import { classify, errorMessage } from '../failure.ts';
import { faultPoint } from '../fault-points.ts';
import type { Logger } from '../log.ts';
import type { Target } from '../config/targets.ts';
import type { Kube } from '../kube/kube.ts';
import { messageText, type RoomEvent } from '../matrix/events.ts';
import type { DeviceApprover, IncomingEvent, Notice } from '../matrix/incoming.ts';
import type { Metrics } from '../metrics.ts';
import type { StateDb } from '../store/state-db.ts';
import { answerApproval } from './approvals.ts';
import { Buttons } from './buttons.ts';
import type { Clock } from './clock.ts';
import type { CommandRunner } from './command-runner.ts';
import { parseCommand, type Parsed } from './commands.ts';
import { Outbox } from './outbox.ts';
import { Policy } from './policy.ts';
import type { ProgressTracker } from './progress-tracker.ts';
import * as replies from './replies.ts';
import type { RunScheduler, Serialize } from './run-scheduler.ts';
import type { ScaleAudit } from './scale-audit.ts';
import { TargetRunners } from './target-runners.ts';
import type { TimeText } from './time-text.ts';
import { runTargetCommand, type CommandFlow } from './target-command.ts';
import type { RunLimits } from './timed-runs.ts';

/** What the bot does to rooms; replies are encrypted underneath when the room is. */
export interface RoomActions {
  join(roomId: string): Promise<void>;
  leave(roomId: string, reason: string): Promise<void>;
  /** `type` defaults to `m.room.message`; resolves to the sent event's id when known. */
  send(roomId: string, content: Record<string, unknown>, txnId: string, type?: string): Promise<string | void>;
}

export interface BotOptions {
  readonly userId: string;
  readonly allowedUsers: readonly string[];
  /** What it starts and stops (config `targets`); never empty. */
  readonly targets: readonly Target[];
  readonly echo: boolean;
  readonly commandPrefix: string;
  readonly maxCommandAgeSeconds: number;
  /** ▶️ ⏹️ 🔄 reactions under status and start/stop replies, and reactions to them as commands (default on). */
  readonly reactionButtons?: boolean;
  readonly kube: Kube;
  readonly rooms: RoomActions;
  /** Carries out `approve DEVICEID` (the crypto step); without it, `approve` is answered as needing an encrypted room. */
  readonly devices?: DeviceApprover;
  readonly state: StateDb;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Timed runs: default and maximum run time (none: no limit), the zone of times in chat, and their clock. */
  readonly runs?: { readonly limits?: RunLimits; readonly time?: TimeText; readonly clock?: Clock };
  /**
   * Start/stop replies edited as the rollout moves (default on, when the Kubernetes client can follow
   * one), the deadline, and their clock (the system's: a rollout is real time even when a demo or test
   * moves the timed runs' clock).
   */
  readonly progress?: { readonly enabled: boolean; readonly deadlineMs: number | undefined; readonly clock?: Clock };
}

/** Turns room events into joins, Kubernetes calls and replies. Knows nothing of transports or crypto. */
export class Bot {
  readonly #o: BotOptions;
  readonly #policy: Policy;
  readonly #outbox: Outbox;
  readonly #now: () => number;
  readonly #targets: TargetRunners;
  readonly #buttons: Buttons;
  readonly #flow: CommandFlow;
  /** Events of the current `handle` call that were claimed and worked on. */
  #acted = 0;

  constructor(options: BotOptions) {
    this.#o = options;
    this.#policy = new Policy(options.userId, options.allowedUsers, options.commandPrefix);
    this.#outbox = new Outbox(options.state, (roomId, content, txnId, type) => options.rooms.send(roomId, content, txnId, type), options.logger);
    this.#now = options.now ?? Date.now;
    this.#targets = new TargetRunners({ ...options, reactionButtons: options.reactionButtons ?? true, outbox: this.#outbox });
    this.#buttons = new Buttons({
      enabled: options.reactionButtons ?? true, state: options.state, outbox: this.#outbox, logger: options.logger, nameOfKey: (key) => this.#targets.nameOfKey(key),
    });
    this.#flow = {
      state: options.state, outbox: this.#outbox, buttons: this.#buttons, maxCommandAgeSeconds: options.maxCommandAgeSeconds, now: this.#now,
      echo: (event, word, pressed) => this.#echo(event, word, pressed),
    };
  }

  /** Each target's runner (timed run, timer, progress, audit), in the configured order. */
  get targets(): readonly CommandRunner[] {
    return this.#targets.all;
  }

  /** The timer side of the first target's timed runs (the only target's, with the old settings). */
  get timers(): RunScheduler {
    return this.#targets.first.timers;
  }

  /** Resolves when work the bot does after acknowledging a transaction (the reaction buttons) is done. */
  settled(): Promise<void> {
    return this.#buttons.settled();
  }

  /** Kubernetes Events recording the first target's scales. */
  get audit(): ScaleAudit {
    return this.#targets.first.audit;
  }

  /** The first target's start/stop replies being edited as the rollout moves. */
  get progress(): ProgressTracker {
    return this.#targets.first.progress;
  }

  /** At start-up: for each target, one warning for each thing its Role lacks (its Deployment, Events, pods). */
  check(): Promise<void> {
    return this.#targets.check();
  }

  /**
   * For each target: runs what fell due while the bot was down (in `serialize`, the pipeline's
   * queue), then keeps one timer for the next due moment; resumes following a rollout a restart
   * interrupted.
   */
  startTimers(serialize: Serialize): Promise<void> {
    return this.#targets.start(serialize);
  }

  stopTimers(): void {
    this.#targets.stop();
  }

  /**
   * Handles events in order. Throws only for failures a redelivery may fix (the homeserver is
   * unavailable, the disk is full); an event that fails for good is logged, counted and skipped,
   * so that it cannot hold back the events after it.
   */
  async handle(events: readonly IncomingEvent[]): Promise<{ acted: number }> {
    this.#acted = 0;
    for (const incoming of events) {
      try {
        await this.#handleOne(incoming);
      } catch (error) {
        const failure = classify(error);
        if (failure.transient) throw error;
        this.skip(incoming.event, failure.reason, error);
      }
    }
    return { acted: this.#acted };
  }

  /** Gives up on an event for good: logged once, counted, and marked handled so no redelivery retries it. */
  skip(event: RoomEvent, reason: string, error: unknown): void {
    this.#o.metrics.eventsSkipped.inc({ reason });
    this.#o.logger.warn({ event_id: event.event_id, room_id: event.room_id, sender: event.sender, type: event.type, reason, err: errorMessage(error) }, 'skipping an event that cannot succeed on redelivery');
    this.#o.state.claimEvent(event.event_id, event.room_id);
    this.#o.state.finishEvent(event.event_id);
  }

  /**
   * The pipeline's backstop gave up on this event (its batch kept failing): recorded for the
   * operator, never retried, and an allowed sender is told (best effort: the homeserver may be
   * what keeps failing).
   */
  async deadLetter(event: RoomEvent, reason: string, error: unknown): Promise<void> {
    this.#o.state.addDeadLetter(event.event_id, event.room_id, reason, errorMessage(error));
    this.#o.metrics.deadLetters.inc({ reason });
    this.#o.logger.error({ event_id: event.event_id, room_id: event.room_id, sender: event.sender, type: event.type, reason, err: errorMessage(error) }, 'dead letter: gave up on an event whose batch kept failing');
    this.#o.state.claimEvent(event.event_id, event.room_id);
    this.#o.state.finishEvent(event.event_id);
    if (!this.#policy.isAllowed(event.sender) || (event.type !== 'm.room.message' && event.type !== 'm.room.encrypted')) return;
    await this.#outbox.reply(event, 'dead-letter', replies.gaveUp(), { thread: true }).catch((sendError: unknown) => {
      this.#o.logger.warn({ event_id: event.event_id, err: errorMessage(sendError) }, 'could not tell the sender about the dead letter');
    });
  }

  /** Posts the crypto step's notices (e.g. an allowed user's identity changed). */
  async announce(notices: readonly Notice[]): Promise<void> {
    for (const notice of notices) {
      await this.#o.rooms.send(notice.roomId, replies.noticeContent(replies.plain(notice.text)), notice.key).catch((error: unknown) => {
        this.#o.logger.error({ room_id: notice.roomId, err: errorMessage(error) }, 'could not send a notice');
      });
    }
  }

  async #handleOne(incoming: IncomingEvent): Promise<void> {
    const { event } = incoming;
    this.#o.metrics.events.inc({ type: event.type });
    if (event.sender === this.#o.userId) return; // our own echo and replies: never commands
    if (event.type === 'm.room.member' && event.state_key === this.#o.userId) {
      await this.#membership(event);
    } else if (incoming.decryptionFailure || incoming.encrypted || messageText(event) !== undefined || event.type === 'm.reaction') {
      await this.#message(incoming);
    }
  }

  /**
   * Runs `work` for an event at most once, ever: the claim is durable before anything is done. An
   * event claimed before whose handling never finished (the bot died in the middle) is resumed:
   * `work` gets `resumed = true` and must not repeat what may have happened.
   */
  async #once(event: RoomEvent, log: Logger, work: (resumed: boolean) => Promise<void>): Promise<void> {
    const first = this.#o.state.claimEvent(event.event_id, event.room_id);
    if (!first && this.#o.state.wasFinished(event.event_id) !== false) {
      log.debug('event already handled; skipping');
      return;
    }
    if (!first) log.warn('redelivered an event whose handling was interrupted; finishing it from what was recorded');
    faultPoint('after-claim');
    this.#acted++;
    await work(!first);
    this.#o.state.finishEvent(event.event_id);
  }

  async #membership(event: RoomEvent): Promise<void> {
    if (event.content['membership'] !== 'invite') return;
    const log = this.#o.logger.child({ room_id: event.room_id, event_id: event.event_id, inviter: event.sender });
    // /sync shows an invite twice: as stripped state, then as the timeline event once joined.
    const answered = Number(this.#o.state.get(`invite-answered:${event.room_id}`) ?? -1);
    if (event.origin_server_ts <= answered) return;
    await this.#once(event, log, async () => {
      // Leave and join are idempotent, so a resumed invite simply answers again.
      if (!this.#policy.isAllowed(event.sender)) {
        log.warn('declining invite from a user who is not allowed');
        await this.#o.rooms.leave(event.room_id, 'This bot only joins rooms when invited by an allowed user.');
      } else {
        await this.#o.rooms.join(event.room_id);
        log.info('joined room on invite');
        await this.#outbox.reply(event, 'hello', this.#targets.hello(event));
      }
      this.#o.state.set(`invite-answered:${event.room_id}`, String(event.origin_server_ts));
    });
  }

  async #message(incoming: IncomingEvent): Promise<void> {
    const { event } = incoming;
    const log = this.#o.logger.child({ room_id: event.room_id, event_id: event.event_id, sender: event.sender });
    if (!this.#policy.isAllowed(event.sender)) {
      log.debug({ encrypted: incoming.encrypted }, 'ignoring a message from a user who is not allowed');
      return;
    }
    const failure = incoming.decryptionFailure;
    if (failure) {
      await this.#once(event, log, async (resumed) => {
        if (!resumed) {
          this.#o.metrics.undecryptable.inc({ reason: failure.reason });
          log.warn({ reason: failure.reason, detail: failure.message }, 'could not decrypt a message from an allowed user');
        }
        await this.#outbox.reply(event, 'result', this.#policy.undecryptable(failure.reason), { thread: true });
      });
      return;
    }
    // A reaction to one of the bot's buttons is the second way in; from here on it is a typed command.
    const pressed = event.type === 'm.reaction';
    const parsed = pressed ? this.#buttons.parse(event) : parseCommand(messageText(event) ?? '', this.#o.commandPrefix, this.#targets.words);
    if (parsed.kind === 'ignore') return;
    await this.#once(event, log, (resumed) => this.#respond(incoming, parsed, log, resumed, pressed));
  }

  /** Answers a claimed message: unknown word, refusal, which target, too late, or run the command. */
  async #respond(incoming: IncomingEvent, parsed: Exclude<Parsed, { kind: 'ignore' }>, log: Logger, resumed: boolean, pressed = false): Promise<void> {
    const { event } = incoming;
    if (resumed && this.#outbox.has(event.event_id, 'result')) {
      // The outcome was decided (and maybe sent) before the restart: say exactly that again, and
      // finish its buttons if adding them had begun. The target is chosen from the command, the
      // sender and the room alone, so it is the one chosen before.
      const sent = await this.#outbox.resend(event.event_id);
      for (const runner of this.#targets.all) runner.progress.attach(event.event_id, sent.get('result'));
      const chosen = parsed.kind === 'command' ? this.#targets.choose(parsed, event) : undefined;
      if (chosen?.kind === 'one' && this.#buttons.begun(event)) await this.#buttons.add(event, sent.get('result'), chosen.runner.key);
      return;
    }
    if (parsed.kind === 'unknown') {
      this.#o.metrics.commands.inc({ command: 'unknown', outcome: 'answered', target: '' });
      await this.#outbox.reply(event, 'result', replies.unknown(parsed.word, this.#targets.help(event)));
      return;
    }
    if (parsed.kind === 'invalid') {
      this.#o.metrics.commands.inc({ command: parsed.name, outcome: 'answered', target: '' });
      await this.#outbox.reply(event, 'result', this.#targets.badArgument(parsed));
      return;
    }
    if (parsed.kind === 'approve') {
      const context = { policy: this.#policy, devices: this.#o.devices, prefix: this.#o.commandPrefix, metrics: this.#o.metrics, log };
      await this.#outbox.reply(event, 'result', await answerApproval(incoming, parsed, context));
      return;
    }
    const refusal = this.#policy.refusal(incoming);
    if (refusal) {
      this.#o.metrics.commands.inc({ command: parsed.name, outcome: 'refused', target: '' });
      log.warn({ command: parsed.name, device_id: incoming.senderDevice?.deviceId, why: incoming.senderDevice?.why }, 'refusing command from an untrusted device');
      await this.#outbox.reply(event, 'result', refusal);
      return;
    }
    const chosen = this.#targets.choose(parsed, event);
    if (chosen.kind === 'answer') {
      // Which one?, no such target, not yours to control (here), and help: nothing to run.
      this.#o.metrics.commands.inc({ command: parsed.name, outcome: chosen.outcome, target: chosen.runner?.name ?? '' });
      if (chosen.outcome === 'refused') log.warn({ command: parsed.name, target: chosen.runner?.name }, 'refusing a command for a target the sender may not control from this room');
      // `help` is a command carried out, echoed as ever; a question back or a refusal is not.
      if (parsed.name === 'help') await this.#echo(event, parsed.word, pressed);
      await this.#outbox.reply(event, 'result', chosen.reply);
      return;
    }
    if (chosen.kind === 'all') {
      this.#o.metrics.commands.inc({ command: 'status', outcome: 'ok', target: 'all' });
      await this.#echo(event, parsed.word, pressed);
      await this.#outbox.reply(event, 'result', await this.#targets.statusAll(chosen.runners));
      return;
    }
    await runTargetCommand(this.#flow, incoming, chosen.runner, chosen.command, { log, resumed, pressed });
  }

  /** The old bot's echo of an accepted command (`bot.echo`). */
  #echo(event: RoomEvent, word: string, pressed: boolean): Promise<unknown> {
    return this.#o.echo ? this.#outbox.reply(event, 'echo', replies.echo(pressed ? `${word} (button)` : word)) : Promise.resolve();
  }
}
