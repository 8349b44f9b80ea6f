/**
 * The `Kube` interface over the project's own small client (kube-http.ts): the three calls the
 * bot makes and a watch on its Deployment (or on each of its Deployments).
 *
 * - Config: a kubeconfig when given; else the pod's service account in a cluster; else
 *   ~/.kube/config (kubeconfig.ts). Credentials are read per request (credentials.ts).
 * - With `watch` set, that Deployment (or each of several: issue 13) is watched (watched-target.ts,
 *   deployment-watch.ts) and, while its watch is live, `status` is answered from it, a scale is
 *   one PATCH (its "from" is the watched spec.replicas) and `ping` makes no request. Otherwise (no watch, watch down or not allowed)
 *   `status` and `ping` GET the Deployment, and a scale GETs the scale subresource, then PATCHes it.
 * - Scaling: a JSON merge patch `{spec:{replicas}}` of the `scale` subresource.
 * - Events (the audit of a scale): a POST of an events.k8s.io/v1 Event regarding the Deployment,
 *   with its uid (from the last scale's answer) so that `kubectl describe deployment` lists it.
 * - Each request has its own deadline (`requestTimeoutMs`). Failures are `KubeError`s with one
 *   human sentence (api-errors.ts); `cause` is a `KubeErrorDetail` with the raw Status message or
 *   the socket error code as `cause.code` (which confirmed-kube.ts reads).
 */
import { hostname } from 'node:os';
import type { Logger } from '../log.ts';
import { toKubeError } from './api-errors.ts';
import { mayHaveApplied } from './confirmed-kube.ts';
import { Credentials } from './credentials.ts';
import { notFoundError, statusOf, type CachedDeployment, type WatchStats } from './deployment-watch.ts';
import { labelSelector, podsPath } from './pod-watch.ts';
import { WatchedTarget } from './watched-target.ts';
import type { PodObject } from './rollout.ts';
import { KubeError, targetKey, type DeploymentStatus, type DeploymentTarget, type Kube, type KubeEvent, type RolloutFollow, type RolloutView, type ScaleResult } from './kube.ts';
import { KubeHttp, RequestTimeout, type RequestListener } from './kube-http.ts';
import { loadClusterConfig, type ClusterConfig } from './kubeconfig.ts';

export interface LeanKubeOptions {
  /** A kubeconfig file (or several, ':'-separated); when absent: in-cluster config inside a pod, else ~/.kube/config. */
  readonly kubeconfigPath?: string | undefined;
  /** Deadline for each HTTP request to the API server. */
  readonly requestTimeoutMs: number;
  readonly logger?: Logger | undefined;
  /** Environment to decide in-cluster vs kubeconfig (tests); defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Where the in-cluster files are read from instead of `/` (tests lay out a pod's directory elsewhere). */
  readonly serviceAccountRoot?: string;
  /** The Deployment(s) to watch and answer from; others are always asked for. */
  readonly watch?: DeploymentTarget | readonly DeploymentTarget[] | undefined;
  readonly watchIdleTimeoutMs?: number;
  readonly watchBackoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Sees every request sent (method and path; tests count them). */
  readonly onRequest?: RequestListener;
}

export interface LeanKube extends Kube {
  readonly cluster: ClusterConfig;
  /** Requests the watch made and events it saw; undefined without a watch. */
  readonly watchStats: WatchStats | undefined;
  /** True while the watch is connected (status and ping then make no request). */
  readonly watching: boolean;
  /** Every watched Deployment's watch (the two above are the first's), for the metrics. */
  watches(): ReadonlyArray<{ readonly target: DeploymentTarget; readonly live: boolean; readonly stats: WatchStats }>;
  recordEvent(target: DeploymentTarget, event: KubeEvent, options?: { readonly dryRun?: boolean }): Promise<void>;
  /**
   * Where the watched Deployment stands, for progress and reasons (rollout.ts): the Deployment as the
   * watch last saw it and its pods (undefined until listed, or when the Role may not watch pods).
   * Undefined when `target` is not the watched Deployment, the watch is down or it does not exist.
   */
  rollout(target: DeploymentTarget): RolloutView | undefined;
  follow(target: DeploymentTarget, changed: () => void): RolloutFollow;
  checkPods(target: DeploymentTarget): Promise<void>;
  /** Stops the watch and closes every connection. */
  close(): Promise<void>;
}

export type { RolloutView };

/** How long `ping` waits for a watch connection in flight before it asks the API itself. */
const PING_WAIT_MS = 1_000;


