/**
 * Small process and file helpers of the development harnesses: run a command to completion with
 * bounded output, keep the last lines of a stream, read a file's tail.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export interface RunResult { code: number | null; signal: NodeJS.Signals | null; output: string }

/** Runs a command to completion, collecting stdout+stderr (bounded) without printing it. */
export function run(cmd: string, args: readonly string[], opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const ring = new TextRing(400_000);
    child.stdout.on('data', (d: Buffer) => ring.push(d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => ring.push(d.toString('utf8')));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    }
    child.on('error', (err) => { if (timer) clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, signal, output: ring.text() });
    });
  });
}

/** Keeps the last `max` characters of a stream of text. */
export class TextRing {
  private chunks: string[] = [];
  private size = 0;
  private readonly max: number;
  constructor(max: number) { this.max = max; }
  push(s: string): void {
    this.chunks.push(s);
    this.size += s.length;
    while (this.size > this.max && this.chunks.length > 1) {
      this.size -= this.chunks.shift()!.length;
    }
  }
  text(): string {
    const all = this.chunks.join('');
    return all.length > this.max ? all.slice(all.length - this.max) : all;
  }
}

export function lastLines(text: string, lines: number): string {
  const parts = text.split('\n');
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts.slice(Math.max(0, parts.length - lines)).join('\n');
}

/** Reads up to the last `maxBytes` of a file, '' if it does not exist. */
export function readFileTail(path: string, maxBytes = 256 * 1024): string {
  let fd: number;
  try { fd = openSync(path, 'r'); } catch { return ''; }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    let text = buf.toString('utf8');
    if (len < size) text = text.slice(text.indexOf('\n') + 1); // drop a partial first line
    return text;
  } finally {
    closeSync(fd);
  }
}
