/**
 * A watch on the one Deployment the bot scales, keeping its latest state, so that `status`, the
 * "from" of a scale and readiness need no request of their own: the list/watch loop of
 * watch-loop.ts over `fieldSelector=metadata.name=<name>` (which RBAC authorizes by resourceNames),
 * plus what only this watch does: waiting for a write's own change (`caughtUp`) and its log lines.
 */
import type { Logger } from '../log.ts';
import { KubeErrorDetail, notFoundSentence } from './api-errors.ts';
import { KubeError, summarise, type DeploymentStatus, type DeploymentTarget } from './kube.ts';
import type { KubeHttp } from './kube-http.ts';
import { deploymentProblem, type DeploymentObject } from './rollout.ts';
import { WatchLoop, type WatchStats } from './watch-loop.ts';

export type { WatchStats };

export type CachedDeployment =
  | { readonly exists: true; readonly status: DeploymentStatus; readonly object: DeploymentObject }
  | { readonly exists: false };

export interface WatchOptions {
  readonly http: KubeHttp;
  readonly target: DeploymentTarget;
  /** Deadline of the list request. */
  readonly requestTimeoutMs: number;
  /** Maps a failure to the KubeError the rest of the adapter would give (for logs and ping). */
  readonly toKubeError: (error: unknown, verb: string) => KubeError;
  readonly logger?: Logger | undefined;
  /** A watch silent for this long is taken as dead (default 90 s: the server sends a bookmark every minute). */
  readonly idleTimeoutMs?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Called after each change the watch delivers (a list, or an event on the Deployment). */
  readonly onChange?: () => void;
}

const SEEN_KEPT = 32;

export class DeploymentWatch {
  readonly #loop: WatchLoop;
  #cache: CachedDeployment | undefined;
  /** resourceVersions recently seen, so a write's own event is recognised even if it came before the write's answer. */
  readonly #seen: string[] = [];
  #waiting: Array<{ rv: string; done: (seen: boolean) => void }> = [];

