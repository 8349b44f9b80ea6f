/**
 * The `Kube` interface implemented with `@kubernetes/client-node` 2.x.
 *
 * - Config: in-cluster (service account) when `KUBERNETES_SERVICE_HOST` is set and no kubeconfig path
 *   is given; else the given kubeconfig file; else client-node's default (`KUBECONFIG`, `~/.kube/config`).
 * - A token kept in a file (the in-cluster token, a kubeconfig's `tokenFile`) is re-read as soon as the
 *   file changes, and sent by a call-time middleware in place of client-node's copy (see `TokenFile`).
 * - Scaling: one GET and exactly one PATCH of the `scale` subresource, as a JSON merge patch
 *   `{spec:{replicas}}`. client-node picks `application/json-patch+json` for every patch unless a call-time
 *   middleware overrides the Content-Type (`setHeaderOptions`).
 * - Every request gets its own deadline (`requestTimeoutMs`) through an AbortSignal that a call-time
 *   middleware puts on the request (client-node 2.x uses undici's fetch, which honours it while connecting,
 *   waiting for headers and reading the body).
 * - Failures become `KubeError` with a one-sentence `human` text; `cause` is a `KubeErrorDetail` carrying the
 *   raw Status message / low-level error for the log line, with the original error as its own `cause`.
 */
import {
  ApiException,
  AppsV1Api,
  KubeConfig,
  Observable,
  PatchStrategy,
  setHeaderOptions,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Logger } from '../log.ts';
import { KubeError, summarise, type DeploymentStatus, type DeploymentTarget, type Kube, type KubeErrorKind, type ScaleResult } from './kube.ts';
import { kubeconfigTokenFile, TokenFile } from './token-file.ts';

export interface ClientNodeKubeOptions {
  /** A kubeconfig file; when absent: in-cluster config inside a pod, else client-node's default lookup. */
  readonly kubeconfigPath?: string;
  /** Deadline for each HTTP request to the API server. */
  readonly requestTimeoutMs: number;
  readonly logger?: Logger;
  /** Environment to decide in-cluster vs default (tests); defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Where the in-cluster files (`var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}`) are read
   * from instead of `/`: tests lay out a pod's directory elsewhere. Unset in production.
   */
  readonly serviceAccountRoot?: string;
}

/** The raw detail behind a KubeError (Status message, reason, socket error code), for logs only. */
export class KubeErrorDetail extends Error {
  readonly reason: string | undefined;
  readonly code: string | number | undefined;
  constructor(message: string, reason: string | undefined, code: string | number | undefined, original: unknown) {
    super(message, { cause: original });
    this.name = 'KubeErrorDetail';
    this.reason = reason;
    this.code = code;
  }
}

/** Loads the kubeconfig the way the bot does (see module comment). */
export function loadKubeConfig(kubeconfigPath: string | undefined, env: NodeJS.ProcessEnv = process.env, serviceAccountRoot = ''): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else if (env['KUBERNETES_SERVICE_HOST']) kc.loadFromCluster(serviceAccountRoot.replace(/\/+$/, ''));
  else kc.loadFromDefault();
  return kc;
}

/** The file the current user's token lives in, if it lives in one. */
function tokenFileOf(kc: KubeConfig, kubeconfigPath: string | undefined): TokenFile | undefined {
  const user = kc.getCurrentUser();
  const inCluster = user?.authProvider?.name === 'tokenFile' ? user.authProvider.config?.['tokenFile'] : undefined;
  if (typeof inCluster === 'string') return new TokenFile(inCluster);
  if (!kubeconfigPath) return undefined;
  const file = kubeconfigTokenFile(readFileSync(kubeconfigPath, 'utf8'));
  return file === undefined ? undefined : new TokenFile(isAbsolute(file) ? file : resolve(dirname(kubeconfigPath), file));
}

const DISPATCHER_RENEW_MS = 10 * 60 * 1000;
type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

