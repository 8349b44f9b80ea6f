/**
 * The old Python bot's crypto library in a cached venv: matrix-nio on libolm (python-olm), pinned,
 * so tests can make a real legacy store to import. Built once under a lock like the Synapse venv,
 * in `<repo>/.cache/nio-venv-<nio>-olm-<olm>` (or `NIO_VENV`), reused while it imports the pinned
 * versions. python-olm is taken only as a wheel: its source build needs libolm and cmake.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withDirLock } from './dir-lock.ts';
import { lastLines, run } from './run-command.ts';
import { stderrLogger, type HarnessLogger } from './synapse-venv.ts';

/** The versions of the old bot: matrix-nio's last line on libolm. */
export const NIO_VERSION = '0.25.2';
export const PYTHON_OLM_VERSION = '3.2.16';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** `NIO_VENV`, else `<repo>/.cache/nio-venv-<nio>-olm-<olm>`: the key changes with either version. */
export function defaultNioVenvDir(): string {
  const fromEnv = process.env['NIO_VENV'];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  return join(REPO_ROOT, '.cache', `nio-venv-${NIO_VERSION}-olm-${PYTHON_OLM_VERSION}`);
}

const PROBE = 'import nio, olm; from importlib.metadata import version; print(version("matrix-nio"), version("python-olm"))';

async function works(python: string): Promise<boolean> {
  if (!existsSync(python)) return false;
  const r = await run(python, ['-c', PROBE], { timeoutMs: 60_000 }).catch(() => undefined);
  return r?.code === 0 && r.output.trim().split('\n').pop()?.trim() === `${NIO_VERSION} ${PYTHON_OLM_VERSION}`;
}

const checks = new Map<string, Promise<string>>();

/** Makes sure the venv exists and returns its `python` (checked once per process). */
export function ensureNioVenv(options: { dir?: string; logger?: HarnessLogger; basePython?: string } = {}): Promise<string> {
  const venv = resolve(options.dir ?? defaultNioVenvDir());
  let pending = checks.get(venv);
  if (pending === undefined) {
    pending = build(venv, options.logger ?? stderrLogger, options.basePython ?? process.env['SYNAPSE_BASE_PYTHON'] ?? 'python3');
    checks.set(venv, pending);
    pending.catch(() => checks.delete(venv));
  }
  return pending;
}

async function build(venv: string, logger: HarnessLogger, basePython: string): Promise<string> {
  const python = join(venv, 'bin', 'python');
  if (await works(python)) return python;
  await mkdir(dirname(venv), { recursive: true });
  const lock = { staleMs: 20 * 60_000, waitMs: 20 * 60_000, onWait: (l: string) => logger.info(`waiting for another process installing matrix-nio (lock ${l})`) };
  return withDirLock(`${venv}.lock`, lock, async () => {
    if (await works(python)) return python;
    const prefix = `${basename(venv)}.tmp-`;
    for (const name of await readdir(dirname(venv))) if (name.startsWith(prefix)) await rm(join(dirname(venv), name), { recursive: true, force: true });
    const tmp = `${venv}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const started = Date.now();
    logger.info(`installing matrix-nio ${NIO_VERSION} with python-olm ${PYTHON_OLM_VERSION} into ${venv} (once)`);
    const step = async (what: string, cmd: string, args: string[]): Promise<void> => {
      const env = { ...process.env, PIP_NO_INPUT: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' };
      const r = await run(cmd, args, { timeoutMs: 10 * 60_000, env });
      if (r.code === 0) return;
      await rm(tmp, { recursive: true, force: true });
      throw new Error(`${what} failed (exit ${r.code ?? r.signal}):\n${lastLines(r.output, 40)}`);
    };
    await step(`${basePython} -m venv`, basePython, ['-m', 'venv', tmp]);
    const requirements = [`matrix-nio[e2e]==${NIO_VERSION}`, `python-olm==${PYTHON_OLM_VERSION}`];
    await step(`pip install ${requirements.join(' ')}`, join(tmp, 'bin', 'python'), ['-m', 'pip', 'install', '--progress-bar', 'off', '--only-binary', 'python-olm', ...requirements]);
    if (existsSync(venv)) await rm(venv, { recursive: true, force: true });
    await rename(tmp, venv);
    if (!(await works(python))) throw new Error(`the venv at ${venv} does not import matrix-nio ${NIO_VERSION} and python-olm ${PYTHON_OLM_VERSION} after install`);
    logger.info(`installed matrix-nio in ${Math.round((Date.now() - started) / 1000)} s`);
    return python;
  });
}
