/**
 * Reaction buttons: the bot adds ▶️ ⏹️ 🔄 under status and start/stop replies, and an allowed
 * user's reaction to such a reply runs the command through the same claim, policy, trust check,
 * age limit and echo as a typed one. Driven through the pipeline with fakes for the homeserver,
 * the crypto step and Kubernetes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bot, type RoomActions } from '../../src/bot/bot.ts';
import { passThroughCrypto } from '../../src/dev/fake-crypto-step.ts';
import type { Kube } from '../../src/kube/kube.ts';
import { silentLogger } from '../../src/log.ts';
import type { SyncBatch } from '../../src/matrix/batch.ts';
import type { RoomEvent } from '../../src/matrix/events.ts';
import type { IncomingEvent } from '../../src/matrix/incoming.ts';
import { MatrixError } from '../../src/matrix/client.ts';
import { Metrics } from '../../src/metrics.ts';
import { Pipeline } from '../../src/pipeline.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { legacyTarget } from '../../src/config/targets.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const MALLORY = '@mallory:example.org';
const ROOM = '!room:example.org';

let root: string;
let dirs = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'openclaw-buttons-test-'))));
after(() => rmSync(root, { recursive: true, force: true }));

let ids = 0;
function message(body: string, sender = ALICE): RoomEvent {
  return { event_id: `$m${++ids}`, room_id: ROOM, sender, type: 'm.room.message', origin_server_ts: Date.now(), content: { msgtype: 'm.text', body } };
}
function reaction(target: string, key: string, options: { sender?: string; ts?: number; room?: string } = {}): RoomEvent {
  return {
    event_id: `$r${++ids}`, room_id: options.room ?? ROOM, sender: options.sender ?? ALICE, type: 'm.reaction', origin_server_ts: options.ts ?? Date.now(),
    content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key } },
  };
}
function batch(roomEvents: RoomEvent[]): SyncBatch {
  return { label: `txn ${++ids}`, roomEvents, toDevice: [], deviceLists: { changed: [], left: [] }, oneTimeKeyCounts: undefined, unusedFallbackKeyTypes: undefined };
}

interface Sent { type: string; content: Record<string, unknown>; txnId: string; eventId: string }

/** `verdict`: how the fake crypto step judges each event (plaintext when it returns undefined). */
function setUp(options: { reactionButtons?: boolean; maxAge?: number; verdict?: (e: RoomEvent) => IncomingEvent['senderDevice'] } = {}) {
  const state = StateDb.open(join(root, `state-${++dirs}`));
  const metrics = new Metrics({ defaultMetrics: false });
  const sent: Sent[] = [];
  const scales: number[] = [];
  let replicas = 0;
  let sends = 0;
  const faults = { reaction: undefined as Error | undefined };
  const rooms: RoomActions = {
    join: async () => undefined,
    leave: async () => undefined,
    send: async (_roomId, content, txnId, type = 'm.room.message') => {
      if (type === 'm.reaction' && faults.reaction) throw faults.reaction;
      // Like a homeserver: the same transaction id gives the same event back.
      const again = sent.find((s) => s.txnId === txnId);
      if (again) return again.eventId;
      const eventId = `$bot${++sends}`;
      sent.push({ type, content, txnId, eventId });
      return eventId;
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
  const crypto = passThroughCrypto(options.verdict);
  const bot = new Bot({
    userId: BOT, allowedUsers: [ALICE], targets: [legacyTarget('agents', 'openclaw')], echo: true, commandPrefix: '',
    maxCommandAgeSeconds: options.maxAge ?? 0, ...(options.reactionButtons === undefined ? {} : { reactionButtons: options.reactionButtons }),
    kube, rooms, state, metrics, logger: silentLogger(),
  });
  const pipeline = new Pipeline({ crypto, bot, state, metrics, logger: silentLogger() });
  const bodies = (): string[] => sent.filter((s) => s.type === 'm.room.message').map((s) => String(s.content['body']));
  const reactions = (): Array<{ target: unknown; key: unknown; txnId: string }> => sent.filter((s) => s.type === 'm.reaction').map((s) => {
    const r = s.content['m.relates_to'] as { event_id: unknown; key: unknown };
    return { target: r.event_id, key: r.key, txnId: s.txnId };
  });
  /** The event id of the bot's reply whose body matches. */
  const replyId = (match: RegExp): string => {
    const found = sent.find((s) => s.type === 'm.room.message' && match.test(String(s.content['body'])));
    assert.ok(found, `no reply matching ${String(match)}`);
    return found.eventId;
  };
  /** Processes a batch, then waits for the buttons the bot adds in the background. */
  const run = async (events: RoomEvent[]): Promise<void> => {
    try {
      await pipeline.process(batch(events), 'appservice');
    } finally {
      await bot.settled();
    }
  };
  return { state, sent, scales, faults, run, bodies, reactions, replyId };
}

describe('the bot adds buttons to its status and start/stop replies', () => {
  test('a status reply gets ▶️ ⏹️ 🔄, after the reply, with transaction ids derived from the command', async () => {
    const t = setUp();
    const status = message('status');
    await t.run([status]);
    const reply = t.replyId(/is ⚪ off/);
    assert.deepEqual(t.reactions(), [
      { target: reply, key: '▶️', txnId: `${status.event_id}.react.1` },
      { target: reply, key: '⏹️', txnId: `${status.event_id}.react.2` },
      { target: reply, key: '🔄', txnId: `${status.event_id}.react.3` },
    ]);
    assert.deepEqual(t.sent.map((s) => s.type), ['m.room.message', 'm.room.message', 'm.reaction', 'm.reaction', 'm.reaction']);
  });

  test('help, unknown words and refusals get none; help says how to use them', async () => {
    const t = setUp();
    await t.run([message('help'), message('dance')]);
    assert.deepEqual(t.reactions(), []);
    assert.match(t.bodies()[1] ?? '', /\nOn a phone: react ▶️, ⏹️ or 🔄 to my status and start\/stop replies/);
    const off = setUp({ reactionButtons: false });
    await off.run([message('help')]);
    assert.doesNotMatch(off.bodies()[1] ?? '', /react/);
  });

  test('reactionButtons off: no buttons, and reactions are ignored', async () => {
    const t = setUp({ reactionButtons: false });
    await t.run([message('status')]);
    assert.deepEqual(t.reactions(), []);
    await t.run([reaction(t.replyId(/is ⚪ off/), '▶️')]);
    assert.deepEqual(t.scales, []);
  });

  test('a reaction the homeserver refuses (4xx) is skipped with the rest; the batch succeeds', async () => {
    const t = setUp();
    t.faults.reaction = new MatrixError({ errcode: 'M_FORBIDDEN', status: 403, method: 'PUT', path: '/send', message: 'no' });
    await t.run([message('start')]);
    assert.deepEqual(t.scales, [1]);
    assert.deepEqual(t.reactions(), []);
    assert.equal(t.bodies().length, 2);
  });

  test('buttons that keep failing (after the client\'s own retries) are given up: the command and its reply are not held back, and nothing is sent twice', async () => {
    const t = setUp();
    const status = message('status');
    t.faults.reaction = new MatrixError({ errcode: 'M_UNKNOWN', status: 502, method: 'PUT', path: '/send', message: 'Bad gateway' });
    await t.run([status]); // acknowledged: the buttons go in the background
    assert.deepEqual(t.reactions(), []);
    assert.deepEqual(t.bodies(), ['🦞 status', 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.']);
    t.faults.reaction = undefined;
    await t.run([status]); // a redelivery of the handled event: nothing again
    assert.equal(t.bodies().length, 2);
    assert.deepEqual(t.reactions(), [], 'a handled event is not answered again, buttons included');
  });
});

describe('a reaction to a button is a command', () => {
  test("an allowed user's ▶️ on a status reply starts the Deployment, echoed as a button press, once however often it is delivered", async () => {
    const t = setUp();
    await t.run([message('status')]);
    const press = reaction(t.replyId(/is ⚪ off/), '▶️');
    await t.run([press]);
    await t.run([press]);
    assert.deepEqual(t.scales, [1]);
    assert.deepEqual(t.bodies().slice(2), ['🦞 start (button)', '▶️ Starting openclaw: replicas 0 → 1. Say "status" to see when it is ready.']);
    // Its own reply carries buttons too: ⏹️ on it stops.
    await t.run([reaction(t.replyId(/Starting/), '⏹️')]);
    assert.deepEqual(t.scales, [1, 0]);
  });

  test('keys with or without the variation selector are the same button', async () => {
    const t = setUp();
    await t.run([message('status')]);
    const reply = t.replyId(/is ⚪ off/);
    await t.run([reaction(reply, '▶'), reaction(reply, '\u23F9'), reaction(reply, '🔄\uFE0F')]);
    assert.deepEqual(t.scales, [1, 0]);
    assert.equal(t.bodies().filter((b) => b.startsWith('openclaw is')).length, 2);
  });

  test('a reaction from a user who is not allowed does nothing', async () => {
    const t = setUp();
    await t.run([message('status')]);
    const before = t.sent.length;
    await t.run([reaction(t.replyId(/is ⚪ off/), '▶️', { sender: MALLORY })]);
    assert.deepEqual(t.scales, []);
    assert.equal(t.sent.length, before);
  });

  test("reactions to anything but the bot's replies with buttons do nothing: a user's message, a help reply, an unknown or forged id, another room", async () => {
    const t = setUp();
    const mine = message('hello there');
    await t.run([mine, message('help'), message('status')]);
    const before = t.sent.length;
    await t.run([
      reaction(mine.event_id, '▶️'),
      reaction(t.replyId(/^Commands for/), '▶️'),
      reaction('$forged:example.org', '▶️'),
      reaction(t.replyId(/is ⚪ off/), '▶️', { room: '!other:example.org' }),
      reaction(t.replyId(/is ⚪ off/), '👍'),
    ]);
    assert.deepEqual(t.scales, []);
    assert.equal(t.sent.length, before);
  });

  test("the bot's own reactions coming back, and removing a reaction (a redaction), do nothing", async () => {
    const t = setUp();
    await t.run([message('status')]);
    const reply = t.replyId(/is ⚪ off/);
    const before = t.sent.length;
    const own = reaction(reply, '▶️', { sender: BOT });
    const redaction: RoomEvent = { event_id: `$x${++ids}`, room_id: ROOM, sender: ALICE, type: 'm.room.redaction', origin_server_ts: Date.now(), content: { redacts: '$r1' } };
    await t.run([own, redaction]);
    assert.deepEqual(t.scales, []);
    assert.equal(t.sent.length, before);
  });

  test('the record of which replies carry buttons is pruned with the handled events: a reaction to a pruned one does nothing', async () => {
    const t = setUp();
    await t.run([message('status')]);
    const reply = t.replyId(/is ⚪ off/);
    t.state.prune(30 * 24 * 3600_000, Date.now() + 31 * 24 * 3600_000);
    await t.run([reaction(reply, '▶️')]);
    assert.deepEqual(t.scales, []);
  });

  test('a reaction from a device the trust policy does not trust is refused like a typed command', async () => {
    const t = setUp({ verdict: (e) => (e.type === 'm.reaction' ? { deviceId: 'EVIL', trusted: false, why: 'not signed by the pinned identity' } : { deviceId: 'GOOD', trusted: true, why: 'signed' }) });
    await t.run([message('status')]);
    await t.run([reaction(t.replyId(/is ⚪ off/), '▶️')]);
    assert.deepEqual(t.scales, []);
    assert.match(t.bodies().at(-1) ?? '', /device I do not trust \(not signed by the pinned identity\)/);
  });

  test('a reaction that arrives too late is not run, like a typed command', async () => {
    const t = setUp({ maxAge: 60 });
    await t.run([message('status')]);
    await t.run([reaction(t.replyId(/is ⚪ off/), '▶️', { ts: Date.now() - 3600_000 })]);
    assert.deepEqual(t.scales, []);
    assert.match(t.bodies().at(-1) ?? '', /^⏱ Not running "start": it reached me 60 minutes after/);
  });
});
