/**
 * The bot against a REAL Kubernetes control plane (src/dev/kube-testbed: etcd, kube-apiserver with
 * RBAC, controller-manager, scheduler, and kwok as a fake kubelet: no containers run), driven
 * through a real Synapse. The project's own RBAC manifests are applied as kustomize renders them;
 * the bot authenticates with a bound, expiring token from the TokenRequest API, read from a
 * directory laid out like a pod's, exactly as in a cluster. Its client watches the Deployment, so
 * status and readiness cost no request: changes made behind its back (kubectl) show through the
 * watch, and after an API server restart it lists again (410) and goes on.
 *
 * The binaries are built on first use (~20-25 min cold; `node src/dev/kube-testbed/build.ts`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isEdit } from '../../src/matrix/events.ts';
import type { App } from '../../src/app.ts';
import type { Human, TimelineEvent } from '../../src/dev/human.ts';
import { testbedBuilt } from '../../src/dev/kube-testbed/build.ts';
import {
  actAsBotPod, applyBotRbac, BOT_NAMESPACE, BOT_SERVICE_ACCOUNT, deletePod, jwtClaims, requestPodToken, targetDeployment, writeServiceAccountFiles, type PodToken,
} from '../../src/dev/kube-testbed/project-manifests.ts';
import { SERVICE_ACCOUNT_ISSUER } from '../../src/dev/kube-testbed/flags.ts';
import { FakeClock } from '../../src/dev/fake-clock.ts';
import { sharedKubeTestbed, type KubeTestbed } from '../../src/dev/kube-testbed/testbed.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';
import { createKube, type LeanKube } from '../../src/kube/lean-kube.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { Writable } from 'node:stream';
import type { KubeObject } from '../../src/dev/kube-testbed/api-client.ts';

/** The bot's notices, not the edits of its start/stop replies (issue 11's progress): those are checked where they matter. */
const isNotice = (sender: string) => (e: TimelineEvent): boolean => e.sender === sender && e.type === 'm.room.message' && e.content['msgtype'] === 'm.notice' && !isEdit(e.content);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A cold build of the binaries runs inside `before` when they are missing. */
const SETUP_TIMEOUT_MS = testbedBuilt() ? 180_000 : 60 * 60_000;

