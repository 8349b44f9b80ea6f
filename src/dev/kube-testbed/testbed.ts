/**
 * A REAL Kubernetes control plane on loopback, for integration tests and the demo: etcd,
 * kube-apiserver (RBAC, service-account tokens), kube-controller-manager, kube-scheduler, and kwok
 * as the kubelet of one fake Node. The API, the controllers and the scheduler are the real ones:
 * a Deployment gets a ReplicaSet, its Pod is scheduled onto the Node and reported Running and
 * Ready. What is fake is the kubelet: no container ever runs.
 *
 * Everything lives in one temporary directory; each process runs in its own process group and is
 * stopped by its pid (and killed when the test process dies). The binaries come from
 * `ensureKubeTestbedBinaries()` and are built on first use (~20-25 min cold).
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeLoopbackPort } from '../synapse.ts';
import { ApiClient } from './api-client.ts';
import { ensureKubeTestbedBinaries, type BuildLogger, type TestbedBinaries } from './build.ts';
import { Component } from './component.ts';
import { apiServerArgs, controllerManagerArgs, etcdArgs, fakeNode, kwokArgs, schedulerArgs } from './flags.ts';
import { makePki, writeKubeconfig } from './pki.ts';
import { stagesFile } from './stages.ts';
import { KUBERNETES_VERSION, KWOK_STAGE_FILES } from './versions.ts';

export interface KubeTestbedOptions {
  /** Working directory (created); default a fresh one under the OS temp dir, removed by stop(). */
  readonly dir?: string;
  readonly logger?: BuildLogger;
}

export interface StartupTimes {
  /** From spawning etcd to the API server's /readyz answering 200. */
  readonly apiServerReadyMs: number;
  /** From spawning etcd to the fake Node Ready and the controller-manager at work. */
  readonly totalMs: number;
}

