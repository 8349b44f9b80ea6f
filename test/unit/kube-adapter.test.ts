import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log.ts';
import { KubeErrorDetail } from '../../src/kube/api-errors.ts';
import { loadClusterConfig } from '../../src/kube/kubeconfig.ts';
import { createKube, REPORTING_CONTROLLER } from '../../src/kube/lean-kube.ts';
import { KubeError, type DeploymentTarget, type Kube, type KubeErrorKind } from '../../src/kube/kube.ts';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';

const NS = 'agents';
const web: DeploymentTarget = { namespace: NS, name: 'web' };
const READY_DELAY = 200;
const TIMEOUT = 400;

let dir: string;
let sim: KubeSimulator;
let kube: Kube;

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function kubeWithToken(token: string): Promise<Kube> {
  const path = join(dir, `kubeconfig-${token}.yaml`);
  await sim.writeKubeconfig(path, token);
  return createKube({ kubeconfigPath: path, requestTimeoutMs: TIMEOUT });
}

/** Asserts a KubeError of `kind` and returns it; the human text must be one line without secrets. */
async function rejectsWith(promise: Promise<unknown>, kind: KubeErrorKind): Promise<KubeError> {
  const err = await promise.then(() => assert.fail(`expected a ${kind} KubeError`), (e: unknown) => e);
  assert.ok(err instanceof KubeError, `not a KubeError: ${String(err)}`);
  assert.equal(err.kind, kind, err.human);
  assert.doesNotMatch(err.human, /\n|rw-token|ro-token|wrong-token|Bearer|    at /);
  assert.ok(err.cause instanceof KubeErrorDetail, 'cause keeps the raw detail for the log');
  return err;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kube-adapter-test-'));
  sim = await startKubeSimulator({
    dir, readyDelayMs: READY_DELAY,
    deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
    tokens: {
      'rw-token': { user: `system:serviceaccount:${NS}:toggle`, canGet: true, canPatch: true, canCreateEvents: true },
      'ro-token': { user: `system:serviceaccount:${NS}:viewer`, canGet: true, canPatch: false },
    },
  });
  kube = createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: TIMEOUT });
});

