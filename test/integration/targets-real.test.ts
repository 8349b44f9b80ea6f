/**
 * Several targets (issue 13) end to end: a real Synapse, real E2EE clients (matrix-js-sdk) in
 * encrypted DMs, and a REAL Kubernetes control plane (src/dev/kube-testbed) with the project's own
 * RBAC for two targets in two namespaces, rendered by kustomize from config/kubernetes and its
 * target directories. A third target's namespace has no RoleBinding: it is reported at start-up
 * and in its status, and the others work on. Alice may control both; Bob only openclaw.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { testbedBuilt } from '../../src/dev/kube-testbed/build.ts';
import { actAsBotPod, applyTargetsRbac, requestPodToken, targetDeployment } from '../../src/dev/kube-testbed/project-manifests.ts';
import { sharedKubeTestbed, type KubeTestbed } from '../../src/dev/kube-testbed/testbed.ts';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import { createKube, type LeanKube } from '../../src/kube/lean-kube.ts';

const SETUP_TIMEOUT_MS = testbedBuilt() ? 180_000 : 60 * 60_000;
const OPENCLAW = { namespace: 'agents', name: 'openclaw' };
const COMFY = { namespace: 'media', name: 'comfyui' };
/** A Deployment the operator listed, in a namespace the bot was given no Role in. */
const GHOST = { namespace: 'norbac', name: 'ghost' };

