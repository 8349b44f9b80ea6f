import { EncryptionSettings, RoomId, UserId, type OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import { megolmIdentity } from './megolm-index.ts';
import type { StateDb } from '../store/state-db.ts';
import type { OutgoingRequests } from './outgoing-requests.ts';

/** What the last share in a room established, while nothing has changed since. */
interface Shared {
  /** The members the key was shared with, sorted and joined. */
  readonly members: string;
  readonly sessionId: string;
  /** The last message index the bot used in that session. */
  index: number;
  /** When the session was created, if known; a session of unknown age is re-checked before every message. */
  readonly createdAt: number | undefined;
}

/** A share step done (or skipped) for one message, handed back to `encrypted`. */
export interface ShareTicket {
  readonly roomId: string;
  readonly members: string;
  readonly skipped: boolean;
  /** To-device requests the share sent (a new session goes to every device, so it sends some). */
  readonly requests: number;
  readonly startedAt: number;
}

const DAY_MS = 86_400_000;

/**
 * Before each encrypted message the engine must have shared the room's Megolm session with every
 * member's devices: `getMissingSessions` (Olm sessions to new devices) and `shareRoomKey` (the key
 * to devices without it; a new session when the old one is due). Both walk every device of every
 * member, ~18 ms for 100 devices, though after the first message there is usually nothing to do.
 * So they are skipped while nothing they depend on has changed since the last share in the room:
 * - the room's members (compared as a set at every message);
 * - device lists and Olm sessions: any device-list change, any to-device message (a new Olm
 *   session, an unwedging) and any trust change forgets every room's share (`invalidate`);
 * - the session's rotation: the engine panics (aborting the process) when asked to encrypt with a
 *   session that is due, so a share is skipped only while the session is well inside its limits:
 *   fewer messages than the limit minus one, and younger than the period minus a day. Its age is
 *   known only for a session this process saw created (a share that sent keys, then index 0), kept
 *   in the state database across restarts; any other session is re-checked every time.
 */
export class RoomKeySharing {
  readonly #machine: OlmMachine;
  readonly #outgoing: OutgoingRequests;
  readonly #state: StateDb;
  readonly #now: () => number;
  readonly #toUsers: (ids: readonly string[]) => UserId[];
  readonly #rooms = new Map<string, Shared>();
  readonly #maxMessages: number;
  readonly #maxAgeMs: number;

  constructor(machine: OlmMachine, outgoing: OutgoingRequests, state: StateDb, toUsers: (ids: readonly string[]) => UserId[], now: () => number) {
    this.#machine = machine;
    this.#outgoing = outgoing;
    this.#state = state;
    this.#toUsers = toUsers;
    this.#now = now;
    const defaults = new EncryptionSettings();
    this.#maxMessages = Number(defaults.rotationPeriodMessages);
    this.#maxAgeMs = Number(defaults.rotationPeriod / 1000n);
    defaults.free();
  }

  /** Something every room's share depends on may have changed: the next message in each shares again. */
  invalidate(): void {
    this.#rooms.clear();
  }

  /** Makes sure every member device has the room's key, unless nothing changed since the last share. */
  async ensureShared(roomId: string, members: readonly string[]): Promise<ShareTicket> {
    const key = [...members].sort().join('\n');
    const startedAt = this.#now();
    const last = this.#rooms.get(roomId);
    if (last && last.members === key && last.createdAt !== undefined && last.index + 2 < this.#maxMessages && startedAt - last.createdAt < this.#maxAgeMs - DAY_MS) {
      return { roomId, members: key, skipped: true, requests: 0, startedAt };
    }
    this.#rooms.delete(roomId);
    const machine = this.#machine;
    await machine.updateTrackedUsers(this.#toUsers(members));
    await this.#outgoing.drain(); // key queries for anyone new
    const claim = await machine.getMissingSessions(this.#toUsers(members));
    if (claim) await this.#outgoing.send(claim);
    // Always share before encrypting when in doubt: encryptRoomEvent without a valid session aborts the process.
    const requests = await machine.shareRoomKey(new RoomId(roomId), this.#toUsers(members), new EncryptionSettings());
    for (const request of requests) await this.#outgoing.send(request);
    return { roomId, members: key, skipped: false, requests: requests.length, startedAt };
  }

  /** Records which session and index the encryption after `ticket` used. */
  encrypted(ticket: ShareTicket, content: Record<string, unknown>): void {
    const used = megolmIdentity(content);
    const last = this.#rooms.get(ticket.roomId);
    if (!used) return void this.#rooms.delete(ticket.roomId);
    if (ticket.skipped) {
      if (last && last.sessionId === used.sessionId) last.index = used.index;
      else this.#rooms.delete(ticket.roomId);
      return;
    }
    const stateKey = `megolm-session:${ticket.roomId}`;
    const known = parseKnown(this.#state.get(stateKey));
    let createdAt = known?.sessionId === used.sessionId ? known.createdAt : undefined;
    if (createdAt === undefined && ticket.requests > 0 && used.index === 0) {
      // Created by this share: it sent the new key, and the session had never encrypted before.
      createdAt = ticket.startedAt;
      this.#state.set(stateKey, JSON.stringify({ sessionId: used.sessionId, createdAt }));
    }
    this.#rooms.set(ticket.roomId, { members: ticket.members, sessionId: used.sessionId, index: used.index, createdAt });
  }
}

function parseKnown(text: string | undefined): { sessionId: string; createdAt: number } | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as { sessionId?: unknown; createdAt?: unknown };
    return typeof v.sessionId === 'string' && typeof v.createdAt === 'number' ? { sessionId: v.sessionId, createdAt: v.createdAt } : undefined;
  } catch {
    return undefined;
  }
}
