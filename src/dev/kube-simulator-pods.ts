/**
 * The pods of the simulated Deployments, shaped like what kube-apiserver v1.37 serves for a
 * Deployment's pods on the testbed (ReplicaSet controller, scheduler, kwok as the kubelet):
 * - a scale-up creates pods named `<deployment>-<pod-template-hash>-<5 chars>` with the template's
 *   labels plus `pod-template-hash`, Pending and unscheduled; after a moment they get
 *   `spec.nodeName` (PodScheduled), then the kubelet's status: still Pending, the container waiting
 *   in ContainerCreating; when the Deployment's counts say ready, Running and Ready;
 * - a scale-down sets `metadata.deletionTimestamp` (now + the 30 s grace period) on the pods that
 *   go, not ready ones first, newest first; they are removed (DELETED) when the counts say gone.
 * Every change takes the simulator's next resourceVersion (one counter with the Deployments) and goes
 * to the pods' watches. The simulator's pods never fail: no pull errors, crashes or probes.
 */
import { randomUUID } from 'node:crypto';
import { HttpStatus } from './kube-simulator-patch.ts';
import { labelsMatch, nameFromFieldSelector, parseLabelSelector, watchRequestOf, type SimulatorWatches, type WatchRequest } from './kube-simulator-watch.ts';

type Current = () => Array<{ name: string; object: Record<string, unknown> }>;

/** What a pod inherits from its Deployment. */
export interface PodOwner {
  readonly namespace: string;
  readonly name: string;
  readonly image: string;
  /** The template's labels (the Deployment's selector matches them). */
  readonly labels: Readonly<Record<string, string>>;
  /** The ReplicaSet's pod-template-hash. */
  readonly templateHash: string;
  readonly replicaSetUid: string;
}

interface PodState {
  readonly owner: PodOwner;
  readonly name: string;
  readonly uid: string;
  readonly created: string;
  resourceVersion: string;
  stage: 'pending' | 'scheduled' | 'creating' | 'running';
  startedAt: string | undefined;
  deletionTimestamp: string | undefined;
  podIP: string;
}

/** The alphabet of the real server's generated names and hashes (k8s.io/apimachinery/pkg/util/rand). */
const SAFE = 'bcdfghjklmnpqrstvwxz2456789';
export const NODE_NAME = 'kube-simulator-node';
const HOST_IP = '10.0.0.10';
const GRACE_SECONDS = 30;

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const randomSafe = (n: number): string => Array.from({ length: n }, () => SAFE[Math.floor(Math.random() * SAFE.length)]).join('');

/** A pod-template-hash for a template, stable for the same one (the real one is an FNV hash, safe-encoded). */
export function templateHash(template: string): string {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(template)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  let out = '';
  for (let i = 0; i < 10; i++) { out += SAFE[h % SAFE.length]; h = Math.imul(h, 0x01000193) + i >>> 0; }
  return out;
}

export class SimulatedPods {
  readonly #pods = new Map<string, PodState>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #watches: SimulatorWatches;
  readonly #nextRevision: () => number;
  readonly #momentMs: number;
  #ips = 0;

  constructor(o: { watches: SimulatorWatches; nextRevision: () => number; momentMs: number }) {
    this.#watches = o.watches;
    this.#nextRevision = o.nextRevision;
    this.#momentMs = o.momentMs;
  }

