/**
 * The same requests, in the same order, to the real API server and to the simulator; each answer
 * reduced to what a client can depend on (status, Status reason/message/details, and the fields of
 * a Scale, Deployment or Pod the adapter reads). Used by kubernetes-rbac.test.ts.
 */
import type { ApiResponse } from '../../../src/dev/kube-testbed/api-client.ts';
import { eventBody } from '../../../src/kube/lean-kube.ts';

export interface SimulatorCase {
  readonly name: string;
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  readonly contentType?: string;
  /** Which identity sends it: the bot's (the project's Role), a read-only one (get only), or an unknown token. */
  readonly as: 'rw' | 'ro' | 'none';
  /** Done first: wait until both controllers are idle, or delete the Deployment on both. */
  readonly first?: 'settle' | 'delete';
}

const NS = 'agents';
const NAME = 'openclaw';
const COLLECTION = `/apis/apps/v1/namespaces/${NS}/deployments`;
const DEPLOYMENT = `${COLLECTION}/${NAME}`;
const SCALE = `${DEPLOYMENT}/scale`;
const MERGE = 'application/merge-patch+json';
const JSON_PATCH = 'application/json-patch+json';
const EVENTS = `/apis/events.k8s.io/v1/namespaces/${NS}/events`;
const PODS = `/api/v1/namespaces/${NS}/pods`;
/** The Deployment's pods, as src/kube/pod-watch.ts asks for them. */
const OWN_PODS = `${PODS}?labelSelector=app%3D${NAME}`;
/** A watch the server ends after a second: its whole answer is the events for the pods there are (none, or one ADDED). */
const POD_WATCH = `${OWN_PODS}&watch=1&timeoutSeconds=1`;
/** An Event as the bot sends it (src/kube/lean-kube.ts), under a fixed name so both servers see the same. */
const event = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  ...eventBody({ namespace: NS, name: NAME }, { reason: 'ScaledByChat', action: 'Start', note: 'start by @alice:example.org in !room:example.org (timed 2h)' }, undefined, new Date()),
  metadata: { name, namespace: NS }, ...extra,
});
const { action: _action, ...noAction } = event('openclaw.case-invalid');

