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
import { createWriteStream, existsSync, openSync, readSync, closeSync, fstatSync, type WriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

/** The Synapse release every test, the demo and the benchmarks run against. */
export const SYNAPSE_VERSION = '1.163.2';
/** The pip requirement for it. */
export const SYNAPSE_PIP_REQUIREMENT = `matrix-synapse==${SYNAPSE_VERSION}`;

/** What the harness needs of a logger (a pino `Logger` fits). */
export interface HarnessLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

const stderrLogger: HarnessLogger = {
  info: (msg) => { process.stderr.write(`[synapse-harness] ${msg}\n`); },
  warn: (msg) => { process.stderr.write(`[synapse-harness] ${msg}\n`); },
};

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where the venv lives unless told otherwise: `SYNAPSE_VENV`, else `<repo>/.cache/synapse-venv-<version>`. */
export function defaultSynapseVenvDir(): string {
  const fromEnv = process.env['SYNAPSE_VENV'];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  return join(REPO_ROOT, '.cache', `synapse-venv-${SYNAPSE_VERSION}`);
}

// ---------------------------------------------------------------------------------------------
// Small process helpers

interface RunResult { code: number | null; signal: NodeJS.Signals | null; output: string }

/** Runs a command to completion, collecting stdout+stderr (bounded) without printing it. */
function run(cmd: string, args: readonly string[], opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
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
class TextRing {
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

function lastLines(text: string, lines: number): string {
  const parts = text.split('\n');
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts.slice(Math.max(0, parts.length - lines)).join('\n');
}

/** Reads up to the last `maxBytes` of a file, '' if it does not exist. */
function readFileTail(path: string, maxBytes = 256 * 1024): string {
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

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

// ---------------------------------------------------------------------------------------------
// The venv

/**
 * Synapse appends `git describe` output to its version when its package sits inside a git work
 * tree — as the default venv under `<repo>/.cache` does (it would report this repo's branch).
 * A ceiling at the venv root stops git's search there.
 */
function noGitAbove(python: string): NodeJS.ProcessEnv {
  return { ...process.env, GIT_CEILING_DIRECTORIES: dirname(dirname(python)) };
}

async function installedVersion(python: string): Promise<string | undefined> {
  if (!existsSync(python)) return undefined;
  try {
    const r = await run(python, ['-c', 'import synapse; print(synapse.__version__)'], {
      cwd: dirname(python), timeoutMs: 60_000, env: noGitAbove(python),
    });
    if (r.code !== 0) return undefined;
    return r.output.trim().split('\n').pop()?.trim();
  } catch {
    return undefined;
  }
}

interface LockOwner { pid: number; host: string; since: number }

const LOCK_STALE_MS = 20 * 60_000;
const LOCK_WAIT_MS = 20 * 60_000;

/** A mkdir-based lock with an owner file; a lock whose owner died (or that is very old) is broken. */
async function withDirLock<T>(lockDir: string, logger: HarnessLogger, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let told = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      const owner: LockOwner = { pid: process.pid, host: hostname(), since: Date.now() };
      await writeFile(join(lockDir, 'owner.json'), JSON.stringify(owner));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await lockIsStale(lockDir)) {
      // Move it aside atomically, then delete: two breakers cannot both win the rename.
      const aside = `${lockDir}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
      try { await rename(lockDir, aside); await rm(aside, { recursive: true, force: true }); } catch { /* someone else broke it */ }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for the Synapse venv lock ${lockDir}`);
    if (!told) { logger.info(`waiting for another process installing Synapse (lock ${lockDir})`); told = true; }
    await sleep(500);
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

async function lockIsStale(lockDir: string): Promise<boolean> {
  let owner: LockOwner | undefined;
  try {
    owner = JSON.parse(await readFile(join(lockDir, 'owner.json'), 'utf8')) as LockOwner;
  } catch {
    // Owner file not written yet (just created) or lost: go by the directory's age.
    try {
      const st = await stat(lockDir);
      return Date.now() - st.mtimeMs > 60_000;
    } catch {
      return false; // gone: the next mkdir will tell
    }
  }
  if (Date.now() - owner.since > LOCK_STALE_MS) return true;
  if (owner.host === hostname() && !pidAlive(owner.pid)) return true;
  return false;
}

/**
 * Makes sure a venv with the pinned Synapse exists and returns its `python`.
 * Reused when it already reports the pinned version; otherwise built in a temporary sibling
 * directory and renamed into place, under a lock so that parallel processes install only once.
 */
export function ensureSynapseVenv(options: { cacheDir?: string; logger?: HarnessLogger; basePython?: string } = {}): Promise<string> {
  const venv = resolve(options.cacheDir ?? defaultSynapseVenvDir());
  // Checked once per process: the check itself costs a Python start (~0.5 s).
  let pending = venvChecks.get(venv);
  if (pending === undefined) {
    pending = ensureVenvAt(venv, options.logger ?? stderrLogger, options.basePython);
    venvChecks.set(venv, pending);
    pending.catch(() => venvChecks.delete(venv));
  }
  return pending;
}

const venvChecks = new Map<string, Promise<string>>();

async function ensureVenvAt(venv: string, logger: HarnessLogger, basePythonOption: string | undefined): Promise<string> {
  const python = join(venv, 'bin', 'python');
  if ((await installedVersion(python)) === SYNAPSE_VERSION) return python;

  await mkdir(dirname(venv), { recursive: true });
  return withDirLock(`${venv}.lock`, logger, async () => {
    const found = await installedVersion(python);
    if (found === SYNAPSE_VERSION) return python; // another process finished while we waited

    // Leftovers of interrupted installs: we hold the lock, so nobody else is using them.
    const parent = dirname(venv);
    const prefix = `${basename(venv)}.tmp-`;
    for (const name of await readdir(parent)) {
      if (name.startsWith(prefix)) await rm(join(parent, name), { recursive: true, force: true });
    }

    logger.info(`installing Synapse ${SYNAPSE_VERSION} into ${venv} (once)`);
    const started = Date.now();
    const tmp = `${venv}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const fail = async (what: string, r: RunResult | undefined, err?: unknown): Promise<never> => {
      if (r) {
        logger.warn(`${what} failed (exit ${r.code ?? r.signal}); its output:\n${lastLines(r.output, 200)}`);
      }
      await rm(tmp, { recursive: true, force: true });
      throw new Error(`${what} failed${r ? ` (exit ${r.code ?? r.signal})` : ''}${err ? `: ${String(err)}` : ''}`);
    };
    const pipEnv = { ...process.env, PIP_NO_INPUT: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1', PYTHONDONTWRITEBYTECODE: undefined };
    const basePython = basePythonOption ?? process.env['SYNAPSE_BASE_PYTHON'] ?? 'python3';
    let r: RunResult | undefined;
    try { r = await run(basePython, ['-m', 'venv', tmp], { timeoutMs: 5 * 60_000 }); } catch (err) { return fail(`${basePython} -m venv`, undefined, err); }
    if (r.code !== 0) return fail(`${basePython} -m venv`, r);
    const tmpPython = join(tmp, 'bin', 'python');
    r = await run(tmpPython, ['-m', 'pip', 'install', '--progress-bar', 'off', SYNAPSE_PIP_REQUIREMENT], { timeoutMs: 20 * 60_000, env: pipEnv });
    if (r.code !== 0) return fail(`pip install ${SYNAPSE_PIP_REQUIREMENT}`, r);
    const v = await installedVersion(tmpPython);
    if (v !== SYNAPSE_VERSION) return fail(`checking the new venv (it reports Synapse ${v ?? '(none)'}, not ${SYNAPSE_VERSION})`, undefined);

    if (existsSync(venv)) {
      // A broken or outdated venv: move it aside first (rename onto a non-empty dir fails).
      const old = `${venv}.tmp-old-${process.pid}-${randomBytes(4).toString('hex')}`;
      await rename(venv, old);
      await rm(old, { recursive: true, force: true });
    }
    await rename(tmp, venv);
    // bin/python is a symlink and pyvenv.cfg is found next to it, so the renamed venv works;
    // only the console scripts' shebangs still name the temporary path, and we never use them.
    if ((await installedVersion(python)) !== SYNAPSE_VERSION) throw new Error(`the venv at ${venv} does not work after install`);
    logger.info(`installed Synapse ${SYNAPSE_VERSION} in ${Math.round((Date.now() - started) / 1000)} s`);
    return python;
  });
}

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

type Json = Record<string, unknown>;

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Json, extra: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

const UNLIMITED = { per_second: 100_000, burst_count: 100_000 };

/** The homeserver.yaml the harness writes (exported for tests and docs). */
export function synapseConfig(p: {
  dir: string; serverName: string; port: number; registrationSharedSecret: string;
  appserviceRegistrations: readonly string[]; extraConfig?: Record<string, unknown>;
}): Json {
  const dir = resolve(p.dir);
  const base: Json = {
    server_name: p.serverName,
    public_baseurl: `http://127.0.0.1:${p.port}/`,
    pid_file: join(dir, 'homeserver.pid'),
    listeners: [{
      port: p.port,
      bind_addresses: ['127.0.0.1'],
      type: 'http',
      tls: false,
      x_forwarded: false,
      // `client` also serves /_synapse/admin; no federation listener.
      resources: [{ names: ['client'], compress: false }],
    }],
    database: { name: 'sqlite3', args: { database: join(dir, 'homeserver.db') } },
    log_config: join(dir, 'log.config'),
    media_store_path: join(dir, 'media_store'),
    signing_key_path: join(dir, 'signing.key'), // created by Synapse at start when missing
    report_stats: false,
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_domain_whitelist: [],
    enable_metrics: false,
    url_preview_enabled: false,
    presence: { enabled: false },
    enable_registration: false,
    registration_shared_secret: p.registrationSharedSecret,
    bcrypt_rounds: 4,
    app_service_config_files: p.appserviceRegistrations.map((f) => resolve(f)),
    experimental_features: {
      msc2409_to_device_messages_enabled: true,
      msc3202_transaction_extensions: true,
    },
    // Every rc_* that Synapse 1.163's RatelimitConfig reads (except rc_federation, which has a
    // different shape and does not matter without federation).
    rc_message: UNLIMITED,
    rc_registration: UNLIMITED,
    rc_registration_token_validity: UNLIMITED,
    rc_login: { address: UNLIMITED, account: UNLIMITED, failed_attempts: UNLIMITED },
    rc_admin_redaction: UNLIMITED,
    rc_joins: { local: UNLIMITED, remote: UNLIMITED },
    rc_joins_per_room: UNLIMITED,
    rc_key_requests: UNLIMITED,
    rc_3pid_validation: UNLIMITED,
    rc_invites: { per_room: UNLIMITED, per_user: UNLIMITED, per_issuer: UNLIMITED },
    rc_third_party_invite: UNLIMITED,
    rc_media_create: UNLIMITED,
    rc_presence: { per_user: UNLIMITED },
    rc_delayed_event_mgmt: UNLIMITED,
    rc_room_creation: UNLIMITED,
    rc_reports: UNLIMITED,
    rc_user_directory: UNLIMITED,
    rc_profile: UNLIMITED,
  };
  return p.extraConfig ? deepMerge(base, p.extraConfig) : base;
}

/** Python logging config: INFO to `<dir>/homeserver.log` only, nothing to the console. */
export function synapseLogConfig(dir: string): Json {
  return {
    version: 1,
    formatters: {
      precise: { format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s' },
    },
    handlers: {
      file: {
        class: 'logging.FileHandler',
        formatter: 'precise',
        filename: join(resolve(dir), 'homeserver.log'),
        encoding: 'utf8',
      },
    },
    loggers: {
      // DEBUG here would log access tokens.
      'synapse.storage.SQL': { level: 'INFO' },
    },
    root: { level: 'INFO', handlers: ['file'] },
    disable_existing_loggers: false,
  };
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
