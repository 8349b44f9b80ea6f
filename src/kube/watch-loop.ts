/**
 * The informer pattern, for any collection the bot watches (its Deployment; the Deployment's pods):
 * list (with a field or label selector), watch from the list's resourceVersion with bookmarks, on a
 * clean end watch again from the last resourceVersion seen, on 410 Gone list again, on failure back
 * off (bounded, with jitter). What is kept of the objects is the store's business.
 *
 * Facts from kube-apiserver v1.37 (the testbed): a watch from a resourceVersion older than the
 * watch cache (e.g. after an API server restart) is answered 200 with one ERROR event carrying a
 * 410 `Expired` Status; bookmarks come about once a minute and 2 s before `timeoutSeconds`; a
 * bookmark's object carries only metadata.resourceVersion.
 */
import { ApiStatusError } from './api-errors.ts';
import type { KubeError } from './kube.ts';
import type { KubeHttp } from './kube-http.ts';

/** What a watch keeps: it is told the whole collection after each list, then each change. */
export interface WatchStore {
  reset(items: readonly Record<string, unknown>[]): void;
  apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Record<string, unknown>): void;
}

/** What the owner of a loop hears besides the objects (for readiness, logs, waiting for a write). */
export interface WatchHooks {
  /** The watch is connected; `recovered` when it had been down. */
  onLive?(recovered: boolean): void;
  /** A list or watch failed; `first` for the first failure since the watch was last live. */
  onDown?(error: KubeError, first: boolean): void;
  /** A list answer came in (what was waited for may predate it). */
  onListed?(): void;
  /** A resourceVersion was seen (a list's, or an object's in an event). */
  onResourceVersion?(rv: string): void;
}

export interface WatchLoopOptions {
  readonly http: KubeHttp;
  /** The collection's path with its selector, e.g. `/api/v1/namespaces/ns/pods?labelSelector=app%3Dx`. */
  readonly path: string;
  readonly store: WatchStore;
  readonly hooks?: WatchHooks;
  /** Deadline of the list request. */
  readonly requestTimeoutMs: number;
  /** Maps a failure to a KubeError (for logs and readiness). */
  readonly toKubeError: (error: unknown, verb: 'list' | 'watch') => KubeError;
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

export type WatchPhase = 'connecting' | 'live' | 'down' | 'closed';

const DEFAULT_IDLE_MS = 90_000;
const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 30_000 };
/**
 * A refusal (an HTTP 4xx: a Role without list/watch, a revoked token) backs off further, to 5 min. Not
 * at once: an API server that is starting answers 403 for a moment (measured on the testbed: ~30 ms
 * after it listens, its RBAC cache not yet filled), and that must not cost the watch minutes.
 */
const REFUSED_MAX_MS = 300_000;

/** The server ends each watch after 5-10 min (as client-go asks): spreads reconnections out. */
const watchSeconds = (): number => 300 + Math.floor(Math.random() * 300);

interface WatchEvent { type?: string; object?: Record<string, unknown> }

export class WatchLoop {
  readonly stats: WatchStats = { lists: 0, watches: 0, events: 0, relists: 0 };
  readonly #o: WatchLoopOptions;
  readonly #idleMs: number;
  readonly #backoff: { initialMs: number; maxMs: number };
  #phase: WatchPhase = 'connecting';
  #closed = false;
  #rv: string | undefined;
  #lastError: KubeError | undefined;
  #abort = new AbortController();
  #wake: (() => void) | undefined;
  #attempt: Promise<void> | undefined;
  #settleAttempt: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: WatchLoopOptions) {
    this.#o = options;
    this.#idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_MS;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  get phase(): WatchPhase { return this.#phase; }
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

  /** Cuts a backoff short (the API answered a request meanwhile). */
  wake(): void {
    this.#wake?.();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#phase = 'closed';
    this.#abort.abort();
    this.#wake?.();
    await this.#loop;
  }

  #set(phase: WatchPhase): void {
    if (this.#closed) return;
    const was = this.#phase;
    this.#phase = phase;
    if (phase === 'live') {
      this.#settleAttempt?.();
      const recovered = this.#lastError !== undefined;
      this.#lastError = undefined;
      this.#o.hooks?.onLive?.(recovered);
    }
    if (phase === 'down') this.#settleAttempt?.();
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
          // Changes may have been missed: the store is not trusted until the list is in.
          this.stats.relists += 1;
          this.#rv = undefined;
          this.#set('connecting');
        }
        // A clean end (the server's timeout) or a 410: go on at once, the store still holds.
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
  }

  async #list(): Promise<void> {
    this.stats.lists += 1;
    const list = await this.#o.http.json({ method: 'GET', path: this.#o.path, timeoutMs: this.#o.requestTimeoutMs }) as
      { metadata?: { resourceVersion?: string }; items?: Record<string, unknown>[] } | undefined;
    const rv = list?.metadata?.resourceVersion;
    if (typeof rv !== 'string' || rv === '') throw new Error('the list answer has no resourceVersion');
    this.#o.store.reset(list?.items ?? []);
    this.#o.hooks?.onListed?.();
    this.#note(rv);
  }

  /** One watch request; true when it ended with 410 Gone (list again). */
  async #watch(onOpen: () => void): Promise<boolean> {
    this.stats.watches += 1;
    const query = `${this.#o.path.includes('?') ? '&' : '?'}watch=1&allowWatchBookmarks=true&timeoutSeconds=${watchSeconds()}&resourceVersion=${encodeURIComponent(this.#rv ?? '')}`;
    let expired = false;
    await this.#o.http.stream(this.#o.path + query, {
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
      case 'DELETED':
        this.#o.store.apply(event.type, object);
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

  #note(rv: string): void {
    this.#rv = rv;
    this.#o.hooks?.onResourceVersion?.(rv);
  }

  #failed(error: unknown): void {
    const first = this.#lastError === undefined;
    this.#lastError = this.#o.toKubeError(error, this.#rv === undefined ? 'list' : 'watch');
    this.#set('down');
    this.#o.hooks?.onDown?.(this.#lastError, first);
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
