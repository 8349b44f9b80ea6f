/**
 * Timed runs with a fake clock: the bot with Kubernetes and the homeserver replaced by fakes, time
 * moved by hand. Expiry, extension, the warning, a stop that fell due while the bot was stopped,
 * crashes around the automatic stop (judged by the PATCHes and the notices' transaction ids), the
 * limits, several people sharing one run, long timers, and the audit Events of each scale.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Bot, type RoomActions } from '../../src/bot/bot.ts';
import { MAX_TIMER_MS } from '../../src/bot/clock.ts';
import { TimeText } from '../../src/bot/time-text.ts';
import { FakeClock } from '../../src/dev/fake-clock.ts';
import { KubeError, type Kube, type KubeEvent } from '../../src/kube/kube.ts';
import { createLogger, silentLogger, type Logger } from '../../src/log.ts';
import type { IncomingEvent } from '../../src/matrix/incoming.ts';
import { MatrixError } from '../../src/matrix/client.ts';
import { Metrics } from '../../src/metrics.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { legacyTarget } from '../../src/config/targets.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const BOB = '@bob:example.org';
const ROOM = '!room:example.org';
const OTHER_ROOM = '!other:example.org';
const H = 3_600_000;
const M = 60_000;
/** The fake clock starts at 14:02 UTC. */
const T0 = Date.UTC(2025, 5, 14, 14, 2);

let root: string;
let dirs = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'openclaw-timed-runs-test-'))));
after(() => rmSync(root, { recursive: true, force: true }));

interface Sent { roomId: string; body: string; txnId: string }

/** A fake cluster shared by the bots of one test (a restart keeps the Deployment). */
function cluster() {
  const c = {
    replicas: 0,
    patches: [] as number[],
    events: [] as KubeEvent[],
    /** While set, a scale never answers (the process "dies" in the middle). */
    hang: false,
    /** While set, scales fail with this. */
    fail: undefined as KubeError | undefined,
    eventsRefused: false,
  };
  const kube: Kube = {
    scale: async (_t, to) => {
      if (c.fail) throw c.fail;
      c.patches.push(to);
      const previous = c.replicas;
      c.replicas = to;
      if (c.hang) await new Promise(() => undefined);
      return { previous, desired: to };
    },
    status: async () => ({ desired: c.replicas, ready: c.replicas, available: c.replicas, updated: c.replicas, state: c.replicas ? 'running' : 'off' }),
    ping: async () => undefined,
    recordEvent: async (_t, event, options) => {
      if (c.eventsRefused) throw new KubeError('forbidden', 'forbidden: the service account may not create events in namespace agents', 403);
      if (!options?.dryRun) c.events.push(event);
    },
  };
  return { ...c, state: c, kube };
}

function setUp(options: { dir?: string; clock?: FakeClock; world?: ReturnType<typeof cluster>; defaultMs?: number; maxMs?: number; timeZone?: string; logger?: Logger } = {}) {
  const dir = options.dir ?? join(root, `state-${++dirs}`);
  const state = StateDb.open(dir);
  const clock = options.clock ?? new FakeClock(T0);
  const world = options.world ?? cluster();
  const sent: Sent[] = [];
  const sendFaults = { match: undefined as RegExp | undefined };
  const rooms: RoomActions = {
    join: async () => undefined,
    leave: async () => undefined,
    send: async (roomId, content, txnId) => {
      const body = String(content['body']);
      if (sendFaults.match?.test(body)) throw new MatrixError({ errcode: 'M_UNKNOWN', status: 502, method: 'PUT', path: '/send', message: 'Bad gateway' });
      sent.push({ roomId, body, txnId });
    },
  };
  const bot = new Bot({
    userId: BOT, allowedUsers: [ALICE, BOB], targets: [legacyTarget('agents', 'openclaw')], echo: false, commandPrefix: '', maxCommandAgeSeconds: 0,
    kube: world.kube, rooms, state, metrics: new Metrics({ defaultMetrics: false }), logger: options.logger ?? silentLogger(),
    runs: { limits: { defaultMs: options.defaultMs, maxMs: options.maxMs }, time: new TimeText(options.timeZone ?? 'UTC'), clock },
  });
  let tail: Promise<unknown> = Promise.resolve();
  const serialize = <T>(work: () => Promise<T>): Promise<T> => {
    const run = tail.then(work);
    tail = run.catch(() => undefined);
    return run;
  };
  let ids = 0;
  const say = async (body: string, sender = ALICE, room = ROOM): Promise<string | undefined> => {
    const before = sent.length;
    const event: IncomingEvent = { event: { event_id: `$e${dirs}-${++ids}-${Math.random()}`, room_id: room, sender, type: 'm.room.message', origin_server_ts: clock.now(), content: { msgtype: 'm.text', body } }, encrypted: false };
    await serialize(() => bot.handle([event]));
    return sent.slice(before).find((s) => s.roomId === room)?.body;
  };
  const settled = async (): Promise<void> => {
    await bot.timers.settled();
    await bot.audit.settled();
  };
  /** Moves the clock timer by timer, letting the work each one starts finish (as real time would). */
  const advance = (ms: number): Promise<void> => clock.advanceSettling(ms, settled);
  return { dir, state, clock, world, bot, sent, sendFaults, say, advance, serialize, start: () => bot.startTimers(serialize), stop: () => { bot.timers.stop(); state.close(); } };
}

