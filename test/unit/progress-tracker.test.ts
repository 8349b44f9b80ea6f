/**
 * The start/stop reply edited in place as the rollout moves (src/bot/progress-tracker.ts), with a
 * fake clock and a fake cluster whose rollout view the test moves by hand: each edit's text, its
 * `m.replace` relation and transaction id, the 2 s rule, the deadline, a later command taking over,
 * a restart in the middle (same message finished, the last edit re-sent under the same id), a
 * homeserver that is down or refuses, and the setting that turns it off.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bot, type RoomActions } from '../../src/bot/bot.ts';
import { TimeText } from '../../src/bot/time-text.ts';
import { FakeClock } from '../../src/dev/fake-clock.ts';
import { KubeError, type Kube, type RolloutView } from '../../src/kube/kube.ts';
import type { DeploymentObject, PodObject } from '../../src/kube/rollout.ts';
import { createLogger, silentLogger, type Logger } from '../../src/log.ts';
import { Writable } from 'node:stream';
import type { IncomingEvent } from '../../src/matrix/incoming.ts';
import { MatrixError } from '../../src/matrix/client.ts';
import { Metrics } from '../../src/metrics.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { legacyTarget } from '../../src/config/targets.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const ROOM = '!room:example.org';
const T0 = Date.UTC(2025, 5, 14, 14, 2);
const S = 1_000;

let root: string;
let dirs = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'openclaw-progress-test-'))));
after(() => rmSync(root, { recursive: true, force: true }));

const deployment = (replicas: number, ready = 0): DeploymentObject => ({ spec: { replicas, progressDeadlineSeconds: 600 }, status: { replicas: ready, readyReplicas: ready, updatedReplicas: ready } });
const pod = (phase: 'creating' | 'running' | 'ready' | 'leaving'): PodObject => ({
  metadata: { name: 'openclaw-1', ...(phase === 'leaving' ? { deletionTimestamp: '2025-06-14T14:03:00Z' } : {}) },
  spec: { nodeName: 'node-3', containers: [{ name: 'openclaw', image: 'ghcr.io/openclaw/openclaw:1' }] },
  status: {
    phase: phase === 'creating' ? 'Pending' : 'Running', conditions: [{ type: 'PodScheduled', status: 'True' }],
    containerStatuses: [{ name: 'openclaw', ready: phase === 'ready', state: phase === 'creating' ? { waiting: { reason: 'ContainerCreating' } } : { running: {} } }],
  },
});

/** A cluster whose rollout the test moves: `show` sets what the watch sees and tells the followers. */
function cluster() {
  const c = { replicas: 0, view: undefined as RolloutView | undefined, followers: new Set<() => void>(), follows: 0, since: undefined as number | undefined };
  const show = (view: RolloutView | undefined): void => {
    c.view = view;
    for (const f of [...c.followers]) f();
  };
  const kube: Kube = {
    scale: async (_t, to) => {
      const previous = c.replicas;
      c.replicas = to;
      return { previous, desired: to };
    },
    status: async () => {
      const ready = c.view?.deployment.status?.readyReplicas ?? 0;
      return { desired: c.replicas, ready, available: ready, updated: ready, state: c.replicas ? (ready >= c.replicas ? 'running' : 'starting') : 'off', ...(c.since !== undefined ? { availableSince: c.since } : {}) };
    },
    rolloutNow: async () => c.view,
    ping: async () => undefined,
    follow: (_t, changed) => {
      c.follows++;
      c.followers.add(changed);
      return { view: () => c.view, close: () => void c.followers.delete(changed) };
    },
  };
  return { c, kube, show };
}

interface Sent { roomId: string; content: Record<string, unknown>; txnId: string; eventId: string }

