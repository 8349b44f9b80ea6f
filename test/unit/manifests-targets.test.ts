/**
 * Several targets in config/kubernetes (README.md there, "Several targets"): the target-RBAC component and the
 * example target directory, the targets-file component and its sample. Parsed with `yaml` and checked against
 * the base (the same rules as role.yaml, the same ServiceAccount, the Deployment's container) and the code (the
 * sample parses as the bot parses `targets:`, CONFIG_FILE is what src/cli.ts reads). When a kustomize is on
 * PATH, the base is also rendered with them enabled as README.md says, and the rendered objects checked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { parseTargets } from '../../src/config/targets.ts';
import { EXAMPLE_TARGET_DIR, PROJECT_BASE as BASE, prepareTargetsCopy, TARGET_FILE, TARGETS_FILE, TARGETS_FILE_COMPONENT, type TargetRef } from '../../src/dev/kube-testbed/targets-kustomization.ts';

// Loose shapes: the manifests are data; every access below is checked by an assertion.
type Obj = Record<string, any>;

const read = (path: string): string => readFileSync(join(BASE, path), 'utf8');
const yamlOf = (path: string): Obj => parse(read(path)) as Obj;
const docsOf = (path: string): Obj[] => parseAllDocuments(read(path)).map((d) => d.toJS() as Obj);
const RBAC_COMPONENT = 'components/target-rbac';

const base = yamlOf('kustomization.yaml');
const baseRole = yamlOf('role.yaml');
const baseSa = yamlOf('serviceaccount.yaml');
const baseDeployment = yamlOf('deployment.yaml');
const literal = (k: Obj, key: string): string | undefined => ((k['configMapGenerator'] ?? []) as Obj[])
  .flatMap((g) => (g['literals'] ?? []) as string[]).find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);
const baseTarget: TargetRef = { namespace: String(literal(base, 'DEPLOYMENT_NAMESPACE')), name: String(literal(base, 'DEPLOYMENT_NAME')) };
const botNamespace = String(((base['transformers'] as string[]).map((t) => parse(t) as Obj).find((t) => t['kind'] === 'NamespaceTransformer'))?.['metadata']['namespace']);
const baseReplacements = ((base['transformers'] as string[]).map((t) => parse(t) as Obj).find((t) => t['kind'] === 'ReplacementTransformer')?.['replacements'] ?? []) as Obj[];

const rbacComponent = yamlOf(`${RBAC_COMPONENT}/kustomization.yaml`);
const role = yamlOf(`${RBAC_COMPONENT}/role.yaml`);
const binding = yamlOf(`${RBAC_COMPONENT}/rolebinding.yaml`);
/** The target directories shipped (the example). */
const targetDirs = readdirSync(join(BASE, 'targets')).map((d) => `targets/${d}`);

/** Every YAML document of the new directories, for the kinds they hold. */
const newFiles = [RBAC_COMPONENT, TARGETS_FILE_COMPONENT, ...targetDirs]
  .flatMap((dir) => readdirSync(join(BASE, dir)).filter((f) => f.endsWith('.yaml')).map((f) => `${dir}/${f}`));

