/**
 * Least privilege, checked on a REAL API server (src/dev/kube-testbed): the project's RBAC
 * manifests as kustomize renders them, and the bot's bound service-account token. What the bot
 * needs works; everything else is 403. Then the same requests go to the simulator, which must
 * answer as the real server does (status, reason, message, and the fields the adapter reads).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiClient, type ApiResponse } from '../../src/dev/kube-testbed/api-client.ts';
import { testbedBuilt } from '../../src/dev/kube-testbed/build.ts';
import { applyBotRbac, BOT_NAMESPACE, BOT_SERVICE_ACCOUNT, requestPodToken, targetDeployment } from '../../src/dev/kube-testbed/project-manifests.ts';
import { sharedKubeTestbed, type KubeTestbed } from '../../src/dev/kube-testbed/testbed.ts';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventBody } from '../../src/kube/lean-kube.ts';
import { compareWithSimulator, SIMULATOR_CASES, type SimulatorCase } from './lib/simulator-cases.ts';

const NS = 'agents';
const NAME = 'openclaw';
const BOT_USER = `system:serviceaccount:${BOT_NAMESPACE}:${BOT_SERVICE_ACCOUNT}`;
const SETUP_TIMEOUT_MS = testbedBuilt() ? 180_000 : 60 * 60_000;
const apps = (ns: string, rest = ''): string => `/apis/apps/v1/namespaces/${ns}/deployments${rest}`;
const core = (ns: string, rest: string): string => `/api/v1/namespaces/${ns}/${rest}`;
/** The refusal of a core-group ("") resource: no `.group` after the resource, `API group ""`. */
const forbiddenCore = (resource: string, verb: string, ns: string, name?: string): string =>
  `${resource.split('/')[0]}${name === undefined ? '' : ` "${name}"`} is forbidden: User "${BOT_USER}" cannot ${verb} resource "${resource}" in API group "" in the namespace "${ns}"`;
const forbidden = (resource: string, verb: string, ns: string, name?: string): string =>
  `${name === undefined ? resource.split('/')[0] + '.apps' : `${resource.split('/')[0]}.apps "${name}"`} is forbidden: User "${BOT_USER}" cannot ${verb} resource "${resource}" in API group "apps" in the namespace "${ns}"`;

