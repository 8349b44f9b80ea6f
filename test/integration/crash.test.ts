/**
 * Crashes at every point where something leaves the bot (an encrypted reply, room keys, the scale
 * PATCH, the acknowledgement), in both modes, plus random kill -9s, judged from outside: a second,
 * independently keyed session of the human must decrypt every bot message, no Megolm (session,
 * index) pair may appear twice in what the bot sent, every command runs at most once and gets
 * exactly one answer. The bot runs as a child process so that it really dies (a fault point kills
 * it with SIGKILL from inside; see src/fault-points.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { startBotProcess, type BotProcess } from '../../src/dev/bot-process.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';

const ALICE_PASSWORD = 'alice-crash-password';
const BOT_PASSWORD = 'toggle-crash-password';
/** Random kill -9 rounds per mode; CRASH_ROUNDS=50 for a longer run. */
const RANDOM_ROUNDS = Number(process.env['CRASH_ROUNDS'] ?? 8);

/** Each fault point, hit while a start or stop is handled; `:2` is the second time (the result, after the echo). */
const POINTS = ['after-claim', 'after-encrypt:1', 'after-send:1', 'after-patch', 'after-encrypt:2', 'after-send:2', 'before-ack', 'after-to-device', 'after-edit'] as const;
/** Points after which the outcome was recorded: the redelivery re-sends it rather than saying "interrupted". */
const OUTCOME_KNOWN = new Set(['after-encrypt:2', 'after-send:2', 'before-ack', 'after-edit']);

const FINAL = /Starting openclaw|Stopping openclaw|is already (on|off)|restarted while handling|Could not/;

