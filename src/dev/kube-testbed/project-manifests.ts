/**
 * The project's own manifests on the testbed, and the bot's identity the way a pod gets it:
 * - `config/kubernetes` rendered by kustomize (`kubectl kustomize`, built from the same
 *   Kubernetes module), with DEPLOYMENT_NAMESPACE / DEPLOYMENT_NAME set as an operator would, and
 *   its ServiceAccount, Role and RoleBinding applied as they come out; or set up for several targets
 *   (targets-kustomization.ts), one Role and RoleBinding per target;
 * - a service-account token from the TokenRequest API, bound to a Pod of the bot and expiring,
 *   written into a directory laid out like a pod's `/var/run/secrets/kubernetes.io/serviceaccount`.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseManifests, type KubeObject } from './api-client.ts';
import { prepareTargetsCopy, type PrepareOptions, type TargetRef } from './targets-kustomization.ts';
import { POD_BEHAVIOUR_LABEL, POD_DELAY_ANNOTATION, type PodBehaviour } from './stages.ts';
import type { KubeTestbed } from './testbed.ts';

const run = promisify(execFile);

/** Names the kustomization gives the bot's objects. */
export const BOT_NAMESPACE = 'openclaw';
export const BOT_SERVICE_ACCOUNT = 'openclaw-toggle';
/** In-cluster files, relative to the root a pod sees them under. */
export const SERVICE_ACCOUNT_SUBDIR = 'var/run/secrets/kubernetes.io/serviceaccount';

/** `kubectl kustomize config/kubernetes` with the target set, every object it renders. */
export function renderProjectManifests(tb: KubeTestbed, target: TargetRef): Promise<KubeObject[]> {
  return renderTargetsManifests(tb, [target]);
}

/**
 * `kubectl kustomize` of the base set up for several targets as an operator does it (targets-kustomization.ts):
 * the first in DEPLOYMENT_NAMESPACE / DEPLOYMENT_NAME, a copy of targets/comfy per further one; with
 * `targetsFile`, the targets-file component enabled too. Every object it renders.
 */
