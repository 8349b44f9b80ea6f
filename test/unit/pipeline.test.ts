/**
 * The pipeline and the bot with the homeserver and Kubernetes replaced by fakes that fail on
 * demand: which failures skip one event, which fail the batch, and the backstop that keeps a
 * batch that fails for ever from holding back everything after it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bot, type RoomActions } from '../../src/bot/bot.ts';
import type { CryptoStep } from '../../src/crypto/crypto-step.ts';
import { passThroughCrypto } from '../../src/dev/fake-crypto-step.ts';
import type { Kube } from '../../src/kube/kube.ts';
import { silentLogger } from '../../src/log.ts';
import type { SyncBatch } from '../../src/matrix/batch.ts';
import { MatrixError } from '../../src/matrix/client.ts';
import type { RoomEvent } from '../../src/matrix/events.ts';
import { Metrics } from '../../src/metrics.ts';
import { BACKSTOP_FAILURES, BACKSTOP_MS, Pipeline } from '../../src/pipeline.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { legacyTarget } from '../../src/config/targets.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const MALLORY = '@mallory:example.org';
const ROOM = '!room:example.org';

let root: string;
let dirs = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'openclaw-pipeline-test-'))));
after(() => rmSync(root, { recursive: true, force: true }));

const forbidden = (method: string, path: string, message: string): MatrixError => new MatrixError({ errcode: 'M_FORBIDDEN', status: 403, method, path, message });
const unavailable = (path: string): MatrixError => new MatrixError({ errcode: 'M_UNKNOWN', status: 502, method: 'PUT', path, message: 'Bad gateway' });

let ids = 0;
function message(body: string, sender = ALICE, room = ROOM): RoomEvent {
  return { event_id: `$m${++ids}`, room_id: room, sender, type: 'm.room.message', origin_server_ts: Date.now(), content: { msgtype: 'm.text', body } };
}
function invite(sender: string, room: string): RoomEvent {
  return { event_id: `$i${++ids}`, room_id: room, sender, type: 'm.room.member', state_key: BOT, origin_server_ts: Date.now(), content: { membership: 'invite' } };
}
function batch(label: string, roomEvents: RoomEvent[]): SyncBatch {
  return { label, roomEvents, toDevice: [], deviceLists: { changed: [], left: [] }, oneTimeKeyCounts: undefined, unusedFallbackKeyTypes: undefined };
}

/** The crypto step of a bot in plaintext rooms. */
const plaintext = passThroughCrypto();

interface Sent { roomId: string; body: string; txnId: string }

function setUp(options: { now?: () => number } = {}) {
  const state = StateDb.open(join(root, `state-${++dirs}`));
  const metrics = new Metrics({ defaultMetrics: false });
  const sent: Sent[] = [];
  const scales: number[] = [];
  let replicas = 0;
  const faults = {
    leave: undefined as Error | undefined,
    join: undefined as Error | undefined,
    /** Fails sends whose body matches, while set. */
    send: undefined as { match: RegExp; error: Error } | undefined,
  };
  const rooms: RoomActions = {
    join: async () => {
      if (faults.join) throw faults.join;
    },
    leave: async () => {
      if (faults.leave) throw faults.leave;
    },
    send: async (roomId, content, txnId) => {
      const body = String(content['body']);
      if (faults.send && faults.send.match.test(body)) throw faults.send.error;
      sent.push({ roomId, body, txnId });
    },
  };
  const kube: Kube = {
    scale: async (_t, to) => {
      scales.push(to);
      const previous = replicas;
      replicas = to;
      return { previous, desired: to };
    },
    status: async () => ({ desired: replicas, ready: replicas, available: replicas, updated: replicas, state: replicas ? 'running' : 'off' }),
    ping: async () => undefined,
  };
  const bot = new Bot({ userId: BOT, allowedUsers: [ALICE], targets: [legacyTarget('agents', 'openclaw')], echo: true, commandPrefix: '', maxCommandAgeSeconds: 0, kube, rooms, state, metrics, logger: silentLogger() });
  const pipeline = new Pipeline({ crypto: plaintext, bot, state, metrics, logger: silentLogger(), ...(options.now ? { now: options.now } : {}) });
  const metric = async (name: string): Promise<string> => (await metrics.registry.getSingleMetricAsString(name));
  return { state, metrics, sent, scales, faults, pipeline, metric, bodies: () => sent.map((s) => s.body) };
}

