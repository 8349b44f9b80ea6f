/**
 * Issue 11's progress messages end to end: a real Synapse, a real E2EE client (matrix-js-sdk) in an
 * encrypted DM, and a REAL Kubernetes control plane (src/dev/kube-testbed) with the project's own
 * RBAC, the bot authenticated with a pod's bound token. kwok stages (src/dev/kube-testbed/stages.ts)
 * make the pods start normally, slowly, never become ready, fail to pull their image or crash; the
 * scheduler refuses a pod that matches no node. Each time, the edits of the start's reply, as the
 * human's client decrypts them, must end in the right words, and a stop must end in "off". A bot
 * restart in the middle of a rollout finishes the same message. Prints the latency from the pod's
 * Ready to the final edit arriving at the client.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { testbedBuilt } from '../../src/dev/kube-testbed/build.ts';
import { actAsBotPod, applyBotRbac, requestPodToken, targetDeployment, type TestPods } from '../../src/dev/kube-testbed/project-manifests.ts';
import { sharedKubeTestbed, type KubeTestbed } from '../../src/dev/kube-testbed/testbed.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';
import { createKube, type LeanKube } from '../../src/kube/lean-kube.ts';
import type { PodObject } from '../../src/kube/rollout.ts';

const SETUP_TIMEOUT_MS = testbedBuilt() ? 180_000 : 60 * 60_000;
/** The bot follows a rollout this long (bot.progressDeadlineSeconds): long enough for every staged start but the never-ready one. */
const DEADLINE_S = 15;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const FINAL = /✅|❌|⚠️/;

