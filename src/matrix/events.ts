/** The slice of the Matrix event format the bot reads. Unknown fields are kept, not typed. */
import { isEventId, isRoomId, isUserId } from './ids.ts';

export interface RoomEvent {
  readonly event_id: string;
  readonly room_id: string;
  readonly sender: string;
  readonly type: string;
  readonly origin_server_ts: number;
  readonly content: Record<string, unknown>;
  readonly state_key?: string;
  readonly unsigned?: Record<string, unknown>;
}

export interface ToDeviceEvent {
  readonly type: string;
  readonly sender: string;
  readonly content: Record<string, unknown>;
  /** Appservice (MSC2409) to-device events name their recipient; /sync ones do not. */
  readonly to_user_id?: string;
  readonly to_device_id?: string;
}

/** A message's text, or undefined for anything that is not a text-like m.room.message. */
export function messageText(event: RoomEvent): string | undefined {
  if (event.type !== 'm.room.message') return undefined;
  const { msgtype, body } = event.content;
  if (typeof body !== 'string') return undefined;
  if (msgtype !== 'm.text' && msgtype !== 'm.notice' && msgtype !== 'm.emote') return undefined;
  // An edit (m.replace) repeats an older command; acting on it would run that command twice.
  if (isEdit(event.content)) return undefined;
  return body;
}

/** An edit (`m.replace`) of an earlier message: its body is the new text marked with "* ". */
export function isEdit(content: Record<string, unknown>): boolean {
  return (content['m.relates_to'] as { rel_type?: unknown } | undefined)?.rel_type === 'm.replace';
}

/**
 * Longest message body, formatted body or (encrypted) ciphertext that can still be a command, in
 * characters. A command is one word after the configured prefix ("!toggle status"); with what
 * clients add (a formatted body, mentions, a reply relation) and, encrypted, the payload's room id
 * and type in base64 (4/3 of the plaintext plus ~100 characters of Megolm framing), it stays under
 * 1 KiB. Anything larger is chatter, pasted text or an attachment's caption: the bot neither
 * decrypts, answers nor keeps it. Before, 60 transactions of the largest events Synapse accepts
 * (100 of 64 KiB each) grew the bot from 117 to 207 MiB resident and took ~1.9 s each.
 */
export const MAX_COMMAND_CHARS = 4096;

/**
 * What the appservice route puts in place of such a string, which it never reads into memory
 * (`StringPruner`). A client could send it too: its message is then left out, as it is no command.
 */
export const OVERSIZED_MARK = '\u0000oversized';

const tooLong = (value: unknown): boolean => value === OVERSIZED_MARK || (typeof value === 'string' && value.length > MAX_COMMAND_CHARS);

/** True for a room message (plaintext or encrypted) too large to be a command. State events never are. */
export function isOversizedMessage(event: RoomEvent): boolean {
  if (event.state_key !== undefined) return false;
  const c = event.content;
  if (event.type === 'm.room.encrypted') return tooLong(c['ciphertext']);
  if (event.type === 'm.room.message') return tooLong(c['body']) || tooLong(c['formatted_body']);
  return false;
}

/**
 * The events worth handling, and how many oversized messages were left out. Both sources apply it
 * while building a batch, so nothing later (decryption, the policy, the pending-decryption table,
 * the backstop) ever holds those messages.
 */
export function withoutOversized<T extends RoomEvent>(events: readonly T[]): { kept: T[]; oversized: number } {
  const kept = events.filter((e) => !isOversizedMessage(e));
  return { kept, oversized: events.length - kept.length };
}

/** Why a value is not a room event the bot can handle, or undefined when it is one. */
export function roomEventProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not an object';
  const e = value as Record<string, unknown>;
  if (!isEventId(e['event_id'])) return 'malformed event_id';
  if (!isRoomId(e['room_id'])) return 'malformed room_id';
  if (!isUserId(e['sender'])) return 'malformed sender';
  if (typeof e['type'] !== 'string') return 'malformed type';
  if (e['content'] === null || typeof e['content'] !== 'object' || Array.isArray(e['content'])) return 'malformed content';
  if (typeof e['origin_server_ts'] !== 'number') return 'malformed origin_server_ts';
  if (e['state_key'] !== undefined && typeof e['state_key'] !== 'string') return 'malformed state_key';
  // The bot's own membership is what it acts on: a member event must name a user.
  if (e['type'] === 'm.room.member' && !isUserId(e['state_key'])) return 'member event with a malformed state_key';
  return undefined;
}

export function isRoomEvent(value: unknown): value is RoomEvent {
  return roomEventProblem(value) === undefined;
}

/** The strings of a JSON array (anything else is dropped); [] for a non-array. */
export function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

export function isToDeviceEvent(value: unknown): value is ToDeviceEvent {
  if (value === null || typeof value !== 'object') return false;
  const e = value as Record<string, unknown>;
  return typeof e['type'] === 'string' && typeof e['sender'] === 'string' && e['content'] !== null && typeof e['content'] === 'object' && !Array.isArray(e['content']);
}
