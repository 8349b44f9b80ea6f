/**
 * The watch: first the simulator's list and watch (raw HTTP, the shapes the real server showed),
 * then the client answering from it: status and the "from" of a scale without a request, changes
 * made behind its back, deletion, reconnection from the last resourceVersion, relist after 410,
 * a silent connection, an API server that goes away and comes back, a Role without watch.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';
import { KubeError, type DeploymentTarget } from '../../src/kube/kube.ts';
import { createKube, type LeanKube, type LeanKubeOptions } from '../../src/kube/lean-kube.ts';
import { createLogger } from '../../src/log.ts';

const NS = 'agents';
const web: DeploymentTarget = { namespace: NS, name: 'web' };
const USER = `system:serviceaccount:${NS}:toggle`;
const COLLECTION = `/apis/apps/v1/namespaces/${NS}/deployments`;
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let sim: KubeSimulator;

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await delay(10);
  }
}

/** A raw watch: the lines it received, and a way to close it. */
function rawWatch(query: string, token = 'rw'): { lines: Array<Record<string, any>>; status: Promise<number>; ended: Promise<void>; close: () => void } {
  const lines: Array<Record<string, any>> = [];
  let close = (): void => undefined;
  let statusOf: (s: number) => void = () => undefined;
  const status = new Promise<number>((r) => { statusOf = r; });
  const ended = new Promise<void>((resolve) => {
    const req = request(new URL(`${COLLECTION}?${query}`, sim.url), { ca: sim.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      statusOf(res.statusCode ?? 0);
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        pending += chunk;
        for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
          const line = pending.slice(0, i).trim();
          pending = pending.slice(i + 1);
          if (line) lines.push(JSON.parse(line) as Record<string, any>);
        }
      });
      res.on('end', resolve);
      res.on('error', () => resolve());
    });
    req.on('error', () => resolve());
    req.end();
    close = () => req.destroy();
  });
  return { lines, status, ended, close };
}

async function getJson(path: string, token = 'rw'): Promise<{ status: number; body: Record<string, any> }> {
  return new Promise((resolve, reject) => {
    request(new URL(path, sim.url), { ca: sim.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, any> }));
    }).on('error', reject).end();
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kube-watch-test-'));
  sim = await startKubeSimulator({
    dir, readyDelayMs: 100, bookmarkIntervalMs: 300,
    deployments: [{ namespace: NS, name: 'web', replicas: 0 }, { namespace: NS, name: 'other', replicas: 0 }],
    tokens: {
      rw: { user: USER, canGet: true, canPatch: true, canWatch: true },
      old: { user: USER, canGet: true, canPatch: true },
    },
  });
});