const notices = (t: { sent: Sent[] }, from = 0): string[] => t.sent.slice(from).map((s) => s.body);

describe('a timed run: start, warning, automatic stop', () => {
  test('start 2h: on now, warned 10 min before, stopped after 2 h and told in the room; nothing left armed', async () => {
    const t = setUp();
    await t.start();
    const reply = await t.say('start 2h');
    assert.equal(reply, '▶️ Starting openclaw: replicas 0 → 1. Say "status" to see when it is ready. ⏲ It stops automatically at 16:02 UTC, in 2 h.');
    assert.deepEqual(t.world.patches, [1]);
    assert.equal(await t.say('status'), 'openclaw is 🟢 running: desired 1, ready 1, available 1, updated 1.\nRunning since 14:02 (started by @alice:example.org), stops at 16:02 UTC, in 2 h.');
    assert.equal(t.bot.timers.armedFor, T0 + 2 * H - 10 * M, 'one timer, for the warning');

    await t.advance(48 * M);
    assert.equal(await t.say('status'), 'openclaw is 🟢 running: desired 1, ready 1, available 1, updated 1.\nRunning since 14:02 (started by @alice:example.org), stops at 16:02 UTC, in 1 h 12 min.');
    const before = t.sent.length;
    await t.advance(62 * M); // 15:52
    assert.deepEqual(notices(t, before), ['⏲ openclaw stops automatically in 10 min, at 16:02 UTC (started by @alice:example.org at 14:02). Say "extend 1h" to keep it running longer, or "stop" to stop it now.']);
    assert.equal(t.sent.at(-1)?.roomId, ROOM);
    assert.equal(t.bot.timers.armedFor, T0 + 2 * H, 'then one timer, for the stop');

    await t.advance(10 * M); // 16:02
    assert.deepEqual(t.world.patches, [1, 0], 'stopped once');
    assert.equal(t.sent.at(-1)?.body, '⏹ Stopped openclaw automatically at 16:02 UTC, as planned: the run started by @alice:example.org at 14:02 is over (2 h). Say "start" to start it again.');
    assert.equal(t.sent.at(-1)?.roomId, ROOM);
    assert.equal(t.state.runs.get('agents/openclaw'), undefined);
    assert.equal(t.clock.pending, 0, 'an idle bot has no timer');
    assert.equal(await t.say('status'), 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.');
    await t.advance(5 * H);
    assert.deepEqual(t.world.patches, [1, 0]);
    t.stop();
  });

  test('the notices have transaction ids derived from the run, so a repeated one is the same message', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 30m');
    await t.advance(30 * M);
    const [warning, stop] = t.sent.slice(-2);
    const runId = t.sent.find((s) => s.body.startsWith('▶️'))!.txnId.replace(/\.result$/, '');
    assert.equal(warning?.txnId, `${runId}~run.warning-${T0 + 30 * M}`);
    assert.equal(stop?.txnId, `${runId}~run.stop`);
    t.stop();
  });

  test('a short run gets no warning: the person was told the stop time less than 10 min before', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 10m');
    const before = t.sent.length;
    await t.advance(10 * M);
    assert.equal(notices(t, before).length, 1);
    assert.match(notices(t, before)[0] ?? '', /^⏹ Stopped openclaw automatically/);
    t.stop();
  });
});

