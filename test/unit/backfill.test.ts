import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.ts';
import { MatrixError, type MatrixClient, type RequestOptions } from '../../src/matrix/client.ts';
import { fillGap, lastSeen, markSeen, type BackfillOptions } from '../../src/sync/backfill.ts';
import { StateDb } from '../../src/store/state-db.ts';

const ROOM = '!room:localhost';
const NOW = Date.now();

/** A room history, newest last; `/messages?dir=b` pages through it from the newest end. */
function history(count: number, ageOfOldestMs = 0): Array<Record<string, unknown>> {
  return Array.from({ length: count }, (_, i) => ({
    event_id: `$e${i}`, sender: '@alice:localhost', type: 'm.room.message', content: { msgtype: 'm.text', body: `m${i}` },
    origin_server_ts: NOW - ageOfOldestMs + (ageOfOldestMs * i) / Math.max(1, count - 1),
  }));
}

interface Call { path: string; query: Record<string, string | undefined> }

/** A client whose /messages pages backwards through `events` (tokens are indexes), or fails with `error`. */
function fakeClient(events: Array<Record<string, unknown>>, error?: MatrixError): { client: MatrixClient; calls: Call[] } {
  const calls: Call[] = [];
  const client = {
    async request(_method: string, path: string, options: RequestOptions = {}): Promise<unknown> {
      const query = options.query ?? {};
      calls.push({ path, query });
      if (error) throw error;
      const from = query['from'] === 'prev' ? events.length : Number(query['from']);
      const limit = Number(query['limit']);
      const chunk = events.slice(Math.max(0, from - limit), from).reverse();
      const end = from - limit > 0 ? String(from - limit) : undefined;
      return { chunk, start: String(from), ...(end !== undefined ? { end } : {}) };
    },
  };
  return { client: client as unknown as MatrixClient, calls };
}

let dir: string;
let state: StateDb;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backfill-test-'));
  state = StateDb.open(dir);
});

after(async () => {
  state.close();
  await rm(dir, { recursive: true, force: true });
});

const options = (client: MatrixClient, extra: Partial<BackfillOptions> = {}): BackfillOptions => ({
  client, state, logger: silentLogger(), maxAgeMs: 0, signal: new AbortController().signal, pageSize: 10, ...extra,
});
const ids = (events: Array<{ event_id: string }>): string[] => events.map((e) => e.event_id);

describe('fillGap: the events a limited sync timeline left out', () => {
  test('a room never seen before is not back-filled (its history is not the bot\'s business)', async () => {
    const { client, calls } = fakeClient(history(30));
    assert.deepEqual(await fillGap(options(client), '!new:localhost', 'prev', 's1'), []);
    assert.equal(calls.length, 0);
  });

  test('pages backwards from prev_batch to the last event seen, and returns the gap oldest first', async () => {
    markSeen(state, new Map([[ROOM, '$e4']]));
    assert.equal(lastSeen(state, ROOM), '$e4');
    const { client, calls } = fakeClient(history(30));
    const gap = await fillGap(options(client), ROOM, 'prev', 's1');
    assert.deepEqual(ids(gap), Array.from({ length: 25 }, (_, i) => `$e${i + 5}`));
    assert.ok(gap.every((e) => e.room_id === ROOM));
    assert.deepEqual(calls.map((c) => c.query), [
      { dir: 'b', from: 'prev', to: 's1', limit: '10' },
      { dir: 'b', from: '20', to: 's1', limit: '10' },
      { dir: 'b', from: '10', to: 's1', limit: '10' },
    ]);
    assert.equal(calls[0]?.path, `/v3/rooms/${encodeURIComponent(ROOM)}/messages`);
  });

  test('stops where the homeserver says the history ends (no `end`), e.g. at `to`', async () => {
    markSeen(state, new Map([[ROOM, '$not-in-this-history']]));
    const { client, calls } = fakeClient(history(15));
    assert.equal((await fillGap(options(client), ROOM, 'prev', 's1')).length, 15);
    assert.equal(calls.length, 2);
  });

  test('does not fetch events older than maxCommandAgeSeconds', async () => {
    markSeen(state, new Map([[ROOM, '$e0']]));
    // 50 events spread over the last 100 s; with a 30 s bound only the newest 15 or so qualify.
    const { client, calls } = fakeClient(history(50, 100_000));
    const gap = await fillGap(options(client, { maxAgeMs: 30_000 }), ROOM, 'prev', 's1');
    assert.ok(gap.length >= 14 && gap.length <= 16, `${gap.length} events`);
    assert.ok(gap.every((e) => e.origin_server_ts >= NOW - 30_000 - 1000));
    assert.equal(calls.length, 2);
  });

  test('goes back a bounded number of pages', async () => {
    markSeen(state, new Map([[ROOM, '$e0']]));
    const { client, calls } = fakeClient(history(1000));
    const gap = await fillGap(options(client, { maxPages: 3 }), ROOM, 'prev', 's1');
    assert.equal(gap.length, 30);
    assert.equal(ids(gap).at(-1), '$e999');
    assert.equal(calls.length, 3);
  });

  test('a refusal for the room is skipped; a transient failure is thrown so the sync is retried', async () => {
    markSeen(state, new Map([[ROOM, '$e0']]));
    const forbidden = new MatrixError({ errcode: 'M_FORBIDDEN', status: 403, method: 'GET', path: '/messages', message: 'not in room' });
    assert.deepEqual(await fillGap(options(fakeClient([], forbidden).client), ROOM, 'prev', 's1'), []);
    const down = new MatrixError({ errcode: 'HTTP_502', status: 502, method: 'GET', path: '/messages', message: 'bad gateway' });
    await assert.rejects(fillGap(options(fakeClient([], down).client), ROOM, 'prev', 's1'), (e: unknown) => e === down);
  });
});
