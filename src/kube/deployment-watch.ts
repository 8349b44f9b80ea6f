/**
 * A watch on the one Deployment the bot scales, keeping its latest state, so that `status`, the
 * "from" of a scale and readiness need no request of their own. The informer pattern, for one
 * object: list it (`fieldSelector=metadata.name=<name>`, which RBAC authorizes by resourceNames),
 * watch from the list's resourceVersion with bookmarks, on a clean end watch again from the last
 * resourceVersion seen, on 410 Gone list again, on failure back off (bounded, with jitter).
 *
 * Facts from kube-apiserver v1.37 (the testbed): a watch from a resourceVersion older than the
 * watch cache (e.g. after an API server restart) is answered 200 with one ERROR event carrying a
 * 410 `Expired` Status; bookmarks come about once a minute and 2 s before `timeoutSeconds`; a
 * bookmark's object is an empty Deployment with only metadata.resourceVersion set.
 */
import type { Logger } from '../log.ts';
import { ApiStatusError, KubeErrorDetail, notFoundSentence } from './api-errors.ts';
import { KubeError, summarise, type DeploymentStatus, type DeploymentTarget } from './kube.ts';
import type { KubeHttp } from './kube-http.ts';
import { deploymentProblem, type DeploymentObject } from './rollout.ts';

export type CachedDeployment =
  | { readonly exists: true; readonly status: DeploymentStatus }
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
}

export interface WatchStats {
  lists: number;
  watches: number;
  events: number;
  relists: number;
}

type Phase = 'connecting' | 'live' | 'down' | 'closed';

/** Bookmarks come every minute: a watch silent for half a minute more is taken as dead (a hung or unreachable server). */
const DEFAULT_IDLE_MS = 90_000;
const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 30_000 };
/**
 * A refusal (an HTTP 4xx: a Role without list/watch, a revoked token) backs off further, to 5 min. Not
 * at once: an API server that is starting answers 403 for a moment (measured on the testbed: ~30 ms
 * after it listens, its RBAC cache not yet filled), and that must not cost the watch minutes.
 */
const REFUSED_MAX_MS = 300_000;
const SEEN_KEPT = 32;

/** The server ends each watch after 5-10 min (as client-go asks): spreads reconnections out. */
const watchSeconds = (): number => 300 + Math.floor(Math.random() * 300);

