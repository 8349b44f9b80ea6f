/**
 * The crypto store's scaling curve (issue "A crypto store that ages well"): how persisting one new
 * Megolm session, the store's size, start-up and memory grow with the sessions it holds. Each step
 * runs in a child process of its own (lib/store-curve-child.ts) that opens the store exactly as
 * the bot does, passphrase on. Run by `npm run bench` before the end-to-end benchmark, or alone:
 *
 *   node test/bench/store-curve.ts [--quick] [--sizes 0,100,1000] [--runs 3] [--label after] [--out file]
 *
 * "before" is the figures of the snapshot store this one replaced, measured with this script on
 * the same machine and kept in store-curve-before.json; they are printed beside the new ones.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { fmt, median, table } from './lib/stats.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./lib/store-curve-child.ts', import.meta.url));
const BEFORE = fileURLToPath(new URL('./store-curve-before.json', import.meta.url));
const run = promisify(execFile);

export interface CurvePoint {
  sessions: number;
  /** One flush right after one new session: p50 over all repetitions (ms). */
  flushP50Ms: number;
  /** Importing the session and flushing, p50 (ms): where per-change stores pay. */
  persistP50Ms: number;
  /** Bytes the process wrote for one new session and its flush, p50. */
  bytesP50: number;
  storeBytes: number;
  /** Store open + engine initialise, median of the runs (ms). */
  startMs: number;
  /** RSS after start-up and 10 new sessions, median (MiB). */
  rssMiB: number;
}

async function child(args: string[], reps: number): Promise<any> {
  const { stdout } = await run(join(REPO, 'node_modules/.bin/node'), [CHILD, ...args], {
    cwd: REPO,
    env: { ...process.env, CURVE_REPS: String(reps) },
    maxBuffer: 1 << 20,
    timeout: 30 * 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

export async function measureCurve(sizes: readonly number[], runs: number, reps: number, say: (line: string) => void): Promise<CurvePoint[]> {
  const root = await mkdtemp(join(tmpdir(), 'openclaw-store-curve-'));
  const points: CurvePoint[] = [];
  try {
    for (const n of sizes) {
      const dir = join(root, `n${n}`);
      await mkdir(dir, { recursive: true });
      const t0 = performance.now();
      const built = (await child(['build', dir, String(n)], reps)) as { flushMs: number[]; totalMs: number[]; bytes: number[] };
      const storeBytes = await dirBytes(join(dir, 'crypto'));
      const starts: Array<{ startMs: number; rssKiB: number }> = [];
      for (let r = 0; r < runs; r++) starts.push(await child(['start', dir], reps));
      const point: CurvePoint = {
        sessions: n,
        flushP50Ms: median(built.flushMs),
        persistP50Ms: median(built.totalMs),
        bytesP50: median(built.bytes),
        storeBytes,
        startMs: median(starts.map((s) => s.startMs)),
        rssMiB: median(starts.map((s) => s.rssKiB)) / 1024,
      };
      points.push(point);
      say(`  ${n} sessions: flush p50 ${fmt(point.flushP50Ms, 2)} ms, ${fmt(point.bytesP50 / 1024)} KiB written, store ${fmt(storeBytes / 2 ** 20, 2)} MiB, start-up ${fmt(point.startMs, 0)} ms, RSS ${fmt(point.rssMiB)} MiB (${fmt((performance.now() - t0) / 1000, 0)} s)`);
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return points;
}

export function curveTable(points: readonly CurvePoint[], before?: readonly CurvePoint[]): string {
  const rows = points.map((p) => {
    const b = before?.find((x) => x.sessions === p.sessions);
    const was = (v: number | undefined, digits = 1): string => (b && v !== undefined ? ` (${fmt(v, digits)})` : '');
    return [
      p.sessions.toLocaleString('en'),
      `${fmt(p.flushP50Ms, 2)}${was(b?.flushP50Ms, 1)}`,
      `${fmt(p.persistP50Ms, 2)}${was(b?.persistP50Ms, 1)}`,
      `${fmt(p.bytesP50 / 1024)}${was(b && b.bytesP50 / 1024)}`,
      `${fmt(p.storeBytes / 2 ** 20, 2)}${was(b && b.storeBytes / 2 ** 20, 2)}`,
      `${fmt(p.startMs, 0)}${was(b?.startMs, 0)}`,
      `${fmt(p.rssMiB)}${was(b?.rssMiB)}`,
    ];
  });
  const header = ['sessions', 'flush p50 ms', 'session+flush p50 ms', 'written KiB', 'store MiB', 'start-up ms', 'RSS MiB'];
  return table(header, rows) + (before ? '\n(in brackets: the snapshot store it replaced, from store-curve-before.json)' : '');
}

/** The goals, checked against the largest size measured and the empty store. */
export function curveVerdicts(points: readonly CurvePoint[]): string[] {
  const empty = points.find((p) => p.sessions === 0);
  const out: string[] = [];
  const check = (ok: boolean, text: string): void => void out.push(`${ok ? 'met ' : 'MISSED'}  ${text}`);
  for (const p of points) {
    check(p.flushP50Ms <= 5 && p.bytesP50 <= 64 * 1024, `${p.sessions} sessions: flush p50 ${fmt(p.flushP50Ms, 2)} ms ≤ 5 ms, ${fmt(p.bytesP50 / 1024)} KiB ≤ 64 KiB written for one new session`);
  }
  const last = points.at(-1);
  if (empty && last && last !== empty) check(last.rssMiB - empty.rssMiB <= 10, `RSS at ${last.sessions} sessions ${fmt(last.rssMiB)} MiB is ≤ 10 MiB above the empty store's ${fmt(empty.rssMiB)} MiB`);
  if (last) check(last.startMs <= 1000, `start-up at ${last.sessions} sessions ${fmt(last.startMs, 0)} ms ≤ 1 s`);
  return out;
}

export function readBefore(): CurvePoint[] | undefined {
  return existsSync(BEFORE) ? (JSON.parse(readFileSync(BEFORE, 'utf8')) as { points: CurvePoint[] }).points : undefined;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean' }, sizes: { type: 'string' }, runs: { type: 'string' }, reps: { type: 'string' }, label: { type: 'string' }, out: { type: 'string' } },
  });
  const sizes = values.sizes ? values.sizes.split(',').map(Number) : values.quick ? [0, 100, 1000] : [0, 100, 1000, 10000, 30000];
  const runs = Number(values.runs ?? (values.quick ? 1 : 3));
  const reps = Number(values.reps ?? (values.quick ? 5 : 10));
  console.log(`crypto store curve: ${sizes.join(' / ')} sessions, passphrase on, ${runs} start-up runs and ${reps} new sessions per size (load ${loadavg()[0]?.toFixed(2)})`);
  const points = await measureCurve(sizes, runs, reps, (line) => console.log(line));
  console.log('\n' + curveTable(points, readBefore()) + '\n');
  for (const line of curveVerdicts(points)) console.log(line);
  const out = values.out ?? join(REPO, 'test/bench/results', `store-curve-${values.label ?? 'latest'}.json`);
  await mkdir(join(out, '..'), { recursive: true });
  await writeFile(out, JSON.stringify({ measured: new Date().toISOString(), load: loadavg(), sizes, runs, reps, points }, null, 2) + '\n');
  console.log(`results: ${out}`);
}
