/**
 * The Kubernetes manifests (config/kubernetes, a kustomize base) and the example registration: parsed with
 * `yaml` and checked against the code they deploy: the RBAC against the API calls src/kube makes, the probes
 * against the paths src/http-server.ts serves, ports against the default http.port, every environment
 * variable against the settings table. When a kustomize is on PATH (`kubectl kustomize` or `kustomize`), the
 * base is also rendered and the rendered objects checked; the YAML checks do not depend on it.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parseRegistration } from '../../src/appservice/registration.ts';
import { SETTINGS } from '../../src/config/settings.ts';
import { startKubeSimulator } from '../../src/dev/kube-simulator.ts';
import { createKube } from '../../src/kube/lean-kube.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const BASE = join(ROOT, 'config', 'kubernetes');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const DEFAULT_PORT = SETTINGS.find((s) => s.key === 'http.port')?.default;

// Loose shapes: the manifests are data; every access below is checked by an assertion.
type Obj = Record<string, any>;

interface Kustomization {
  resources: string[];
  namespace?: string;
  namePrefix?: string;
  nameSuffix?: string;
  images?: { name: string; newName?: string; newTag?: string }[];
  configMapGenerator?: { name: string; literals?: string[]; files?: string[]; envs?: string[] }[];
  secretGenerator?: { name: string; literals?: string[]; files?: string[]; envs?: string[] }[];
  transformers?: (string | Obj)[];
}

const read = (path: string): string => readFileSync(path, 'utf8');

/** Every document of a file, each required to parse without errors or warnings. */
function documents(path: string): Obj[] {
  const docs = parseAllDocuments(read(path));
  assert.ok(Array.isArray(docs), `${path}: not YAML`);
  return docs.map((doc, i) => {
    assert.deepEqual(doc.errors.map(String), [], `${path} document ${i + 1}`);
    assert.deepEqual(doc.warnings.map(String), [], `${path} document ${i + 1}`);
    return doc.toJS() as Obj;
  }).filter((o) => o !== null);
}

const kustomization = parse(read(join(BASE, 'kustomization.yaml'))) as Kustomization;
const objects: Obj[] = kustomization.resources.flatMap((r) => documents(join(BASE, r)).map((o) => ({ ...o, __file: r })));
const ofKind = (kind: string): Obj[] => objects.filter((o) => o['kind'] === kind);
const one = (kind: string): Obj => {
  const found = ofKind(kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0] as Obj;
};

/** The inline transformer configs of kustomization.yaml, parsed. */
const transformers: Obj[] = (kustomization.transformers ?? []).map((t) => (typeof t === 'string' ? parse(t) as Obj : t));
const configLiterals = new Map<string, string>(
  (kustomization.configMapGenerator ?? []).flatMap((g) => g.literals ?? []).map((l) => {
    const at = l.indexOf('=');
    return [l.slice(0, at), l.slice(at + 1)] as [string, string];
  }),
);
/** The namespace the bot's own objects get (kustomize's `namespace:` or a NamespaceTransformer). */
const botNamespace: string | undefined = kustomization.namespace ?? transformers.find((t) => t['kind'] === 'NamespaceTransformer')?.['metadata']?.['namespace'];
const targetNamespace = configLiterals.get('DEPLOYMENT_NAMESPACE') ?? botNamespace;
const targetName = configLiterals.get('DEPLOYMENT_NAME') ?? String(SETTINGS.find((s) => s.key === 'kubernetes.deployment')?.default);

const deployment = one('Deployment');
const podSpec = deployment['spec']['template']['spec'] as Obj;
const container = (podSpec['containers'] as Obj[])[0] as Obj;

/** Environment variable names the bot reads: every setting's, plus `<NAME>_FILE` of secret ones. */
const KNOWN_ENV = new Set(SETTINGS.flatMap((s) => (s.secret ? s.env.flatMap((e) => [e, `${e}_FILE`]) : s.env)));

