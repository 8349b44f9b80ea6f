import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { startKubeSimulator, type KubeSimulator, type SimulatorChange } from '../../src/dev/kube-simulator.ts';
import { eventBody } from '../../src/kube/lean-kube.ts';

const NS = 'agents';
const SCALE = `/apis/apps/v1/namespaces/${NS}/deployments/web/scale`;
const DEPLOY = `/apis/apps/v1/namespaces/${NS}/deployments/web`;
const TOKENS = {
  'rw-token': { user: `system:serviceaccount:${NS}:toggle`, canGet: true, canPatch: true, canCreateEvents: true },
  'ro-token': { user: `system:serviceaccount:${NS}:viewer`, canGet: true, canPatch: false },
};

interface Reply { status: number; body: Record<string, unknown>; headers: Record<string, unknown> }

let dir: string;
let sim: KubeSimulator;

function call(method: string, path: string, options: { token?: string; contentType?: string; body?: unknown; abortAfterMs?: number } = {}): Promise<Reply> {
  const url = new URL(path, sim.url);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method, ca: sim.caPem, agent: false,
      ...(options.abortAfterMs !== undefined ? { signal: AbortSignal.timeout(options.abortAfterMs) } : {}),
      headers: {
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        ...(options.contentType ? { 'content-type': options.contentType } : {}),
        ...(payload ? { 'content-length': Buffer.byteLength(payload) } : {}),
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode ?? 0, headers: res.headers,
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
      }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** A request whose body is sent as it is (to send what is not JSON). */
function callRaw(method: string, path: string, contentType: string, text: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, sim.url), {
      method, ca: sim.caPem, agent: false,
      headers: { authorization: 'Bearer rw-token', 'content-type': contentType, 'content-length': Buffer.byteLength(text) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

const rw = { token: 'rw-token' };
const merge = (replicas: unknown) => ({ ...rw, contentType: 'application/merge-patch+json', body: { spec: { replicas } } });
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kube-sim-test-'));
  sim = await startKubeSimulator({
    dir, readyDelayMs: 150, tokens: TOKENS,
    deployments: [{ namespace: NS, name: 'web', replicas: 0, image: 'ghcr.io/example/openclaw:1.2' }],
  });
});

after(async () => {
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('kube simulator', () => {
  test('serves TLS with a generated CA, and writes a kubeconfig that names it', async () => {
    assert.match(sim.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const config = parseYaml(await readFile(sim.kubeconfigPath, 'utf8')) as {
      clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
      users: Array<{ user: { token: string } }>;
      'current-context': string;
    };
    assert.equal(config.clusters[0]?.cluster.server, sim.url);
    assert.equal(Buffer.from(config.clusters[0]!.cluster['certificate-authority-data'], 'base64').toString(), sim.caPem);
    assert.equal(config.users[0]?.user.token, 'rw-token');
    assert.equal((await stat(sim.kubeconfigPath)).mode & 0o777, 0o600);

    const other = join(dir, 'ro.yaml');
    await sim.writeKubeconfig(other, 'ro-token');
    assert.match(await readFile(other, 'utf8'), /token: ro-token/);

    const version = await call('GET', '/version');
    assert.equal(version.status, 200);
    assert.equal(version.body['major'], '1');
  });

  test('GET deployment returns a realistic object, omitting zero status counts', async () => {
    const r = await call('GET', DEPLOY, rw);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    const d = r.body as { kind: string; apiVersion: string; metadata: Record<string, unknown>; spec: Record<string, unknown>; status: Record<string, unknown> };
    assert.equal(d.kind, 'Deployment');
    assert.equal(d.apiVersion, 'apps/v1');
    assert.equal(d.metadata['name'], 'web');
    assert.equal(d.metadata['namespace'], NS);
    assert.match(String(d.metadata['uid']), /^[0-9a-f-]{36}$/);
    assert.match(String(d.metadata['resourceVersion']), /^\d+$/);
    assert.equal(d.spec['replicas'], 0);
    assert.deepEqual(d.spec['selector'], { matchLabels: { app: 'web' } });
    assert.match(JSON.stringify(d.spec['template']), /openclaw:1\.2/);
    assert.equal(d.status['observedGeneration'], 1);
    for (const zero of ['replicas', 'readyReplicas', 'availableReplicas', 'updatedReplicas']) {
      assert.equal(zero in d.status, false, `${zero} should be omitted at 0`);
    }
    assert.equal(d.status['terminatingReplicas'], 0, 'v1.37 reports terminatingReplicas, 0 included');
    assert.deepEqual((d.status['conditions'] as Array<{ type: string }>).map((c) => c.type), ['Progressing', 'Available']);
    assert.deepEqual(sim.deployment(NS, 'web'), r.body);
  });

  test('GET scale at 0 answers an autoscaling/v1 Scale with an empty spec', async () => {
    const r = await call('GET', SCALE, rw);
    assert.equal(r.status, 200);
    assert.equal(r.body['kind'], 'Scale');
    assert.equal(r.body['apiVersion'], 'autoscaling/v1');
    assert.deepEqual(r.body['spec'], {});
    assert.deepEqual(r.body['status'], { replicas: 0, selector: 'app=web' });
  });

  test('merge patch scales up; the controller makes it ready after the delay and reports both changes', async () => {
    const changes: SimulatorChange[] = [];
    const off = sim.onChange((c) => changes.push(c));
    const rvBefore = Number((sim.deployment(NS, 'web')!['metadata'] as Record<string, unknown>)['resourceVersion']);
    const r = await call('PATCH', SCALE, merge(1));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body['spec'], { replicas: 1 });
    assert.equal(sim.replicas(NS, 'web'), 1);
    const mid = sim.deployment(NS, 'web') as { metadata: Record<string, unknown>; status: Record<string, unknown> };
    assert.ok(Number(mid.metadata['resourceVersion']) > rvBefore);
    assert.equal(mid.metadata['generation'], 2);
    assert.equal(mid.status['readyReplicas'], undefined, 'not ready before the delay');
    assert.deepEqual(changes, [{ type: 'scaled', namespace: NS, name: 'web', from: 0, to: 1 }]);
    await delay(250);
    const done = sim.deployment(NS, 'web') as { status: Record<string, unknown> };
    assert.equal(done.status['readyReplicas'], 1);
    assert.equal(done.status['availableReplicas'], 1);
    assert.equal(done.status['updatedReplicas'], 1);
    assert.deepEqual(changes[1], { type: 'settled', namespace: NS, name: 'web', ready: 1, desired: 1 });
    off();
  });

  test('strategic merge patch and JSON patch (RFC 6902) work too; a failed test op changes nothing', async () => {
    const s = await call('PATCH', SCALE, { ...rw, contentType: 'application/strategic-merge-patch+json', body: { spec: { replicas: 2 } } });
    assert.equal(s.status, 200);
    assert.equal(sim.replicas(NS, 'web'), 2);
    const j = await call('PATCH', SCALE, { ...rw, contentType: 'application/json-patch+json',
      body: [{ op: 'test', path: '/spec/replicas', value: 2 }, { op: 'replace', path: '/spec/replicas', value: 0 }] });
    assert.equal(j.status, 200);
    assert.deepEqual(j.body['spec'], {});
    assert.equal(sim.replicas(NS, 'web'), 0);
    const bad = await call('PATCH', SCALE, { ...rw, contentType: 'application/json-patch+json',
      body: [{ op: 'test', path: '/spec/replicas', value: 5 }, { op: 'replace', path: '/spec/replicas', value: 3 }] });
    assert.equal(bad.status, 422);
    assert.equal(sim.replicas(NS, 'web'), 0);
  });

  // The answers below were read off a real kube-apiserver v1.37 (test/integration/kubernetes-rbac.test.ts).
  test('an unknown patch content type gets the real server\'s bare 415', async () => {
    const r = await call('PATCH', SCALE, { ...rw, contentType: 'application/json', body: { spec: { replicas: 1 } } });
    assert.equal(r.status, 415);
    assert.deepEqual(r.body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: '415: Unsupported Media Type',
      reason: 'UnsupportedMediaType', details: {}, code: 415 });
    assert.equal(sim.replicas(NS, 'web'), 0);
  });

  test('server-side apply of the Scale works, and needs a fieldManager', async () => {
    const scale = { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'web', namespace: NS }, spec: { replicas: 0 } };
    const missing = await call('PATCH', SCALE, { ...rw, contentType: 'application/apply-patch+yaml', body: scale });
    assert.equal(missing.status, 422);
    assert.equal(missing.body['message'], 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
    const applied = await call('PATCH', `${SCALE}?fieldManager=test`, { ...rw, contentType: 'application/apply-patch+yaml', body: scale });
    assert.equal(applied.status, 200);
    assert.deepEqual(applied.body['spec'], {});
  });

  test('a replica count that is not an int32 is a 422 quoting the patched Scale, for every patch type', async () => {
    for (const [contentType, body, kind] of [
      ['application/merge-patch+json', { spec: { replicas: 'two' } }, 'string'],
      ['application/merge-patch+json', { spec: { replicas: 1.5 } }, 'number 1.5'],
      ['application/strategic-merge-patch+json', { spec: { replicas: 3000000000 } }, 'number 3000000000'],
      ['application/json-patch+json', [{ op: 'replace', path: '/spec/replicas', value: true }], 'bool'],
    ] as const) {
      const r = await call('PATCH', SCALE, { ...rw, contentType, body });
      assert.equal(r.status, 422, contentType);
      assert.equal(r.body['reason'], 'Invalid');
      const message = String(r.body['message']);
      assert.match(message, /^ "" is invalid: patch: Invalid value: "\{\\"apiVersion\\":\\"autoscaling\/v1\\",\\"kind\\":\\"Scale\\",\\"metadata\\":\{\\"name\\":\\"web\\"/);
      assert.ok(message.endsWith(`: json: cannot unmarshal ${kind} into Go struct field ScaleSpec.spec.replicas of type int32`), message);
      assert.deepEqual(r.body['details'], { causes: [{ reason: 'FieldValueInvalid', message: message.slice(' "" is invalid: patch: '.length), field: 'patch' }] });
    }
    assert.equal(sim.replicas(NS, 'web'), 0);
  });

  test('bodies that cannot be decoded, and JSON patches that cannot be applied, get the real messages', async () => {
    const cases: Array<[string, unknown, number, string]> = [
      ['application/merge-patch+json', 'not json', 400, 'invalid JSON patch'],
      ['application/json-patch+json', 'not json', 400, 'invalid JSON patch'],
      ['application/merge-patch+json', [1, 2], 400, 'error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}'],
      ['application/json-patch+json', { spec: { replicas: 1 } }, 400, 'error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp'],
      // At 0 replicas the Scale has no spec.replicas to remove or test.
      ['application/json-patch+json', [{ op: 'remove', path: '/spec/replicas' }], 422, 'the server rejected our request due to an error in our request'],
      ['application/json-patch+json', [{ op: 'test', path: '/spec/replicas', value: 0 }], 422, 'the server rejected our request due to an error in our request'],
    ];
    for (const [contentType, body, status, message] of cases) {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const r = await callRaw('PATCH', SCALE, contentType, text);
      assert.equal(r.status, status, `${contentType} ${text}`);
      assert.equal(r.body['message'], message);
    }
    assert.equal(sim.replicas(NS, 'web'), 0);
  });

  test('missing or unknown token: 401 Unauthorized Status', async () => {
    for (const token of [undefined, 'nope']) {
      const r = await call('GET', DEPLOY, token ? { token } : {});
      assert.equal(r.status, 401);
      assert.deepEqual(r.body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    }
  });

  test('a read-only token may GET but gets the real 403 Status on PATCH', async () => {
    assert.equal((await call('GET', SCALE, { token: 'ro-token' })).status, 200);
    const r = await call('PATCH', SCALE, { ...merge(1), token: 'ro-token' });
    assert.equal(r.status, 403);
    assert.deepEqual(r.body, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: `deployments.apps "web" is forbidden: User "system:serviceaccount:${NS}:viewer" cannot patch resource "deployments/scale" in API group "apps" in the namespace "${NS}"`,
      reason: 'Forbidden', details: { name: 'web', group: 'apps', kind: 'deployments' }, code: 403,
    });
    assert.equal(sim.replicas(NS, 'web'), 0);
  });

  test('404 NotFound for an unknown deployment, and for an unknown path', async () => {
    const r = await call('GET', `/apis/apps/v1/namespaces/${NS}/deployments/ghost`, rw);
    assert.equal(r.status, 404);
    assert.equal(r.body['reason'], 'NotFound');
    assert.equal(r.body['message'], 'deployments.apps "ghost" not found');
    assert.equal((await call('GET', '/api/v1/namespaces', rw)).status, 404);
  });

  test('422 Invalid for negative replicas', async () => {
    const r = await call('PATCH', SCALE, merge(-1));
    assert.equal(r.status, 422);
    assert.equal(r.body['reason'], 'Invalid');
    assert.match(String(r.body['message']), /spec\.replicas: Invalid value: -1/);
    assert.equal(sim.replicas(NS, 'web'), 0);
  });

  test('PUT scale: 409 Conflict on a stale resourceVersion, 200 with the current one', async () => {
    const current = await call('GET', SCALE, rw);
    const rv = (current.body['metadata'] as Record<string, unknown>)['resourceVersion'];
    const stale = await call('PUT', SCALE, { ...rw, contentType: 'application/json',
      body: { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'web', namespace: NS, resourceVersion: '1' }, spec: { replicas: 1 } } });
    assert.equal(stale.status, 409);
    assert.equal(stale.body['reason'], 'Conflict');
    assert.match(String(stale.body['message']), /the object has been modified/);
    const fresh = await call('PUT', SCALE, { ...rw, contentType: 'application/json',
      body: { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'web', namespace: NS, resourceVersion: rv }, spec: { replicas: 1 } } });
    assert.equal(fresh.status, 200);
    assert.equal(sim.replicas(NS, 'web'), 1);
  });

  test('scale down is delayed too, so "stopping" can be observed', async () => {
    await delay(200); // let the previous scale-up settle
    assert.equal((await call('PATCH', SCALE, merge(0))).status, 200);
    const mid = sim.deployment(NS, 'web') as { spec: Record<string, unknown>; status: Record<string, unknown> };
    assert.equal(mid.spec['replicas'], 0);
    assert.equal(mid.status['readyReplicas'], 1);
    await delay(250);
    const done = sim.deployment(NS, 'web') as { status: Record<string, unknown> };
    assert.equal('readyReplicas' in done.status, false);
  });

  test('setFailure: next N matching requests fail with a Status, then it recovers; the request log records it all', async () => {
    const start = sim.requests.length;
    sim.setFailure({ status: 503, count: 2, match: (r) => r.method === 'GET' });
    const a = await call('GET', DEPLOY, rw);
    const b = await call('GET', SCALE, rw);
    const c = await call('GET', DEPLOY, rw);
    assert.deepEqual([a.status, b.status, c.status], [503, 503, 200]);
    assert.equal(a.body['reason'], 'ServiceUnavailable');
    assert.deepEqual(sim.requests.slice(start).map((r) => [r.method, r.status]), [['GET', 503], ['GET', 503], ['GET', 200]]);
    assert.equal(sim.requests.at(-1)?.user, `system:serviceaccount:${NS}:toggle`);
  });

  test('setFailure close: the connection is dropped without an answer', async () => {
    sim.setFailure({ mode: 'close' });
    await assert.rejects(call('GET', DEPLOY, rw), (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET');
    assert.equal((await call('GET', DEPLOY, rw)).status, 200);
  });

  test('simulator fault answer-late: the PATCH is applied at once, its answer comes after the delay', async () => {
    await call('PATCH', SCALE, merge(0));
    sim.setFailure({ mode: 'answer-late', delayMs: 300, match: (r) => r.method === 'PATCH' });
    const started = Date.now();
    const answer = call('PATCH', SCALE, merge(2));
    await delay(100);
    assert.equal(sim.replicas(NS, 'web'), 2, 'applied before the answer');
    assert.equal(sim.requests.at(-1)?.status, 0);
    const reply = await answer;
    assert.ok(Date.now() - started >= 300);
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body['spec'], { replicas: 2 });
  });

  test('simulator fault apply-then-close: applied, then the connection drops without an answer', async () => {
    sim.setFailure({ mode: 'apply-then-close', match: (r) => r.method === 'PATCH' });
    await assert.rejects(call('PATCH', SCALE, merge(3)), (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET');
    assert.equal(sim.replicas(NS, 'web'), 3);
    assert.equal(sim.requests.at(-1)?.status, 0);
  });

  test('simulator fault apply-late: applied after the delay if the client waits, never if it gave up', async () => {
    sim.setFailure({ mode: 'apply-late', delayMs: 200, match: (r) => r.method === 'PATCH' });
    const waited = call('PATCH', SCALE, merge(1));
    await delay(100);
    assert.equal(sim.replicas(NS, 'web'), 3, 'not applied yet');
    assert.equal((await waited).status, 200);
    assert.equal(sim.replicas(NS, 'web'), 1);

    sim.setFailure({ mode: 'apply-late', delayMs: 200, match: (r) => r.method === 'PATCH' });
    await assert.rejects(call('PATCH', SCALE, { ...merge(0), abortAfterMs: 50 }));
    await delay(300);
    assert.equal(sim.replicas(NS, 'web'), 1, 'the request was cancelled with its client');
    assert.equal(sim.requests.at(-1)?.status, 0);
    await call('PATCH', SCALE, merge(0));
    await delay(200); // let the scale-down settle
  });

  test('addDeployment / deleteDeployment', async () => {
    sim.addDeployment({ namespace: 'other', name: 'api', replicas: 2 });
    const r = await call('GET', '/apis/apps/v1/namespaces/other/deployments/api/scale', rw);
    assert.deepEqual(r.body['spec'], { replicas: 2 });
    assert.equal(sim.deleteDeployment('other', 'api'), true);
    assert.equal((await call('GET', '/apis/apps/v1/namespaces/other/deployments/api', rw)).status, 404);
  });
});

describe('Events: the answers read off kube-apiserver v1.37 (the real-server comparison sends the same)', () => {
  const EVENTS = `/apis/events.k8s.io/v1/namespaces/${NS}/events`;
  const event = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    ...eventBody({ namespace: NS, name: 'web' }, { reason: 'ScaledByChat', action: 'Start', note: 'start by @a:x in !r:x' }, undefined, new Date()),
    metadata: { name, namespace: NS }, ...extra,
  });
  const json = { contentType: 'application/json' };

  test('created: 201 and stored; dry run: 201 and not stored; the same name again: 409', async () => {
    const created = await call('POST', EVENTS, { token: 'rw-token', ...json, body: event('web.one') });
    assert.equal(created.status, 201);
    assert.equal(created.body['kind'], 'Event');
    assert.equal(created.body['note'], 'start by @a:x in !r:x');
    const dry = await call('POST', `${EVENTS}?dryRun=All`, { token: 'rw-token', ...json, body: event('web.two') });
    assert.equal(dry.status, 201);
    assert.deepEqual(sim.events(NS).map((e) => (e['metadata'] as { name: string }).name), ['web.one']);
    const again = await call('POST', EVENTS, { token: 'rw-token', ...json, body: event('web.one') });
    assert.equal(again.status, 409);
    assert.equal(again.body['message'], 'events.events.k8s.io "web.one" already exists');
  });

  test('refused without create on events (RBAC), 401 without a token', async () => {
    const ro = await call('POST', EVENTS, { token: 'ro-token', ...json, body: event('web.three') });
    assert.equal(ro.status, 403);
    assert.equal(ro.body['message'], `events.events.k8s.io is forbidden: User "system:serviceaccount:${NS}:viewer" cannot create resource "events" in API group "events.k8s.io" in the namespace "${NS}"`);
    assert.equal((await call('POST', EVENTS, { ...json, body: event('web.four') })).status, 401);
  });

  test('invalid: the server\'s 422 messages and the 400 of an eventTime in milliseconds or another namespace', async () => {
    const { action: _action, ...noAction } = event('openclaw.fixed');
    const missing = await call('POST', EVENTS, { token: 'rw-token', ...json, body: noAction });
    assert.equal(missing.status, 422);
    assert.equal(missing.body['message'], 'Event "openclaw.fixed" is invalid: action: Required value');
    const bare = await call('POST', EVENTS, { token: 'rw-token', ...json, body: { apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: { name: 'openclaw.x2' }, reason: 'R', regarding: { namespace: NS } } });
    assert.equal(bare.body['message'], 'Event "openclaw.x2" is invalid: [eventTime: Required value, type: Invalid value: "": has invalid value: ]');
    const millis = await call('POST', EVENTS, { token: 'rw-token', ...json, body: event('web.five', { eventTime: '2026-11-30T00:56:41.588Z' }) });
    assert.equal(millis.status, 400);
    assert.equal(millis.body['message'], 'Event in version "v1" cannot be handled as a Event: parsing time "2026-11-30T00:56:41.588Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".588Z" as ".000000"');
    const elsewhere = await call('POST', EVENTS, { token: 'rw-token', ...json, body: event('web.six', { metadata: { name: 'web.six', namespace: 'other' } }) });
    assert.equal(elsewhere.body['message'], 'the namespace of the provided object does not match the namespace sent on the request');
    const long = await call('POST', EVENTS, { token: 'rw-token', ...json, body: event('web.seven', { reportingInstance: '', reason: 'R'.repeat(130) }) });
    assert.equal(long.body['message'], 'Event "web.seven" is invalid: [reportingInstance: Required value, reason: Invalid value: "": can have at most 128 characters]');
  });
});
