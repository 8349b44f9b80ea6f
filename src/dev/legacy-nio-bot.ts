/**
 * Runs `nio-legacy-bot.py` (matrix-nio on libolm, the old Python bot's crypto) in the cached nio
 * venv, so a test gets a real legacy crypto store. The caller is told when the script has joined a
 * room (to send it the message it waits for); the promise ends when the script does.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ensureNioVenv } from './nio-venv.ts';

const SCRIPT = fileURLToPath(new URL('./nio-legacy-bot.py', import.meta.url));

export interface LegacyNioRun {
  readonly userId: string;
  readonly deviceId: string;
  readonly ed25519: string;
  readonly curve25519: string;
  /** The event it decrypted. */
  readonly decrypted: string;
}

export interface LegacyNioOptions {
  readonly homeserver: string;
  readonly user: string;
  readonly password: string;
  readonly deviceId: string;
  readonly storeDir: string;
  /** The body of the message to wait for. */
  readonly expect: string;
  /** Called (once per room) when the script has joined a room it was invited to. */
  readonly onJoined: (roomId: string) => Promise<void>;
  readonly timeoutSeconds?: number;
}

/** Runs the old bot's crypto until it has decrypted `expect`; rejects with its output otherwise. */
export async function runLegacyNioBot(o: LegacyNioOptions): Promise<LegacyNioRun> {
  const python = await ensureNioVenv();
  const args = [SCRIPT, '--homeserver', o.homeserver, '--user', o.user, '--password', o.password, '--device-id', o.deviceId, '--store', o.storeDir, '--expect', o.expect, '--timeout', String(o.timeoutSeconds ?? 60)];
  const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString('utf8')).slice(-20_000); });
  const steps: Array<Record<string, unknown>> = [];
  const callbacks: Array<Promise<void>> = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    let step: Record<string, unknown>;
    try {
      step = JSON.parse(line) as Record<string, unknown>;
    } catch {
      stderr += `${line}\n`;
      return;
    }
    steps.push(step);
    if (typeof step['joined'] === 'string') callbacks.push(o.onJoined(step['joined']));
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  await Promise.all(callbacks);
  const done = steps.find((s) => s['done'] === true);
  const decrypted = steps.find((s) => typeof s['decrypted'] === 'string')?.['decrypted'];
  if (code !== 0 || !done || typeof decrypted !== 'string') {
    throw new Error(`the nio script failed (exit ${code}): ${JSON.stringify(steps)}\n${stderr}`);
  }
  return { userId: String(done['user_id']), deviceId: String(done['device_id']), ed25519: String(done['ed25519']), curve25519: String(done['curve25519']), decrypted };
}
