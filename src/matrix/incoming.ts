import type { RoomEvent } from './events.ts';

/** A room event as the crypto step hands it over: plaintext, decrypted, or failed to decrypt. */
export interface IncomingEvent {
  /** The plaintext event, or the decrypted one (with the room event's id, room and sender). */
  readonly event: RoomEvent;
  readonly encrypted: boolean;
  /** Set when an encrypted event could not be decrypted; `event` is then the encrypted one. */
  readonly decryptionFailure?: { readonly reason: 'missing-keys' | 'other'; readonly message: string };
  /** For decrypted events: what the crypto step knows of the sending device, judged by the trust policy. */
  readonly senderDevice?: {
    readonly deviceId: string | undefined;
    readonly trusted: boolean;
    readonly why: string;
    /** Said in the room before the command is handled (e.g. a newly pinned device). */
    readonly announce?: string | undefined;
  };
}

/** Something the crypto step wants said in a room (e.g. an allowed user's identity changed). */
export interface Notice {
  readonly roomId: string;
  readonly text: string;
  /** Stable per notice, so a retried batch does not post it twice. */
  readonly key: string;
}
