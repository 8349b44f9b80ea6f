/**
 * The pinned Synapse in a cached Python venv: created once (under a lock, so parallel processes
 * install it only once), reused while it reports the pinned version.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withDirLock } from './dir-lock.ts';
import { lastLines, run, type RunResult } from './run-command.ts';

/** The Synapse release every test, the demo and the benchmarks run against. */
export const SYNAPSE_VERSION = '1.163.2';
/** The pip requirement for it: with the `jwt` extra (Authlib), which native `jwt_config` login needs. */
export const SYNAPSE_PIP_REQUIREMENT = `matrix-synapse[jwt]==${SYNAPSE_VERSION}`;
/**
 * Everything the venv holds, pinned: Synapse, and the JWT login modules the Keycloak tests
 * configure (Authlib for Synapse's own `org.matrix.login.jwt`; synapse-token-authenticator with
 * jwcrypto for `com.famedly.login.token*`). Pydantic, which that module also needs, comes with
 * Synapse. A change here changes the venv's directory name, so a cache rebuilds once.
 */
export const SYNAPSE_PIP_REQUIREMENTS: readonly string[] = [
  SYNAPSE_PIP_REQUIREMENT,
  'authlib==1.9.10',
  'synapse-token-authenticator==0.14.1',
  'jwcrypto==1.6.1',
];
/** Short hash of the requirements: part of the default venv path and of its stamp. */
const REQUIREMENTS_KEY = createHash('sha256').update(SYNAPSE_PIP_REQUIREMENTS.join('\n')).digest('hex').slice(0, 8);
/** Written into the venv after a complete install; a venv without the same stamp is rebuilt. */
const STAMP_FILE = 'openclaw-requirements.txt';

/** What the harness needs of a logger (a pino `Logger` fits). */
export interface HarnessLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export const stderrLogger: HarnessLogger = {
  info: (msg) => { process.stderr.write(`[synapse-harness] ${msg}\n`); },
  warn: (msg) => { process.stderr.write(`[synapse-harness] ${msg}\n`); },
};

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where the venv lives unless told otherwise: `SYNAPSE_VENV`, else `<repo>/.cache/synapse-venv-<version>-<requirements hash>`. */
export function defaultSynapseVenvDir(): string {
  const fromEnv = process.env['SYNAPSE_VENV'];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  return join(REPO_ROOT, '.cache', `synapse-venv-${SYNAPSE_VERSION}-${REQUIREMENTS_KEY}`);
}


/**
 * Synapse appends `git describe` output to its version when its package sits inside a git work
 * tree — as the default venv under `<repo>/.cache` does (it would report this repo's branch).
 * A ceiling at the venv root stops git's search there.
 */
export function noGitAbove(python: string): NodeJS.ProcessEnv {
  return { ...process.env, GIT_CEILING_DIRECTORIES: dirname(dirname(python)) };
}

function stampText(): string {
  return `${SYNAPSE_PIP_REQUIREMENTS.join('\n')}\n`;
}

/** True when the venv was completely installed from exactly these requirements (read without starting Python). */
async function hasStamp(python: string): Promise<boolean> {
  return readFile(join(dirname(dirname(python)), STAMP_FILE), 'utf8').then((t) => t === stampText(), () => false);
}

/** The installed Synapse version, if the venv is complete for these requirements. */
async function installedVersion(python: string): Promise<string | undefined> {
  if (!existsSync(python) || !(await hasStamp(python))) return undefined;
  return synapseVersion(python);
}

async function synapseVersion(python: string): Promise<string | undefined> {
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

const LOCK_STALE_MS = 20 * 60_000;
const LOCK_WAIT_MS = 20 * 60_000;

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
  return withDirLock(`${venv}.lock`, { staleMs: LOCK_STALE_MS, waitMs: LOCK_WAIT_MS, onWait: (lock) => logger.info(`waiting for another process installing Synapse (lock ${lock})`) }, async () => {
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
    r = await run(tmpPython, ['-m', 'pip', 'install', '--progress-bar', 'off', ...SYNAPSE_PIP_REQUIREMENTS], { timeoutMs: 20 * 60_000, env: pipEnv });
    if (r.code !== 0) return fail(`pip install ${SYNAPSE_PIP_REQUIREMENTS.join(' ')}`, r);
    const v = await synapseVersion(tmpPython);
    if (v !== SYNAPSE_VERSION) return fail(`checking the new venv (it reports Synapse ${v ?? '(none)'}, not ${SYNAPSE_VERSION})`, undefined);
    r = await run(tmpPython, ['-c', 'import authlib.jose, synapse_token_authenticator'], { cwd: tmp, timeoutMs: 60_000 });
    if (r.code !== 0) return fail('importing the JWT login modules in the new venv', r);
    await writeFile(join(tmp, STAMP_FILE), stampText());

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
