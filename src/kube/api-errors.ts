/**
 * Failures of Kubernetes calls as `KubeError`s: one human sentence per kind (the words tests and
 * users know), the raw detail kept apart in `cause` for the log line.
 */
import { KubeError, type DeploymentTarget, type KubeErrorKind } from './kube.ts';

/** An HTTP answer outside 2xx from the API server; `body` is the `Status` object (or text) it sent. */
export class ApiStatusError extends Error {
  readonly code: number;
  readonly body: unknown;
  constructor(code: number, body: unknown) {
    super(`HTTP ${code}`);
    this.name = 'ApiStatusError';
    this.code = code;
    this.body = body;
  }
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

export interface ErrorContext {
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

/** Socket / TLS error codes found anywhere in an error's cause chain. */
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

/** Maps anything a Kubernetes call threw to a KubeError with a human sentence. */
export function toKubeError(e: unknown, ctx: ErrorContext): KubeError {
  if (e instanceof KubeError) return e;
  const { target } = ctx;
  const where = `deployment ${target.name} in namespace ${target.namespace}`;
  if (e instanceof ApiStatusError) {
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
    if (code === 404) return make('not-found', notFoundSentence(target));
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
    return new KubeError('unreachable', `the Kubernetes API at ${ctx.server} is unreachable (${describeCode(code, e)})`, undefined,
      { cause: new KubeErrorDetail(ONE_LINE(e instanceof Error ? e.message : String(e)), undefined, code, e) });
  }
  const text = e instanceof Error ? e.message : String(e);
  return new KubeError('other', `the Kubernetes request for ${where} failed`, undefined,
    { cause: new KubeErrorDetail(ONE_LINE(text), undefined, undefined, e) });
}

export const notFoundSentence = (target: DeploymentTarget): string => `deployment ${target.name} not found in namespace ${target.namespace}`;

/**
 * Socket codes stay as they are (ECONNREFUSED, ENOTFOUND, …); TLS codes get a word of explanation.
 * Node reports a connection the server closed before answering as ECONNRESET "socket hang up".
 */
function describeCode(code: string, e: unknown): string {
  if (code === 'ECONNRESET' && e instanceof Error && e.message === 'socket hang up') return 'connection closed by the server';
  if (/^(CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH)/.test(code)) return `TLS: ${code}`;
  return code;
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}
