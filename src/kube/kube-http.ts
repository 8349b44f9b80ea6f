/**
 * HTTP to the API server over `node:https` with kept-alive connections: a TLS handshake costs
 * several ms (and a few on the API server), a request on a warm connection well under one.
 * Two shapes: a JSON request with a deadline, and a line-delimited stream (a watch).
 * Failures are thrown raw (ApiStatusError for an HTTP answer, Node's socket errors with their
 * `code`, RequestTimeout); the caller turns them into KubeErrors with the context it knows.
 */
import type { Agent as HttpAgent, ClientRequest, IncomingMessage } from 'node:http';
import { http, https } from '../node-http.ts';
import { ApiStatusError } from './api-errors.ts';
import type { Credential, Credentials } from './credentials.ts';
import type { ClusterConfig } from './kubeconfig.ts';

/** No answer within the deadline (a request) or no byte for too long (a stream). */
export class RequestTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestTimeout';
  }
}

export interface JsonRequest {
  readonly method: 'GET' | 'PATCH' | 'POST';
  readonly path: string;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly timeoutMs: number;
}

/** Called for every request sent (tests count them; nothing secret in it). */
export type RequestListener = (method: string, path: string) => void;

/**
 * Idle kept-alive connections are closed after this long, before the API server's own 90 s idle
 * timeout can close one just as a request is written on it.
 */
const FREE_SOCKET_TIMEOUT_MS = 30_000;
const MAX_BODY = 8 << 20;
const USER_AGENT = 'openclaw-k8s-toggle-operator';

export class KubeHttp {
  readonly server: string;
  readonly #cluster: ClusterConfig;
  readonly #credentials: Credentials;
  readonly #onRequest: RequestListener | undefined;
  readonly #tls: boolean;
  /** One agent per client certificate (an exec plugin may hand out new ones). */
  #agent: { key: string; agent: HttpAgent } | undefined;
  readonly #agents = new Set<HttpAgent>();

  constructor(cluster: ClusterConfig, credentials: Credentials, onRequest?: RequestListener) {
    this.server = cluster.server;
    this.#cluster = cluster;
    this.#credentials = credentials;
    this.#onRequest = onRequest;
    this.#tls = cluster.server.startsWith('https:');
  }

  #agentFor(credential: Credential): HttpAgent {
    const key = `${credential.clientCert ?? ''}\0${credential.clientKey ?? ''}`;
    if (this.#agent?.key === key) return this.#agent.agent;
    const common = { keepAlive: true, keepAliveMsecs: 30_000, timeout: FREE_SOCKET_TIMEOUT_MS, scheduling: 'lifo' as const };
    const c = this.#cluster;
    const agent = this.#tls
      ? new https.Agent({
        ...common,
        ...(c.ca !== undefined ? { ca: c.ca } : {}),
        rejectUnauthorized: !c.insecureSkipTlsVerify,
        ...(c.tlsServerName !== undefined ? { servername: c.tlsServerName } : {}),
        ...(credential.clientCert !== undefined ? { cert: credential.clientCert, key: credential.clientKey } : {}),
      })
      : new http.Agent(common);
    // The previous agent's connections close on their own once idle (a watch may still use one).
    this.#agent = { key, agent };
    this.#agents.add(agent);
    return agent;
  }

