/**
 * A real Synapse on loopback, for integration tests, the local demo and benchmarks.
 *
 * - `ensureSynapseVenv()` creates (once, cached, under a lock) a Python venv with the pinned
 *   `matrix-synapse` from PyPI.
 * - `startSynapse()` writes `homeserver.yaml` + `log.config` into a data dir and runs
 *   `python -m synapse.app.homeserver` in its own process group, SQLite, no federation,
 *   rate limits out of the way, and the experimental appservice-encryption features on.
 *
 * Synapse's own output never reaches our stdout/stderr: its log goes to `<dir>/homeserver.log`,
 * its stdio to `<dir>/synapse.stdio.log` (and a small in-memory ring). Tails shown in errors or
 * by `logTail()` have known secrets blanked out.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { lastLines, readFileTail, TextRing } from './run-command.ts';
import { isPlainObject, synapseConfig, synapseLogConfig, type Json } from './synapse-config.ts';
import { ensureSynapseVenv, noGitAbove, stderrLogger, SYNAPSE_VERSION, type HarnessLogger } from './synapse-venv.ts';

export { ensureSynapseVenv, defaultSynapseVenvDir, SYNAPSE_PIP_REQUIREMENT, SYNAPSE_PIP_REQUIREMENTS, SYNAPSE_VERSION, type HarnessLogger } from './synapse-venv.ts';
export { synapseConfig, synapseLogConfig } from './synapse-config.ts';

// ---------------------------------------------------------------------------------------------
// Orphan protection: children die with us.

const liveGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pid: number): void {
  liveGroups.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const p of liveGroups) {
        try { process.kill(-p, 'SIGKILL'); } catch { /* gone */ }
      }
    });
  }
}

/**
 * Started with `python -c LAUNCHER <our pid> -c homeserver.yaml`: asks Linux to SIGKILL Synapse
 * when we die (even by SIGKILL, where no exit hook runs), then runs exactly what
 * `python -m synapse.app.homeserver -c homeserver.yaml` runs. (Linux ties PDEATHSIG to the
 * spawning *thread*: start Synapse from the main thread, not from a worker that ends early.)
 */
const LAUNCHER = [
  'import os, sys, signal, runpy',
  'try:',
  '    import ctypes',
  '    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG',
  'except Exception:',
  '    pass',
  'if os.getppid() != int(sys.argv[1]):',
  '    os._exit(70)  # our parent is already gone',
  "sys.argv = ['synapse.app.homeserver'] + sys.argv[2:]",
  "runpy.run_module('synapse.app.homeserver', run_name='__main__', alter_sys=True)",
].join('\n');

// ---------------------------------------------------------------------------------------------
// Synapse

export interface StartSynapseOptions {
  /** Data directory (created if missing); a fresh one gives a fresh server. */
  dir: string;
  /** Default 'localhost'. */
  serverName?: string;
  /** 0 or absent: pick a free loopback port. */
  port?: number;
  /** Paths of appservice registration YAML files. */
  appserviceRegistrations?: string[];
  /** Deep-merged over the generated homeserver.yaml (arrays replace). */
  extraConfig?: Record<string, unknown>;
  logger?: HarnessLogger;
  /** A venv python to use; default: `ensureSynapseVenv()`. */
  python?: string;
  /** Readiness timeout, default 60 s. */
  startTimeoutMs?: number;
}

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

export interface Synapse {
  readonly baseUrl: string;
  readonly serverName: string;
  readonly dir: string;
  readonly port: number;
  readonly registrationSharedSecret: string;
  /** Pid (and process group id) of the current Synapse process. */
  readonly pid: number;
  /** True while the current process has not exited. */
  readonly running: boolean;
  /** Creates a user through the shared-secret admin API. */
  registerUser(localpart: string, password: string, admin?: boolean): Promise<RegisteredUser>;
  /** Password login (a new device each time unless `deviceId` is given). */
  login(localpart: string, password: string, deviceId?: string): Promise<RegisteredUser>;
  /** SIGTERM to the process group, SIGKILL after 10 s; resolves once it has exited. */
  stop(): Promise<void>;
  /** SIGKILL at once (crash tests); resolves once it has exited. */
  kill(): Promise<void>;
  /** Stop (if running) and start again with the same dir, config and port. */
  restart(): Promise<void>;
  /** Last lines of homeserver.log and Synapse's stdio, secrets blanked. */
  logTail(lines?: number): string;
}

