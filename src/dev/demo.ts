/**
 * `npm run demo`: the whole product on this machine. A real Synapse (from a cached Python venv),
 * the bot in appservice mode, a demo user in a room with it, and a SIMULATED Kubernetes API in
 * place of a cluster; `npm run demo -- --real-kubernetes` uses a real control plane instead
 * (src/dev/kube-testbed, built on first use). Prints the conversation and the cluster's changes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../log.ts';
import { realCluster, simulatedCluster, type DemoCluster } from './demo-cluster.ts';
import { FakeClock } from './fake-clock.ts';
import { startE2eeHuman, type Message } from './e2ee-human.ts';
import { DEPLOYMENT, NAMESPACE, startStack } from './stack.ts';
import { ensureSynapseVenv } from './synapse.ts';

/** The second target's Deployment, beside openclaw (the demo's end: several targets). */
const COMFY = 'comfyui';

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const time = (): string => new Date().toISOString().slice(11, 19);

async function demo(real: boolean): Promise<void> {
  out('openclaw-k8s-toggle-operator demo');
  out('  homeserver: a real Synapse on 127.0.0.1 (installed once into a cached Python venv)');
  out(real ? '  Kubernetes: a REAL control plane on 127.0.0.1, started below' : '  Kubernetes: a SIMULATED API server on 127.0.0.1; no real cluster is contacted or changed (--real-kubernetes for a real one)');
  out('  you:        a demo user with a real end-to-end-encrypted client (matrix-js-sdk, Element\'s crypto), in an encrypted DM');
  out('');
  await ensureSynapseVenv({ logger: { info: (m: string) => out(`  ${m}`), warn: (m: string) => out(`  ${m}`) } });
  const dir = await mkdtemp(join(tmpdir(), 'openclaw-demo-'));
  let cluster: DemoCluster | undefined;
  // The simulated pod takes 5 s to get ready, so that the start's reply shows a step before "ready" (edits come at most every 2 s).
  const stack = await startStack({ dir, readyDelayMs: 5000, moreDeployments: [COMFY], harnessLogger: { info: () => undefined, warn: (m: string) => out(`  ${m}`) } });
  try {
    cluster = real ? await realCluster(dir, NAMESPACE, DEPLOYMENT, [COMFY], (m) => out(`  ${m}`)) : simulatedCluster(stack, NAMESPACE, DEPLOYMENT);
    if (real) out(`  Kubernetes: ${cluster.description}`);
    cluster.watch((line) => out(`${time()}  ${line}`));
    const logger = createLogger({ level: (process.env['LOG_LEVEL'] as 'info' | undefined) ?? 'warn', format: 'pretty' });
    // The timed run below would take hours: its clock is one the demo moves by hand (a real bot waits).
    const clock = new FakeClock(Date.now());
    let { app } = await stack.startBot({ logger, deps: { ...cluster.deps, clock } });
    out(`${time()}  bot ${app.userId} is up (Synapse at ${stack.synapse.baseUrl}, bot listening on 127.0.0.1:${app.port})`);
    const login = await stack.synapse.registerUser('alice', 'demo-password');
    const alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: 'demo-password' });
    out(`${time()}  created demo user ${alice.userId} (the only allowed user), device ${alice.deviceId}`);
    out('');

    const bot = app.userId;
    const edit = (m: Message): string | undefined => (m.relatesTo?.['rel_type'] === 'm.replace' ? String(m.relatesTo['event_id']) : undefined);
    const fromBot = (m: Message): boolean => m.sender === bot && edit(m) === undefined;
    const lockOf = (m: Message): string => (m.encrypted && !m.decryptionFailed ? '🔒' : '  ');
    let shown = 0;
    const showReplies = async (room: string, count: number): Promise<Message[]> => {
      const replies = await alice.waitForMessages(room, fromBot, { count: shown + count, timeoutMs: 30_000 });
      for (const m of replies.slice(shown)) {
        (m.body ?? '').split('\n').forEach((line, i) => out(`${time()}  ${i === 0 ? `bot ${lockOf(m)}` : '       '} ${line}`));
      }
      const fresh = replies.slice(shown);
      shown = replies.length;
      return fresh;
    };
    /** A start's or stop's reply is edited as the rollout moves: each edit as alice's client receives it, until the last. */
    const showProgress = async (room: string, reply: Message | undefined): Promise<void> => {
      if (!reply) return;
      const newText = (m: Message): string => String((m.content['m.new_content'] as { body?: unknown } | undefined)?.body ?? m.body);
      for (let seen = 0; ;) {
        const edits = await alice.waitForMessages(room, (m) => m.sender === bot && edit(m) === reply.eventId, { count: seen + 1, timeoutMs: 60_000 });
        for (const m of edits.slice(seen)) out(`${time()}  bot ${lockOf(m)} ✏️ ${newText(m)}`);
        seen = edits.length;
        if (/✅|❌|⚠️/.test(newText(edits.at(-1)!))) return;
      }
    };
    const say = async (room: string, text: string, replies = 2): Promise<Message[]> => {
      out(`${time()}  alice🔒 ${text}`);
      await alice.send(room, text);
      return showReplies(room, replies);
    };
    /** A start or stop, then its progress edits (the result is the reply after the echo). */
    const act = async (room: string, text: string): Promise<void> => showProgress(room, (await say(room, text)).at(-1));

    out(`${time()}  alice creates an encrypted DM and invites ${bot}`);
    const room = await alice.createEncryptedRoom([bot], { name: 'OpenClaw', isDirect: true });
    await showReplies(room, 1);
    const trust = await alice.deviceTrust(bot, app.deviceId);
    out(`${time()}  alice's client sees the bot's device ${app.deviceId} as ${trust.signedByOwner ? 'verified by its owner (cross-signed)' : 'NOT verified by its owner'}`);
    await say(room, 'help');
    await say(room, 'status');
    // The reply to a start follows the rollout: alice sees it edited until the pod is ready.
    await act(room, 'start');
    await say(room, 'status');
    await act(room, 'stop');
    // Buttons for phones: the bot's status and result replies carry ▶️ ⏹️ 🔄, and a tap is a command.
    const press = async (key: string): Promise<void> => {
      const last = alice.messages(room).filter(fromBot).at(-1);
      if (!last) throw new Error('no reply of the bot to press a button on');
      const buttons = await alice.waitForReactions(room, (r) => r.sender === bot && r.target === last.eventId, { count: 3, timeoutMs: 30_000 });
      out(`${time()}  (the bot's last reply carries ${buttons.map((b) => `[${String(b.key)}]`).join(' ')}; alice taps ${key})`);
      await alice.react(room, last.eventId, key);
      await showProgress(room, (await showReplies(room, 2)).at(-1));
    };
    await press('▶️');
    await press('⏹️');
    // A timed run: it stops by itself, with a warning 10 minutes before.
    const started = clock.now();
    await act(room, 'start 2h');
    await say(room, 'extend 30m');
    await say(room, 'status');
    for (const [minutes, what] of [[140, 'the warning'], [150, 'the automatic stop']] as const) {
      out(`${time()}  (the demo moves the bot's clock to ${minutes} min after the start: ${what})`);
      clock.set(started + minutes * 60_000);
      await showReplies(room, 1);
    }
    // Several targets: the operator lists a second Deployment in a targets file; commands then name theirs.
    out('');
    out(`${time()}  (the operator adds a second target in a targets file: "comfy", the Deployment ${COMFY} with 2 replicas; the bot restarts with it)`);
    await app.stop();
    const targetsFile = join(dir, 'targets.yaml');
    await writeFile(targetsFile, [
      'targets:',
      `  - { name: openclaw, namespace: ${NAMESPACE}, deployment: ${DEPLOYMENT} }`,
      `  - { name: comfy, namespace: ${NAMESPACE}, deployment: ${COMFY}, replicas: 2, aliases: [images] }`,
    ].join('\n'));
    ({ app } = await stack.startBot({ file: targetsFile, logger, deps: { ...cluster.deps, clock } }));
    await stack.waitForAppserviceUp(30_000);
    await say(room, 'status');
    await say(room, 'start', 1); // a question back: no echo
    await act(room, 'start comfy');
    await say(room, 'status');
    await act(room, 'stop images');
    await alice.stop();
    out('');
    out(`${time()}  done; stopping the bot, Synapse and the ${real ? 'control plane' : 'simulated cluster'}`);
    await app.stop();
  } finally {
    await stack.stop();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--real-kubernetes');
if (unknown.length > 0) {
  process.stderr.write(`demo: unknown argument ${unknown.join(' ')} (the only one is --real-kubernetes)\n`);
  process.exit(2);
}
demo(args.includes('--real-kubernetes')).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
