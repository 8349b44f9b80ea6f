/**
 * The simulator's requests and answers on the wire: a request body (at most 1 MiB), a JSON answer
 * with the real server's headers, a failure as a `Status` object, and the shapes a route returns
 * (201 Created, or a watch to serve).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpStatus } from './kube-simulator-patch.ts';
import type { SimulatorRequest } from './kube-simulator-types.ts';
import type { SimulatorWatches, WatchRequest } from './kube-simulator-watch.ts';

const MAX_BODY = 1 << 20;

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpStatus(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 1048576');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function send(res: ServerResponse, entry: SimulatorRequest, status: number, body: unknown): void {
  entry.status = status;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json', 'content-length': Buffer.byteLength(text),
    'cache-control': 'no-cache, private', 'audit-id': randomUUID(),
  });
  res.end(text);
}

export const statusBody = (e: HttpStatus): Record<string, unknown> => ({
  kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: e.message, reason: e.reason,
  ...(e.details ? { details: e.details } : {}), code: e.code,
});

/** An answer of 201 Created (the route's other answers are 200). */
export class Created {
  readonly object: Record<string, unknown>;
  constructor(object: Record<string, unknown>) { this.object = object; }
}

/** A watch to answer: what it asks for, on which resource's watches, and the objects it starts from. */
export interface ServeWatch {
  readonly watch: WatchRequest;
  readonly on: SimulatorWatches;
  readonly current: () => ReadonlyArray<{ name: string; object: Record<string, unknown> }>;
}

export const isWatch = (body: unknown): body is ServeWatch => typeof body === 'object' && body !== null && 'watch' in body && 'on' in body && !('kind' in body);

export function defaultReason(status: number): string {
  const reasons: Record<number, string> = {
    400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 422: 'Invalid',
    429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
  };
  return reasons[status] ?? 'Unknown';
}
