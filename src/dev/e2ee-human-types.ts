/** The E2EE human's public types (e2ee-human.ts implements them). */
import type { MatrixClient } from 'matrix-js-sdk';

export interface E2eeHumanOptions {
  baseUrl: string;
  userId: string;
  accessToken: string;
  deviceId: string;
  /** The account password: interactive auth when cross-signing keys are (re)placed. */
  password: string;
}

export interface StartE2eeHumanOptions extends E2eeHumanOptions {
  /**
   * Default true: make sure this device is signed by the user's cross-signing identity, creating
   * the identity when the user has none. False: leave the device unsigned and any existing
   * identity untouched (a "device not verified by its owner").
   */
  crossSign?: boolean;
  /**
   * With `crossSign`, when the user already has an identity on the server whose private keys this
   * (new) device does not hold: true replaces it with a new identity ("identity changed");
   * false (default) refuses with an error instead of silently resetting it.
   */
  replaceIdentity?: boolean;
}

/** One timeline message as this client sees it. */
export interface Message {
  eventId: string;
  roomId: string;
  sender: string;
  /** Always `m.room.message` (an undecryptable event has the SDK's `m.bad.encrypted` msgtype). */
  type: string;
  body: string | undefined;
  msgtype: string | undefined;
  /** Sent as `m.room.encrypted`. */
  encrypted: boolean;
  /** The SDK could not decrypt it (body is then the SDK's "Unable to decrypt" text). */
  decryptionFailed: boolean;
  /** The SDK's `DecryptionFailureCode` when `decryptionFailed`. */
  decryptionFailureReason: string | undefined;
  /** `m.relates_to` (threads, replies, edits). */
  relatesTo: Record<string, unknown> | undefined;
  /** The body this client shows for it now: the latest edit's (`m.replace`) when it has applied one, else `body`. */
  shown: string | undefined;
  /** The sending device: from the encrypted content, or the device owning the Megolm sender key. */
  senderDeviceId: string | undefined;
  content: Record<string, unknown>;
  ts: number;
  /** For Megolm-encrypted events: the session and message index, read from the ciphertext as sent. */
  megolm: { sessionId: string; index: number } | undefined;
}

/** One reaction (an `m.reaction` annotation) as this client sees it, once decrypted when it was encrypted. */
export interface Reaction {
  eventId: string;
  sender: string;
  /** The event reacted to, and the key (the emoji). */
  target: string | undefined;
  key: string | undefined;
  encrypted: boolean;
}

export interface DeviceTrust {
  /** This client has the device in the owner's device list. */
  known: boolean;
  /** The owner's self-signing key has signed the device ("verified by its owner"). */
  signedByOwner: boolean;
  /** The device is verified through cross-signing (owner's identity verified by us + signed by it). */
  crossSigningVerified: boolean;
  /** The device's Ed25519 fingerprint. */
  ed25519: string | undefined;
}

export interface E2eeHuman {
  readonly userId: string;
  readonly deviceId: string;
  /** Escape hatch: the underlying matrix-js-sdk client. */
  readonly client: MatrixClient;
  /** Creates a private room with `m.room.encryption` (Megolm), inviting `invite`; waits until this client knows it as encrypted. */
  createEncryptedRoom(invite: string[], options?: { name?: string; isDirect?: boolean }): Promise<string>;
  invite(roomId: string, userId: string): Promise<void>;
  /** Joins and waits until the room (with its state) is in this client's store. */
  join(roomId: string): Promise<void>;
  /** Waits until this client sees `userId` with `membership` (default `join`) in the room: send after that so they get the room key. */
  waitForMembership(roomId: string, userId: string, membership?: string, timeoutMs?: number): Promise<void>;
  /** Sends an `m.text` (encrypted by the SDK in an encrypted room); returns the event id. */
  send(roomId: string, body: string): Promise<string>;
  /**
   * The room's messages seen so far, in arrival order: plaintext ones, decrypted ones and ones the
   * SDK failed to decrypt (`decryptionFailed`); an encrypted event appears once its first decryption
   * attempt is over.
   */
  messages(roomId: string): Message[];
  /** Waits until `count` (default 1) messages match; throws, listing what was seen, on timeout (default 20 s). */
  waitForMessages(roomId: string, match: (m: Message) => boolean, options?: { count?: number; timeoutMs?: number }): Promise<Message[]>;
  /**
   * Reacts to `eventId` with `key`; returns the reaction's event id. matrix-js-sdk (Element Web)
   * sends reactions in plaintext even in an encrypted room, by design; `encrypt` sends it
   * encrypted instead, as clients on the Rust SDK (Element X) do.
   */
  react(roomId: string, eventId: string, key: string, options?: { encrypt?: boolean }): Promise<string>;
  /** The room's reactions seen so far, in arrival order (encrypted ones once decrypted). */
  reactions(roomId: string): Reaction[];
  /** Waits until `count` (default 1) reactions match; throws on timeout (default 20 s). */
  waitForReactions(roomId: string, match: (r: Reaction) => boolean, options?: { count?: number; timeoutMs?: number }): Promise<Reaction[]>;
  /** How this client sees another device (keys are downloaded afresh first). */
  deviceTrust(userId: string, deviceId: string): Promise<DeviceTrust>;
  /** Sends an `m.room.encrypted` event of a Megolm session nobody ever received; returns its event id. */
  sendUndecryptable(roomId: string): Promise<string>;
  stop(): Promise<void>;
}
