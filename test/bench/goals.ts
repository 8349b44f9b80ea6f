/**
 * Issue 10's goals, as the image runs the bot (`npm run bench`; not part of `npm test`).
 *
 * The bot is the production bundle (scripts/build.ts, built into a temp dir with nothing beside it:
 * no node_modules, no sources) run by `node dist/main.js` with the Dockerfile's own ENV (read from
 * the Dockerfile, so the two cannot drift), against a real Synapse and the simulated Kubernetes API.
 * The human is a real E2EE client (matrix-js-sdk with Rust crypto) in an encrypted DM; a pass-through
 * proxy between the bot and Synapse notes when each reply left the bot.
 *
 * Measured: restart → /ready (existing store, fresh store); commands (CPU per encrypted command,
 * Kubernetes requests per start/stop and per status, PATCH → reply sent, and where the time from the
 * PATCH to the human seeing the reply goes); memory (VmRSS/VmHWM every 100 ms) under the commands and
 * under Synapse's largest transactions; idle CPU and RSS after it settles.
 *
 * Options: --quick (few iterations), --keep (keep the temp dir), --out <file> (JSON).
 * Environment: SETTLE_SECONDS (default 40), IDLE_SECONDS (default 60).
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildBundle } from '../../scripts/build.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import { runBigTransactionsOnStack } from './lib/big-transactions-stack.ts';
import { cpuMs, ProcSampler, spawnBot, type BotChild } from './lib/bot-child.ts';
import { startRecordingProxy, type RecordingProxy, type SendRecord } from './lib/recording-proxy.ts';
import { median, mib, summarize, table, fmt, type Summary } from './lib/stats.ts';
import { imageEnv } from './lib/image-env.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    out: { type: 'string', default: join(REPO, 'test/bench/results/goals-latest.json') },
    /** Extra environment for the bot, to try a variant against the image's: --env MALLOC_ARENA_MAX=2 (repeatable). */
    env: { type: 'string', multiple: true, default: [] },
    /** Extra node flag for the bot (V8 flags NODE_OPTIONS does not take): --node-arg=--no-opt (repeatable). */
    'node-arg': { type: 'string', multiple: true, default: [] },
    /** Print the bot's memory map (largest mappings) at the end of the idle window. */
    smaps: { type: 'boolean', default: false },
  },
});
const N = opts.quick ? { rounds: 4, restarts: 1, bigTxns: 10 } : { rounds: 30, restarts: 3, bigTxns: 60 };
const SETTLE_S = Number(process.env['SETTLE_SECONDS'] ?? (opts.quick ? 10 : 40));
const IDLE_S = Number(process.env['IDLE_SECONDS'] ?? (opts.quick ? 20 : 60));
const PASSWORD = 'goals-password-1';
const RESULT = /replicas \d+ → \d+/;
const STATUS = /: desired \d+, ready \d+/;

