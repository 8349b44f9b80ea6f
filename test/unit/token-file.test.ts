/**
 * Tokens kept in files (the in-cluster service-account token, a kubeconfig's `tokenFile`) against
 * the kube simulator, which tells which identity each request came with: the adapter must send
 * the file's current token on the very next call after a rotation.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createKube } from '../../src/kube/lean-kube.ts';
import { KubeError, type DeploymentTarget } from '../../src/kube/kube.ts';
import { loadClusterConfig, type UserAuth } from '../../src/kube/kubeconfig.ts';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';

const NS = 'agents';
const web: DeploymentTarget = { namespace: NS, name: 'web' };
const TOGGLE = `system:serviceaccount:${NS}:toggle`;
const VIEWER = `system:serviceaccount:${NS}:viewer`;

let dir: string;
let sim: KubeSimulator;

/** Replaces a token file the way the kubelet does: a new file renamed over the old one. */
async function rotate(path: string, token: string): Promise<void> {
  await writeFile(`${path}.new`, token, { mode: 0o600 });
  await rename(`${path}.new`, path);
}

const lastUser = (): string | undefined => sim.requests.at(-1)?.user;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'token-file-test-'));
  sim = await startKubeSimulator({
    dir, readyDelayMs: 0,
    deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
    tokens: {
      'rw-token': { user: TOGGLE, canGet: true, canPatch: true },
      'ro-token': { user: VIEWER, canGet: true, canPatch: false },
    },
  });
});

after(async () => {
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('tokens in files', () => {
  test('a kubeconfig user with tokenFile (client-go\'s spelling) authenticates, relative to the kubeconfig, and follows rotation at once', async () => {
    const tokenPath = join(dir, 'kc-token');
    await writeFile(tokenPath, 'rw-token\n', { mode: 0o600 });
    const kubeconfig = join(dir, 'tokenfile.kubeconfig');
    await writeFile(kubeconfig, stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
      clusters: [{ name: 'sim', cluster: { server: sim.url, 'certificate-authority-data': Buffer.from(sim.caPem).toString('base64') } }],
      users: [{ name: 'u', user: { tokenFile: 'kc-token' } }],
      contexts: [{ name: 'c', context: { cluster: 'sim', user: 'u' } }],
    }), { mode: 0o600 });
    const kube = createKube({ kubeconfigPath: kubeconfig, requestTimeoutMs: 2_000 });
    assert.equal((await kube.status(web)).desired, 0);
    assert.equal(lastUser(), TOGGLE);
    await rotate(tokenPath, 'ro-token');
    await assert.rejects(kube.scale(web, 1), (e: unknown) => e instanceof KubeError && e.kind === 'forbidden');
    assert.equal(lastUser(), VIEWER, 'the very next call carries the new token');
    await rotate(tokenPath, 'rw-token');
    assert.equal((await kube.scale(web, 1)).desired, 1);
    await kube.scale(web, 0);
  });

  test('in a pod: the service-account token under the given root, re-read on the next call after the kubelet swaps it', async () => {
    const root = join(dir, 'pod-root');
    const saDir = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
    await mkdir(saDir, { recursive: true });
    await writeFile(join(saDir, 'ca.crt'), sim.caPem);
    await writeFile(join(saDir, 'token'), 'rw-token', { mode: 0o600 });
    const port = new URL(sim.url).port;
    const saved = { host: process.env['KUBERNETES_SERVICE_HOST'], port: process.env['KUBERNETES_SERVICE_PORT'] };
    // In a pod the kubelet sets these; the adapter reads them from process.env.
    process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
    process.env['KUBERNETES_SERVICE_PORT'] = port;
    try {
      const kube = createKube({ requestTimeoutMs: 2_000, serviceAccountRoot: `${root}/` });
      await kube.ping(web);
      assert.equal(lastUser(), TOGGLE);
      await rotate(join(saDir, 'token'), 'ro-token');
      await kube.ping(web);
      assert.equal(lastUser(), VIEWER);
    } finally {
      for (const [key, value] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (value === undefined) delete process.env[key]; else process.env[key] = value;
      }
    }
  });

  test('a token file that cannot be read is one unauthorized sentence naming the file', async () => {
    const kubeconfig = join(dir, 'missing.kubeconfig');
    await writeFile(kubeconfig, stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
      clusters: [{ name: 'sim', cluster: { server: sim.url, 'certificate-authority-data': Buffer.from(sim.caPem).toString('base64') } }],
      users: [{ name: 'u', user: { tokenFile: join(dir, 'no-such-token') } }],
      contexts: [{ name: 'c', context: { cluster: 'sim', user: 'u' } }],
    }), { mode: 0o600 });
    const kube = createKube({ kubeconfigPath: kubeconfig, requestTimeoutMs: 2_000 });
    await assert.rejects(kube.status(web), (e: unknown) => {
      assert.ok(e instanceof KubeError);
      assert.equal(e.kind, 'unauthorized');
      assert.equal(e.human, `unauthorized: the bot cannot read its Kubernetes token file ${join(dir, 'no-such-token')} (ENOENT)`);
      return true;
    });
  });

  test('a kubeconfig user: tokenFile or token-file, relative to the kubeconfig; an inline token wins; only the current context counts', async () => {
    const load = async (user: Record<string, unknown>, current = 'c'): Promise<UserAuth> => {
      const path = join(dir, `user-${Math.random().toString(36).slice(2)}.kubeconfig`);
      await writeFile(path, stringify({
        'current-context': current,
        clusters: [{ name: 'sim', cluster: { server: sim.url } }],
        contexts: [{ name: 'c', context: { cluster: 'sim', user: 'u' } }, { name: 'other', context: { cluster: 'sim', user: 'v' } }],
        users: [{ name: 'u', user }, { name: 'v', user: {} }],
      }), { mode: 0o600 });
      return loadClusterConfig({ kubeconfigPath: path }).user;
    };
    assert.deepEqual(await load({ tokenFile: '/t' }), { tokenFile: '/t' });
    assert.deepEqual(await load({ 'token-file': 'rel/t' }), { tokenFile: join(dir, 'rel/t') });
    assert.deepEqual(await load({ token: 'inline', tokenFile: '/t' }), { token: 'inline' });
    assert.deepEqual(await load({ tokenFile: '/t' }, 'other'), {});
  });
});