describe('the RBAC of a further target (components/target-rbac, targets/comfy)', () => {
  test('nothing cluster-wide in any of the new files', () => {
    assert.ok(newFiles.length >= 7, newFiles.join());
    for (const file of newFiles) {
      for (const doc of docsOf(file)) assert.ok(!/^Cluster/.test(String(doc?.['kind'])), `${file}: ${String(doc?.['kind'])}`);
    }
  });

  test('the Role has the base Role\'s rules, resourceNames aside; the replacements narrow every named rule to DEPLOYMENT_NAME', () => {
    assert.equal(rbacComponent['kind'], 'Component');
    assert.deepEqual(rbacComponent['resources'], ['role.yaml', 'rolebinding.yaml']);
    assert.equal(role['kind'], 'Role');
    const rules = role['rules'] as Obj[];
    const named = rules.map((r, i) => (r['resourceNames'] ? i : -1)).filter((i) => i >= 0);
    const withBaseName = rules.map((r) => (r['resourceNames'] ? { ...r, resourceNames: [baseTarget.name] } : r));
    assert.deepEqual(withBaseName, baseRole['rules']);
    const paths = (fieldPath: string, kind: string): string[] => (rbacComponent['replacements'] as Obj[])
      .filter((r) => r['source']['fieldPath'] === fieldPath)
      .flatMap((r) => (r['targets'] as Obj[]).filter((t) => t['select']['kind'] === kind).flatMap((t) => t['fieldPaths'] as string[]));
    assert.deepEqual(paths('data.DEPLOYMENT_NAME', 'Role').filter((p) => p.startsWith('rules.')).sort(), named.map((i) => `rules.${i}.resourceNames.0`).sort());
    assert.deepEqual(paths('data.DEPLOYMENT_NAMESPACE', 'Role'), ['metadata.namespace']);
    assert.deepEqual(paths('data.DEPLOYMENT_NAMESPACE', 'RoleBinding'), ['metadata.namespace']);
    // Placeholders that name nothing: not a valid namespace or Deployment name, should a replacement miss.
    assert.doesNotMatch(String(role['metadata']['namespace']), /^[a-z0-9-]+$/);
    for (const i of named) for (const n of rules[i]?.['resourceNames'] as string[]) assert.doesNotMatch(n, /^[a-z0-9.-]+$/);
  });

  test('names: openclaw-toggle-<Deployment>, never the base\'s openclaw-toggle (which its replacements select); renamed last', () => {
    const replacements = rbacComponent['replacements'] as Obj[];
    const last = replacements.at(-1) as Obj;
    assert.equal(last['source']['fieldPath'], 'data.DEPLOYMENT_NAME');
    const renames = (last['targets'] as Obj[]).map((t) => `${t['select']['kind']} ${(t['fieldPaths'] as string[]).join(',')} ${JSON.stringify(t['options'])}`);
    assert.deepEqual(renames, [`Role metadata.name {"delimiter":"-","index":2}`, `RoleBinding metadata.name,roleRef.name {"delimiter":"-","index":2}`]);
    for (const o of [role, binding]) assert.equal(o['metadata']['name'].split('-').length, 3, 'the third part is the one replaced');
    for (const r of replacements.slice(0, -1)) {
      for (const t of r['targets'] as Obj[]) {
        assert.equal(t['select']['name'], role['metadata']['name'], 'selected before the rename');
        assert.ok(!(t['fieldPaths'] as string[]).includes('metadata.name'));
      }
    }
    assert.notEqual(role['metadata']['name'], baseRole['metadata']['name']);
    const baseSelects = baseReplacements.flatMap((r) => (r['targets'] as Obj[]).map((t) => t['select'] as Obj));
    for (const s of baseSelects.filter((s) => s['name'] !== undefined)) assert.notEqual(s['name'], role['metadata']['name']);
  });

  test('the RoleBinding: that Role, the base\'s ServiceAccount; the base sets its subject\'s namespace to the bot\'s', () => {
    assert.deepEqual(binding['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role['metadata']['name'] });
    assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: baseSa['metadata']['name'], namespace: botNamespace }]);
    const label = 'app.kubernetes.io/component';
    assert.equal(binding['metadata']['labels'][label], 'target-rbac');
    const fromSa = baseReplacements.find((r) => r['source']['kind'] === 'ServiceAccount' && r['source']['fieldPath'] === 'metadata.namespace');
    assert.ok(fromSa, 'the base copies the ServiceAccount\'s namespace');
    const byLabel = (fromSa['targets'] as Obj[]).find((t) => t['select']['labelSelector'] === `${label}=target-rbac`);
    assert.deepEqual(byLabel, { select: { kind: 'RoleBinding', labelSelector: `${label}=target-rbac` }, fieldPaths: [`subjects.[name=${baseSa['metadata']['name']}].namespace`] });
  });

  test('each target directory: the component, and target.yaml, a ConfigMap of the two values it reads, which it drops', () => {
    assert.ok(targetDirs.includes(EXAMPLE_TARGET_DIR));
    for (const dir of targetDirs) {
      const k = yamlOf(`${dir}/kustomization.yaml`);
      assert.deepEqual(k['components'], [posix.relative(dir, RBAC_COMPONENT)]);
      assert.ok(existsSync(join(BASE, dir, String(k['components'][0]), 'kustomization.yaml')));
      // A resource, not a generator: kustomize < 5.1 runs components before a directory's generators.
      assert.deepEqual(k['resources'], [TARGET_FILE]);
      assert.equal(k['configMapGenerator'], undefined);
      const source = yamlOf(`${dir}/${TARGET_FILE}`);
      assert.equal(source['kind'], 'ConfigMap');
      assert.deepEqual(Object.keys(source['data']), ['DEPLOYMENT_NAMESPACE', 'DEPLOYMENT_NAME']);
      for (const r of rbacComponent['replacements'] as Obj[]) assert.deepEqual({ ...r['source'], fieldPath: undefined }, { kind: 'ConfigMap', name: source['metadata']['name'], fieldPath: undefined });
    }
    // Dropped after the replacements (the transformers: field runs after them), by its name.
    const drops = (rbacComponent['transformers'] as string[]).map((t) => parse(t) as Obj);
    assert.deepEqual(drops.map((d) => d['kind']), ['PatchTransformer']);
    assert.deepEqual(parse(drops[0]?.['patch']), { $patch: 'delete', apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: yamlOf(`${EXAMPLE_TARGET_DIR}/${TARGET_FILE}`)['metadata']['name'] } });
  });

  test('the base lists no target directory and no component until the operator uncomments them', () => {
    assert.equal(base['components'], undefined);
    assert.ok(!(base['resources'] as string[]).some((r) => r.startsWith('targets/')));
    assert.match(read('kustomization.yaml'), new RegExp(`^\\s*# - ${EXAMPLE_TARGET_DIR}$`, 'm'));
    assert.match(read('kustomization.yaml'), new RegExp(`^# components:\\n#\\s+- ${TARGETS_FILE_COMPONENT}$`, 'm'));
  });
});