export const SIMULATOR_CASES: readonly SimulatorCase[] = [
  { name: 'GET the Deployment at 0', method: 'GET', path: DEPLOYMENT, as: 'rw', first: 'settle' },
  { name: 'GET the Scale at 0', method: 'GET', path: SCALE, as: 'rw' },
  { name: 'merge patch to 1', method: 'PATCH', path: SCALE, body: { spec: { replicas: 1 } }, contentType: MERGE, as: 'rw' },
  { name: 'GET the Scale at 1', method: 'GET', path: SCALE, as: 'rw' },
  { name: 'GET the Deployment at 1, settled', method: 'GET', path: DEPLOYMENT, as: 'rw', first: 'settle' },
  { name: 'list its pods at 1: one, Running and Ready', method: 'GET', path: OWN_PODS, as: 'rw' },
  { name: 'watch its pods at 1: one ADDED, then the end', method: 'GET', path: POD_WATCH, as: 'rw' },
  { name: 'JSON patch to 0', method: 'PATCH', path: SCALE, body: [{ op: 'replace', path: '/spec/replicas', value: 0 }], contentType: JSON_PATCH, as: 'rw' },
  { name: 'GET the Deployment back at 0, settled', method: 'GET', path: DEPLOYMENT, as: 'rw', first: 'settle' },
  { name: 'list its pods at 0: none', method: 'GET', path: OWN_PODS, as: 'rw' },
  { name: 'watch its pods at 0: nothing, then the end', method: 'GET', path: POD_WATCH, as: 'rw' },
  { name: 'list the pods of the namespace (no selector)', method: 'GET', path: PODS, as: 'rw' },
  { name: 'list pods by an identity without list on pods', method: 'GET', path: OWN_PODS, as: 'ro' },
  { name: 'watch pods by an identity without watch on pods', method: 'GET', path: POD_WATCH, as: 'ro' },
  { name: 'GET one pod by name', method: 'GET', path: `${PODS}/${NAME}-abc`, as: 'rw' },
  { name: 'list pods in another namespace', method: 'GET', path: `/api/v1/namespaces/openclaw/pods?labelSelector=app%3D${NAME}`, as: 'rw' },
  { name: 'watch pods in another namespace', method: 'GET', path: `/api/v1/namespaces/openclaw/pods?labelSelector=app%3D${NAME}&watch=1`, as: 'rw' },
  { name: 'list pods with an unknown token', method: 'GET', path: OWN_PODS, as: 'none' },
  { name: 'strategic merge patch to 1', method: 'PATCH', path: SCALE, body: { spec: { replicas: 1 } }, contentType: 'application/strategic-merge-patch+json', as: 'rw' },
  { name: 'merge patch with replicas null', method: 'PATCH', path: SCALE, body: { spec: { replicas: null } }, contentType: MERGE, as: 'rw' },
  { name: 'empty merge patch', method: 'PATCH', path: SCALE, body: {}, contentType: MERGE, as: 'rw' },
  { name: 'dry-run merge patch to 3', method: 'PATCH', path: `${SCALE}?dryRun=All`, body: { spec: { replicas: 3 } }, contentType: MERGE, as: 'rw' },
  { name: 'patch as application/json', method: 'PATCH', path: SCALE, body: { spec: { replicas: 1 } }, contentType: 'application/json', as: 'rw' },
  { name: 'negative replicas', method: 'PATCH', path: SCALE, body: { spec: { replicas: -1 } }, contentType: MERGE, as: 'rw' },
  { name: 'replicas a string', method: 'PATCH', path: SCALE, body: { spec: { replicas: 'two' } }, contentType: MERGE, as: 'rw' },
  { name: 'a body that is not JSON', method: 'PATCH', path: SCALE, body: 'not json', contentType: MERGE, as: 'rw' },
  { name: 'a failing JSON patch test', method: 'PATCH', path: SCALE, body: [{ op: 'test', path: '/spec/replicas', value: 7 }], contentType: JSON_PATCH, as: 'rw' },
  { name: 'replicas 1.5', method: 'PATCH', path: SCALE, body: { spec: { replicas: 1.5 } }, contentType: MERGE, as: 'rw' },
  { name: 'JSON patch replacing with a string', method: 'PATCH', path: SCALE, body: [{ op: 'replace', path: '/spec/replicas', value: 'two' }], contentType: JSON_PATCH, as: 'rw' },
  { name: 'a JSON patch that is an object', method: 'PATCH', path: SCALE, body: { spec: { replicas: 1 } }, contentType: JSON_PATCH, as: 'rw' },
  { name: 'a JSON patch that is not JSON', method: 'PATCH', path: SCALE, body: 'not json', contentType: JSON_PATCH, as: 'rw' },
  { name: 'a strategic merge patch that is not JSON', method: 'PATCH', path: SCALE, body: 'not json', contentType: 'application/strategic-merge-patch+json', as: 'rw' },
  { name: 'a merge patch that is an array', method: 'PATCH', path: SCALE, body: [1, 2], contentType: MERGE, as: 'rw' },
  { name: 'server-side apply of the Scale', method: 'PATCH', path: `${SCALE}?fieldManager=test`, contentType: 'application/apply-patch+yaml',
    body: { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: NAME, namespace: NS }, spec: { replicas: 0 } }, as: 'rw' },
  { name: 'server-side apply without a field manager', method: 'PATCH', path: SCALE, contentType: 'application/apply-patch+yaml',
    body: { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: NAME, namespace: NS }, spec: { replicas: 0 } }, as: 'rw' },
  { name: 'patch by a read-only identity', method: 'PATCH', path: SCALE, body: { spec: { replicas: 1 } }, contentType: MERGE, as: 'ro' },
  { name: 'GET with an unknown token', method: 'GET', path: DEPLOYMENT, as: 'none' },
  { name: 'list narrowed to the Deployment', method: 'GET', path: `${COLLECTION}?fieldSelector=metadata.name%3D${NAME}`, as: 'rw' },
  { name: 'list narrowed with ==', method: 'GET', path: `${COLLECTION}?fieldSelector=metadata.name%3D%3D${NAME}`, as: 'rw' },
  { name: 'list of the whole namespace', method: 'GET', path: COLLECTION, as: 'rw' },
  { name: 'list narrowed to another name', method: 'GET', path: `${COLLECTION}?fieldSelector=metadata.name%3Dother`, as: 'rw' },
  { name: 'watch of the whole namespace', method: 'GET', path: `${COLLECTION}?watch=1`, as: 'rw' },
  { name: 'watch by an identity with get only', method: 'GET', path: `${COLLECTION}?watch=1&fieldSelector=metadata.name%3D${NAME}`, as: 'ro' },
  { name: 'watch with an unknown token', method: 'GET', path: `${COLLECTION}?watch=1&fieldSelector=metadata.name%3D${NAME}`, as: 'none' },
  { name: 'create an Event', method: 'POST', path: EVENTS, body: event('openclaw.case-created'), contentType: 'application/json', as: 'rw' },
  { name: 'dry-run create of an Event', method: 'POST', path: `${EVENTS}?dryRun=All`, body: event('openclaw.case-dry-run'), contentType: 'application/json', as: 'rw' },
  { name: 'an Event of the same name again', method: 'POST', path: EVENTS, body: event('openclaw.case-created'), contentType: 'application/json', as: 'rw' },
  { name: 'create an Event by an identity without create on events', method: 'POST', path: EVENTS, body: event('openclaw.case-ro'), contentType: 'application/json', as: 'ro' },
  { name: 'create an Event with an unknown token', method: 'POST', path: EVENTS, body: event('openclaw.case-none'), contentType: 'application/json', as: 'none' },
  { name: 'an Event without action', method: 'POST', path: EVENTS, body: noAction, contentType: 'application/json', as: 'rw' },
  { name: 'an Event whose eventTime has milliseconds', method: 'POST', path: EVENTS, body: event('openclaw.case-ms', { eventTime: '2026-11-30T00:56:41.588Z' }), contentType: 'application/json', as: 'rw' },
  { name: 'an Event for another namespace', method: 'POST', path: EVENTS, body: event('openclaw.case-ns', { metadata: { name: 'openclaw.case-ns', namespace: 'elsewhere' } }), contentType: 'application/json', as: 'rw' },
  { name: 'GET the Deployment once deleted', method: 'GET', path: DEPLOYMENT, as: 'rw', first: 'delete' },
  { name: 'GET the Scale once deleted', method: 'GET', path: SCALE, as: 'rw' },
  { name: 'list narrowed to the Deployment once deleted', method: 'GET', path: `${COLLECTION}?fieldSelector=metadata.name%3D${NAME}`, as: 'rw' },
  { name: 'patch the Scale once deleted', method: 'PATCH', path: SCALE, body: { spec: { replicas: 1 } }, contentType: MERGE, as: 'rw' },
];

