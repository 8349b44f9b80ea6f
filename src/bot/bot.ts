import type { Logger } from '../log.ts';
import { KubeError, type DeploymentTarget, type Kube } from '../kube/kube.ts';
import { messageText, type RoomEvent } from '../matrix/events.ts';
import type { IncomingEvent, Notice } from '../matrix/incoming.ts';
import type { Metrics } from '../metrics.ts';
import type { StateDb } from '../store/state-db.ts';
import { parseCommand, type CommandName, type Parsed } from './commands.ts';
import { Policy } from './policy.ts';
import * as replies from './replies.ts';
import type { Reply } from './replies.ts';

/** What the bot does to rooms; replies are encrypted underneath when the room is. */
export interface RoomActions {
  join(roomId: string): Promise<void>;
  leave(roomId: string, reason: string): Promise<void>;
  send(roomId: string, content: Record<string, unknown>, txnId: string): Promise<void>;
}

export interface BotOptions {
  readonly userId: string;
  readonly allowedUsers: readonly string[];
  readonly target: DeploymentTarget;
  readonly echo: boolean;
  readonly commandPrefix: string;
  readonly maxCommandAgeSeconds: number;
  readonly kube: Kube;
  readonly rooms: RoomActions;
  readonly state: StateDb;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
}

/** Turns room events into joins, Kubernetes calls and replies. Knows nothing of transports or crypto. */
export class Bot {
  readonly #o: BotOptions;
  readonly #policy: Policy;
  readonly #now: () => number;

  constructor(options: BotOptions) {
    this.#o = options;
    this.#policy = new Policy(options.userId, options.allowedUsers);
    this.#now = options.now ?? Date.now;
  }