describe('least privilege and the simulator, against a real API server', { timeout: SETUP_TIMEOUT_MS + 180_000 }, () => {
  let tb: KubeTestbed;
  let botToken: string;
  let as: (method: string, path: string, body?: unknown, contentType?: string) => Promise<ApiResponse>;

  before(async () => {
    tb = await sharedKubeTestbed();
    await applyBotRbac(tb, { namespace: NS, name: NAME });
    await tb.admin.apply(targetDeployment(NS, NAME));
    await tb.admin.apply(targetDeployment(NS, 'other'));
    botToken = (await requestPodToken(tb)).token;
    as = (method, path, body, contentType) => tb.admin.request(method, path, {
      token: botToken, ...(body !== undefined ? { body, contentType: contentType ?? 'application/merge-patch+json' } : {}),
    });
  }, { timeout: SETUP_TIMEOUT_MS });

  it('the Role is exactly: get, list and watch the Deployment, get and patch its scale, that one Deployment only; create Events; list and watch pods', async () => {
    const role = await tb.admin.ok('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles/openclaw-toggle`);
    assert.deepEqual(role['rules'], [
      { apiGroups: ['apps'], resources: ['deployments'], resourceNames: [NAME], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: [NAME], verbs: ['get', 'patch'] },
      { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
    ]);
    const binding = await tb.admin.ok('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings/openclaw-toggle`);
    assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: BOT_SERVICE_ACCOUNT, namespace: BOT_NAMESPACE }]);
    // What the server says the token may do in the namespace, beyond what any service account may
    // (a fresh one, bound to nothing, gives the baseline).
    await tb.admin.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'nobody', namespace: BOT_NAMESPACE } });
    const nobody = await tb.admin.ok('POST', `/api/v1/namespaces/${BOT_NAMESPACE}/serviceaccounts/nobody/token`, {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 } } });
    const rulesOf = async (token: string): Promise<string[]> => {
      const review = await tb.admin.ok('POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews', {
        token, body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace: NS } },
      });
      const rules = (review['status'] as { resourceRules: Array<Record<string, unknown> & { verbs: string[] }> }).resourceRules;
      return rules.map((r) => JSON.stringify({ apiGroups: r['apiGroups'], resources: r['resources'], resourceNames: r['resourceNames'], verbs: [...r.verbs].sort() }));
    };
    const baseline = new Set(await rulesOf((nobody['status'] as { token: string }).token));
    const extra = (await rulesOf(botToken)).filter((r) => !baseline.has(r)).map((r) => JSON.parse(r) as unknown);
    assert.deepEqual(extra, [
      { apiGroups: ['apps'], resources: ['deployments'], resourceNames: [NAME], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: [NAME], verbs: ['get', 'patch'] },
      { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
    ]);
  });

  it('what the bot does is allowed: get the Deployment, list and watch it by name, get and patch its scale, create an Event (dry run)', async () => {
    assert.equal((await as('GET', apps(NS, `/${NAME}`))).status, 200);
    // A list or watch narrowed to one name is authorized as a request for that name (resourceNames).
    const list = await as('GET', apps(NS, `?fieldSelector=metadata.name%3D${NAME}`));
    assert.equal(list.status, 200);
    assert.deepEqual((list.body['items'] as Array<{ metadata: { name: string } }>).map((i) => i.metadata.name), [NAME]);
    assert.equal((await as('GET', apps(NS, `?watch=1&fieldSelector=metadata.name%3D${NAME}&timeoutSeconds=1`))).status, 200);
    assert.equal((await as('GET', apps(NS, `/${NAME}/scale`))).status, 200);
    assert.equal((await as('PATCH', apps(NS, `/${NAME}/scale?dryRun=All`), { spec: { replicas: 1 } })).status, 200);
    const event = eventBody({ namespace: NS, name: NAME }, { reason: 'ScaledByChat', action: 'Check', note: 'allowed?' }, undefined, new Date());
    assert.equal((await as('POST', `/apis/events.k8s.io/v1/namespaces/${NS}/events?dryRun=All`, event, 'application/json')).status, 201);
    // The pods, by the Deployment's selector as src/kube/pod-watch.ts asks, or of the whole namespace (resourceNames cannot narrow pods).
    for (const query of [`?labelSelector=${encodeURIComponent(`app=${NAME}`)}`, '']) {
      const pods = await as('GET', core(NS, `pods${query}`));
      assert.equal(pods.status, 200, `list pods${query}`);
      assert.equal(pods.body['kind'], 'PodList');
      assert.match(String((pods.body['metadata'] as { resourceVersion?: unknown }).resourceVersion), /^\d+$/);
      const rv = String((pods.body['metadata'] as { resourceVersion: string }).resourceVersion);
      const watch = await as('GET', core(NS, `pods${query}${query ? '&' : '?'}watch=1&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion=${rv}`));
      assert.equal(watch.status, 200, `watch pods${query}`);
    }
  });

  it('everything else is 403: another Deployment, listing or watching the namespace or another name, the Deployment object itself, update, delete, other namespaces, reading events; a pod by name, its log, exec, deleting pods, pods elsewhere, secrets', async () => {
    const refused: Array<[string, string, unknown, string]> = [
      ['GET', apps(NS, '/other'), undefined, forbidden('deployments', 'get', NS, 'other')],
      ['PATCH', apps(NS, '/other/scale'), { spec: { replicas: 1 } }, forbidden('deployments/scale', 'patch', NS, 'other')],
      ['GET', apps(NS), undefined, forbidden('deployments', 'list', NS)],
      ['GET', apps(NS, '?watch=1'), undefined, forbidden('deployments', 'watch', NS)],
      ['GET', apps(NS, '?fieldSelector=metadata.name%3Dother'), undefined, forbidden('deployments', 'list', NS, 'other')],
      ['GET', apps(NS, '?watch=1&fieldSelector=metadata.name%3Dother'), undefined, forbidden('deployments', 'watch', NS, 'other')],
      ['GET', apps(BOT_NAMESPACE, `?watch=1&fieldSelector=metadata.name%3D${NAME}`), undefined, forbidden('deployments', 'watch', BOT_NAMESPACE, NAME)],
      ['PATCH', apps(NS, `/${NAME}`), { spec: { replicas: 1 } }, forbidden('deployments', 'patch', NS, NAME)],
      ['PUT', apps(NS, `/${NAME}/scale`), { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: NAME, namespace: NS }, spec: { replicas: 1 } },
        forbidden('deployments/scale', 'update', NS, NAME)],
      ['DELETE', apps(NS, `/${NAME}`), undefined, forbidden('deployments', 'delete', NS, NAME)],
      ['GET', apps(BOT_NAMESPACE, `/${NAME}`), undefined, forbidden('deployments', 'get', BOT_NAMESPACE, NAME)],
      // Pods: list and watch only, only here.
      ['GET', core(NS, 'pods/some-pod'), undefined, forbiddenCore('pods', 'get', NS, 'some-pod')],
      ['GET', core(NS, 'pods/some-pod/log'), undefined, forbiddenCore('pods/log', 'get', NS, 'some-pod')],
      ['POST', core(NS, 'pods/some-pod/exec?command=true&stdout=true'), undefined, forbiddenCore('pods/exec', 'create', NS, 'some-pod')],
      ['DELETE', core(NS, 'pods/some-pod'), undefined, forbiddenCore('pods', 'delete', NS, 'some-pod')],
      ['DELETE', core(NS, 'pods'), undefined, forbiddenCore('pods', 'deletecollection', NS)],
      ['PATCH', core(NS, 'pods/some-pod'), { metadata: { labels: { x: 'y' } } }, forbiddenCore('pods', 'patch', NS, 'some-pod')],
      ['GET', core(BOT_NAMESPACE, 'pods'), undefined, forbiddenCore('pods', 'list', BOT_NAMESPACE)],
      ['GET', core(BOT_NAMESPACE, `pods?watch=1&labelSelector=app%3D${NAME}`), undefined, forbiddenCore('pods', 'watch', BOT_NAMESPACE)],
      ['GET', core(NS, 'secrets'), undefined, forbiddenCore('secrets', 'list', NS)],
      ['GET', core(NS, 'secrets/some-secret'), undefined, forbiddenCore('secrets', 'get', NS, 'some-secret')],
      ['GET', core(NS, 'configmaps'), undefined, forbiddenCore('configmaps', 'list', NS)],
    ];
    for (const [method, path, body, message] of refused) {
      const res = await as(method, path, body, method === 'PUT' ? 'application/json' : undefined);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body['reason'], 'Forbidden');
      assert.equal(res.body['message'], message);
    }
    // Events: only create, only here (reading them, or writing them elsewhere, is not the bot's business).
    const events = await as('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events`);
    assert.equal(events.status, 403);
    assert.equal(events.body['message'], `events.events.k8s.io is forbidden: User "${BOT_USER}" cannot list resource "events" in API group "events.k8s.io" in the namespace "${NS}"`);
    const event = eventBody({ namespace: BOT_NAMESPACE, name: NAME }, { reason: 'ScaledByChat', action: 'Check', note: 'elsewhere' }, undefined, new Date());
    assert.equal((await as('POST', `/apis/events.k8s.io/v1/namespaces/${BOT_NAMESPACE}/events?dryRun=All`, event, 'application/json')).status, 403);
  });

  describe('the simulator answers as the real API server does', () => {
    let sim: KubeSimulator;
    let simDir: string;
    let real: ApiClient;
    let simClient: ApiClient;
    let realTokens: Record<SimulatorCase['as'], string>;
    const simTokens: Record<SimulatorCase['as'], string> = { rw: 'sim-rw', ro: 'sim-ro', none: 'not-a-token' };
    const send = (client: ApiClient, tokens: Record<SimulatorCase['as'], string>) => (c: SimulatorCase): Promise<ApiResponse> =>
      client.request(c.method, c.path, { token: tokens[c.as], ...(c.body !== undefined ? { body: c.body, contentType: c.contentType } : {}) });

    before(async () => {
      // A read-only identity on both sides, for the 403 of a patch.
      await tb.admin.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'viewer', namespace: BOT_NAMESPACE } });
      await tb.admin.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'viewer', namespace: NS },
        rules: [{ apiGroups: ['apps'], resources: ['deployments', 'deployments/scale'], verbs: ['get'] }] });
      await tb.admin.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'viewer', namespace: NS },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'viewer' },
        subjects: [{ kind: 'ServiceAccount', name: 'viewer', namespace: BOT_NAMESPACE }] });
      const viewer = await tb.admin.ok('POST', `/api/v1/namespaces/${BOT_NAMESPACE}/serviceaccounts/viewer/token`, {
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 } } });
      simDir = await mkdtemp(join(tmpdir(), 'sim-vs-real-'));
      sim = await startKubeSimulator({ dir: simDir, readyDelayMs: 200, deployments: [{ namespace: NS, name: NAME, replicas: 0 }], tokens: {
        'sim-rw': { user: BOT_USER, canGet: true, canPatch: true, canWatch: true, resourceNames: [NAME], canCreateEvents: true, canListPods: true, namespace: NS },
        'sim-ro': { user: `system:serviceaccount:${BOT_NAMESPACE}:viewer`, canGet: true, canPatch: false },
      } });
      real = new ApiClient(tb.server, tb.caPem, botToken);
      simClient = new ApiClient(sim.url, sim.caPem, 'sim-rw');
      realTokens = { rw: botToken, ro: (viewer['status'] as { token: string }).token, none: 'not-a-token' };
    });

    after(async () => {
      await sim?.stop();
      real?.close();
      simClient?.close();
      if (simDir) await rm(simDir, { recursive: true, force: true });
    });

    it(`${SIMULATOR_CASES.length} requests, one answer each, the same on both`, async () => {
      const differences = await compareWithSimulator({
        real: send(real, realTokens),
        sim: send(simClient, simTokens),
        deleteTarget: async () => {
          await tb.admin.delete(targetDeployment(NS, NAME));
          sim.deleteDeployment(NS, NAME);
          for (let i = 0; i < 100 && (await tb.admin.request('GET', apps(NS, `/${NAME}`))).status !== 404; i++) await new Promise((r) => setTimeout(r, 50));
        },
        settle: async () => {
          // Both controllers done with the last scale: the real one reports observedGeneration = generation, every
          // replica ready, and exactly that many pods, all Ready (none terminating).
          for (let i = 0; i < 200; i++) {
            const d = await tb.admin.ok('GET', apps(NS, `/${NAME}`));
            const meta = d['metadata'] as { generation: number };
            const spec = d['spec'] as { replicas?: number };
            const status = d['status'] as { observedGeneration?: number; replicas?: number; readyReplicas?: number };
            const pods = (await tb.admin.ok('GET', core(NS, `pods?labelSelector=app%3D${NAME}`)))['items'] as Array<{ metadata: { deletionTimestamp?: string };
              status?: { conditions?: Array<{ type: string; status: string }> } }>;
            const want = spec.replicas ?? 0;
            const podsReady = pods.length === want && pods.every((p) => !p.metadata.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
            if (status.observedGeneration === meta.generation && (status.replicas ?? 0) === want && (status.readyReplicas ?? 0) === want && podsReady) break;
            await new Promise((r) => setTimeout(r, 50));
          }
          await new Promise((r) => setTimeout(r, 300));
        },
      });
      for (const d of differences) console.log(`# real ≠ simulator: ${d}`);
      assert.deepEqual(differences, []);
    });
  });
});
