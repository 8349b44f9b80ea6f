/**
 * The lean client watching two Deployments in two namespaces (issue 13: one watch per target),
 * against the simulator: each status from its own watch without a request, a scale of one leaves
 * the other's cache alone, a rollout followed on one opens that namespace's pod watch only, and a
 * Deployment not watched is asked for.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';
import { createKube } from '../../src/kube/lean-kube.ts';

const AGENT = { namespace: 'agents', name: 'openclaw' };
const COMFY = { namespace: 'gpu', name: 'comfyui' };
const OTHER = { namespace: 'gpu', name: 'other' };

let dir: string;
let sim: KubeSimulator;

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kube-targets-'));
  sim = await startKubeSimulator({
    dir, readyDelayMs: 100,
    deployments: [{ ...AGENT, replicas: 0 }, { ...COMFY, replicas: 0 }, { ...OTHER, replicas: 1 }],
    tokens: { t: { user: 'system:serviceaccount:bots:toggle', canGet: true, canPatch: true, canWatch: true, canListPods: true } },
  });
  await sim.writeKubeconfig(join(dir, 'kubeconfig'), 't', 'agents');
});

after(async () => {
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

test('two watched Deployments: status from each watch, scales kept apart, pods followed per target', async () => {
  const kube = createKube({ kubeconfigPath: join(dir, 'kubeconfig'), requestTimeoutMs: 2_000, watch: [AGENT, COMFY] });
  try {
    // Both watches live (the client has their answers): a status of each then asks nothing.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const before = sim.requests.length;
      assert.equal((await kube.status(AGENT)).desired, 0);
      assert.equal((await kube.status(COMFY)).desired, 0);
      if (sim.requests.length === before) break;
      assert.ok(Date.now() < deadline, 'both answered from their watches within 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }

    let told = 0;
    const following = kube.follow(COMFY, () => void told++);
    assert.deepEqual(await kube.scale(COMFY, 1), { previous: 0, desired: 1 });
    await until('comfy ready, as its follower sees it', () => following.view()?.deployment.status?.readyReplicas === 1);
    assert.ok(told > 0);
    assert.equal((await kube.status(COMFY)).ready, 1);
    assert.equal((await kube.status(AGENT)).desired, 0, 'the other target is untouched');
    const pods = sim.requests.filter((r) => r.path.startsWith('/api/v1/namespaces/'));
    assert.ok(pods.length > 0 && pods.every((r) => r.path.startsWith('/api/v1/namespaces/gpu/pods')), 'only the followed target\'s pods are watched');
    following.close();

    // Not among the watched: each call asks the API.
    const asked = sim.requests.length;
    assert.equal((await kube.status(OTHER)).desired, 1);
    assert.equal(sim.requests.slice(asked).filter((r) => r.method === 'GET').length, 1);
    assert.equal(kube.rollout(OTHER), undefined);
    await kube.scale(COMFY, 0);
  } finally {
    await kube.close();
  }
});
