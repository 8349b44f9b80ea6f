/**
 * The lean client's view of a rollout on the real control plane (src/dev/kube-testbed): the watched
 * Deployment and, through a second watch by its label selector, its pods, read by rollout.ts. Issue
 * 11's progress messages build on this. A start that gets ready, a stop until no pod is left, a pod
 * the scheduler cannot place (its own message); the project's Role, which may list and watch pods:
 * the view with them; a Role from before that rule: one warning, and the view without pods.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyBotRbac, requestPodToken, targetDeployment, writeServiceAccountFiles } from '../../src/dev/kube-testbed/project-manifests.ts';
import { sharedKubeTestbed, type KubeTestbed } from '../../src/dev/kube-testbed/testbed.ts';
import type { DeploymentTarget } from '../../src/kube/kube.ts';
import { createKube, type LeanKube } from '../../src/kube/lean-kube.ts';
import { startProgress, stopProgress, type Rollout } from '../../src/kube/rollout.ts';
import { createLogger } from '../../src/log.ts';

const NAMESPACE = 'rollouts';
const SETUP_TIMEOUT_MS = 30 * 60_000;

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the rollout view on a real Kubernetes control plane', { timeout: SETUP_TIMEOUT_MS }, () => {
  let tb: KubeTestbed;
  const clients: LeanKube[] = [];
  const watching = (target: DeploymentTarget, extra: Partial<Parameters<typeof createKube>[0]> = {}): LeanKube => {
    const kube = createKube({ kubeconfigPath: tb.adminKubeconfig, requestTimeoutMs: 5_000, watch: target, ...extra });
    clients.push(kube);
    return kube;
  };
  /** Every distinct rollout text seen while `done` is false, polled as a progress message would be. */
  const follow = async (read: () => Rollout | undefined, done: (r: Rollout) => boolean): Promise<Rollout[]> => {
    const seen: Rollout[] = [];
    await until('the rollout to end', () => {
      const r = read();
      if (r && JSON.stringify(r) !== JSON.stringify(seen.at(-1))) seen.push(r);
      return r !== undefined && done(r);
    });
    return seen;
  };

  before(async () => {
    tb = await sharedKubeTestbed();
    await tb.admin.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  }, { timeout: SETUP_TIMEOUT_MS });

  after(async () => {
    for (const kube of clients) await kube.close();
  });

  it('a start: pod created, scheduled on the node, running, ready; a stop: until no pod is left', async () => {
    const target = { namespace: NAMESPACE, name: 'agent' };
    await tb.admin.apply(targetDeployment(NAMESPACE, target.name));
    const kube = watching(target);
    const view = await until('the Deployment and its pods listed', () => { const v = kube.rollout(target); return v?.pods ? v : undefined; });
    assert.deepEqual(view.pods, []);
    await kube.scale(target, 1);
    const starting = await follow(() => { const v = kube.rollout(target); return v?.pods ? startProgress(v.deployment, v.pods) : undefined; }, (r) => r.phase !== 'moving');
    const last = starting.at(-1);
    assert.equal(last?.phase, 'ready', JSON.stringify(starting));
    assert.deepEqual(last?.steps, [`pod scheduled on ${tb.nodeName}`, 'container running', 'ready']);
    console.log(`# start, as the view showed it: ${starting.map((r) => r.phase === 'moving' ? r.reason : r.phase).join(' → ')}`);
    await kube.scale(target, 0);
    const stopping = await follow(() => { const v = kube.rollout(target); return v?.pods ? stopProgress(v.pods) : undefined; }, (r) => r.phase === 'off');
    assert.deepEqual(stopping.at(-1), { phase: 'off', steps: ['no pods left'] });
  });

  it('a pod the scheduler cannot place: failed, in the scheduler\'s words', async () => {
    const target = { namespace: NAMESPACE, name: 'nowhere' };
    const deployment = targetDeployment(NAMESPACE, target.name);
    (deployment as unknown as { spec: { template: { spec: Record<string, unknown> } } }).spec.template.spec['nodeSelector'] = { 'example.org/gpu': 'h100' };
    await tb.admin.apply(deployment);
    const kube = watching(target);
    await until('listed', () => kube.rollout(target)?.pods);
    await kube.scale(target, 1);
    const seen = await follow(() => { const v = kube.rollout(target); return v?.pods ? startProgress(v.deployment, v.pods) : undefined; }, (r) => r.phase === 'failed');
    assert.match(seen.at(-1)?.reason ?? '', /^the pod cannot be scheduled: 0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector/);
    console.log(`# ${seen.at(-1)?.reason}`);
    await kube.scale(target, 0);
  });

  it('the project\'s Role: the view with the pods; a Role from before the pods rule: one warning, and the view without pods', async () => {
    const target = { namespace: NAMESPACE, name: 'agent' };
    const rbac = await applyBotRbac(tb, target);
    const root = join(await mkdtemp(join(tmpdir(), 'openclaw-pods-')), 'pod-root');
    await writeServiceAccountFiles(root, tb, (await requestPodToken(tb)).token);
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn' }, new Writable({ write(chunk: Buffer, _e, done) { lines.push(chunk.toString()); done(); } }));
    const asBot = (): LeanKube => watching(target, {
      kubeconfigPath: undefined, serviceAccountRoot: root, logger,
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(tb.port) },
      watchBackoff: { initialMs: 50, maxMs: 200 },
    });
    const allowed = asBot();
    assert.deepEqual(await until('the pods listed with the project\'s Role', () => allowed.rollout(target)?.pods), []);
    await allowed.close();
    assert.equal(lines.length, 0, lines.join(''));
    // The Role as it was before the pods rule.
    const role = rbac.find((o) => o.kind === 'Role');
    assert.ok(role);
    await tb.admin.apply({ ...role, rules: (role['rules'] as Array<{ resources: string[] }>).filter((r) => !r.resources.includes('pods')) });
    const kube = asBot();
    const view = await until('the Deployment watched', () => kube.rollout(target));
    await until('the pod watch refused', () => lines.some((l) => l.includes('cannot watch the Deployment')));
    await new Promise((r) => setTimeout(r, 1_000)); // refused again meanwhile, at least once
    assert.equal(kube.rollout(target)?.pods, undefined);
    assert.equal(view.deployment.spec?.replicas, 0);
    const warnings = lines.filter((l) => l.includes("cannot watch the Deployment's pods"));
    assert.equal(warnings.length, 1, lines.join(''));
    assert.match(warnings[0] ?? '', /forbidden: the service account may not list pods in namespace rollouts/);
  });
});