after(async () => {
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('the Kubernetes client without a watch (every call asks the API) against the kube simulator', () => {
  test('status of a stopped deployment is off, and ping succeeds', async () => {
    assert.deepEqual(await kube.status(web), { desired: 0, ready: 0, available: 0, updated: 0, state: 'off' });
    await kube.ping(web);
    assert.equal(sim.requests.at(-1)?.path, `/apis/apps/v1/namespaces/${NS}/deployments/web`);
  });

  test('start: scale 0→1 with exactly one merge-patch PATCH; starting, then running after the delay', async () => {
    const first = sim.requests.length;
    assert.deepEqual(await kube.scale(web, 1), { previous: 0, desired: 1 });
    const sent = sim.requests.slice(first);
    const patches = sent.filter((r) => r.method === 'PATCH');
    assert.equal(patches.length, 1);
    assert.equal(patches[0]?.contentType, 'application/merge-patch+json');
    assert.equal(patches[0]?.path, `/apis/apps/v1/namespaces/${NS}/deployments/web/scale`);
    assert.deepEqual(sent.map((r) => r.method), ['GET', 'PATCH']);
    assert.equal(sim.replicas(NS, 'web'), 1);

    assert.deepEqual(await kube.status(web), { desired: 1, ready: 0, available: 0, updated: 0, state: 'starting' });
    await delay(READY_DELAY + 100);
    const { availableSince, ...counts } = await kube.status(web);
    assert.deepEqual(counts, { desired: 1, ready: 1, available: 1, updated: 1, state: 'running' });
    assert.ok(availableSince !== undefined && Date.now() - availableSince < 5_000, 'up since its Available condition turned True (a second\'s precision, as the API gives it)');
  });

  test('stop: scale 1→0, stopping, then off', async () => {
    assert.deepEqual(await kube.scale(web, 0), { previous: 1, desired: 0 });
    assert.equal(sim.replicas(NS, 'web'), 0);
    assert.equal((await kube.status(web)).state, 'stopping');
    await delay(READY_DELAY + 100);
    assert.equal((await kube.status(web)).state, 'off');
  });

  test('scaling to the current count still answers previous = desired', async () => {
    assert.deepEqual(await kube.scale(web, 0), { previous: 0, desired: 0 });
  });

  test('a negative count is refused before any request', async () => {
    const before = sim.requests.length;
    const err = await kube.scale(web, -1).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof KubeError && err.kind === 'invalid');
    assert.equal(sim.requests.length, before);
  });

  test('403 with a read-only token: forbidden, naming verb, resource and namespace', async () => {
    const ro = await kubeWithToken('ro-token');
    const err = await rejectsWith(ro.scale(web, 1), 'forbidden');
    assert.equal(err.status, 403);
    assert.equal(err.human, `forbidden: the service account may not patch deployments/scale in namespace ${NS}`);
    assert.match((err.cause as KubeErrorDetail).message, /cannot patch resource "deployments\/scale"/);
    assert.equal((err.cause as KubeErrorDetail).reason, 'Forbidden');
    assert.equal(sim.replicas(NS, 'web'), 0);
  });

  test('404: not-found names deployment and namespace', async () => {
    const err = await rejectsWith(kube.status({ namespace: NS, name: 'ghost' }), 'not-found');
    assert.equal(err.human, `deployment ghost not found in namespace ${NS}`);
    await rejectsWith(kube.scale({ namespace: 'elsewhere', name: 'web' }, 1), 'not-found');
  });

  test('401 with an unknown token: unauthorized', async () => {
    const bad = await kubeWithToken('wrong-token');
    const err = await rejectsWith(bad.status(web), 'unauthorized');
    assert.equal(err.status, 401);
    assert.match(err.human, /^unauthorized: /);
  });

  test('5xx: server, and the next call works again', async () => {
    sim.setFailure({ status: 500, reason: 'InternalError', message: 'etcdserver: request timed out' });
    const err = await rejectsWith(kube.status(web), 'server');
    assert.equal(err.status, 500);
    assert.match(err.human, /failed with 500/);
    assert.equal((err.cause as KubeErrorDetail).message, 'etcdserver: request timed out');
    assert.equal((await kube.status(web)).state, 'off');
  });

  test('409 on the PATCH: conflict (the GET before it succeeded)', async () => {
    sim.setFailure({ status: 409, match: (r) => r.method === 'PATCH' });
    const err = await rejectsWith(kube.scale(web, 1), 'conflict');
    assert.match(err.human, /deployment web in namespace agents/);
  });

  test('a hung API server: timeout within the configured deadline', async () => {
    sim.setFailure({ mode: 'hang' });
    const started = Date.now();
    const err = await rejectsWith(kube.status(web), 'timeout');
    const took = Date.now() - started;
    assert.ok(took >= TIMEOUT - 20 && took < TIMEOUT + 1000, `took ${took} ms`);
    assert.equal(err.human, `the Kubernetes API at ${sim.url} did not answer within ${TIMEOUT} ms`);
  });

  test('a dropped connection: unreachable', async () => {
    sim.setFailure({ mode: 'close', count: 5 });
    const err = await rejectsWith(kube.status(web), 'unreachable');
    assert.equal(err.human, `the Kubernetes API at ${sim.url} is unreachable (connection closed by the server)`);
    sim.clearFailures();
  });

  test('a server whose certificate is not from the kubeconfig CA: unreachable (TLS)', async () => {
    const otherDir = join(dir, 'other');
    const other = await startKubeSimulator({ dir: otherDir, readyDelayMs: 0, deployments: [], tokens: {} });
    try {
      // kubeconfig names `sim`'s CA but points at `other`'s server.
      const path = join(dir, 'mismatch.yaml');
      await sim.writeKubeconfig(path, 'rw-token');
      await writeFile(path, (await readFile(path, 'utf8')).replace(sim.url, other.url));
      const k = createKube({ kubeconfigPath: path, requestTimeoutMs: TIMEOUT });
      const err = await rejectsWith(k.status(web), 'unreachable');
      assert.equal(err.human, `the Kubernetes API at ${other.url} is unreachable (TLS: UNABLE_TO_VERIFY_LEAF_SIGNATURE)`);
    } finally {
      await other.stop();
    }
  });

  test('a stopped API server: unreachable (ECONNREFUSED)', async () => {
    const goneDir = join(dir, 'gone');
    const gone = await startKubeSimulator({ dir: goneDir, readyDelayMs: 0, deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
      tokens: { t: { user: 'u', canGet: true, canPatch: true } } });
    const k = createKube({ kubeconfigPath: gone.kubeconfigPath, requestTimeoutMs: TIMEOUT });
    await k.ping(web);
    await gone.stop();
    const err = await rejectsWith(k.scale(web, 1), 'unreachable');
    assert.equal(err.human, `the Kubernetes API at ${gone.url} is unreachable (ECONNREFUSED)`);
  });

  test('config: an explicit kubeconfig wins; in a pod (KUBERNETES_SERVICE_HOST) the service account is used', async () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    assert.equal(loadClusterConfig({ kubeconfigPath: sim.kubeconfigPath, env }).server, sim.url);
    const root = join(dir, 'pod');
    const sa = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
    await mkdir(sa, { recursive: true });
    await writeFile(join(sa, 'ca.crt'), sim.caPem);
    await writeFile(join(sa, 'namespace'), 'bots\n');
    const inCluster = loadClusterConfig({ env, serviceAccountRoot: root });
    assert.equal(inCluster.server, 'https://10.96.0.1:443');
    assert.equal(inCluster.ca, sim.caPem);
    assert.equal(inCluster.namespace, 'bots');
    assert.deepEqual(inCluster.user, { tokenFile: join(sa, 'token') });
    assert.equal(loadClusterConfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }, serviceAccountRoot: root }).server, 'https://[fd00::1]:6443');
  });

  test('logs: a scale is logged at info, a failure at debug with the raw Status message, never the token', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done(); } });
    const path = join(dir, 'kubeconfig-logged.yaml');
    await sim.writeKubeconfig(path, 'ro-token');
    const k = createKube({ kubeconfigPath: path, requestTimeoutMs: TIMEOUT, logger: createLogger({ level: 'debug' }, sink) });
    await rejectsWith(k.scale(web, 1), 'forbidden');
    const failed = lines.find((l) => l['msg'] === 'kubernetes call failed');
    assert.equal(failed?.['kind'], 'forbidden');
    assert.match(String(failed?.['detail']), /User "system:serviceaccount:agents:viewer" cannot patch/);
    assert.doesNotMatch(JSON.stringify(lines), /ro-token/);
    const ok = createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: TIMEOUT, logger: createLogger({ level: 'info' }, sink) });
    await ok.scale(web, 0);
    assert.deepEqual(lines.filter((l) => l['msg'] === 'deployment scaled').map((l) => [l['previous'], l['desired']]), [[0, 0]]);
  });
});

