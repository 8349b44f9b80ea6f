/**
 * The lean client's view of a rollout on the real control plane (src/dev/kube-testbed): the watched
 * Deployment and, through a second watch by its label selector, its pods, read by rollout.ts. Issue
 * 11's progress messages build on this. A start that gets ready, a stop until no pod is left, a pod
 * the scheduler cannot place (its own message), pods that kwok plays as a kubelet would report them
 * (stages.ts: slow to start, never ready, image pull failure, crash loop); the project's Role, which
 * may list and watch pods: the view with them; a Role from before that rule: one warning, and the
 * view without pods.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyBotRbac, requestPodToken, targetDeployment, writeServiceAccountFiles, type TestPods } from '../../src/dev/kube-testbed/project-manifests.ts';
import { sharedKubeTestbed, type KubeTestbed } from '../../src/dev/kube-testbed/testbed.ts';
import type { DeploymentTarget } from '../../src/kube/kube.ts';
import { KubeError } from '../../src/kube/kube.ts';
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

  const progress = (kube: LeanKube, target: DeploymentTarget): Rollout | undefined => {
    const v = kube.rollout(target);
    return v?.pods ? startProgress(v.deployment, v.pods) : undefined;
  };
  /** A Deployment whose pods behave as `pods` says, scaled to 1: its client, and every rollout text until `done`. */
  const start = async (name: string, pods: TestPods, done: (r: Rollout) => boolean) => {
    const target = { namespace: NAMESPACE, name };
    await tb.admin.apply(targetDeployment(NAMESPACE, name, 0, pods));
    const kube = watching(target);
    await until('listed', () => kube.rollout(target)?.pods);
    const t0 = Date.now();
    await kube.scale(target, 1);
    const seen = await follow(() => progress(kube, target), done);
    return { target, kube, seen, ms: Date.now() - t0 };
  };
  /** Scales back to 0 and waits until no pod is left: kwok's pod-delete works for labelled pods too. */
  const stop = async (kube: LeanKube, target: DeploymentTarget): Promise<void> => {
    await kube.scale(target, 0);
    await follow(() => { const v = kube.rollout(target); return v?.pods ? stopProgress(v.pods) : undefined; }, (r) => r.phase === 'off');
  };
  const texts = (seen: readonly Rollout[]): string => seen.map((r) => `${r.phase}${r.reason ? `: ${r.reason}` : ''} [${r.steps.join(', ')}]`).join(' → ');

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

  it('slow to start: ContainerCreating for the delay, then running and ready', async () => {
    const { target, kube, seen, ms } = await start('agent-slow', { behaviour: 'slow', delayMs: 2_000 }, (r) => r.phase !== 'moving');
    console.log(`# slow (${ms} ms): ${texts(seen)}`);
    const creating = seen.find((r) => r.steps.includes('pulling image and starting container'));
    assert.deepEqual(creating, { phase: 'moving', steps: [`pod scheduled on ${tb.nodeName}`, 'pulling image and starting container'], reason: 'waiting for the container to start (pulling the image)' }, texts(seen));
    assert.deepEqual(seen.at(-1), { phase: 'ready', steps: [`pod scheduled on ${tb.nodeName}`, 'container running', 'ready'] }, texts(seen));
    assert.ok(ms >= 2_000, `ready after ${ms} ms, before the 2 s delay`);
    await stop(kube, target);
  });

  it('never ready: running, still moving, waiting for the readiness probe', async () => {
    const { target, kube, seen } = await start('agent-never-ready', { behaviour: 'never-ready' }, (r) => r.steps.includes('container running'));
    await new Promise((r) => setTimeout(r, 2_000)); // still not ready after a while
    const now = progress(kube, target);
    console.log(`# never-ready: ${texts([...seen, now!])}`);
    assert.deepEqual(now, { phase: 'moving', steps: [`pod scheduled on ${tb.nodeName}`, 'container running'], reason: 'waiting for the container to pass its readiness probe (0 of 1 ready)' });
    await stop(kube, target);
  });

  it('an image that cannot be pulled: failed, naming the image and the registry\'s answer, the same during the back-off', async () => {
    const image = 'ghcr.io/openclaw/openclaw:no-such-tag';
    const { target, kube, seen } = await start('agent-image-pull', { behaviour: 'image-pull', image }, (r) => r.phase === 'failed');
    console.log(`# image-pull: ${texts(seen)}`);
    const expected = `the image ${image} cannot be pulled (ErrImagePull: failed to pull and unpack image "${image}": failed to resolve reference "${image}": ${image}: not found)`;
    assert.equal(seen.at(-1)?.reason, expected);
    const pod = () => kube.rollout(target)?.pods?.[0]?.status?.containerStatuses?.[0]?.state?.waiting;
    const backoff = await until('ImagePullBackOff', () => pod()?.reason === 'ImagePullBackOff' && pod(), 10_000);
    console.log(`# image-pull, back-off: ${JSON.stringify(backoff)} → ${progress(kube, target)?.reason}`);
    assert.equal(progress(kube, target)?.reason, expected);
    await stop(kube, target);
  });

  it('a crash loop: failed, with the last exit code and the restarts', async () => {
    const { target, kube, seen, ms } = await start('agent-crash', { behaviour: 'crash' }, (r) => r.phase === 'failed');
    console.log(`# crash (${ms} ms): ${texts(seen)}`);
    assert.equal(seen.at(-1)?.reason, 'the container agent-crash keeps crashing (last exit code 1, 1 restart)');
    // After the 10 s back-off it runs, exits again, and waits 20 s: the count goes on.
    const again = await until('the second back-off', () => { const r = progress(kube, target); return r?.reason?.includes('2 restarts') && r; }, 20_000);
    console.log(`# crash, later: ${again.reason}`);
    assert.equal(again.reason, 'the container agent-crash keeps crashing (last exit code 1, 2 restarts)');
    await stop(kube, target);
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
    await allowed.checkPods(target); // the bot's start-up check passes
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
    // The bot's start-up check (ProgressTracker.check) gets the same refusal, as a KubeError it can word once.
    await assert.rejects(kube.checkPods(target), (e: unknown) => e instanceof KubeError && e.kind === 'forbidden' && /may not list pods in namespace rollouts/.test(e.human));
  });
});