export function createKube(options: ClientNodeKubeOptions): Kube {
  const kc = loadKubeConfig(options.kubeconfigPath, options.env, options.serviceAccountRoot);
  const tokenFile = tokenFileOf(kc, options.kubeconfigPath);
  const server = kc.getCurrentCluster()?.server ?? 'the configured server';
  const api = kc.makeApiClient(AppsV1Api);
  const log = options.logger;
  const timeoutMs = options.requestTimeoutMs;
  // client-node builds a new connection pool for every request (a TLS handshake each time, several ms).
  // The first one is kept and reused, and renewed now and then to follow rotated client certificates.
  let shared: { dispatcher: Dispatcher; since: number } | undefined;
  const keepAlive = (ctx: RequestContext): void => {
    const fresh = ctx.getDispatcher();
    if (!fresh) return;
    if (!shared || Date.now() - shared.since > DISPATCHER_RENEW_MS) {
      const old = shared?.dispatcher;
      shared = { dispatcher: fresh, since: Date.now() };
      void old?.close().catch(() => undefined);
    } else {
      ctx.setDispatcher(shared.dispatcher);
      void fresh.close().catch(() => undefined);
    }
  };

  /** Runs one API call with its own deadline and maps any failure to a KubeError. */
  async function call<T>(what: string, target: DeploymentTarget, verb: string, resource: string,
    send: (opts: ConfigurationOptions<ObservableMiddleware>) => Promise<T>, extra?: ConfigurationOptions<ObservableMiddleware>): Promise<T> {
    const controller = new AbortController();
    const deadline = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason as Error), { once: true });
    });
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const signalMiddleware: ObservableMiddleware = {
      pre: (ctx: RequestContext) => {
        keepAlive(ctx);
        ctx.setSignal(controller.signal);
        if (tokenFile) ctx.setHeaderParam('Authorization', `Bearer ${tokenFile.read()}`);
        return new Observable(Promise.resolve(ctx));
      },
      post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
    };
    const opts: ConfigurationOptions<ObservableMiddleware> = {
      ...extra,
      middleware: [...(extra?.middleware ?? []), signalMiddleware],
      middlewareMergeStrategy: 'append',
    };
    const started = Date.now();
    const request = send(opts);
    request.catch(() => undefined); // when the deadline wins, the aborted request rejects later
    try {
      const result = await Promise.race([request, deadline]);
      log?.debug({ op: what, namespace: target.namespace, name: target.name, ms: Date.now() - started }, 'kubernetes call done');
      return result;
    } catch (e) {
      const err = toKubeError(e, { target, verb, resource, server, timeoutMs, timedOut: controller.signal.aborted });
      log?.debug({ op: what, namespace: target.namespace, name: target.name, kind: err.kind, status: err.status,
        detail: err.cause instanceof Error ? err.cause.message : undefined, ms: Date.now() - started }, 'kubernetes call failed');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async function readDeployment(target: DeploymentTarget, op: string): Promise<DeploymentStatus> {
    const d = await call(op, target, 'get', 'deployments',
      (o) => api.readNamespacedDeployment({ name: target.name, namespace: target.namespace }, o));
    const desired = d.spec?.replicas ?? 0;
    const ready = d.status?.readyReplicas ?? 0;
    return {
      desired, ready,
      available: d.status?.availableReplicas ?? 0,
      updated: d.status?.updatedReplicas ?? 0,
      state: summarise(desired, ready),
    };
  }

  return {
    async scale(target: DeploymentTarget, replicas: number): Promise<ScaleResult> {
      if (!Number.isInteger(replicas) || replicas < 0) {
        throw new KubeError('invalid', `invalid: ${String(replicas)} is not a valid replica count`);
      }
      const before = await call('scale-read', target, 'get', 'deployments/scale',
        (o) => api.readNamespacedDeploymentScale({ name: target.name, namespace: target.namespace }, o));
      const after = await call('scale-patch', target, 'patch', 'deployments/scale',
        (o) => api.patchNamespacedDeploymentScale({ name: target.name, namespace: target.namespace, body: { spec: { replicas } } }, o),
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      // autoscaling/v1 omits spec.replicas when it is 0.
      const result = { previous: before.spec?.replicas ?? 0, desired: after.spec?.replicas ?? 0 };
      log?.info({ namespace: target.namespace, name: target.name, ...result }, 'deployment scaled');
      return result;
    },
    status: (target) => readDeployment(target, 'status'),
    async ping(target: DeploymentTarget): Promise<void> {
      await readDeployment(target, 'ping');
    },
  };
}

interface ErrorContext {
  readonly target: DeploymentTarget;
  readonly verb: string;
  readonly resource: string;
  readonly server: string;
  readonly timeoutMs: number;
  readonly timedOut: boolean;
}

interface StatusBody { message?: string; reason?: string }

function parseStatus(body: unknown): StatusBody {
  if (typeof body === 'string') {
    try { return parseStatus(JSON.parse(body)); } catch { return { message: body.slice(0, 300) }; }
  }
  if (typeof body === 'object' && body !== null) {
    const o = body as Record<string, unknown>;
    return {
      ...(typeof o['message'] === 'string' ? { message: o['message'] } : {}),
      ...(typeof o['reason'] === 'string' ? { reason: o['reason'] } : {}),
    };
  }
  return {};
}

/** Socket / TLS error codes found anywhere in an error's cause chain (undici wraps them in "fetch failed"). */
function lowLevelCode(e: unknown, depth = 0): string | undefined {
  if (depth > 5 || typeof e !== 'object' || e === null) return undefined;
  const o = e as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof o.code === 'string' && o.code !== 'ABORT_ERR') return o.code;
  if (Array.isArray(o.errors)) {
    for (const inner of o.errors) {
      const code = lowLevelCode(inner, depth + 1);
      if (code) return code;
    }
  }
  return lowLevelCode(o.cause, depth + 1);
}

