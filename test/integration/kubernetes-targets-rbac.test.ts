/**
 * Several targets, least privilege on a REAL API server (src/dev/kube-testbed): config/kubernetes rendered by
 * kustomize with three targets (the base's in namespace A, one more in A, one in B: a copy of targets/comfy
 * each), applied, and the bot's bound service-account token. Each target's Deployment can be read, listed and
 * watched by name, scaled, its pods followed and Events recorded about it, in its own namespace; a Deployment of A
 * that is no target, a target's name in the other namespace, and anything in namespace C are 403.
 */
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { parseTargets } from '../../src/config/targets.ts';
import type { ApiResponse, KubeObject } from '../../src/dev/kube-testbed/api-client.ts';
import { testbedBuilt } from '../../src/dev/kube-testbed/build.ts';
import { applyTargetsRbac, BOT_NAMESPACE, BOT_SERVICE_ACCOUNT, renderTargetsManifests, requestPodToken, targetDeployment } from '../../src/dev/kube-testbed/project-manifests.ts';
import { sharedKubeTestbed, type KubeTestbed } from '../../src/dev/kube-testbed/testbed.ts';
import { eventBody } from '../../src/kube/lean-kube.ts';

const [A, B, C] = ['targets-a', 'targets-b', 'targets-c'];
const TARGETS = [{ namespace: A, name: 'alpha' }, { namespace: A, name: 'delta' }, { namespace: B, name: 'beta' }] as const;
const BOT_USER = `system:serviceaccount:${BOT_NAMESPACE}:${BOT_SERVICE_ACCOUNT}`;
const SETUP_TIMEOUT_MS = testbedBuilt() ? 180_000 : 60 * 60_000;
const apps = (ns: string, rest = ''): string => `/apis/apps/v1/namespaces/${ns}/deployments${rest}`;
const byName = (name: string, watch = false): string => `?${watch ? 'watch=1&timeoutSeconds=1&' : ''}fieldSelector=metadata.name%3D${name}`;
const pods = (ns: string, query = ''): string => `/api/v1/namespaces/${ns}/pods${query}`;
const events = (ns: string): string => `/apis/events.k8s.io/v1/namespaces/${ns}/events?dryRun=All`;
type Rule = { apiGroups?: string[]; resources?: string[]; resourceNames?: string[]; verbs: string[] };
/** The rules of role.yaml for the Deployment `name`, as the API server reports them. */
const rulesFor = (name: string): Rule[] => [
  { apiGroups: ['apps'], resources: ['deployments'], resourceNames: [name], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: [name], verbs: ['get', 'patch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
];

describe('several targets: one Role per target, in its namespace, against a real API server', { timeout: SETUP_TIMEOUT_MS + 120_000 }, () => {
  let tb: KubeTestbed;
  let applied: KubeObject[];
  let as: (method: string, path: string, body?: unknown, contentType?: string) => Promise<ApiResponse>;

  before(async () => {
    tb = await sharedKubeTestbed();
    applied = await applyTargetsRbac(tb, TARGETS);
    await tb.admin.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: C } });
    // The targets; `gamma` in A is none; `alpha` (A's target's name) exists in B and C too.
    for (const [ns, name] of [[A, 'alpha'], [A, 'delta'], [A, 'gamma'], [B, 'beta'], [B, 'alpha'], [C, 'alpha']] as const) {
      await tb.admin.apply(targetDeployment(ns, name));
    }
    const token = (await requestPodToken(tb)).token;
    as = (method, path, body, contentType) => tb.admin.request(method, path, {
      token, ...(body !== undefined ? { body, contentType: contentType ?? 'application/merge-patch+json' } : {}),
    });
  }, { timeout: SETUP_TIMEOUT_MS });

  it('rendered and applied: the ServiceAccount, and per target a Role and RoleBinding in its namespace; no cluster-wide object', async () => {
    const names = applied.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`).sort();
    assert.deepEqual(names, [
      `Role ${A}/openclaw-toggle`, `Role ${A}/openclaw-toggle-delta`, `Role ${B}/openclaw-toggle-beta`,
      `RoleBinding ${A}/openclaw-toggle`, `RoleBinding ${A}/openclaw-toggle-delta`, `RoleBinding ${B}/openclaw-toggle-beta`,
      `ServiceAccount ${BOT_NAMESPACE}/${BOT_SERVICE_ACCOUNT}`,
    ]);
    for (const [t, role] of [[TARGETS[0], 'openclaw-toggle'], [TARGETS[1], 'openclaw-toggle-delta'], [TARGETS[2], 'openclaw-toggle-beta']] as const) {
      const r = await tb.admin.ok('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${t.namespace}/roles/${role}`);
      assert.deepEqual(r['rules'], rulesFor(t.name), role);
      const b = await tb.admin.ok('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${t.namespace}/rolebindings/${role}`);
      assert.deepEqual(b['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role });
      assert.deepEqual(b['subjects'], [{ kind: 'ServiceAccount', name: BOT_SERVICE_ACCOUNT, namespace: BOT_NAMESPACE }]);
    }
  });

  it('what the server says the token may do, beyond any service account: in A both targets\' rules, in B beta\'s, in C nothing', async () => {
    await tb.admin.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'nobody', namespace: BOT_NAMESPACE } });
    const nobody = await tb.admin.ok('POST', `/api/v1/namespaces/${BOT_NAMESPACE}/serviceaccounts/nobody/token`, {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 } } });
    const nobodyToken = (nobody['status'] as { token: string }).token;
    const rulesOf = async (namespace: string, token: string): Promise<string[]> => {
      const review = await tb.admin.ok('POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews', {
        token, body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } },
      });
      return ((review['status'] as { resourceRules: Rule[] }).resourceRules).map((r) => JSON.stringify(
        { apiGroups: r.apiGroups, resources: r.resources, resourceNames: r.resourceNames, verbs: [...r.verbs].sort() }));
    };
    const extra = async (namespace: string): Promise<string[]> => {
      const baseline = new Set(await rulesOf(namespace, nobodyToken));
      // The bot's token: a request as the bot, through the same client.
      const review = await as('POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews',
        { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } }, 'application/json');
      assert.equal(review.status, 201);
      // As a set: two Roles in one namespace both grant the events and pods rules.
      return [...new Set(((review.body['status'] as { resourceRules: Rule[] }).resourceRules)
        .map((r) => JSON.stringify({ apiGroups: r.apiGroups, resources: r.resources, resourceNames: r.resourceNames, verbs: [...r.verbs].sort() }))
        .filter((r) => !baseline.has(r)))].sort();
    };
    const expected = (...names: string[]): string[] => [...new Set(names.flatMap((n) => rulesFor(n)).map((r) => JSON.stringify(r)))].sort();
    assert.deepEqual(await extra(A), expected('alpha', 'delta'));
    assert.deepEqual(await extra(B), expected('beta'));
    assert.deepEqual(await extra(C), []);
  });

  it('for each target, in its namespace: get, list and watch by name, get and patch its scale, list and watch its pods, create an Event', async () => {
    // The targets at once: each watch waits out its timeoutSeconds.
    await Promise.all(TARGETS.map(async ({ namespace: ns, name }) => {
      const at = `${ns}/${name}`;
      assert.equal((await as('GET', apps(ns, `/${name}`))).status, 200, `get ${at}`);
      const list = await as('GET', apps(ns, byName(name)));
      assert.equal(list.status, 200, `list ${at}`);
      assert.deepEqual((list.body['items'] as Array<{ metadata: { name: string } }>).map((i) => i.metadata.name), [name]);
      assert.equal((await as('GET', apps(ns, byName(name, true)))).status, 200, `watch ${at}`);
      assert.equal((await as('GET', apps(ns, `/${name}/scale`))).status, 200, `get ${at}/scale`);
      assert.equal((await as('PATCH', apps(ns, `/${name}/scale?dryRun=All`), { spec: { replicas: 1 } })).status, 200, `patch ${at}/scale`);
      const selector = `?labelSelector=${encodeURIComponent(`app=${name}`)}`;
      assert.equal((await as('GET', pods(ns, selector))).status, 200, `list pods of ${at}`);
      assert.equal((await as('GET', pods(ns, `${selector}&watch=1&timeoutSeconds=1`))).status, 200, `watch pods of ${at}`);
      const event = eventBody({ namespace: ns, name }, { reason: 'ScaledByChat', action: 'Check', note: 'allowed?' }, undefined, new Date());
      assert.equal((await as('POST', events(ns), event, 'application/json')).status, 201, `event on ${at}`);
    }));
  });

  it('403: the Deployment of A that is no target, a target\'s name in the other namespace, the whole namespace, anything in C', async () => {
    const denied: Array<[string, string, string, unknown?]> = [
      // [verb as the server names it, method, path, body]
      ['get', 'GET', apps(A, '/gamma')],
      ['patch', 'PATCH', apps(A, '/gamma/scale'), { spec: { replicas: 1 } }],
      ['list', 'GET', apps(A, byName('gamma'))],
      ['watch', 'GET', apps(A, byName('gamma', true))],
      ['list', 'GET', apps(A)],
      ['get', 'GET', apps(A, '/beta')],
      ['get', 'GET', apps(B, '/alpha')],
      ['get', 'GET', apps(B, '/delta')],
      ['patch', 'PATCH', apps(B, '/alpha/scale'), { spec: { replicas: 1 } }],
      ['list', 'GET', apps(B, byName('alpha'))],
      ['watch', 'GET', apps(B, '?watch=1&timeoutSeconds=1')],
      ['get', 'GET', apps(C, '/alpha')],
      ['get', 'GET', apps(C, '/alpha/scale')],
      ['patch', 'PATCH', apps(C, '/alpha/scale'), { spec: { replicas: 1 } }],
      ['list', 'GET', apps(C, byName('alpha'))],
      ['watch', 'GET', apps(C, byName('alpha', true))],
      ['list', 'GET', pods(C)],
      ['watch', 'GET', pods(C, '?watch=1&timeoutSeconds=1')],
      ['create', 'POST', events(C), eventBody({ namespace: C, name: 'alpha' }, { reason: 'ScaledByChat', action: 'Check', note: 'elsewhere' }, undefined, new Date())],
      // Nor more in the targets' namespaces than the Role says.
      ['delete', 'DELETE', apps(A, '/alpha')],
      ['patch', 'PATCH', apps(B, '/beta'), { spec: { replicas: 1 } }],
      ['get', 'GET', pods(A, '/some-pod')],
      ['list', 'GET', `/api/v1/namespaces/${B}/secrets`],
    ];
    for (const [verb, method, path, body] of denied) {
      const res = await as(method, path, body, method === 'POST' ? 'application/json' : undefined);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body['reason'], 'Forbidden', `${method} ${path}`);
      const ns = /\/namespaces\/([^/]+)\//.exec(path)?.[1];
      assert.match(String(res.body['message']), new RegExp(`User "${BOT_USER}" cannot ${verb} resource .* in the namespace "${ns}"$`), `${method} ${path}`);
    }
  });

  it('with the targets-file component: the file as a ConfigMap mounted read-only, CONFIG_FILE pointing at it; the API server takes both', async () => {
    const rendered = await renderTargetsManifests(tb, TARGETS, { targetsFile: true });
    const map = rendered.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('openclaw-toggle-targets-'));
    assert.ok(map, 'the targets ConfigMap');
    const file = (map['data'] as Record<string, string>)['targets.yaml'] ?? '';
    const parsed = parseTargets((parse(file) as { targets: unknown }).targets, [], 'targets.yaml');
    assert.deepEqual(parsed.map((t) => ({ namespace: t.namespace, name: t.deployment })), TARGETS);
    const deployment = rendered.find((o) => o.kind === 'Deployment');
    assert.ok(deployment);
    type Container = { env: Array<{ name: string; value?: string }>; volumeMounts: Array<{ name: string; mountPath: string; readOnly?: boolean }> };
    const spec = (deployment['spec'] as { template: { spec: { containers: Container[]; volumes: Array<{ name: string; configMap?: { name: string; items: Array<{ key: string; path: string }> } }> } } }).template.spec;
    const [container] = spec.containers;
    assert.ok(container);
    const configFile = container.env.find((e) => e.name === 'CONFIG_FILE')?.value ?? '';
    const mount = container.volumeMounts.find((m) => m.mountPath === dirname(configFile));
    assert.equal(mount?.readOnly, true, `a read-only mount at ${dirname(configFile)}`);
    const volume = spec.volumes.find((v) => v.name === mount?.name);
    assert.equal(volume?.configMap?.name, map.metadata.name);
    assert.deepEqual(volume?.configMap?.items, [{ key: 'targets.yaml', path: configFile.slice(dirname(configFile).length + 1) }]);
    // Valid as the API server sees it (a dry run: nothing is created, the bot is not started here).
    for (const o of [map, deployment]) {
      const res = await tb.admin.request('POST', `/api${o.apiVersion === 'v1' ? '' : 's'}/${o.apiVersion}/namespaces/${o.metadata.namespace ?? ''}/${o.kind.toLowerCase()}s?dryRun=All`, { body: o });
      assert.equal(res.status, 201, `${o.kind}: ${String(res.body['message'] ?? '')}`);
    }
  });
});