describe('the bot against a real Kubernetes control plane', { timeout: SETUP_TIMEOUT_MS + 300_000 }, () => {
  let tb: KubeTestbed;
  let stack: Stack;
  let app: App;
  let alice: Human;
  let room: string;
  let bot: string;
  let saRoot: string;
  let token: PodToken;
  let rbac: KubeObject[];
  let kube: LeanKube | undefined;
  /** Every request the bot's Kubernetes client sent, in order. */
  const sent: Array<{ method: string; path: string }> = [];
  let restoreEnv: (() => void) | undefined;
  const deploymentPath = `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${DEPLOYMENT}`;
  /** The timed runs' clock: real time until a test moves it. */
  const clock = new FakeClock(Date.now());

  /** The bot as in a pod: in-cluster config, the token file under saRoot, its client watching the target as app.ts makes it. */
  const startBot = async (env: Record<string, string> = {}, logger?: Logger): Promise<void> => {
    await kube?.close();
    kube = createKube({ requestTimeoutMs: 5_000, serviceAccountRoot: saRoot, watch: { namespace: env['DEPLOYMENT_NAMESPACE'] ?? NAMESPACE, name: DEPLOYMENT },
      onRequest: (method, path) => void sent.push({ method, path }) });
    ({ app } = await stack.startBot({ env: { KUBE_TIMEOUT_SECONDS: '5', ...env }, deps: { kube, clock }, ...(logger ? { logger } : {}) }));
    // After a restart Synapse may still be in its retry mode towards the bot (for events it pushed
    // while the bot was down, its buttons among them): a command sent then can wait for the next event.
    await stack.waitForAppserviceUp(30_000);
  };
  const kubectl = async (...args: string[]): Promise<string> =>
    (await promisify(execFile)(tb.binaries.path('kubectl'), ['--kubeconfig', tb.adminKubeconfig, '-n', NAMESPACE, ...args])).stdout;

  async function command(text: string, replies = 2): Promise<string[]> {
    const before = alice.events.filter(isNotice(bot)).length;
    await alice.send(room, text);
    const notices = await alice.waitFor(room, isNotice(bot), { count: before + replies, timeoutMs: 30_000 });
    return notices.slice(before).map((e) => String(e.content['body']));
  }

  const deployment = async (): Promise<{ spec: { replicas?: number }; status: { readyReplicas?: number } }> =>
    (await tb.admin.ok('GET', deploymentPath)) as never;
  const pods = async (): Promise<Array<Record<string, any>>> =>
    ((await tb.admin.ok('GET', `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=app%3D${DEPLOYMENT}`))['items'] as never);
  /**
   * The requests of a scale itself: its audit Event aside (sent alongside the reply), and the list and
   * watch of the pods that follow its progress (checked here to be only that, by the Deployment's selector).
   */
  const scaleRequests = (requests: Array<{ method: string; path: string }>): string[] => {
    const pods = requests.filter((r) => r.path.startsWith(`/api/v1/namespaces/${NAMESPACE}/pods`));
    for (const r of pods) assert.ok(r.method === 'GET' && r.path.includes(`labelSelector=app%3D${DEPLOYMENT}`), `${r.method} ${r.path}: only the progress's list and watch of the Deployment's pods`);
    return requests.filter((r) => !r.path.includes('/events') && !pods.includes(r)).map((r) => r.method);
  };
  async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 20): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms\n${tb.logTail(10)}`);
      await sleep(everyMs);
    }
  }

  before(async () => {
    tb = await sharedKubeTestbed();
    console.log(`# control plane: /readyz after ${tb.startup.apiServerReadyMs} ms, node Ready and controllers at work after ${tb.startup.totalMs} ms`);
    rbac = await applyBotRbac(tb, { namespace: NAMESPACE, name: DEPLOYMENT });
    await tb.admin.apply(targetDeployment(NAMESPACE, DEPLOYMENT));
    token = await requestPodToken(tb);
    const dir = await mkdtemp(join(tmpdir(), 'openclaw-k8s-real-'));
    saRoot = join(dir, 'pod-root');
    restoreEnv = await actAsBotPod(saRoot, tb, token.token);
    stack = await startStack({ dir });
    await startBot();
    bot = app.userId;
    alice = await stack.human('alice');
    room = await alice.createRoom({ name: 'real cluster', invite: [bot] });
    await alice.waitFor(room, isNotice(bot));
  }, { timeout: SETUP_TIMEOUT_MS });

  after(async () => {
    await stack?.stop();
    await kube?.close();
    restoreEnv?.();
  });

  it('authenticates with a bound, expiring service-account token from the TokenRequest API', () => {
    const claims = jwtClaims(token.token);
    assert.equal(claims['iss'], SERVICE_ACCOUNT_ISSUER);
    assert.equal(claims['sub'], `system:serviceaccount:${BOT_NAMESPACE}:${BOT_SERVICE_ACCOUNT}`);
    assert.equal(Number(claims['exp']) - Number(claims['iat']), 600);
    assert.equal((claims['kubernetes.io'] as { pod?: { name?: string } }).pod?.name, token.pod);
  });

  it('status says off for the Deployment at 0', async () => {
    const [, status] = await command('status');
    assert.equal(status, 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.');
  });

  it('start: Deployment → ReplicaSet → Pod on the fake node → Ready → readyReplicas 1, and status says running', async () => {
    const sent = Date.now();
    const replies = await command('start');
    assert.deepEqual(replies, ['🦞 start', '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.']);
    const answered = Date.now();
    await until('readyReplicas 1', async () => (await deployment()).status.readyReplicas === 1);
    console.log(`# start → readyReplicas 1: ${Date.now() - sent} ms after the command was sent (${Date.now() - answered} ms after the bot's answer)`);
    const [pod] = await pods();
    assert.equal(pod?.['spec']['nodeName'], tb.nodeName, 'scheduled onto the fake node');
    assert.equal(pod?.['status']['phase'], 'Running');
    assert.ok((pod?.['status']['conditions'] as Array<{ type: string; status: string }>).some((c) => c.type === 'Ready' && c.status === 'True'));
    const owner = (pod?.['metadata']['ownerReferences'] as Array<{ kind: string; name: string }>)[0];
    assert.equal(owner?.kind, 'ReplicaSet');
    const rs = await tb.admin.ok('GET', `/apis/apps/v1/namespaces/${NAMESPACE}/replicasets/${owner?.name}`);
    assert.equal((rs['metadata'] as { ownerReferences: Array<{ kind: string; name: string }> }).ownerReferences[0]?.name, DEPLOYMENT);
    const [, status] = await command('status');
    assert.match(status ?? '', /^openclaw is 🟢 running: desired 1, ready 1, available 1, updated 1\.\nRunning since \d\d:\d\d UTC \(started by @alice:localhost\), with no automatic stop\.$/);
  });

  it('stop: pods gone, then off', async () => {
    const replies = await command('stop');
    assert.deepEqual(replies, ['🦞 stop', '⏹ Stopping openclaw: replicas 1 → 0.']);
    const started = Date.now();
    await until('no pods', async () => (await pods()).length === 0);
    console.log(`# stop → no pods: ${Date.now() - started} ms after the bot's answer`);
    const [, status] = await command('status');
    assert.equal(status, 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.');
  });

  it('each scale is a Kubernetes Event on the Deployment (events.k8s.io): the API and kubectl describe show who did it, and where', async () => {
    const notes = async (): Promise<string[]> => {
      const list = await tb.admin.ok('GET', `/apis/events.k8s.io/v1/namespaces/${NAMESPACE}/events`);
      return (list['items'] as Array<Record<string, any>>).filter((e) => e['reason'] === 'ScaledByChat').map((e) => String(e['note']));
    };
    // The start and stop above; the Event goes out alongside the reply, so it may trail it by a moment.
    const expected = [`start by @alice:localhost in ${room}`, `stop by @alice:localhost in ${room}`];
    const seen = await until('both Events', async () => { const n = await notes(); return n.length >= 2 ? n : undefined; }, 10_000, 100);
    assert.deepEqual(seen, expected);
    const event = ((await tb.admin.ok('GET', `/apis/events.k8s.io/v1/namespaces/${NAMESPACE}/events`))['items'] as Array<Record<string, any>>).find((e) => e['reason'] === 'ScaledByChat');
    const uid = ((await tb.admin.ok('GET', deploymentPath))['metadata'] as { uid: string }).uid;
    assert.deepEqual(event?.['regarding'], { kind: 'Deployment', namespace: NAMESPACE, name: DEPLOYMENT, uid, apiVersion: 'apps/v1' });
    assert.equal(event?.['reportingController'], 'openclaw-k8s-toggle-operator');
    const described = await kubectl('describe', 'deployment', DEPLOYMENT);
    assert.match(described, new RegExp(`Normal\\s+ScaledByChat\\s+\\S+\\s+openclaw-k8s-toggle-operator\\s+start by @alice:localhost in ${room.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const table = await kubectl('get', 'events', '--field-selector', 'reason=ScaledByChat');
    console.log(`# kubectl get events --field-selector reason=ScaledByChat:\n${table.trimEnd().split('\n').map((l) => `#   ${l}`).join('\n')}`);
  });

  it('a timed run on the real cluster: start 2h, then the automatic stop (the clock moved by hand), both recorded as Events', async () => {
    const notices = (): number => alice.events.filter(isNotice(bot)).length;
    const next = async (at: number): Promise<string> => {
      const before = notices();
      clock.set(at);
      const all = await alice.waitFor(room, isNotice(bot), { count: before + 1, timeoutMs: 20_000 });
      return String(all[before]?.content['body']);
    };
    const started = clock.now();
    assert.match((await command('start 2h'))[1] ?? '', /^▶️ Starting openclaw: replicas 0 → 1\. ⏳ This message follows it\. ⏲ It stops automatically at \d\d:\d\d UTC, in 2 h\.$/);
    await until('readyReplicas 1', async () => (await deployment()).status.readyReplicas === 1);
    assert.match((await command('status'))[1] ?? '', /\nRunning since \d\d:\d\d \(started by @alice:localhost\), stops at \d\d:\d\d UTC, in 2 h\.$/);
    assert.match(await next(started + 110 * 60_000), /^⏲ openclaw stops automatically in 10 min/);
    assert.match(await next(started + 120 * 60_000), /^⏹ Stopped openclaw automatically at \d\d:\d\d UTC, as planned/);
    await until('no pods', async () => (await pods()).length === 0);
    const notes = await until('both Events', async () => {
      const list = (await tb.admin.ok('GET', `/apis/events.k8s.io/v1/namespaces/${NAMESPACE}/events`))['items'] as Array<Record<string, any>>;
      const ours = list.filter((e) => e['reason'] === 'ScaledByChat').map((e) => String(e['note'])).slice(2);
      return ours.length >= 2 ? ours : undefined;
    }, 10_000, 100);
    assert.equal(notes[0], `start by @alice:localhost in ${room} (timed 2h)`);
    assert.match(notes[1] ?? '', new RegExp(`^stop by timer \\(run started by @alice:localhost in ${room.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} at \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\dZ, due \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\dZ\\)$`));
    const table = await kubectl('get', 'events', '--field-selector', 'reason=ScaledByChat');
    console.log(`# kubectl get events --field-selector reason=ScaledByChat (after the timed run):\n${table.trimEnd().split('\n').map((l) => `#   ${l}`).join('\n')}`);
  });

  it('a Role without create on events: one warning at start-up, and start and stop work as before', async () => {
    const role = rbac.find((o) => o.kind === 'Role')!;
    const rules = (role['rules'] as Array<{ apiGroups: string[] }>).filter((r) => !r.apiGroups.includes('events.k8s.io'));
    await tb.admin.apply({ ...role, rules });
    const lines: string[] = [];
    const logger = createLogger({ level: 'info' }, new Writable({ write(chunk, _e, done) { lines.push(String(chunk)); done(); } }));
    await app.stop();
    await startBot({}, logger);
    try {
      const ours = async (): Promise<number> => (((await tb.admin.ok('GET', `/apis/events.k8s.io/v1/namespaces/${NAMESPACE}/events`))['items']) as Array<{ reason?: string }>)
        .filter((e) => e.reason === 'ScaledByChat').length;
      const before = await ours();
      await until('the start-up warning', async () => lines.some((l) => l.includes('cannot record scales as Events')), 10_000, 50);
      assert.equal((await command('start'))[1], '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.');
      assert.equal((await command('stop'))[1], '⏹ Stopping openclaw: replicas 1 → 0.');
      await sleep(300);
      const warnings = lines.filter((l) => /"level":(40|50)/.test(l) && l.includes('event'));
      assert.equal(warnings.length, 1, warnings.join(''));
      assert.match(warnings[0] ?? '', /forbidden: the service account may not create events in namespace agents/);
      assert.equal(await ours(), before, 'no Event');
      await until('no pods', async () => (await pods()).length === 0);
    } finally {
      await tb.admin.apply(role);
      await app.stop();
      await startBot();
    }
  });

  it('follows a token rotation on its next call, after the old token was revoked', async () => {
    const old = token;
    token = await requestPodToken(tb);
    await writeServiceAccountFiles(saRoot, tb, token.token);
    await deletePod(tb, old.pod);
    // The premise: the old token no longer works anywhere.
    await until('the old token refused', async () => (await tb.admin.request('GET', deploymentPath, { token: old.token })).status === 401, 10_000, 100);
    // Status comes from the watch (no request); a start is a request, with the new token.
    const [, status] = await command('status');
    assert.equal(status, 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.');
    assert.equal((await command('start'))[1], '▶️ Starting openclaw: replicas 0 → 1. ⏳ This message follows it.');
    assert.equal((await command('stop'))[1], '⏹ Stopping openclaw: replicas 1 → 0.');
    await until('no pods', async () => (await pods()).length === 0);
  });

  it('a change behind the bot\'s back (kubectl scale) shows in status through the watch, without a request; a start/stop is one PATCH', async () => {
    await kubectl('scale', `deployment/${DEPLOYMENT}`, '--replicas=2');
    await until('readyReplicas 2', async () => (await deployment()).status.readyReplicas === 2);
    await sleep(200); // the watch event trails the change by a few ms
    const before = sent.length;
    const started = performance.now();
    const [, status] = await command('status');
    console.log(`# status (through Synapse, from the watch) answered in ${Math.round(performance.now() - started)} ms`);
    assert.match(status ?? '', /^openclaw is 🟢 running: desired 2, ready 2, available 2, updated 2\.\nUp since \d\d:\d\d UTC \((less than a minute|\d+ min)\)\.$/);
    assert.deepEqual(sent.slice(before), [], 'status asked the API nothing');
    const [, stop] = await command('stop');
    assert.equal(stop, '⏹ Stopping openclaw: replicas 2 → 0.', 'the "from" is the watched count');
    assert.deepEqual(scaleRequests(sent.slice(before)), ['PATCH'], 'one request for the stop (its audit Event and its progress aside)');
    await until('no pods', async () => (await pods()).length === 0);
  });

  it('a missing Deployment: one sentence, for status and for start', async () => {
    await tb.admin.delete(targetDeployment(NAMESPACE, DEPLOYMENT));
    await until('the Deployment gone', async () => (await tb.admin.request('GET', deploymentPath)).status === 404);
    try {
      assert.equal((await command('status'))[1], `⚠️ Could not get the status of openclaw: deployment openclaw not found in namespace ${NAMESPACE}`);
      assert.equal((await command('start'))[1], `⚠️ Could not start openclaw: deployment openclaw not found in namespace ${NAMESPACE}`);
    } finally {
      await tb.admin.apply(targetDeployment(NAMESPACE, DEPLOYMENT));
    }
  });

  it('a start the cluster refuses (a ResourceQuota of no pods): status says why, in the Deployment\'s own words', async () => {
    const quota = { apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'no-pods', namespace: NAMESPACE }, spec: { hard: { pods: '0' } } };
    await tb.admin.apply(quota);
    try {
      // The quota controller must have counted the namespace before admission enforces the quota.
      await until('quota counted', async () => (await tb.admin.ok('GET', `/api/v1/namespaces/${NAMESPACE}/resourcequotas/no-pods`))['status'] !== undefined);
      assert.match((await command('start'))[1] ?? '', /Starting openclaw: replicas 0 → 1/);
      await until('ReplicaFailure on the Deployment', async () =>
        ((await deployment()).status as { conditions?: Array<{ type: string; status: string }> }).conditions?.some((c) => c.type === 'ReplicaFailure' && c.status === 'True'));
      const [, status] = await command('status');
      assert.match(status ?? '', /^openclaw is 🟡 starting: desired 1, ready 0, available 0, updated 0\.\n⚠️ It is not getting ready: the cluster refused to create the pod: pods "openclaw-[a-z0-9-]+" is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0\.\n/);
      console.log(`# ${status?.split('\n')[1]}`);
    } finally {
      await tb.admin.delete(quota, NAMESPACE);
      await command('stop');
      await until('no pods', async () => (await pods()).length === 0);
    }
  });

  it('a Role without patch on deployments/scale: start is refused in one sentence, nothing changes', async () => {
    const role = rbac.find((o) => o.kind === 'Role')!;
    const rules = (role['rules'] as Array<{ resources: string[]; verbs: string[] }>).map((r) =>
      r.resources.includes('deployments/scale') ? { ...r, verbs: r.verbs.filter((v) => v !== 'patch') } : r);
    await tb.admin.apply({ ...role, rules });
    try {
      const [, answer] = await command('start');
      assert.equal(answer, `⚠️ Could not start openclaw: forbidden: the service account may not patch deployments/scale in namespace ${NAMESPACE}`);
      assert.equal((await deployment()).spec.replicas, 0);
    } finally {
      await tb.admin.apply(role);
    }
  });

  it('a namespace without the Role: one sentence', async () => {
    await tb.admin.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'elsewhere' } });
    await tb.admin.apply(targetDeployment('elsewhere', DEPLOYMENT));
    await app.stop();
    await startBot({ DEPLOYMENT_NAMESPACE: 'elsewhere' });
    try {
      assert.equal((await command('status'))[1], '⚠️ Could not get the status of openclaw: forbidden: the service account may not get deployments in namespace elsewhere');
      assert.equal((await command('start'))[1], '⚠️ Could not start openclaw: forbidden: the service account may not get deployments/scale in namespace elsewhere');
    } finally {
      await app.stop();
      await startBot();
    }
  });

  it('the API server restarted while the bot runs: /ready goes 503, then 200, and commands work again', async () => {
    const ready = async (): Promise<number> => (await fetch(`http://127.0.0.1:${app.port}/ready`)).status;
    const watchUp = async (): Promise<string | undefined> => /^openclaw_kube_watch_up\{target="openclaw"\} (\d)$/m.exec(await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text())?.[1];
    assert.equal(await ready(), 200);
    // The previous test restarted the bot: its watch may still be connecting.
    await until('the watch metric at 1', async () => (await watchUp()) === '1', 15_000, 250);
    const stopped = Date.now();
    await tb.stopApiServer();
    try {
      await until('/ready 503', async () => (await ready()) === 503, 15_000, 250);
      assert.equal(await watchUp(), '0', 'the watch metric shows the watch down');
      const [, down] = await command('status');
      assert.match(down ?? '', /^⚠️ Could not get the status of openclaw: the Kubernetes API at https:\/\/127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\)$/);
    } finally {
      const restartMs = await tb.startApiServer();
      console.log(`# API server down for ${Date.now() - stopped - restartMs} ms, restarted in ${restartMs} ms`);
    }
    await until('/ready 200', async () => (await ready()) === 200, 15_000, 250);
    await until('the watch metric back to 1', async () => (await watchUp()) === '1', 15_000, 250);
    const [, status] = await command('status');
    assert.equal(status, 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.');
    assert.match((await command('start'))[1] ?? '', /Starting openclaw: replicas 0 → 1/);
    await until('readyReplicas 1 after the restart', async () => (await deployment()).status.readyReplicas === 1);
    assert.match((await command('stop'))[1] ?? '', /Stopping openclaw: replicas 1 → 0/);
    await until('no pods', async () => (await pods()).length === 0);
  });

  it('after an API server restart the watch lists again (410 Expired) and status follows changes made after it, without a request', async () => {
    const stats = kube!.watchStats!;
    const { relists, lists, watches } = stats;
    await until('watching', async () => kube!.watching);
    await tb.stopApiServer();
    try {
      await until('the watch lost', async () => !kube!.watching, 10_000, 50);
    } finally {
      await tb.startApiServer();
    }
    const restarted = Date.now();
    // Nothing asks the bot anything here: the watch comes back on its own (bounded backoff).
    await until('watching again', async () => kube!.watching, 40_000, 100);
    console.log(`# watching again ${Date.now() - restarted} ms after the API server was ready: ${stats.relists - relists} relist(s), ${stats.lists - lists} list(s)`);
    // Usually the old resourceVersion is too old for the new server's watch cache: 410, list again. A
    // watch that reconnects while the server is still starting (listening, its cache not yet built) is
    // served from etcd's history instead and goes on without a list (seen here once in a few runs);
    // both are right, and the 410 path is pinned down in kube-watch.test.ts.
    assert.ok(stats.relists > relists || stats.watches > watches, 'the watch reconnected');
    // Only spec.replicas is awaited: the controller-manager, refused for a moment by the restarting API
    // server too, takes its own time (10-30 s here) to bring pods up again, which is not what this tests.
    await kubectl('scale', `deployment/${DEPLOYMENT}`, '--replicas=1');
    await sleep(200);
    const before = sent.length;
    assert.match((await command('status'))[1] ?? '', /^openclaw is .*: desired 1, /);
    // From the watch; only a Deployment that is not ready yet has its pods listed, once, to say why.
    const asked = sent.slice(before);
    assert.ok(asked.length <= 1 && asked.every((r) => r.method === 'GET' && r.path === `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=app%3D${DEPLOYMENT}`), JSON.stringify(asked));
    assert.equal((await command('stop'))[1], '⏹ Stopping openclaw: replicas 1 → 0.');
    assert.deepEqual(scaleRequests(sent.slice(before)), ['PATCH']);
  });
});
