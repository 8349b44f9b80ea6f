/** Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time by function and by area. */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileEntry {
  name: string;
  where: string;
  area: string;
  selfMs: number;
  /** Share of the non-idle time. */
  pct: number;
}

export interface ProfileSummary {
  file: string;
  /** Only samples inside the measured work, when a window was given. */
  windowed: boolean;
  totalMs: number;
  idleMs: number;
  busyMs: number;
  top: ProfileEntry[];
  areas: Array<{ area: string; selfMs: number; pct: number }>;
  /** Inclusive (self + callees) time of the crypto engine's own Rust functions (wasm frames keep their names). */
  cryptoInclusive: Array<{ name: string; ms: number; pct: number }>;
}

/** Rust symbol → readable: drop crate hashes, closures and generic noise. */
function rustName(name: string): string {
  return name
    .replace(/\[[0-9a-f]{16}\]/g, '')
    .replace(/::\{closure#\d+\}/g, '')
    .replace(/<core::iter::adapters[^>]*>+/g, '')
    .replace(/^<(?:&(?:mut )?)?([\w:]+)(?:<[^>]*>)? as [\w:]+>::/, '$1::') // <Type as Trait>::method → Type::method
    .slice(0, 130);
}
const CRYPTO_FRAME = /matrix_sdk_crypto|vodozemac|matrix_sdk_indexeddb/;
const WRAPPER_FRAME = /future_to_promise|EraseCryptoStoreError|^byn\$|CryptoStoreWrapper/;

/** Which part of the stack a frame belongs to. */
function areaOf(url: string, name: string): string {
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'gc';
  if (name === '(program)' || name === '(root)') return 'v8/native (program)';
  if (url.startsWith('wasm://')) return 'crypto wasm (matrix-sdk-crypto)';
  if (url.includes('matrix-sdk-crypto-wasm')) return 'crypto wasm JS glue';
  if (url.includes('fake-indexeddb')) return 'fake-indexeddb';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.includes('/src/')) return `src/${url.split('/src/')[1]?.split('/')[0] ?? ''}`.replace(/\.ts$/, '');
  if (url.startsWith('node:')) return 'node core';
  if (url === '') return name.startsWith('(') ? name : 'native / builtins';
  return 'other';
}

/**
 * `window` (optional) limits the summary to samples taken between two `process.hrtime.bigint()`
 * readings (ns): V8's profile timestamps and hrtime are both CLOCK_MONOTONIC (µs and ns), so the
 * benchmark can cut away start-up (module compilation) and shutdown.
 */
export async function summarizeCpuProfile(file: string, window?: { startNs: bigint; endNs: bigint }, topN = 20): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const from = window ? Number(window.startNs / 1000n) : -Infinity;
  const to = window ? Number(window.endNs / 1000n) : Infinity;
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  let ts = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    ts += profile.timeDeltas[i] ?? 0;
    if (ts < from || ts > to) continue;
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = byId.get(at)?.callFrame.functionName ?? '';
      if (!CRYPTO_FRAME.test(name) || WRAPPER_FRAME.test(name)) continue;
      const short = rustName(name);
      if (seen.has(short)) continue;
      seen.add(short);
      inclusive.set(short, (inclusive.get(short) ?? 0) + dt);
    }
  }
  const fns = new Map<string, ProfileEntry>();
  const areas = new Map<string, number>();
  let idle = 0;
  let total = 0;
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    const area = areaOf(url, name);
    const ms = us / 1000;
    total += ms;
    if (area === 'idle') {
      idle += ms;
      continue;
    }
    areas.set(area, (areas.get(area) ?? 0) + ms);
    const short = url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/(src|test)\//, '$1/');
    const key = `${name}|${short}:${lineNumber + 1}`;
    const entry = fns.get(key) ?? { name, where: `${short}:${lineNumber + 1}`, area, selfMs: 0, pct: 0 };
    entry.selfMs += ms;
    fns.set(key, entry);
  }
  const busy = total - idle;
  const pct = (ms: number): number => Math.round((1000 * ms) / Math.max(busy, 1e-9)) / 10;
  const top = [...fns.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, topN).map((e) => ({ ...e, selfMs: Math.round(e.selfMs * 10) / 10, pct: pct(e.selfMs) }));
  return {
    file,
    windowed: window !== undefined,
    totalMs: Math.round(total),
    idleMs: Math.round(idle),
    busyMs: Math.round(busy),
    top,
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([area, ms]) => ({ area, selfMs: Math.round(ms * 10) / 10, pct: pct(ms) })),
    cryptoInclusive: [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, pct: pct(us / 1000) })),
  };
}