describe('extend and stop', () => {
  test('extend 1h by another allowed user moves the stop and the warning, and says who', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 2h');
    await t.advance(H);
    assert.equal(await t.say('extend 1h', BOB), '⏲ Extended by 1 h: openclaw now stops at 17:02 UTC, in 2 h (instead of 16:02).');
    assert.equal(await t.say('status', ALICE), 'openclaw is 🟢 running: desired 1, ready 1, available 1, updated 1.\nRunning since 14:02 (started by @alice:example.org), stops at 17:02 UTC, in 2 h (set by @bob:example.org).');
    const before = t.sent.length;
    await t.advance(H - 8 * M); // 15:54: the old warning time has passed, nothing said
    assert.deepEqual(notices(t, before), []);
    await t.advance(58 * M); // 16:52
    assert.match(notices(t, before)[0] ?? '', /^⏲ openclaw stops automatically in 10 min, at 17:02 UTC/);
    await t.advance(10 * M);
    assert.deepEqual(t.world.patches, [1, 0]);
    t.stop();
  });

  test('extend after the warning gets a new warning before the new stop time', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 1h');
    await t.advance(52 * M);
    assert.equal(t.sent.filter((s) => s.body.startsWith('⏲ openclaw stops automatically')).length, 1);
    await t.say('extend 30m');
    await t.advance(28 * M); // 10 min before 15:32
    assert.equal(t.sent.filter((s) => s.body.startsWith('⏲ openclaw stops automatically')).length, 2);
    t.stop();
  });

  test('stop cancels the timer; nothing happens later', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 2h');
    assert.equal(await t.say('stop', BOB), '⏹ Stopping openclaw: replicas 1 → 0. ⏲ The automatic stop planned for 16:02 UTC is cancelled.');
    assert.equal(t.clock.pending, 0);
    const before = t.sent.length;
    await t.advance(3 * H);
    assert.deepEqual(t.world.patches, [1, 0]);
    assert.deepEqual(notices(t, before), []);
    t.stop();
  });

  test('a change from another room is also said in the run\'s room, naming who made it', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 2h');
    await t.say('extend 30m', BOB, OTHER_ROOM);
    assert.deepEqual(t.sent.slice(-2).map((s) => [s.roomId, s.body]), [
      [OTHER_ROOM, '⏲ Extended by 30 min: openclaw now stops at 16:32 UTC, in 2 h 30 min (instead of 16:02).'],
      [ROOM, '⏲ @bob:example.org extended the run of openclaw from another room: it now stops at 16:32 UTC, in 2 h 30 min.'],
    ]);
    await t.say('stop', BOB, OTHER_ROOM);
    assert.deepEqual(t.sent.at(-1), { roomId: ROOM, body: '⏹ @bob:example.org stopped openclaw from another room; the automatic stop planned for 16:32 UTC is cancelled.', txnId: t.sent.at(-1)?.txnId });
    t.stop();
  });

  test('a bare start on a timed run keeps its stop time; start 1h sets a new one', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 2h');
    assert.equal(await t.say('start'), 'openclaw is already on (1 desired). Say "status" to see if it is ready. ⏲ It still stops at 16:02 UTC, in 2 h: say "extend 1h" to keep it longer.');
    await t.advance(30 * M);
    assert.equal(await t.say('start 1h'), 'openclaw is already on (1 desired). Say "status" to see if it is ready. ⏲ It now stops at 15:32 UTC, in 1 h (instead of 16:02).');
    await t.advance(H);
    assert.deepEqual(t.world.patches, [1, 1, 1, 0]);
    t.stop();
  });

  test('extend with nothing to extend, extend without a time, a run time that is not one', async () => {
    const t = setUp();
    await t.start();
    assert.equal(await t.say('extend 1h'), 'openclaw is off: there is no run to extend. Say "start 1h" to start it for an hour.');
    await t.say('start');
    assert.equal(await t.say('status'), 'openclaw is 🟢 running: desired 1, ready 1, available 1, updated 1.\nRunning since 14:02 UTC (started by @alice:example.org), with no automatic stop.');
    assert.equal(await t.say('extend 1h'), 'openclaw has no automatic stop, so there is nothing to extend. Say "start 1h" to have it stop in 1 h, or "stop" to stop it now.');
    assert.equal(await t.say('extend'), 'Say how much longer, for example "extend 1h" or "extend 30m".');
    assert.equal(await t.say('start soon'), 'I did not understand "soon" as a run time. Say for example "start 2h", "start 30m" or "start 1h30m" (at least one minute).');
    assert.match(await t.say('stop 5m') ?? '', /^"stop" takes no time/);
    assert.deepEqual(t.world.patches, [1], 'none of these scaled anything');
    t.stop();
  });
});