describe('failures that redelivery cannot fix are skipped, not retried', () => {
  test("a stranger's invite whose decline gets 403 (kicked at once) does not fail the batch; the next command is answered", async () => {
    const t = setUp();
    t.faults.leave = forbidden('POST', '/leave', "User @bot:example.org not in room !x (None)");
    const stranger = invite(MALLORY, '!strangers:example.org');
    const status = message('status');
    await t.pipeline.process(batch('txn 1', [stranger, status]), 'appservice');
    assert.deepEqual(t.bodies(), ['🦞 status', 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.']);
    assert.match(await t.metric('openclaw_events_skipped_total'), /reason="homeserver-403"} 1/);
    // Redelivered (the homeserver did not get the answer): nothing is tried again.
    t.faults.leave = new Error('must not be called again');
    await t.pipeline.process(batch('txn 1', [stranger, status]), 'appservice');
    assert.equal(t.sent.length, 2);
  });

  test("an allowed user's withdrawn invite (join gets 403) is skipped", async () => {
    const t = setUp();
    t.faults.join = forbidden('POST', '/join', 'You are not invited to this room.');
    await t.pipeline.process(batch('txn 1', [invite(ALICE, '!withdrawn:example.org'), message('help')]), 'appservice');
    assert.equal(t.bodies().length, 2);
    assert.match(await t.metric('openclaw_events_skipped_total'), /reason="homeserver-403"} 1/);
  });

  test('a reply the homeserver refuses (403: no longer in the room) is logged; the command ran once and the batch succeeds', async () => {
    const t = setUp();
    t.faults.send = { match: /./, error: forbidden('PUT', '/send', 'not in room') };
    await t.pipeline.process(batch('txn 1', [message('start')]), 'appservice');
    assert.deepEqual(t.scales, [1]);
    assert.deepEqual(t.sent, []);
  });
});

describe('exactly-once replies', () => {
  test('a reply that fails for a transient reason fails the batch; the redelivery re-sends the recorded replies with the same transaction ids and does not act again', async () => {
    const t = setUp();
    const start = message('start');
    t.faults.send = { match: /Starting/, error: unavailable('/send') };
    await assert.rejects(t.pipeline.process(batch('txn 1', [start]), 'appservice'));
    assert.deepEqual(t.scales, [1]);
    t.faults.send = undefined;
    await t.pipeline.process(batch('txn 1', [start]), 'appservice');
    assert.deepEqual(t.scales, [1], 'scaled once');
    assert.deepEqual(t.sent.map((s) => s.txnId), [`${start.event_id}.echo`, `${start.event_id}.echo`, `${start.event_id}.result`]);
    assert.match(t.sent[2]?.body ?? '', /Starting openclaw: replicas 0 → 1/);
  });

  test('a start claimed but never answered (the bot died during the PATCH) is reported with the current state, not run again', async () => {
    const t = setUp();
    const start = message('start');
    // What a crash while the PATCH was in flight leaves behind.
    t.state.claimEvent(start.event_id, ROOM);
    t.state.markActing(start.event_id);
    await t.pipeline.process(batch('txn 1', [start]), 'appservice');
    assert.deepEqual(t.scales, []);
    assert.match(t.bodies().at(-1) ?? '', /restarted while handling "start".*Now: openclaw is ⚪ off/);
  });

  test('a start claimed but not yet acting when the bot died never reached the cluster: it simply runs, once', async () => {
    const t = setUp();
    const start = message('start');
    t.state.claimEvent(start.event_id, ROOM);
    await t.pipeline.process(batch('txn 1', [start]), 'appservice');
    assert.deepEqual(t.scales, [1]);
    assert.match(t.bodies().at(-1) ?? '', /Starting openclaw: replicas 0 → 1/);
    await t.pipeline.process(batch('txn 1', [start]), 'appservice');
    assert.deepEqual(t.scales, [1]);
  });

  test('a status claimed but never answered is simply answered (reading has no effect to repeat)', async () => {
    const t = setUp();
    const status = message('status');
    t.state.claimEvent(status.event_id, ROOM);
    await t.pipeline.process(batch('txn 1', [status]), 'appservice');
    assert.match(t.bodies().at(-1) ?? '', /^openclaw is ⚪ off/);
  });
});

