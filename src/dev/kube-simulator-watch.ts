/**
 * List and watch in the kube simulator (of Deployments, and of Pods: one instance each, as the real
 * server keeps a watch cache per resource), answering as kube-apiserver v1.37 does (read off the testbed):
 * - a list carries the collection's resourceVersion (the latest revision, not the item's); its
 *   items have no kind/apiVersion;
 * - a watch is a 200 `application/json` stream of one JSON event per line: ADDED, MODIFIED,
 *   DELETED with the whole object; without a resourceVersion (or "0") it starts with an ADDED
 *   per existing object; from a resourceVersion older than the history it keeps, the answer is
 *   200 with a single ERROR event (a 410 `Expired` Status) and the end of the stream;
 * - with `allowWatchBookmarks`, a BOOKMARK (an empty object of the kind with only metadata.resourceVersion)
 *   about once a minute and 2 s before `timeoutSeconds` runs out; at `timeoutSeconds` the stream
 *   ends cleanly.
 * Simulator faults: every open watch dropped (as an API server restart does), the history forgotten
 * (its watch cache rebuilt: older resourceVersions get 410), watches frozen (a half-open connection).
 */
import type { ServerResponse } from 'node:http';

export interface WatchRequest {
  readonly namespace: string;
  /** From `fieldSelector=metadata.name=<name>`; undefined: every object of the namespace. */
  readonly name: string | undefined;
  /** From `labelSelector`; undefined: any labels. */
  readonly selector?: readonly LabelRequirement[] | undefined;
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
  readonly #kind: WatchedKind;

  constructor(options: { bookmarkIntervalMs: number; revision: () => number; kind: WatchedKind }) {
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs;
    this.#revision = options.revision;
    this.#kind = options.kind;
    this.#historyStart = options.revision();
  }

  get open(): number {
    return this.#watchers.size;
  }

  /** A change to an object, at revision `rv`, with its object as a GET would show it then. */
  record(type: Recorded['type'], namespace: string, name: string, rv: number, object: Record<string, unknown>): void {
    const event = { rv, type, namespace, name, object };
    this.#history.push(event);
    while (this.#history.length > HISTORY_LIMIT) this.#historyStart = this.#history.shift()!.rv;
    for (const w of this.#watchers) if (matches(w.request, event)) this.#send(w, type, object);
  }

  /** The list answer for `namespace` (narrowed to `name`): items are the current objects. */
  list(items: ReadonlyArray<Record<string, unknown>>): Record<string, unknown> {
    return {
      kind: `${this.#kind.kind}List`, apiVersion: this.#kind.apiVersion, metadata: { resourceVersion: String(this.#revision()) },
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
        kind: this.#kind.kind, apiVersion: this.#kind.apiVersion, metadata: { resourceVersion: String(this.#revision()) }, ...this.#kind.empty,
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

function matches(request: WatchRequest, e: { namespace: string; name: string; object: Record<string, unknown> }): boolean {
  const labels = (e.object['metadata'] as { labels?: Record<string, string> } | undefined)?.labels ?? {};
  return e.namespace === request.namespace && (request.name === undefined || request.name === e.name) && labelsMatch(request.selector, labels);
}

/** What a kind's empty object (a bookmark) carries besides metadata, as the real server serialises it. */
export interface WatchedKind {
  readonly kind: string;
  readonly apiVersion: string;
  readonly empty: Record<string, unknown>;
}

export const DEPLOYMENTS: WatchedKind = { kind: 'Deployment', apiVersion: 'apps/v1',
  empty: { spec: { replicas: 0, selector: null, template: { metadata: {}, spec: { containers: null } }, strategy: {} }, status: {} } };
export const PODS: WatchedKind = { kind: 'Pod', apiVersion: 'v1', empty: { spec: { containers: null }, status: {} } };

export interface LabelRequirement {
  readonly key: string;
  readonly op: 'in' | 'notin' | 'exists' | '!';
  readonly values: readonly string[];
}

/**
 * A `labelSelector` as the server parses it (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`,
 * `k`, `!k`, comma-separated); null when it cannot be parsed.
 */
export function parseLabelSelector(text: string | null): LabelRequirement[] | undefined | null {
  if (text === null || text.trim() === '') return undefined;
  const parts = text.match(/[^,(]+(\([^)]*\))?/g) ?? [];
  const key = '([A-Za-z0-9][-A-Za-z0-9_./]*)';
  const out: LabelRequirement[] = [];
  for (const raw of parts) {
    const p = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^${key}\\s*(==|=|!=)\\s*([-A-Za-z0-9_.]*)$`).exec(p))) out.push({ key: m[1]!, op: m[2] === '!=' ? 'notin' : 'in', values: [m[3]!] });
    else if ((m = new RegExp(`^${key}\\s+(in|notin)\\s*\\(([^)]*)\\)$`).exec(p))) out.push({ key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()) });
    else if ((m = new RegExp(`^!\\s*${key}$`).exec(p))) out.push({ key: m[1]!, op: '!', values: [] });
    else if ((m = new RegExp(`^${key}$`).exec(p))) out.push({ key: m[1]!, op: 'exists', values: [] });
    else return null;
  }
  return out;
}

export function labelsMatch(selector: readonly LabelRequirement[] | undefined, labels: Readonly<Record<string, string>>): boolean {
  return (selector ?? []).every((r) => {
    const value = labels[r.key];
    switch (r.op) {
      case 'in': return value !== undefined && r.values.includes(value);
      case 'notin': return value === undefined || !r.values.includes(value);
      case 'exists': return value !== undefined;
      case '!': return value === undefined;
    }
  });
}

/** A list or watch request's parameters (`watch` is `1` or `true`); undefined when it is a list. */
export function watchRequestOf(url: URL, namespace: string, name: string | undefined, selector?: readonly LabelRequirement[]): WatchRequest | undefined {
  if (!['1', 'true'].includes(url.searchParams.get('watch') ?? '')) return undefined;
  const timeout = url.searchParams.get('timeoutSeconds');
  return { namespace, name, ...(selector !== undefined ? { selector } : {}), resourceVersion: url.searchParams.get('resourceVersion') ?? undefined,
    bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true', timeoutSeconds: timeout === null ? undefined : Number(timeout) };
}

/** `metadata.name=x` or `metadata.name==x` from a fieldSelector; null for any other selector. */
export function nameFromFieldSelector(selector: string | null): string | undefined | null {
  if (selector === null || selector === '') return undefined;
  const m = /^metadata\.name==?([a-z0-9.-]+)$/.exec(selector);
  return m ? m[1] : null;
}