export interface KubeTestbed {
  /** `https://127.0.0.1:<port>` */
  readonly server: string;
  readonly port: number;
  readonly caPem: string;
  readonly caFile: string;
  readonly dir: string;
  /** A kubeconfig of the cluster admin (system:masters), for humans with kubectl. */
  readonly adminKubeconfig: string;
  /** An API client acting as the cluster admin. */
  readonly admin: ApiClient;
  readonly nodeName: string;
  readonly binaries: TestbedBinaries;
  readonly startup: StartupTimes;
  /** Stops the API server alone (the rest keeps running and reconnects later). */
  stopApiServer(): Promise<void>;
  /** Starts it again on the same port and waits for /readyz; returns how long that took. */
  startApiServer(): Promise<number>;
  /** The last lines of every component's log. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

const stderrLogger: BuildLogger = { info: (msg) => { process.stderr.write(`[kube-testbed] ${msg}\n`); } };

export async function startKubeTestbed(options: KubeTestbedOptions = {}): Promise<KubeTestbed> {
  const logger = options.logger ?? stderrLogger;
  const binaries = await ensureKubeTestbedBinaries({ logger });
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? await mkdtemp(join(tmpdir(), 'openclaw-kube-testbed-'));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pki = await makePki(dir);
  const [etcdPort, etcdPeerPort, port, kwokPort] = await Promise.all([freeLoopbackPort(), freeLoopbackPort(), freeLoopbackPort(), freeLoopbackPort()]);
  const server = `https://127.0.0.1:${port}`;
  const admin = new ApiClient(server, pki.caPem, pki.tokens.admin);
  const kubeconfig = async (name: string, token: string): Promise<string> => {
    const path = join(dir, `${name}.kubeconfig`);
    await writeKubeconfig(path, server, pki.caPem, token, name);
    return path;
  };
  const adminKubeconfig = await kubeconfig('admin', pki.tokens.admin);
  const log = (name: string): string => join(dir, `${name}.log`);

  const etcd = new Component('etcd', binaries.path('etcd'), etcdArgs(join(dir, 'etcd'), etcdPort, etcdPeerPort), log('etcd'));
  const apiServer = new Component('kube-apiserver', binaries.path('kube-apiserver'), apiServerArgs(pki, port, etcdPort), log('kube-apiserver'));
  const controllerManager = new Component('kube-controller-manager', binaries.path('kube-controller-manager'),
    controllerManagerArgs(pki, await kubeconfig('controller-manager', pki.tokens.controllerManager)), log('kube-controller-manager'));
  const scheduler = new Component('kube-scheduler', binaries.path('kube-scheduler'),
    schedulerArgs(await kubeconfig('scheduler', pki.tokens.scheduler)), log('kube-scheduler'));
  const stagesFile = join(dir, 'kwok-stages.yaml');
  await writeFile(stagesFile, await kwokStages(binaries.stagesDir));
  const kwok = new Component('kwok', binaries.path('kwok'), kwokArgs(await kubeconfig('kwok', pki.tokens.kwok), stagesFile, kwokPort), log('kwok'));
  const all = [etcd, apiServer, controllerManager, scheduler, kwok];

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Clients first, etcd last, so nothing logs a storm of connection errors on the way down.
    await Promise.all([kwok, scheduler, controllerManager].map((c) => c.stop()));
    await apiServer.stop();
    await etcd.stop();
    admin.close();
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  const logTail = (lines = 20): string => all.map((c) => `--- ${c.logFile} ---\n${c.logTail(lines)}`).join('\n');

  const t0 = Date.now();
  try {
    etcd.start();
    await waitFor('etcd /health', 30_000, [etcd], async () => (await fetch(`http://127.0.0.1:${etcdPort}/health`)).ok);
    apiServer.start();
    await waitReadyz(admin, apiServer, etcd);
    const apiServerReadyMs = Date.now() - t0;
    // The controller-manager exits at once when the API server does not answer /readyz yet.
    controllerManager.start();
    scheduler.start();
    kwok.start();
    const node = fakeNode();
    await admin.ok('POST', '/api/v1/nodes', { body: node });
    await waitFor(`node ${node.metadata.name} Ready`, 60_000, all, async () => nodeReady(admin, node.metadata.name));
    // The service-account controller creating `default` shows that the controller-manager works.
    await waitFor('the controller-manager', 60_000, all, async () => (await admin.request('GET', '/api/v1/namespaces/default/serviceaccounts/default')).status === 200);
    const startup = { apiServerReadyMs, totalMs: Date.now() - t0 };
    logger.info(`Kubernetes ${KUBERNETES_VERSION} control plane ready at ${server} (API server ${startup.apiServerReadyMs} ms, all ${startup.totalMs} ms; logs in ${dir})`);
    return {
      server, port, caPem: pki.caPem, caFile: pki.caFile, dir, adminKubeconfig, admin, nodeName: node.metadata.name, binaries, startup,
      stopApiServer: () => apiServer.stop(),
      async startApiServer() {
        const started = Date.now();
        apiServer.start();
        await waitReadyz(admin, apiServer, etcd);
        return Date.now() - started;
      },
      logTail,
      stop,
    };
  } catch (error) {
    const tail = logTail(30);
    await stop();
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail}`);
  }
}

/** Polls `probe` every 100 ms until it is true; throws if a component died or time ran out. */
async function waitFor(what: string, timeoutMs: number, components: readonly Component[], probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const c of components) c.assertRunning();
    try { if (await probe()) return; } catch { /* not answering yet */ }
    if (Date.now() > deadline) throw new Error(`the Kubernetes testbed: ${what} not reached within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

function waitReadyz(admin: ApiClient, apiServer: Component, etcd: Component): Promise<void> {
  return waitFor('kube-apiserver /readyz', 90_000, [apiServer, etcd],
    async () => (await admin.request('GET', '/readyz', { timeoutMs: 2_000 })).status === 200);
}

async function nodeReady(admin: ApiClient, name: string): Promise<boolean> {
  const node = await admin.request('GET', `/api/v1/nodes/${name}`);
  const conditions = ((node.body['status'] as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions) ?? [];
  return conditions.some((c) => c.type === 'Ready' && c.status === 'True');
}

/**
 * kwok's stage files from its module plus our own (stages.ts: pods labelled to misbehave), as one
 * multi-document YAML. Ours are generated here, not cached: they are not part of the build.
 */
async function kwokStages(stagesDir: string): Promise<string> {
  const docs: string[] = [];
  for (const f of KWOK_STAGE_FILES) {
    const path = join(stagesDir, f.split('/').pop()!);
    if (!existsSync(path)) throw new Error(`kwok stage file ${path} is missing: rebuild with node src/dev/kube-testbed/build.ts`);
    docs.push(await readFile(path, 'utf8'));
  }
  return stagesFile(docs);
}

let shared: Promise<KubeTestbed> | undefined;

/**
 * One control plane per test process (as each test file gets its own Synapse): started on first
 * use, stopped and removed when the process exits.
 */
export function sharedKubeTestbed(options: { logger?: BuildLogger } = {}): Promise<KubeTestbed> {
  if (shared === undefined) {
    shared = startKubeTestbed(options);
    shared.then((tb) => {
      // Processes are killed by the components' own exit hook; the directory goes here.
      process.once('exit', () => { try { rmSync(tb.dir, { recursive: true, force: true }); } catch { /* best effort */ } });
    }, () => { shared = undefined; });
  }
  return shared;
}