describe('limits', () => {
  test('bot.maxRunTime: a longer start is refused before anything is done; extend cannot go beyond it from now', async () => {
    const t = setUp({ maxMs: 4 * H });
    await t.start();
    assert.equal(await t.say('start 5h'), '⚠️ Not starting openclaw for 5 h: the longest run allowed is 4 h (set by the operator). Say "start 4h" or less.');
    assert.deepEqual(t.world.patches, []);
    await t.say('start 3h');
    assert.equal(await t.say('extend 2h'), '⚠️ Not extended: openclaw would then stop at 19:02 UTC, in 5 h, and no run may end more than 4 h ahead (set by the operator). The most you can add now is 1 h.');
    assert.match(await t.say('extend 1h') ?? '', /now stops at 18:02 UTC, in 4 h/);
    t.stop();
  });

  test('bot.maxRunTime alone: a bare start runs for the maximum', async () => {
    const t = setUp({ maxMs: 8 * H });
    await t.start();
    assert.match(await t.say('start') ?? '', /It stops automatically at 22:02 UTC, in 8 h \(the default run time/);
    t.stop();
  });

  test('bot.defaultRunTime: a bare start is timed, start 4h sets its own time', async () => {
    const t = setUp({ defaultMs: 2 * H, maxMs: 8 * H });
    await t.start();
    assert.equal(await t.say('start'), '▶️ Starting openclaw: replicas 0 → 1. Say "status" to see when it is ready. ⏲ It stops automatically at 16:02 UTC, in 2 h (the default run time; "start 4h" sets another).');
    await t.say('stop');
    assert.match(await t.say('start 4h') ?? '', /It stops automatically at 18:02 UTC, in 4 h\.$/);
    t.stop();
  });

  test('a run started before the Deployment was stopped behind the bot\'s back is not continued by a new start', async () => {
    const t = setUp({ defaultMs: 2 * H });
    await t.start();
    await t.say('start 30m');
    t.world.state.replicas = 0; // kubectl scale --replicas=0
    await t.advance(H);
    assert.equal(await t.say('start', BOB), '▶️ Starting openclaw: replicas 0 → 1. Say "status" to see when it is ready. ⏲ It stops automatically at 17:02 UTC, in 2 h (the default run time; "start 4h" sets another).');
    assert.match(await t.say('status') ?? '', /Running since 15:02 \(started by @bob:example.org\)/);
    t.stop();
  });
});

describe('restarts and crashes', () => {
  test('a stop that fell due while the bot was stopped runs at start-up, once, and says so', async () => {
    const clock = new FakeClock(T0);
    const world = cluster();
    const first = setUp({ clock, world });
    await first.start();
    await first.say('start 2h');
    first.stop(); // the bot is down from 14:02 ...
    clock.advance(2 * H + 45 * M); // ... until 16:47: no timer fired meanwhile
    assert.deepEqual(world.patches, [1]);
    const second = setUp({ clock, world, dir: first.dir });
    await second.start();
    assert.deepEqual(world.patches, [1, 0]);
    assert.deepEqual(notices(second), ['⏹ Stopped openclaw now, 45 min late: its run (started by @alice:example.org at 14:02) was due to stop at 16:02 UTC, while I was not running. Say "start" to start it again.']);
    assert.equal(second.sent[0]?.roomId, ROOM);
    assert.equal(second.state.runs.get('agents/openclaw'), undefined);
    second.stop();
    const third = setUp({ clock, world, dir: first.dir });
    await third.start();
    assert.deepEqual(world.patches, [1, 0], 'never twice');
    third.stop();
  });

  test('the timer survives a restart: the new process warns and stops on time', async () => {
    const clock = new FakeClock(T0);
    const world = cluster();
    const first = setUp({ clock, world });
    await first.start();
    await first.say('start 1h');
    first.stop();
    clock.advance(10 * M);
    const second = setUp({ clock, world, dir: first.dir });
    await second.start();
    assert.equal(second.bot.timers.armedFor, T0 + 50 * M);
    await second.advance(40 * M);
    await second.advance(10 * M);
    assert.deepEqual(notices(second).map((n) => /^\S+ \S+ \S+ \S+/.exec(n)?.[0]), ['⏲ openclaw stops automatically', '⏹ Stopped openclaw automatically']);
    assert.deepEqual(world.patches, [1, 0]);
    second.stop();
  });

  test('a crash while the automatic stop\'s PATCH was in flight: the restart reads back and does not stop again when it took effect', async () => {
    const clock = new FakeClock(T0);
    const world = cluster();
    const first = setUp({ clock, world });
    await first.start();
    await first.say('start 30m');
    world.state.hang = true;
    clock.advance(30 * M); // the PATCH leaves (and is applied), its answer never comes: the process dies here
    await new Promise((r) => setTimeout(r, 20));
    first.bot.timers.stop();
    assert.equal(first.state.runs.get('agents/openclaw')?.stopping, true, 'marked before the PATCH');
    first.state.close();
    world.state.hang = false;
    const second = setUp({ clock, world, dir: first.dir });
    await second.start();
    assert.deepEqual(world.patches, [1, 0], 'no second PATCH');
    assert.deepEqual(notices(second), ['⏹ Stopped openclaw automatically at 14:32 UTC, as planned: the run started by @alice:example.org at 14:02 is over (30 min). Say "start" to start it again.']);
    assert.equal(second.state.runs.get('agents/openclaw'), undefined);
    second.stop();
  });

  test('a crash after the mark, before the PATCH left: the restart makes the stop', async () => {
    const clock = new FakeClock(T0);
    const world = cluster();
    const first = setUp({ clock, world });
    await first.start();
    await first.say('start 30m');
    const run = first.state.runs.get('agents/openclaw')!;
    first.state.runs.put({ ...run, stopping: true }); // as the mark leaves it
    first.stop();
    clock.advance(30 * M);
    const second = setUp({ clock, world, dir: first.dir });
    await second.start();
    assert.deepEqual(world.patches, [1, 0]);
    assert.match(notices(second)[0] ?? '', /^⏹ Stopped openclaw automatically at 14:32 UTC/);
    second.stop();
  });

  test('the stop\'s notice could not be sent (homeserver down): retried later with the same content and transaction id, the PATCH not repeated', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 30m');
    t.sendFaults.match = /^⏹ Stopped/;
    await t.advance(30 * M);
    assert.deepEqual(t.world.patches, [1, 0]);
    assert.equal(t.state.runs.get('agents/openclaw')?.stopping, true);
    assert.equal(t.bot.timers.armedFor, T0 + 30 * M + 30_000, 'retried after 30 s');
    t.sendFaults.match = undefined;
    await t.advance(30_000);
    assert.deepEqual(t.world.patches, [1, 0]);
    assert.equal(t.sent.at(-1)?.body, '⏹ Stopped openclaw automatically at 14:32 UTC, as planned: the run started by @alice:example.org at 14:02 is over (30 min). Say "start" to start it again.');
    assert.match(t.sent.at(-1)?.txnId ?? '', /~run\.stop$/);
    assert.equal(t.state.runs.get('agents/openclaw'), undefined);
    t.stop();
  });

  test('Kubernetes refuses the automatic stop: said once in the room, retried with backoff until it works', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 30m');
    t.world.state.fail = new KubeError('unreachable', 'the Kubernetes API at https://k is unreachable (ECONNREFUSED)');
    await t.advance(30 * M);
    await t.advance(30_000);
    await t.advance(60_000);
    const failures = t.sent.filter((s) => s.body.startsWith('⚠️ Could not stop openclaw automatically'));
    assert.equal(failures.length, 1, 'said once, not at every retry');
    assert.equal(failures[0]?.body, '⚠️ Could not stop openclaw automatically: the Kubernetes API at https://k is unreachable (ECONNREFUSED). I will keep trying (next in 1 min); say "stop" to try yourself.');
    assert.match(await t.say('status') ?? '', /its automatic stop was due at 14:32 UTC and has not succeeded yet: I keep trying\./);
    t.world.state.fail = undefined;
    await t.advance(120_000);
    assert.deepEqual(t.world.patches, [1, 0]);
    assert.match(t.sent.at(-1)?.body ?? '', /^⏹ Stopped openclaw now, 4 min late/); // 30 s + 1 min + 2 min of retries
    t.stop();
  });
});

