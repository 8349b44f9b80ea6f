/**
 * The bot as a child process (`node src/main.ts`), so its memory and CPU are its own, plus a
 * sampler that reads its /proc entries every 100 ms.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';

export interface BotChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Spawn → `GET /ready` answered 200 (ms). */
  readonly readyMs: number;
  /** stderr so far (start-up failures land there). */
  stderr(): string;
  /** SIGTERM (graceful: the bot flushes and exits), SIGKILL after `graceMs`. Resolves on exit. */
  stop(graceMs?: number): Promise<void>;
  kill(): Promise<void>;
}

export interface SpawnOptions {
  readonly repoRoot: string;
  readonly env: Record<string, string | undefined>;
  readonly port: number;
  readonly logPath: string;
  /** Extra node flags, e.g. `--cpu-prof`. */
  readonly nodeArgs?: readonly string[];
  /** Entry point (default `src/main.ts`, run through Node's type stripping). */
  readonly script?: string;
  /** Working directory (default the repository: the bundle runs from a directory without node_modules). */
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function spawnBot(o: SpawnOptions): Promise<BotChild> {
  const log = await open(o.logPath, 'a');
  const started = performance.now();
  const proc = spawn(join(o.repoRoot, 'node_modules/.bin/node'), [...(o.nodeArgs ?? []), o.script ?? 'src/main.ts'], {
    cwd: o.cwd ?? o.repoRoot,
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...o.env } as NodeJS.ProcessEnv,
    stdio: ['ignore', log.fd, 'pipe'],
  });
  await log.close();
  let stderr = '';
  proc.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-20_000)));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (graceMs = 15_000): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const kill = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGKILL');
    await exited;
  };
  const deadline = started + (o.timeoutMs ?? 60_000);
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`bot exited with ${proc.exitCode}: ${stderr}`);
    const ok = await fetch(`http://127.0.0.1:${o.port}/ready`, { signal: AbortSignal.timeout(2_000) }).then(
      async (r) => {
        await r.arrayBuffer();
        return r.status === 200;
      },
      () => false,
    );
    if (ok) break;
    if (performance.now() > deadline) {
      await kill();
      throw new Error(`bot not ready within ${o.timeoutMs ?? 60_000} ms: ${stderr}`);
    }
    await sleep(20);
  }
  const readyMs = performance.now() - started;
  if (proc.pid === undefined) throw new Error('spawned bot has no pid');
  return { proc, pid: proc.pid, readyMs, stderr: () => stderr, stop, kill };
}

// ---------------------------------------------------------------------------------------------

export interface ProcSample {
  /** ms since the sampler started. */
  readonly t: number;
  readonly phase: string;
  readonly rssKiB: number;
  readonly hwmKiB: number;
}

/** user + system CPU time of a process (ms), from /proc/<pid>/stat. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(rest[11]) + Number(rest[12]);
  return (ticks * 1000) / CLK_TCK;
}

/** Clock ticks per second; 100 on every Linux this runs on (USER_HZ). */
const CLK_TCK = 100;

export function procStatus(pid: number): { rssKiB: number; hwmKiB: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Samples VmRSS and VmHWM of one pid every `intervalMs`, tagging each sample with the current phase. */
export class ProcSampler {
  readonly samples: ProcSample[] = [];
  phase = 'start';
  readonly #pid: number;
  readonly #t0 = performance.now();
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number, intervalMs = 100) {
    this.#pid = pid;
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
    this.sample();
  }

  sample(): void {
    const s = procStatus(this.#pid);
    if (s && Number.isFinite(s.rssKiB)) this.samples.push({ t: performance.now() - this.#t0, phase: this.phase, ...s });
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
