/**
 * Matrix identifier grammar (spec appendix "Identifier Grammar"), in one place: the config checks
 * allowed users with it, and everything that arrives from the homeserver is checked with it
 * before it reaches the crypto engine, whose constructors throw on a malformed id.
 */

/** Longest user, room or event id the spec allows, in bytes. */
const MAX_ID_BYTES = 255;

/** IPv4 literal, [IPv6 literal] or DNS name, with an optional port. */
const SERVER_NAME = /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9\-.]{1,255})(?::\d{1,5})?$/;
/** Localparts of user ids created today. */
const LOCALPART = /^[a-z0-9._=\-/+]+$/;
/** Localparts of older accounts, which servers and clients must still accept: printable ASCII but ':'. */
const HISTORICAL_LOCALPART = /^[\x21-\x39\x3b-\x7e]+$/;
/** Opaque ids (room, event): printable ASCII without spaces; room version 12 room ids have no server part. */
const OPAQUE = /^[\x21-\x7e]+$/;

export interface UserIdParts {
  readonly localpart: string;
  readonly serverName: string;
  /** The localpart uses characters only older accounts may have. */
  readonly historical: boolean;
}

function withinLength(id: string): boolean {
  return Buffer.byteLength(id, 'utf8') <= MAX_ID_BYTES;
}

export function isServerName(name: string): boolean {
  return SERVER_NAME.test(name);
}

/** Splits `@localpart:server` at the first colon; undefined when it is not a user id by the spec's grammar. */
export function parseUserId(id: string): UserIdParts | undefined {
  if (typeof id !== 'string' || !id.startsWith('@') || !withinLength(id)) return undefined;
  const colon = id.indexOf(':');
  if (colon < 2) return undefined;
  const localpart = id.slice(1, colon);
  const serverName = id.slice(colon + 1);
  if (!isServerName(serverName)) return undefined;
  if (LOCALPART.test(localpart)) return { localpart, serverName, historical: false };
  if (HISTORICAL_LOCALPART.test(localpart)) return { localpart, serverName, historical: true };
  return undefined;
}

/** A user id as the homeserver may send it (historical localparts included). */
export function isUserId(id: unknown): id is string {
  return typeof id === 'string' && parseUserId(id) !== undefined;
}

/** `!opaque` or `!opaque:server` (room versions before 12 have the server part). */
export function isRoomId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 1 && id.startsWith('!') && withinLength(id) && OPAQUE.test(id);
}

/** `$opaque` (room version 3 and later) or `$opaque:server` (older rooms). */
export function isEventId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 1 && id.startsWith('$') && withinLength(id) && OPAQUE.test(id);
}