describe('crashes where something leaves the process, judged by independent clients', { timeout: 1_800_000 }, () => {
  let stack: Stack;
  let alice: E2eeHuman;
  /** The second, independently keyed session of the same person: the outside judge. */
  let judge: E2eeHuman;
  /** Devices of alice that logged in later (the bot must share its room key with them), and since when. */
  const extraDevices: Array<{ device: E2eeHuman; since: number }> = [];
  let bot: BotProcess | undefined;
  const figures: string[] = [];

  const patches = (): number => stack.sim.requests.filter((r) => r.method === 'PATCH').length;
  // Everything else here (Synapse's process, the clients' timers) lets the event loop go idle
  // between hooks, and node:test then cancels the tests still to come.
  let keepAlive: NodeJS.Timeout | undefined;

  before(async () => {
    keepAlive = setInterval(() => undefined, 1000);
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-crash-')) });
    const login = await stack.synapse.registerUser('alice', ALICE_PASSWORD);
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: ALICE_PASSWORD });
    judge = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...(await stack.synapse.login('alice', ALICE_PASSWORD)), password: ALICE_PASSWORD, crossSign: false });
  });

  after(async () => {
    await bot?.kill();
    for (const person of [alice, judge, ...extraDevices.map((d) => d.device)]) await person?.stop().catch(() => undefined);
    await stack?.stop();
    for (const line of figures) process.stdout.write(`# crash: ${line}\n`);
    clearInterval(keepAlive);
  });

  // One flat list of tests (node:test ran the outer `after` before nested suites' hooks here).
  for (const mode of ['appservice', 'password'] as const) {
    let room: string;
    let botUser: string;
    let commands = 0;
    let executed = 0;
    let interrupted = 0;
    const env = (fault?: string): Record<string, string | undefined> =>
      stack.botEnv({
        LOG_LEVEL: 'debug',
        OPENCLAW_FAULT_POINT: fault,
        ...(mode === 'password' ? { AS_REGISTRATION_FILE: undefined, MATRIX_USER: 'toggle', MATRIX_PASSWORD: BOT_PASSWORD, CRYPTO_STORE_PATH: join(stack.dir, 'bot-data-password') } : {}),
      });
    const fromBot = (m: Message): boolean => m.sender === botUser && m.relatesTo?.['rel_type'] !== 'm.replace'; // edits (progress) aside

    async function startBot(fault?: string): Promise<BotProcess> {
      const child = await startBotProcess({ env: env(fault), logDir: stack.dir, logName: `bot-${mode}.log`, readyUrl: `http://127.0.0.1:${stack.botPort}` });
      if (mode === 'appservice') await stack.waitForAppserviceUp();
      return child;
    }

    const finals = (): number => alice.messages(room).filter((m) => fromBot(m) && FINAL.test(m.body ?? '')).length;

    /** Sends start or stop (alternating); notes how many final answers there were before it. */
    async function sendCommand(): Promise<{ eventId: string; word: 'start' | 'stop'; finalsBefore: number }> {
      const word = commands % 2 === 0 ? 'start' : 'stop';
      commands++;
      const finalsBefore = finals();
      return { eventId: await alice.send(room, word), word, finalsBefore };
    }

    /** Waits for the command's one final answer; checks nothing ran twice and no second answer came. */
    async function settle(sent: { eventId: string; word: 'start' | 'stop'; finalsBefore: number }, patchesBefore: number): Promise<string> {
      const seen = await alice.waitForMessages(room, (m) => fromBot(m) && FINAL.test(m.body ?? ''), { count: sent.finalsBefore + 1, timeoutMs: 60_000 });
      const answer = seen.at(-1)?.body ?? '';
      // A scale's reply is edited as its rollout moves (issue 11): its last edit must arrive, readable,
      // whatever the crash cut short. (And the next round's clean stop then leaves nothing to resume.)
      const reply = seen.at(-1);
      if (reply && /^(▶️ Starting|⏹ Stopping)/.test(answer)) {
        const edits = await alice.waitForMessages(room, (m) => m.sender === botUser && m.relatesTo?.['rel_type'] === 'm.replace' && m.relatesTo['event_id'] === reply.eventId
          && /✅|❌|⚠️/.test(String((m.content['m.new_content'] as { body?: unknown } | undefined)?.body)), { timeoutMs: 30_000 });
        assert.ok(edits.every((e) => e.encrypted && !e.decryptionFailed), 'the final edit decrypts');
        assert.match(String((edits.at(-1)!.content['m.new_content'] as { body: string }).body), /✅ (ready|off) after/);
        // Re-sent after a crash under its transaction id: the homeserver kept one (never two final edits).
        await new Promise((r) => setTimeout(r, 300));
        const finalEdits = alice.messages(room).filter((m) => m.sender === botUser && m.relatesTo?.['rel_type'] === 'm.replace' && m.relatesTo['event_id'] === reply.eventId
          && /✅|❌|⚠️/.test(String((m.content['m.new_content'] as { body?: unknown } | undefined)?.body)));
        assert.equal(finalEdits.length, 1, 'one final edit');
      }
      const ran = patches() - patchesBefore;
      assert.ok(ran <= 1, `"${sent.word}" ran ${ran} times`);
      executed += ran;
      if (/restarted while handling/.test(answer)) interrupted++;
      else assert.equal(ran, 1, `"${sent.word}" answered "${answer}" but did not run`);
      if (ran === 1) assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), sent.word === 'start' ? 1 : 0);
      return answer;
    }

    it(`${mode}: the bot joins an encrypted room of alice's and greets`, async () => {
      if (mode === 'password') await stack.synapse.registerUser('toggle', BOT_PASSWORD);
      bot = await startBot();
      botUser = mode === 'appservice' ? stack.botUserId : '@toggle:localhost';
      room = await alice.createEncryptedRoom([botUser], { name: `crash ${mode}` });
      await alice.waitForMessages(room, fromBot, { timeoutMs: 30_000 }); // hello
    });

    for (const point of POINTS) {
      it(`${mode}: dies at ${point}; after the restart the command has run at most once and has one answer`, async (t: TestContext) => {
        if (point === 'after-to-device') {
          // A device the bot has not shared its room key with yet: the next reply carries room keys.
          const since = Date.now();
          extraDevices.push({ device: await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...(await stack.synapse.login('alice', ALICE_PASSWORD)), password: ALICE_PASSWORD, crossSign: false }), since });
          await new Promise((r) => setTimeout(r, 2_000));
        }
        // A clean stop: the previous round's batch is finished, so only this round's command meets the fault.
        await bot?.stop();
        bot = await startBot(point);
        const patchesBefore = patches();
        const sent = await sendCommand();
        const death = await Promise.race([bot.exited, new Promise<undefined>((r) => setTimeout(r, 30_000, undefined))]);
        assert.ok(death, `the bot never reached ${point}`);
        assert.equal(death.signal, 'SIGKILL');
        const restarted = Date.now();
        bot = await startBot();
        const answer = await settle(sent, patchesBefore);
        t.diagnostic(`${mode} ${point}: "${answer.slice(0, 60)}" ${Date.now() - restarted} ms after the restart`);
        if (OUTCOME_KNOWN.has(point)) assert.doesNotMatch(answer, /restarted while handling/, 'the recorded outcome is re-sent, not guessed');
        if (point === 'after-claim') assert.doesNotMatch(answer, /restarted while handling/, 'nothing had left the process: it simply runs');
      });
    }

    it(`${mode}: random kill -9 (${RANDOM_ROUNDS} rounds): every command runs at most once and gets one answer`, async (t: TestContext) => {
      const started = { executed, interrupted };
      for (let round = 1; round <= RANDOM_ROUNDS; round++) {
        const patchesBefore = patches();
        const sent = await sendCommand();
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 500)));
        await bot?.kill();
        bot = await startBot();
        await settle(sent, patchesBefore);
      }
      const line = `${mode}: ${RANDOM_ROUNDS} random kills: ${executed - started.executed} ran once, ${interrupted - started.interrupted} reported as interrupted, 0 ran twice`;
      figures.push(line);
      t.diagnostic(line);
    });

    it(`${mode}: every bot message decrypts in the second session, and no (session, index) pair was used twice`, async (t: TestContext) => {
      // The judge syncs on its own: wait until it has every bot message alice has, and keys sent
      // just before the last kill may still be on their way.
      const expected = alice.messages(room).filter(fromBot).map((m) => m.eventId);
      const deadline = Date.now() + 20_000;
      let failed: Message[] = [];
      for (;;) {
        const seen = new Set(judge.messages(room).map((m) => m.eventId));
        failed = judge.messages(room).filter((m) => fromBot(m) && m.decryptionFailed);
        if ((failed.length === 0 && expected.every((id) => seen.has(id))) || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      const mine = judge.messages(room).filter(fromBot);
      assert.deepEqual(expected.filter((id) => !mine.some((m) => m.eventId === id)), [], 'bot messages the second session never saw');
      assert.deepEqual(failed.map((m) => `${m.eventId}: ${m.decryptionFailureReason}`), [], 'messages the second session could not decrypt');
      const pairs = new Map<string, string>();
      const reused: string[] = [];
      for (const m of mine) {
        assert.ok(m.megolm, `bot message ${m.eventId} is Megolm-encrypted`);
        const key = `${m.megolm.sessionId}#${m.megolm.index}`;
        if (pairs.has(key)) reused.push(`${key}: ${pairs.get(key)} and ${m.eventId}`);
        pairs.set(key, m.eventId);
      }
      assert.deepEqual(reused, [], 'Megolm (session, index) pairs used twice');
      // Devices that appeared later read every bot message sent after they did (their room key was a to-device message).
      for (const { device, since } of extraDevices) {
        const later = device.messages(room).filter((m) => fromBot(m) && m.ts > since + 5_000);
        assert.deepEqual(later.filter((m) => m.decryptionFailed).map((m) => m.eventId), [], `alice's later device ${device.deviceId}`);
      }
      // Exactly one final answer per command, whatever happened in between.
      assert.equal(mine.filter((m) => FINAL.test(m.body ?? '')).length, commands, `one answer per command (alice saw ${finals()})`);
      const line = `${mode}: ${mine.length} bot messages, all decrypted by the second session, ${pairs.size} distinct (session, index) pairs, 0 reused; ${commands} commands, ${executed} executions, ${interrupted} interrupted`;
      figures.push(line);
      t.diagnostic(line);
      await bot?.kill();
      bot = undefined;
    });
  }
});