export async function renderTargetsManifests(tb: KubeTestbed, targets: readonly TargetRef[], options: PrepareOptions = {}): Promise<KubeObject[]> {
  const work = await mkdtemp(join(tb.dir, 'kustomize-'));
  try {
    await prepareTargetsCopy(work, targets, options);
    const { stdout } = await run(tb.binaries.path('kubectl'), ['kustomize', work], { maxBuffer: 16 << 20 });
    return parseManifests(stdout);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const RBAC_KINDS = ['ServiceAccount', 'Role', 'RoleBinding'];

/** Creates the namespaces the objects go to (and the bot's and targets'), then applies the objects. */
async function applyInNamespaces(tb: KubeTestbed, objects: readonly KubeObject[], targets: readonly TargetRef[]): Promise<void> {
  const namespaces = new Set([BOT_NAMESPACE, ...targets.map((t) => t.namespace), ...objects.map((o) => o.metadata.namespace ?? '')].filter(Boolean));
  for (const ns of namespaces) await tb.admin.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  for (const o of objects) await tb.admin.apply(o);
}

/** Applies the bot's RBAC objects (ServiceAccount, Role, RoleBinding) from the rendered manifests. */
export async function applyBotRbac(tb: KubeTestbed, target: TargetRef): Promise<KubeObject[]> {
  const rendered = await renderProjectManifests(tb, target);
  const rbac = rendered.filter((o) => RBAC_KINDS.includes(o.kind));
  const kinds = rbac.map((o) => o.kind).sort();
  if (kinds.join() !== 'Role,RoleBinding,ServiceAccount') throw new Error(`the kustomization rendered ${kinds.join(', ') || 'nothing'} for the bot's RBAC`);
  await applyInNamespaces(tb, rbac, [target]);
  return rbac;
}

/**
 * The RBAC of several targets (the first the base's, the others one target directory each), rendered by
 * the real kustomize and applied: the ServiceAccount, one Role and one RoleBinding per target. Refuses a
 * rendering with any cluster-wide grant, or with other than one Role and RoleBinding per target.
 */
export async function applyTargetsRbac(tb: KubeTestbed, targets: readonly { namespace: string; name: string }[]): Promise<KubeObject[]> {
  const rendered = await renderTargetsManifests(tb, targets);
  const cluster = rendered.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding');
  if (cluster.length > 0) throw new Error(`the kustomization rendered cluster-wide RBAC: ${cluster.map((o) => `${o.kind} ${o.metadata.name}`).join(', ')}`);
  const rbac = rendered.filter((o) => RBAC_KINDS.includes(o.kind));
  const count = (kind: string): number => rbac.filter((o) => o.kind === kind).length;
  if (count('ServiceAccount') !== 1 || count('Role') !== targets.length || count('RoleBinding') !== targets.length) {
    throw new Error(`the kustomization rendered ${rbac.map((o) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`).join(', ')} for ${targets.length} targets`);
  }
  await applyInNamespaces(tb, rbac, targets);
  return rbac;
}

/** How the pods of a test Deployment behave on kwok (stages.ts), and their image. */
export interface TestPods {
  readonly behaviour?: PodBehaviour;
  /** For `slow`: how long the container stays in ContainerCreating (default 3000). */
  readonly delayMs?: number;
  readonly image?: string;
}

/** A minimal Deployment standing in for OpenClaw: the test creates it, the bot scales it. */
export function targetDeployment(namespace: string, name: string, replicas = 0, pods: TestPods = {}): KubeObject {
  const labels = { app: name }; // as the simulator's Deployments, so that both answer alike
  const container: Record<string, unknown> = { name, image: pods.image ?? 'ghcr.io/openclaw/openclaw:latest' };
  // kwok probes nothing; the probe makes the spec say what the staged status shows (never ready, crash).
  if (pods.behaviour) container['readinessProbe'] = { httpGet: { path: '/healthz', port: 8080 } };
  const podMetadata = {
    labels: pods.behaviour ? { ...labels, [POD_BEHAVIOUR_LABEL]: pods.behaviour } : labels,
    ...(pods.delayMs !== undefined ? { annotations: { [POD_DELAY_ANNOTATION]: String(pods.delayMs) } } : {}),
  };
  return {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace, labels },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: podMetadata, spec: { containers: [container] } } },
  };
}

export interface PodToken {
  readonly token: string;
  /** The Pod the token is bound to: deleting it revokes the token. */
  readonly pod: string;
  readonly expiresAt: Date;
}

let podCount = 0;

/**
 * What the kubelet does for a pod of the bot: the Pod (on the fake node, so kwok runs it), then a
 * TokenRequest bound to it, audience the API server's, expiring after `expirationSeconds` (600
 * is the API's minimum).
 */
export async function requestPodToken(tb: KubeTestbed, expirationSeconds = 600): Promise<PodToken> {
  const name = `openclaw-toggle-test-${process.pid}-${podCount++}`;
  const pod = await tb.admin.ok('POST', `/api/v1/namespaces/${BOT_NAMESPACE}/pods`, { body: {
    apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { 'app.kubernetes.io/name': 'openclaw-toggle-test' } },
    spec: { serviceAccountName: BOT_SERVICE_ACCOUNT, nodeName: tb.nodeName, automountServiceAccountToken: false,
      containers: [{ name: 'bot', image: 'openclaw-k8s-toggle-operator' }] },
  } });
  const uid = (pod['metadata'] as { uid: string }).uid;
  const answer = await tb.admin.ok('POST', `/api/v1/namespaces/${BOT_NAMESPACE}/serviceaccounts/${BOT_SERVICE_ACCOUNT}/token`, { body: {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
    spec: { expirationSeconds, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid } },
  } });
  const status = answer['status'] as { token: string; expirationTimestamp: string };
  return { token: status.token, pod: name, expiresAt: new Date(status.expirationTimestamp) };
}

/** Deletes the bot's Pod at once (grace 0); its tokens stop working. */
export async function deletePod(tb: KubeTestbed, pod: string): Promise<void> {
  await tb.admin.delete({ apiVersion: 'v1', kind: 'Pod', metadata: { name: pod, namespace: BOT_NAMESPACE } }, undefined, '?gracePeriodSeconds=0');
}

/**
 * Writes token, ca.crt and namespace under `<root>/var/run/secrets/kubernetes.io/serviceaccount`.
 * The token is replaced as the kubelet does it: a new file renamed over the old one, 0600.
 */
export async function writeServiceAccountFiles(root: string, tb: KubeTestbed, token: string): Promise<string> {
  const dir = join(root, SERVICE_ACCOUNT_SUBDIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, 'ca.crt'), tb.caPem);
  await writeFile(join(dir, 'namespace'), BOT_NAMESPACE);
  const tmp = join(dir, `.token-${process.pid}`);
  await writeFile(tmp, token, { mode: 0o600 });
  await rename(tmp, join(dir, 'token'));
  return join(dir, 'token');
}

/**
 * Makes this process look like the bot's pod to the lean client's in-cluster config: the
 * service-account files under `root` (as the kubelet lays them out) and KUBERNETES_SERVICE_HOST/_PORT,
 * which the client reads from process.env. Returns what puts the environment back.
 */
export async function actAsBotPod(root: string, tb: KubeTestbed, token: string): Promise<() => void> {
  const saved = { KUBERNETES_SERVICE_HOST: process.env['KUBERNETES_SERVICE_HOST'], KUBERNETES_SERVICE_PORT: process.env['KUBERNETES_SERVICE_PORT'] };
  await writeServiceAccountFiles(root, tb, token);
  process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
  process.env['KUBERNETES_SERVICE_PORT'] = String(tb.port);
  return () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key]; else process.env[key] = value;
    }
  };
}

/** The payload of a JWT, decoded (no verification: the API server does that). */
export function jwtClaims(token: string): Record<string, unknown> {
  const payload = token.split('.')[1];
  if (payload === undefined) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
}

