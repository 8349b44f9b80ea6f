/**
 * Benchmark (`npm run bench`; not part of `npm test`). Starts a real Synapse and the simulated
 * Kubernetes API in a temp dir, runs the bot as a child process (`node src/main.ts`), and measures:
 *
 *  1. command latency end to end: human send() → scale PATCH at the simulated API (plaintext room with
 *     the plain client-server human, encrypted DM with matrix-js-sdk + Rust crypto), sequential;
 *  2. bot-side processing: transaction PUT straight to the bot → PATCH (homeserver out of the loop);
 *     encrypted events come from an in-memory OlmMachine sender whose room keys travel in the
 *     transactions' to-device section; with ECHO_MODE on (default: the echo goes to Synapse before
 *     the Kubernetes calls) and off;
 *  3. ingestion throughput: transactions of 100 events that cause no Kubernetes call, (a) from a user
 *     who is not allowed, (b) an allowed user's chatter while COMMAND_PREFIX is set;
 *  4. memory: VmRSS / VmHWM of the bot child every 100 ms, crypto store size; flush time and a
 *     per-stage breakdown of a command from an in-process bot (methods wrapped, src/ untouched);
 *     RSS of the production entry point (dist/main.js, bundled to a temp dir) and with V8 flags;
 *  5. cold start to `GET /ready` 200, on the existing store and on a fresh one.
 *
 * Senders rotate Megolm sessions every 100 messages (Element's default), so each 100 events carry
 * one new room key, as in real traffic.
 *
 * Child A (phases 1-3) runs with `--inspect=127.0.0.1:<port>`: the benchmark uses the inspector only
 * after set-up and at the end, to force a full GC and read what is really retained (a leak check).
 *
 * Options: --quick (few iterations, smoke test), --keep (keep the temp dir), --profile (always take
 * CPU profiles; by default only when a CPU target is missed), --no-profile, --heap-sampling (sampling
 * heap profile of child A from set-up to the end of phase 3: where live memory was allocated; costs
 * some CPU), --out <file>.
 * Results: a table on stdout, JSON in test/bench/results/latest.json (or --out).
 * The machine is shared and small: numbers are noisy; the load average is recorded.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { build as esbuild } from 'esbuild';
import { BUILD_OPTIONS, buildBundle } from '../../scripts/build.ts';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import { parse as parseYaml } from 'yaml';
import { CryptoStore, type FlushStats } from '../../src/crypto/crypto-store.ts';
import { OlmCrypto } from '../../src/crypto/olm-crypto.ts';
import { TrustJudge } from '../../src/crypto/trust.ts';
import { startE2eeHuman, type E2eeHuman } from '../../src/dev/e2ee-human.ts';
import { Human, type TimelineEvent } from '../../src/dev/human.ts';
import { DEPLOYMENT, NAMESPACE, SA_TOKEN, startStack, type Stack } from '../../src/dev/stack.ts';
import { createKube } from '../../src/kube/lean-kube.ts';
import type { Kube } from '../../src/kube/kube.ts';
import { createLogger } from '../../src/log.ts';
import { MatrixClient } from '../../src/matrix/client.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { freeLoopbackPort } from '../../src/dev/synapse.ts';
import { cpuMs, ProcSampler, spawnBot, type BotChild, type ProcSample } from './lib/bot-child.ts';
import { InspectorSession, summarizeHeapSampling } from './lib/inspector.ts';
import { summarizeCpuProfile, type ProfileSummary } from './lib/cpuprofile.ts';
import { RawSender } from './lib/raw-sender.ts';
import { report, type Verdict } from './lib/report.ts';
import { median, mib, summarize, type Summary } from './lib/stats.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'heap-sampling': { type: 'boolean', default: false },
    out: { type: 'string', default: join(REPO, 'test/bench/results/latest.json') },
  },
});

const N = opts.quick
  ? { commands: 12, warmup: 2, botSide: 20, botSideOffPlain: 10, botWarmup: 3, txns: 5, txnWarmup: 2, coldRuns: 1, inProcCommands: 10, inProcTxns: 3, memCommands: 5, memTxns: 2, idleMs: 1500, memIdleMs: 1500, profileCommands: 20, profileTxns: 5 }
  : { commands: 100, warmup: 4, botSide: 100, botSideOffPlain: 50, botWarmup: 5, txns: 20, txnWarmup: 3, coldRuns: 3, inProcCommands: 30, inProcTxns: 5, memCommands: 20, memTxns: 5, idleMs: 2500, memIdleMs: 2000, profileCommands: 40, profileTxns: 10 };
const TXN_EVENTS = 100;
/** Pause after each bot-side command, so the bot's own replies (pushed back by Synapse) are not in the next measurement. */
const GAP_MS = 75;
const PREFIX = '!toggle';

const TARGETS = { steadyRssMiB: 100, peakRssMiB: 128, botSideEncryptedP99Ms: 20, encryptedEventsPerSec: 2000 };

const RESULT_RE = /replicas \d+ → \d+/;
const PASSWORD = 'bench-password-1';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const T0 = performance.now();
const say = (msg: string): void => void process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
const round1 = (v: number): number => Math.round(v * 10) / 10;

type Json = Record<string, unknown>;

interface CommandTiming {
  /** performance.now() at the start (send() / PUT) and when the PATCH arrived. */
  start: number;
  patchAt: number;
  /** start → scale PATCH arrived at the simulated API. */
  patchMs: number;
  /** start → the command's first Kubernetes call (GET of the scale subresource) arrived. */
  kubeGetMs: number;
  /** start → the bot's result reply seen by the human (end to end), or → 200 to the PUT (bot side). */
  doneMs: number;
}