  async #send(method: string, path: string, headers: Record<string, string | number>): Promise<{ req: ClientRequest; credential: Credential }> {
    const credential = await this.#credentials.current();
    const url = new URL(path, `${this.server}/`);
    const all: Record<string, string | number> = { accept: 'application/json', 'user-agent': USER_AGENT, ...headers };
    if (credential.token !== undefined) all['authorization'] = `Bearer ${credential.token}`;
    const send = this.#tls ? https.request : http.request;
    this.#onRequest?.(method, url.pathname + url.search);
    return { req: send(url, { method, agent: this.#agentFor(credential), headers: all }), credential };
  }

  /** One request; resolves the parsed JSON body of a 2xx answer. */
  async json(request: JsonRequest): Promise<unknown> {
    try {
      return await this.#once(request);
    } catch (error) {
      // A 401 after a plugin's credential was cached: ask the plugin again, once.
      if (error instanceof ApiStatusError && error.code === 401 && this.#credentials.renewable) {
        this.#credentials.invalidate();
        return this.#once(request);
      }
      // A kept-alive connection that the server (or something between) closed as the GET went
      // out: nothing was done, so the read is tried once more on a fresh connection. Writes are
      // not repeated here; their outcome is read back (confirmed-kube.ts).
      if (request.method === 'GET' && (error as { reusedSocket?: boolean }).reusedSocket) return this.#once(request);
      throw error;
    }
  }

  async #once(request: JsonRequest): Promise<unknown> {
    const payload = request.body === undefined ? undefined : JSON.stringify(request.body);
    const { req } = await this.#send(request.method, request.path,
      payload === undefined ? {} : { 'content-type': request.contentType ?? 'application/json', 'content-length': Buffer.byteLength(payload) });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => req.destroy(new RequestTimeout(`no answer within ${request.timeoutMs} ms`)), request.timeoutMs);
      req.on('error', (error) => {
        clearTimeout(timer);
        if (req.reusedSocket && (error as NodeJS.ErrnoException).code === 'ECONNRESET') Object.assign(error, { reusedSocket: true });
        reject(error);
      });
      req.once('response', (res) => {
        readBody(res).then((text) => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          let body: unknown = text;
          try { body = text === '' ? undefined : JSON.parse(text); } catch { /* left as text */ }
          if (status >= 200 && status < 300) resolve(body);
          else {
            if (status === 401) this.#credentials.invalidate();
            reject(new ApiStatusError(status, body));
          }
        }, (error: unknown) => { clearTimeout(timer); reject(error); });
      });
      req.end(payload);
    });
  }

  /**
   * A streaming GET (a watch): `onLine` gets every line of a 200 answer as it arrives. Resolves
   * when the server ends the answer; rejects on a non-2xx answer, a socket error, silence for
   * `idleTimeoutMs`, or an error thrown by `onLine`. `signal` aborts it (then it resolves).
   */
  async stream(path: string, options: { answerTimeoutMs: number; idleTimeoutMs: number; signal: AbortSignal; onOpen: () => void; onLine: (line: string) => void }): Promise<void> {
    const { req } = await this.#send('GET', path, {});
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        options.signal.removeEventListener('abort', abort);
        if (error === undefined || options.signal.aborted) resolve(); else reject(error);
      };
      const abort = (): void => { req.destroy(); finish(); };
      // Before any destroy: a request destroyed without an error listener throws its "socket hang up" at the process.
      req.on('error', finish);
      if (options.signal.aborted) return abort();
      options.signal.addEventListener('abort', abort, { once: true });
      // A watch does not keep a process alive on its own (the bot's HTTP server does).
      req.once('socket', (socket) => socket.unref());
      // The server answers a watch at once: its headers get the deadline of any request, its events the idle limit.
      let limit = options.answerTimeoutMs;
      req.setTimeout(limit, () => req.destroy(new RequestTimeout(`nothing received for ${limit} ms`)));
      req.once('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          readBody(res).then((text) => {
            let body: unknown = text;
            try { body = JSON.parse(text); } catch { /* left as text */ }
            if (status === 401) this.#credentials.invalidate();
            finish(new ApiStatusError(status, body));
          }, finish);
          return;
        }
        limit = options.idleTimeoutMs;
        req.setTimeout(limit);
        options.onOpen();
        let pending = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (settled) return;
          pending += chunk;
          let newline: number;
          try {
            while ((newline = pending.indexOf('\n')) >= 0) {
              const line = pending.slice(0, newline).trim();
              pending = pending.slice(newline + 1);
              if (line !== '') options.onLine(line);
            }
          } catch (error) {
            req.destroy();
            finish(error);
            return;
          }
          if (pending.length > MAX_BODY) { req.destroy(); finish(new Error(`a watch event longer than ${MAX_BODY} bytes`)); }
        });
        res.once('end', () => finish());
        res.on('error', finish);
      });
      req.end();
    });
  }

  /** Closes every connection (kept-alive and in use). */
  close(): void {
    for (const agent of this.#agents) agent.destroy();
    this.#agents.clear();
    this.#agent = undefined;
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) { res.destroy(new Error(`an answer longer than ${MAX_BODY} bytes`)); return; }
      chunks.push(chunk);
    });
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}
