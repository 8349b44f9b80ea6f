/** Renders the benchmark's JSON results as the printed report. */
import type { ProfileSummary } from './cpuprofile.ts';
import { fmt, summarize, table, type Summary } from './stats.ts';

export interface Verdict { name: string; target: string; measured: number; unit: string; pass: boolean; margin: string }

type Json = Record<string, unknown>;

export function report(r: Json): string {
  const get = (path: string): unknown => path.split('.').reduce<unknown>((o, k) => (o as Json | undefined)?.[k], r);
  const sm = (path: string): Summary => (get(path) as Summary | undefined) ?? summarize([]);
  const out: string[] = [];
  const m = r['machine'] as Json;
  const load = (x: unknown): string => (x as number[]).map((v) => v.toFixed(2)).join(' ');
  out.push(`openclaw-k8s-toggle-operator benchmark — ${String(r['started'])}, node ${String(r['node'])}, git ${String(r['git'] ?? '?')}, ${String(r['durationS'])} s${r['quick'] ? '  (QUICK: few iterations)' : ''}`);
  out.push(`machine: ${String(m['cpus'])} cores (${String(m['cpuModel'])}); load average before ${load(m['loadavgBefore'])}, after ${load(r['loadavgAfter'])}.`);
  out.push('Synapse, the simulated Kubernetes API, the E2EE client, the benchmark and the bot share these cores, and other jobs may run: numbers are noisy.');
  out.push('');

  const latRows = (rows: Array<[string, string]>): string[][] =>
    rows.filter(([, path]) => get(path) !== undefined).map(([name, path]) => {
      const p = sm(`${path}.toPatchMs`);
      const d = sm(`${path}.doneMs`);
      return [name, String(p.n), fmt(p.p50), fmt(p.p95), fmt(p.p99), fmt(p.max), fmt(sm(`${path}.toKubeGetMs`).p50), fmt(sm(`${path}.kubeGetToPatchMs`).p50), fmt(d.p50), fmt(d.p99), fmt(get(`${path}.botCpuMsPerCommand`) as number)];
    });
  out.push('1. Command latency, end to end: human send() → scale PATCH at the simulated API; real Synapse; sequential, start/stop alternating');
  out.push(table(['', 'n', 'p50 ms', 'p95', 'p99', 'max', '→GET p50', 'GET→PATCH p50', 'reply p50', 'reply p99', 'bot CPU ms/cmd'],
    latRows([['plaintext room (human.ts)', 'endToEnd.plaintext'], ['encrypted DM (matrix-js-sdk)', 'endToEnd.encrypted']])));
  out.push('   →GET: the command\'s first Kubernetes call (GET deployments/scale) arrived; reply: the result reply seen by the human.');
  out.push('');
  out.push('2. Bot-side processing: PUT /_matrix/app/v1/transactions straight to the bot → scale PATCH (homeserver out of the loop)');
  out.push(table(['', 'n', 'p50 ms', 'p95', 'p99', 'max', '→GET p50', 'GET→PATCH p50', '200 p50', '200 p99', 'bot CPU ms/cmd'],
    latRows([
      ['plaintext, echo on (default)', 'botSide.echoOn.plaintext'], ['encrypted, echo on (default)', 'botSide.echoOn.encrypted'],
      ['plaintext, echo off', 'botSide.echoOff.plaintext'], ['encrypted, echo off', 'botSide.echoOff.encrypted'],
    ])));
  out.push(`   echo on: the echo reply goes to Synapse (encrypted in the encrypted room) before the Kubernetes calls. 200: the bot's answer to the PUT, after the result reply. ${String(get('botSide.gapMs'))} ms pause between commands.`);
  out.push('   Bot CPU per command includes handling the bot\'s own replies that Synapse pushes back. Encrypted senders rotate Megolm sessions every 100 messages.');
  out.push('');
  out.push('3. Ingestion throughput: transactions of 100 events straight to the bot, none causing a Kubernetes call');
  const ingestion = (get('ingestion') as Record<string, Json> | undefined) ?? {};
  out.push(table(['', 'events', 'events/s (wall)', 'events per bot CPU-s', 'txn p50 ms', 'txn p99 ms', 'KiB/txn', 'room keys', 'decrypted'],
    Object.entries(ingestion).map(([k, x]) => {
      const per = (x['perTxnMs'] as Summary | undefined) ?? summarize([]);
      return [k, String(x['events']), String(x['eventsPerSec']), String(x['eventsPerCpuSec']), fmt(per.p50), fmt(per.p99), String(x['bodyKiB']), String(x['roomKeys']), String(x['decrypted'])];
    })));
  out.push('   not allowed: sender outside ALLOWED_USERS (decrypted, then ignored); allowed chatter: an allowed user\'s non-command text with COMMAND_PREFIX set (decrypted, trust-judged, ignored).');
  out.push('   room keys: transactions that also carried a new Megolm session (one per 100 events, as with Element\'s rotation).');
  out.push('');

  const mem = get('memory') as Json;
  const store = mem['cryptoStore'] as { storeFiles: number; storeBytes: number };
  out.push('4. Memory of the bot child (VmRSS / VmHWM from /proc every 100 ms)');
  out.push(`   steady RSS ${fmt(mem['steadyRssMiB'] as number)} MiB (median, idle windows after phases 1 and 3); peak VmHWM ${fmt(mem['peakRssMiB'] as number)} MiB; crypto store on disk ${(store.storeBytes / 1024).toFixed(0)} KiB in ${store.storeFiles} file(s) (SQLite with its WAL)`);
  out.push(table(['   phase', 'median MiB', 'max MiB', 'samples'], Object.entries(mem['rssByPhase'] as Record<string, { medianMiB: number; maxMiB: number; samples: number }>).map(([k, v]) => [`   ${k}`, fmt(v.medianMiB), fmt(v.maxMiB), String(v.samples)])));
  out.push(`   /metrics at the end: ${Object.entries(mem['processMetricsAtEnd'] as Json).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`);
  const idleMetrics = mem['idleMetrics'] as Record<string, Record<string, number>> | undefined;
  const afterGc = mem['afterForcedGc'] as Record<string, Record<string, number>> | undefined;
  if (afterGc) out.push(`   after a forced full GC (inspector; only after set-up and at the end), heap used / external / RSS (MiB): ${Object.entries(afterGc).map(([k, v]) => `${k} ${fmt(v['heapUsedMiB'] ?? NaN)} / ${fmt(v['externalMiB'] ?? NaN)} / ${fmt(v['rssMiB'] ?? NaN)}`).join('; ')}`);
  const live = mem['liveHeapSinceSetup'] as { totalMiB: number; byFunction: Array<{ name: string; where: string; mib: number }>; byOwner: Array<{ owner: string; mib: number }> } | undefined;
  if (live) {
    out.push(`   still alive at the end, allocated since set-up (sampling heap profiler): ${fmt(live.totalMiB)} MiB; by owner: ${live.byOwner.slice(0, 8).map((o) => `${o.owner} ${fmt(o.mib)}`).join(', ')}`);
    out.push(`   top allocation sites of live objects: ${live.byFunction.slice(0, 6).map((f) => `${f.name.slice(0, 40)} (${f.where.slice(-50)}) ${fmt(f.mib)}`).join('; ')}`);
  }
  if (idleMetrics) out.push(`   heap used / heap total / RSS (MiB) at the idle points: ${Object.entries(idleMetrics).map(([k, v]) => `${k} ${fmt(v['nodejs_heap_size_used_mib'] ?? NaN)} / ${fmt(v['nodejs_heap_size_total_mib'] ?? NaN)} / ${fmt(v['process_resident_memory_mib'] ?? NaN)}`).join('; ')}`);
  const variants = mem['variants'] as Json[] | undefined;
  if (variants?.length) {
    out.push('   entry point and V8 flags (same short workload: encrypted commands + encrypted ingestion):');
    out.push(table(['   variant', 'ready ms', 'idle after start MiB', 'idle after work MiB', 'peak MiB', 'work CPU ms'],
      variants.map((v) => [`   ${String(v['name'])}`, String(v['readyMs']), fmt(v['idleAfterStartMiB'] as number), fmt(v['idleAfterWorkMiB'] as number), fmt(v['peakMiB'] as number), String(v['workCpuMs'])])));
  }
  const floor = mem['importFloor'] as Record<string, Json> | undefined;
  if (floor) {
    out.push(`   import floor (RSS after only importing, then GC): bare node ${fmt(floor['bareNode']?.['rssMiB'] as number)} MiB; + all dependencies (wasm engine initialised) ${fmt(floor['depsWithoutKubeClient']?.['rssMiB'] as number)} MiB (import ${String(floor['depsWithoutKubeClient']?.['importMs'])} ms); + the Kubernetes client src/kube (compiled) ${fmt(floor['depsWithKubeClient']?.['rssMiB'] as number)} MiB (import ${String(floor['depsWithKubeClient']?.['importMs'])} ms)`);
  }
  const flush = get('inProcess.flushByActivity') as Record<string, Json> | undefined;
  if (flush) {
    out.push('   crypto-store flush (in-process bot; the pipeline flushes twice per transaction; the engine\'s writes are committed and fsynced inside its calls, "written" = some were since the last flush, bytes = their records):');
    out.push(table(['   activity', 'calls', 'written', 'written p50 ms', 'p99', 'bytes p50', 'bytes max', 'unchanged p50 ms'], Object.entries(flush).map(([k, v]) => {
      const w = v['writtenMs'] as Summary;
      const b = v['writtenBytes'] as Summary;
      return [`   ${k}`, String(v['calls']), String(v['written']), fmt(w.p50), fmt(w.p99), fmt(b.p50, 0), fmt(b.max, 0), fmt((v['unchangedMs'] as Summary).p50)];
    })));
  }
  const stages = get('inProcess.commandStagesMs') as Record<string, Summary> | undefined;
  if (stages) {
    const nested = new Set((get('inProcess.nestedInCryptoProcess') as string[] | undefined) ?? []);
    const total = sm('inProcess.commandToPatchMs');
    out.push(`   where an encrypted command's time goes (in-process bot, echo off; PUT → PATCH p50 ${fmt(total.p50)} ms, p99 ${fmt(total.p99)} ms, n=${total.n}):`);
    out.push(table(['   stage (inside the PUT → PATCH window)', 'p50 ms', 'p95', 'p99', 'mean'], Object.entries(stages).filter(([, v]) => v.max > 0).map(([k, v]) => [`   ${nested.has(k) ? '  ↳ ' : ''}${k}`, fmt(v.p50), fmt(v.p95), fmt(v.p99), fmt(v.mean)])));
    out.push('   ↳ = inside crypto.process. kube.scale = one PATCH of deployments/scale (the "from" comes from the watch), on a kept-alive connection. other = event loop, HTTP, parsing, policy.');
  }
  const tls = get('kubeTls') as Json | undefined;
  if (tls) {
    const n = tls['newConnectionEachMs'] as Summary;
    const k = tls['keptAliveMs'] as Summary;
    out.push(`   one Kubernetes GET (node:https, simulated API): new TLS connection each time p50 ${fmt(n.p50)} ms / p99 ${fmt(n.p99)} ms; kept-alive connection p50 ${fmt(k.p50)} ms / p99 ${fmt(k.p99)} ms. (@kubernetes/client-node 2.0.1, used before, opened a new connection for every request.)`);
  }
  out.push('');
  const cold = get('coldStart') as Json;
  out.push('5. Cold start: spawn → GET /ready 200');
  out.push(table(['', 'runs ms', 'median ms'], [
    ['existing store', (cold['existingStoreMs'] as number[]).join(', '), String(cold['existingStoreMedianMs'])],
    ['fresh store (new device, cross-signing bootstrap)', (cold['freshStoreMs'] as number[]).join(', '), String(cold['freshStoreMedianMs'])],
    ['first-ever start (new bot user on Synapse)', String(cold['firstEverStartMs']), '-'],
  ]));
  out.push('');
  out.push('Targets');
  out.push(table(['', 'target', 'measured', 'verdict', 'margin'], (r['targets'] as Verdict[]).map((v) => [v.name, v.target, `${fmt(v.measured)} ${v.unit}`, v.pass ? 'PASS' : 'MISS', v.margin])));
  for (const [name, p] of Object.entries((r['profiles'] as Record<string, ProfileSummary> | undefined) ?? {})) {
    out.push('');
    out.push(`CPU profile — ${name} (bot child, node --cpu-prof${p.windowed ? ', samples inside the measured work only' : ''}): busy ${p.busyMs} ms of ${p.totalMs} ms; ${p.file}`);
    out.push(`   self time by area: ${p.areas.slice(0, 9).map((a) => `${a.area} ${a.pct}%`).join(', ')}`);
    out.push(table(['   top self time', 'ms', '%', 'area'], p.top.slice(0, 12).map((e) => [`   ${e.name.slice(0, 70)}`, fmt(e.selfMs), fmt(e.pct), e.area])));
    out.push(table(['   crypto engine, inclusive time (Rust frames)', 'ms', '% of busy'], p.cryptoInclusive.slice(0, 12).map((e) => [`   ${e.name.slice(0, 110)}`, fmt(e.ms), fmt(e.pct)])));
  }
  return out.join('\n');
}
