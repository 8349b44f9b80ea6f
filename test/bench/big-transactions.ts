/**
 * Memory under the largest legitimate appservice transactions (issue 10, item 4; not part of
 * `npm test`): a real Synapse, the simulated Kubernetes API, and the bot as a child process with
 * the image's V8 flags; then `runBigTransactions` (test/bench/lib/big-transactions.ts) PUTs
 * 100 events of ~64 KiB per transaction straight to the bot. Prints peak RSS, RSS after, and
 * whether a normal command still works afterwards. Target: peak ≤ 128 MiB.
 *
 *   node test/bench/big-transactions.ts [--script dist/main.js] [--transactions 60]
 *        [--node-options "--max-semi-space-size=1 --max-old-space-size=96"] [--env KEY=VALUE]… [--keep] [--out file.json]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import { runBigTransactionsOnStack } from './lib/big-transactions-stack.ts';
import { spawnBot, type BotChild } from './lib/bot-child.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TARGET_PEAK_MIB = 128;
const { values: opts } = parseArgs({
  options: {
    script: { type: 'string', default: 'src/main.ts' },
    transactions: { type: 'string', default: '60' },
    'node-options': { type: 'string', default: '--max-semi-space-size=1 --max-old-space-size=96' },
    /** Extra environment for the bot, e.g. --env MALLOC_ARENA_MAX=2 (repeatable). */
    env: { type: 'string', multiple: true, default: [] },
    keep: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const extraEnv = Object.fromEntries(opts.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const script = isAbsolute(opts.script) ? opts.script : join(REPO, opts.script);
const t0 = performance.now();
const say = (msg: string): void => void process.stderr.write(`[big-txn ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);

const dir = await mkdtemp(join(tmpdir(), 'openclaw-big-txn-'));
let stack: Stack | undefined;
let child: BotChild | undefined;
let ok = false;
try {
  say(`starting Synapse and the simulated Kubernetes API in ${dir}`);
  stack = await startStack({ dir, harnessLogger: { info: () => undefined, warn: (m: string) => say(`synapse: ${m}`) } });
  const s = stack;
  const aliceLogin = await s.synapse.registerUser('alice', 'big-txn-password-1');
  const malloryLogin = await s.synapse.registerUser('mallory', 'big-txn-password-2');

  say(`starting the bot: NODE_OPTIONS="${opts['node-options']}" node ${opts.script}`);
  child = await spawnBot({
    repoRoot: REPO,
    script,
    env: s.botEnv({ LOG_LEVEL: 'warn', ALLOWED_USERS: aliceLogin.userId, NODE_OPTIONS: opts['node-options'], ...extraEnv }),
    port: s.botPort,
    logPath: join(dir, 'bot-child.log'),
  });
  const transactions = Number(opts.transactions);
  say(`${transactions} transactions of 100 events of ~64 KiB`);
  const result = await runBigTransactionsOnStack(s, { pid: child.pid, allowed: aliceLogin, notAllowed: malloryLogin, transactions, say });
  // Where the resident memory is, as the bot itself reports it (the rest: wasm memory, code, native).
  const metrics = await (await fetch(`http://127.0.0.1:${s.botPort}/metrics`)).text();
  const gauge = (name: string): number => Math.round(Number(new RegExp(`^openclaw_${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN) / 2 ** 20 * 10) / 10;
  const breakdown = { heapTotalMiB: gauge('nodejs_heap_size_total_bytes'), heapUsedMiB: gauge('nodejs_heap_size_used_bytes'), externalMiB: gauge('nodejs_external_memory_bytes') };
  const commandsOk = Number.isFinite(result.commandMs.plaintext) && Number.isFinite(result.commandMs.encrypted);
  const peak = result.hwmMiB;
  console.log([
    `entry point: node ${opts.script}   NODE_OPTIONS="${opts['node-options']}"${opts.env.length ? `   ${opts.env.join(' ')}` : ''}`,
    `${result.transactions} transactions x 100 events, ${result.bodyMiB} MiB each, in ${(result.wallMs / 1000).toFixed(1)} s (per transaction p50 ${result.perTransactionMs.p50} ms, max ${result.perTransactionMs.max} ms; bot CPU ${result.botCpuMsPerTransaction} ms)`,
    `RSS before ${result.rssBeforeMiB} MiB (start-up peak ${result.hwmBeforeMiB} MiB)`,
    `peak RSS: ${peak} MiB (VmHWM; highest sample ${result.peakSampledMiB} MiB), target ≤ ${TARGET_PEAK_MIB} MiB: ${peak <= TARGET_PEAK_MIB ? 'pass' : 'MISS'}`,
    `RSS after (idle): ${result.rssAfterMiB} MiB (V8 heap ${breakdown.heapTotalMiB} MiB, ${breakdown.heapUsedMiB} used; external ${breakdown.externalMiB} MiB; the rest is wasm memory, code and native)`,
    `a normal command afterwards: plaintext ${result.commandMs.plaintext} ms, encrypted ${result.commandMs.encrypted} ms to the PATCH` +
      ` (room key ${result.commandKeyFromBigTransaction ? 'from a big transaction' : 'sent with the command'}): ${commandsOk ? 'works' : 'FAILED'}`,
  ].join('\n'));
  if (opts.out) await writeFile(opts.out, `${JSON.stringify({ script: opts.script, nodeOptions: opts['node-options'], env: extraEnv, ...result, ...breakdown }, null, 2)}\n`);
  ok = commandsOk;
} finally {
  await child?.stop().catch(() => undefined);
  await stack?.stop().catch((e: unknown) => say(`stopping the stack: ${String(e)}`));
  if (ok && !opts.keep) await rm(dir, { recursive: true, force: true });
  else say(`temp dir kept: ${dir}`);
}
process.exitCode = ok ? 0 : 1;