  /** spec.replicas changed: the ReplicaSet creates pods, or marks the extra ones for deletion. */
  scaled(owner: PodOwner, replicas: number): void {
    const live = this.#of(owner).filter((p) => p.deletionTimestamp === undefined);
    for (let i = live.length; i < replicas; i++) this.#create(owner);
    // Not-ready pods go first, then the newest (the ReplicaSet controller's order, simplified).
    const going = live.sort((a, b) => Number(a.stage === 'running') - Number(b.stage === 'running') || b.created.localeCompare(a.created)).slice(0, Math.max(0, live.length - replicas));
    const deletion = new Date(Date.now() + GRACE_SECONDS * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    for (const p of going) {
      p.deletionTimestamp = deletion;
      this.#record(p, 'MODIFIED');
    }
  }

  /** The counts say done: every pod that stays is Running and Ready, every pod that goes is gone. */
  settled(owner: PodOwner): void {
    for (const p of this.#of(owner)) {
      if (p.deletionTimestamp !== undefined) this.#delete(p);
      else {
        this.#advance(p, 'creating');
        this.#advance(p, 'running');
      }
    }
  }

  /** The Deployment is gone: the garbage collector deletes its pods. */
  removeAll(owner: PodOwner): void {
    for (const p of this.#of(owner)) this.#delete(p);
  }

  /** Pods of the Deployment with a deletionTimestamp (its status.terminatingReplicas). */
  terminating(owner: PodOwner): number {
    return this.#of(owner).filter((p) => p.deletionTimestamp !== undefined).length;
  }

  /**
   * `GET /api/v1/namespaces/{ns}/pods[/{name}]` by an identity that may list and watch pods there or not
   * (never get one by name): RBAC first, as the real server checks it before it reads the selectors.
   */
  answer(url: URL, namespace: string, name: string | undefined, who: { user: string; canList: boolean }):
    Record<string, unknown> | { watch: WatchRequest; on: SimulatorWatches; current: Current } {
    const watch = name === undefined ? watchRequestOf(url, namespace, undefined) : undefined;
    const verb = name !== undefined ? 'get' : watch ? 'watch' : 'list';
    if (verb === 'get' || !who.canList) {
      throw new HttpStatus(403, 'Forbidden', `${name === undefined ? 'pods' : `pods "${name}"`} is forbidden: User "${who.user}" cannot ${verb} resource "pods" in API group "" in the namespace "${namespace}"`,
        { ...(name !== undefined ? { name } : {}), kind: 'pods' });
    }
    const labelText = url.searchParams.get('labelSelector');
    const selector = parseLabelSelector(labelText);
    if (selector === null) throw new HttpStatus(400, 'BadRequest', `unable to parse requirement: label selector ${JSON.stringify(labelText)} is not supported by the simulator`);
    const byName = nameFromFieldSelector(url.searchParams.get('fieldSelector'));
    if (byName === null) throw new HttpStatus(400, 'BadRequest', `unable to parse requirement: field selector ${url.searchParams.get('fieldSelector')} is not supported by the simulator`);
    const current: Current = () => [...this.#pods.values()]
      .filter((p) => p.owner.namespace === namespace && (byName === undefined || p.name === byName))
      .map((p) => ({ name: p.name, object: podObject(p) }))
      .filter((p) => labelsMatch(selector, (p.object['metadata'] as { labels: Record<string, string> }).labels));
    if (watch) return { watch: { ...watch, name: byName, ...(selector !== undefined ? { selector } : {}) }, on: this.#watches, current };
    return this.#watches.list(current().map((c) => c.object));
  }

  stop(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  #of(owner: PodOwner): PodState[] {
    return [...this.#pods.values()].filter((p) => p.owner.namespace === owner.namespace && p.owner.name === owner.name);
  }

  #create(owner: PodOwner): void {
    let name: string;
    do name = `${owner.name}-${owner.templateHash}-${randomSafe(5)}`; while (this.#pods.has(`${owner.namespace}/${name}`));
    const p: PodState = { owner, name, uid: randomUUID(), created: new Date().toISOString(), resourceVersion: '', stage: 'pending',
      startedAt: undefined, deletionTimestamp: undefined, podIP: `10.244.0.${(++this.#ips % 250) + 2}` };
    this.#pods.set(`${owner.namespace}/${name}`, p);
    this.#record(p, 'ADDED');
    // The scheduler binds it, then the kubelet reports the container being created.
    this.#later(this.#momentMs, () => this.#advance(p, 'scheduled'));
    this.#later(this.#momentMs * 2, () => this.#advance(p, 'creating'));
  }

  /** Moves a live pod forward to `stage` one step at a time (each step is one event, as on the real server). */
  #advance(p: PodState, stage: PodState['stage']): void {
    const order: Array<PodState['stage']> = ['pending', 'scheduled', 'creating', 'running'];
    while (this.#pods.get(`${p.owner.namespace}/${p.name}`) === p && p.deletionTimestamp === undefined && order.indexOf(p.stage) < order.indexOf(stage)) {
      p.stage = order[order.indexOf(p.stage) + 1]!;
      if (p.stage === 'running') p.startedAt = now();
      this.#record(p, 'MODIFIED');
    }
  }

  #delete(p: PodState): void {
    if (!this.#pods.delete(`${p.owner.namespace}/${p.name}`)) return;
    this.#record(p, 'DELETED');
  }

  #record(p: PodState, type: 'ADDED' | 'MODIFIED' | 'DELETED'): void {
    const rv = this.#nextRevision();
    p.resourceVersion = String(rv);
    this.#watches.record(type, p.owner.namespace, p.name, rv, podObject(p));
  }

  #later(ms: number, work: () => void): void {
    const t = setTimeout(() => { this.#timers.delete(t); work(); }, ms);
    t.unref();
    this.#timers.add(t);
  }
}

/** The Pod as the API serves it (a subset of the real fields, in the real shape). */
function podObject(p: PodState): Record<string, unknown> {
  const o = p.owner;
  const created = p.created.replace(/\.\d+Z$/, 'Z');
  const scheduled = p.stage !== 'pending';
  const running = p.stage === 'running';
  const condition = (type: string, ok: boolean, extra: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ type, status: ok ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: created, ...extra });
  const notReady = { reason: 'ContainersNotReady', message: `containers with unready status: [${o.name}]` };
  const kubelet = p.stage === 'creating' || running;
  return {
    kind: 'Pod', apiVersion: 'v1',
    metadata: {
      name: p.name, generateName: `${o.name}-${o.templateHash}-`, namespace: o.namespace, uid: p.uid, resourceVersion: p.resourceVersion,
      creationTimestamp: created,
      ...(p.deletionTimestamp !== undefined ? { deletionTimestamp: p.deletionTimestamp, deletionGracePeriodSeconds: GRACE_SECONDS } : {}),
      labels: { ...o.labels, 'pod-template-hash': o.templateHash },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${o.name}-${o.templateHash}`, uid: o.replicaSetUid, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      containers: [{ name: o.name, image: o.image, resources: {}, terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File', imagePullPolicy: 'IfNotPresent' }],
      restartPolicy: 'Always', terminationGracePeriodSeconds: GRACE_SECONDS, dnsPolicy: 'ClusterFirst', serviceAccountName: 'default', serviceAccount: 'default',
      ...(scheduled ? { nodeName: NODE_NAME } : {}), securityContext: {}, schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0, enableServiceLinks: true, preemptionPolicy: 'PreemptLowerPriority',
    },
    status: {
      phase: running ? 'Running' : 'Pending',
      ...(scheduled ? { conditions: kubelet ? [
        condition('PodReadyToStartContainers', running), condition('Initialized', true),
        condition('Ready', running, running ? {} : notReady), condition('ContainersReady', running, running ? {} : notReady), condition('PodScheduled', true),
      ] : [condition('PodScheduled', true)] } : {}),
      ...(kubelet ? {
        hostIP: HOST_IP, hostIPs: [{ ip: HOST_IP }], ...(running ? { podIP: p.podIP, podIPs: [{ ip: p.podIP }] } : {}), startTime: created,
        containerStatuses: [{
          name: o.name, state: running ? { running: { startedAt: p.startedAt } } : { waiting: { reason: 'ContainerCreating' } },
          lastState: {}, ready: running, restartCount: 0, image: o.image, imageID: running ? `${o.image.split(':')[0]}@sha256:${'0'.repeat(64)}` : '',
          ...(running ? { containerID: `containerd://${p.uid.replace(/-/g, '')}` } : {}), started: running,
        }],
      } : {}),
      qosClass: 'BestEffort',
    },
  };
}
