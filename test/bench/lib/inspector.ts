/**
 * Talks to a child started with `--inspect=127.0.0.1:<port>` over the DevTools protocol (Node's
 * global WebSocket): forced GC, memory readings after it, and the sampling heap profiler (which
 * reports where the objects still alive were allocated). Used only at idle points.
 */

type Json = Record<string, unknown>;

export class InspectorSession {
  readonly #ws: WebSocket;
  readonly #pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>();
  #next = 1;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener('message', (event) => {
      const msg = JSON.parse(String(event.data)) as { id?: number; result?: Json; error?: { message: string } };
      if (msg.id === undefined) return;
      const waiter = this.#pending.get(msg.id);
      if (!waiter) return;
      this.#pending.delete(msg.id);
      if (msg.error) waiter.reject(new Error(msg.error.message));
      else waiter.resolve(msg.result ?? {});
    });
  }

  static async connect(port: number): Promise<InspectorSession> {
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
    const url = targets[0]?.webSocketDebuggerUrl;
    if (!url) throw new Error(`no inspector target on port ${port}`);
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error('inspector websocket failed')), { once: true });
    });
    return new InspectorSession(ws);
  }

  call(method: string, params: Json = {}, timeoutMs = 60_000): Promise<Json> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`inspector ${method} timed out`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full GC (twice, for weak references and finalizers), then process.memoryUsage() in MiB. */
  async memoryAfterGc(): Promise<Record<string, number>> {
    await this.call('HeapProfiler.collectGarbage');
    await new Promise((r) => setTimeout(r, 100));
    await this.call('HeapProfiler.collectGarbage');
    const r = await this.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const u = JSON.parse(String((r['result'] as { value?: unknown } | undefined)?.value)) as Record<string, number>;
    const mib = (v: number | undefined): number => Math.round(((v ?? NaN) / 2 ** 20) * 10) / 10;
    return { rssMiB: mib(u['rss']), heapTotalMiB: mib(u['heapTotal']), heapUsedMiB: mib(u['heapUsed']), externalMiB: mib(u['external']), arrayBuffersMiB: mib(u['arrayBuffers']) };
  }

  close(): void {
    this.#ws.close();
  }
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

/**
 * Live allocations of a sampling heap profile, by allocating function, and by "owner": the first
 * frame on the stack (from the leaf up) that belongs to the bot (src/) or to a named package.
 */
export function summarizeHeapSampling(profile: { head: SamplingNode }, topN = 12): { totalMiB: number; byFunction: Array<{ name: string; where: string; mib: number }>; byOwner: Array<{ owner: string; mib: number }> } {
  const byFn = new Map<string, { name: string; where: string; bytes: number }>();
  const byOwner = new Map<string, number>();
  let total = 0;
  const ownerOf = (url: string): string | undefined => {
    if (url.includes('/src/')) return `src/${url.split('/src/')[1] ?? ''}`;
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    return m ? m[1] : undefined;
  };
  const walk = (node: SamplingNode, stack: string[]): void => {
    const { functionName, url, lineNumber } = node.callFrame;
    const here = [...stack, url];
    if (node.selfSize > 0) {
      total += node.selfSize;
      const where = `${url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/(src|test)\//, '$1/')}:${lineNumber + 1}`;
      const key = `${functionName}|${where}`;
      const e = byFn.get(key) ?? { name: functionName || '(anonymous)', where, bytes: 0 };
      e.bytes += node.selfSize;
      byFn.set(key, e);
      let owner = '(node internals / unknown)';
      for (let i = here.length - 1; i >= 0; i--) {
        const o = ownerOf(here[i] ?? '');
        if (o) {
          owner = o;
          break;
        }
      }
      byOwner.set(owner, (byOwner.get(owner) ?? 0) + node.selfSize);
    }
    for (const c of node.children) walk(c, here);
  };
  walk(profile.head, []);
  const mib = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;
  return {
    totalMiB: mib(total),
    byFunction: [...byFn.values()].sort((a, b) => b.bytes - a.bytes).slice(0, topN).map((e) => ({ name: e.name, where: e.where, mib: mib(e.bytes) })),
    byOwner: [...byOwner.entries()].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([owner, b]) => ({ owner, mib: mib(b) })),
  };
}