async function until(what: string, probe: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

describe('start and stop progress on a real control plane, read by an encrypted client', { timeout: SETUP_TIMEOUT_MS + 400_000 }, () => {
  let tb: KubeTestbed;
  let stack: Stack;
  let app: App;
  let kube: LeanKube | undefined;
  let alice: E2eeHuman;
  let room: string;
  let saRoot: string;
  let restoreEnv: (() => void) | undefined;
  const fromBot = (m: Message): boolean => m.sender === app.userId && m.relatesTo?.['rel_type'] !== 'm.replace';
  const editOf = (id: string) => (m: Message): boolean => m.sender === app.userId && m.relatesTo?.['rel_type'] === 'm.replace' && m.relatesTo['event_id'] === id;
  const newText = (m: Message): string => String((m.content['m.new_content'] as { body?: unknown } | undefined)?.body);

  const startBot = async (): Promise<void> => {
    await kube?.close();
    kube = createKube({ requestTimeoutMs: 5_000, serviceAccountRoot: saRoot, watch: { namespace: NAMESPACE, name: DEPLOYMENT } });
    ({ app } = await stack.startBot({ env: { KUBE_TIMEOUT_SECONDS: '5', PROGRESS_DEADLINE_SECONDS: String(DEADLINE_S), ECHO_MODE: 'false' }, deps: { kube } }));
    await stack.waitForAppserviceUp(30_000);
  };

  /** The pods of the next start behave as `pods` says (and, with `nodeSelector`, match no node). */
  const podsWill = (pods: TestPods, nodeSelector?: Record<string, string>): Promise<unknown> => {
    const d = targetDeployment(NAMESPACE, DEPLOYMENT, 0, pods) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    if (nodeSelector) d.spec.template.spec['nodeSelector'] = nodeSelector;
    return tb.admin.apply(d as never);
  };

  /** Sends `text`, then waits for the reply's final edit; returns the reply and every edit's new text, as alice's client decrypted them. */
  async function follow(text: string): Promise<{ reply: Message; edits: Message[]; texts: string[] }> {
    const before = alice.messages(room).filter(fromBot).length;
    await alice.send(room, text);
    const reply = (await alice.waitForMessages(room, fromBot, { count: before + 1, timeoutMs: 30_000 }))[before]!;
    const done = (): Message[] | undefined => {
      const edits = alice.messages(room).filter(editOf(reply.eventId));
      return edits.length > 0 && FINAL.test(newText(edits.at(-1)!)) ? edits : undefined;
    };
    const deadline = Date.now() + (DEADLINE_S + 30) * 1000;
    let edits = done();
    while (!edits) {
      if (Date.now() > deadline) assert.fail(`no final edit of ${JSON.stringify(reply.body)}; edits: ${JSON.stringify(alice.messages(room).filter(editOf(reply.eventId)).map(newText))}`);
      await sleep(10);
      edits = done();
    }
    for (const e of edits) assert.ok(e.encrypted && !e.decryptionFailed, `edit ${e.eventId} arrived encrypted and decrypted`);
    const texts = edits.map(newText);
    console.log(`# ${text}: ${JSON.stringify(reply.body)} → ${texts.map((t) => JSON.stringify(t)).join(' → ')}`);
    return { reply, edits, texts };
  }

  async function stopped(): Promise<void> {
    const { texts } = await follow('stop');
    assert.match(texts.at(-1)!, /^⏹ Stopped openclaw: ✅ off after \d+ s\.$/);
  }

  before(async () => {
    tb = await sharedKubeTestbed();
    await applyBotRbac(tb, { namespace: NAMESPACE, name: DEPLOYMENT });
    await tb.admin.apply(targetDeployment(NAMESPACE, DEPLOYMENT));
    const token = await requestPodToken(tb);
    const dir = await mkdtemp(join(tmpdir(), 'openclaw-progress-real-'));
    saRoot = join(dir, 'pod-root');
    restoreEnv = await actAsBotPod(saRoot, tb, token.token);
    stack = await startStack({ dir });
    await startBot();
    const login = await stack.synapse.registerUser('alice', 'alice-password');
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: 'alice-password' });
    room = await alice.createEncryptedRoom([app.userId], { name: 'openclaw', isDirect: true });
    await alice.waitForMessages(room, fromBot, { timeoutMs: 30_000 });
  }, { timeout: SETUP_TIMEOUT_MS });

  after(async () => {
    await alice?.stop().catch(() => undefined);
    await app?.stop().catch(() => undefined);
    await stack?.stop();
    await kube?.close();
    restoreEnv?.();
  });

  it('a normal start ends "ready", the client shows the final text in place of the reply, and a stop ends "off"', async () => {
    await podsWill({});
    // When the pod turns Ready, seen from outside the bot: a watch of its own (the admin's), event-driven.
    let readyAt: number | undefined;
    const observer = createKube({ kubeconfigPath: tb.adminKubeconfig, requestTimeoutMs: 5_000, watch: { namespace: NAMESPACE, name: DEPLOYMENT } });
    const isReady = (p: PodObject): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    const following = observer.follow({ namespace: NAMESPACE, name: DEPLOYMENT }, () => {
      if (readyAt === undefined && following.view()?.pods?.some(isReady)) readyAt = Date.now();
    });
    await until('the observer sees the pods', () => following.view()?.pods !== undefined);
    const { reply, texts } = await follow('start');
    const editSeenAt = Date.now();
    following.close();
    await observer.close();
    assert.equal(reply.body, '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.');
    // The steps in brackets when the pods' watch (opened for this start) had listed them before the Deployment counted the pod ready.
    assert.match(texts.at(-1)!, /^▶️ Started openclaw: ✅ ready after \d+ s( \(pod scheduled on kwok-node-0 · container running\))?\.$/);
    assert.ok(readyAt !== undefined, 'the observer saw the pod Ready');
    console.log(`# edit latency: pod Ready (seen by a separate watch) → final edit decrypted at the client (10 ms poll): ${editSeenAt - readyAt} ms`);
    // What a person sees: the client applies the edit to the reply.
    const shown = alice.messages(room).find((m) => m.eventId === reply.eventId)?.shown;
    assert.equal(shown, texts.at(-1), 'the client shows the final text where the reply was');
    await stopped();
  });

  it('a slow start: the steps as they happen, edits at least 2 s apart, then ready', async () => {
    await podsWill({ behaviour: 'slow', delayMs: 6_000 });
    const { edits, texts } = await follow('start');
    assert.ok(texts.some((t) => /^▶️ Starting openclaw… ⏳ pod scheduled on kwok-node-0 · pulling image and starting container/.test(t)), JSON.stringify(texts));
    assert.match(texts.at(-1)!, /^▶️ Started openclaw: ✅ ready after [6-9] s/);
    const moving = edits.slice(0, -1).map((e) => e.ts);
    for (let i = 1; i < moving.length; i++) assert.ok(moving[i]! - moving[i - 1]! >= 1_900, `edits ${i - 1} and ${i} ${moving[i]! - moving[i - 1]!} ms apart`);
    await stopped();
  });

  it('a pod that never becomes ready: "still not ready" at the deadline, with what it waits for', async () => {
    await podsWill({ behaviour: 'never-ready' });
    const { texts } = await follow('start');
    assert.equal(texts.at(-1), `▶️ Starting openclaw: ⚠️ still not ready after ${DEADLINE_S} s: waiting for the container to pass its readiness probe (0 of 1 ready).`);
    await stopped();
  });

  it('an image that cannot be pulled: failed, naming the image and the registry\'s answer', async () => {
    await podsWill({ behaviour: 'image-pull', image: 'ghcr.io/openclaw/openclaw:no-such-tag' });
    const { texts } = await follow('start');
    assert.match(texts.at(-1)!, /^▶️ Starting openclaw: ❌ the image ghcr\.io\/openclaw\/openclaw:no-such-tag cannot be pulled \(ErrImagePull: .*not found\)\.$/);
    await stopped();
  });

  it('a container that keeps crashing: failed, with its exit code', async () => {
    await podsWill({ behaviour: 'crash' });
    const { texts } = await follow('start');
    assert.match(texts.at(-1)!, /^▶️ Starting openclaw: ❌ the container openclaw keeps crashing \(last exit code 1, \d+ restarts?\)\.$/);
    await stopped();
  });

  it('a pod no node can take: failed, in the scheduler\'s words', async () => {
    await podsWill({}, { 'example.org/gpu': 'h100' });
    const { texts } = await follow('start');
    assert.match(texts.at(-1)!, /^▶️ Starting openclaw: ❌ the pod cannot be scheduled: 0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector/);
    await stopped();
  });

  it('a bot restart in the middle of a slow start: the same message is finished after it', async () => {
    await podsWill({ behaviour: 'slow', delayMs: 8_000 });
    const before = alice.messages(room).filter(fromBot).length;
    await alice.send(room, 'start');
    const reply = (await alice.waitForMessages(room, fromBot, { count: before + 1, timeoutMs: 30_000 }))[before]!;
    await alice.waitForMessages(room, editOf(reply.eventId), { timeoutMs: 30_000 });
    await app.stop();
    await startBot();
    const edits = await alice.waitForMessages(room, (m) => editOf(reply.eventId)(m) && FINAL.test(newText(m)), { timeoutMs: 60_000 });
    assert.match(newText(edits.at(-1)!), /^▶️ Started openclaw: ✅ ready after \d+ s/);
    const all = alice.messages(room).filter(editOf(reply.eventId)).map(newText);
    console.log(`# across a restart: ${all.map((t) => JSON.stringify(t)).join(' → ')}`);
    assert.equal(all.filter((t) => FINAL.test(t)).length, 1, 'one final edit');
    await stopped();
  });
});