describe('the backstop', () => {
  test(`a batch that fails ${BACKSTOP_FAILURES} times is then handled event by event; the event that still fails becomes a dead letter`, async () => {
    const t = setUp();
    const poison = message('status');
    const before = message('help');
    const later = message('start');
    // Not classified as permanent: an unexpected error, retried until the backstop steps in.
    t.faults.send = { match: /off: desired/, error: new Error('unexpected failure (test)') };
    const jammed = batch('txn 7', [before, poison, later]);
    for (let i = 1; i <= BACKSTOP_FAILURES; i++) await assert.rejects(t.pipeline.process(jammed, 'appservice'), `delivery ${i} fails`);
    assert.deepEqual(t.scales, [], 'the event after the poison one never ran while jammed');
    await t.pipeline.process(jammed, 'appservice');
    assert.deepEqual(t.scales, [1], 'the later command ran, once');
    assert.deepEqual(t.state.deadLetters().map((d) => [d.eventId, d.reason]), [[poison.event_id, 'unexpected']]);
    assert.match(await t.metric('openclaw_dead_letters_total'), /reason="unexpected"} 1/);
    // The sender of the dead letter is told, once.
    assert.deepEqual(t.sent.filter((s) => /gave up on this message/.test(s.body)).map((s) => s.txnId), [`${poison.event_id}.dead-letter`]);
    // Acknowledged for good: a later redelivery does nothing.
    const count = t.sent.length;
    await t.pipeline.process(jammed, 'appservice');
    assert.equal(t.sent.length, count);
  });

  test('a batch that has been failing for longer than the bound is handled event by event at its next delivery', async () => {
    let now = 1_000_000;
    const t = setUp({ now: () => now });
    const poison = message('help');
    t.faults.send = { match: /Commands for/, error: new Error('unexpected failure (test)') };
    const jammed = batch('txn 9', [poison]);
    await assert.rejects(t.pipeline.process(jammed, 'appservice'));
    now += BACKSTOP_MS;
    await t.pipeline.process(jammed, 'appservice');
    assert.deepEqual(t.state.deadLetters().map((d) => d.eventId), [poison.event_id]);
  });

  test('the failure count survives a restart (it is in the state store)', async () => {
    const t = setUp();
    const poison = message('help');
    t.faults.send = { match: /Commands for/, error: new Error('unexpected failure (test)') };
    const jammed = batch('txn 3', [poison]);
    for (let i = 0; i < BACKSTOP_FAILURES; i++) await assert.rejects(t.pipeline.process(jammed, 'appservice'));
    // A new pipeline over the same store, as after a restart.
    const again = new Pipeline({ crypto: plaintext, bot: new Bot({ userId: BOT, allowedUsers: [ALICE], targets: [legacyTarget('agents', 'openclaw')], echo: true, commandPrefix: '', maxCommandAgeSeconds: 0, kube: { scale: async () => ({ previous: 0, desired: 0 }), status: async () => ({ desired: 0, ready: 0, available: 0, updated: 0, state: 'off' }), ping: async () => undefined }, rooms: { join: async () => undefined, leave: async () => undefined, send: async () => { throw new Error('still failing'); } }, state: t.state, metrics: t.metrics, logger: silentLogger() }), state: t.state, metrics: t.metrics, logger: silentLogger() });
    await again.process(jammed, 'appservice');
    assert.deepEqual(t.state.deadLetters().map((d) => d.eventId), [poison.event_id]);
  });
});

describe('timers', () => {
  test('events waiting for keys are retried on a timer that exists only while they wait; none is left after drain', async () => {
    const state = StateDb.open(join(root, `state-${++dirs}`));
    const metrics = new Metrics({ defaultMetrics: false });
    let waiting = 2;
    const runs: string[] = [];
    const crypto: CryptoStep = {
      ...plaintext,
      process: async (b) => {
        runs.push(b.label);
        if (b.label === 'timer') waiting--;
        return { events: [], notices: [] };
      },
      hasPending: () => waiting > 0,
    };
    const bot = new Bot({ userId: BOT, allowedUsers: [ALICE], targets: [legacyTarget('agents', 'openclaw')], echo: false, commandPrefix: '', maxCommandAgeSeconds: 0, kube: { scale: async () => ({ previous: 0, desired: 0 }), status: async () => ({ desired: 0, ready: 0, available: 0, updated: 0, state: 'off' }), ping: async () => undefined }, rooms: { join: async () => undefined, leave: async () => undefined, send: async () => undefined }, state, metrics, logger: silentLogger() });
    const pipeline = new Pipeline({ crypto, bot, state, metrics, logger: silentLogger() });
    // Every wake-up of the timer calls tick(): counting them shows whether a timer is still there.
    let wakes = 0;
    const tick = pipeline.tick.bind(pipeline);
    pipeline.tick = async () => {
      wakes++;
      await tick();
    };
    await pipeline.process(batch('txn 1', []), 'appservice');
    await new Promise((r) => setTimeout(r, 2_300));
    assert.deepEqual(runs, ['txn 1', 'timer', 'timer'], 'retried once a second until nothing waits');
    assert.equal(wakes, 2);
    await new Promise((r) => setTimeout(r, 1_300));
    assert.equal(wakes, 2, 'no wake-up once nothing waits');
    waiting = 1;
    pipeline.wakeWhilePending();
    await pipeline.drain();
    await new Promise((r) => setTimeout(r, 1_300));
    assert.equal(wakes, 2, 'no wake-up after drain');
    state.close();
  });
});