function setUp(options: { dir?: string; clock?: FakeClock; world?: ReturnType<typeof cluster>; progress?: { enabled: boolean; deadlineMs: number | undefined }; logger?: Logger } = {}) {
  const dir = options.dir ?? join(root, `state-${++dirs}`);
  const state = StateDb.open(dir);
  const clock = options.clock ?? new FakeClock(T0);
  const world = options.world ?? cluster();
  const sent: Sent[] = [];
  const faults = { edit: undefined as 'down' | 'refused' | undefined };
  const rooms: RoomActions = {
    join: async () => undefined,
    leave: async () => undefined,
    send: async (roomId, content, txnId) => {
      if (faults.edit && /\.edit\./.test(txnId)) {
        throw faults.edit === 'down'
          ? new MatrixError({ errcode: 'M_UNKNOWN', status: 502, method: 'PUT', path: '/send', message: 'Bad gateway' })
          : new MatrixError({ errcode: 'M_FORBIDDEN', status: 403, method: 'PUT', path: '/send', message: 'not in the room' });
      }
      // As a homeserver: the same transaction id gives the same event (and is not stored twice).
      const earlier = sent.find((s) => s.txnId === txnId);
      if (earlier) return earlier.eventId;
      const eventId = `$sent-${sent.length + 1}`;
      sent.push({ roomId, content, txnId, eventId });
      return eventId;
    },
  };
  const bot = new Bot({
    userId: BOT, allowedUsers: [ALICE], targets: [legacyTarget('agents', 'openclaw')], echo: false, commandPrefix: '', maxCommandAgeSeconds: 0,
    reactionButtons: false, kube: world.kube, rooms, state, metrics: new Metrics({ defaultMetrics: false }), logger: options.logger ?? silentLogger(),
    runs: { limits: { defaultMs: undefined, maxMs: undefined }, time: new TimeText('UTC'), clock },
    progress: { ...(options.progress ?? { enabled: true, deadlineMs: undefined }), clock },
  });
  let tail: Promise<unknown> = Promise.resolve();
  const serialize = <T>(work: () => Promise<T>): Promise<T> => {
    const run = tail.then(work);
    tail = run.catch(() => undefined);
    return run;
  };
  void bot.startTimers(serialize);
  const settled = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      await bot.progress.settled();
      await tail;
    }
  };
  let ids = 0;
  /** Sends a command and returns the event (its id is what the edits derive from) and the reply. */
  const say = async (body: string): Promise<{ event: IncomingEvent; reply: Sent }> => {
    const before = sent.length;
    const event: IncomingEvent = { event: { event_id: `$cmd${dirs}-${++ids}`, room_id: ROOM, sender: ALICE, type: 'm.room.message', origin_server_ts: clock.now(), content: { msgtype: 'm.text', body } }, encrypted: false };
    await serialize(() => bot.handle([event]));
    await settled();
    return { event, reply: sent[before]! };
  };
  const show = async (view: RolloutView | undefined): Promise<void> => {
    world.show(view);
    await settled();
  };
  const advance = (ms: number): Promise<void> => clock.advanceSettling(ms, settled);
  const edits = (messageId: string): Sent[] => sent.filter((s) => (s.content['m.relates_to'] as { rel_type?: string; event_id?: string } | undefined)?.event_id === messageId);
  const texts = (messageId: string): string[] => edits(messageId).map((s) => String((s.content['m.new_content'] as { body: string }).body));
  const stop = (): void => { bot.stopTimers(); state.close(); };
  return { dir, state, clock, world, bot, sent, faults, say, show, advance, edits, texts, stop };
}

