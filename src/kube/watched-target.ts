/**
 * What the lean client keeps for one watched Deployment: its watch (deployment-watch.ts), the watch
 * on its pods while a rollout is followed (pod-watch.ts), the followers, and the bookkeeping of the
 * bot's own writes (a status right after a scale waits for the watch to show it; after a write whose
 * answer was lost, the cache is not trusted for a while). One per target (issue 13: several).
 */
import type { Logger } from '../log.ts';
import { DeploymentWatch, type CachedDeployment } from './deployment-watch.ts';
import type { DeploymentTarget, KubeError, RolloutFollow, RolloutView } from './kube.ts';
import type { KubeHttp } from './kube-http.ts';
import { labelSelector, PodWatch } from './pod-watch.ts';

export interface WatchedTargetOptions {
  readonly http: KubeHttp;
  readonly target: DeploymentTarget;
  readonly requestTimeoutMs: number;
  readonly logger: Logger | undefined;
  readonly toKubeError: (error: unknown, verb: string, resource: string) => KubeError;
  readonly idleTimeoutMs?: number | undefined;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number } | undefined;
  /** The pods' namespace may not be listed (the start-up check said so): the pod watch's own warning would repeat it. */
  readonly podsRefused: () => boolean;
}

/** How long a status or scale waits for the watch to deliver the bot's own last write before asking the API instead. */
const CATCH_UP_MS = 1_000;

export class WatchedTarget {
  readonly target: DeploymentTarget;
  readonly watch: DeploymentWatch;
  readonly #o: WatchedTargetOptions;
  /** Progress messages following the rollout: told of each change of the Deployment or its pods. */
  readonly #followers = new Set<() => void>();
  /**
   * The Deployment's pods, by its label selector (re-made if that changes): watched while a rollout
   * is followed (and from the first `rollout` call on), so an idle bot holds one watch per target only.
   */
  #pods: PodWatch | undefined;
  /** resourceVersion of the bot's own last write, until the watch has shown it. */
  #written: string | undefined;
  /** Until then a write's outcome is open (its answer was lost): read the API, not the cache. */
  #doubtUntil = 0;

  constructor(o: WatchedTargetOptions) {
    this.#o = o;
    this.target = o.target;
    this.watch = new DeploymentWatch({
      http: o.http, target: o.target, requestTimeoutMs: o.requestTimeoutMs, logger: o.logger,
      onChange: () => {
        if (this.#followers.size > 0) this.#watchPods();
        this.#notify();
      },
      toKubeError: (e, verb) => o.toKubeError(e, verb, 'deployments'),
      ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
      ...(o.backoff !== undefined ? { backoff: o.backoff } : {}),
    });
    this.watch.start();
  }

  /** The watched state when it can be trusted now; undefined: ask the API. */
  async trusted(): Promise<CachedDeployment | undefined> {
    if (!this.watch.live || Date.now() < this.#doubtUntil) return undefined;
    if (this.#written !== undefined) {
      const rv = this.#written;
      const seen = await this.watch.caughtUp(rv, CATCH_UP_MS);
      if (this.#written === rv) this.#written = undefined;
      if (!seen) return undefined;
    }
    return this.watch.cached;
  }

  /** The bot's own write (its resourceVersion): the next status waits for the watch to show it. */
  wrote(rv: string): void {
    this.#written = rv;
  }

  /** A write whose answer was lost: the cache is not trusted for `ms`. */
  doubt(ms: number): void {
    this.#doubtUntil = Date.now() + ms;
  }

  rollout(): RolloutView | undefined {
    const cached = this.watch.cached;
    if (!cached?.exists) return undefined;
    this.#watchPods();
    return { deployment: cached.object, pods: this.#pods?.pods() };
  }

  /** Pods as the watch of a followed rollout sees them; undefined when no such watch is open (or the Deployment is unknown). */
  followedPods(): RolloutView | undefined {
    const cached = this.watch.cached;
    return cached?.exists && this.#pods ? { deployment: cached.object, pods: this.#pods.pods() } : undefined;
  }

  follow(changed: () => void): RolloutFollow {
    const listener = (): void => changed();
    this.#followers.add(listener);
    this.#watchPods();
    return {
      view: () => this.rollout(),
      close: () => {
        if (!this.#followers.delete(listener) || this.#followers.size > 0) return;
        // Nothing followed any more: the pods' watch goes, until the next start or stop.
        void this.#pods?.close();
        this.#pods = undefined;
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.watch.close(), this.#pods?.close()]);
  }

  #notify(): void {
    for (const f of [...this.#followers]) f();
  }

  #watchPods(): void {
    const cached = this.watch.cached;
    if (!cached?.exists) return;
    const selector = labelSelector(cached.object.spec?.selector);
    if (selector === undefined || this.#pods?.selector === selector) return;
    void this.#pods?.close();
    const o = this.#o;
    this.#pods = new PodWatch({
      http: o.http, namespace: o.target.namespace, selector, requestTimeoutMs: o.requestTimeoutMs, logger: o.podsRefused() ? undefined : o.logger,
      toKubeError: (e, verb) => o.toKubeError(e, verb, 'pods'), onChange: () => this.#notify(),
    });
    this.#pods.start();
  }
}