describe('the targets file (components/targets-file)', () => {
  const component = yamlOf(`${TARGETS_FILE_COMPONENT}/kustomization.yaml`);
  const patch = yamlOf(`${TARGETS_FILE_COMPONENT}/${(component['patches'] as Obj[])[0]?.['path']}`);
  const baseContainer = baseDeployment['spec']['template']['spec']['containers'][0] as Obj;
  const container = (patch['spec']['template']['spec']['containers'] as Obj[])[0] as Obj;
  const volumes = patch['spec']['template']['spec']['volumes'] as Obj[];

  test('a ConfigMap from targets.yaml; the patch is for the base\'s Deployment and its container', () => {
    assert.equal(component['kind'], 'Component');
    assert.deepEqual((component['configMapGenerator'] as Obj[]).map((g) => g['files']), [['targets.yaml']]);
    assert.deepEqual((component['patches'] as Obj[])[0]?.['target'], { kind: 'Deployment', name: baseDeployment['metadata']['name'] });
    assert.equal(patch['metadata']['name'], baseDeployment['metadata']['name']);
    assert.equal((patch['spec']['template']['spec']['containers'] as Obj[]).length, 1);
    assert.equal(container['name'], baseContainer['name']);
  });

  test('mounted read-only, on its own path; CONFIG_FILE (what src/cli.ts reads) is the mounted file', () => {
    assert.match(readFileSync(join(BASE, '..', '..', 'src', 'cli.ts'), 'utf8'), /env\['CONFIG_FILE'\]/);
    const env = container['env'] as Obj[];
    assert.deepEqual(env.map((e) => e['name']), ['CONFIG_FILE']);
    const [mount] = container['volumeMounts'] as Obj[];
    assert.equal((container['volumeMounts'] as Obj[]).length, 1);
    assert.equal(mount?.['readOnly'], true);
    const volume = volumes.find((v) => v['name'] === mount?.['name']);
    assert.ok(volume, 'the mount\'s volume');
    assert.equal(volume['configMap']['name'], (component['configMapGenerator'] as Obj[])[0]?.['name']);
    const items = volume['configMap']['items'] as Obj[];
    assert.deepEqual(items.map((i) => i['key']), ['targets.yaml']);
    assert.equal(env[0]?.['value'], `${mount?.['mountPath']}/${items[0]?.['path']}`);
    assert.equal(volume['configMap']['defaultMode'], 0o444);
    // Beside the base's mounts, not over or under one (the registration's /etc/openclaw is a Secret).
    for (const m of baseContainer['volumeMounts'] as Obj[]) {
      const [a, b] = [`${m['mountPath']}/`, `${mount?.['mountPath']}/`];
      assert.ok(!a.startsWith(b) && !b.startsWith(a), `${String(mount?.['mountPath'])} and ${String(m['mountPath'])}`);
    }
    const baseVolumes = (baseDeployment['spec']['template']['spec']['volumes'] as Obj[]).map((v) => v['name']);
    assert.ok(!baseVolumes.includes(volume['name']));
    assert.ok(!(baseContainer['env'] as Obj[]).some((e) => e['name'] === 'CONFIG_FILE'));
  });

  test('the sample parses as the bot parses targets:; its first target is the base\'s, each further one has its directory', () => {
    const sample = parse(read(TARGETS_FILE)) as Obj;
    assert.deepEqual(Object.keys(sample), ['targets']);
    const targets = parseTargets(sample['targets'], [], TARGETS_FILE);
    assert.equal(targets.length, 2);
    assert.deepEqual({ namespace: targets[0]?.namespace, name: targets[0]?.deployment }, baseTarget);
    const dirs = targetDirs.map((d) => { const { data } = yamlOf(`${d}/${TARGET_FILE}`); return `${data['DEPLOYMENT_NAMESPACE']}/${data['DEPLOYMENT_NAME']}`; });
    assert.deepEqual(targets.slice(1).map((t) => `${t.namespace}/${t.deployment}`).sort(), dirs.sort());
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rendering with a real kustomize, when one is installed.

function findKustomize(): string[] | undefined {
  for (const cmd of [['kustomize', 'build'], ['kubectl', 'kustomize']]) {
    const probe = spawnSync(cmd[0] as string, cmd[0] === 'kubectl' ? ['kustomize', '--help'] : ['version'], { encoding: 'utf8', timeout: 20_000 });
    if (probe.status === 0) return cmd;
  }
  return undefined;
}

describe('kustomize build with several targets', () => {
  const kustomize = findKustomize();
  const skip = kustomize ? false : 'no kustomize or kubectl on PATH';
  let dir: string;
  let copies = 0;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'openclaw-targets-test-')); });
  after(() => rm(dir, { recursive: true, force: true }));

  async function render(targets: readonly TargetRef[], options: Parameters<typeof prepareTargetsCopy>[2] = {}): Promise<Obj[]> {
    const work = join(dir, String(copies++));
    await prepareTargetsCopy(work, targets, options);
    const [cmd, ...args] = kustomize as string[];
    const out = spawnSync(cmd as string, [...args, work], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(out.status, 0, `${(kustomize as string[]).join(' ')} failed: ${out.stderr}`);
    return parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj);
  }
  const ofKind = (docs: Obj[], kind: string): Obj[] => docs.filter((d) => d['kind'] === kind);
  const nameOf = (o: Obj): string => `${o['metadata']['namespace']}/${o['metadata']['name']}`;
  /** The rules a rendered Role must have for the Deployment `name`. */
  const rulesFor = (name: string): Obj[] => (baseRole['rules'] as Obj[]).map((r) => (r['resourceNames'] ? { ...r, resourceNames: [name] } : r));

  test('as README.md says: the two lines uncommented, the sample as it is: its Roles, the file mounted as CONFIG_FILE', { skip }, async () => {
    // What an operator does: "# " taken off each line.
    const docs = await render([baseTarget], { edit: (text) => text.replace(/^( *)# (- targets\/comfy)$/m, '$1$2')
      .replace(/^# (components:)$/m, '$1').replace(/^# ( +- components\/targets-file)$/m, '$1') });
    assert.deepEqual(docs.filter((d) => /^Cluster/.test(d['kind'])), []);
    assert.deepEqual(ofKind(docs, 'Role').map(nameOf).sort(), ['media/openclaw-toggle-comfyui', `${baseTarget.namespace}/openclaw-toggle`]);
    const comfy = ofKind(docs, 'Role').find((r) => r['metadata']['name'] === 'openclaw-toggle-comfyui') as Obj;
    assert.deepEqual(comfy['rules'], rulesFor('comfyui'));
    const bindings = ofKind(docs, 'RoleBinding');
    assert.deepEqual(bindings.map(nameOf).sort(), ['media/openclaw-toggle-comfyui', `${baseTarget.namespace}/openclaw-toggle`]);
    for (const b of bindings) assert.deepEqual(b['subjects'], [{ kind: 'ServiceAccount', name: 'openclaw-toggle', namespace: botNamespace }]);
    // The target directory's ConfigMap: read, not rendered.
    const maps = ofKind(docs, 'ConfigMap');
    assert.deepEqual(maps.map((m) => m['metadata']['name'].replace(/-[a-z0-9]{10}$/, '')).sort(), ['openclaw-toggle-config', 'openclaw-toggle-targets']);
    const targetsMap = maps.find((m) => m['metadata']['name'].startsWith('openclaw-toggle-targets-')) as Obj;
    assert.equal(targetsMap['metadata']['namespace'], botNamespace);
    assert.equal(targetsMap['data']['targets.yaml'], read(TARGETS_FILE));
    const [deployment] = ofKind(docs, 'Deployment');
    const spec = deployment?.['spec']['template']['spec'] as Obj;
    const c = spec['containers'][0] as Obj;
    const configFile = (c['env'] as Obj[]).find((e) => e['name'] === 'CONFIG_FILE')?.['value'];
    const mount = (c['volumeMounts'] as Obj[]).find((m) => String(configFile).startsWith(`${m['mountPath']}/`));
    assert.equal(mount?.['readOnly'], true);
    const volume = (spec['volumes'] as Obj[]).find((v) => v['name'] === mount?.['name']);
    assert.equal(volume?.['configMap']['name'], targetsMap['metadata']['name'], 'the hashed name: a new file restarts the bot');
    assert.equal(`${mount?.['mountPath']}/${volume?.['configMap']['items'][0]['path']}`, configFile);
    // The base's own mounts and variables are still there.
    assert.deepEqual((c['volumeMounts'] as Obj[]).map((m) => m['mountPath']).sort(), ['/data', '/etc/openclaw', '/etc/openclaw-targets', '/tmp']);
    assert.ok((c['env'] as Obj[]).some((e) => e['name'] === 'AS_REGISTRATION_FILE'));
  });

  test('two targets in one namespace, the base\'s among them, and two in another: a Role each, narrowed to its Deployment; the subjects follow the bot\'s namespace', { skip }, async () => {
    const targets: TargetRef[] = [
      { namespace: 'agents', name: 'openclaw' }, { namespace: 'agents', name: 'web' },
      { namespace: 'media', name: 'comfyui' }, { namespace: 'media', name: 'comfy-ui-2' },
    ];
    const docs = await render(targets, {
      edit: (text) => {
        const edited = text.replace(/(name: bot-namespace\n\s+namespace: )openclaw/, '$1bots');
        assert.notEqual(edited, text);
        return edited;
      },
    });
    assert.deepEqual(docs.filter((d) => /^Cluster/.test(d['kind'])), []);
    const roles = ofKind(docs, 'Role');
    assert.deepEqual(roles.map(nameOf).sort(), ['agents/openclaw-toggle', 'agents/openclaw-toggle-web', 'media/openclaw-toggle-comfy-ui-2', 'media/openclaw-toggle-comfyui']);
    for (const t of targets) {
      const name = t === targets[0] ? 'openclaw-toggle' : `openclaw-toggle-${t.name}`;
      const r = roles.find((o) => nameOf(o) === `${t.namespace}/${name}`) as Obj;
      assert.deepEqual(r['rules'], rulesFor(t.name), name);
      const b = ofKind(docs, 'RoleBinding').find((o) => nameOf(o) === `${t.namespace}/${name}`) as Obj;
      assert.deepEqual(b['roleRef'], { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name });
      assert.deepEqual(b['subjects'], [{ kind: 'ServiceAccount', name: 'openclaw-toggle', namespace: 'bots' }]);
    }
    assert.equal(ofKind(docs, 'RoleBinding').length, targets.length);
    assert.equal(ofKind(docs, 'ServiceAccount')[0]?.['metadata']['namespace'], 'bots');
    assert.equal(ofKind(docs, 'Deployment')[0]?.['spec']['template']['spec']['containers'][0]['env'].some((e: Obj) => e['name'] === 'CONFIG_FILE'), false, 'no targets file unless enabled');
  });

  test('the testbed\'s targets file: one entry per target, as the bot parses it', { skip }, async () => {
    const targets: TargetRef[] = [{ namespace: 'agents', name: 'openclaw' }, { namespace: 'media', name: 'comfyui' }];
    const docs = await render(targets, { targetsFile: true });
    const map = ofKind(docs, 'ConfigMap').find((m) => m['metadata']['name'].startsWith('openclaw-toggle-targets-')) as Obj;
    const parsed = parseTargets((parse(map['data']['targets.yaml']) as Obj)['targets'], [], 'targets.yaml');
    assert.deepEqual(parsed.map((t) => ({ namespace: t.namespace, name: t.deployment })), targets);
    assert.equal(ofKind(docs, 'Role').length, 2);
  });
});
