/**
 * What several targets cost (issue 13; part of `npm run bench`, not of `npm test`): the bot as a
 * child process (`node src/main.ts`) against a real Synapse and the simulated Kubernetes API, once
 * with one target and once with five (one watch each). After it has settled (SETTLE_SECONDS,
 * default 20), for IDLE_SECONDS (default 30) with nothing happening: resident memory, CPU, and the
 * Kubernetes requests it made (the watches' lists and connections). Figures, not a pass/fail goal:
 * the issue sets none, and the bot must stay within its 128Mi limit.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBotProcess } from '../../src/dev/bot-process.ts';
import { DEPLOYMENT, NAMESPACE, startStack } from '../../src/dev/stack.ts';

const MORE = ['comfyui', 'vllm', 'whisper', 'searx'];
const SETTLE_S = Number(process.env['SETTLE_SECONDS'] ?? 20);
const IDLE_S = Number(process.env['IDLE_SECONDS'] ?? 30);

const proc = (pid: number): { rssMiB: number; cpuMs: number } => {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { rssMiB: Number(rss) / 1024, cpuMs: (Number(f[11]) + Number(f[12])) * 10 };
};

const stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-targets-bench-')), moreDeployments: MORE });
const rows: string[] = [];
try {
  for (const count of [1, 1 + MORE.length]) {
    const file = join(stack.dir, `targets-${count}.yaml`);
    const names = [DEPLOYMENT, ...MORE].slice(0, count);
    await writeFile(file, ['targets:', ...names.map((n) => `  - { name: ${n}, namespace: ${NAMESPACE}, deployment: ${n} }`)].join('\n'));
    const before = stack.sim.requests.length;
    const bot = await startBotProcess({ env: stack.botEnv({ CONFIG_FILE: file, LOG_LEVEL: 'warn' }), logDir: stack.dir, logName: `bot-${count}.log`, readyUrl: `http://127.0.0.1:${stack.botPort}` });
    await stack.waitForAppserviceUp();
    const startup = stack.sim.requests.length - before;
    await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
    const pid = bot.proc.pid as number;
    const a = proc(pid);
    const requestsBefore = stack.sim.requests.length;
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const b = proc(pid);
    const idleRequests = stack.sim.requests.length - requestsBefore;
    rows.push(`| ${count} | ${b.rssMiB.toFixed(1)} MiB | ${((b.cpuMs - a.cpuMs) / 1000 / (IDLE_S / 60)).toFixed(3)} CPU-s/min | ${startup} | ${idleRequests} |`);
    await bot.stop();
  }
} finally {
  await stack.stop();
}
console.log(`Several targets, idle after ${SETTLE_S} s settling, over ${IDLE_S} s (node src/main.ts, simulated Kubernetes):`);
console.log('| targets | RSS idle | CPU idle | Kubernetes requests up to ready | Kubernetes requests while idle |');
console.log('| --- | --- | --- | --- | --- |');
for (const row of rows) console.log(row);
