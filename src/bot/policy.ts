import type { IncomingEvent } from '../matrix/incoming.ts';
import type { Parsed } from './commands.ts';
import { plain, untrustedDevice, type Reply } from './replies.ts';

/** Who may command the bot, and what to say when a command is refused. */
export class Policy {
  readonly #self: string;
  readonly #allowed: ReadonlySet<string>;
  /** The command prefix, for the `approve` a refusal tells the user to send. */
  readonly #prefix: string;

  constructor(self: string, allowedUsers: readonly string[], prefix = '') {
    this.#self = self;
    this.#allowed = new Set(allowedUsers);
    this.#prefix = prefix;
  }

  isAllowed(userId: string): boolean {
    return userId !== this.#self && this.#allowed.has(userId);
  }

  /**
   * Why an allowed user's command must not run (an untrusted device), or undefined to run it. An
   * `approve` goes through here too: only a device the bot obeys may approve another.
   */
  refusal(incoming: IncomingEvent, parsed?: Parsed): Reply | undefined {
    const device = incoming.senderDevice;
    if (!incoming.encrypted || !device || device.trusted) return undefined;
    return untrustedDevice({
      userId: incoming.event.sender, deviceId: device.deviceId, why: device.why, approvers: device.approvers, prefix: this.#prefix,
      approving: parsed?.kind === 'approve' ? parsed.deviceId || undefined : undefined,
    });
  }

  undecryptable(reason: 'missing-keys' | 'other'): Reply {
    const text = reason === 'missing-keys'
      ? "🔐 I could not decrypt this message: its keys never reached me (they were probably sent while I was restarting). I did nothing. Please send the command again; if this keeps happening, restart your client's encryption session or start a new DM with me."
      : '🔐 I could not decrypt this message, so I did nothing. Please send the command again.';
    return plain(text);
  }
}
