/**
 * Reaction buttons, for phones: the bot puts ▶️ ⏹️ 🔄 under its status and start/stop replies, and
 * an allowed user's reaction to one of those replies is a command. Parsing a reaction is all this
 * module does on the way in: the bot then runs it through the same claim, policy, trust check, age
 * limit and echo as a typed command.
 */
import type { Logger } from '../log.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { StateDb } from '../store/state-db.ts';
import type { CommandName, Parsed } from './commands.ts';
import type { Outbox } from './outbox.ts';

/** The buttons, in the order they are added. Sent with the emoji variation selector (U+FE0F), as clients' pickers do. */
export const BUTTONS: ReadonlyArray<{ readonly key: string; readonly name: CommandName }> = [
  { key: '▶️', name: 'start' },
  { key: '⏹️', name: 'stop' },
  { key: '🔄', name: 'status' },
];

/** Clients send keys with or without the variation selectors (U+FE0F emoji, U+FE0E text): compared without them. */
const bare = (key: string): string => key.replace(/[\uFE0E\uFE0F]/g, '');
const BY_KEY: ReadonlyMap<string, CommandName> = new Map(BUTTONS.map((b) => [bare(b.key), b.name]));

/** Commands whose reply carries the buttons. */
const WITH_BUTTONS: ReadonlySet<CommandName> = new Set(['start', 'stop', 'status']);

export class Buttons {
  readonly #enabled: boolean;
  readonly #state: StateDb;
  readonly #outbox: Outbox;
  readonly #logger: Logger;
  /** The target's name in chat from the key its buttons were recorded with; undefined: no such target now. */
  readonly #nameOfKey: (key: string) => string | undefined;
  readonly #pending = new Set<Promise<void>>();

  constructor(options: { enabled: boolean; state: StateDb; outbox: Outbox; logger: Logger; nameOfKey: (key: string) => string | undefined }) {
    this.#enabled = options.enabled;
    this.#nameOfKey = options.nameOfKey;
    this.#state = options.state;
    this.#outbox = options.outbox;
    this.#logger = options.logger;
  }

  /**
   * The command an `m.reaction` presses. Anything else is ignored in silence: buttons off, not an
   * annotation, an unknown key, or a target that is not a reply the bot sent with buttons in this
   * room (an arbitrary or forged event id, someone else's message, a bot message older than the
   * state store keeps).
   */
  parse(event: RoomEvent): Parsed {
    if (!this.#enabled) return { kind: 'ignore' };
    const relates = event.content['m.relates_to'] as { rel_type?: unknown; event_id?: unknown; key?: unknown } | undefined;
    if (relates?.rel_type !== 'm.annotation' || typeof relates.event_id !== 'string' || typeof relates.key !== 'string') return { kind: 'ignore' };
    const name = BY_KEY.get(bare(relates.key));
    const message = name && this.#state.buttonMessage(relates.event_id, event.room_id);
    if (!name || !message) return { kind: 'ignore' };
    // A message from before there were targets has none: the button then means what the bare command does.
    if (message.target === undefined) return { kind: 'command', name, word: name };
    const target = this.#nameOfKey(message.target);
    if (target === undefined) return { kind: 'ignore' }; // its target was removed from the config
    return { kind: 'command', name, word: name, target };
  }

  /** True if the reply to this command gets the buttons. */
  carries(parsed: Parsed): boolean {
    return this.#enabled && parsed.kind === 'command' && WITH_BUTTONS.has(parsed.name);
  }

  /** True if adding the buttons to the reply to `source` had begun (a resumed event finishes it). */
  begun(source: RoomEvent): boolean {
    return this.#outbox.has(source.event_id, 'react.1');
  }

  /**
   * Adds the buttons in the background: the transaction is acknowledged without waiting for them,
   * so Synapse can push the next command at once (waiting took ~70 ms, three round trips, before
   * every next command). A crash before they are sent leaves that reply without some of them.
   */
  later(source: RoomEvent, replyId: string | undefined, target: string): void {
    const sending = this.add(source, replyId, target)
      .catch((error: unknown) => this.#logger.warn({ event_id: source.event_id, err: error instanceof Error ? error.message : String(error) }, 'could not add the reaction buttons'))
      .finally(() => this.#pending.delete(sending));
    this.#pending.add(sending);
  }

  /** Resolves when the buttons being added in the background are sent (or given up). */
  async settled(): Promise<void> {
    await Promise.all([...this.#pending]);
  }

  /**
   * Adds the buttons under `replyId`, the reply to `source` that was just sent; `target` is the key
   * (`namespace/deployment`) of the target they act on. After the reply, so they never delay it.
   * Each reaction is recorded before it is sent, with a transaction id derived from `source`
   * (`<event>.react.<n>`): a redelivery re-sends the recorded ones (the outbox's `resend`) and this
   * adds only those not recorded yet, so none is ever sent twice. A refused one (a 4xx, logged by
   * the outbox) ends it: the next ones would be refused too.
   */
  async add(source: RoomEvent, replyId: string | undefined, target: string): Promise<void> {
    if (!this.#enabled || replyId === undefined) return;
    this.#state.addButtonMessage(replyId, source.room_id, target);
    for (const [i, button] of BUTTONS.entries()) {
      const content = { 'm.relates_to': { rel_type: 'm.annotation', event_id: replyId, key: button.key } };
      if (!this.#outbox.recordReaction(source.event_id, i + 1, source.room_id, content)) continue;
      if ((await this.#outbox.sendRecorded(source.event_id, `react.${i + 1}`)) === undefined) {
        this.#logger.debug({ event_id: source.event_id, reply_id: replyId }, 'reaction buttons left out');
        return;
      }
    }
  }
}