interface Ingest {
  scenario: string;
  events: number;
  /** New Megolm sessions (room keys in the to-device section) in the timed transactions. */
  roomKeys: number;
  wallMs: number;
  eventsPerSec: number;
  botCpuMs: number;
  eventsPerCpuSec: number;
  perTxnMs: Summary;
  bodyKiB: number;
  /** Events that reached the bot's policy decrypted (counted as m.room.message). */
  decrypted: number;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'openclaw-bench-'));
  const results: Json = {
    started: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memMiB: Math.round(totalmem() / 2 ** 20), loadavgBefore: loadavg() },
    node: process.version,
    git: gitRev(),
    quick: opts.quick,
    iterations: N,
    dir,
  };
  let stack: Stack | undefined;
  let child: BotChild | undefined;
  let sampler: ProcSampler | undefined;
  const people: E2eeHuman[] = [];
  const senders: RawSender[] = [];
  let failed = true;

  const cleanup = async (): Promise<void> => {
    sampler?.stop();
    await child?.kill().catch(() => undefined);
    for (const p of people) await p.stop().catch(() => undefined);
    for (const s of senders) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
    await stack?.stop().catch((e: unknown) => say(`stopping the stack: ${String(e)}`));
    if (!failed && !opts.keep) await rm(dir, { recursive: true, force: true });
    else say(`temp dir kept: ${dir}`);
  };
  process.once('SIGINT', () => {
    say('interrupted; cleaning up');
    void cleanup().finally(() => process.exit(130));
  });

  try {
    // ================================================================ set-up
    say(`starting Synapse and the simulated Kubernetes API in ${dir}`);
    const built = buildDist(dir); // the production entry point, for the memory comparison (4c)
    built.catch(() => undefined);
    stack = await startStack({ dir, harnessLogger: { info: () => undefined, warn: (m: string) => say(`synapse: ${m}`) } });
    const s = stack;
    const sim = s.sim;
    const bot = s.botUserId;
    const botUrl = `http://127.0.0.1:${s.botPort}`;
    const registration = parseYaml(await readFile(s.registrationPath, 'utf8')) as { hs_token: string };
    const hsHeaders = { authorization: `Bearer ${registration.hs_token}`, 'content-type': 'application/json' };

    // Arrival time of every request at the simulated API (its own log has no timestamps).
    const arrival = new WeakMap<object, number>();
    const push = sim.requests.push.bind(sim.requests);
    sim.requests.push = (...items) => {
      for (const item of items) arrival.set(item, performance.now());
      return push(...items);
    };

    const plain = await s.human('plain');
    const aliceLogin = await s.synapse.registerUser('alice', PASSWORD);
    const benchLogin = await s.synapse.registerUser('bench', PASSWORD);
    const malloryLogin = await s.synapse.registerUser('mallory', PASSWORD);
    const allowed = [plain.userId, aliceLogin.userId, benchLogin.userId].join(',');
    const env = (extra: Record<string, string> = {}): Record<string, string | undefined> => s.botEnv({ LOG_LEVEL: 'warn', ALLOWED_USERS: allowed, ...extra });
    /** The child's COMMAND_PREFIX, so commands are addressed to it. */
    let prefix = '';
    let children = 0;
    const startChild = async (extra: Record<string, string> = {}, more: { nodeArgs?: string[]; script?: string } = {}): Promise<BotChild> => {
      prefix = extra['COMMAND_PREFIX'] ?? '';
      return spawnBot({ repoRoot: REPO, env: env(extra), port: s.botPort, logPath: join(dir, `bot-child-${++children}.log`), ...more });
    };
    const quietConfig = { ECHO_MODE: 'false', COMMAND_PREFIX: PREFIX };
    await built; // before the first measured start: the compiler would compete for the cores
    say('production build (scripts/build.ts: the bundle) done');

    const nextCommand = (): string => {
      const word = sim.replicas(NAMESPACE, DEPLOYMENT) === 0 ? 'start' : 'stop';
      return prefix ? `${prefix} ${word}` : word;
    };
    /** Resolves with the time the next scale PATCH changed the simulated Deployment. */
    const nextScale = (timeoutMs = 30_000): Promise<number> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          off();
          reject(new Error(`no scale PATCH within ${timeoutMs} ms`));
        }, timeoutMs);
        const off = sim.onChange((c) => {
          if (c.type !== 'scaled') return;
          const at = performance.now();
          clearTimeout(timer);
          off();
          resolve(at);
        });
      });
    const kubeGetAfter = (from: number): number => {
      const r = sim.requests.slice(from).find((q) => q.method === 'GET' && q.path.endsWith('/scale'));
      return (r ? arrival.get(r) : undefined) ?? NaN;
    };

    let txnCount = 0;
    const put = async (body: string): Promise<void> => {
      const id = `bench-${process.pid}-${++txnCount}`;
      const response = await fetch(`${botUrl}/_matrix/app/v1/transactions/${id}`, { method: 'PUT', headers: hsHeaders, body, signal: AbortSignal.timeout(60_000) });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`PUT transaction ${id}: ${response.status} ${text}`);
    };
    let eventSeq = 0;
    const roomEvent = (roomId: string, sender: string, type: string, content: Json): Json => ({
      event_id: `$bench-${++eventSeq}`, room_id: roomId, sender, type, origin_server_ts: Date.now(), content, unsigned: { age: 0 },
    });
    const metrics = async (): Promise<string> => (await fetch(`${botUrl}/metrics`)).text();
    const metric = (text: string, series: string): number => {
      const escaped = series.replace(/[{}."]/g, (c) => `\\${c}`);
      return Number(new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    };

    // ================================================================ the bot, fresh install
    say('starting the bot (child process, fresh store; inspector on, used only at idle points)');
    const inspectPort = await freeLoopbackPort();
    child = await startChild({}, { nodeArgs: [`--inspect=127.0.0.1:${inspectPort}`] });
    const firstReadyMs = child.readyMs;
    const inspector = await InspectorSession.connect(inspectPort);
    sampler = new ProcSampler(child.pid);
    sampler.phase = 'setup';

    // Rooms: a plaintext one (plain human), an encrypted DM (E2EE human), and an encrypted room made
    // by the raw sender "bench" (allowed), where "mallory" (not allowed) is a member too.
    const plainRoom = await plain.createRoom({ name: 'bench plaintext', invite: [bot] });
    await plain.waitFor(plainRoom, (e) => e.sender === bot && e.type === 'm.room.message', { timeoutMs: 30_000 });
    const alice = await startE2eeHuman({ baseUrl: s.synapse.baseUrl, ...aliceLogin, password: PASSWORD, crossSign: true });
    people.push(alice);
    const dm = await alice.createEncryptedRoom([bot], { name: 'bench e2ee', isDirect: true });
    await alice.waitForMessages(dm, (m) => m.sender === bot, { timeoutMs: 30_000 });
    const bench = await RawSender.create(s.synapse.baseUrl, benchLogin, { recipient: bot });
    senders.push(bench);
    const mallory = await RawSender.create(s.synapse.baseUrl, malloryLogin, { recipient: bot });
    senders.push(mallory);
    const benchApi = new Human(s.synapse.baseUrl, benchLogin.userId, benchLogin.accessToken);
    const benchRoom = await benchApi.createRoom({ name: 'bench raw e2ee', invite: [bot, mallory.userId], encrypted: true });
    await new Human(s.synapse.baseUrl, malloryLogin.userId, malloryLogin.accessToken).join(benchRoom);
    for (let i = 0; (await benchApi.membership(benchRoom, bot)) !== 'join'; i++) {
      if (i > 300) throw new Error('the bot did not join the bench room');
      await sleep(100);
    }
    say('set-up done');
    /** Heap and RSS as the bot reports them at the end of each idle window (growth between them: heap expansion or a leak?). */
    const idleMetrics: Record<string, Record<string, number>> = {};
    const afterGc: Record<string, Record<string, number>> = {};
    /**
     * A forced full GC shows what is really retained (growth between two = a leak). Only after
     * set-up and at the very end: in between it would shrink the heap and flatter the RSS figures.
     */
    const forcedGc = async (label: string): Promise<void> => {
      if (sampler) sampler.phase = `${label} (forced GC)`;
      afterGc[label] = await inspector.memoryAfterGc();
    };
    const idle = async (label: string): Promise<void> => {
      if (sampler) sampler.phase = label;
      await sleep(N.idleMs);
      idleMetrics[label] = pickProcessMetrics(await metrics());
    };
    await idle('idle-after-setup');
    await forcedGc('after-setup');
    // Optional: live-object sampling from here to the end of phase 3 (where retained memory was allocated); it costs some CPU.
    if (opts['heap-sampling']) await inspector.call('HeapProfiler.startSampling', { samplingInterval: 65_536 });

    // ================================================================ 1. end to end
    const plainResults = (): TimelineEvent[] => plain.events.filter((e) => e.room_id === plainRoom && e.sender === bot && RESULT_RE.test(String(e.content['body'] ?? '')));
    const isResult = (m: { sender: string; body: string | undefined }): boolean => m.sender === bot && RESULT_RE.test(m.body ?? '');
    const endToEnd = async (kind: 'plaintext' | 'encrypted'): Promise<CommandTiming> => {
      const command = nextCommand();
      const from = sim.requests.length;
      const scaled = nextScale();
      const before = kind === 'plaintext' ? plainResults().length : alice.messages(dm).filter(isResult).length;
      const start = performance.now();
      if (kind === 'plaintext') await plain.send(plainRoom, command);
      else await alice.send(dm, command);
      const patchAt = await scaled;
      if (kind === 'plaintext') await plain.waitFor(plainRoom, (e) => e.sender === bot && RESULT_RE.test(String(e.content['body'] ?? '')), { count: before + 1, timeoutMs: 30_000 });
      else await alice.waitForMessages(dm, isResult, { count: before + 1, timeoutMs: 30_000 });
      return { start, patchAt, patchMs: patchAt - start, kubeGetMs: kubeGetAfter(from) - start, doneMs: performance.now() - start };
    };
    const e2e: Record<string, { timings: CommandTiming[]; cpuMsPerCommand: number }> = {};
    for (const kind of ['plaintext', 'encrypted'] as const) {
      sampler.phase = `latency-${kind}`;
      say(`1. end-to-end latency, ${kind}: ${N.warmup} warm-up + ${N.commands} commands`);
      for (let i = 0; i < N.warmup; i++) await endToEnd(kind);
      const cpu0 = cpuMs(child.pid);
      const timings: CommandTiming[] = [];
      for (let i = 0; i < N.commands; i++) timings.push(await endToEnd(kind));
      e2e[kind] = { timings, cpuMsPerCommand: (cpuMs(child.pid) - cpu0) / N.commands };
    }
    await alice.stop(); // not needed any more; its sync loop would only add noise
    await plain.stopSync();
    await idle('idle-after-latency');

    // ================================================================ 2. bot side
    const botSideCommand = async (kind: 'plaintext' | 'encrypted'): Promise<CommandTiming> => {
      const command = nextCommand();
      let body: Json;
      if (kind === 'plaintext') {
        body = { events: [roomEvent(plainRoom, plain.userId, 'm.room.message', { msgtype: 'm.text', body: command })] };
      } else {
        const content = await bench.encryptText(benchRoom, command);
        const toDevice = bench.takeToDevice(); // a new Megolm session every 100 messages
        body = { events: [roomEvent(benchRoom, bench.userId, 'm.room.encrypted', content)], ...(toDevice.length ? { 'de.sorunome.msc2409.to_device': toDevice } : {}) };
      }
      const text = JSON.stringify(body);
      const from = sim.requests.length;
      const scaled = nextScale(20_000);
      const start = performance.now();
      await put(text);
      const acked = performance.now();
      const patchAt = await scaled;
      await sleep(GAP_MS);
      return { start, patchAt, patchMs: patchAt - start, kubeGetMs: kubeGetAfter(from) - start, doneMs: acked - start };
    };
    type BotSide = Record<string, { timings: CommandTiming[]; cpuMsPerCommand: number }>;
    const botSideRun = async (label: string, counts: Record<'plaintext' | 'encrypted', number>, pid: number): Promise<BotSide> => {
      const out: BotSide = {};
      for (const kind of ['plaintext', 'encrypted'] as const) {
        if (sampler) sampler.phase = `botside-${label}-${kind}`;
        say(`2. bot-side processing (${label}), ${kind}: ${N.botWarmup} warm-up + ${counts[kind]} transactions`);
        for (let i = 0; i < N.botWarmup; i++) await botSideCommand(kind);
        const cpu0 = cpuMs(pid);
        const timings: CommandTiming[] = [];
        for (let i = 0; i < counts[kind]; i++) timings.push(await botSideCommand(kind));
        out[kind] = { timings, cpuMsPerCommand: (cpuMs(pid) - cpu0) / counts[kind] };
      }
      return out;
    };
    const botSideEchoOn = await botSideRun('echo on', { plaintext: N.botSide, encrypted: N.botSide }, child.pid);

    // ================================================================ 3. ingestion
    type Scenario = 'plaintext, not allowed' | 'encrypted, not allowed' | 'encrypted, allowed chatter';
    const ingestBodies = async (scenario: Scenario, txns: number): Promise<{ bodies: string[]; roomKeys: number[] }> => {
      const bodies: string[] = [];
      const roomKeys: number[] = [];
      const sender = scenario === 'encrypted, allowed chatter' ? bench : mallory;
      for (let t = 0; t < txns; t++) {
        const events: Json[] = [];
        for (let i = 0; i < TXN_EVENTS; i++) {
          const text = `just chatting ${t}.${i}, not a command for the bot`;
          events.push(scenario === 'plaintext, not allowed'
            ? roomEvent(plainRoom, mallory.userId, 'm.room.message', { msgtype: 'm.text', body: text })
            : roomEvent(benchRoom, sender.userId, 'm.room.encrypted', await sender.encryptText(benchRoom, text)));
        }
        const toDevice = scenario === 'plaintext, not allowed' ? [] : sender.takeToDevice();
        roomKeys.push(toDevice.length);
        bodies.push(JSON.stringify({ events, ...(toDevice.length ? { 'de.sorunome.msc2409.to_device': toDevice } : {}) }));
      }
      return { bodies, roomKeys };
    };
    const ingest = async (scenario: Scenario, txns: number, warmup: number, pid: number | undefined): Promise<Ingest> => {
      const { bodies, roomKeys } = await ingestBodies(scenario, txns + warmup);
      for (const body of bodies.slice(0, warmup)) await put(body);
      await sleep(200);
      const m0 = await metrics();
      const patchesBefore = sim.requests.filter((r) => r.method === 'PATCH').length;
      const timed = bodies.slice(warmup);
      const cpu0 = pid ? cpuMs(pid) : NaN;
      const start = performance.now();
      const per: number[] = [];
      for (const body of timed) {
        const t = performance.now();
        await put(body);
        per.push(performance.now() - t);
      }
      const wallMs = performance.now() - start;
      const botCpuMs = pid ? cpuMs(pid) - cpu0 : NaN;
      const events = timed.length * TXN_EVENTS;
      const m1 = await metrics();
      const delta = (series: string): number => metric(m1, series) - metric(m0, series);
      const decrypted = delta('openclaw_events_total{type="m.room.message"}');
      const seen = decrypted + delta('openclaw_events_total{type="m.room.encrypted"}');
      if (seen < events) throw new Error(`ingestion (${scenario}): the bot saw ${seen} of ${events} events`);
      if (scenario !== 'encrypted, not allowed' && decrypted < events) throw new Error(`ingestion (${scenario}): only ${decrypted} of ${events} events were decrypted`);
      if (sim.requests.filter((r) => r.method === 'PATCH').length !== patchesBefore) throw new Error('ingestion events caused a Kubernetes call');
      return {
        scenario, events, roomKeys: roomKeys.slice(warmup).filter((n) => n > 0).length, wallMs: Math.round(wallMs),
        eventsPerSec: Math.round(events / (wallMs / 1000)), botCpuMs: Math.round(botCpuMs), eventsPerCpuSec: Math.round(events / (botCpuMs / 1000)),
        perTxnMs: summarize(per), bodyKiB: Math.round(timed.reduce((n, b) => n + b.length, 0) / timed.length / 1024), decrypted,
      };
    };
    const ingestion: Record<string, Ingest> = {};
    for (const scenario of ['plaintext, not allowed', 'encrypted, not allowed'] as const) {
      sampler.phase = `ingest-${scenario}`;
      say(`3. ingestion (${scenario}): ${N.txnWarmup} warm-up + ${N.txns} transactions of ${TXN_EVENTS} events`);
      ingestion[scenario] = await ingest(scenario, N.txns, N.txnWarmup, child.pid);
    }
    await idle('idle-after-ingestion');

    // ================================================================ 4. memory (child A)
    const samples = sampler.samples;
    const idleSamples = (labels: string[]): ProcSample[] => samples.filter((x) => labels.includes(x.phase));
    // Idle windows only (their forced-GC tails are labelled apart and not counted).
    const steadyKiB = median(idleSamples(['idle-after-latency', 'idle-after-ingestion']).map((x) => x.rssKiB));
    const peakKiB = Math.max(...samples.map((x) => x.hwmKiB));
    const rssByPhase: Record<string, { medianMiB: number; maxMiB: number; samples: number }> = {};
    for (const phase of [...new Set(samples.map((x) => x.phase))]) {
      const rs = samples.filter((x) => x.phase === phase).map((x) => x.rssKiB);
      rssByPhase[phase] = { medianMiB: round1(mib(median(rs))), maxMiB: round1(mib(Math.max(...rs))), samples: rs.length };
    }
    const storeBytes = await cryptoStoreBytes(join(dir, 'bot-data', 'crypto'));
    const processMetrics = pickProcessMetrics(await metrics());
    await forcedGc('end-of-phase-3');
    let liveHeap: ReturnType<typeof summarizeHeapSampling> | undefined;
    if (opts['heap-sampling']) {
      liveHeap = summarizeHeapSampling((await inspector.call('HeapProfiler.getSamplingProfile'))['profile'] as Parameters<typeof summarizeHeapSampling>[0]);
      await inspector.call('HeapProfiler.stopSampling');
    }
    inspector.close();
    sampler.stop();
    sampler = undefined;
    say('stopping the bot');
    await child.stop();
    child = undefined;

    // ================================================================ 5a. cold start, existing store (+ 2b, 3b on the last one)
    const coldExisting: number[] = [];
    let botSideEchoOff: BotSide | undefined;
    for (let run = 0; run < N.coldRuns; run++) {
      const last = run === N.coldRuns - 1;
      child = await startChild(last ? quietConfig : {});
      coldExisting.push(child.readyMs);
      say(`5. cold start on the existing store: ready in ${child.readyMs.toFixed(0)} ms`);
      if (last) {
        await s.waitForAppserviceUp(30_000);
        await sleep(500);
        botSideEchoOff = await botSideRun(`echo off, prefix ${PREFIX}`, { plaintext: N.botSideOffPlain, encrypted: N.botSide }, child.pid);
        say(`3. ingestion (encrypted, allowed chatter; COMMAND_PREFIX ${PREFIX}): ${N.txnWarmup} warm-up + ${N.txns} transactions`);
        ingestion['encrypted, allowed chatter'] = await ingest('encrypted, allowed chatter', N.txns, N.txnWarmup, child.pid);
      }
      await child.stop();
      child = undefined;
    }

    // ================================================================ 4b. flush time and stage breakdown (in-process bot)
    say('4b. crypto-store flush time and stage breakdown, in-process bot (echo off)');
    prefix = PREFIX;
    const inProcess = await inProcessPhase(s, { LOG_LEVEL: 'warn', ALLOWED_USERS: allowed, ...quietConfig }, dir, async (label) => {
      label('command-encrypted');
      const timings: CommandTiming[] = [];
      for (let i = 0; i < N.inProcCommands; i++) timings.push(await botSideCommand('encrypted'));
      label('ingest-encrypted-not-allowed');
      const enc = await ingest('encrypted, not allowed', N.inProcTxns, 1, undefined);
      label('ingest-encrypted-allowed');
      const allowedChatter = await ingest('encrypted, allowed chatter', N.inProcTxns, 1, undefined);
      label('ingest-plaintext');
      const pla = await ingest('plaintext, not allowed', N.inProcTxns, 1, undefined);
      return { timings, ingest: { enc, allowedChatter, pla } };
    });

    // ================================================================ 4c. memory of the production entry point
    const memVariants: Json[] = [];
    const variants: Array<{ name: string; script: string; nodeArgs: string[] }> = [
      { name: 'node src/main.ts (type stripping, as above)', script: 'src/main.ts', nodeArgs: [] },
      { name: 'node dist/main.js (the Dockerfile entry point)', script: join(dir, 'build/dist/main.js'), nodeArgs: [] },
      { name: 'node --max-semi-space-size=1 dist/main.js', script: join(dir, 'build/dist/main.js'), nodeArgs: ['--max-semi-space-size=1'] },
      { name: 'node --max-semi-space-size=1 --max-old-space-size=64 dist/main.js', script: join(dir, 'build/dist/main.js'), nodeArgs: ['--max-semi-space-size=1', '--max-old-space-size=64'] },
    ];
    for (const v of variants) {
      say(`4c. memory: ${v.name}`);
      child = await startChild({}, { script: v.script, nodeArgs: v.nodeArgs });
      const vs = new ProcSampler(child.pid);
      vs.phase = 'idle-start';
      await s.waitForAppserviceUp(30_000);
      await sleep(N.memIdleMs);
      vs.phase = 'work';
      const cpu0 = cpuMs(child.pid);
      for (let i = 0; i < N.memCommands; i++) await botSideCommand('encrypted');
      await ingest('encrypted, not allowed', N.memTxns, 0, undefined);
      const workCpuMs = cpuMs(child.pid) - cpu0;
      vs.phase = 'idle-after';
      await sleep(N.memIdleMs);
      vs.stop();
      const rss = (phase: string): number => round1(mib(median(vs.samples.filter((x) => x.phase === phase).map((x) => x.rssKiB))));
      memVariants.push({ name: v.name, readyMs: Math.round(child.readyMs), idleAfterStartMiB: rss('idle-start'), idleAfterWorkMiB: rss('idle-after'), peakMiB: round1(mib(Math.max(...vs.samples.map((x) => x.hwmKiB)))), workCpuMs: Math.round(workCpuMs) });
      await child.stop();
      child = undefined;
    }
    say('4c. memory: module floor (import only)');
    await built;
    const importFloor = await measureImportFloor(join(dir, 'build', 'lean-kube.js'));
    say('kube: GET deployments/scale over a new TLS connection each time vs one kept-alive connection');
    const kubeTls = await measureKubeTls(sim.url, sim.caPem);

    // ================================================================ CPU profiles, when a CPU target is missed
    const encOffP99 = summarize(botSideEchoOff?.['encrypted']?.timings.map((x) => x.patchMs) ?? []).p99;
    const ingestMissed = ['encrypted, not allowed', 'encrypted, allowed chatter'].some((k) => !((ingestion[k]?.eventsPerSec ?? 0) >= TARGETS.encryptedEventsPerSec));
    const profiles: Record<string, ProfileSummary> = {};
    const want = (missed: boolean): boolean => !opts['no-profile'] && (opts.profile || missed);
    const profiled = async (name: string, parts: Array<{ name: string; work: () => Promise<void> }>): Promise<void> => {
      const profDir = join(dir, `cpuprof-${name}`);
      await mkdir(profDir, { recursive: true });
      child = await startChild(quietConfig, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
      await s.waitForAppserviceUp(30_000);
      await sleep(300);
      const windows: Array<{ name: string; startNs: bigint; endNs: bigint }> = [];
      for (const part of parts) {
        const startNs = process.hrtime.bigint();
        await part.work();
        windows.push({ name: part.name, startNs, endNs: process.hrtime.bigint() });
      }
      await child.stop();
      child = undefined;
      const file = (await readdir(profDir)).find((f) => f.endsWith('.cpuprofile'));
      if (!file) throw new Error(`no .cpuprofile written in ${profDir}`);
      await mkdir(join(REPO, 'test/bench/results'), { recursive: true });
      const keptAt = join(REPO, 'test/bench/results', `${name}.cpuprofile`);
      await copyFile(join(profDir, file), keptAt);
      for (const w of windows) profiles[w.name] = { ...(await summarizeCpuProfile(keptAt, w)) };
    };
    if (want(ingestMissed)) {
      say('profiling encrypted ingestion (node --cpu-prof on the bot child)');
      await profiled('ingest', [
        { name: 'ingest: encrypted, not allowed', work: async () => void (await ingest('encrypted, not allowed', N.profileTxns, 1, undefined)) },
        { name: 'ingest: encrypted, allowed chatter', work: async () => void (await ingest('encrypted, allowed chatter', N.profileTxns, 1, undefined)) },
      ]);
    }
    if (want(!(encOffP99 < TARGETS.botSideEncryptedP99Ms))) {
      say('profiling encrypted commands, echo off (node --cpu-prof on the bot child)');
      await profiled('commands', [{
        name: 'bot-side: encrypted commands, echo off',
        work: async () => {
          for (let i = 0; i < N.profileCommands; i++) await botSideCommand('encrypted');
        },
      }]);
    }

    // ================================================================ 5b. cold start, fresh store
    const coldFresh: number[] = [];
    for (let run = 0; run < N.coldRuns; run++) {
      await rm(join(dir, 'bot-data'), { recursive: true, force: true });
      child = await startChild();
      coldFresh.push(child.readyMs);
      say(`5. cold start on a fresh store (new device, cross-signing): ready in ${child.readyMs.toFixed(0)} ms`);
      await child.stop();
      child = undefined;
    }

    // ================================================================ report
    const lat = (x: { timings: CommandTiming[]; cpuMsPerCommand: number } | undefined): Json => {
      const t = x?.timings ?? [];
      return {
        toPatchMs: summarize(t.map((c) => c.patchMs)),
        toKubeGetMs: summarize(t.map((c) => c.kubeGetMs).filter(Number.isFinite)),
        kubeGetToPatchMs: summarize(t.map((c) => c.patchMs - c.kubeGetMs).filter(Number.isFinite)),
        doneMs: summarize(t.map((c) => c.doneMs)),
        botCpuMsPerCommand: round1(x?.cpuMsPerCommand ?? NaN),
        rawToPatchMs: t.map((c) => round1(c.patchMs)),
      };
    };
    const steadyMiB = round1(mib(steadyKiB));
    const peakMiB = round1(mib(peakKiB));
    const encOnP99 = summarize(botSideEchoOn['encrypted']?.timings.map((x) => x.patchMs) ?? []).p99;
    const targets: Verdict[] = [
      verdict('steady RSS (median, idle after warm-up)', steadyMiB, '<', TARGETS.steadyRssMiB, 'MiB'),
      verdict('peak RSS (VmHWM, phases 1-3)', peakMiB, '<', TARGETS.peakRssMiB, 'MiB'),
      verdict('bot-side p99, encrypted, echo off', encOffP99, '<', TARGETS.botSideEncryptedP99Ms, 'ms'),
      verdict('bot-side p99, encrypted, echo on (default)', encOnP99, '<', TARGETS.botSideEncryptedP99Ms, 'ms'),
      verdict('ingestion, encrypted, sender not allowed', ingestion['encrypted, not allowed']?.eventsPerSec ?? NaN, '>=', TARGETS.encryptedEventsPerSec, 'events/s'),
      verdict('ingestion, encrypted, allowed chatter', ingestion['encrypted, allowed chatter']?.eventsPerSec ?? NaN, '>=', TARGETS.encryptedEventsPerSec, 'events/s'),
    ];
    Object.assign(results, {
      finished: new Date().toISOString(),
      durationS: Math.round((performance.now() - T0) / 1000),
      loadavgAfter: loadavg(),
      endToEnd: {
        what: 'human send() start → scale PATCH at the simulated API (toPatchMs); → result reply seen by the human (doneMs); via the real Synapse; bot = child process node src/main.ts',
        plaintext: lat(e2e['plaintext']),
        encrypted: lat(e2e['encrypted']),
      },
      botSide: {
        what: 'PUT /_matrix/app/v1/transactions start → scale PATCH at the simulated API (toPatchMs); doneMs = → the 200 answer (after the result reply went to Synapse)',
        gapMs: GAP_MS,
        echoOn: Object.fromEntries(Object.entries(botSideEchoOn).map(([k, v]) => [k, lat(v)])),
        echoOff: Object.fromEntries(Object.entries(botSideEchoOff ?? {}).map(([k, v]) => [k, lat(v)])),
      },
      ingestion,
      memory: {
        steadyRssMiB: steadyMiB,
        peakRssMiB: peakMiB,
        rssByPhase,
        cryptoStore: storeBytes,
        processMetricsAtEnd: processMetrics,
        idleMetrics,
        afterForcedGc: afterGc,
        liveHeapSinceSetup: liveHeap,
        variants: memVariants,
        importFloor,
      },
      inProcess,
      kubeTls,
      coldStart: {
        firstEverStartMs: Math.round(firstReadyMs),
        existingStoreMs: coldExisting.map(Math.round),
        existingStoreMedianMs: Math.round(median(coldExisting)),
        freshStoreMs: coldFresh.map(Math.round),
        freshStoreMedianMs: Math.round(median(coldFresh)),
      },
      profiles,
      targets,
    });
    failed = false;
    await mkdir(join(opts.out, '..'), { recursive: true });
    await writeFile(opts.out, JSON.stringify(results, null, 2) + '\n');
    process.stdout.write(report(results) + '\n');
    say(`JSON written to ${opts.out}`);
  } finally {
    await cleanup();
  }
}

// ---------------------------------------------------------------------------------------------

interface Span { name: string; label: string; start: number; end: number }

/**
 * Runs the bot in-process (stack.startBot), with CryptoStore.prototype.flush and a few stage
 * methods wrapped (prototype patches in this process only; src/ is untouched), to get per-flush
 * stats and where a command's time goes between the PUT and the PATCH.
 */
async function inProcessPhase<T extends { timings: CommandTiming[] }>(
  stack: Stack,
  env: Record<string, string>,
  dir: string,
  work: (label: (l: string) => void) => Promise<T>,
): Promise<Json> {
  const flushes: Array<{ label: string; wallMs: number; stats: FlushStats }> = [];
  const spans: Span[] = [];
  let label = 'startup';
  const restore: Array<() => void> = [];
  const timed = <R>(name: string, run: () => R): R => {
    const start = performance.now();
    const at = label;
    const result = run();
    if (result instanceof Promise) return result.finally(() => spans.push({ name, label: at, start, end: performance.now() })) as R;
    spans.push({ name, label: at, start, end: performance.now() });
    return result;
  };
  const wrap = (proto: object, method: string, name: string): void => {
    const target = proto as Record<string, unknown>;
    const original = target[method] as (...a: unknown[]) => unknown;
    target[method] = function (this: unknown, ...a: unknown[]): unknown {
      return timed(name, () => original.apply(this, a));
    };
    restore.push(() => (target[method] = original));
  };
  const flushProto = CryptoStore.prototype as unknown as { flush: (this: CryptoStore) => Promise<FlushStats> };
  const originalFlush = flushProto.flush;
  flushProto.flush = async function (this: CryptoStore): Promise<FlushStats> {
    const start = performance.now();
    const at = label;
    const stats = await originalFlush.call(this);
    const end = performance.now();
    flushes.push({ label: at, wallMs: end - start, stats });
    spans.push({ name: 'store.flush', label: at, start, end });
    return stats;
  };
  restore.push(() => (flushProto.flush = originalFlush));
  wrap(OlmCrypto.prototype, 'process', 'crypto.process');
  wrap(OlmMachine.prototype, 'receiveSyncChanges', 'engine.receiveSyncChanges');
  wrap(OlmMachine.prototype, 'receiveSyncChangesMsc4186', 'engine.receiveSyncChanges');
  wrap(OlmMachine.prototype, 'decryptRoomEvent', 'engine.decryptRoomEvent');
  wrap(OlmMachine.prototype, 'outgoingRequests', 'engine.outgoingRequests');
  wrap(TrustJudge.prototype, 'judge', 'trust.judge');
  wrap(OlmCrypto.prototype, 'prepareSend', 'reply.encrypt');
  wrap(MatrixClient.prototype, 'sendEvent', 'reply.http');
  wrap(StateDb.prototype, 'claimEvent', 'state.claimEvent');
  wrap(StateDb.prototype, 'finishEvent', 'state.finishEvent');
  const config = stack.botEnv(env);
  // As the bot builds it (app.ts): watching the Deployment, so a scale is one PATCH.
  const inner = createKube({ kubeconfigPath: config['KUBECONFIG'], requestTimeoutMs: 10_000, watch: { namespace: NAMESPACE, name: DEPLOYMENT } });
  const kube: Kube = {
    scale: (target, replicas) => timed('kube.scale', () => inner.scale(target, replicas)),
    status: (target) => inner.status(target),
    ping: (target) => inner.ping(target),
  };
  let out: T | undefined;
  try {
    const logger = createLogger({ level: 'warn' }, createWriteStream(join(dir, 'bot-inprocess.log'), { flags: 'a' }));
    const { app } = await stack.startBot({ env, logger, deps: { kube } });
    try {
      await stack.waitForAppserviceUp(30_000);
      await sleep(300);
      out = await work((l) => (label = l));
    } finally {
      label = 'stop';
      await app.stop();
    }
  } finally {
    await inner.close();
    for (const r of restore.reverse()) r();
  }

  // Per command, the time each stage took inside its PUT → PATCH window (spans clipped to it).
  const stageNames = ['crypto.process', 'engine.receiveSyncChanges', 'engine.decryptRoomEvent', 'trust.judge', 'engine.outgoingRequests', 'store.flush', 'state.claimEvent', 'reply.encrypt', 'reply.http', 'kube.scale'];
  const perStage: Record<string, number[]> = Object.fromEntries([...stageNames, 'other'].map((n) => [n, []]));
  const nested = new Set(['engine.receiveSyncChanges', 'engine.decryptRoomEvent', 'trust.judge', 'engine.outgoingRequests']); // inside crypto.process
  for (const c of out?.timings ?? []) {
    let accounted = 0;
    for (const name of stageNames) {
      let ms = 0;
      for (const sp of spans) if (sp.name === name && sp.start >= c.start && sp.start < c.patchAt) ms += Math.min(sp.end, c.patchAt) - sp.start;
      perStage[name]!.push(ms);
      if (!nested.has(name)) accounted += ms;
    }
    perStage['other']!.push(c.patchAt - c.start - accounted);
  }
  const flushSummary = (list: Array<{ wallMs: number; stats: FlushStats }>): Json => {
    const written = list.filter((f) => f.stats.written);
    const unchanged = list.filter((f) => !f.stats.written);
    return {
      calls: list.length,
      written: written.length,
      // The store commits (fsynced) inside each engine call; a flush only waits for writes in progress.
      writtenMs: summarize(written.map((f) => f.wallMs)),
      writtenRecords: summarize(written.map((f) => f.stats.records)),
      writtenBytes: summarize(written.map((f) => f.stats.bytes)),
      writtenCommits: summarize(written.map((f) => f.stats.commits)),
      unchangedMs: summarize(unchanged.map((f) => f.wallMs)),
    };
  };
  const labels = [...new Set(flushes.map((f) => f.label))];
  return {
    what: 'in-process bot (stack.startBot, ECHO_MODE=false, COMMAND_PREFIX set); CryptoStore.prototype.flush and stage methods wrapped; the pipeline flushes twice per transaction',
    flushByActivity: Object.fromEntries(labels.map((l) => [l, flushSummary(flushes.filter((f) => f.label === l))])),
    commandToPatchMs: summarize(out?.timings.map((x) => x.patchMs) ?? []),
    commandStagesMs: Object.fromEntries(Object.entries(perStage).map(([k, v]) => [k, summarize(v)])),
    nestedInCryptoProcess: [...nested],
    ingest: (out as unknown as { ingest?: unknown } | undefined)?.ingest,
  };
}

// ---------------------------------------------------------------------------------------------

function verdict(name: string, measured: number, op: '<' | '>=', target: number, unit: string): Verdict {
  const pass = op === '<' ? measured < target : measured >= target;
  const factor = op === '<' ? measured / target : target / measured;
  const margin = !Number.isFinite(factor) ? 'n/a'
    : pass ? `${Math.round((1 - factor) * 100)}% headroom`
    : `${op === '<' ? `${round1(measured - target)} ${unit} over` : `${Math.round(target - measured)} ${unit} short`} (${factor.toFixed(1)}× the target)`;
  return { name, target: `${op} ${target} ${unit}`, measured, unit, pass, margin };
}

async function cryptoStoreBytes(cryptoDir: string): Promise<{ storeFiles: number; storeBytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const name of await readdir(cryptoDir).catch(() => [] as string[])) {
    if (!name.startsWith('crypto-store.sqlite')) continue;
    files++;
    bytes += (await stat(join(cryptoDir, name))).size;
  }
  return { storeFiles: files, storeBytes: bytes };
}

function pickProcessMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of ['process_resident_memory_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_external_memory_bytes']) {
    const m = new RegExp(`^openclaw_${name} (\\S+)`, 'm').exec(text);
    if (m) out[name.replace(/_bytes$/, '_mib')] = round1(Number(m[1]) / 2 ** 20);
  }
  for (const m of text.matchAll(/^openclaw_nodejs_heap_space_size_used_bytes\{space="(\w+)"\} (\S+)/gm)) {
    if (Number(m[2]) > 2 ** 20) out[`heap_space_${m[1]}_used_mib`] = round1(Number(m[2]) / 2 ** 20);
  }
  return out;
}

