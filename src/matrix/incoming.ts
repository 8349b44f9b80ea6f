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
    /**
     * Set when the device is refused but may be approved (trust on first use, a user without
     * cross-signing): the devices of the same user that can approve it with `approve ID`.
     */
    readonly approvers?: readonly string[] | undefined;
  };
}

/** What became of an `approve DEVICEID` (see src/crypto/device-pins.ts). */
export type Approval =
  | { readonly kind: 'approved'; readonly already: boolean }
  /** The policy does not work by approvals: `why` says what to do instead. */
  | { readonly kind: 'not-applicable'; readonly why: string }
  | { readonly kind: 'refused'; readonly reason: 'self' | 'approver-not-pinned' | 'unknown-device' };

/** The crypto step's side of `approve`: pins `deviceId` of `userId`, asked from their device `byDeviceId`. */
export interface DeviceApprover {
  approve(userId: string, byDeviceId: string, deviceId: string): Promise<Approval>;
}

/** Something the crypto step wants said in a room (e.g. an allowed user's identity changed). */
export interface Notice {
  readonly roomId: string;
  readonly text: string;
  /** Stable per notice, so a retried batch does not post it twice. */
  readonly key: string;
}