  /** Handles events in order. Throws only for failures worth a redelivery (e.g. a join that failed). */
  async handle(events: readonly IncomingEvent[]): Promise<void> {
    for (const incoming of events) {
      const { event } = incoming;
      this.#o.metrics.events.inc({ type: event.type });
      if (event.sender === this.#o.userId) continue; // our own echo and replies: never commands
      if (event.type === 'm.room.member' && event.state_key === this.#o.userId) {
        await this.#membership(event);
      } else if (incoming.decryptionFailure || messageText(event) !== undefined) {
        await this.#message(incoming);
      }
    }
  }

  /** Posts the crypto step's notices (e.g. an allowed user's identity changed). */
  async announce(notices: readonly Notice[]): Promise<void> {
    for (const notice of notices) {
      await this.#o.rooms.send(notice.roomId, replies.noticeContent(replies.plain(notice.text)), notice.key).catch((error: unknown) => {
        this.#o.logger.error({ room_id: notice.roomId, err: errorSummary(error) }, 'could not send a notice');
      });
    }
  }

  async #membership(event: RoomEvent): Promise<void> {
    if (event.content['membership'] !== 'invite') return;
    const log = this.#o.logger.child({ room_id: event.room_id, event_id: event.event_id, inviter: event.sender });
    if (this.#o.state.wasHandled(event.event_id)) return;
    // /sync shows an invite twice: as stripped state, then as the timeline event once joined.
    const answered = Number(this.#o.state.get(`invite-answered:${event.room_id}`) ?? -1);
    if (event.origin_server_ts <= answered) return;
    if (!this.#policy.isAllowed(event.sender)) {
      log.warn('declining invite from a user who is not allowed');
      await this.#o.rooms.leave(event.room_id, 'This bot only joins rooms when invited by an allowed user.');
    } else {
      await this.#o.rooms.join(event.room_id);
      log.info('joined room on invite');
      await this.#reply(event, replies.hello(this.#o.target, this.#o.commandPrefix), 'hello');
    }
    // Claimed after the join so a failed join is retried on redelivery; join and hello are idempotent.
    this.#o.state.claimEvent(event.event_id, event.room_id);
    this.#o.state.set(`invite-answered:${event.room_id}`, String(event.origin_server_ts));
  }

  async #message(incoming: IncomingEvent): Promise<void> {
    const { event } = incoming;
    const log = this.#o.logger.child({ room_id: event.room_id, event_id: event.event_id, sender: event.sender });
    if (!this.#policy.isAllowed(event.sender)) {
      log.debug('ignoring message from a user who is not allowed');
      return;
    }
    if (incoming.decryptionFailure) {
      if (!this.#o.state.claimEvent(event.event_id, event.room_id)) return;
      this.#o.metrics.undecryptable.inc({ reason: incoming.decryptionFailure.reason });
      log.warn({ reason: incoming.decryptionFailure.reason, detail: incoming.decryptionFailure.message }, 'could not decrypt a message from an allowed user');
      await this.#reply(event, this.#policy.undecryptable(incoming.decryptionFailure.reason), 'undecryptable', { thread: true });
      this.#o.state.finishEvent(event.event_id);
      return;
    }
    if (incoming.senderDevice?.announce) await this.#reply(event, replies.plain(incoming.senderDevice.announce), 'device-pinned');
    const parsed = parseCommand(messageText(event) ?? '', this.#o.commandPrefix);
    if (parsed.kind === 'ignore') return;
    // At most once, ever: the claim is durable before anything is done, so a redelivered or
    // retried event (same id, any transaction id) finds it and does nothing.
    if (!this.#o.state.claimEvent(event.event_id, event.room_id)) {
      if (this.#o.state.wasFinished(event.event_id) === false && parsed.kind === 'command') {
        // Claimed, then the bot died before answering: it may or may not have acted. Say so, once.
        this.#o.state.finishEvent(event.event_id);
        log.warn({ command: parsed.name }, 'redelivered a command whose handling was interrupted; not running it again');
        await this.#reply(event, await this.#interrupted(parsed.word, parsed.name), 'interrupted');
      } else {
        log.debug('event already handled; skipping');
      }
      return;
    }
    await this.#respond(incoming, parsed, log);
    this.#o.state.finishEvent(event.event_id);
  }

  /** Answers a claimed message: unknown word, refusal, too late, or run the command. */
  async #respond(incoming: IncomingEvent, parsed: Exclude<Parsed, { kind: 'ignore' }>, log: Logger): Promise<void> {
    const { event } = incoming;
    if (parsed.kind === 'unknown') {
      this.#o.metrics.commands.inc({ command: 'unknown', outcome: 'answered' });
      await this.#reply(event, replies.unknown(parsed.word, this.#o.target, this.#o.commandPrefix), 'unknown');
      return;
    }
    const refusal = this.#policy.refusal(incoming);
    if (refusal) {
      this.#o.metrics.commands.inc({ command: parsed.name, outcome: 'refused' });
      log.warn({ command: parsed.name, device_id: incoming.senderDevice?.deviceId, why: incoming.senderDevice?.why }, 'refusing command from an untrusted device');
      await this.#reply(event, refusal, 'refused');
      return;
    }
    const ageSeconds = (this.#now() - event.origin_server_ts) / 1000;
    if (this.#o.maxCommandAgeSeconds > 0 && ageSeconds > this.#o.maxCommandAgeSeconds) {
      this.#o.metrics.commands.inc({ command: parsed.name, outcome: 'too-old' });
      log.warn({ command: parsed.name, age_s: Math.round(ageSeconds) }, 'not running a command that arrived too late');
      await this.#reply(event, replies.tooOld(parsed.word, ageSeconds, this.#o.maxCommandAgeSeconds), 'too-old');
      return;
    }
    // The echo goes out while the command runs; the result waits for it, so they arrive in order.
    const echoed = this.#o.echo ? this.#reply(event, replies.echo(parsed.word), 'echo') : Promise.resolve();
    const reply = await this.#run(parsed.name, log);
    await echoed;
    await this.#reply(event, reply, 'result');
  }

  async #interrupted(word: string, command: CommandName): Promise<Reply> {
    if (command !== 'start' && command !== 'stop') return this.#run(command, this.#o.logger);
    let now: Reply;
    try {
      now = replies.status(this.#o.target, await this.#o.kube.status(this.#o.target));
    } catch (error) {
      now = error instanceof KubeError ? replies.kubeFailure('get the status of', this.#o.target, error) : replies.internalFailure('get the status of', this.#o.target);
    }
    return replies.interrupted(word, now);
  }

  async #run(command: CommandName, log: Logger): Promise<Reply> {
    const { target, kube } = this.#o;
    const action = command === 'status' ? 'get the status of' : command;
    try {
      let reply: Reply;
      switch (command) {
        case 'help':
          reply = replies.help(target, this.#o.commandPrefix);
          break;
        case 'status':
          reply = replies.status(target, await kube.status(target));
          break;
        case 'start':
        case 'stop': {
          const result = await kube.scale(target, command === 'start' ? 1 : 0);
          log.info({ command, namespace: target.namespace, deployment: target.name, from: result.previous, to: result.desired }, 'scaled deployment');
          reply = replies.scaled(target, result);
          break;
        }
      }
      this.#o.metrics.commands.inc({ command, outcome: 'ok' });
      return reply;
    } catch (error) {
      this.#o.metrics.commands.inc({ command, outcome: 'error' });
      if (error instanceof KubeError) {
        log.error({ command, kind: error.kind, status: error.status, detail: error.cause instanceof Error ? error.cause.message : undefined }, `kubernetes: ${error.human}`);
        return replies.kubeFailure(action, target, error);
      }
      log.error({ command, err: error }, 'command failed');
      return replies.internalFailure(action, target);
    }
  }

  /**
   * Sends a notice. A failed reply is logged, not thrown: the command has run, and a redelivery
   * would not run it again anyway (it is claimed), so failing the batch would gain nothing.
   */
  async #reply(to: RoomEvent, reply: Reply, purpose: string, options: { thread?: boolean } = {}): Promise<void> {
    const content = replies.noticeContent(reply);
    if (options.thread) {
      // Reply into the event's thread, or start one on it.
      const relates = to.content['m.relates_to'] as { rel_type?: unknown; event_id?: unknown } | undefined;
      const root = relates?.rel_type === 'm.thread' && typeof relates.event_id === 'string' ? relates.event_id : to.event_id;
      content['m.relates_to'] = { rel_type: 'm.thread', event_id: root, is_falling_back: true, 'm.in_reply_to': { event_id: to.event_id } };
    }
    try {
      await this.#o.rooms.send(to.room_id, content, `${to.event_id}.${purpose}`);
    } catch (error) {
      this.#o.logger.error({ room_id: to.room_id, event_id: to.event_id, purpose, err: errorSummary(error) }, 'could not send reply');
    }
  }
}

function errorSummary(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