describe('a start or stop reply, edited as the rollout moves', () => {
  test('a start: each step once, at most every 2 s after the reply or the last edit, the final edit at once; then nothing is followed', async () => {
    const t = setUp();
    const { event, reply } = await t.say('start');
    assert.equal(reply.content['body'], '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.');
    await t.show({ deployment: deployment(1), pods: [] });
    assert.deepEqual(t.texts(reply.eventId), [], 'within 2 s of the reply: held back');
    await t.advance(2 * S);
    assert.deepEqual(t.texts(reply.eventId), ['▶️ Starting openclaw… ⏳ waiting for the pod to be created'], 'sent when the 2 s are up, by the timer');
    await t.show({ deployment: deployment(1), pods: [pod('creating')] });
    await t.advance(S);
    await t.show({ deployment: deployment(1), pods: [pod('running')] }); // replaced the held-back text before it went out
    await t.advance(S);
    await t.show({ deployment: deployment(1, 1), pods: [pod('ready')] });
    assert.deepEqual(t.texts(reply.eventId), [
      '▶️ Starting openclaw… ⏳ waiting for the pod to be created',
      '▶️ Starting openclaw… ⏳ pod scheduled on node-3 · container running · waiting for the container to pass its readiness probe (0 of 1 ready)',
      '▶️ Started openclaw: ✅ ready after 4 s (pod scheduled on node-3 · container running).',
    ]);
    const [first] = t.edits(reply.eventId);
    assert.equal(first!.txnId, `${event.event.event_id}.edit.1`);
    assert.deepEqual(first!.content['m.relates_to'], { rel_type: 'm.replace', event_id: reply.eventId });
    assert.equal(first!.content['body'], '* ▶️ Starting openclaw… ⏳ waiting for the pod to be created', 'clients without edits see the new text marked as an edit');
    assert.equal(first!.content['msgtype'], 'm.notice');
    assert.equal(t.state.progress.all().length, 0);
    assert.equal(t.world.c.followers.size, 0, 'no rollout followed once it is done');
    await t.show({ deployment: deployment(1, 1), pods: [pod('ready')] });
    await t.advance(60 * S);
    assert.equal(t.edits(reply.eventId).length, 3, 'nothing after the final edit');
    t.stop();
  });

  test('a stop until no pod is left; a timed run\'s stop time stays under every edit', async () => {
    const t = setUp();
    const { reply: started } = await t.say('start 2h');
    await t.show({ deployment: deployment(1, 1), pods: [pod('ready')] });
    assert.deepEqual(t.texts(started.eventId), ['▶️ Started openclaw: ✅ ready after 1 s (pod scheduled on node-3 · container running). ⏲ It stops automatically at 16:02 UTC, in 2 h.']);
    await t.advance(5 * S);
    const { reply } = await t.say('stop');
    assert.match(String(reply.content['body']), /^⏹ Stopping openclaw: replicas 1 → 0\./);
    await t.show({ deployment: deployment(0, 1), pods: [pod('leaving')] });
    await t.advance(8 * S);
    await t.show({ deployment: deployment(0), pods: [] });
    assert.deepEqual(t.texts(reply.eventId), [
      '⏹ Stopping openclaw… ⏳ 1 pod shutting down. ⏲ The automatic stop planned for 16:02 UTC is cancelled.',
      '⏹ Stopped openclaw: ✅ off after 8 s. ⏲ The automatic stop planned for 16:02 UTC is cancelled.',
    ]);
    t.stop();
  });

  test('past the deadline a start still waiting is final: still not ready, and what it waits for', async () => {
    const t = setUp({ progress: { enabled: true, deadlineMs: 60 * S } });
    const { reply } = await t.say('start');
    await t.show({ deployment: deployment(1), pods: [pod('running')] });
    await t.advance(59 * S);
    assert.equal(t.texts(reply.eventId).length, 1);
    await t.advance(S);
    assert.equal(t.texts(reply.eventId).at(-1), '▶️ Starting openclaw: ⚠️ still not ready after 1 min: waiting for the container to pass its readiness probe (0 of 1 ready).');
    assert.equal(t.state.progress.all().length, 0);
    assert.equal(t.clock.pending, 0, 'no timer left');
    t.stop();
  });

  test('the watch down until the deadline: the message says it could not follow, and where to look', async () => {
    const t = setUp({ progress: { enabled: true, deadlineMs: 30 * S } });
    const { reply } = await t.say('start');
    await t.advance(30 * S);
    assert.deepEqual(t.texts(reply.eventId), ['▶️ Starting openclaw: ⚠️ I could not follow it for 30 s: the Kubernetes API did not answer. Say "status" to see where it stands.']);
    t.stop();
  });

  test('a stop before the start was ready: the start\'s message says so and points below; the stop is followed', async () => {
    const t = setUp();
    const { reply: started } = await t.say('start');
    await t.show({ deployment: deployment(1), pods: [pod('creating')] });
    const { reply: stopped } = await t.say('stop');
    await t.show({ deployment: deployment(0), pods: [] });
    assert.equal(t.texts(started.eventId).at(-1), '▶️ Starting openclaw: no longer followed here: a stop came after it (see below).');
    assert.match(t.texts(stopped.eventId).at(-1)!, /^⏹ Stopped openclaw: ✅ off after/);
    assert.equal(t.state.progress.all().length, 0);
    t.stop();
  });

  test('a start on a Deployment already ready: "already on", never edited, nothing followed', async () => {
    const world = cluster();
    world.c.replicas = 1;
    world.c.view = { deployment: deployment(1, 1), pods: [pod('ready')] };
    const t = setUp({ world });
    const { reply } = await t.say('start');
    assert.equal(reply.content['body'], 'openclaw is already on (1 desired).');
    await t.advance(10 * S);
    assert.deepEqual(t.edits(reply.eventId), []);
    assert.equal(t.state.progress.all().length, 0);
    assert.equal(world.c.followers.size, 0);
    t.stop();
  });

  test('bot.progress off: the old reply, sent once; nothing followed', async () => {
    const t = setUp({ progress: { enabled: false, deadlineMs: undefined } });
    const { reply } = await t.say('start');
    assert.equal(reply.content['body'], '▶️ Starting openclaw: replicas 0 → 1. Say "status" to see when it is ready.');
    await t.show({ deployment: deployment(1, 1), pods: [pod('ready')] });
    assert.deepEqual(t.edits(reply.eventId), []);
    assert.equal(t.world.c.follows, 0);
    t.stop();
  });
});

