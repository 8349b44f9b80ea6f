/**
 * A plain HTTPS client of the testbed's API server for the harness and the tests: raw requests
 * with any bearer token (to see exactly what the server answers, 403 bodies included), and
 * server-side apply of manifests, which is what `kubectl apply --server-side` sends. Not the
 * bot's client: the bot talks through its own adapter.
 */
import { Agent, request } from 'node:https';
import { parseAllDocuments } from 'yaml';

export interface ApiResponse {
  readonly status: number;
  /** The parsed JSON body (`{}` when the body is not JSON). */
  readonly body: Record<string, unknown>;
}

export interface ApiRequestOptions {
  readonly body?: unknown;
  readonly contentType?: string;
  /** Another identity than the client's own. */
  readonly token?: string;
  readonly timeoutMs?: number;
}

/** Kinds whose objects are not namespaced (the rest are, for what the tests use). */
const CLUSTER_SCOPED = new Set(['Namespace', 'Node', 'ClusterRole', 'ClusterRoleBinding', 'PersistentVolume', 'StorageClass']);

export type KubeObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown };

/** The REST path of an object: `/api/v1/...` for the core group, `/apis/<group>/<version>/...` otherwise. */
export function objectPath(o: KubeObject, namespace?: string): string {
  const prefix = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const plural = `${o.kind.toLowerCase()}s`;
  const name = encodeURIComponent(o.metadata.name);
  if (CLUSTER_SCOPED.has(o.kind)) return `${prefix}/${plural}/${name}`;
  const ns = o.metadata.namespace ?? namespace;
  if (ns === undefined) throw new Error(`${o.kind} ${o.metadata.name} needs a namespace`);
  return `${prefix}/namespaces/${encodeURIComponent(ns)}/${plural}/${name}`;
}

/** Every non-empty document of a multi-document YAML text. */
export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text).map((d) => d.toJS() as KubeObject | null).filter((o): o is KubeObject => o !== null);
}

export class ApiClient {
  readonly server: string;
  private readonly token: string;
  private readonly agent: Agent;

  constructor(server: string, caPem: string, token: string) {
    this.server = server;
    this.token = token;
    this.agent = new Agent({ ca: caPem, keepAlive: true, maxSockets: 8 });
  }

  /** One request; never throws for an HTTP status, only when there is no answer at all. */
  request(method: string, path: string, options: ApiRequestOptions = {}): Promise<ApiResponse> {
    const url = new URL(path, this.server);
    const payload = options.body === undefined ? undefined
      : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    return new Promise((resolve, reject) => {
      const req = request(url, {
        method,
        agent: this.agent,
        headers: {
          authorization: `Bearer ${options.token ?? this.token}`,
          accept: 'application/json',
          ...(payload !== undefined ? { 'content-type': options.contentType ?? 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
        timeout: options.timeoutMs ?? 15_000,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let body: Record<string, unknown> = {};
          try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>; } catch { /* not JSON */ }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${options.timeoutMs ?? 15_000} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like `request`, but a status outside 2xx throws with the server's message. */
  async ok(method: string, path: string, options: ApiRequestOptions = {}): Promise<Record<string, unknown>> {
    const res = await this.request(method, path, options);
    if (res.status < 200 || res.status > 299) {
      throw new Error(`${method} ${path}: HTTP ${res.status} ${String(res.body['message'] ?? '')}`);
    }
    return res.body;
  }

  /** Server-side apply (creates or updates), as `kubectl apply --server-side --force-conflicts`. */
  apply(o: KubeObject, namespace?: string): Promise<Record<string, unknown>> {
    const withNs = CLUSTER_SCOPED.has(o.kind) || o.metadata.namespace !== undefined || namespace === undefined
      ? o : { ...o, metadata: { ...o.metadata, namespace } };
    return this.ok('PATCH', `${objectPath(withNs)}?fieldManager=openclaw-testbed&force=true`, {
      body: withNs, contentType: 'application/apply-patch+yaml',
    });
  }

  /** Deletes an object; a missing one is fine. */
  async delete(o: KubeObject, namespace?: string, query = ''): Promise<void> {
    const res = await this.request('DELETE', `${objectPath(o, namespace)}${query}`);
    if (res.status !== 404 && (res.status < 200 || res.status > 299)) {
      throw new Error(`DELETE ${o.kind} ${o.metadata.name}: HTTP ${res.status} ${String(res.body['message'] ?? '')}`);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}
