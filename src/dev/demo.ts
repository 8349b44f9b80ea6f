/**
 * `npm run demo`: the whole product on this machine. A real Synapse (from a cached Python venv),
 * the bot in appservice mode, a demo user in a room with it, and a SIMULATED Kubernetes API in
 * place of a cluster. Prints the conversation and the simulated cluster's changes as they happen.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../log.ts';
import type { TimelineEvent } from './human.ts';
import { DEPLOYMENT, NAMESPACE, startStack } from './stack.ts';
import { ensureSynapseVenv } from './synapse.ts';

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const time = (): string => new Date().toISOString().slice(11, 19);

async function demo(): Promise<void> {
  out('openclaw-k8s-toggle-operator demo');
  out('  homeserver: a real Synapse on 127.0.0.1 (installed once into a cached Python venv)');
  out('  Kubernetes: a SIMULATED API server on 127.0.0.1; no real cluster is contacted or changed');
  out('');
  await ensureSynapseVenv({ logger: { info: (m: string) => out(`  ${m}`), warn: (m: string) => out(`  ${m}`) } });
  const dir = await mkdtemp(join(tmpdir(), 'openclaw-demo-'));
  const stack = await startStack({ dir, readyDelayMs: 1500, harnessLogger: { info: () => undefined, warn: (m: string) => out(`  ${m}`) } });
  try {
    stack.sim.onChange((change) => {
      if (change.type === 'scaled') out(`${time()}  [simulated cluster] ${change.namespace}/${change.name}: spec.replicas ${change.from} → ${change.to}`);
      else out(`${time()}  [simulated cluster] ${change.namespace}/${change.name}: ${change.ready}/${change.desired} pods ready`);
    });
    const logger = createLogger({ level: (process.env['LOG_LEVEL'] as 'info' | undefined) ?? 'warn', format: 'pretty' });
    const { app } = await stack.startBot({ logger });
    out(`${time()}  bot ${app.userId} is up (Synapse at ${stack.synapse.baseUrl}, bot listening on 127.0.0.1:${app.port})`);
    const alice = await stack.human('alice');
    out(`${time()}  created demo user ${alice.userId} (the only allowed user)`);
    out('');

    const bot = app.userId;
    const isBotNotice = (e: TimelineEvent): boolean => e.sender === bot && e.type === 'm.room.message';
    let shown = 0;
    const showReplies = async (room: string, count: number): Promise<string[]> => {
      const notices = await alice.waitFor(room, isBotNotice, { count: shown + count, timeoutMs: 30_000 });
      const fresh = notices.slice(shown).map((e) => String(e.content['body']));
      shown = notices.length;
      for (const text of fresh) text.split('\n').forEach((line, i) => out(`${time()}  ${i === 0 ? 'bot:   ' : '       '}${line}`));
      return fresh;
    };
    const say = async (room: string, text: string, replies = 2): Promise<string[]> => {
      out(`${time()}  alice: ${text}`);
      await alice.send(room, text);
      return showReplies(room, replies);
    };

    out(`${time()}  alice creates a room and invites ${bot}`);
    const room = await alice.createRoom({ name: 'OpenClaw', invite: [bot] });
    await showReplies(room, 1);
    await say(room, 'help');
    await say(room, 'status');
    await say(room, 'start');
    // Wait for the simulated controller to make the pod ready, as a person would.
    const deadline = Date.now() + 15_000;
    while (!(stack.sim.deployment(NAMESPACE, DEPLOYMENT)?.['status'] as { readyReplicas?: number } | undefined)?.readyReplicas && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await say(room, 'status');
    await say(room, 'stop');
    out('');
    out(`${time()}  done; stopping the bot, Synapse and the simulated cluster`);
    await app.stop();
  } finally {
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

demo().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