after(async () => {
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('the simulator: list and watch as the real API server answers them', () => {
  test('a list narrowed to one name: the collection\'s resourceVersion, items without kind', async () => {
    const { status, body } = await getJson(`${COLLECTION}?fieldSelector=metadata.name%3Dweb`);
    assert.equal(status, 200);
    assert.equal(body['kind'], 'DeploymentList');
    assert.deepEqual(body['items'].map((i: any) => [i.metadata.name, i.kind]), [['web', undefined]]);
    const web = sim.deployment(NS, 'web') as { metadata: { resourceVersion: string } };
    assert.ok(Number(body['metadata']['resourceVersion']) >= Number(web.metadata.resourceVersion));
  });

  test('a list or watch of the whole namespace is refused; so is one without the verbs', async () => {
    const all = await getJson(COLLECTION);
    assert.equal(all.status, 403);
    assert.equal(all.body['message'], `deployments.apps is forbidden: User "${USER}" cannot list resource "deployments" in API group "apps" in the namespace "${NS}"`);
    const old = await getJson(`${COLLECTION}?watch=1&fieldSelector=metadata.name%3Dweb`, 'old');
    assert.equal(old.status, 403);
    assert.equal(old.body['message'], `deployments.apps "web" is forbidden: User "${USER}" cannot watch resource "deployments" in API group "apps" in the namespace "${NS}"`);
  });

  test('watch: ADDED without a resourceVersion, then MODIFIED, DELETED, BOOKMARKs, and a clean end at timeoutSeconds', async () => {
    const w = rawWatch('watch=1&fieldSelector=metadata.name%3Dweb&allowWatchBookmarks=true&timeoutSeconds=3');
    assert.equal(await w.status, 200);
    await until('ADDED', () => w.lines.length >= 1);
    sim.scale(NS, 'web', 2);
    sim.scale(NS, 'other', 2); // not this watch's name
    await until('MODIFIED', () => w.lines.some((l) => l['type'] === 'MODIFIED'));
    await until('a bookmark', () => w.lines.some((l) => l['type'] === 'BOOKMARK'));
    sim.deleteDeployment(NS, 'web');
    await w.ended;
    const types = w.lines.map((l) => l['type'] as string);
    assert.equal(types[0], 'ADDED');
    assert.ok(types.includes('DELETED'), types.join());
    assert.ok(w.lines.every((l) => l['type'] === 'BOOKMARK' || l['object']['metadata']['name'] === 'web'));
    const bookmark = w.lines.find((l) => l['type'] === 'BOOKMARK')!['object'];
    assert.deepEqual(Object.keys(bookmark['metadata']), ['resourceVersion']);
    assert.equal(bookmark['kind'], 'Deployment');
    sim.addDeployment({ namespace: NS, name: 'web', replicas: 0 });
    sim.scale(NS, 'other', 0);
  });

  test('watch from a resourceVersion: only later changes; after compaction, one ERROR 410 Expired and the end', async () => {
    const list = await getJson(`${COLLECTION}?fieldSelector=metadata.name%3Dweb`);
    const rv = list.body['metadata']['resourceVersion'] as string;
    const w = rawWatch(`watch=1&fieldSelector=metadata.name%3Dweb&resourceVersion=${rv}`);
    assert.equal(await w.status, 200);
    sim.scale(NS, 'web', 1);
    await until('MODIFIED', () => w.lines.length >= 1);
    assert.equal(w.lines[0]?.['type'], 'MODIFIED');
    sim.dropWatches({ compact: true });
    await w.ended;
    const stale = rawWatch(`watch=1&fieldSelector=metadata.name%3Dweb&resourceVersion=${rv}`);
    assert.equal(await stale.status, 200);
    await stale.ended;
    assert.equal(stale.lines.length, 1);
    assert.equal(stale.lines[0]?.['type'], 'ERROR');
    assert.deepEqual({ ...stale.lines[0]?.['object'], message: undefined }, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: undefined, reason: 'Expired', code: 410 });
    assert.match(stale.lines[0]?.['object']['message'], new RegExp(`^too old resource version: ${rv} \\(\\d+\\)$`));
    sim.scale(NS, 'web', 0);
  });
});

describe('the client with a watch', () => {
  const kubes: LeanKube[] = [];
  let sent: Array<{ method: string; path: string }>;
  const open = (extra: Partial<LeanKubeOptions> = {}): LeanKube => {
    const kube = createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: 1_000, watch: web,
      watchBackoff: { initialMs: 50, maxMs: 200 }, onRequest: (method, path) => void sent.push({ method, path }), ...extra });
    kubes.push(kube);
    return kube;
  };
  const live = (kube: LeanKube): Promise<boolean> => until('the watch live', () => kube.watching);

  before(() => { sent = []; });
  after(async () => { await Promise.all(kubes.map((k) => k.close())); });

  test('status and ping from the watch: no request; a scale is exactly one PATCH, its "from" the watched count', async () => {
    sim.scale(NS, 'web', 0);
    const kube = open();
    await live(kube);
    await until('settled', () => sim.deployment(NS, 'web')?.['status'] !== undefined);
    sent.length = 0;
    assert.deepEqual(await kube.status(web), { desired: 0, ready: 0, available: 0, updated: 0, state: 'off' });
    await kube.ping(web);
    assert.deepEqual([...sent], []);
    assert.deepEqual(await kube.scale(web, 1), { previous: 0, desired: 1 });
    assert.deepEqual(sent.map((r) => `${r.method} ${r.path}`), [`PATCH ${COLLECTION}/web/scale`]);
    // The very next status already shows the write (it waits for the watch to deliver it).
    assert.equal((await kube.status(web)).desired, 1);
    const started = Date.now();
    for (;;) {
      if ((await kube.status(web)).state === 'running') break;
      assert.ok(Date.now() - started < 3_000, 'running within 3 s');
      await delay(20);
    }
    assert.deepEqual(sent.map((r) => r.method), ['PATCH']);
    assert.deepEqual(await kube.scale(web, 0), { previous: 1, desired: 0 });
    await kube.close();
    await until('close() ends the watch', () => sim.openWatches === 0);
  });

  test('a change behind the bot\'s back shows in status without a request; so does a deletion and a re-creation', async () => {
    const kube = open();
    await live(kube);
    sent.length = 0;
    sim.scale(NS, 'web', 3);
    for (let i = 0; i < 100 && (await kube.status(web)).desired !== 3; i++) await delay(10);
    assert.equal((await kube.status(web)).desired, 3);
    sim.deleteDeployment(NS, 'web');
    let gone: unknown;
    for (let i = 0; i < 100; i++) {
      gone = await kube.status(web).then(() => undefined, (e: unknown) => e);
      if (gone) break;
      await delay(10);
    }
    assert.ok(gone instanceof KubeError && gone.kind === 'not-found', String(gone));
    assert.equal(gone.human, `deployment web not found in namespace ${NS}`);
    sim.addDeployment({ namespace: NS, name: 'web', replicas: 0 });
    for (let i = 0; i < 100 && (await kube.status(web).catch(() => undefined)) === undefined; i++) await delay(10);
    assert.equal((await kube.status(web)).desired, 0);
    assert.deepEqual([...sent], [], 'all of it from the watch');
  });

  test('a dropped watch reconnects from the last resourceVersion (no list); after 410 it lists again and catches up', async () => {
    const kube = open();
    await live(kube);
    const stats = kube.watchStats!;
    const lists = stats.lists;
    sim.dropWatches();
    await until('watching again', () => stats.watches >= 2 && sim.openWatches > 0);
    assert.equal(stats.lists, lists, 'no list: the watch went on from where it was');
    // A change while nobody watches, then the history gone (as after an API server restart): 410, only a list can tell.
    sim.dropWatches();
    sim.scale(NS, 'web', 2);
    sim.dropWatches({ compact: true });
    await until('relisted', () => stats.relists >= 1 && stats.lists > lists && sim.openWatches > 0);
    for (let i = 0; i < 200 && (await kube.status(web)).desired !== 2; i++) await delay(10);
    assert.equal((await kube.status(web)).desired, 2);
    sim.scale(NS, 'web', 0);
  });

  test('a watch that goes silent is given up after the idle timeout and opened again', async () => {
    const kube = open({ watchIdleTimeoutMs: 400 });
    await live(kube);
    const stats = kube.watchStats!;
    const before = stats.watches;
    sim.freezeWatches();
    // Bookmarks stop too (300 ms apart otherwise): after 400 ms of nothing the client reconnects.
    await until('a new watch', () => stats.watches > before, 3_000);
  });

  test('the API server gone: status and ping say unreachable; back on the same port: the watch returns and ping needs no request again', async () => {
    const goneDir = join(dir, 'restart');
    const first = await startKubeSimulator({ dir: goneDir, readyDelayMs: 0, deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
      tokens: { rw: { user: USER, canGet: true, canPatch: true, canWatch: true } } });
    const port = Number(new URL(first.url).port);
    const kube = createKube({ kubeconfigPath: first.kubeconfigPath, requestTimeoutMs: 500, watch: web, watchBackoff: { initialMs: 100, maxMs: 5_000 } });
    kubes.push(kube);
    await until('live', () => kube.watching);
    await first.stop();
    await until('the watch lost', () => !kube.watching);
    const down = await kube.ping(web).then(() => undefined, (e: unknown) => e);
    assert.ok(down instanceof KubeError && down.kind === 'unreachable', String(down));
    assert.equal(down.human, `the Kubernetes API at ${first.url} is unreachable (ECONNREFUSED)`);
    const status = await kube.status(web).then(() => undefined, (e: unknown) => e);
    assert.ok(status instanceof KubeError && status.kind === 'unreachable');
    const second = await startKubeSimulator({ dir: goneDir, port, readyDelayMs: 0, deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
      tokens: { rw: { user: USER, canGet: true, canPatch: true, canWatch: true } } });
    second.scale(NS, 'web', 4); // changed while the bot could not see it
    try {
      // The first ping after the restart asks the API and wakes the watch out of its backoff.
      await kube.ping(web);
      await until('the watch back', () => kube.watching, 2_000);
      const requests = second.requests.length;
      await kube.ping(web);
      assert.equal((await kube.status(web)).desired, 4, 'caught up with the change made while it was away');
      assert.equal(second.requests.length, requests);
    } finally {
      await kube.close();
      await second.stop();
    }
  });

  test('a Role without list/watch: status asks the API each time, one warning says why, and retries back off beyond the network maximum', async () => {
    const path = join(dir, 'old-role.yaml');
    await sim.writeKubeconfig(path, 'old');
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done(); } });
    const kube = open({ kubeconfigPath: path, logger: createLogger({ level: 'info' }, sink), watchBackoff: { initialMs: 50, maxMs: 100 } });
    await until('refused', () => (kube.watchStats?.lists ?? 0) >= 1 && lines.length > 0);
    sent.length = 0;
    assert.equal((await kube.status(web)).desired, 0);
    assert.deepEqual(sent.map((r) => `${r.method} ${r.path}`), [`GET ${COLLECTION}/web`]);
    const warnings = lines.filter((l) => l['level'] === 40);
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]?.['msg']), /^kubernetes: cannot watch the Deployment \(forbidden: the service account may not list deployments in namespace agents\); .*role\.yaml$/);
    // A network failure here would be retried every 50-100 ms (its maximum); a refusal keeps doubling:
    // 25-50, 50-100, 100-200, 200-400, 400-800 ms… so at most 6 attempts in 1.5 s rather than ~20.
    await delay(1_500);
    const lists = kube.watchStats?.lists ?? 0;
    assert.ok(lists >= 2 && lists <= 6, `${lists} lists`);
  });

  test('after a write whose answer was lost, status reads the API, not the watch', async () => {
    const kube = open();
    await live(kube);
    sim.setFailure({ mode: 'apply-then-close', match: (r) => r.method === 'PATCH' });
    const lost = await kube.scale(web, 1).then(() => undefined, (e: unknown) => e);
    assert.ok(lost instanceof KubeError && lost.kind === 'unreachable', String(lost));
    sent.length = 0;
    assert.equal((await kube.status(web)).desired, 1);
    assert.deepEqual(sent.map((r) => r.method), ['GET']);
    sim.scale(NS, 'web', 0);
  });
});
