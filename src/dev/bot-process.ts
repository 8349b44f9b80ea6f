/**
 * The bot as a child process (`node src/main.ts`), for tests that must kill it for real (SIGKILL,
 * or a fault point that makes it die by itself) and start it again on the same volume.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import { join } from 'node:path';

export interface BotProcess {
  readonly proc: ChildProcess;
  readonly logPath: string;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (the bot finishes what it is doing), and wait for the exit; SIGKILL after 15 s. */
  stop(): Promise<void>;
}

export interface StartBotProcessOptions {
  /** The bot's environment (no PATH/HOME needed: they are added). */
  readonly env: Record<string, string | undefined>;
  /** Directory for the child's log file. */
  readonly logDir: string;
  readonly logName: string;
  /** `http://127.0.0.1:<port>`; `/ready` is polled there. */
  readonly readyUrl: string;
  readonly timeoutMs?: number;
}

/** Starts the bot and resolves once `/ready` answers 200; rejects if it exits first. */
export async function startBotProcess(o: StartBotProcessOptions): Promise<BotProcess> {
  const logPath = join(o.logDir, o.logName);
  const log = await open(logPath, 'a');
  const proc = spawn(join(process.cwd(), 'node_modules/.bin/node'), ['src/main.ts'], {
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...o.env } as NodeJS.ProcessEnv,
    stdio: ['ignore', log.fd, 'pipe'],
  });
  await log.close();
  let stderr = '';
  proc.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const bot: BotProcess = {
    proc,
    logPath,
    exited,
    stderr: () => stderr,
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`bot exited (${proc.exitCode ?? proc.signalCode}) before it was ready: ${stderr}`);
    const ok = await fetch(`${o.readyUrl}/ready`).then((r) => r.status === 200, () => false);
    if (ok) return bot;
    if (Date.now() > deadline) {
      await bot.kill();
      throw new Error(`bot not ready in ${o.timeoutMs ?? 30_000} ms: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
