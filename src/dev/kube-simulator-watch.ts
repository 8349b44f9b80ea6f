/**
 * List and watch of Deployments in the kube simulator, answering as kube-apiserver v1.37 does
 * (read off the testbed):
 * - a list carries the collection's resourceVersion (the latest revision, not the item's); its
 *   items have no kind/apiVersion;
 * - a watch is a 200 `application/json` stream of one JSON event per line: ADDED, MODIFIED,
 *   DELETED with the whole object; without a resourceVersion (or "0") it starts with an ADDED
 *   per existing object; from a resourceVersion older than the history it keeps, the answer is
 *   200 with a single ERROR event (a 410 `Expired` Status) and the end of the stream;
 * - with `allowWatchBookmarks`, a BOOKMARK (an empty Deployment with only metadata.resourceVersion)
 *   about once a minute and 2 s before `timeoutSeconds` runs out; at `timeoutSeconds` the stream
 *   ends cleanly.
 * Simulator faults: every open watch dropped (as an API server restart does), the history forgotten
 * (its watch cache rebuilt: older resourceVersions get 410), watches frozen (a half-open connection).
 */
import type { ServerResponse } from 'node:http';

export interface WatchRequest {
  readonly namespace: string;
  /** From `fieldSelector=metadata.name=<name>`; undefined: every Deployment of the namespace. */
  readonly name: string | undefined;
  readonly resourceVersion: string | undefined;
  readonly bookmarks: boolean;
  readonly timeoutSeconds: number | undefined;
}

interface Recorded {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly namespace: string;
  readonly name: string;
  readonly object: Record<string, unknown>;
}

interface Watcher {
  readonly request: WatchRequest;
  readonly res: ServerResponse;
  readonly timers: NodeJS.Timeout[];
  frozen: boolean;
}

const HISTORY_LIMIT = 200;

export class SimulatorWatches {
  readonly #history: Recorded[] = [];
  /** Every event after this revision is in the history. */
  #historyStart: number;
  readonly #watchers = new Set<Watcher>();
  readonly #bookmarkIntervalMs: number;
  readonly #revision: () => number;

  constructor(options: { bookmarkIntervalMs: number; revision: () => number }) {
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs;
    this.#revision = options.revision;
    this.#historyStart = options.revision();
  }

  get open(): number {
    return this.#watchers.size;
  }

  /** A change to a Deployment, at revision `rv`, with its object as a GET would show it then. */
  record(type: Recorded['type'], namespace: string, name: string, rv: number, object: Record<string, unknown>): void {
    const event = { rv, type, namespace, name, object };
    this.#history.push(event);
    while (this.#history.length > HISTORY_LIMIT) this.#historyStart = this.#history.shift()!.rv;
    for (const w of this.#watchers) if (matches(w.request, event)) this.#send(w, type, object);
  }

  /** The list answer for `namespace` (narrowed to `name`): items are the current objects. */
  list(items: ReadonlyArray<Record<string, unknown>>): Record<string, unknown> {
    return {
      kind: 'DeploymentList', apiVersion: 'apps/v1', metadata: { resourceVersion: String(this.#revision()) },
      items: items.map(({ kind: _kind, apiVersion: _apiVersion, ...rest }) => rest),
    };
  }

  /** Answers a watch request on `res`; `current` gives the objects it starts from when no resourceVersion is given. */
  serve(res: ServerResponse, request: WatchRequest, current: () => ReadonlyArray<{ name: string; object: Record<string, unknown> }>): void {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private', 'transfer-encoding': 'chunked' });
    // The real server answers at once, before any event.
    res.flushHeaders();
    const rv = request.resourceVersion;
    const watcher: Watcher = { request, res, timers: [], frozen: false };
    if (rv === undefined || rv === '' || rv === '0') {
      for (const { object } of current()) this.#send(watcher, 'ADDED', object);
    } else {
      const from = Number(rv);
      if (!Number.isInteger(from) || from < this.#historyStart) {
        this.#send(watcher, 'ERROR', { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
          message: `too old resource version: ${rv} (${this.#historyStart + 1})`, reason: 'Expired', code: 410 });
        res.end('\n');
        return;
      }
      for (const e of this.#history) if (e.rv > from && matches(request, e)) this.#send(watcher, e.type, e.object);
    }
    this.#watchers.add(watcher);
    const end = (): void => {
      for (const t of watcher.timers) clearTimeout(t);
      this.#watchers.delete(watcher);
    };
    res.once('close', end);
    // The real server's default is a random 30-60 min.
    const timeoutMs = (request.timeoutSeconds ?? 1800 + Math.floor(Math.random() * 1800)) * 1000;
    const later = (ms: number, work: () => void): void => {
      const t = setTimeout(work, ms);
      t.unref();
      watcher.timers.push(t);
    };
    later(timeoutMs, () => { end(); res.end(); });
    if (request.bookmarks) {
      const bookmark = (): void => this.#send(watcher, 'BOOKMARK', {
        kind: 'Deployment', apiVersion: 'apps/v1', metadata: { resourceVersion: String(this.#revision()) },
        spec: { replicas: 0, selector: null, template: { metadata: {}, spec: { containers: null } }, strategy: {} }, status: {},
      });
      const every = (): void => later(this.#bookmarkIntervalMs, () => { bookmark(); every(); });
      every();
      if (timeoutMs > 2_000) later(timeoutMs - 2_000, bookmark);
    }
  }

  #send(w: Watcher, type: string, object: Record<string, unknown>): void {
    if (w.frozen || w.res.writableEnded) return;
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  /** Closes every open watch without an answer's end, as a restarting API server does. */
  drop(): void {
    for (const w of this.#watchers) {
      for (const t of w.timers) clearTimeout(t);
      w.res.socket?.destroy();
    }
    this.#watchers.clear();
  }

  /** Forgets the history: a watch from any earlier resourceVersion gets 410 Gone. */
  compact(): void {
    this.#history.length = 0;
    this.#historyStart = this.#revision();
  }

  /** Open watches stay connected but receive nothing any more (a half-open connection). */
  freeze(): void {
    for (const w of this.#watchers) w.frozen = true;
  }

  stop(): void {
    this.drop();
  }
}

function matches(request: WatchRequest, e: { namespace: string; name: string }): boolean {
  return e.namespace === request.namespace && (request.name === undefined || request.name === e.name);
}

/** `metadata.name=x` or `metadata.name==x` from a fieldSelector; null for any other selector. */
export function nameFromFieldSelector(selector: string | null): string | undefined | null {
  if (selector === null || selector === '') return undefined;
  const m = /^metadata\.name==?([a-z0-9.-]+)$/.exec(selector);
  return m ? m[1] : null;
}
