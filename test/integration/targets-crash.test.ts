/**
 * Crashes with several targets (issue 13): the bot, a child process with two targets in its config
 * file, dies as a kill -9 would at the points where a command for the second target leaves the
 * process (its PATCH, its encrypted reply, a progress edit), and at random. After each restart the
 * command has run at most once, on its own target only, with exactly one answer naming it, and a
 * second, independently keyed session decrypts every bot message. Appservice mode; the modes share
 * this code path (crash.test.ts covers both with one target).
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { startBotProcess, type BotProcess } from '../../src/dev/bot-process.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';

const PASSWORD = 'alice-targets-crash';
const COMFY = 'comfyui';
/** Each point is hit while `start comfy` or `stop comfy` is handled; `:2` the second send (the result, after the echo). */
const POINTS = ['after-patch', 'after-send:2', 'after-edit'] as const;
const RANDOM_ROUNDS = 4;
const ANSWER = /Starting (comfy|openclaw)|Stopping (comfy|openclaw)|is already (on|off)|restarted while handling|Could not/;

describe('crashes with several targets, judged by independent clients', { timeout: 600_000 }, () => {
  let stack: Stack;
  let alice: E2eeHuman;
  let judge: E2eeHuman;
  let bot: BotProcess | undefined;
  let room: string;
  let configFile: string;
  let keepAlive: NodeJS.Timeout | undefined;
  let answers = 0;
  const fromBot = (m: Message): boolean => m.sender === stack.botUserId && m.relatesTo?.['rel_type'] !== 'm.replace';
  const patchesOf = (name: string): number => stack.sim.requests.filter((r) => r.method === 'PATCH' && r.path.includes(`/deployments/${name}/`)).length;

  async function startBot(fault?: string): Promise<BotProcess> {
    const child = await startBotProcess({
      env: stack.botEnv({ CONFIG_FILE: configFile, LOG_LEVEL: 'debug', OPENCLAW_FAULT_POINT: fault }),
      logDir: stack.dir, logName: 'bot-targets.log', readyUrl: `http://127.0.0.1:${stack.botPort}`,
    });
    await stack.waitForAppserviceUp();
    return child;
  }

  /** Sends `text`; waits for its one answer and, for a scale, its one final edit; checks what ran where. */
  async function command(text: string, die?: () => Promise<void>): Promise<string> {
    const [verb, target] = text.split(' ') as ['start' | 'stop', 'comfy' | 'openclaw'];
    const deployment = target === 'comfy' ? COMFY : DEPLOYMENT;
    const other = target === 'comfy' ? DEPLOYMENT : COMFY;
    const before = { mine: patchesOf(deployment), other: patchesOf(other), otherReplicas: stack.sim.replicas(NAMESPACE, other) };
    const answersBefore = alice.messages(room).filter((m) => fromBot(m) && ANSWER.test(m.body ?? '')).length;
    await alice.send(room, text);
    await die?.();
    const seen = await alice.waitForMessages(room, (m) => fromBot(m) && ANSWER.test(m.body ?? ''), { count: answersBefore + 1, timeoutMs: 60_000 });
    const reply = seen.at(-1)!;
    const answer = reply.body ?? '';
    assert.match(answer, new RegExp(`${target}|restarted while handling "${text}"`), 'the answer names its target');
    if (/^(▶️ Starting|⏹ Stopping)/.test(answer)) {
      const finalOf = (m: Message): boolean => m.sender === stack.botUserId && m.relatesTo?.['rel_type'] === 'm.replace' && m.relatesTo['event_id'] === reply.eventId
        && /✅|❌|⚠️/.test(String((m.content['m.new_content'] as { body?: unknown } | undefined)?.body));
      const edits = await alice.waitForMessages(room, finalOf, { timeoutMs: 30_000 });
      assert.ok(edits.every((e) => e.encrypted && !e.decryptionFailed), 'the final edit decrypts');
      assert.match(String((edits.at(-1)!.content['m.new_content'] as { body: string }).body), new RegExp(`^(▶️ Started|⏹ Stopped) ${target}: ✅ (ready|off) after`));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(alice.messages(room).filter(finalOf).length, 1, 'one final edit');
    }
    const ran = patchesOf(deployment) - before.mine;
    assert.ok(ran <= 1, `"${text}" ran ${ran} times`);
    if (!/restarted while handling/.test(answer)) assert.equal(ran, 1, `"${text}" answered "${answer}" but did not run`);
    if (ran === 1) assert.equal(stack.sim.replicas(NAMESPACE, deployment), verb === 'start' ? (target === 'comfy' ? 2 : 1) : 0);
    assert.equal(patchesOf(other), before.other, 'the other target was not touched');
    assert.equal(stack.sim.replicas(NAMESPACE, other), before.otherReplicas);
    answers++;
    return answer;
  }

  before(async () => {
    keepAlive = setInterval(() => undefined, 1000);
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-targets-crash-')), moreDeployments: [COMFY] });
    configFile = join(stack.dir, 'targets.yaml');
    await writeFile(configFile, [
      'targets:',
      `  - { name: openclaw, namespace: ${NAMESPACE}, deployment: ${DEPLOYMENT} }`,
      `  - { name: comfy, namespace: ${NAMESPACE}, deployment: ${COMFY}, replicas: 2 }`,
    ].join('\n'));
    const login = await stack.synapse.registerUser('alice', PASSWORD);
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: PASSWORD });
    judge = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...(await stack.synapse.login('alice', PASSWORD)), password: PASSWORD, crossSign: false });
    bot = await startBot();
    room = await alice.createEncryptedRoom([stack.botUserId], { name: 'targets crash' });
    await alice.waitForMessages(room, fromBot, { timeoutMs: 30_000 });
  });

  after(async () => {
    await bot?.kill();
    await alice?.stop().catch(() => undefined);
    await judge?.stop().catch(() => undefined);
    await stack?.stop();
    clearInterval(keepAlive);
  });

  for (const [i, point] of POINTS.entries()) {
    const text = i % 2 === 0 ? 'start comfy' : 'stop comfy';
    it(`dies at ${point} during "${text}": after the restart it ran at most once, on comfy only, with one answer`, async (t: TestContext) => {
      await bot?.stop();
      bot = await startBot(point);
      const answer = await command(text, async () => {
        const death = await Promise.race([bot!.exited, new Promise<undefined>((r) => setTimeout(r, 30_000, undefined))]);
        assert.ok(death, `the bot never reached ${point}`);
        assert.equal(death.signal, 'SIGKILL');
        bot = await startBot();
      });
      t.diagnostic(`${point}: ${JSON.stringify(answer.slice(0, 70))}`);
      if (point !== 'after-patch') assert.doesNotMatch(answer, /restarted while handling/, 'the recorded outcome is re-sent, not guessed');
    });
  }

  it(`random kill -9 (${RANDOM_ROUNDS} rounds) across both targets: each command at most once, on its own target, one answer`, async () => {
    const texts = ['start openclaw', 'stop comfy', 'stop openclaw', 'start comfy'];
    for (let round = 0; round < RANDOM_ROUNDS; round++) {
      await command(texts[round % texts.length]!, async () => {
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 400)));
        await bot?.kill();
        bot = await startBot();
      });
    }
  });

  it('every bot message decrypts in a second, independent session; no (session, index) pair was used twice', async (t: TestContext) => {
    const expected = alice.messages(room).filter(fromBot).map((m) => m.eventId);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const seen = new Set(judge.messages(room).map((m) => m.eventId));
      const failed = judge.messages(room).filter((m) => fromBot(m) && m.decryptionFailed);
      if ((failed.length === 0 && expected.every((id) => seen.has(id))) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const mine = judge.messages(room).filter(fromBot);
    assert.deepEqual(expected.filter((id) => !mine.some((m) => m.eventId === id)), [], 'bot messages the second session never saw');
    assert.deepEqual(mine.filter((m) => m.decryptionFailed).map((m) => m.eventId), [], 'messages the second session could not decrypt');
    const pairs = new Set(mine.map((m) => `${m.megolm?.sessionId}#${m.megolm?.index}`));
    assert.equal(pairs.size, mine.length, 'Megolm (session, index) pairs used twice');
    assert.equal(mine.filter((m) => ANSWER.test(m.body ?? '')).length, answers, 'one answer per command');
    t.diagnostic(`${mine.length} bot messages, all decrypted by the second session; ${answers} commands, one answer each`);
  });
});
