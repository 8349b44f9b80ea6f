/**
 * Runs `src/main.ts` as a child process for tests of start-up and exit behaviour, pointed at a
 * homeserver that never answers: the bot then holds its storage and listener while it waits
 * ("homeserver not reachable yet"), which is what the lock and storage tests need.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildRegistration, registrationYaml } from '../../src/appservice/registration.ts';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const NODE = join(ROOT, 'node_modules', '.bin', 'node');
export const MAIN = join(ROOT, 'src', 'main.ts');

/** The environment of a bot in appservice mode whose homeserver (the discard port) never answers. */
export function unreachableBotEnv(dir: string, storagePath: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const registration = join(dir, 'registration.yaml');
  writeFileSync(registration, registrationYaml(buildRegistration({ id: 'openclaw-toggle', url: 'http://127.0.0.1:9', senderLocalpart: 'openclaw', domain: 'example.org' })), { mode: 0o600 });
  // A kubeconfig that parses (the cluster is never reached before the homeserver answers).
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n');
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: dir,
    MATRIX_HOMESERVER: 'http://127.0.0.1:9',
    AS_REGISTRATION_FILE: registration,
    ALLOWED_USERS: '@alice:example.org',
    CRYPTO_STORE_PATH: storagePath,
    HTTP_BIND_ADDRESS: '127.0.0.1',
    HTTP_PORT: '0',
    KUBECONFIG: kubeconfig,
    ...extra,
  };
}

export interface BotProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout contains `text`; rejects if the process ends first or after `timeoutMs`. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node src/main.ts [args]`, optionally through a wrapper command (e.g. `unshare …`). */
export function startBotProcess(env: NodeJS.ProcessEnv, options: { args?: readonly string[]; wrapper?: readonly string[]; uid?: number; gid?: number } = {}): BotProcess {
  const [command, ...prefix] = [...(options.wrapper ?? []), NODE];
  const ids = options.uid === undefined ? {} : { uid: options.uid, gid: options.gid ?? options.uid };
  const child = spawn(command as string, [...prefix, MAIN, ...(options.args ?? [])], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], ...ids });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) => child.on('close', (code, signal) => resolvePromise({ code, signal })));
  let ended = false;
  void exited.then(() => (ended = true));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async waitFor(text, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!out.includes(text)) {
        if (ended) throw new Error(`the bot ended before saying "${text}": ${err}${out}`);
        if (Date.now() > deadline) throw new Error(`the bot did not say "${text}" within ${timeoutMs} ms: ${err}${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** The lines a process wrote to stderr, without empty ones. */
export function lines(text: string): string[] {
  return text.split('\n').filter((line) => line.trim().length > 0);
}

/** Whether this machine lets the tests run `wrapper` (e.g. `unshare --pid …`: needs root or user namespaces). */
export function canUnshare(wrapper: readonly string[]): boolean {
  const [command, ...args] = wrapper;
  const probe = spawnSync(command as string, [...args, 'true'], { stdio: 'ignore', timeout: 5_000 });
  return probe.status === 0;
}
