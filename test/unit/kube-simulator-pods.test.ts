/**
 * The simulator's pods (src/dev/kube-simulator-pods.ts): created on a scale-up, scheduled, Ready
 * when the counts say so, terminating then gone on a scale-down; served by list and watch with a
 * labelSelector; refused with the real server's 403 without list/watch on pods. And the lean
 * client's own pod watch (src/kube/pod-watch.ts) against it, read by rollout.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';
import { createKube } from '../../src/kube/lean-kube.ts';
import { startProgress, stopProgress, type Rollout } from '../../src/kube/rollout.ts';

const NS = 'agents';
const USER = `system:serviceaccount:${NS}:toggle`;
const PODS = `/api/v1/namespaces/${NS}/pods`;
const SELECTOR = `labelSelector=${encodeURIComponent('app=web')}`;
const NAME = /^web-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$/;

type Obj = Record<string, any>;
interface Reply { status: number; body: Obj }

let dir: string;
let sim: KubeSimulator;

function get(path: string, token = 'rw'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, sim.url), { ca: sim.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Obj }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A watch whose events are collected as they come; `close` ends it. */
function watch(path: string): { events: Obj[]; status: Promise<number>; close: () => void } {
  const events: Obj[] = [];
  let buffered = '';
  const req = request(new URL(path, sim.url), { ca: sim.caPem, agent: false, headers: { authorization: 'Bearer rw' } });
  const status = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      resolve(res.statusCode ?? 0);
      res.on('data', (c: Buffer) => {
        buffered += c.toString('utf8');
        for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
          const line = buffered.slice(0, at).trim();
          buffered = buffered.slice(at + 1);
          if (line) events.push(JSON.parse(line) as Obj);
        }
      });
    });
    req.on('error', (e) => { if (!req.destroyed) reject(e); });
  });
  req.end();
  return { events, status, close: () => req.destroy() };
}

async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const podsNow = async (query = SELECTOR): Promise<Obj[]> => (await get(`${PODS}?${query}`)).body['items'] as Obj[];
const ready = (p: Obj): boolean => (p['status']['conditions'] as Obj[] | undefined)?.find((c) => c['type'] === 'Ready')?.['status'] === 'True';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kube-sim-pods-'));
  sim = await startKubeSimulator({
    dir, readyDelayMs: 200,
    deployments: [{ namespace: NS, name: 'web', replicas: 0, image: 'ghcr.io/example/openclaw:1.2' }, { namespace: NS, name: 'db', replicas: 1 }],
    tokens: {
      rw: { user: USER, canGet: true, canPatch: true, canWatch: true, canListPods: true, namespace: NS },
      nopods: { user: `system:serviceaccount:${NS}:old-role`, canGet: true, canPatch: true, canWatch: true },
    },
  });
  await sim.writeKubeconfig(join(dir, 'rw.kubeconfig'), 'rw', NS);
  await sim.writeKubeconfig(join(dir, 'nopods.kubeconfig'), 'nopods', NS);
});

