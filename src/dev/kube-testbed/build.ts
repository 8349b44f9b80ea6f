/**
 * Builds the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
 * kubectl, kwok) from the Go module proxy into the version-keyed cache of `versions.ts`.
 *
 * Idempotent: a binary that is in place is never rebuilt (each is renamed into place only once
 * complete). Safe when several processes run it at once: the build runs under a directory lock
 * and whoever waited re-checks afterwards. Go runs under `nice` because a cold build keeps every
 * core busy for ~20 minutes and other test suites may share the machine.
 *
 *   node src/dev/kube-testbed/build.ts     # build what is missing, print where it is
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { withDirLock } from '../dir-lock.ts';
import {
  BINARIES, GO_MODULES_DIR, KWOK_STAGE_FILES, KWOK_VERSION, testbedCacheRoot, testbedPaths, type TestbedBinary,
} from './versions.ts';

export interface BuildLogger { info(msg: string): void }

const stderrLogger: BuildLogger = { info: (msg) => { process.stderr.write(`[kube-testbed] ${msg}\n`); } };

export interface TestbedBinaries {
  binDir: string;
  stagesDir: string;
  /** Absolute path of each binary. */
  path(name: TestbedBinary): string;
}

/** What a cold build costs, said before it starts so nobody thinks it hangs. */
export const COLD_BUILD_NOTE = 'a cold build takes 11-25 min on 2 cores (11 min measured on a shared 2-core machine) and ~6 GB of Go caches; later runs reuse it';

/** True when every binary and stage file is already in the cache (no Go, no lock needed). */
export function testbedBuilt(root = testbedCacheRoot()): boolean {
  const { binDir, stagesDir } = testbedPaths(root);
  return missingBinaries(binDir).length === 0 && KWOK_STAGE_FILES.every((f) => existsSync(join(stagesDir, stageName(f))));
}

/** Builds whatever is missing and returns where everything is. */
export async function ensureKubeTestbedBinaries(options: { root?: string; logger?: BuildLogger } = {}): Promise<TestbedBinaries> {
  const root = options.root ?? testbedCacheRoot();
  const logger = options.logger ?? stderrLogger;
  const { keyDir, binDir, stagesDir } = testbedPaths(root);
  const result: TestbedBinaries = { binDir, stagesDir, path: (name) => join(binDir, name) };
  if (testbedBuilt(root)) return result;

  await mkdir(keyDir, { recursive: true });
  await withDirLock(join(keyDir, 'build.lock'), {
    staleMs: 120 * 60_000,
    waitMs: 90 * 60_000,
    onWait: (dir) => logger.info(`another process is building the testbed; waiting for it (lock ${dir})`),
  }, async () => {
    const missing = missingBinaries(binDir);
    if (missing.length > 0) await buildBinaries(root, keyDir, binDir, missing, logger);
    await copyStages(root, stagesDir);
  });
  if (!testbedBuilt(root)) throw new Error(`the testbed build finished but ${keyDir} is incomplete`);
  return result;
}

function missingBinaries(binDir: string): TestbedBinary[] {
  return (Object.keys(BINARIES) as TestbedBinary[]).filter((b) => !existsSync(join(binDir, b)));
}

function goEnv(root: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOMODCACHE: join(root, 'gomodcache'),
    GOCACHE: join(root, 'gocache'),
    // Static binaries: no system libraries. (GOTOOLCHAIN is left alone: a Go older than the wrapper
    // modules' `go 1.26.0` line fetches that toolchain through the module proxy by itself.)
    CGO_ENABLED: '0',
    // readonly: the committed go.mod/go.sum are the pins; a build never rewrites them. -trimpath and
    // no VCS stamp make the binaries reproducible (two builds are byte-identical).
    GOFLAGS: '-mod=readonly -buildvcs=false -trimpath',
  };
}