describe('edits across failures and restarts', () => {
  test('the homeserver down: the recorded edit is retried under its transaction id and arrives once it is back', async () => {
    const t = setUp();
    const { event, reply } = await t.say('start');
    t.faults.edit = 'down';
    await t.show({ deployment: deployment(1), pods: [pod('creating')] });
    assert.deepEqual(t.edits(reply.eventId), []);
    await t.show({ deployment: deployment(1, 1), pods: [pod('ready')] });
    t.faults.edit = undefined;
    await t.advance(10 * S);
    const edits = t.edits(reply.eventId);
    assert.deepEqual(edits.map((e) => e.txnId), [`${event.event.event_id}.edit.1`], 'the recorded edit, delivered late; nothing older or repeated');
    assert.match(t.texts(reply.eventId).at(-1)!, /^▶️ Started openclaw: ✅ ready/);
    assert.equal(t.state.progress.all().length, 0);
    t.stop();
  });

  test('the homeserver refuses the edit (the bot was kicked): dropped, not retried', async () => {
    const t = setUp();
    const { reply } = await t.say('start');
    t.faults.edit = 'refused';
    await t.show({ deployment: deployment(1), pods: [pod('creating')] });
    await t.advance(2 * S);
    assert.equal(t.state.progress.all().length, 0);
    await t.advance(60 * S);
    assert.deepEqual(t.edits(reply.eventId), []);
    t.stop();
  });

  test('a restart in the middle: the same message is finished; the last edit is sent again under its own id, once', async () => {
    const world = cluster();
    const clock = new FakeClock(T0);
    const first = setUp({ world, clock });
    const { event, reply } = await first.say('start');
    await first.show({ deployment: deployment(1), pods: [pod('creating')] });
    await first.advance(2 * S);
    const before = first.edits(reply.eventId).map((e) => e.txnId);
    assert.deepEqual(before, [`${event.event.event_id}.edit.1`]);
    const sentBefore = [...first.sent];
    first.stop();
    world.c.followers.clear(); // the process is gone

    const second = setUp({ world, clock, dir: first.dir });
    second.sent.push(...sentBefore); // the homeserver remembers what it stored
    await second.advance(0);
    await second.show({ deployment: deployment(1, 1), pods: [pod('ready')] });
    const edits = second.edits(reply.eventId);
    assert.deepEqual(edits.map((e) => e.txnId), [`${event.event.event_id}.edit.1`, `${event.event.event_id}.edit.2`], 'edit 1 again was the same event; then the final one');
    assert.match(second.texts(reply.eventId).at(-1)!, /^▶️ Started openclaw: ✅ ready/);
    assert.equal(second.state.progress.all().length, 0);
    second.stop();
  });
});

describe('status says why it is not ready, from the pods, and since when it is up', () => {
  test('a crash loop, a wait, and a Deployment up since a time it was not started from chat', async () => {
    const world = cluster();
    const t = setUp({ world });
    world.c.replicas = 1;
    const crashing: PodObject = { ...pod('running'), status: { phase: 'Running', containerStatuses: [{ name: 'openclaw', ready: false, restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 137, reason: 'OOMKilled' } } }] } };
    world.c.view = { deployment: deployment(1), pods: [crashing] };
    const status = async (): Promise<string> => String((await t.say('status')).reply.content['body']);
    assert.equal(await status(), 'openclaw is 🟡 starting: desired 1, ready 0, available 0, updated 0.\n⚠️ It is not getting ready: the container openclaw keeps crashing (last exit code 137, OOMKilled, 3 restarts).');
    world.c.view = { deployment: deployment(1), pods: [pod('running')] };
    assert.equal(await status(), 'openclaw is 🟡 starting: desired 1, ready 0, available 0, updated 0.\n⏳ Waiting for the container to pass its readiness probe (0 of 1 ready).');
    world.c.view = { deployment: deployment(1, 1), pods: [pod('ready')] };
    world.c.since = T0 - 72 * 60_000;
    assert.equal(await status(), 'openclaw is 🟢 running: desired 1, ready 1, available 1, updated 1.\nUp since 12:50 UTC (1 h 12 min).');
    t.stop();
  });
});

describe('pods not allowed', () => {
  test('one warning at start-up, naming the Role; progress then comes from the Deployment\'s counts', async () => {
    const lines: string[] = [];
    const world = cluster();
    world.kube.checkPods = async () => { throw new KubeError('forbidden', 'forbidden: the service account may not list pods in namespace agents', 403); };
    const logger = createLogger({ level: 'warn' }, new Writable({ write(chunk: Buffer, _e, done) { lines.push(chunk.toString()); done(); } }));
    const t = setUp({ world, logger });
    await t.bot.progress.check();
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /cannot list the Deployment's pods \(forbidden: the service account may not list pods in namespace agents\); start and stop progress comes from the Deployment's own status.*config\/kubernetes\/role.yaml/);
    const { reply } = await t.say('start');
    await t.show({ deployment: deployment(1), pods: undefined });
    await t.advance(2 * S);
    await t.show({ deployment: deployment(1, 1), pods: undefined });
    assert.deepEqual(t.texts(reply.eventId), ['▶️ Starting openclaw… ⏳ 0 of 1 ready', '▶️ Started openclaw: ✅ ready after 2 s.']);
    assert.equal(lines.length, 1, 'said once');
    t.stop();
  });
});