/** Throws (a KubeconfigProblem or a file system error) when the configuration cannot be used; `kubeconfigError` words it. */
export function createKube(options: LeanKubeOptions): LeanKube {
  const cluster = loadClusterConfig({ kubeconfigPath: options.kubeconfigPath, env: options.env ?? process.env, serviceAccountRoot: options.serviceAccountRoot ?? '' });
  const http = new KubeHttp(cluster, new Credentials(cluster.user), options.onRequest);
  const log = options.logger;
  const timeoutMs = options.requestTimeoutMs;
  const mapError = (e: unknown, target: DeploymentTarget, verb: string, resource: string): KubeError =>
    toKubeError(e, { target, verb, resource, server: cluster.server, timeoutMs, timedOut: e instanceof RequestTimeout });

  const targets = options.watch === undefined ? [] : Array.isArray(options.watch) ? options.watch : [options.watch as DeploymentTarget];
  const keyOf = targetKey;
  /** Namespaces whose pods the start-up check found may not be listed. */
  const podsRefused = new Set<string>();
  const watched = new Map(targets.map((t) => [keyOf(t), new WatchedTarget({
    http, target: t, requestTimeoutMs: timeoutMs, logger: log, idleTimeoutMs: options.watchIdleTimeoutMs, backoff: options.watchBackoff,
    toKubeError: (e, verb, resource) => mapError(e, t, verb, resource), podsRefused: () => podsRefused.has(t.namespace),
  })]));
  const first = targets[0] === undefined ? undefined : watched.get(keyOf(targets[0]));
  const of = (t: DeploymentTarget): WatchedTarget | undefined => watched.get(keyOf(t));
  /** The Deployments' uids (an Event names its object by uid too), learnt from the scale answers. */
  const uids = new Map<string, string>();

  async function call<T>(op: string, target: DeploymentTarget, verb: string, resource: string, send: () => Promise<unknown>): Promise<T> {
    const started = performance.now();
    const fields = { op, namespace: target.namespace, name: target.name };
    try {
      const result = await send();
      log?.debug({ ...fields, ms: Math.round(performance.now() - started) }, 'kubernetes call done');
      return result as T;
    } catch (e) {
      const err = mapError(e, target, verb, resource);
      log?.debug({ ...fields, kind: err.kind, status: err.status, detail: err.cause instanceof Error ? err.cause.message : undefined,
        ms: Math.round(performance.now() - started) }, 'kubernetes call failed');
      throw err;
    }
  }

  const path = (t: DeploymentTarget, sub = ''): string =>
    `/apis/apps/v1/namespaces/${encodeURIComponent(t.namespace)}/deployments/${encodeURIComponent(t.name)}${sub}`;

  /** The watched state when it can be trusted for `target` now; undefined: ask the API. */
  const fromWatch = (target: DeploymentTarget): Promise<CachedDeployment | undefined> => of(target)?.trusted() ?? Promise.resolve(undefined);
  const rolloutOf = (target: DeploymentTarget): RolloutView | undefined => of(target)?.rollout();

  async function readDeployment(target: DeploymentTarget, op: string): Promise<DeploymentStatus> {
    return statusOf(await call(op, target, 'get', 'deployments', () => http.json({ method: 'GET', path: path(target), timeoutMs })));
  }

  return {
    cluster,
    get watchStats() { return first?.watch.stats; },
    get watching() { return first?.watch.live ?? false; },
    watches: () => targets.map((t) => ({ target: t, live: of(t)!.watch.live, stats: of(t)!.watch.stats })),
    async scale(target: DeploymentTarget, replicas: number): Promise<ScaleResult> {
      if (!Number.isInteger(replicas) || replicas < 0) {
        throw new KubeError('invalid', `invalid: ${String(replicas)} is not a valid replica count`);
      }
      const cached = await fromWatch(target);
      let previous: number;
      if (cached?.exists) previous = cached.status.desired;
      else {
        const before = await call<{ spec?: { replicas?: number } }>('scale-read', target, 'get', 'deployments/scale',
          () => http.json({ method: 'GET', path: path(target, '/scale'), timeoutMs }));
        previous = before.spec?.replicas ?? 0; // autoscaling/v1 omits spec.replicas when it is 0
      }
      let after: { spec?: { replicas?: number }; metadata?: { resourceVersion?: string; uid?: string } };
      try {
        after = await call('scale-patch', target, 'patch', 'deployments/scale', () => http.json({
          method: 'PATCH', path: path(target, '/scale'), body: { spec: { replicas } }, contentType: 'application/merge-patch+json', timeoutMs,
        }));
      } catch (error) {
        if (error instanceof KubeError && mayHaveApplied(error)) of(target)?.doubt(Math.max(10_000, 2 * timeoutMs));
        throw error;
      }
      const rv = after.metadata?.resourceVersion;
      if (typeof after.metadata?.uid === 'string') uids.set(keyOf(target), after.metadata.uid);
      if (typeof rv === 'string') of(target)?.wrote(rv);
      const result = { previous, desired: after.spec?.replicas ?? 0 };
      log?.info({ namespace: target.namespace, name: target.name, ...result }, 'deployment scaled');
      return result;
    },
    async status(target: DeploymentTarget): Promise<DeploymentStatus> {
      const cached = await fromWatch(target);
      if (cached) {
        if (!cached.exists) throw notFoundError(target);
        return cached.status;
      }
      return readDeployment(target, 'status');
    },
    async ping(target: DeploymentTarget): Promise<void> {
      const watch = of(target)?.watch;
      if (watch && await watch.answering(Math.min(PING_WAIT_MS, timeoutMs))) return;
      await readDeployment(target, 'ping');
      // The API answers again: a watch waiting out a backoff after losing it may reconnect now.
      const down = watch?.lastError;
      if (down && (down.kind === 'unreachable' || down.kind === 'timeout' || down.kind === 'server')) watch?.wake();
    },
    async recordEvent(target: DeploymentTarget, event: KubeEvent, options?: { readonly dryRun?: boolean }): Promise<void> {
      let uid = uids.get(keyOf(target));
      if (uid === undefined && !options?.dryRun) {
        // Not scaled by this process yet (an Event after a read-back): one GET, else the Event goes without it.
        const d = await call<{ metadata?: { uid?: string } }>('event-uid', target, 'get', 'deployments',
          () => http.json({ method: 'GET', path: path(target), timeoutMs })).catch(() => undefined);
        uid = d?.metadata?.uid;
        if (uid !== undefined) uids.set(keyOf(target), uid);
      }
      const query = options?.dryRun ? '?dryRun=All' : '';
      await call('event', target, 'create', 'events', () => http.json({
        method: 'POST', path: `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(target.namespace)}/events${query}`,
        body: eventBody(target, event, uid, new Date()), contentType: 'application/json', timeoutMs,
      }));
    },
    rollout: rolloutOf,
    follow(target: DeploymentTarget, changed: () => void): RolloutFollow {
      // Not a watched Deployment: nothing to follow (its reply is never edited).
      return of(target)?.follow(changed) ?? { view: () => undefined, close: () => undefined };
    },
    async rolloutNow(target: DeploymentTarget): Promise<RolloutView | undefined> {
      const w = of(target);
      const cached = w?.watch.cached;
      if (!w || !cached?.exists || podsRefused.has(target.namespace)) return undefined;
      // A rollout is followed: its pod watch answers (or will in a moment); no second request for the same pods.
      const followed = w.followedPods();
      if (followed) return followed;
      const selector = labelSelector(cached.object.spec?.selector);
      if (selector === undefined) return undefined;
      const list = await call<{ items?: PodObject[] }>('pods-list', target, 'list', 'pods', () => http.json({
        method: 'GET', path: podsPath(target.namespace, selector), timeoutMs }));
      return { deployment: cached.object, pods: list.items ?? [] };
    },
    async checkPods(target: DeploymentTarget): Promise<void> {
      try {
        await call('pods-check', target, 'list', 'pods', () => http.json({
          method: 'GET', path: `${podsPath(target.namespace)}?limit=1`, timeoutMs }));
      } catch (error) {
        if (error instanceof KubeError && error.kind === 'forbidden') podsRefused.add(target.namespace);
        throw error;
      }
    },
    async close(): Promise<void> {
      const stopped = Promise.all([...watched.values()].map((w) => w.close()));
      http.close();
      await stopped;
    },
  };
}

/** Names the bot in its Events (a qualified name, as the API requires of `reportingController`). */
export const REPORTING_CONTROLLER = 'openclaw-k8s-toggle-operator';

/** An events.k8s.io/v1 Event about the Deployment, as the API validates a new one (eventTime in microseconds, reporting fields set). */
export function eventBody(target: DeploymentTarget, event: KubeEvent, uid: string | undefined, at: Date): Record<string, unknown> {
  return {
    apiVersion: 'events.k8s.io/v1', kind: 'Event',
    // Named as client-go names Events: the object's name, a dot, the time in hex (generateName would need a trailing '-').
    metadata: { name: `${target.name.slice(0, 230)}.${(BigInt(at.getTime()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1e6))).toString(16)}`, namespace: target.namespace },
    eventTime: at.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z'),
    reportingController: REPORTING_CONTROLLER,
    // In a pod: the pod's name.
    reportingInstance: `${REPORTING_CONTROLLER}-${hostname()}`.slice(0, 128),
    action: event.action, reason: event.reason, note: event.note.slice(0, 1024), type: 'Normal',
    regarding: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: target.namespace, name: target.name, ...(uid !== undefined ? { uid } : {}) },
  };
}