/** A free TCP port on 127.0.0.1 (bind :0, read, close). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolvePromise(port) : reject(new Error('no port'))));
    });
  });
}

/** Reads as_token / hs_token out of registration files so tails can blank them. */
async function registrationSecrets(files: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    try {
      const doc: unknown = parseYaml(await readFile(f, 'utf8'));
      if (isPlainObject(doc)) {
        for (const k of ['as_token', 'hs_token']) {
          const v = doc[k];
          if (typeof v === 'string' && v.length >= 8) out.push(v);
        }
      }
    } catch { /* Synapse will complain about it itself */ }
  }
  return out;
}

function scrub(text: string, secrets: readonly string[]): string {
  let t = text;
  for (const s of secrets) if (s) t = t.split(s).join('[redacted]');
  return t
    .replace(/(access_token=)[^&\s"']+/g, '$1[redacted]')
    .replace(/\bsy[tr]_[A-Za-z0-9_]+/g, '[redacted-token]');
}

class SynapseProcess implements Synapse {
  readonly baseUrl: string;
  readonly serverName: string;
  readonly dir: string;
  readonly port: number;
  readonly registrationSharedSecret: string;
  private readonly python: string;
  private readonly logger: HarnessLogger;
  private readonly startTimeoutMs: number;
  private readonly secrets: string[];
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private isRunning = false;
  private readonly stdio = new TextRing(64 * 1024);
  private stdioFile: WriteStream | undefined;

  constructor(p: {
    dir: string; serverName: string; port: number; secret: string; python: string;
    logger: HarnessLogger; startTimeoutMs: number; secrets: string[];
  }) {
    this.dir = p.dir;
    this.serverName = p.serverName;
    this.port = p.port;
    this.baseUrl = `http://127.0.0.1:${p.port}`;
    this.registrationSharedSecret = p.secret;
    this.python = p.python;
    this.logger = p.logger;
    this.startTimeoutMs = p.startTimeoutMs;
    this.secrets = [p.secret, ...p.secrets];
  }

  get pid(): number { return this.child?.pid ?? -1; }
  get running(): boolean { return this.isRunning; }

  async start(): Promise<void> {
    if (this.isRunning) throw new Error('Synapse is already running');
    const started = Date.now();
    this.stdioFile = createWriteStream(join(this.dir, 'synapse.stdio.log'), { flags: 'a', mode: 0o600 });
    const child = spawn(this.python, ['-c', LAUNCHER, String(process.pid), '-c', join(this.dir, 'homeserver.yaml')], {
      cwd: this.dir,
      detached: true, // own process group: stop() signals Synapse and anything it spawned
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...noGitAbove(this.python), PYTHONUNBUFFERED: '1' },
    });
    let spawnError: Error | undefined;
    child.on('error', (err) => { spawnError = err; });
    const file = this.stdioFile;
    const onData = (d: Buffer): void => { this.stdio.push(d.toString('utf8')); file.write(d); };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    // A test that forgets stop() must still be able to exit (the exit hook then kills Synapse).
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();

    this.child = child;
    this.isRunning = child.pid !== undefined;
    const pid = child.pid;
    if (pid !== undefined) trackGroup(pid);
    this.exited = new Promise<void>((res) => {
      child.once('exit', () => {
        this.isRunning = false;
        if (pid !== undefined) liveGroups.delete(pid);
        res();
      });
      child.once('error', () => { this.isRunning = false; res(); });
    });

    const deadline = started + this.startTimeoutMs;
    for (;;) {
      if (spawnError) throw new Error(`could not start Synapse (${this.python}): ${spawnError.message}`);
      if (!this.isRunning) {
        await sleep(100); // let the stdio pipes drain
        throw new Error(`Synapse exited during start-up (exit ${child.exitCode ?? child.signalCode}).\n${this.logTail(60)}`);
      }
      try {
        const res = await fetch(`${this.baseUrl}/_matrix/client/versions`, { signal: AbortSignal.timeout(2_000) });
        if (res.ok) {
          await res.arrayBuffer();
          break;
        }
        await res.arrayBuffer();
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) {
        const tail = this.logTail(60);
        await this.stop();
        throw new Error(`Synapse did not answer /_matrix/client/versions within ${this.startTimeoutMs / 1000} s.\n${tail}`);
      }
      await sleep(100);
    }
    this.logger.info(`Synapse ${SYNAPSE_VERSION} ready at ${this.baseUrl} (pid ${pid}, ${Date.now() - started} ms)`);
  }

  private signalGroup(sig: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try { process.kill(-pid, sig); } catch { /* already gone */ }
  }

  private async waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((res) => { timer = setTimeout(() => res(false), ms); });
    const done = await Promise.race([this.exited.then(() => true), timeout]);
    if (timer) clearTimeout(timer);
    return done;
  }

  private closeStdio(): void {
    this.stdioFile?.end();
    this.stdioFile = undefined;
  }

  async stop(): Promise<void> {
    if (this.isRunning) {
      this.signalGroup('SIGTERM');
      if (!(await this.waitExit(10_000))) {
        this.logger.warn(`Synapse (pid ${this.pid}) ignored SIGTERM for 10 s: SIGKILL`);
        this.signalGroup('SIGKILL');
        await this.waitExit(10_000);
      }
    }
    // Whatever else is left in the group (nothing, normally).
    this.signalGroup('SIGKILL');
    this.closeStdio();
  }

  async kill(): Promise<void> {
    this.signalGroup('SIGKILL');
    await this.waitExit(10_000);
    this.closeStdio();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  logTail(lines = 40): string {
    const log = lastLines(readFileTail(join(this.dir, 'homeserver.log')), lines);
    const stdio = lastLines(this.stdio.text(), lines);
    return scrub(
      `--- ${join(this.dir, 'homeserver.log')} (last ${lines} lines) ---\n${log}\n--- Synapse stdout/stderr (last ${lines} lines) ---\n${stdio}`,
      this.secrets,
    );
  }

  private async call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: Json }> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let json: Json = {};
    try { const v: unknown = JSON.parse(text); if (isPlainObject(v)) json = v; } catch { /* not JSON */ }
    return { status: res.status, json };
  }

  async registerUser(localpart: string, password: string, admin = false): Promise<RegisteredUser> {
    const nonceRes = await this.call('GET', '/_synapse/admin/v1/register');
    const nonce = nonceRes.json['nonce'];
    if (nonceRes.status !== 200 || typeof nonce !== 'string') {
      throw new Error(`GET /_synapse/admin/v1/register: HTTP ${nonceRes.status} ${describeError(nonceRes.json)}`);
    }
    const mac = createHmac('sha1', this.registrationSharedSecret)
      .update(`${nonce}\0${localpart}\0${password}\0${admin ? 'admin' : 'notadmin'}`)
      .digest('hex');
    const res = await this.call('POST', '/_synapse/admin/v1/register', { nonce, username: localpart, password, admin, mac });
    if (res.status !== 200) {
      throw new Error(`registering @${localpart}:${this.serverName}: HTTP ${res.status} ${describeError(res.json)}`);
    }
    return toUser(res.json, `registering @${localpart}`);
  }

  async login(localpart: string, password: string, deviceId?: string): Promise<RegisteredUser> {
    const res = await this.call('POST', '/_matrix/client/v3/login', {
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user: localpart },
      password,
      ...(deviceId !== undefined ? { device_id: deviceId } : {}),
    });
    if (res.status !== 200) {
      throw new Error(`login of @${localpart}:${this.serverName}: HTTP ${res.status} ${describeError(res.json)}`);
    }
    return toUser(res.json, `login of @${localpart}`);
  }
}