const run = promisify(execFile);

/** Builds the bot as the Dockerfile does (scripts/build.ts: one bundle + the wasm) into `<dir>/build/dist`, and the Kubernetes client alone beside it. */
async function buildDist(dir: string): Promise<void> {
  const dist = join(dir, 'build', 'dist');
  await buildBundle(dist);
  await esbuild({ ...BUILD_OPTIONS, entryPoints: [join(REPO, 'src/kube/lean-kube.ts')], banner: {}, outfile: join(dir, 'build', 'lean-kube.js') });
}

/** RSS of a Node process that only imports the bot's dependencies (and initialises the wasm engine), with and without the Kubernetes client (src/kube). */
async function measureImportFloor(kubeClient: string): Promise<Json> {
  const deps = ['node:sqlite', 'pino', 'prom-client', 'yaml', 'express'];
  const script = (mods: string[]): string => `
    const t = performance.now();
    for (const m of ${JSON.stringify(mods)}) await import(m);
    const c = await import('@matrix-org/matrix-sdk-crypto-wasm'); await c.initAsync();
    const importMs = performance.now() - t;
    await new Promise((r) => setTimeout(r, 300)); globalThis.gc(); await new Promise((r) => setTimeout(r, 200));
    const u = process.memoryUsage(); console.log(JSON.stringify({ rss: u.rss, heapTotal: u.heapTotal, heapUsed: u.heapUsed, importMs }));`;
  const measure = async (mods: string[] | undefined): Promise<Json> => {
    const code = mods ? script(mods) : `globalThis.gc(); const u = process.memoryUsage(); console.log(JSON.stringify({ rss: u.rss, heapTotal: u.heapTotal, heapUsed: u.heapUsed }));`;
    const { stdout } = await run(join(REPO, 'node_modules/.bin/node'), ['--expose-gc', '--input-type=module', '-e', code], { cwd: REPO });
    const u = JSON.parse(stdout) as { rss: number; heapTotal: number; heapUsed: number; importMs?: number };
    return { rssMiB: round1(u.rss / 2 ** 20), heapTotalMiB: round1(u.heapTotal / 2 ** 20), heapUsedMiB: round1(u.heapUsed / 2 ** 20), importMs: Math.round(u.importMs ?? 0) };
  };
  return {
    what: 'RSS after importing only (no bot code running), after a GC',
    bareNode: await measure(undefined),
    depsWithoutKubeClient: await measure(deps),
    depsWithKubeClient: await measure([...deps, kubeClient]),
  };
}

/**
 * What one TLS handshake adds to a Kubernetes call on this machine: @kubernetes/client-node 2.0.1
 * builds a new undici Agent for every request (KubeConfig.applySecurityAuthentication →
 * createDispatcher, uncached), so each GET and PATCH opens a new TLS connection.
 */
async function measureKubeTls(server: string, ca: string): Promise<Json> {
  const path = `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${DEPLOYMENT}/scale`;
  const get = (agent: HttpsAgent | false): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(`${server}${path}`, { agent, ca, headers: { authorization: `Bearer ${SA_TOKEN}` } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`GET scale: ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end();
    });
  const time = async (agent: HttpsAgent | false, n: number): Promise<Summary> => {
    await get(agent);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await get(agent);
      out.push(performance.now() - t);
    }
    return summarize(out);
  };
  const keepAlive = new HttpsAgent({ keepAlive: true, ca });
  try {
    return { what: 'GET deployments/scale at the simulated API with node:https', newConnectionEachMs: await time(false, 30), keptAliveMs: await time(keepAlive, 30) };
  } finally {
    keepAlive.destroy();
  }
}

function gitRev(): string | undefined {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${rev}+dirty` : rev;
  } catch {
    return undefined;
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
