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

/**
 * Localparts an operator may write in the configuration: today's grammar plus upper-case letters,
 * which older accounts have. The other historical characters (quotes, `<`, `>`, `&`, `!` …) are
 * refused there: in a config file they are a typing or pasting mistake far more often than an
 * account, and such an id would end up in HTML replies and log lines.
 */
const CONFIG_LOCALPART = /^[a-zA-Z0-9._=\-/+]+$/;

/**
 * Why `id` is not a user id the configuration accepts (a short phrase), or undefined when it is
 * one: `@localpart:server`, localpart by `CONFIG_LOCALPART`, server by the spec's grammar.
 */
export function configUserIdProblem(id: string): string | undefined {
  if (/\s/.test(id)) return 'a user id has no spaces (separate several with commas)';
  if (/[\x00-\x1f\x7f]/.test(id)) return 'it contains control characters';
  if (!id.startsWith('@')) return 'a user id starts with "@"';
  const colon = id.indexOf(':');
  if (colon < 0) return 'the ":server" part is missing';
  if (colon === 1) return 'the part before ":" is empty';
  if (!withinLength(id)) return `it is longer than ${MAX_ID_BYTES} bytes`;
  const localpart = id.slice(1, colon);
  const bad = [...localpart].find((c) => !CONFIG_LOCALPART.test(c));
  if (bad !== undefined) return `${JSON.stringify(bad)} is not allowed before the ":" (letters, digits and ._=-/+ only)`;
  const server = id.slice(colon + 1);
  if (!isServerName(server)) return `${JSON.stringify(server)} is not a server name`;
  return undefined;
}