export class DeploymentWatch {
  readonly stats: WatchStats = { lists: 0, watches: 0, events: 0, relists: 0 };
  readonly #o: WatchOptions;
  readonly #base: string;
  readonly #idleMs: number;
  readonly #backoff: { initialMs: number; maxMs: number };
  #phase: Phase = 'connecting';
  #closed = false;
  #cache: CachedDeployment | undefined;
  #rv: string | undefined;
  /** resourceVersions recently seen, so a write's own event is recognised even if it came before the write's answer. */
  readonly #seen: string[] = [];
  #waiting: Array<{ rv: string; done: (seen: boolean) => void }> = [];
  #lastError: KubeError | undefined;
  #abort = new AbortController();
  #wake: (() => void) | undefined;
  #attempt: Promise<void> | undefined;
  #settleAttempt: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: WatchOptions) {
    this.#o = options;
    const { namespace, name } = options.target;
    this.#base = `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`;
    this.#idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_MS;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** The Deployment as last seen, when the watch is live (else undefined: ask the API). */
  get cached(): CachedDeployment | undefined { return this.live ? this.#cache : undefined; }
  get live(): boolean { return this.#phase === 'live'; }
  /** Why the watch is down, if it is. */
  get lastError(): KubeError | undefined { return this.live ? undefined : this.#lastError; }

  /** Whether the API answers, as the watch knows it: waits for a connection attempt in flight (bounded). */
  async answering(maxWaitMs: number): Promise<boolean> {
    if (this.#phase === 'connecting' && this.#attempt) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#attempt, new Promise<void>((r) => { timer = setTimeout(r, maxWaitMs); })]).finally(() => clearTimeout(timer));
    }
    return this.#phase === 'live';
  }

  /**
   * Waits until the watch has delivered the change with this resourceVersion (a write's own), so
   * that the cache includes it; false after `maxWaitMs` or when the watch is not live.
   */
  caughtUp(rv: string, maxWaitMs: number): Promise<boolean> {
    if (this.#seen.includes(rv)) return Promise.resolve(true);
    if (this.#phase !== 'live') return Promise.resolve(false);
    return new Promise((resolve) => {
      const entry = { rv, done: (seen: boolean) => { clearTimeout(timer); resolve(seen); } };
      const timer = setTimeout(() => { this.#waiting = this.#waiting.filter((w) => w !== entry); resolve(false); }, maxWaitMs);
      this.#waiting.push(entry);
    });
  }

  /** Cuts a backoff short (the API answered a request meanwhile). */
  wake(): void {
    this.#wake?.();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#phase = 'closed';
    this.#abort.abort();
    this.#wake?.();
    this.#release(false);
    await this.#loop;
  }

  #note(rv: string): void {
    this.#rv = rv;
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

  #set(phase: Phase): void {
    if (this.#closed) return;
    const was = this.#phase;
    this.#phase = phase;
    if (phase === 'live') {
      this.#settleAttempt?.();
      const fields = { namespace: this.#o.target.namespace, name: this.#o.target.name };
      if (this.#lastError) this.#o.logger?.info(fields, 'kubernetes: the watch is back; status is answered from it again');
      else if (this.stats.watches === 1) this.#o.logger?.info(fields, 'kubernetes: watching the Deployment; status and readiness are answered from the watch');
      this.#lastError = undefined;
    }
    if (phase === 'down') {
      this.#settleAttempt?.();
      this.#release(false);
    }
    if (phase === 'connecting' && was !== 'connecting') this.#newAttempt();
  }

  #newAttempt(): void {
    this.#attempt = new Promise((resolve) => { this.#settleAttempt = resolve; });
  }

  async #run(): Promise<void> {
    this.#newAttempt();
    let failures = 0;
    while (!this.#closed) {
      let opened = 0;
      try {
        if (this.#rv === undefined) await this.#list();
        const expired = await this.#watch(() => { opened = Date.now(); });
        if (expired) {
          // Changes may have been missed: the cache is not trusted until the list is in.
          this.stats.relists += 1;
          this.#rv = undefined;
          this.#set('connecting');
        }
        // A clean end (the server's timeout) or a 410: go on at once, the cache still holds.
        if (opened > 0) failures = 0;
      } catch (error) {
        if (this.#closed) break;
        // A watch that stayed up a while starts its backoff afresh.
        if (opened > 0 && Date.now() - opened > 10_000) failures = 0;
        failures += 1;
        this.#failed(error);
        await this.#sleep(this.#delay(failures));
        this.#set('connecting');
      }
    }
    this.#release(false);
  }

  async #list(): Promise<void> {
    this.stats.lists += 1;
    const list = await this.#o.http.json({ method: 'GET', path: this.#base, timeoutMs: this.#o.requestTimeoutMs }) as
      { metadata?: { resourceVersion?: string }; items?: unknown[] } | undefined;
    const rv = list?.metadata?.resourceVersion;
    if (typeof rv !== 'string' || rv === '') throw new Error('the list answer has no resourceVersion');
    const item = list?.items?.find((i) => nameOf(i) === this.#o.target.name);
    this.#cache = item === undefined ? { exists: false } : { exists: true, status: statusOf(item) };
    // A list racing a write may predate it: whoever waits for the write asks the API instead.
    this.#release(false);
    this.#note(rv);
  }

  /** One watch request; true when it ended with 410 Gone (list again). */
  async #watch(onOpen: () => void): Promise<boolean> {
    this.stats.watches += 1;
    const query = `&watch=1&allowWatchBookmarks=true&timeoutSeconds=${watchSeconds()}&resourceVersion=${encodeURIComponent(this.#rv ?? '')}`;
    let expired = false;
    await this.#o.http.stream(this.#base + query, {
      answerTimeoutMs: this.#o.requestTimeoutMs,
      idleTimeoutMs: this.#idleMs,
      signal: this.#abort.signal,
      onOpen: () => { onOpen(); this.#set('live'); },
      onLine: (line) => {
        if (expired) return;
        expired = this.#event(JSON.parse(line) as WatchEvent);
      },
    });
    return expired;
  }

  /** Applies one event; true for a 410 (the resourceVersion is too old: list again). */
  #event(event: WatchEvent): boolean {
    this.stats.events += 1;
    const object = event.object ?? {};
    const rv = (object as { metadata?: { resourceVersion?: unknown } }).metadata?.resourceVersion;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED':
        if (nameOf(object) === this.#o.target.name) this.#cache = { exists: true, status: statusOf(object) };
        break;
      case 'DELETED':
        if (nameOf(object) === this.#o.target.name) this.#cache = { exists: false };
        break;
      case 'BOOKMARK':
        break;
      case 'ERROR': {
        const status = object as { code?: unknown; reason?: unknown };
        if (status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone') return true;
        throw new ApiStatusError(typeof status.code === 'number' ? status.code : 500, object);
      }
      default:
        return false;
    }
    if (typeof rv === 'string' && rv !== '') this.#note(rv);
    return false;
  }

  #failed(error: unknown): void {
    const first = this.#lastError === undefined;
    const mapped = this.#o.toKubeError(error, this.#rv === undefined ? 'list' : 'watch');
    this.#lastError = mapped;
    this.#set('down');
    const fields = { namespace: this.#o.target.namespace, name: this.#o.target.name, kind: mapped.kind,
      detail: mapped.cause instanceof Error ? mapped.cause.message : undefined };
    if (!first) this.#o.logger?.debug(fields, 'kubernetes: the watch failed again');
    else if (mapped.kind === 'forbidden') {
      this.#o.logger?.warn(fields, `kubernetes: cannot watch the Deployment (${mapped.human}); status makes a request each time. The Role needs list and watch on it: see config/kubernetes/role.yaml`);
    } else this.#o.logger?.warn(fields, `kubernetes: the watch is down (${mapped.human}); status makes a request each time until it is back`);
  }

  /** Exponential with jitter (half to all of the ceiling), so that many bots do not retry in step. */
  #delay(failures: number): number {
    const refused = this.#lastError?.status !== undefined && this.#lastError.status < 500 && this.#lastError.status !== 429;
    const ceiling = Math.min(refused ? REFUSED_MAX_MS : this.#backoff.maxMs, this.#backoff.initialMs * 2 ** Math.min(failures - 1, 20));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      // A watch waiting to reconnect does not keep a process alive on its own.
      timer.unref();
      function done(): void { clearTimeout(timer); resolve(); }
      this.#wake = () => { this.#wake = undefined; done(); };
    });
  }
}

interface WatchEvent { type?: string; object?: Record<string, unknown> }

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
  return { desired, ready, available: d.status?.availableReplicas ?? 0, updated: d.status?.updatedReplicas ?? 0, state: summarise(desired, ready), ...(problem ? { problem } : {}) };
}

/** The 404 a GET would have given, from a cache that knows the Deployment is gone. */
export function notFoundError(target: DeploymentTarget): KubeError {
  return new KubeError('not-found', notFoundSentence(target), 404,
    { cause: new KubeErrorDetail(`deployments.apps "${target.name}" not found (seen by the watch)`, 'NotFound', 404, undefined) });
}