const T0 = performance.now();
const say = (msg: string): void => void process.stderr.write(`[goals ${((performance.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round1 = (v: number): number => Math.round(v * 10) / 10;


/**
 * RSS split as the kernel counts it: file-backed pages (mostly the node executable's own code, which
 * the kernel can drop and read again under memory pressure) and anonymous ones (heap, wasm: only swap
 * could take those).
 */
function rssSplit(pid: number): { fileMiB: number; anonMiB: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { fileMiB: round1(kib('RssFile') / 1024), anonMiB: round1(kib('RssAnon') / 1024) };
}

/** Resident memory of a process by kind of mapping (smaps), largest first: where idle RSS goes. */
function memoryMap(pid: number): string {
  const text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  const byName = new Map<string, number>();
  let name = '';
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) name = head[1] || '[anonymous]';
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) byName.set(name, (byName.get(name) ?? 0) + Number(rss[1]));
  }
  return [...byName].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([n, kib]) => `  ${(kib / 1024).toFixed(1).padStart(6)} MiB  ${n}`).join('\n');
}

interface Goal { goal: string; target: string; measured: string; pass: boolean }

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'openclaw-goals-'));
  const image = join(dir, 'image');
  let stack: Stack | undefined;
  let proxy: RecordingProxy | undefined;
  let child: BotChild | undefined;
  let alice: E2eeHuman | undefined;
  let ok = false;
  try {
    say(`bundling into ${image} (scripts/build.ts)`);
    const built = await buildBundle(join(image, 'dist'));
    const env = { ...imageEnv(), ...Object.fromEntries(opts.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) };
    say(`image ENV: ${JSON.stringify(env)}`);
    stack = await startStack({ dir, harnessLogger: { info: () => undefined, warn: (m: string) => say(`synapse: ${m}`) } });
    const s = stack;
    proxy = await startRecordingProxy(s.synapse.baseUrl);
    const aliceLogin = await s.synapse.registerUser('alice', PASSWORD);
    // Senders of the big transactions: one allowed, one not (test/bench/lib/big-transactions.ts).
    const bigLogin = await s.synapse.registerUser('bob', PASSWORD);
    const malloryLogin = await s.synapse.registerUser('mallory', PASSWORD);
    const botEnv = s.botEnv({ LOG_LEVEL: 'warn', ALLOWED_USERS: `${aliceLogin.userId},${bigLogin.userId}`, MATRIX_HOMESERVER: proxy.url, ...env });
    let children = 0;
    const start = (): Promise<BotChild> => spawnBot({ repoRoot: REPO, cwd: image, script: 'dist/main.js', nodeArgs: opts['node-arg'], env: botEnv, port: s.botPort, logPath: join(dir, `bot-${++children}.log`) });

    // ------------------------------------------------------------ first start, set-up
    child = await start();
    const firstStartMs = child.readyMs;
    say(`first-ever start (new bot user, fresh store): ready in ${Math.round(firstStartMs)} ms`);
    const sampler = new ProcSampler(child.pid);
    sampler.phase = 'setup';
    alice = await startE2eeHuman({ baseUrl: s.synapse.baseUrl, ...aliceLogin, password: PASSWORD, crossSign: true });
    const human = alice;
    const dm = await human.createEncryptedRoom([s.botUserId], { name: 'goals', isDirect: true });
    await human.waitForMessages(dm, (m) => m.sender === s.botUserId, { timeoutMs: 30_000 });
    const fromBot = (match: RegExp) => (m: Message): boolean => m.sender === s.botUserId && match.test(m.body ?? '');

    // ------------------------------------------------------------ commands
    /** `echoAnsweredAt`: when Synapse answered the echo's PUT, which the reply waits for (so that the two arrive in order). */
    interface Round { kubeRequests: number; auditEvents: number; progress: number; patchAt: number; sentAt: number; answeredAt: number; echoAnsweredAt: number; seenAt: number; sendToPatch: number; sendToSeen: number }
    const command = async (word: 'start' | 'stop' | 'status'): Promise<Round> => {
      const match = fromBot(word === 'status' ? STATUS : RESULT);
      const before = human.messages(dm).filter(match).length;
      const requests0 = s.sim.requests.length;
      const sends0 = proxy!.sends.length;
      let patchAt = NaN;
      const off = s.sim.onChange((c) => { if (c.type === 'scaled') patchAt = performance.now(); });
      const t0 = performance.now();
      const eventId = await human.send(dm, word);
      await human.waitForMessages(dm, match, { count: before + 1, timeoutMs: 30_000 });
      const seenAt = performance.now();
      off();
      // The bot's own API requests during the command; the watch's long-lived list/watch are not per command.
      // The bot's API requests for the command; the watch's long-lived list/watch are not per command, and
      // the audit Event each scale records (issue 11: who did what; sent alongside the reply, not awaited) is counted apart.
      const sent = s.sim.requests.slice(requests0).filter((r) => !/[?&]watch=/.test(r.path) && !(r.method === 'GET' && /\/deployments\?/.test(r.path)));
      if (process.env['BENCH_DEBUG']) console.log(word, sent.map((r) => `${r.method} ${r.path}`));
      const auditEvents = sent.filter((r) => r.method === 'POST' && /\/events$/.test(r.path)).length;
      // Following a start or stop's progress (issue 11) lists the Deployment's pods, then watches them until the reply's last edit.
      const progress = s.sim.requests.slice(requests0).filter((r) => r.method === 'GET' && /\/pods(\?|$)/.test(r.path)).length;
      // (A status of a Deployment that is not ready lists its pods once to say why, when no rollout is followed: counted there too.)
      const kubeRequests = sent.length - auditEvents - sent.filter((r) => r.method === 'GET' && /\/pods(\?|$)/.test(r.path)).length;
      // The echo and the reply, by their transaction ids (`<event>.echo`, `<event>.result`: src/bot/outbox.ts). The
      // buttons of the previous reply, or an edit of an earlier one, may be going out at the same time.
      const byTxn = (purpose: string): SendRecord | undefined => proxy!.sends.slice(sends0).find((x) => decodeURIComponent(x.path.split('?')[0]!).endsWith(`/${eventId}.${purpose}`)); // (appservice: ?user_id=…)
      const echo = byTxn('echo');
      const reply = byTxn('result');
      if (process.env['BENCH_DEBUG'] && reply && reply.arrivedAt - patchAt > 15) {
        const others = proxy!.others.filter((o) => o.at > patchAt - 50 && o.at < reply.arrivedAt).map((o) => `${(o.at - patchAt).toFixed(1)} ${o.what}`);
        const sends = proxy!.sends.filter((x) => x.arrivedAt > patchAt - 200 && x.arrivedAt <= reply.arrivedAt)
          .map((x) => `${(x.arrivedAt - patchAt).toFixed(1)} ${/m\.reaction/.test(x.path) ? 'reaction' : 'message'}, answered ${(x.answeredAt - patchAt).toFixed(1)}`);
        console.log(`SLOW ${word}: ${(reply.arrivedAt - patchAt).toFixed(1)} ms after the PATCH`, [...others, ...sends]);
      }
      return {
        kubeRequests, auditEvents, progress, patchAt, sentAt: reply?.arrivedAt ?? NaN, answeredAt: reply?.answeredAt ?? NaN, echoAnsweredAt: echo?.answeredAt ?? NaN,
        seenAt, sendToPatch: patchAt - t0, sendToSeen: seenAt - t0,
      };
    };
    say(`commands: ${N.rounds} rounds of start, status, stop, status (encrypted DM, echo on: the default)`);
    await command('status'); // warm-up
    sampler.phase = 'commands';
    const cpu0 = cpuMs(child.pid);
    const scales: Round[] = [];
    const statuses: Round[] = [];
    for (let i = 0; i < N.rounds; i++) {
      scales.push(await command('start'));
      statuses.push(await command('status'));
      scales.push(await command('stop'));
      statuses.push(await command('status'));
    }
    const commandCpuMs = (cpuMs(child.pid) - cpu0) / (scales.length + statuses.length);
    await human.stop();
    alice = undefined;

    // ------------------------------------------------------------ idle after ordinary use (RSS only)
    say(`idle after the commands: settling ${SETTLE_S} s, then ${IDLE_S} s measured`);
    sampler.phase = 'settle';
    await sleep(SETTLE_S * 1000);
    sampler.phase = 'idle-after-commands';
    await sleep(IDLE_S * 1000);
    const splitAfterCommands = rssSplit(child.pid);

    // ------------------------------------------------------------ Synapse's largest transactions
    say(`big transactions: ${N.bigTxns} × 100 events of ~64 KiB`);
    sampler.phase = 'big-transactions';
    const big = await runBigTransactionsOnStack(s, { pid: child.pid, allowed: bigLogin, notAllowed: malloryLogin, transactions: N.bigTxns, say });

    // ------------------------------------------------------------ idle after everything (RSS and CPU)
    say(`idle after the big transactions: settling ${SETTLE_S} s, then ${IDLE_S} s measured`);
    sampler.phase = 'settle';
    await sleep(SETTLE_S * 1000);
    sampler.phase = 'idle';
    const idleCpu0 = cpuMs(child.pid);
    await sleep(IDLE_S * 1000);
    const idleCpuPerMin = (cpuMs(child.pid) - idleCpu0) / 1000 / (IDLE_S / 60);
    const split = rssSplit(child.pid);
    if (opts.smaps) {
      const m = await (await fetch(`http://127.0.0.1:${s.botPort}/metrics`)).text();
      const heap = m.split('\n').filter((l) => /^openclaw_(nodejs_heap_size_(total|used)|nodejs_external_memory|process_resident_memory)_bytes /.test(l));
      process.stderr.write(`${heap.map((l) => `  ${l.replace(/ (\d+)$/, (_a, v: string) => ` ${(Number(v) / 2 ** 20).toFixed(1)} MiB`)}`).join('\n')}\n${memoryMap(child.pid)}\n`);
    }
    sampler.stop();
    const rss = (phase: string): number[] => sampler.samples.filter((x) => x.phase === phase).map((x) => x.rssKiB);
    const idleRssMiB = round1(mib(median(rss('idle-after-commands'))));
    const idleAfterBigMiB = round1(mib(median(rss('idle'))));
    const peakMiB = round1(mib(Math.max(...sampler.samples.map((x) => x.hwmKiB))));
    const peakDuringMiB = (phase: string): number => round1(mib(Math.max(...rss(phase))));
    await child.stop();
    child = undefined;

    // ------------------------------------------------------------ restarts
    const existing: number[] = [];
    const fresh: number[] = [];
    for (let i = 0; i < N.restarts; i++) {
      child = await start();
      existing.push(child.readyMs);
      say(`restart on the existing store: ready in ${Math.round(child.readyMs)} ms`);
      await child.stop();
    }
    for (let i = 0; i < N.restarts; i++) {
      await rm(join(dir, 'bot-data'), { recursive: true, force: true });
      child = await start();
      fresh.push(child.readyMs);
      say(`start on a fresh store (new device, cross-signing): ready in ${Math.round(child.readyMs)} ms`);
      await child.stop();
    }
    child = undefined;

    // ------------------------------------------------------------ verdicts
    const patchToSent = summarize(scales.map((r) => r.sentAt - r.patchAt));
    // The reply waits for Synapse's answer to the echo: that part is the homeserver's, the rest the bot's own.
    const echoWait = summarize(scales.map((r) => Math.max(0, r.echoAnsweredAt - r.patchAt)));
    const botOnly = summarize(scales.map((r) => r.sentAt - Math.max(r.patchAt, r.echoAnsweredAt)));
    const sentToAnswered = summarize(scales.map((r) => r.answeredAt - r.sentAt));
    const answeredToSeen = summarize(scales.map((r) => r.seenAt - r.answeredAt));
    const sendToPatch = summarize(scales.map((r) => r.sendToPatch));
    const sendToSeen = summarize(scales.map((r) => r.sendToSeen));
    const patchToSeen = summarize(scales.map((r) => r.seenAt - r.patchAt));
    const perScale = [...new Set(scales.map((r) => r.kubeRequests))].sort();
    const perStatus = [...new Set(statuses.map((r) => r.kubeRequests))].sort();
    const goals: Goal[] = [
      { goal: 'RSS idle after the commands (median over the idle window)', target: '≤ 90 MiB', measured: `${idleRssMiB} MiB (file-backed ${splitAfterCommands.fileMiB}, anonymous ${splitAfterCommands.anonMiB})`, pass: idleRssMiB <= 90 },
      { goal: 'RSS idle after the big transactions too', target: '≤ 90 MiB', measured: `${idleAfterBigMiB} MiB (file-backed ${split.fileMiB}, anonymous ${split.anonMiB})`, pass: idleAfterBigMiB <= 90 },
      { goal: 'RSS peak (VmHWM: set-up, commands, big transactions, idle)', target: '≤ 128 MiB', measured: `${peakMiB} MiB (commands ${peakDuringMiB('commands')}, big transactions ${peakDuringMiB('big-transactions')})`, pass: peakMiB <= 128 },
      { goal: 'restart → /ready, existing store (median)', target: '≤ 900 ms', measured: `${Math.round(median(existing))} ms (${existing.map(Math.round).join(', ')})`, pass: median(existing) <= 900 },
      { goal: 'start → /ready, fresh store (median)', target: '≤ 1500 ms', measured: `${Math.round(median(fresh))} ms (${fresh.map(Math.round).join(', ')})`, pass: median(fresh) <= 1500 },
      { goal: 'idle CPU', target: '≤ 0.02 CPU-s/min', measured: `${idleCpuPerMin.toFixed(3)} CPU-s/min over ${IDLE_S} s`, pass: idleCpuPerMin <= 0.02 },
      { goal: 'CPU per encrypted command (start/stop/status, echo on, own replies included)', target: '≤ 25 ms', measured: `${round1(commandCpuMs)} ms`, pass: commandCpuMs <= 25 },
      { goal: 'Kubernetes requests per start/stop (besides its audit Event and its progress)', target: '1', measured: `${perScale.join(' or ')} (+ ${[...new Set(scales.map((r) => r.auditEvents))].join(' or ')} Event, + ${[...new Set(scales.map((r) => r.progress))].sort().join(' or ')} pod list/watch for the progress, by the reply)`, pass: perScale.length === 1 && perScale[0] === 1 },
      { goal: 'Kubernetes requests per status (besides listing the pods of one not ready)', target: '0', measured: `${perStatus.join(' or ')} (+ ${[...new Set(statuses.map((r) => r.progress))].sort().join(' or ')} pod list/watch)`, pass: perStatus.length === 1 && perStatus[0] === 0 },
      { goal: 'PATCH → reply sent (bot side), p95', target: '≤ 30 ms', measured: `${fmt(patchToSent.p95)} ms (p50 ${fmt(patchToSent.p50)}, max ${fmt(patchToSent.max)})`, pass: patchToSent.p95 <= 30 },
      { goal: `RSS peak during Synapse's largest transactions (${big.transactions} × 100 events of ~64 KiB)`, target: '≤ 128 MiB', measured: `${peakDuringMiB('big-transactions')} MiB (${big.rssBeforeMiB} before, ${big.rssAfterMiB} after)`, pass: peakDuringMiB('big-transactions') <= 128 },
      { goal: 'a command after the big transactions (plaintext, encrypted)', target: 'reaches the API', measured: `${fmt(big.commandMs.plaintext)} ms, ${fmt(big.commandMs.encrypted)} ms to the PATCH`, pass: Number.isFinite(big.commandMs.plaintext) && Number.isFinite(big.commandMs.encrypted) },
    ];
    const results = {
      started: new Date(Date.now() - (performance.now() - T0)).toISOString(),
      node: process.version, machine: { cpus: cpus().length, loadavgAfter: loadavg() }, quick: opts.quick,
      image: { env, bundleBytes: built.bundleBytes, wasmBytes: built.wasmBytes },
      firstStartMs: Math.round(firstStartMs), restartExistingMs: existing.map(Math.round), startFreshMs: fresh.map(Math.round),
      commands: { rounds: N.rounds, cpuMsPerCommand: round1(commandCpuMs), sendToPatch, patchToSent, echoWait, botOnly, sentToAnswered, answeredToSeen, patchToSeen, sendToSeen },
      memory: { idleRssMiB, idleRssSplit: splitAfterCommands, idleAfterBigMiB, idleAfterBigSplit: split, peakMiB, peakCommandsMiB: peakDuringMiB('commands'), peakBigMiB: peakDuringMiB('big-transactions') },
      bigTransactions: big,
      idle: { cpuSPerMin: idleCpuPerMin, seconds: IDLE_S, settleSeconds: SETTLE_S },
      goals,
    };
    await mkdir(join(opts.out, '..'), { recursive: true });
    await writeFile(opts.out, JSON.stringify(results, null, 2) + '\n');
    const row = (name: string, x: Summary): string[] => [name, fmt(x.p50), fmt(x.p95), fmt(x.max)];
    process.stdout.write([
      `Issue 10 goals — node ${process.version}, bundle ${Math.round(built.bundleBytes / 1024)} KiB + wasm ${Math.round(built.wasmBytes / 1024)} KiB, NODE_OPTIONS "${env['NODE_OPTIONS'] ?? ''}"${opts.quick ? ' (QUICK)' : ''}`,
      `load average after: ${loadavg().map((v) => v.toFixed(2)).join(' ')} (2 cores shared with Synapse and the client: figures are noisy)`,
      '',
      table(['goal', 'target', 'measured', ''], goals.map((g) => [g.goal, g.target, g.measured, g.pass ? 'PASS' : 'MISS'])),
      '',
      `Where a start/stop's time goes (${scales.length} commands; ms):`,
      table(['', 'p50', 'p95', 'max'], [
        row('human send() → PATCH at the API', sendToPatch),
        row('PATCH → the bot\'s reply reaches the proxy (bot side)', patchToSent),
        row('  of which: waiting for Synapse to answer the echo', echoWait),
        row('  of which: the bot itself (from the PATCH or the echo\'s answer, the later)', botOnly),
        row('→ Synapse has stored it (its 200)', sentToAnswered),
        row('→ the human\'s client shows it (sync, decrypt)', answeredToSeen),
        row('PATCH → the human sees the reply (the three above)', patchToSeen),
        row('human send() → the human sees the reply', sendToSeen),
      ]),
      '',
      `Big transactions: ${big.transactions} × ${big.events / big.transactions} events, ${big.bodyMiB} MiB each; bot CPU ${big.botCpuMsPerTransaction} ms per transaction; PUT → 200 p50 ${big.perTransactionMs.p50} ms`,
    ].join('\n') + '\n');
    say(`JSON written to ${opts.out}`);
    ok = true;
  } finally {
    await child?.kill().catch(() => undefined);
    await alice?.stop().catch(() => undefined);
    await proxy?.close().catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    if (ok && !opts.keep) await rm(dir, { recursive: true, force: true });
    else say(`temp dir kept: ${dir}`);
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`goals bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