const ONE_LINE = (s: string): string => s.replace(/\s+/g, ' ').trim().slice(0, 300);

/** Maps anything thrown by a client-node call to a KubeError with a human sentence. */
export function toKubeError(e: unknown, ctx: ErrorContext): KubeError {
  if (e instanceof KubeError) return e;
  const { target } = ctx;
  const where = `deployment ${target.name} in namespace ${target.namespace}`;
  if (e instanceof ApiException) {
    const code = e.code;
    const status = parseStatus(e.body);
    const message = status.message ?? (code === 401 ? 'Unauthorized' : `HTTP ${code}`);
    const make = (kind: KubeErrorKind, human: string): KubeError =>
      new KubeError(kind, human, code, { cause: new KubeErrorDetail(message, status.reason, code, e) });
    if (code === 401) {
      return make('unauthorized', 'unauthorized: the Kubernetes API did not accept the bot\'s credentials (token missing, expired or revoked)');
    }
    if (code === 403) {
      const m = /cannot (\S+) resource "([^"]+)"(?: in API group "[^"]*")?(?: in the namespace "([^"]+)")?/.exec(message);
      const user = /User "([^"]+)"/.exec(message)?.[1];
      const who = user === undefined ? 'the bot' : user.startsWith('system:serviceaccount:') ? 'the service account' : `user ${user}`;
      const verb = m?.[1] ?? ctx.verb;
      const resource = m?.[2] ?? ctx.resource;
      const ns = m?.[3] ?? target.namespace;
      return make('forbidden', `forbidden: ${who} may not ${verb} ${resource} in namespace ${ns}`);
    }
    if (code === 404) return make('not-found', `deployment ${target.name} not found in namespace ${target.namespace}`);
    if (code === 409) return make('conflict', `conflict: ${where} was changed at the same moment; try again`);
    if (code === 422) return make('invalid', `invalid: the Kubernetes API refused the change (${ONE_LINE(message)})`);
    if (code === 429) return make('server', 'the Kubernetes API is overloaded (429 Too Many Requests); try again shortly');
    if (code >= 500) return make('server', `the Kubernetes API failed with ${code}${status.reason ? ` ${status.reason}` : ''}; try again shortly`);
    return make('other', `the Kubernetes API answered ${code}${status.reason ? ` ${status.reason}` : ''} for ${where}`);
  }
  if (ctx.timedOut) {
    return new KubeError('timeout', `the Kubernetes API at ${ctx.server} did not answer within ${formatMs(ctx.timeoutMs)}`, undefined,
      { cause: new KubeErrorDetail(`timed out after ${ctx.timeoutMs} ms`, 'Timeout', undefined, e) });
  }
  const code = lowLevelCode(e);
  if (code) {
    return new KubeError('unreachable', `the Kubernetes API at ${ctx.server} is unreachable (${describeCode(code)})`, undefined,
      { cause: new KubeErrorDetail(ONE_LINE(e instanceof Error ? `${e.message}: ${String((e as { cause?: unknown }).cause ?? '')}` : String(e)), undefined, code, e) });
  }
  const text = e instanceof Error ? e.message : String(e);
  return new KubeError('other', `the Kubernetes request for ${where} failed`, undefined,
    { cause: new KubeErrorDetail(ONE_LINE(text), undefined, undefined, e) });
}

/** Socket codes stay as they are (ECONNREFUSED, ENOTFOUND, …); TLS and undici codes get a word of explanation. */
function describeCode(code: string): string {
  if (code === 'UND_ERR_SOCKET') return 'connection closed by the server';
  if (code.startsWith('UND_ERR_CONNECT_TIMEOUT')) return 'connect timeout';
  if (/^(CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH)/.test(code)) return `TLS: ${code}`;
  return code;
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}
