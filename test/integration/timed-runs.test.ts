/**
 * A timed run through a real Synapse, the bot started in-process with an injected clock (the
 * grammar stays in minutes; the test moves time by hand): `start 2h`, `status` with the time left,
 * `extend 1h`, the warning, the automatic stop said in the room and made on the (simulated)
 * cluster with an audit Event; then a stop that fell due while the bot was down, made at start-up.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isEdit } from '../../src/matrix/events.ts';
import type { App } from '../../src/app.ts';
import { FakeClock } from '../../src/dev/fake-clock.ts';
import type { Human, TimelineEvent } from '../../src/dev/human.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';

/** The bot's notices, not the edits of its start/stop replies (issue 11's progress): those are checked where they matter. */
const isNotice = (sender: string) => (e: TimelineEvent): boolean => e.sender === sender && e.type === 'm.room.message' && e.content['msgtype'] === 'm.notice' && !isEdit(e.content);
const H = 3_600_000;
const M = 60_000;
/** 14:02 UTC: the times in chat are predictable. */
const T0 = Date.UTC(2025, 5, 14, 14, 2);

describe('timed runs through a real Synapse', { timeout: 300_000 }, () => {
  let stack: Stack;
  let app: App;
  let alice: Human;
  let room: string;
  let bot: string;
  const clock = new FakeClock(T0);

  const notices = (): string[] => alice.events.filter((e) => e.room_id === room && isNotice(bot)(e)).map((e) => String(e.content['body']));
  /** Sends a command and returns the bot's answer (after its echo). */
  async function command(text: string): Promise<string> {
    const before = notices().length;
    await alice.send(room, text);
    await alice.waitFor(room, isNotice(bot), { count: before + 2 });
    return notices()[before + 1] ?? '';
  }
  /** Moves the clock to `at` and waits for the notice(s) the timer then sends. */
  async function timeTo(at: number, count = 1): Promise<string[]> {
    const before = notices().length;
    clock.set(at);
    await alice.waitFor(room, isNotice(bot), { count: before + count, timeoutMs: 20_000 });
    return notices().slice(before);
  }
  const replicas = (): number | undefined => stack.sim.replicas(NAMESPACE, DEPLOYMENT);

  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-timed-')) });
    ({ app } = await stack.startBot({ deps: { clock } }));
    bot = app.userId;
    alice = await stack.human('alice');
    room = await alice.createRoom({ name: 'timed', invite: [bot] });
    await alice.waitFor(room, isNotice(bot));
  });

  after(async () => {
    await stack?.stop();
  });

  it('help lists the timed forms', async () => {
    const help = await command('help');
    assert.match(help, /start 2h \/ on 30m: start it, and stop it again automatically after that time/);
    assert.match(help, /extend 1h: add time before the automatic stop/);
  });

  it('start 2h starts now and says when it stops', async () => {
    assert.equal(await command('start 2h'), '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it. ⏲ It stops automatically at 16:02 UTC, in 2 h.');
    assert.equal(replicas(), 1);
  });

  it('status says since when, by whom, and the time left', async () => {
    clock.set(T0 + 48 * M);
    const status = await command('status');
    assert.match(status, /^openclaw is (🟢 running|🟡 starting): desired 1/);
    assert.match(status, /\n(Running|On) since 14:02 \(started by @alice:localhost\), stops at 16:02 UTC, in 1 h 12 min\.$/);
  });

  it('extend 1h adds time', async () => {
    assert.equal(await command('extend 1h'), '⏲ Extended by 1 h: openclaw now stops at 17:02 UTC, in 2 h 12 min (instead of 16:02).');
  });

  it('a warning 10 minutes before, then the automatic stop, both in the room; the cluster shows who did what', async () => {
    const [warning] = await timeTo(T0 + 3 * H - 10 * M);
    assert.equal(warning, '⏲ openclaw stops automatically in 10 min, at 17:02 UTC (started by @alice:localhost at 14:02). Say "extend 1h" to keep it running longer, or "stop" to stop it now.');
    assert.equal(replicas(), 1);
    const [stopped] = await timeTo(T0 + 3 * H);
    assert.equal(stopped, '⏹ Stopped openclaw automatically at 17:02 UTC, as planned: the run started by @alice:localhost at 14:02 is over (3 h). Say "start" to start it again.');
    assert.equal(replicas(), 0);
    assert.equal(stack.sim.requests.filter((r) => r.method === 'PATCH').length, 2, 'one start, one stop');
    for (let i = 0; i < 50 && stack.sim.events(NAMESPACE).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(stack.sim.events(NAMESPACE).map((e) => [e['reason'], e['action'], String(e['note']).replace(room, '!room')]), [
      ['ScaledByChat', 'Start', 'start by @alice:localhost in !room (timed 2h)'],
      ['ScaledByChat', 'Stop', 'stop by timer (run started by @alice:localhost in !room at 2025-06-14T14:02Z, due 2025-06-14T17:02Z)'],
    ]);
  });

  it('a stop that fell due while the bot was down is made at start-up, and said', async () => {
    assert.match(await command('start 30m'), /It stops automatically at 17:32 UTC, in 30 min\.$/);
    await app.stop();
    clock.set(T0 + 4 * H); // 18:02: the bot was down when the run should have ended
    const before = notices().length;
    ({ app } = await stack.startBot({ deps: { clock } }));
    await stack.waitForAppserviceUp(30_000); // Synapse may still be retrying pushes to the stopped bot
    await alice.waitFor(room, isNotice(bot), { count: before + 1, timeoutMs: 20_000 });
    assert.equal(notices()[before], '⏹ Stopped openclaw now, 30 min late: its run (started by @alice:localhost at 17:02) was due to stop at 17:32 UTC, while I was not running. Say "start" to start it again.');
    assert.equal(replicas(), 0);
    assert.match(await command('status'), /^openclaw is (⚪ off|🟠 stopping): desired 0/);
  });
});
