/**
 * Password mode (the old bot's way in: /login + /sync) against a real Synapse, with a real E2EE
 * client as the human and the simulated Kubernetes API. Same pipeline as appservice mode.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MsgType } from 'matrix-js-sdk';
import type { App } from '../../src/app.ts';
import { loadConfig } from '../../src/config/config.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { Human, type TimelineEvent } from '../../src/dev/human.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';
import { start } from '../../src/app.ts';
import { silentLogger } from '../../src/log.ts';
import { StartupError } from '../../src/startup-error.ts';
import { StateDb } from '../../src/store/state-db.ts';

const BOT_PASSWORD = 'toggle bot password ';
const ALICE_PASSWORD = 'alice-password-2';

describe('password mode against a real Synapse', { timeout: 600_000 }, () => {
  let stack: Stack;
  let app: App | undefined;
  let alice: E2eeHuman;
  let plainAlice: Human;
  let room: string;
  let oldRoom: string;
  const botUser = '@toggle:localhost';
  let fatal: Error | undefined;

  const env = (extra: Record<string, string | undefined> = {}): Record<string, string | undefined> =>
    stack.botEnv({ AS_REGISTRATION_FILE: undefined, MATRIX_USER: 'toggle', MATRIX_PASSWORD: BOT_PASSWORD, ...extra });
  const startBot = async (): Promise<App> => (await stack.startBot({ env: env(), deps: { onFatal: (error) => (fatal = error) } })).app;
  const patches = (): number => stack.sim.requests.filter((r) => r.method === 'PATCH').length;
  const fromBot = (m: Message): boolean => m.sender === botUser && m.relatesTo?.['rel_type'] !== 'm.replace'; // edits (progress) aside
  const session = (): { accessToken: string; deviceId: string } => {
    const state = StateDb.open(join(stack.dir, 'bot-data'));
    try {
      return JSON.parse(state.get('password-session') ?? '{}') as { accessToken: string; deviceId: string };
    } finally {
      state.close();
    }
  };

  async function command(text: string, replies = 2): Promise<Message[]> {
    const before = alice.messages(room).filter(fromBot).length;
    await alice.send(room, text);
    return (await alice.waitForMessages(room, fromBot, { count: before + replies, timeoutMs: 30_000 })).slice(before);
  }

  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-password-')) });
    await stack.synapse.registerUser('toggle', BOT_PASSWORD);
    const login = await stack.synapse.registerUser('alice', ALICE_PASSWORD);
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: ALICE_PASSWORD });
    plainAlice = new Human(stack.synapse.baseUrl, login.userId, (await stack.synapse.login('alice', ALICE_PASSWORD)).accessToken);
    await plainAlice.startSync();
  });

  after(async () => {
    await alice?.stop().catch(() => undefined);
    await plainAlice?.stopSync();
    await app?.stop().catch(() => undefined);
    await stack?.stop();
  });

  it('refuses a wrong password with one clear error naming the setting, never the password', async () => {
    const config = loadConfig({ env: env({ MATRIX_PASSWORD: 'not the password' }) });
    await assert.rejects(start(config, { logger: silentLogger(), defaultMetrics: false }), (error: unknown) => {
      assert.ok(error instanceof StartupError);
      assert.match(error.message, /^login refused: wrong user or password for toggle \(bot.password \/ MATRIX_PASSWORD\)$/);
      assert.ok(!error.message.includes('not the password'));
      return true;
    });
  });

  it('does not act on messages sent before its first start', async () => {
    // The account was already in a room (as with the old bot), and a command waits there.
    const manual = await stack.synapse.login('toggle', BOT_PASSWORD);
    oldRoom = await plainAlice.createRoom({ name: 'old room', invite: [botUser] });
    await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/join/${encodeURIComponent(oldRoom)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${manual.accessToken}`, 'content-type': 'application/json' },
      body: '{}',
    });
    await plainAlice.send(oldRoom, 'start');
    app = await startBot();
    assert.equal(app.userId, botUser);
    const status = await plainAlice.send(oldRoom, 'status');
    const replies = await plainAlice.waitFor(oldRoom, (e) => e.sender === botUser && e.type === 'm.room.message', { count: 2 });
    assert.deepEqual(replies.map((e) => e.content['body']), ['🦞 status', 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.']);
    assert.equal(plainAlice.noticesFrom(oldRoom, botUser).length, 2, `only the status after start was answered (${status})`);
    assert.equal(patches(), 0);
  });

  it('joins an encrypted DM on invite and obeys start, status and stop with encrypted replies', async () => {
    room = await alice.createEncryptedRoom([botUser], { isDirect: true });
    const [hello] = await alice.waitForMessages(room, fromBot, { timeoutMs: 30_000 });
    assert.equal(hello?.encrypted, true);
    const started = await command('start');
    assert.match(started[1]?.body ?? '', /Starting openclaw: replicas 0 → 1/);
    assert.ok(started.every((m) => m.encrypted && !m.decryptionFailed));
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    assert.match((await command('status'))[1]?.body ?? '', /openclaw is/);
    assert.match((await command('stop'))[1]?.body ?? '', /Stopping openclaw: replicas 1 → 0/);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 0);
  });

  it('restarts on the same device without logging in again', async () => {
    assert.ok(app);
    const before = { deviceId: app.deviceId, ed25519: app.ed25519, token: session().accessToken };
    await app.stop();
    app = await startBot();
    assert.deepEqual({ deviceId: app.deviceId, ed25519: app.ed25519, token: session().accessToken }, before);
    assert.match((await command('status'))[1]?.body ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
  });

  it('is ready at once after a restart with a saved sync token, not after a 30 s long poll', async () => {
    assert.ok(app);
    // Let the bot's loop catch up with its own replies, so that nothing new waits for it on /sync.
    await new Promise((r) => setTimeout(r, 2000));
    await app.stop();
    const started = Date.now();
    app = await startBot();
    const tookMs = Date.now() - started;
    // start() resolves right after 'ready' is logged.
    assert.ok(tookMs < 10_000, `ready after ${tookMs} ms`);
    console.log(`# password mode: ready ${tookMs} ms after a restart with a saved sync token`);
    assert.equal((await fetch(`http://127.0.0.1:${app.port}/ready`)).status, 200);
    assert.match((await command('status'))[1]?.body ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
  });

  it('back-fills the gap of a limited sync: a command in the middle of a 120-message burst runs exactly once', async () => {
    assert.ok(app);
    const bob = await stack.human('bob'); // not allowed: his messages are chatter the bot ignores
    await plainAlice.invite(oldRoom, bob.userId);
    await bob.join(oldRoom);
    const isReply = (e: TimelineEvent): boolean => e.sender === botUser && e.type === 'm.room.message';
    const repliesBefore = plainAlice.events.filter((e) => e.room_id === oldRoom && isReply(e)).length;
    const patchesBefore = patches();
    await app.stop();
    // More than the sync filter's 50 events arrive while the bot is away; the command is in the gap.
    for (let i = 0; i < 60; i++) await bob.send(oldRoom, `chatter ${i}`);
    const start = await plainAlice.send(oldRoom, 'start');
    await bob.send(oldRoom, 'stop');
    for (let i = 60; i < 119; i++) await bob.send(oldRoom, `chatter ${i}`);
    app = await startBot();
    await plainAlice.waitFor(oldRoom, isReply, { count: repliesBefore + 2, timeoutMs: 30_000 });
    // A later command is answered after the burst: nothing else may have been answered in between.
    const status = await plainAlice.send(oldRoom, 'status');
    await plainAlice.waitFor(oldRoom, isReply, { count: repliesBefore + 4, timeoutMs: 30_000 });
    assert.deepEqual(plainAlice.noticesFrom(oldRoom, botUser, start).slice(0, 2),
      ['🦞 start', '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.']);
    assert.equal(plainAlice.events.filter((e) => e.room_id === oldRoom && isReply(e)).length, repliesBefore + 4, `only start and status were answered (${status})`);
    assert.equal(patches(), patchesBefore + 1);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    const log = (await readFile(join(stack.dir, 'bot.log'), 'utf8')).split('\n').filter((l) => l.includes('back-filled'));
    const filled = JSON.parse(log.at(-1) ?? '{}') as { fetched?: number; room_id?: string };
    assert.equal(filled.room_id, oldRoom);
    assert.ok((filled.fetched ?? 0) >= 60, `fetched ${filled.fetched} events of the gap`);
    // Back to off for the tests that follow; a restart does not run the command again.
    await app.stop();
    app = await startBot();
    await plainAlice.send(oldRoom, 'stop');
    await plainAlice.waitFor(oldRoom, isReply, { count: repliesBefore + 6, timeoutMs: 30_000 });
    assert.equal(patches(), patchesBefore + 2);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 0);
  });

  it('back-fills an encrypted gap too: the command in it decrypts and runs exactly once', async () => {
    assert.ok(app);
    const repliesBefore = alice.messages(room).filter(fromBot).length;
    const patchesBefore = patches();
    await app.stop();
    // Locations are messages the bot ignores. 120 messages also make Alice's client rotate its
    // Megolm session (every 100): the new room key reaches the bot by to-device when it is back.
    const chatter = async (i: number): Promise<void> => void (await alice.client.sendMessage(room, { msgtype: MsgType.Location, body: `here ${i}`, geo_uri: 'geo:52.52,13.40', info: {} }));
    for (let i = 0; i < 60; i++) await chatter(i);
    const start = await alice.send(room, 'start');
    for (let i = 60; i < 119; i++) await chatter(i);
    app = await startBot();
    await alice.waitForMessages(room, fromBot, { count: repliesBefore + 2, timeoutMs: 60_000 });
    const status = await command('status');
    assert.match(status[1]?.body ?? '', /openclaw is/);
    const replies = alice.messages(room).filter(fromBot).slice(repliesBefore);
    assert.deepEqual(replies.map((m) => m.body).slice(0, 2), ['🦞 start', '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.'],
      `the replies to ${start}`);
    assert.equal(replies.length, 4, 'only start and status were answered');
    assert.ok(replies.every((m) => m.encrypted && !m.decryptionFailed));
    assert.equal(patches(), patchesBefore + 1);
    const log = (await readFile(join(stack.dir, 'bot.log'), 'utf8')).split('\n').filter((l) => l.includes('back-filled') && l.includes(room));
    assert.ok(((JSON.parse(log.at(-1) ?? '{}') as { fetched?: number }).fetched ?? 0) >= 60);
    assert.match((await command('stop'))[1]?.body ?? '', /Stopping openclaw: replicas 1 → 0/);
  });

  it('logs in again with the same device when its token is revoked, and keeps working', async () => {
    assert.ok(app);
    const before = session();
    // A logout deletes the device and its keys on Synapse; the bot must bring both back.
    const logout = await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/logout`, { method: 'POST', headers: { authorization: `Bearer ${before.accessToken}` } });
    assert.equal(logout.status, 200);
    const deadline = Date.now() + 20_000;
    while (session().accessToken === before.accessToken && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const after = session();
    assert.notEqual(after.accessToken, before.accessToken);
    assert.equal(after.deviceId, before.deviceId);
    // The keys are published again just after the new login; a client sees them within moments.
    let trust = await alice.deviceTrust(botUser, after.deviceId);
    for (let i = 0; i < 50 && !trust.signedByOwner; i++) {
      await new Promise((r) => setTimeout(r, 200));
      trust = await alice.deviceTrust(botUser, after.deviceId);
    }
    assert.equal(trust.known, true);
    assert.equal(trust.ed25519, app.ed25519, 'the same keys are published again');
    assert.equal(trust.signedByOwner, true);
    assert.match((await command('status'))[1]?.body ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
  });

  it('reconnects after Synapse restarts, and the next command works', async () => {
    assert.ok(app);
    await stack.synapse.stop();
    try {
      const down = Date.now() + 15_000;
      while ((await fetch(`http://127.0.0.1:${app.port}/ready`)).status === 200 && Date.now() < down) await new Promise((r) => setTimeout(r, 100));
      assert.equal((await fetch(`http://127.0.0.1:${app.port}/ready`)).status, 503, 'not ready while the homeserver is down');
      assert.equal((await fetch(`http://127.0.0.1:${app.port}/health`)).status, 200, 'still alive');
      await stack.synapse.restart();
      const up = Date.now() + 40_000;
      while ((await fetch(`http://127.0.0.1:${app.port}/ready`)).status !== 200 && Date.now() < up) await new Promise((r) => setTimeout(r, 200));
      assert.equal((await fetch(`http://127.0.0.1:${app.port}/ready`)).status, 200);
      assert.match((await command('start'))[1]?.body ?? '', /Starting openclaw/);
      assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
      assert.equal(fatal, undefined);
    } finally {
      if (!stack.synapse.running) await stack.synapse.restart();
    }
  });

  it('gives up after SYNC_MAX_RETRIES failed attempts in a row, as the old bot did', async () => {
    assert.ok(app);
    await app.stop();
    fatal = undefined;
    app = (await stack.startBot({ env: env({ SYNC_MAX_RETRIES: '2' }), deps: { onFatal: (error) => (fatal = error) } })).app;
    await stack.synapse.stop();
    // Attempts 1 and 2 wait 1 s and 2 s; the third failure ends it.
    const deadline = Date.now() + 30_000;
    while (!fatal && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await stack.synapse.restart();
    assert.match((fatal as Error | undefined)?.message ?? '', /^gave up after 2 failed attempts: /);
  });
});