describe('a start while the automatic stop keeps failing', () => {
  test('is a new run: its own time, and the failing stop is not retried over it', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 30m');
    t.world.state.fail = new KubeError('server', 'the Kubernetes API failed with 500 InternalError; try again shortly', 500);
    await t.advance(30 * M);
    assert.equal(t.state.runs.get('agents/openclaw')?.stopping, true);
    t.world.state.fail = undefined;
    assert.equal(await t.say('start 1h', BOB), 'openclaw is already on (1 desired). Say "status" to see if it is ready. ⏲ It stops automatically at 15:32 UTC, in 1 h.');
    await t.advance(10 * M);
    assert.deepEqual(t.world.patches, [1, 1], 'the old stop was not retried');
    assert.match(await t.say('status') ?? '', /Running since 14:32 \(started by @bob:example.org\), stops at 15:32 UTC, in 50 min\.$/);
    t.stop();
  });
});

describe('long timers and time zones', () => {
  test('a run longer than Node\'s longest timer (24.8 days) is armed in clamped steps and stops once, on time', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 30d');
    assert.ok(t.clock.delays.every((d) => d <= MAX_TIMER_MS), `delays ${t.clock.delays.join(', ')}`);
    await t.advance(30 * 24 * H - 10 * M - 1);
    assert.deepEqual(t.world.patches, [1], 'still running a moment before the warning');
    assert.ok(t.clock.delays.length >= 2, 're-armed after the clamped step');
    await t.advance(10 * M + 1);
    assert.deepEqual(t.world.patches, [1, 0]);
    t.stop();
  });

  test('bot.timeZone: times in that zone, named', async () => {
    const t = setUp({ timeZone: 'Europe/Berlin' });
    await t.start();
    assert.equal(await t.say('start 12h'), '▶️ Starting openclaw: replicas 0 → 1. Say "status" to see when it is ready. ⏲ It stops automatically at 04:02 tomorrow CEST, in 12 h.');
    assert.match(await t.say('status') ?? '', /Running since 16:02 \(started by @alice:example.org\), stops at 04:02 tomorrow CEST, in 12 h\./);
    t.stop();
  });
});