function describeError(json: Json): string {
  const code = typeof json['errcode'] === 'string' ? json['errcode'] : '';
  const msg = typeof json['error'] === 'string' ? json['error'] : '';
  return `${code} ${msg}`.trim();
}

function toUser(json: Json, what: string): RegisteredUser {
  const userId = json['user_id'];
  const accessToken = json['access_token'];
  const deviceId = json['device_id'];
  if (typeof userId !== 'string' || typeof accessToken !== 'string' || typeof deviceId !== 'string') {
    throw new Error(`${what}: unexpected response (fields: ${Object.keys(json).join(', ')})`);
  }
  return { userId, accessToken, deviceId };
}

/**
 * Writes the config into `options.dir` and starts Synapse; resolves once
 * `/_matrix/client/versions` answers. Call `stop()` when done.
 */
export async function startSynapse(options: StartSynapseOptions): Promise<Synapse> {
  const logger = options.logger ?? stderrLogger;
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const python = options.python ?? (await ensureSynapseVenv({ logger }));
  const serverName = options.serverName ?? 'localhost';
  const port = options.port !== undefined && options.port !== 0 ? options.port : await freeLoopbackPort();
  const secret = randomBytes(32).toString('hex');
  const registrations = (options.appserviceRegistrations ?? []).map((f) => resolve(f));

  const config = synapseConfig({
    dir, serverName, port, registrationSharedSecret: secret,
    appserviceRegistrations: registrations,
    ...(options.extraConfig !== undefined ? { extraConfig: options.extraConfig } : {}),
  });
  await writeFile(join(dir, 'homeserver.yaml'), stringifyYaml(config), { mode: 0o600 });
  await writeFile(join(dir, 'log.config'), stringifyYaml(synapseLogConfig(dir)), { mode: 0o600 });

  const synapse = new SynapseProcess({
    dir, serverName, port, secret, python, logger,
    startTimeoutMs: options.startTimeoutMs ?? 60_000,
    secrets: await registrationSecrets(registrations),
  });
  await synapse.start();
  return synapse;
}