describe('several targets on a real control plane, from encrypted DMs', { timeout: SETUP_TIMEOUT_MS + 300_000 }, () => {
  let tb: KubeTestbed;
  let stack: Stack;
  let app: App;
  let kube: LeanKube | undefined;
  let alice: E2eeHuman;
  let bob: E2eeHuman;
  let aliceRoom: string;
  let bobRoom: string;
  let restoreEnv: (() => void) | undefined;
  let configFile: string;
  /** The config as written, with `comfy` extra settings (rooms, for the last test). */
  let writeConfig: (comfyExtra?: string) => Promise<void>;
  let startBot: () => Promise<void>;
  const fromBot = (m: Message): boolean => m.sender === app.userId && m.relatesTo?.['rel_type'] !== 'm.replace';
  const replicas = async (d: { namespace: string; name: string }): Promise<number> => {
    const got = await tb.admin.ok('GET', `/apis/apps/v1/namespaces/${d.namespace}/deployments/${d.name}`);
    return Number((got['spec'] as { replicas?: number }).replicas ?? 0);
  };

  /** Sends `text` and returns the bot's reply as the human's client decrypted it. */
  async function send(human: E2eeHuman, room: string, text: string): Promise<Message> {
    const before = human.messages(room).filter(fromBot).length;
    await human.send(room, text);
    const reply = (await human.waitForMessages(room, fromBot, { count: before + 1, timeoutMs: 30_000 }))[before]!;
    assert.ok(reply.encrypted && !reply.decryptionFailed, `the reply to ${text} arrived encrypted and decrypted`);
    console.log(`# ${text} → ${JSON.stringify(reply.body)}`);
    return reply;
  }
  const ask = async (human: E2eeHuman, room: string, text: string): Promise<string> => (await send(human, room, text)).body ?? '';

  /** The text of the last edit of `reply` once it is final (✅ ❌ ⚠️), as the client decrypted it. */
  async function finalEdit(human: E2eeHuman, room: string, reply: Message): Promise<string> {
    const edits = (): Message[] => human.messages(room).filter((m) => m.sender === app.userId && m.relatesTo?.['rel_type'] === 'm.replace' && m.relatesTo['event_id'] === reply.eventId);
    const text = (m: Message | undefined): string => String((m?.content['m.new_content'] as { body?: unknown } | undefined)?.body ?? '');
    const deadline = Date.now() + 60_000;
    while (!/✅|❌|⚠️/.test(text(edits().at(-1)))) {
      if (Date.now() > deadline) assert.fail(`no final edit of ${JSON.stringify(reply.body)}: ${JSON.stringify(edits().map(text))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const e of edits()) assert.ok(e.encrypted && !e.decryptionFailed, `edit ${e.eventId} arrived encrypted and decrypted`);
    console.log(`# → ${JSON.stringify(text(edits().at(-1)))}`);
    return text(edits().at(-1));
  }

  before(async () => {
    tb = await sharedKubeTestbed();
    await applyTargetsRbac(tb, [OPENCLAW, COMFY]);
    await tb.admin.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: GHOST.namespace } });
    for (const d of [OPENCLAW, COMFY, GHOST]) await tb.admin.apply(targetDeployment(d.namespace, d.name));
    const token = await requestPodToken(tb);
    const dir = await mkdtemp(join(tmpdir(), 'openclaw-targets-real-'));
    const saRoot = join(dir, 'pod-root');
    restoreEnv = await actAsBotPod(saRoot, tb, token.token);
    stack = await startStack({ dir });
    const domain = stack.synapse.serverName;
    configFile = join(dir, 'targets.yaml');
    writeConfig = (comfyExtra = '') => writeFile(configFile, [
      'targets:',
      `  - { name: openclaw, namespace: ${OPENCLAW.namespace}, deployment: ${OPENCLAW.name}, aliases: [claw] }`,
      `  - { name: comfy, namespace: ${COMFY.namespace}, deployment: ${COMFY.name}, replicas: 2, allowedUsers: ["@alice:${domain}"]${comfyExtra} }`,
      `  - { name: ghost, namespace: ${GHOST.namespace}, deployment: ${GHOST.name} }`,
    ].join('\n'));
    await writeConfig();
    kube = createKube({ requestTimeoutMs: 5_000, serviceAccountRoot: saRoot, watch: [OPENCLAW, COMFY, GHOST] });
    startBot = async () => {
      ({ app } = await stack.startBot({
        file: configFile,
        env: { ALLOWED_USERS: `@alice:${domain},@bob:${domain}`, KUBE_TIMEOUT_SECONDS: '5', ECHO_MODE: 'false', REACTION_BUTTONS: 'false' },
        deps: { kube },
      }));
      await stack.waitForAppserviceUp(30_000);
    };
    await startBot();
    const a = await stack.synapse.registerUser('alice', 'alice-password');
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...a, password: 'alice-password' });
    const b = await stack.synapse.registerUser('bob', 'bob-password');
    bob = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...b, password: 'bob-password' });
    aliceRoom = await alice.createEncryptedRoom([app.userId], { name: 'targets', isDirect: true });
    bobRoom = await bob.createEncryptedRoom([app.userId], { name: 'targets', isDirect: true });
    await alice.waitForMessages(aliceRoom, fromBot, { timeoutMs: 30_000 });
    await bob.waitForMessages(bobRoom, fromBot, { timeoutMs: 30_000 });
  }, { timeout: SETUP_TIMEOUT_MS });

  after(async () => {
    await alice?.stop().catch(() => undefined);
    await bob?.stop().catch(() => undefined);
    await app?.stop().catch(() => undefined);
    await stack?.stop();
    await kube?.close();
    restoreEnv?.();
  });

  it('the hello names the targets; the start-up log names the one whose RBAC is missing, once', async () => {
    const hello = alice.messages(aliceRoom).find(fromBot)!;
    assert.match(hello.body ?? '', /^👋 Hello! I start and stop openclaw, comfy, ghost\.\n/);
    const bobHello = bob.messages(bobRoom).find(fromBot)!.body ?? '';
    assert.match(bobHello, /^👋 Hello! I start and stop openclaw, ghost\.\n/, 'Bob may not control comfy');
    assert.doesNotMatch(bobHello, /comfy/);
    const log = await readFile(join(stack.dir, 'bot.log'), 'utf8');
    const warnings = log.split('\n').filter((l) => l.includes('kubernetes: target ghost (norbac/ghost) cannot be used'));
    assert.equal(warnings.length, 1, 'one start-up warning for ghost');
    assert.match(warnings[0] ?? '', /forbidden/);
    assert.doesNotMatch(log, /target (openclaw|comfy) \(\S+\) cannot be used/);
    const ghostLines = log.split('\n').filter((l) => l.includes('"namespace":"norbac"'));
    assert.ok(ghostLines.some((l) => l.includes('cannot be used')), 'the log lines about ghost are found by their namespace field');
    assert.deepEqual(ghostLines.filter((l) => /cannot record scales as Events|cannot list the Deployment's pods/.test(l)), [], 'no further warnings saying the same');
  });

  it('status alone is one line per target: the API server\'s own refusal for ghost, the others read from their watches', async () => {
    const lines = (await ask(alice, aliceRoom, 'status')).split('\n');
    assert.equal(lines[0], 'Status of 3 targets:');
    assert.equal(lines[1], '⚪ openclaw: off.');
    assert.equal(lines[2], '⚪ comfy: off.');
    assert.match(lines[3] ?? '', /^⚠️ ghost: could not get its status: .*forbidden/);
    assert.match(lines[3] ?? '', /norbac/);
  });

  it('a bare start asks; start NAME scales that Deployment, in its namespace, to the target\'s replicas', async () => {
    assert.match(await ask(alice, aliceRoom, 'start'), /^Which one\? Say "start <name>"; the targets are: openclaw \(claw\), comfy, ghost\.$/);
    assert.equal(await replicas(OPENCLAW) + await replicas(COMFY), 0, 'nothing was started');
    const start = await send(alice, aliceRoom, 'start comfy');
    assert.match(start.body ?? '', /^▶️ Starting comfy: replicas 0 → 2\. ⏳ This message follows it\.$/);
    assert.equal(await replicas(COMFY), 2);
    assert.match(await finalEdit(alice, aliceRoom, start), /^▶️ Started comfy: ✅ ready after \d+ s/, 'its own progress, from its own pods');
    assert.equal(await replicas(OPENCLAW), 0, 'the other target is untouched');
    assert.match(await ask(alice, aliceRoom, 'start ghost'), /^⚠️ Could not start ghost: .*forbidden/);
    assert.equal(await replicas(GHOST), 0);
  });

  it('Bob, allowed for openclaw only, is refused comfy with the reason, and controls openclaw', async () => {
    assert.equal(await ask(bob, bobRoom, 'stop comfy'), `⛔ You may not control comfy: the operator allows only @alice:${stack.synapse.serverName} for it.`);
    assert.equal(await replicas(COMFY), 2, 'comfy still runs');
    assert.match(await ask(bob, bobRoom, 'start claw'), /^▶️ Starting openclaw: replicas 0 → 1\./);
    assert.equal(await replicas(OPENCLAW), 1);
    const status = (await ask(bob, bobRoom, 'status')).split('\n');
    assert.deepEqual(status.map((l) => l.split(':')[0]), ['Status of 2 targets', '🟢 openclaw', '⚠️ ghost'], 'Bob sees the targets he may control');
  });

  it('stops each by name, both followed at once: neither message takes the other over, each ends "off"', async () => {
    const comfy = await send(alice, aliceRoom, 'stop comfy');
    const openclaw = await send(alice, aliceRoom, 'stop openclaw');
    assert.match(comfy.body ?? '', /^⏹ Stopping comfy: replicas 2 → 0\./);
    assert.match(openclaw.body ?? '', /^⏹ Stopping openclaw: replicas 1 → 0\./);
    assert.match(await finalEdit(alice, aliceRoom, comfy), /^⏹ Stopped comfy: ✅ off after \d+ s\.$/);
    assert.match(await finalEdit(alice, aliceRoom, openclaw), /^⏹ Stopped openclaw: ✅ off after \d+ s\.$/);
    assert.equal(await replicas(COMFY) + await replicas(OPENCLAW), 0);
  });

  it('the metrics carry the target', async () => {
    const text = await app.metrics.registry.metrics();
    assert.match(text, /openclaw_commands_total\{command="start",outcome="ok",target="comfy"\} 1/);
    assert.match(text, /openclaw_commands_total\{command="stop",outcome="refused",target="comfy"\} 1/);
    assert.match(text, /openclaw_commands_total\{command="start",outcome="error",target="ghost"\} 1/);
    assert.match(text, /openclaw_kube_request_duration_seconds_count\{operation="scale",target="comfy",outcome="ok"\} 2/);
  });

  it('a target restricted to some rooms is refused elsewhere, with the reason, and works in its room', async () => {
    const elsewhere = await alice.createEncryptedRoom([app.userId], { name: 'elsewhere', isDirect: false });
    await alice.waitForMessages(elsewhere, fromBot, { timeoutMs: 30_000 });
    await app.stop();
    await writeConfig(`, rooms: ["${aliceRoom}"]`);
    await startBot();
    assert.equal(await ask(alice, elsewhere, 'start comfy'), '⛔ comfy cannot be controlled from this room (the operator set the rooms that may).');
    assert.equal(await replicas(COMFY), 0);
    assert.deepEqual((await ask(alice, elsewhere, 'status')).split('\n').map((l) => l.split(':')[0]), ['Status of 2 targets', '⚪ openclaw', '⚠️ ghost'], 'comfy is not for this room');
    assert.match(await ask(alice, aliceRoom, 'start comfy'), /^▶️ Starting comfy: replicas 0 → 2\./);
    assert.equal(await replicas(COMFY), 2);
    assert.match(await ask(alice, aliceRoom, 'stop comfy'), /^⏹ Stopping comfy: replicas 2 → 0\./);
  });
});