async function buildBinaries(root: string, keyDir: string, binDir: string, missing: TestbedBinary[], logger: BuildLogger): Promise<void> {
  const logPath = join(keyDir, 'build.log');
  logger.info(`building ${missing.join(', ')} into ${binDir} (${COLD_BUILD_NOTE}); Go output: ${logPath}`);
  const tmpDir = join(keyDir, `bin.tmp-${process.pid}`);
  await rm(tmpDir, { recursive: true, force: true });
  await mkdir(tmpDir, { recursive: true });
  await mkdir(binDir, { recursive: true });
  const started = Date.now();
  // One `go build` per module and ldflags: several main packages in one invocation share work.
  const groups = new Map<string, TestbedBinary[]>();
  for (const b of missing) {
    const { module, ldflags } = BINARIES[b];
    const key = `${module}\n${ldflags}`;
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  try {
    for (const [key, names] of groups) {
      const [module, ldflags] = key.split('\n') as [string, string];
      const t0 = Date.now();
      logger.info(`go build ${names.join(' ')} ...`);
      // `-o dir/` with one package names the binary after the package path's last element
      // (`v3` for etcd), so a single package gets an explicit file name.
      const out = names.length === 1 ? join(tmpDir, names[0]!) : `${tmpDir}/`;
      await runGo(['build', '-ldflags', ldflags, '-o', out, ...names.map((n) => BINARIES[n].pkg)],
        join(GO_MODULES_DIR, module), goEnv(root), logPath);
      for (const n of names) await rename(join(tmpDir, n), join(binDir, n));
      logger.info(`built ${names.join(' ')} in ${secs(Date.now() - t0)}`);
    }
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
  logger.info(`testbed built in ${secs(Date.now() - started)}`);
}

function runGo(args: string[], cwd: string, env: NodeJS.ProcessEnv, logPath: string): Promise<void> {
  const go = process.env['GO'] ?? 'go';
  return new Promise((resolve, reject) => {
    const log = createWriteStream(logPath, { flags: 'a' });
    log.write(`\n$ (cd ${cwd} && ${go} ${args.join(' ')})\n`);
    const child = spawn('nice', ['-n', '10', go, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (d: Buffer): void => { log.write(d); tail = (tail + d.toString('utf8')).slice(-4000); };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => { log.end(); reject(new Error(`cannot run ${go} (Go >= 1.26 is needed to build the Kubernetes testbed): ${err.message}`)); });
    child.on('close', (code, signal) => {
      log.end();
      if (code === 0) resolve();
      else reject(new Error(`${go} ${args.slice(0, 1).join(' ')} in ${cwd} failed (${code ?? signal}); last output:\n${tail}`));
    });
  });
}

function stageName(file: string): string {
  return file.split('/').pop()!;
}

/** Copies kwok's stage files out of the module cache, so starting never depends on its layout. */
async function copyStages(root: string, stagesDir: string): Promise<void> {
  const moduleDir = join(root, 'gomodcache', 'sigs.k8s.io', `kwok@${KWOK_VERSION}`);
  if (!existsSync(moduleDir)) {
    await runGo(['mod', 'download', `sigs.k8s.io/kwok@${KWOK_VERSION}`], join(GO_MODULES_DIR, 'kwok'), goEnv(root), join(root, 'download.log'));
  }
  await mkdir(stagesDir, { recursive: true });
  for (const f of KWOK_STAGE_FILES) {
    const dest = join(stagesDir, stageName(f));
    if (!existsSync(dest)) {
      await rm(`${dest}.tmp`, { force: true }); // a leftover would be read-only, as the module cache is
      await copyFile(join(moduleDir, f), `${dest}.tmp`);
      await rename(`${dest}.tmp`, dest);
    }
  }
}

function secs(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 120 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

if (import.meta.main) {
  const t0 = Date.now();
  const bins = await ensureKubeTestbedBinaries();
  process.stdout.write(`Kubernetes testbed binaries in ${bins.binDir} (ready after ${secs(Date.now() - t0)})\n`);
}
