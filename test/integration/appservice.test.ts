/**
 * The appservice path end to end, in a plaintext room: a real Synapse pushes transactions to the
 * bot (started in-process), a real second account acts as the human, and the bot's own
 * Kubernetes client (src/kube, watching the Deployment) talks to the simulated Kubernetes API.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isEdit } from '../../src/matrix/events.ts';
import { parse } from 'yaml';
import type { App } from '../../src/app.ts';
import type { Human, TimelineEvent } from '../../src/dev/human.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';

/** The bot's notices, not the edits of its start/stop replies (issue 11's progress): those are checked where they matter. */
const isNotice = (sender: string) => (e: TimelineEvent): boolean => e.sender === sender && e.type === 'm.room.message' && e.content['msgtype'] === 'm.notice' && !isEdit(e.content);

describe('appservice mode against a real Synapse', { timeout: 300_000 }, () => {
  let stack: Stack;
  let app: App;
  let alice: Human;
  let mallory: Human;
  let room: string;
  let bot: string;

  /** Sends a command and waits for the bot's replies to it (echo + result by default). */
  async function command(text: string, replies = 2, from: Human = alice): Promise<{ eventId: string; texts: string[] }> {
    const before = alice.events.filter(isNotice(bot)).length;
    const eventId = await from.send(room, text);
    const notices = await alice.waitFor(room, isNotice(bot), { count: before + replies });
    return { eventId, texts: notices.slice(before).map((e) => String(e.content['body'])) };
  }

  const patches = (): number => stack.sim.requests.filter((r) => r.method === 'PATCH').length;


  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-as-')) });
    ({ app } = await stack.startBot());
    bot = app.userId;
    alice = await stack.human('alice');
    mallory = await stack.human('mallory');
  });

  after(async () => {
    await stack?.stop();
  });

  it('is ready once the homeserver and the Kubernetes API have answered', async () => {
    const response = await fetch(`http://127.0.0.1:${stack.botPort}/ready`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as { ready: boolean };
    assert.equal(body.ready, true);
  });

  it('joins when an allowed user invites it, and says hello with the command list', async () => {
    room = await alice.createRoom({ name: 'toggle', invite: [bot] });
    const [hello] = await alice.waitFor(room, isNotice(bot));
    assert.match(String(hello?.content['body']), /Hello/);
    assert.match(String(hello?.content['body']), /start \/ on/);
    assert.equal(hello?.content['format'], 'org.matrix.custom.html');
    assert.equal(await alice.membership(room, bot), 'join');
  });

  it('declines an invite from a user who is not allowed', async () => {
    const strangers = await mallory.createRoom({ name: 'not yours', invite: [bot] });
    const deadline = Date.now() + 10_000;
    let membership = await mallory.membership(strangers, bot);
    while (membership === 'invite' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      membership = await mallory.membership(strangers, bot);
    }
    assert.equal(membership, 'leave');
  });

  it('answers help and status', async () => {
    const help = await command('HELP ');
    assert.equal(help.texts[0], '🦞 help');
    assert.match(help.texts[1] ?? '', /status: show desired, ready, available and updated replicas/);
    const status = await command('status');
    assert.match(status.texts[1] ?? '', /openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0\./);
  });

  it('start scales the Deployment to 1 through the scale subresource, once', async () => {
    const before = patches();
    const start = await command('start');
    assert.deepEqual(start.texts, ['🦞 start', '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.']);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    assert.equal(patches(), before + 1);
    const patch = stack.sim.requests.filter((r) => r.method === 'PATCH').at(-1);
    assert.equal(patch?.path, `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${DEPLOYMENT}/scale`);
    assert.equal(patch?.contentType, 'application/merge-patch+json');
  });

  it('status follows the simulated controller from starting to running', async () => {
    // The controller makes pods ready after its delay; poll status through the bot until it says so.
    let last = '';
    for (let i = 0; i < 20 && !last.includes('running'); i++) {
      last = (await command('status')).texts[1] ?? '';
      if (!last.includes('running')) await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(last, /openclaw is 🟢 running: desired 1, ready 1, available 1, updated 1\./);
  });

  it('on is an alias of start and says it is already on', async () => {
    const on = await command('  On ');
    assert.equal(on.texts[1], 'openclaw is already on (1 desired).');
  });

  it('answers an unknown command with the command list, without echo', async () => {
    const unknown = await command('reboot please', 1);
    assert.match(unknown.texts[0] ?? '', /^Unknown command "reboot please"\.\nCommands for openclaw/);
  });

  it('ignores commands from a member who is not allowed', async () => {
    await alice.invite(room, mallory.userId);
    await mallory.join(room);
    const before = patches();
    const malloryEvent = await mallory.send(room, 'stop');
    // The next command from alice is answered; nothing may have come in between for mallory's.
    const status = await command('status');
    const inRoom = alice.events.filter((e) => e.room_id === room);
    const between = inRoom.slice(inRoom.findIndex((e) => e.event_id === malloryEvent) + 1, inRoom.findIndex((e) => e.event_id === status.eventId));
    assert.deepEqual(between.filter(isNotice(bot)), []);
    assert.equal(patches(), before);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
  });

  it("does not obey its own messages", async () => {
    // Post "stop" as the bot itself (the appservice may act as its user); it must not loop.
    const before = patches();
    const registration = parse(await readFile(stack.registrationPath, 'utf8')) as { as_token: string };
    const sent = await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/self-stop?user_id=${encodeURIComponent(bot)}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${registration.as_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ msgtype: 'm.text', body: 'stop' }),
    });
    assert.equal(sent.status, 200);
    const status = await command('status');
    assert.match(status.texts[1] ?? '', /desired 1/);
    assert.equal(patches(), before);
  });

  it('stop scales to 0', async () => {
    const stop = await command('off');
    assert.deepEqual(stop.texts, ['🦞 off', '⏹ Stopping openclaw: replicas 1 → 0.']);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 0);
  });

  it('runs a replayed command event at most once, in the same or a new transaction', async () => {
    const start = await command('start');
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    const event = alice.events.find((e) => e.event_id === start.eventId);
    assert.ok(event);
    const before = patches();
    const noticesBefore = alice.events.filter(isNotice(bot)).length;
    // Scale down behind the bot's back: a replay that ran again would scale it up.
    await command('stop');
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 0);
    const afterStop = patches();
    const replay = { ...event, room_id: room };
    for (const txnId of ['replay-1', 'replay-1', 'replay-2', '1']) {
      const response = await stack.pushTransaction(txnId, { events: [replay] });
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), {});
    }
    const status = await command('status');
    assert.match(status.texts[1] ?? '', /desired 0/);
    assert.equal(patches(), afterStop);
    assert.equal(afterStop, before + 1);
    // Only the stop's and this status's replies arrived: 2 + 2.
    assert.equal(alice.events.filter(isNotice(bot)).length, noticesBefore + 4);
  });

  it('survives its own restart without running anything twice', async () => {
    await app.stop();
    ({ app } = await stack.startBot());
    await stack.waitForAppserviceUp(); // a restart leaves Synapse retrying; an event sent meanwhile can wait for the next one
    const status = await command('status');
    assert.match(status.texts[1] ?? '', /desired 0/);
  });

  it('answers a Kubernetes RBAC refusal with one line in chat, and keeps running', async () => {
    await app.stop();
    ({ app } = await stack.startBot({ env: { KUBECONFIG: stack.readOnlyKubeconfig } }));
    await stack.waitForAppserviceUp(); // a restart leaves Synapse retrying; an event sent meanwhile can wait for the next one
    const start = await command('start');
    assert.equal(start.texts[1], `⚠️ Could not start openclaw: forbidden: the service account may not patch deployments/scale in namespace ${NAMESPACE}`);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 0);
    const status = await command('status');
    assert.match(status.texts[1] ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
    await app.stop();
    ({ app } = await stack.startBot());
    await stack.waitForAppserviceUp(); // a restart leaves Synapse retrying; an event sent meanwhile can wait for the next one
  });

  it('answers a start whose PATCH took effect but was answered too late as a success, not a failure', async () => {
    await app.stop();
    ({ app } = await stack.startBot({ env: { KUBE_TIMEOUT_SECONDS: '1' } }));
    await stack.waitForAppserviceUp(); // a restart leaves Synapse retrying; an event sent meanwhile can wait for the next one
    try {
      // Simulator fault: the PATCH is applied at once, its answer comes after the bot's 1 s limit.
      stack.sim.setFailure({ mode: 'answer-late', delayMs: 2500, match: (r) => r.method === 'PATCH' });
      const before = patches();
      const start = await command('start');
      assert.equal(start.texts[1], '▶️ openclaw is on (1 desired; the Kubernetes API\'s answer was lost, so I read the Deployment back to check). ⏳ This message follows it.');
      assert.equal(patches(), before + 1, 'one PATCH, never repeated');
      assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
      assert.match((await command('stop')).texts[1] ?? '', /Stopping openclaw: replicas 1 → 0/);
    } finally {
      stack.sim.clearFailures();
      await app.stop();
      ({ app } = await stack.startBot());
      await stack.waitForAppserviceUp(); // a restart leaves Synapse retrying; an event sent meanwhile can wait for the next one
    }
  });

  it('answers Kubernetes being unavailable with one line, then recovers', async () => {
    // The whole API refuses: new requests (the watch's reconnections included), and the open watch is dropped.
    stack.sim.setFailure({ status: 503, reason: 'ServiceUnavailable', message: 'the server is currently unable to handle the request', count: 1_000, match: (r) => r.path !== '/version' });
    stack.sim.dropWatches();
    const failed = await command('status');
    assert.match(failed.texts[1] ?? '', /^⚠️ Could not get the status of openclaw: .*503/);
    assert.equal(failed.texts[1]?.includes('\n'), false);
    stack.sim.clearFailures();
    const ok = await command('status');
    assert.match(ok.texts[1] ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
  });

  it('counts commands in /metrics, with the target (named after its Deployment with the old settings)', async () => {
    const text = await (await fetch(`http://127.0.0.1:${stack.botPort}/metrics`)).text();
    assert.match(text, /openclaw_commands_total\{command="status",outcome="ok",target="openclaw"\} [1-9]/);
    assert.match(text, /openclaw_kube_request_duration_seconds_count\{operation="status",target="openclaw",outcome="ok"\} [1-9]/);
  });
});