  constructor(options: WatchOptions) {
    const { namespace, name } = options.target;
    const fields = { namespace, name };
    this.#loop = new WatchLoop({
      http: options.http,
      path: `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`,
      requestTimeoutMs: options.requestTimeoutMs,
      toKubeError: options.toKubeError,
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      ...(options.backoff !== undefined ? { backoff: options.backoff } : {}),
      store: {
        reset: (items) => {
          const item = items.find((i) => nameOf(i) === name);
          this.#cache = item === undefined ? { exists: false } : cached(item);
          options.onChange?.();
        },
        apply: (type, object) => {
          if (nameOf(object) !== name) return;
          this.#cache = type === 'DELETED' ? { exists: false } : cached(object);
          options.onChange?.();
        },
      },
      hooks: {
        onLive: (recovered) => {
          if (recovered) options.logger?.info(fields, 'kubernetes: the watch is back; status is answered from it again');
          else if (this.#loop.stats.watches === 1) options.logger?.info(fields, 'kubernetes: watching the Deployment; status and readiness are answered from the watch');
        },
        onDown: (mapped, first) => {
          this.#release(false);
          const logged = { ...fields, kind: mapped.kind, detail: mapped.cause instanceof Error ? mapped.cause.message : undefined };
          if (!first) options.logger?.debug(logged, 'kubernetes: the watch failed again');
          else if (mapped.kind === 'forbidden') {
            options.logger?.warn(logged, `kubernetes: cannot watch the Deployment (${mapped.human}); status makes a request each time. The Role needs list and watch on it: see config/kubernetes/role.yaml`);
          } else options.logger?.warn(logged, `kubernetes: the watch is down (${mapped.human}); status makes a request each time until it is back`);
        },
        // A list racing a write may predate it: whoever waits for the write asks the API instead.
        onListed: () => this.#release(false),
        onResourceVersion: (rv) => this.#note(rv),
      },
    });
  }

  get stats(): WatchStats { return this.#loop.stats; }

  start(): void {
    this.#loop.start();
  }

  /** The Deployment as last seen, when the watch is live (else undefined: ask the API). */
  get cached(): CachedDeployment | undefined { return this.live ? this.#cache : undefined; }
  get live(): boolean { return this.#loop.live; }
  /** Why the watch is down, if it is. */
  get lastError(): KubeError | undefined { return this.#loop.lastError; }

  /** Whether the API answers, as the watch knows it: waits for a connection attempt in flight (bounded). */
  answering(maxWaitMs: number): Promise<boolean> {
    return this.#loop.answering(maxWaitMs);
  }

  /**
   * Waits until the watch has delivered the change with this resourceVersion (a write's own), so
   * that the cache includes it; false after `maxWaitMs` or when the watch is not live.
   */
  caughtUp(rv: string, maxWaitMs: number): Promise<boolean> {
    if (this.#seen.includes(rv)) return Promise.resolve(true);
    if (!this.live) return Promise.resolve(false);
    return new Promise((resolve) => {
      const entry = { rv, done: (seen: boolean) => { clearTimeout(timer); resolve(seen); } };
      const timer = setTimeout(() => { this.#waiting = this.#waiting.filter((w) => w !== entry); resolve(false); }, maxWaitMs);
      this.#waiting.push(entry);
    });
  }

  /** Cuts a backoff short (the API answered a request meanwhile). */
  wake(): void {
    this.#loop.wake();
  }

  async close(): Promise<void> {
    this.#release(false);
    await this.#loop.close();
    this.#release(false);
  }

  #note(rv: string): void {
    this.#seen.push(rv);
    if (this.#seen.length > SEEN_KEPT) this.#seen.shift();
    const done = this.#waiting.filter((w) => w.rv === rv);
    if (done.length === 0) return;
    this.#waiting = this.#waiting.filter((w) => w.rv !== rv);
    for (const w of done) w.done(true);
  }

  #release(seen: boolean): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) w.done(seen);
  }
}

/** What is kept of a Deployment: the counts, and what rollout.ts reads (not the pod template, not managed fields). */
function cached(o: Record<string, unknown>): CachedDeployment {
  const d = o as DeploymentObject;
  const object: DeploymentObject = {
    spec: { ...(d.spec?.replicas !== undefined ? { replicas: d.spec.replicas } : {}), ...(d.spec?.progressDeadlineSeconds !== undefined ? { progressDeadlineSeconds: d.spec.progressDeadlineSeconds } : {}), selector: d.spec?.selector },
    ...(d.status !== undefined ? { status: d.status } : {}),
  };
  return { exists: true, status: statusOf(o), object };
}

function nameOf(o: unknown): string | undefined {
  const name = (o as { metadata?: { name?: unknown } } | null)?.metadata?.name;
  return typeof name === 'string' ? name : undefined;
}

/** The counts the bot reports, and what stops the Deployment getting ready if it says so, from a Deployment object. */
export function statusOf(o: unknown): DeploymentStatus {
  const d = o as DeploymentObject & { status?: { availableReplicas?: number } };
  const desired = d.spec?.replicas ?? 0;
  const ready = d.status?.readyReplicas ?? 0;
  const problem = deploymentProblem(d);
  // A Deployment at 0 is "available" too (nothing is missing): only one with ready pods is up since then.
  const available = ready > 0 ? d.status?.conditions?.find((c) => c.type === 'Available' && c.status === 'True') : undefined;
  const since = available?.lastTransitionTime ? Date.parse(available.lastTransitionTime) : NaN;
  return {
    desired, ready, available: d.status?.availableReplicas ?? 0, updated: d.status?.updatedReplicas ?? 0, state: summarise(desired, ready),
    ...(problem ? { problem } : {}), ...(Number.isFinite(since) ? { availableSince: since } : {}),
  };
}

/** The 404 a GET would have given, from a cache that knows the Deployment is gone. */
export function notFoundError(target: DeploymentTarget): KubeError {
  return new KubeError('not-found', notFoundSentence(target), 404,
    { cause: new KubeErrorDetail(`deployments.apps "${target.name}" not found (seen by the watch)`, 'NotFound', 404, undefined) });
}