/** What a client may rely on in an answer. */
export function essence(res: ApiResponse): Record<string, unknown> {
  const b = res.body;
  if (b['kind'] === 'Status') {
    return { status: res.status, kind: 'Status', reason: b['reason'], message: b['message'], code: b['code'], details: b['details'] };
  }
  if (b['kind'] === 'Scale') {
    const status = (b['status'] ?? {}) as Record<string, unknown>;
    return { status: res.status, kind: 'Scale', apiVersion: b['apiVersion'], spec: b['spec'], selector: typeof status['selector'] };
  }
  if (b['kind'] === 'DeploymentList') {
    const items = b['items'] as Array<Record<string, unknown>>;
    const rv = (b['metadata'] as { resourceVersion?: unknown }).resourceVersion;
    return { status: res.status, kind: 'DeploymentList', apiVersion: b['apiVersion'], resourceVersion: typeof rv === 'string' && /^\d+$/.test(rv),
      items: items.map((i) => ({ name: (i['metadata'] as { name?: unknown }).name, kind: i['kind'], replicas: (i['spec'] as { replicas?: unknown }).replicas })) };
  }
  if (b['kind'] === 'PodList') {
    const rv = (b['metadata'] as { resourceVersion?: unknown }).resourceVersion;
    return { status: res.status, kind: 'PodList', apiVersion: b['apiVersion'], resourceVersion: typeof rv === 'string' && /^\d+$/.test(rv),
      items: (b['items'] as Array<Record<string, unknown>>).map(pod) };
  }
  if (typeof b['type'] === 'string' && typeof b['object'] === 'object') {
    // A watch that delivered exactly one event (more would not parse as one JSON body).
    return { status: res.status, type: b['type'], object: pod(b['object'] as Record<string, unknown>) };
  }
  if (b['kind'] === 'Event') {
    const meta = b['metadata'] as { name?: unknown; resourceVersion?: unknown };
    return { status: res.status, kind: 'Event', apiVersion: b['apiVersion'], name: meta.name, stored: meta.resourceVersion !== undefined,
      reason: b['reason'], action: b['action'], note: b['note'], type: b['type'], regarding: b['regarding'],
      reportingController: b['reportingController'], eventTime: typeof b['eventTime'] === 'string' && /\.\d{6}Z$/.test(b['eventTime']) };
  }
  if (b['kind'] === 'Deployment') {
    const spec = b['spec'] as Record<string, unknown>;
    const status = (b['status'] ?? {}) as Record<string, unknown>;
    return { status: res.status, kind: 'Deployment', apiVersion: b['apiVersion'], replicas: spec['replicas'], statusFields: Object.keys(status).sort() };
  }
  return { status: res.status, body: b };
}