describe('Events regarding the Deployment (the audit of scales)', () => {
  test('an Event names the Deployment by uid (learnt from the scale\'s answer), with the reporting fields a new Event needs', async () => {
    const events = createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: TIMEOUT });
    await events.scale(web, 1);
    const before = sim.requests.length;
    await events.recordEvent(web, { reason: 'ScaledByChat', action: 'Start', note: 'start by @alice:example.org in !r:example.org (timed 2h)' });
    assert.deepEqual(sim.requests.slice(before).map((r) => `${r.method} ${r.path} ${r.status}`), [`POST /apis/events.k8s.io/v1/namespaces/${NS}/events 201`], 'one request');
    const stored = sim.events(NS).at(-1)!;
    const uid = (sim.deployment(NS, 'web')!['metadata'] as { uid: string }).uid;
    assert.deepEqual(stored['regarding'], { apiVersion: 'apps/v1', kind: 'Deployment', namespace: NS, name: 'web', uid });
    assert.equal(stored['note'], 'start by @alice:example.org in !r:example.org (timed 2h)');
    assert.equal(stored['reportingController'], REPORTING_CONTROLLER);
    assert.match(String(stored['eventTime']), /\.\d{6}Z$/);
    assert.match(String((stored['metadata'] as { name: string }).name), /^web\.[0-9a-f]+$/);
    await events.scale(web, 0);
    await events.close();
  });

  test('without a scale before, the uid is read once; a dry run stores nothing', async () => {
    const fresh = createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: TIMEOUT });
    const count = sim.events(NS).length;
    await fresh.recordEvent(web, { reason: 'ScaledByChat', action: 'Check', note: 'dry' }, { dryRun: true });
    assert.equal(sim.events(NS).length, count);
    const before = sim.requests.length;
    await fresh.recordEvent(web, { reason: 'ScaledByChat', action: 'Stop', note: 'stop by timer' });
    assert.deepEqual(sim.requests.slice(before).map((r) => r.method), ['GET', 'POST']);
    assert.ok((sim.events(NS).at(-1)!['regarding'] as { uid?: string }).uid);
    await fresh.close();
  });

  test('refused by RBAC: a forbidden KubeError in one sentence', async () => {
    const ro = await kubeWithToken('ro-token') as ReturnType<typeof createKube>;
    const err = await rejectsWith(ro.recordEvent(web, { reason: 'ScaledByChat', action: 'Check', note: 'dry' }, { dryRun: true }), 'forbidden');
    assert.equal(err.human, `forbidden: the service account may not create events in namespace ${NS}`);
    await ro.close();
  });
});