describe('audit Events in the cluster', () => {
  test('each scale is recorded: who, where, timed; the automatic stop says it was the timer', async () => {
    const t = setUp();
    await t.start();
    await t.say('start 2h');
    await t.say('start'); // no change: no Event
    await t.bot.audit.settled();
    await t.advance(2 * H);
    await t.say('start', BOB, OTHER_ROOM);
    await t.say('stop', BOB, OTHER_ROOM);
    await t.bot.audit.settled();
    assert.deepEqual(t.world.events.map((e) => [e.reason, e.action, e.note]), [
      ['ScaledByChat', 'Start', `start by ${ALICE} in ${ROOM} (timed 2h)`],
      ['ScaledByChat', 'Stop', `stop by timer (run started by ${ALICE} in ${ROOM} at 2025-06-14T14:02Z, due 2025-06-14T16:02Z)`],
      ['ScaledByChat', 'Start', `start by ${BOB} in ${OTHER_ROOM}`],
      ['ScaledByChat', 'Stop', `stop by ${BOB} in ${OTHER_ROOM}`],
    ]);
    t.stop();
  });

  test('create on events refused: one warning at start-up, no Event tried afterwards, the replies unchanged', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info' }, new Writable({ write(chunk, _e, done) { lines.push(String(chunk)); done(); } }));
    const world = cluster();
    world.state.eventsRefused = true;
    const t = setUp({ world, logger });
    await t.bot.audit.check();
    await t.start();
    assert.equal(await t.say('start'), '▶️ Starting openclaw: replicas 0 → 1. Say "status" to see when it is ready.');
    await t.say('stop');
    await t.bot.audit.settled();
    const warnings = lines.filter((l) => l.includes('cannot record scales as Events'));
    assert.equal(warnings.length, 1, lines.join(''));
    assert.match(warnings[0] ?? '', /forbidden: the service account may not create events in namespace agents/);
    assert.equal(t.bot.audit.enabled, false);
    t.stop();
  });
});