/** What rollout.ts reads of a pod, and the shape of its name and labels. */
function pod(p: Record<string, unknown>): Record<string, unknown> {
  const meta = p['metadata'] as { name?: string; labels?: Record<string, string>; deletionTimestamp?: string };
  const spec = p['spec'] as { nodeName?: string; containers?: Array<{ name?: string }> };
  const status = (p['status'] ?? {}) as { phase?: string; conditions?: Array<{ type: string; status: string }>; containerStatuses?: Array<{ ready?: boolean; state?: Record<string, unknown> }> };
  return {
    kind: p['kind'], generatedName: /^[a-z0-9-]+-[a-z0-9]{9,10}-[a-z0-9]{5}$/.test(meta.name ?? ''), labels: Object.keys(meta.labels ?? {}).sort(),
    terminating: meta.deletionTimestamp !== undefined, scheduled: typeof spec.nodeName === 'string', containers: spec.containers?.map((c) => c.name),
    // kwok, the testbed's kubelet, does not report PodReadyToStartContainers; a real kubelet (v1.29 on) and the simulator do.
    phase: status.phase, conditions: (status.conditions ?? []).filter((c) => c.type !== 'PodReadyToStartContainers').map((c) => `${c.type}=${c.status}`).sort(),
    containerStatuses: (status.containerStatuses ?? []).map((c) => ({ ready: c.ready, state: Object.keys(c.state ?? {}) })),
  };
}

export interface CompareOptions {
  real(c: SimulatorCase): Promise<ApiResponse>;
  sim(c: SimulatorCase): Promise<ApiResponse>;
  settle(): Promise<void>;
  deleteTarget(): Promise<void>;
}

/** Runs every case on both; returns one line per difference. */
export async function compareWithSimulator(o: CompareOptions): Promise<string[]> {
  const differences: string[] = [];
  for (const c of SIMULATOR_CASES) {
    if (c.first === 'settle') await o.settle();
    if (c.first === 'delete') await o.deleteTarget();
    const real = normalise(canonical(essence(await o.real(c))));
    const sim = normalise(canonical(essence(await o.sim(c))));
    if (real !== sim) {
      differences.push(`${c.name}: real ${real}; simulator ${sim}`);
    }
  }
  return differences;
}

/** JSON with object keys sorted, so that key order never counts as a difference. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * Values that differ between any two servers (ids, versions, times), wherever a message quotes them,
 * and the observed replica count a quoted Scale carries in its status: how far each controller has
 * got at that instant is timing, not behaviour.
 */
function normalise(text: string): string {
  return text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uid>')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/g, '<time>')
    .replace(/(resourceVersion[\\"]*:[\\"]*)\d+/g, '$1<rv>')
    .replace(/(status[\\"]*:\{[\\"]*replicas[\\"]*:)\d+/g, '$1<observed>');
}
