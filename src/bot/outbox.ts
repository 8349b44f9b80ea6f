import { classify, errorMessage } from '../failure.ts';
import { faultPoint } from '../fault-points.ts';
import type { Logger } from '../log.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { StateDb } from '../store/state-db.ts';
import { noticeContent, type Reply } from './replies.ts';

/** Sends a room event (`m.room.message` unless `type` says otherwise); encrypted underneath when the room is. Resolves to its event id when known. */
export type SendToRoom = (roomId: string, content: Record<string, unknown>, txnId: string, type?: string) => Promise<string | void>;

/** Purposes of recorded reaction buttons (`react.1` …): sent as `m.reaction`, every other purpose as `m.room.message`. */
export const REACTION_PURPOSE = /^react\.\d+$/;

/**
 * Replies to events, exactly once. Each reply is recorded in the state store before it is sent,
 * and sent with a transaction id derived from the event and the reply's purpose: a redelivered
 * event re-sends what was recorded (the homeserver drops the copy if the first one arrived)
 * rather than deciding again, so a crash never turns "▶️ Starting" into "maybe it ran".
 */
export class Outbox {
  readonly #state: StateDb;
  readonly #send: SendToRoom;
  readonly #logger: Logger;

  constructor(state: StateDb, send: SendToRoom, logger: Logger) {
    this.#state = state;
    this.#send = send;
    this.#logger = logger;
  }

  /**
   * Records and sends a reply to `to`. A reply recorded earlier for the same event and purpose
   * wins over `reply`. Throws only when a redelivery may succeed (the homeserver is unavailable);
   * a refusal (e.g. 403: the bot is no longer in the room) is logged, since retrying cannot help.
   */
  async reply(to: RoomEvent, purpose: string, reply: Reply, options: { thread?: boolean } = {}): Promise<string | undefined> {
    return this.#deliver(to.event_id, purpose, to.room_id, this.record(to, purpose, reply, options));
  }

  /**
   * Records and sends a notice that answers no event (the timer's warning and automatic stop, a
   * change announced in another room), exactly once: `id` and `purpose` must be derived from what
   * it is about (e.g. the run's id and stop time), never random, so that a retry after a crash
   * re-sends the recorded notice with the same transaction id.
   */
  async say(id: string, purpose: string, roomId: string, reply: Reply): Promise<void> {
    await this.#deliver(id, purpose, roomId, this.#state.recordReply(id, purpose, roomId, JSON.stringify(noticeContent(reply))));
  }

  /** Records a notice to `roomId` about the event `id` without sending it yet (`sendRecorded` or `resend` do). */
  recordNotice(id: string, purpose: string, roomId: string, reply: Reply): void {
    this.#state.recordReply(id, purpose, roomId, JSON.stringify(noticeContent(reply)));
  }

  /** Sends what was recorded for the event under `purpose`, if anything. */
  async sendRecorded(id: string, purpose: string): Promise<string | undefined> {
    const r = this.#state.recordedReplies(id).find((x) => x.purpose === purpose);
    return r ? this.#deliver(id, purpose, r.roomId, r.contentJson) : undefined;
  }

  /** Records a reply without sending it yet; returns what is recorded (an earlier record wins). */
  record(to: RoomEvent, purpose: string, reply: Reply, options: { thread?: boolean } = {}): string {
    const content = noticeContent(reply);
    if (options.thread) {
      // Reply into the event's thread, or start one on it.
      const relates = to.content['m.relates_to'] as { rel_type?: unknown; event_id?: unknown } | undefined;
      const root = relates?.rel_type === 'm.thread' && typeof relates.event_id === 'string' ? relates.event_id : to.event_id;
      content['m.relates_to'] = { rel_type: 'm.thread', event_id: root, is_falling_back: true, 'm.in_reply_to': { event_id: to.event_id } };
    }
    return this.#state.recordReply(to.event_id, purpose, to.room_id, JSON.stringify(content));
  }

  /** True if a reply with this purpose was recorded for the event (its outcome is known). */
  has(eventId: string, purpose: string): boolean {
    return this.#state.recordedReplies(eventId).some((r) => r.purpose === purpose);
  }

  /** Records a reaction (a reaction button) to the event `id` without sending it yet; returns whether it is new. */
  recordReaction(id: string, n: number, roomId: string, content: Record<string, unknown>): boolean {
    if (this.has(id, `react.${n}`)) return false;
    this.#state.recordReply(id, `react.${n}`, roomId, JSON.stringify(content));
    return true;
  }

  /** Records the `n`th edit of the reply to the event `id` (purpose `edit.<n>`, so transaction id `<id>.edit.<n>`) without sending it. */
  recordEdit(id: string, n: number, roomId: string, content: Record<string, unknown>): void {
    this.#state.recordReply(id, `edit.${n}`, roomId, JSON.stringify(content));
  }

  /**
   * Sends again, in order, every reply recorded for the event (after a crash or a failed send).
   * Returns the event ids the homeserver gave, by purpose (the same ones as the first time: same transaction ids).
   */
  async resend(eventId: string): Promise<Map<string, string | undefined>> {
    const sent = new Map<string, string | undefined>();
    for (const r of this.#state.recordedReplies(eventId)) sent.set(r.purpose, await this.#deliver(eventId, r.purpose, r.roomId, r.contentJson));
    return sent;
  }

  /** Returns the sent event's id, or undefined when the homeserver refused it (or did not say). */
  async #deliver(eventId: string, purpose: string, roomId: string, contentJson: string): Promise<string | undefined> {
    let sent: string | void;
    try {
      const type = REACTION_PURPOSE.test(purpose) ? 'm.reaction' : 'm.room.message';
      sent = await this.#send(roomId, JSON.parse(contentJson) as Record<string, unknown>, `${eventId}.${purpose}`, type);
    } catch (error) {
      const failure = classify(error);
      if (failure.transient) throw error;
      this.#logger.error({ room_id: roomId, event_id: eventId, purpose, reason: failure.reason, err: errorMessage(error) }, 'could not send reply; the homeserver refused it');
      return undefined;
    }
    faultPoint('after-send');
    return sent ?? undefined;
  }
}
