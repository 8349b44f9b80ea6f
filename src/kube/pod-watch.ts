/**
 * A watch on the pods of the bot's Deployment (by the Deployment's label selector), keeping what
 * rollout.ts reads of each: where a start stands and why it is stuck. It needs `list` and `watch`
 * on pods in the namespace; without them it says so once and stays down, and the caller falls
 * back to the Deployment's own status.
 */
import type { Logger } from '../log.ts';
import type { KubeError } from './kube.ts';
import type { KubeHttp } from './kube-http.ts';
import type { PodObject } from './rollout.ts';
import { WatchLoop, type WatchStats } from './watch-loop.ts';

export interface PodWatchOptions {
  readonly http: KubeHttp;
  readonly namespace: string;
  /** A label selector, e.g. `app=openclaw` (see `labelSelector`). */
  readonly selector: string;
  readonly requestTimeoutMs: number;
  readonly toKubeError: (error: unknown, verb: string) => KubeError;
  readonly logger?: Logger | undefined;
  /** Called after each change of the pods (a list, or an event). */
  readonly onChange?: () => void;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

export class PodWatch {
  readonly selector: string;
  readonly #loop: WatchLoop;
  readonly #pods = new Map<string, PodObject>();

  constructor(o: PodWatchOptions) {
    this.selector = o.selector;
    const fields = { namespace: o.namespace, selector: o.selector };
    const changed = (): void => o.onChange?.();
    this.#loop = new WatchLoop({
      http: o.http,
      path: podsPath(o.namespace, o.selector),
      requestTimeoutMs: o.requestTimeoutMs,
      toKubeError: o.toKubeError,
      ...(o.backoff !== undefined ? { backoff: o.backoff } : {}),
      store: {
        reset: (items) => {
          this.#pods.clear();
          for (const item of items) this.#keep(item);
          changed();
        },
        apply: (type, object) => {
          const name = nameOf(object);
          if (name === undefined) return;
          if (type === 'DELETED') this.#pods.delete(name);
          else this.#keep(object);
          changed();
        },
      },
      hooks: {
        onDown: (error, first) => {
          if (!first) return;
          const logged = { ...fields, kind: error.kind, detail: error.cause instanceof Error ? error.cause.message : undefined };
          if (error.kind === 'forbidden') o.logger?.warn(logged, `kubernetes: cannot watch the Deployment's pods (${error.human}); progress and reasons come from the Deployment's own status. The Role needs list and watch on pods: see config/kubernetes/role.yaml`);
          else o.logger?.warn(logged, `kubernetes: the watch on the Deployment's pods is down (${error.human})`);
        },
      },
    });
  }

  get stats(): WatchStats { return this.#loop.stats; }
  get live(): boolean { return this.#loop.live; }
  get lastError(): KubeError | undefined { return this.#loop.lastError; }

  /** The pods as last seen, when the watch is live (else undefined: not known). */
  pods(): PodObject[] | undefined {
    return this.live ? [...this.#pods.values()] : undefined;
  }

  start(): void {
    this.#loop.start();
  }

  close(): Promise<void> {
    return this.#loop.close();
  }

  /** Only what rollout.ts reads: a Deployment's pods carry much more (env, volumes, managed fields). */
  #keep(o: Record<string, unknown>): void {
    const pod = o as PodObject & { metadata?: { name?: string } };
    const name = nameOf(o);
    if (name === undefined) return;
    const containers = pod.spec?.containers?.map((c) => ({ ...(c.name !== undefined ? { name: c.name } : {}), ...(c.image !== undefined ? { image: c.image } : {}) }));
    this.#pods.set(name, {
      metadata: { name, ...(pod.metadata?.deletionTimestamp !== undefined ? { deletionTimestamp: pod.metadata.deletionTimestamp } : {}) },
      spec: { ...(pod.spec?.nodeName !== undefined ? { nodeName: pod.spec.nodeName } : {}), ...(containers ? { containers } : {}) },
      ...(pod.status !== undefined ? { status: pod.status } : {}),
    });
  }
}

/** The pods of a namespace, those matching `selector` when given (a list; the watch adds its own parameters). */
export function podsPath(namespace: string, selector?: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods${selector === undefined ? '' : `?labelSelector=${encodeURIComponent(selector)}`}`;
}

/** The label selector of a Deployment's `spec.selector` (matchLabels and matchExpressions), or undefined if it has none. */
export function labelSelector(selector: unknown): string | undefined {
  const s = selector as { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> } | undefined;
  const parts = Object.entries(s?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s?.matchExpressions ?? []) {
    const values = (e.values ?? []).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${values})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${values})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.length > 0 ? parts.join(',') : undefined;
}

function nameOf(o: unknown): string | undefined {
  const name = (o as { metadata?: { name?: unknown } } | null)?.metadata?.name;
  return typeof name === 'string' ? name : undefined;
}
