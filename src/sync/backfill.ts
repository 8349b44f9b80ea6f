import type { Logger } from '../log.ts';
import { classify, errorMessage } from '../failure.ts';
import { p, type MatrixClient } from '../matrix/client.ts';
import { isRoomEvent, type RoomEvent } from '../matrix/events.ts';
import type { StateDb } from '../store/state-db.ts';

/**
 * Password mode: a /sync timeline with `limited: true` left events out (the filter keeps 50), and a
 * command among them would be lost. This fetches the gap with /messages, backwards from the
 * timeline's `prev_batch`, and stops at whichever comes first: the previous sync's position (`to`),
 * the last event the bot saw in the room (for homeservers that ignore `to`), events too old to be
 * run as commands anyway, or a few pages.
 */
export interface BackfillOptions {
  readonly client: MatrixClient;
  readonly state: StateDb;
  readonly logger: Logger;
  /** Events older than this need not be fetched (0: no age bound). */
  readonly maxAgeMs: number;
  readonly signal: AbortSignal;
  readonly pageSize?: number;
  readonly maxPages?: number;
}

interface MessagesPage {
  chunk?: unknown[];
  end?: string;
}

const PAGE_SIZE = 100;
const MAX_PAGES = 5;
const MARK = 'sync-last-event:';

/** The last timeline event the bot handled in a room, saved once its batch is durable. */
export function lastSeen(state: StateDb, roomId: string): string | undefined {
  return state.get(MARK + roomId);
}

export function markSeen(state: StateDb, marks: ReadonlyMap<string, string>): void {
  for (const [roomId, eventId] of marks) state.set(MARK + roomId, eventId);
}

/**
 * The events missing before a limited timeline, oldest first. Nothing when the room was never seen
 * before (no mark: its history is not the bot's business, as on a first start). A transient failure
 * throws (the sync is retried, its token unchanged); a refusal for this room is logged and skipped.
 */
export async function fillGap(o: BackfillOptions, roomId: string, prevBatch: string, since: string): Promise<RoomEvent[]> {
  const mark = lastSeen(o.state, roomId);
  if (mark === undefined) return [];
  const log = o.logger.child({ room_id: roomId });
  const oldest = o.maxAgeMs > 0 ? Date.now() - o.maxAgeMs : -Infinity;
  const pageSize = o.pageSize ?? PAGE_SIZE;
  const newestFirst: RoomEvent[] = [];
  let from: string | undefined = prevBatch;
  let stop: 'reached' | 'too-old' | 'pages' = 'pages';
  try {
    for (let page = 0; page < (o.maxPages ?? MAX_PAGES) && stop === 'pages'; page++) {
      const result: MessagesPage = await o.client.request<MessagesPage>('GET', p`/v3/rooms/${roomId}/messages`, {
        query: { dir: 'b', from, to: since, limit: String(pageSize) },
        retries: 2,
        signal: o.signal,
      });
      const chunk = (result.chunk ?? []).map((e) => ({ ...(e as object), room_id: roomId })).filter(isRoomEvent);
      for (const event of chunk) {
        if (event.event_id === mark) { stop = 'reached'; break; }
        if (event.origin_server_ts < oldest) { stop = 'too-old'; break; }
        newestFirst.push(event);
      }
      from = result.end;
      if (chunk.length === 0 || from === undefined) stop = stop === 'pages' ? 'reached' : stop;
    }
  } catch (error) {
    if (classify(error).transient || o.signal.aborted) throw error;
    log.warn({ err: errorMessage(error) }, 'could not fetch the messages a limited sync left out; commands among them are not run');
    return [];
  }
  if (stop === 'pages') {
    log.warn({ fetched: newestFirst.length }, 'a sync gap was larger than the back-fill bound; older commands in it are not run');
  } else {
    log.info({ fetched: newestFirst.length, bound: stop }, 'back-filled the messages a limited sync left out');
  }
  return newestFirst.reverse();
}