describe('kustomization', () => {
  test('every listed resource exists and parses; kinds as expected; nothing cluster-scoped', () => {
    assert.ok(kustomization.resources.length > 0);
    for (const r of kustomization.resources) assert.ok(existsSync(join(BASE, r)), `${r} listed in kustomization.yaml does not exist`);
    for (const o of objects) {
      assert.ok(typeof o['apiVersion'] === 'string' && typeof o['kind'] === 'string' && typeof o['metadata']?.['name'] === 'string', `${o['__file']}: apiVersion, kind, metadata.name`);
    }
    assert.deepEqual(objects.map((o) => o['kind']).sort(), ['Deployment', 'PersistentVolumeClaim', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']);
    for (const kind of ['ClusterRole', 'ClusterRoleBinding', 'Namespace']) assert.equal(ofKind(kind).length, 0, `no ${kind}`);
    // No name prefix/suffix: a generator's name is the name the Deployment refers to (kustomize adds the hash).
    assert.equal(kustomization.namePrefix, undefined);
    assert.equal(kustomization.nameSuffix, undefined);
    assert.ok(botNamespace, 'the bot namespace is set');
  });

  test('the image is the one deployment.yaml names, tagged with the package version', () => {
    const image = (kustomization.images ?? []).find((i) => i.name === container['image']);
    assert.ok(image, `images: has an entry for ${String(container['image'])}`);
    assert.equal(image.newTag, VERSION);
    assert.ok(image.newName);
  });

  test('no secret in the ConfigMap; every variable in it is a setting', () => {
    const secretEnv = new Set(SETTINGS.filter((s) => s.secret).flatMap((s) => s.env));
    for (const [key] of configLiterals) {
      assert.doesNotMatch(key, /token|password|passphrase|secret/i, `${key} does not belong in a ConfigMap`);
      assert.ok(!secretEnv.has(key), `${key} is a secret setting`);
      assert.ok(KNOWN_ENV.has(key), `${key} (configMapGenerator) is not an environment variable the bot reads: a typo?`);
    }
    for (const g of kustomization.configMapGenerator ?? []) assert.equal(g.files, undefined, 'ConfigMaps from literals only, reviewed here');
    for (const key of ['MATRIX_HOMESERVER', 'ALLOWED_USERS', 'DEPLOYMENT_NAME', 'DEPLOYMENT_NAMESPACE']) assert.ok(configLiterals.has(key), key);
  });

  test('the registration Secret comes from a git-ignored file', () => {
    const registration = (kustomization.secretGenerator ?? []).find((g) => g.files?.includes('registration.yaml'));
    assert.ok(registration, 'a secretGenerator from registration.yaml');
    const ignored = read(join(BASE, '.gitignore')).split('\n').map((l) => l.trim());
    for (const g of kustomization.secretGenerator ?? []) for (const f of g.files ?? []) assert.ok(ignored.includes(f), `${f} must be in config/kubernetes/.gitignore`);
    assert.equal((kustomization.secretGenerator ?? []).some((g) => (g.literals ?? []).length > 0), false, 'no secret literals in kustomization.yaml');
  });
});

describe('RBAC', () => {
  const role = one('Role');
  const rules = role['rules'] as Obj[];
  /**
   * The rules on the Deployment (apps), each limited to it by name; the audit's rule on events cannot be (a create has no name yet),
   * nor the one on pods (their names are generated).
   */
  const appsRules = rules.filter((r) => (r['apiGroups'] as string[]).includes('apps'));
  const granted = new Set(rules.flatMap((r) => (r['resources'] as string[]).flatMap((res) => (r['verbs'] as string[]).map((v) => `${v} ${res}`))));

  test('a namespaced Role: get/list/watch on the Deployment, get/patch on its scale, in apps, create on events, list/watch on pods, nothing else, no wildcards', () => {
    assert.equal(role['kind'], 'Role');
    assert.deepEqual(rules.filter((r) => !appsRules.includes(r)), [
      { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
      // Not get: the bot never reads one pod by name; nor pods/log, pods/exec or a delete.
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
    ]);
    for (const rule of appsRules) {
      assert.deepEqual(rule['apiGroups'], ['apps']);
      for (const res of rule['resources'] as string[]) assert.ok(['deployments', 'deployments/scale'].includes(res), res);
      for (const verb of rule['verbs'] as string[]) assert.ok(['get', 'list', 'watch', 'patch'].includes(verb), verb);
      assert.equal(rule['nonResourceURLs'], undefined);
      assert.ok(!JSON.stringify(rule).includes('*'), 'no wildcard');
      // Limited to the target Deployment (a list or watch too: it carries a metadata.name fieldSelector).
      assert.deepEqual(rule['resourceNames'], [targetName]);
    }
    assert.ok(!granted.has('patch deployments'), 'the Deployment itself is never patched: only its scale subresource');
  });

  test('the Role grants exactly what src/kube sends (every request the client makes, watch included, against the simulator)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'manifests-rbac-'));
    const sim = await startKubeSimulator({ dir, readyDelayMs: 0, deployments: [{ namespace: 'agents', name: targetName, replicas: 0 }],
      tokens: { t: { user: 'system:serviceaccount:openclaw:openclaw-toggle', canGet: true, canPatch: true, canWatch: true, canCreateEvents: true, canListPods: true } } });
    const target = { namespace: 'agents', name: targetName };
    const sent: Array<{ method: string; path: string }> = [];
    const onRequest = (method: string, path: string): void => void sent.push({ method, path });
    try {
      // Without a watch: every call asks the API; with one: the watch lists and watches.
      const plain = createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: 2_000, onRequest });
      await plain.status(target);
      await plain.ping(target);
      await plain.recordEvent(target, { reason: 'ScaledByChat', action: 'Check', note: 'dry run' }, { dryRun: true });
      await plain.recordEvent(target, { reason: 'ScaledByChat', action: 'Start', note: 'before any scale: its uid is read' });
      await plain.scale(target, 1);
      await plain.recordEvent(target, { reason: 'ScaledByChat', action: 'Start', note: 'start by @a:x in !r:x' });
      const watching = createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: 2_000, onRequest, watch: target });
      for (let i = 0; i < 100 && !(watching.watchStats?.watches ?? 0); i++) await new Promise((r) => setTimeout(r, 20));
      await watching.scale(target, 0);
      await watching.status(target);
      // Following a rollout: the pods by the Deployment's selector, listed then watched.
      for (let i = 0; i < 100 && !sent.some((r) => r.path.includes('/pods?') && r.path.includes('watch=1')); i++) {
        watching.rollout(target);
        await new Promise((r) => setTimeout(r, 20));
      }
      await Promise.all([plain.close(), watching.close()]);
    } finally {
      await sim.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    const needed = new Set<string>();
    for (const { method, path } of sent) {
      const url = new URL(path, 'https://x');
      if (/^\/apis\/events\.k8s\.io\/v1\/namespaces\/agents\/events$/.test(url.pathname) && method === 'POST') {
        needed.add('create events');
        continue;
      }
      if (url.pathname === '/api/v1/namespaces/agents/pods' && method === 'GET') {
        assert.equal(url.searchParams.get('labelSelector'), `app=${targetName}`, 'the pods of the Deployment, by its selector');
        needed.add(`${url.searchParams.get('watch') ? 'watch' : 'list'} pods`);
        continue;
      }
      const m = /^\/apis\/apps\/v1\/namespaces\/[^/]+\/deployments(?:\/([^/]+)(\/scale)?)?$/.exec(url.pathname);
      assert.ok(m, `src/kube sent ${method} ${path}: add the RBAC it needs to role.yaml and to this test`);
      if (m[1] === undefined) {
        assert.equal(url.searchParams.get('fieldSelector'), `metadata.name=${targetName}`, 'a list or watch names the one Deployment (or resourceNames would not allow it)');
        needed.add(`${url.searchParams.get('watch') ? 'watch' : 'list'} deployments`);
      } else {
        assert.equal(m[1], targetName);
        needed.add(`${method === 'PATCH' ? 'patch' : 'get'} deployments${m[2] ?? ''}`);
      }
    }
    assert.deepEqual([...granted].sort(), [...needed].sort());
  });

  test('the RoleBinding binds that Role to the ServiceAccount the Deployment runs as, in the target namespace', () => {
    const binding = one('RoleBinding');
    const sa = one('ServiceAccount');
    assert.deepEqual(binding['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role['metadata']['name'] });
    assert.equal(podSpec['serviceAccountName'], sa['metadata']['name']);
    assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: sa['metadata']['name'], namespace: botNamespace }]);
    // The files' own namespaces (as applied without kustomize) agree with the settings.
    assert.equal(role['metadata']['namespace'], targetNamespace);
    assert.equal(binding['metadata']['namespace'], targetNamespace);
    assert.equal(sa['metadata']['namespace'], undefined, 'the bot namespace comes from kustomization.yaml');
  });

  test('kustomization.yaml moves the Role and RoleBinding to DEPLOYMENT_NAMESPACE and limits them to DEPLOYMENT_NAME', () => {
    const ns = transformers.find((t) => t['kind'] === 'NamespaceTransformer');
    assert.ok(ns, 'a NamespaceTransformer');
    assert.equal(ns['unsetOnly'], true, 'it must not move the Role out of the target namespace');
    assert.equal(kustomization.namespace, undefined, 'kustomize\'s namespace: field would move the Role into the bot\'s namespace');
    const replacements = (transformers.find((t) => t['kind'] === 'ReplacementTransformer')?.['replacements'] ?? []) as Obj[];
    const targetsOf = (fieldPath: string): string[] => replacements.filter((r) => r['source']['fieldPath'] === fieldPath)
      .flatMap((r) => (r['targets'] as Obj[]).flatMap((t) => (t['fieldPaths'] as string[]).map((f) => `${t['select']['kind']} ${f}`)));
    assert.deepEqual(targetsOf('data.DEPLOYMENT_NAMESPACE').sort(), ['Role metadata.namespace', 'RoleBinding metadata.namespace']);
    assert.deepEqual(targetsOf('data.DEPLOYMENT_NAME').sort(), appsRules.map((r) => `Role rules.${rules.indexOf(r)}.resourceNames.0`).sort());
    // The base's RoleBinding, and those of further targets, selected by label (manifests-targets.test.ts).
    assert.deepEqual(targetsOf('metadata.namespace'), ['RoleBinding subjects.[name=openclaw-toggle].namespace', 'RoleBinding subjects.[name=openclaw-toggle].namespace']);
  });
});

