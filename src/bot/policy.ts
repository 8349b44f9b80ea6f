import type { IncomingEvent } from '../matrix/incoming.ts';
import { plain, type Reply } from './replies.ts';

/** Who may command the bot, and what to say when a command is refused. */
export class Policy {
  readonly #self: string;
  readonly #allowed: ReadonlySet<string>;

  constructor(self: string, allowedUsers: readonly string[]) {
    this.#self = self;
    this.#allowed = new Set(allowedUsers);
  }

  isAllowed(userId: string): boolean {
    return userId !== this.#self && this.#allowed.has(userId);
  }

  /** Why an allowed user's command must not run (an untrusted device), or undefined to run it. */
  refusal(incoming: IncomingEvent): Reply | undefined {
    const device = incoming.senderDevice;
    if (!incoming.encrypted || !device || device.trusted) return undefined;
    const text = `🔒 Not running this: it came from a device I do not trust (${device.why}). ` +
      'Verify the device from your other session, or ask the operator to re-pin your identity.';
    return plain(text);
  }

  undecryptable(reason: 'missing-keys' | 'other'): Reply {
    const text = reason === 'missing-keys'
      ? "🔐 I could not decrypt this message: its keys never reached me (they were probably sent while I was restarting). I did nothing. Please send the command again; if this keeps happening, restart your client's encryption session or start a new DM with me."
      : '🔐 I could not decrypt this message, so I did nothing. Please send the command again.';
    return plain(text);
  }
}
