/**
 * The bot in an end-to-end-encrypted DM, against a real Synapse, with a real E2EE client as the
 * human (matrix-js-sdk + Rust crypto, Element's engine) and the simulated Kubernetes API.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';
import { StateDb } from '../../src/store/state-db.ts';

const PASSWORD = 'alice-password-1';

describe('end-to-end encryption against a real Synapse', { timeout: 600_000 }, () => {
  let stack: Stack;
  let app: App | undefined;
  let child: ChildProcess | undefined;
  let alice: E2eeHuman;
  const others: E2eeHuman[] = [];
  let room: string;
  let bot: string;
  let children = 0;

  const patches = (): number => stack.sim.requests.filter((r) => r.method === 'PATCH').length;
  const fromBot = (m: Message): boolean => m.sender === bot && m.relatesTo?.['rel_type'] !== 'm.replace'; // edits (progress) aside

  /** Sends a command as `who` and returns the bot's next `replies` messages as alice sees them. */
  async function command(text: string, replies = 2, who: E2eeHuman = alice): Promise<{ eventId: string; messages: Message[] }> {
    const before = alice.messages(room).filter(fromBot).length;
    const eventId = await who.send(room, text);
    const seen = await alice.waitForMessages(room, fromBot, { count: before + replies, timeoutMs: 30_000 });
    return { eventId, messages: seen.slice(before) };
  }
  const bodies = (messages: Message[]): string[] => messages.map((m) => m.body ?? '');

  async function startChild(): Promise<ChildProcess> {
    // The child's JSON log goes to a file in the stack's directory, for diagnosis.
    const log = await open(join(stack.dir, `bot-child-${++children}.log`), 'w');
    const proc = spawn(join(process.cwd(), 'node_modules/.bin/node'), ['src/main.ts'], {
      env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...stack.botEnv({ LOG_LEVEL: 'debug' }) } as NodeJS.ProcessEnv,
      stdio: ['ignore', log.fd, 'pipe'],
    });
    await log.close();
    let stderr = '';
    proc.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`bot exited with ${proc.exitCode}: ${stderr}`);
      const ok = await fetch(`http://127.0.0.1:${stack.botPort}/ready`).then((r) => r.status === 200, () => false);
      if (ok) {
        await stack.waitForAppserviceUp();
        return proc;
      }
      if (Date.now() > deadline) throw new Error(`bot not ready in 30 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function killChild(): Promise<void> {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child?.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  async function storedDeviceId(): Promise<string> {
    const device = JSON.parse(await readFile(join(stack.dir, 'bot-data', 'crypto', 'device.json'), 'utf8')) as { deviceId: string };
    return device.deviceId;
  }

  async function human(localpart: string, options: { crossSign?: boolean; replaceIdentity?: boolean; register?: boolean } = {}): Promise<E2eeHuman> {
    const login = options.register === false ? await stack.synapse.login(localpart, PASSWORD) : await stack.synapse.registerUser(localpart, PASSWORD);
    const person = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: PASSWORD, crossSign: options.crossSign ?? true, replaceIdentity: options.replaceIdentity ?? false });
    others.push(person);
    return person;
  }

  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-e2ee-')) });
    ({ app } = await stack.startBot());
    bot = app.userId;
    alice = await human('alice');
  });

  after(async () => {
    for (const person of others) await person.stop().catch(() => undefined);
    await killChild();
    await app?.stop().catch(() => undefined);
    await stack?.stop();
  });

  it('joins an encrypted DM on invite and greets in an encrypted message', async () => {
    room = await alice.createEncryptedRoom([bot], { name: 'openclaw', isDirect: true });
    const [hello] = await alice.waitForMessages(room, fromBot, { timeoutMs: 30_000 });
    assert.equal(hello?.encrypted, true);
    assert.equal(hello?.decryptionFailed, false);
    assert.match(hello?.body ?? '', /Hello! I start and stop openclaw/);
  });

  it('obeys status, start and stop in the encrypted room, answering encrypted', async () => {
    const status = await command('status');
    assert.deepEqual(bodies(status.messages), ['🦞 status', 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.']);
    assert.ok(status.messages.every((m) => m.encrypted && !m.decryptionFailed));
    const start = await command('start');
    assert.match(bodies(start.messages)[1] ?? '', /Starting openclaw: replicas 0 → 1/);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    const stop = await command('stop');
    assert.match(bodies(stop.messages)[1] ?? '', /Stopping openclaw: replicas 1 → 0/);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 0);
  });

  it("puts ▶️ ⏹️ 🔄 under its status reply (in plaintext, as Element Web sends reactions); alice's ▶️ (plaintext) starts the Deployment like a typed start, her encrypted ⏹ stops it", async () => {
    const buttonsOn = async (m: Message | undefined): Promise<string> => {
      assert.ok(m);
      const found = await alice.waitForReactions(room, (r) => r.sender === bot && r.target === m.eventId, { count: 3, timeoutMs: 30_000 });
      assert.deepEqual(found.map((r) => r.key), ['▶️', '⏹️', '🔄']);
      assert.ok(found.every((r) => !r.encrypted), 'the buttons are plaintext reactions (the replies they annotate are encrypted)');
      return m.eventId;
    };
    const status = await buttonsOn((await command('status')).messages[1]);
    /** Reacts and returns the bot's next two messages (the echo and the result). */
    const press = async (target: string, key: string, encrypt: boolean): Promise<Message[]> => {
      const before = alice.messages(room).filter(fromBot).length;
      const reaction = await alice.react(room, target, key, { encrypt });
      assert.equal((await alice.waitForReactions(room, (r) => r.eventId === reaction))[0]?.encrypted, encrypt);
      return (await alice.waitForMessages(room, fromBot, { count: before + 2, timeoutMs: 30_000 })).slice(before);
    };
    const patchesBefore = patches();
    // As Element Web sends it: in plaintext, even in an encrypted room (matrix-js-sdk does not encrypt reactions).
    const started = await press(status, '▶️', false);
    assert.deepEqual(bodies(started), ['🦞 start (button)', '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.']);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    assert.equal(patches(), patchesBefore + 1);
    // The result carries the buttons too. As Element X sends it: encrypted, decrypted and trust-judged
    // by the bot like a typed command; ⏹ without the variation selector is the same button.
    const stopped = await press(await buttonsOn(started[1]), '⏹', true);
    assert.match(bodies(stopped)[1] ?? '', /Stopping openclaw: replicas 1 → 0/);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 0);
    assert.equal(patches(), patchesBefore + 2);
  });

  it("shows the bot's device as cross-signed by the bot's own identity", async () => {
    assert.ok(app);
    const trust = await alice.deviceTrust(bot, app.deviceId);
    assert.equal(trust.known, true);
    assert.equal(trust.signedByOwner, true);
    assert.equal(trust.ed25519, app.ed25519);
  });

  it('keeps its device and keys across an in-process restart; the next command works without a new invite', async () => {
    assert.ok(app);
    const before = { deviceId: app.deviceId, ed25519: app.ed25519 };
    await app.stop();
    ({ app } = await stack.startBot());
    await stack.waitForAppserviceUp();
    assert.deepEqual({ deviceId: app.deviceId, ed25519: app.ed25519 }, before);
    const status = await command('status');
    assert.match(bodies(status.messages)[1] ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
  });

  it('answers a message it cannot decrypt in its thread, and does nothing', async () => {
    const before = patches();
    const eventId = await alice.sendUndecryptable(room);
    const [reply] = await alice.waitForMessages(room, (m) => fromBot(m) && (m.relatesTo as { event_id?: string } | undefined)?.event_id === eventId, { timeoutMs: 30_000 });
    assert.equal((reply?.relatesTo as { rel_type?: string } | undefined)?.rel_type, 'm.thread');
    assert.match(reply?.body ?? '', /could not decrypt this message/);
    assert.equal(patches(), before);
    assert.ok(app);
    const metrics = await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text();
    assert.match(metrics, /openclaw_undecryptable_events_total\{reason="missing-keys"\} 1/);
  });

  it('ignores a member who is not allowed, in the encrypted room', async () => {
    const mallory = await human('mallory');
    await alice.invite(room, mallory.userId);
    await mallory.join(room);
    await alice.waitForMembership(room, mallory.userId);
    const before = patches();
    const malloryEvent = await mallory.send(room, 'start');
    const status = await command('status');
    const seen = alice.messages(room);
    const between = seen.slice(seen.findIndex((m) => m.eventId === malloryEvent) + 1, seen.findIndex((m) => m.eventId === status.eventId));
    assert.deepEqual(between.filter(fromBot), []);
    assert.equal(patches(), before);
  });

  it("refuses a command from an allowed user's device that their identity did not sign", async () => {
    const unsigned = await human('alice', { register: false, crossSign: false });
    await unsigned.waitForMembership(room, alice.userId);
    const before = patches();
    const refused = await command('start', 1, unsigned);
    assert.match(bodies(refused.messages)[0] ?? '', /^🔒 Not running this: it came from a device I do not trust \(device \S+ is not signed by @alice:localhost's identity/);
    assert.equal(patches(), before);
    await unsigned.stop();
  });

  it('after a hard kill (SIGKILL of a child process) comes back with the same device', async () => {
    assert.ok(app);
    const deviceId = app.deviceId;
    await app.stop();
    app = undefined;
    child = await startChild();
    assert.match((await command('status')).messages[1]?.body ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
    await killChild();
    child = await startChild();
    assert.equal(await storedDeviceId(), deviceId);
    assert.match((await command('status')).messages[1]?.body ?? '', /openclaw is (⚪ off|🟠 stopping): desired 0,/);
  });

  it('stops on SIGTERM with exit code 0 within 10 s, and starts again on the same device', async () => {
    assert.ok(child);
    const deviceId = await storedDeviceId();
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      child?.once('exit', resolve);
      child?.kill('SIGTERM');
    });
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 10_000, `stopped in ${Date.now() - started} ms`);
    child = await startChild();
    assert.equal(await storedDeviceId(), deviceId);
  });

  it('killed between scaling and acknowledging, runs the command once: Synapse redelivers, the bot reports instead of repeating', async () => {
    const before = patches();
    const killed = new Promise<void>((resolve) => {
      const unsubscribe = stack.sim.onChange((change) => {
        if (change.type !== 'scaled') return;
        unsubscribe();
        child?.kill('SIGKILL');
        resolve();
      });
    });
    const echoes = alice.messages(room).filter(fromBot).length;
    await alice.send(room, 'start');
    await killed;
    await killChild();
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    child = await startChild(); // its start-up ping makes Synapse retry the transaction at once
    const seen = await alice.waitForMessages(room, (m) => fromBot(m) && /restarted while handling "start"/.test(m.body ?? ''), { timeoutMs: 60_000 });
    assert.equal(seen.length, 1);
    assert.equal(patches(), before + 1, 'exactly one PATCH');
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    // Echo (before the kill) and the report after it: nothing ran twice.
    assert.ok(alice.messages(room).filter(fromBot).length <= echoes + 2);
    await killChild();
    child = undefined;
  });

  it('recovers from a lost crypto store with a new device, deleting the old one', async () => {
    const oldDevice = await storedDeviceId();
    await rm(join(stack.dir, 'bot-data', 'crypto'), { recursive: true, force: true });
    ({ app } = await stack.startBot());
    await stack.waitForAppserviceUp();
    assert.notEqual(app.deviceId, oldDevice);
    const oldTrust = await alice.deviceTrust(bot, oldDevice);
    assert.equal(oldTrust.known, false, 'the old device is gone from the server');
    // As any client would before its next message: it has learnt the bot's new device.
    assert.equal((await alice.deviceTrust(bot, app.deviceId)).signedByOwner, true);
    const status = await command('stop');
    assert.match(bodies(status.messages)[1] ?? '', /Stopping openclaw: replicas 1 → 0/);
    assert.ok(status.messages.every((m) => m.encrypted && !m.decryptionFailed));
  });

  it("announces an allowed user's identity change, refuses them until an operator re-pins", async () => {
    const reset = await human('alice', { register: false, crossSign: true, replaceIdentity: true });
    await alice.waitForMessages(room, (m) => fromBot(m) && /cryptographic identity changed/.test(m.body ?? ''), { timeoutMs: 30_000 });
    const refused = await command('status', 1, reset);
    assert.match(bodies(refused.messages)[0] ?? '', /identity changed since I first saw it/);
    const state = StateDb.open(join(stack.dir, 'bot-data'));
    state.addOperatorRequest('repin', alice.userId);
    state.close();
    const allowed = await command('status', 2, reset);
    assert.match(bodies(allowed.messages)[1] ?? '', /openclaw is/);
    await reset.stop();
  });
});