describe('Deployment', () => {
  test('one replica, Recreate: the crypto store has a single writer', () => {
    assert.equal(deployment['spec']['replicas'], 1);
    assert.deepEqual(deployment['spec']['strategy'], { type: 'Recreate' });
    assert.equal((podSpec['containers'] as Obj[]).length, 1);
  });

  test('hardened pod and container security contexts, same user as the image', () => {
    const pod = podSpec['securityContext'] as Obj;
    const userLine = /^USER\s+(\d+):(\d+)\s*$/m.exec(read(join(ROOT, 'Dockerfile')));
    assert.ok(userLine, 'Dockerfile USER uid:gid');
    assert.equal(pod['runAsNonRoot'], true);
    assert.equal(pod['runAsUser'], Number(userLine[1]));
    assert.equal(pod['runAsGroup'], Number(userLine[2]));
    assert.equal(pod['fsGroup'], Number(userLine[2]));
    assert.deepEqual(pod['seccompProfile'], { type: 'RuntimeDefault' });
    const c = container['securityContext'] as Obj;
    assert.equal(c['readOnlyRootFilesystem'], true);
    assert.equal(c['allowPrivilegeEscalation'], false);
    assert.deepEqual(c['capabilities'], { drop: ['ALL'] });
    assert.notEqual(c['privileged'], true);
    assert.equal(podSpec['automountServiceAccountToken'], true, 'the bot uses its ServiceAccount token');
    assert.equal(podSpec['enableServiceLinks'], false, 'no injected <SERVICE>_PORT variables (a Service named "http" would set HTTP_PORT)');
    assert.equal(podSpec['terminationGracePeriodSeconds'], 30);
    assert.equal(podSpec['hostNetwork'], undefined);
  });

  test('resources: a CPU request, a memory request and limit', () => {
    assert.deepEqual(container['resources'], { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '128Mi' } });
  });

  test('probes: GET /health and /ready, served by src/http-server.ts, on the named container port', () => {
    const server = read(join(ROOT, 'src', 'http-server.ts'));
    const ports = container['ports'] as Obj[];
    assert.deepEqual(ports, [{ name: 'http', containerPort: DEFAULT_PORT, protocol: 'TCP' }]);
    for (const [probe, path] of [['livenessProbe', '/health'], ['readinessProbe', '/ready']] as const) {
      const get = container[probe]?.['httpGet'] as Obj;
      assert.equal(get['path'], path, probe);
      assert.ok(server.includes(`app.get('${path}'`), `${path} is not served by src/http-server.ts`);
      assert.ok(ports.some((p) => p['name'] === get['port'] || p['containerPort'] === get['port']), `${probe} port ${String(get['port'])} is not a container port`);
    }
  });

  test('environment: only variables the bot reads; fixed paths match the volumes; the port matches', () => {
    const env = container['env'] as Obj[];
    const names = env.map((e) => e['name'] as string);
    // Commented-out variables (the optional store passphrase) must be right too when someone enables them.
    const commented = [...read(join(BASE, 'deployment.yaml')).matchAll(/^\s*#\s*- name: ([A-Z][A-Z0-9_]+)\s*$/gm)].map((m) => m[1] as string);
    for (const name of [...names, ...commented]) assert.ok(KNOWN_ENV.has(name), `${name} is not an environment variable the bot reads: a typo?`);
    assert.equal(new Set(names).size, names.length, 'no duplicates');
    const value = (name: string): string | undefined => env.find((e) => e['name'] === name)?.['value'];
    assert.equal(value('HTTP_PORT'), String(DEFAULT_PORT));

    const mounts = container['volumeMounts'] as Obj[];
    const volumes = podSpec['volumes'] as Obj[];
    const volumeAt = (path: string): Obj | undefined => {
      const mount = mounts.find((m) => path === m['mountPath'] || path.startsWith(`${m['mountPath']}/`));
      return mount && { mount, volume: volumes.find((v) => v['name'] === mount['name']) };
    };
    const store = volumeAt(value('CRYPTO_STORE_PATH') ?? '');
    assert.equal(store?.['mount']['mountPath'], '/data');
    assert.equal(store?.['volume']['persistentVolumeClaim']['claimName'], one('PersistentVolumeClaim')['metadata']['name']);
    const registrationFile = value('AS_REGISTRATION_FILE') ?? '';
    const registration = volumeAt(registrationFile);
    assert.ok(registration, 'AS_REGISTRATION_FILE is on a mounted volume');
    assert.equal(registration['mount']['readOnly'], true);
    const secret = registration['volume']['secret'] as Obj;
    assert.ok(secret, 'the registration comes from a Secret');
    const item = (secret['items'] as Obj[]).find((i) => `${registration['mount']['mountPath']}/${i['path']}` === registrationFile);
    assert.ok(item, 'the Secret item lands at AS_REGISTRATION_FILE');
    assert.equal(item['key'], 'registration.yaml');
    assert.equal(secret['defaultMode'], 0o440, 'readable by the bot\'s group (fsGroup), not by others');
    assert.ok(volumeAt('/tmp')?.['volume']['emptyDir'], 'a writable /tmp on a read-only root filesystem');
    const pvc = one('PersistentVolumeClaim');
    assert.deepEqual(pvc['spec']['accessModes'], ['ReadWriteOnce']);
  });

  test('every Secret and ConfigMap it refers to is made by a generator of kustomization.yaml', () => {
    const refs: { kind: string; name: string }[] = [];
    for (const v of podSpec['volumes'] as Obj[]) {
      if (v['secret']) refs.push({ kind: 'Secret', name: v['secret']['secretName'] });
      if (v['configMap']) refs.push({ kind: 'ConfigMap', name: v['configMap']['name'] });
      for (const s of v['projected']?.['sources'] ?? []) {
        if (s['secret']) refs.push({ kind: 'Secret', name: s['secret']['name'] });
        if (s['configMap']) refs.push({ kind: 'ConfigMap', name: s['configMap']['name'] });
      }
    }
    for (const e of container['envFrom'] ?? []) {
      if (e['configMapRef']) refs.push({ kind: 'ConfigMap', name: e['configMapRef']['name'] });
      if (e['secretRef']) refs.push({ kind: 'Secret', name: e['secretRef']['name'] });
    }
    for (const e of container['env'] ?? []) {
      if (e['valueFrom']?.['configMapKeyRef']) refs.push({ kind: 'ConfigMap', name: e['valueFrom']['configMapKeyRef']['name'] });
      if (e['valueFrom']?.['secretKeyRef']) refs.push({ kind: 'Secret', name: e['valueFrom']['secretKeyRef']['name'] });
    }
    assert.ok(refs.some((r) => r.kind === 'Secret') && refs.some((r) => r.kind === 'ConfigMap'));
    const made = new Set([
      ...(kustomization.secretGenerator ?? []).map((g) => `Secret ${g.name}`),
      ...(kustomization.configMapGenerator ?? []).map((g) => `ConfigMap ${g.name}`),
    ]);
    for (const r of refs) assert.ok(made.has(`${r.kind} ${r.name}`), `${r.kind} ${r.name} is not generated by kustomization.yaml`);
  });
});

describe('Service and registration', () => {
  const service = one('Service');
  const example = read(join(ROOT, 'registration', 'registration.example.yaml'));
  // The example holds placeholder tokens, which parseRegistration rightly refuses: read its url directly.
  const url = new URL(String((parse(example) as { url?: unknown }).url ?? ''));

  test('Service port = container port = registration url port = default http.port', () => {
    const [port] = service['spec']['ports'] as Obj[];
    assert.equal((service['spec']['ports'] as Obj[]).length, 1);
    const containerPort = (container['ports'] as Obj[])[0] as Obj;
    assert.equal(service['spec']['type'], 'ClusterIP');
    assert.equal(port?.['port'], containerPort['containerPort']);
    assert.ok(port?.['targetPort'] === containerPort['name'] || port?.['targetPort'] === containerPort['containerPort']);
    assert.equal(Number(url.port), port?.['port']);
    assert.equal(port?.['port'], DEFAULT_PORT);
  });

  test('the Service selects the pod, and routes to it even while it is not ready', () => {
    const labels = deployment['spec']['template']['metadata']['labels'] as Obj;
    for (const [k, v] of Object.entries(service['spec']['selector'] as Obj)) assert.equal(labels[k], v, k);
    for (const [k, v] of Object.entries(deployment['spec']['selector']['matchLabels'] as Obj)) assert.equal(labels[k], v, k);
    assert.equal(service['spec']['publishNotReadyAddresses'], true);
  });

  test('the example registration: the Service\'s in-cluster URL, placeholder tokens, the encryption flags', () => {
    assert.equal(url.protocol, 'http:');
    assert.equal(url.hostname, `${service['metadata']['name']}.${botNamespace}.svc`);
    const raw = parse(example) as Obj;
    assert.match(String(raw['as_token']), /^CHANGE-ME/);
    assert.match(String(raw['hs_token']), /^CHANGE-ME/);
    // …which the bot refuses until a real registration replaces it.
    assert.throws(() => parseRegistration(example), /placeholder/);
    for (const flag of ['receive_ephemeral', 'de.sorunome.msc2409.push_ephemeral', 'org.matrix.msc3202', 'io.element.msc4190']) assert.equal(raw[flag], true, flag);
    assert.equal(raw['rate_limited'], false);
    assert.equal(raw['namespaces']['users'][0]['exclusive'], true);
    // The README's commands use the same URL.
    assert.ok(read(join(BASE, 'README.md')).includes(String(raw['url'])));
  });

  test('the homeserver snippet: the registration file and both experimental features', () => {
    const snippet = parse(read(join(ROOT, 'registration', 'homeserver-snippet.yaml'))) as Obj;
    assert.ok(Array.isArray(snippet['app_service_config_files']) && snippet['app_service_config_files'].length === 1);
    assert.deepEqual(snippet['experimental_features'], { msc2409_to_device_messages_enabled: true, msc3202_transaction_extensions: true });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rendering with a real kustomize, when one is installed (kubectl has one built in).

function findKustomize(): string[] | undefined {
  for (const cmd of [['kustomize', 'build'], ['kubectl', 'kustomize']]) {
    const probe = spawnSync(cmd[0] as string, cmd[0] === 'kubectl' ? ['kustomize', '--help'] : ['version'], { encoding: 'utf8', timeout: 20_000 });
    if (probe.status === 0) return cmd;
  }
  return undefined;
}

describe('kustomize build', () => {
  const kustomize = findKustomize();
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'openclaw-manifests-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Renders a copy of the base (with the example registration), after `edit` changes its kustomization text. */
  function render(name: string, edit: (text: string) => string = (t) => t): Obj[] {
    const copy = join(dir, name);
    cpSync(BASE, copy, { recursive: true });
    writeFileSync(join(copy, 'registration.yaml'), read(join(ROOT, 'registration', 'registration.example.yaml')));
    const path = join(copy, 'kustomization.yaml');
    writeFileSync(path, edit(read(path)));
    const out = spawnSync((kustomize as string[])[0] as string, [...(kustomize as string[]).slice(1), copy], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(out.status, 0, `${(kustomize as string[]).join(' ')} failed: ${out.stderr}`);
    return parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj);
  }

  const find = (docs: Obj[], kind: string): Obj => {
    const found = docs.filter((d) => d['kind'] === kind);
    assert.equal(found.length, 1, kind);
    return found[0] as Obj;
  };

  test('the base renders; generated names are wired into the Deployment; namespaces as configured', { skip: kustomize ? false : 'no kustomize or kubectl on PATH' }, (t: TestContext) => {
    t.diagnostic(`rendered with: ${(kustomize as string[]).join(' ')}`);
    const docs = render('default');
    const d = find(docs, 'Deployment');
    const spec = d['spec']['template']['spec'] as Obj;
    const cm = find(docs, 'ConfigMap');
    const secret = find(docs, 'Secret');
    assert.match(cm['metadata']['name'], /^openclaw-toggle-config-[a-z0-9]+$/);
    assert.equal(spec['containers'][0]['envFrom'][0]['configMapRef']['name'], cm['metadata']['name']);
    assert.equal((spec['volumes'] as Obj[]).find((v) => v['secret'])?.['secret']['secretName'], secret['metadata']['name']);
    assert.ok(secret['data']['registration.yaml']);
    assert.equal(spec['containers'][0]['image'], `${String(kustomization.images?.[0]?.newName)}:${VERSION}`);
    for (const doc of docs) {
      const expected = ['Role', 'RoleBinding'].includes(doc['kind']) ? targetNamespace : botNamespace;
      assert.equal(doc['metadata']['namespace'], expected, `${doc['kind']} ${doc['metadata']['name']}`);
    }
    assert.equal(find(docs, 'RoleBinding')['subjects'][0]['namespace'], botNamespace);
  });

  test('another target Deployment: only DEPLOYMENT_NAMESPACE / DEPLOYMENT_NAME change, the RBAC follows', { skip: kustomize ? false : 'no kustomize or kubectl on PATH' }, () => {
    const docs = render('elsewhere', (text) => {
      const edited = text.replace(/DEPLOYMENT_NAMESPACE=\S+/, 'DEPLOYMENT_NAMESPACE=agents').replace(/DEPLOYMENT_NAME=\S+/, 'DEPLOYMENT_NAME=web');
      assert.notEqual(edited, text);
      return edited;
    });
    const role = find(docs, 'Role');
    const binding = find(docs, 'RoleBinding');
    assert.equal(role['metadata']['namespace'], 'agents');
    assert.equal(binding['metadata']['namespace'], 'agents');
    for (const rule of role['rules'] as Obj[]) assert.deepEqual(rule['resourceNames'], (rule['apiGroups'] as string[]).includes('apps') ? ['web'] : undefined);
    assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: 'openclaw-toggle', namespace: botNamespace }]);
    assert.equal(find(docs, 'Deployment')['metadata']['namespace'], botNamespace);
    assert.equal(find(docs, 'ConfigMap')['data']['DEPLOYMENT_NAMESPACE'], 'agents');
  });
});