after(async () => {
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('the simulator\'s pods', () => {
  test('a Deployment created at 1 has its pod already running; the selector keeps each Deployment\'s pods apart', async () => {
    const db = await podsNow('labelSelector=app%3Ddb');
    assert.equal(db.length, 1);
    assert.match(db[0]?.['metadata']['name'], /^db-\w{10}-\w{5}$/);
    assert.equal(db[0]?.['status']['phase'], 'Running');
    assert.ok(ready(db[0] as Obj));
    assert.deepEqual(await podsNow(), []);
    assert.equal((await podsNow('')).length, 1, 'no selector: every pod of the namespace');
    assert.deepEqual((await podsNow('labelSelector=app%20in%20(web%2Cdb)')).length, 1);
    assert.deepEqual(await podsNow('labelSelector=app!%3Ddb'), []);
  });

  test('scale up: Pending, scheduled, ContainerCreating, then Running and Ready; scale down: terminating, then gone; the watch sees each step', async () => {
    const list = await get(`${PODS}?${SELECTOR}`);
    assert.equal(list.status, 200);
    assert.equal(list.body['kind'], 'PodList');
    assert.equal(list.body['apiVersion'], 'v1');
    const listRv = String(list.body['metadata']['resourceVersion']);
    assert.match(listRv, /^\d+$/);
    const w = watch(`${PODS}?${SELECTOR}&watch=1&allowWatchBookmarks=true&timeoutSeconds=30&resourceVersion=${listRv}`);
    assert.equal(await w.status, 200);
    try {
      sim.scale(NS, 'web', 1);
      const [created] = await podsNow();
      assert.ok(created);
      assert.match(created['metadata']['name'], NAME);
      assert.equal(created['metadata']['labels']['app'], 'web');
      assert.match(created['metadata']['labels']['pod-template-hash'], /^\w{10}$/);
      assert.equal(created['status']['phase'], 'Pending');
      assert.equal(created['spec']['nodeName'], undefined, 'not scheduled yet');
      assert.equal(created['spec']['containers'][0]['image'], 'ghcr.io/example/openclaw:1.2');
      await until('Running and Ready', async () => (await podsNow()).find(ready));
      const readyCount = (sim.deployment(NS, 'web')?.['status'] as Obj)['readyReplicas'];
      assert.equal(readyCount, 1);
      sim.scale(NS, 'web', 0);
      const [going] = await podsNow();
      assert.ok(going?.['metadata']['deletionTimestamp'], 'a deletionTimestamp at once');
      assert.equal(going['metadata']['deletionGracePeriodSeconds'], 30);
      assert.equal((sim.deployment(NS, 'web')?.['status'] as Obj)['terminatingReplicas'], 1);
      await until('gone', async () => (await podsNow()).length === 0);
      assert.equal((sim.deployment(NS, 'web')?.['status'] as Obj)['terminatingReplicas'], 0);
      await until('the DELETED event', () => w.events.some((e) => e['type'] === 'DELETED'));
    } finally {
      w.close();
    }
    const steps = w.events.map((e) => {
      const p = e['object'] as Obj;
      const c = (p['status']['containerStatuses'] as Obj[] | undefined)?.[0];
      return `${e['type']} ${p['metadata']['deletionTimestamp'] ? 'terminating' : `${p['status']['phase']}${p['spec']['nodeName'] ? ' on node' : ''}${c?.['state']['waiting'] ? ` ${c['state']['waiting']['reason']}` : ''}${ready(p) ? ' ready' : ''}`}`;
    });
    assert.deepEqual(steps, ['ADDED Pending', 'MODIFIED Pending on node', 'MODIFIED Pending on node ContainerCreating', 'MODIFIED Running on node ready',
      'MODIFIED terminating', 'DELETED terminating']);
    const rvs = w.events.map((e) => Number(e['object']['metadata']['resourceVersion']));
    assert.ok(rvs.every((rv, i) => rv > Number(listRv) && (i === 0 || rv > (rvs[i - 1] as number))), `increasing after the list: ${rvs.join(' ')}`);
  });

  test('one resourceVersion counter for Deployments and pods', async () => {
    const before = Number((await get(`/apis/apps/v1/namespaces/${NS}/deployments?fieldSelector=metadata.name%3Dweb`)).body['metadata']['resourceVersion']);
    sim.scale(NS, 'web', 1);
    const podRv = Number((await podsNow())[0]?.['metadata']['resourceVersion']);
    const deploymentRv = Number((sim.deployment(NS, 'web')?.['metadata'] as Obj)['resourceVersion']);
    assert.ok(deploymentRv > before && podRv > deploymentRv, `the spec change, then the pod: ${before} < ${deploymentRv} < ${podRv}`);
    assert.equal(Number((await get(`${PODS}?${SELECTOR}`)).body['metadata']['resourceVersion']), podRv, 'a list carries the latest revision');
    sim.scale(NS, 'web', 0);
    await until('gone', async () => (await podsNow()).length === 0);
  });

  test('a watch without resourceVersion starts with an ADDED per pod; bookmarks are empty Pods', async () => {
    const w = watch(`${PODS}?labelSelector=app%3Ddb&watch=true&allowWatchBookmarks=true&timeoutSeconds=3`);
    assert.equal(await w.status, 200);
    await until('the bookmark 2 s before the timeout', () => w.events.some((e) => e['type'] === 'BOOKMARK'));
    w.close();
    assert.deepEqual(w.events.map((e) => e['type']), ['ADDED', 'BOOKMARK']);
    assert.deepEqual(Object.keys(w.events[1]?.['object']).sort(), ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
    assert.equal(w.events[1]?.['object']['kind'], 'Pod');
  });

  test('without list/watch on pods: the real server\'s 403s; never a single pod by name; not in another namespace', async () => {
    const forbidden = (verb: string, ns = NS, user = 'system:serviceaccount:agents:old-role', name?: string): string =>
      `${name ? `pods "${name}"` : 'pods'} is forbidden: User "${user}" cannot ${verb} resource "pods" in API group "" in the namespace "${ns}"`;
    for (const [path, token, message] of [
      [`${PODS}?${SELECTOR}`, 'nopods', forbidden('list')],
      [`${PODS}?${SELECTOR}&watch=1`, 'nopods', forbidden('watch')],
      [`${PODS}/web-abc`, 'rw', forbidden('get', NS, USER, 'web-abc')],
      [`/api/v1/namespaces/elsewhere/pods?${SELECTOR}`, 'rw', forbidden('list', 'elsewhere', USER)],
    ] as const) {
      const res = await get(path, token);
      assert.equal(res.status, 403, path);
      assert.equal(res.body['reason'], 'Forbidden');
      assert.equal(res.body['message'], message);
      assert.equal(res.body['details']['kind'], 'pods');
      assert.equal(res.body['details']['group'], undefined, 'the core group is ""');
    }
    assert.equal((await get(`${PODS}?${SELECTOR}`, 'unknown')).status, 401);
  });
});

describe('the lean client\'s pod watch against the simulator', () => {
  const target = { namespace: NS, name: 'web' };

  test('rollout(): the pods by the Deployment\'s selector; startProgress reaches ready, stopProgress off', async () => {
    const kube = createKube({ kubeconfigPath: join(dir, 'rw.kubeconfig'), requestTimeoutMs: 2_000, watch: target });
    try {
      const view = await until('the Deployment and its pods listed', () => { const v = kube.rollout(target); return v?.pods ? v : undefined; });
      assert.deepEqual(view.pods, []);
      await kube.scale(target, 1);
      const seen: Rollout[] = [];
      const follow = (read: () => Rollout | undefined, done: (r: Rollout) => boolean): Promise<Rollout> => until('the rollout to end', () => {
        const r = read();
        if (r && JSON.stringify(r) !== JSON.stringify(seen.at(-1))) seen.push(r);
        return r !== undefined && done(r) ? r : undefined;
      });
      const started = await follow(() => { const v = kube.rollout(target); return v?.pods ? startProgress(v.deployment, v.pods) : undefined; }, (r) => r.phase !== 'moving');
      assert.equal(started.phase, 'ready', JSON.stringify(seen));
      assert.deepEqual(started.steps, ['pod scheduled on kube-simulator-node', 'container running', 'ready']);
      assert.ok(seen.some((r) => r.reason === 'waiting for the container to start (pulling the image)'), JSON.stringify(seen));
      await kube.scale(target, 0);
      seen.length = 0;
      const stopped = await follow(() => { const v = kube.rollout(target); return v?.pods ? stopProgress(v.pods) : undefined; }, (r) => r.phase === 'off');
      assert.deepEqual(stopped, { phase: 'off', steps: ['no pods left'] });
      assert.ok(seen.some((r) => r.reason === '1 pod shutting down'), JSON.stringify(seen));
      const mine = sim.requests.filter((r) => r.path === PODS && r.user === USER);
      assert.ok(mine.length >= 2 && mine.every((r) => r.status === 200), 'lists and watches, allowed');
    } finally {
      await kube.close();
    }
  });

  test('follow(): told of each change of the Deployment and of its pods; closed at once, again and again, it throws nothing at the process', async () => {
    const uncaught: unknown[] = [];
    const record = (e: unknown): void => void uncaught.push(e);
    process.on('uncaughtException', record);
    const kube = createKube({ kubeconfigPath: join(dir, 'rw.kubeconfig'), requestTimeoutMs: 2_000, watch: target });
    try {
      await until('the Deployment watched', () => kube.rollout(target));
      // A pod watch opened and closed before its request is under way (a rollout followed for an instant).
      for (let i = 0; i < 20; i++) kube.follow(target, () => undefined).close();
      let changes = 0;
      const following = kube.follow(target, () => void changes++);
      await until('the pods listed', () => following.view()?.pods);
      await kube.scale(target, 1);
      await until('ready, as the follower is told', () => { const v = following.view(); return v?.pods && startProgress(v.deployment, v.pods).phase === 'ready'; });
      assert.ok(changes >= 3, `${changes} changes told`);
      following.close();
      await kube.scale(target, 0);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(uncaught, []);
    } finally {
      process.off('uncaughtException', record);
      await kube.close();
    }
  });

  test('a Role without pods: the view has no pods, and the pod watch is down as forbidden', async () => {
    const kube = createKube({ kubeconfigPath: join(dir, 'nopods.kubeconfig'), requestTimeoutMs: 2_000, watch: target, watchBackoff: { initialMs: 20, maxMs: 50 } });
    try {
      await until('the Deployment watched', () => kube.rollout(target));
      await until('the pod list refused', () => sim.requests.some((r) => r.path === PODS && r.user?.endsWith(':old-role') && r.status === 403));
      assert.equal(kube.rollout(target)?.pods, undefined);
    } finally {
      await kube.close();
    }
  });
});
