import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { matrixError } from './appservice/routes.ts';
import type { Health } from './health.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { http } from './node-http.ts';
import { guardSlowClients, SLOW_CLIENT_LIMITS, type SlowClientLimits } from './slow-clients.ts';

export interface HttpServerOptions {
  readonly bind: string;
  readonly port: number;
  readonly health: Health;
  readonly metrics: Metrics;
  /** The homeserver-facing routes, in appservice mode only. */
  readonly appservice?: Router;
  readonly logger: Logger;
  /** How long a client may take to send a request (tests shorten them). */
  readonly slowClients?: SlowClientLimits;
}

/** Node checks these only every 30 s; `guardSlowClients` enforces the tighter limits in time. */
const NODE_HEADERS_TIMEOUT_MS = 20_000;
const NODE_REQUEST_TIMEOUT_MS = 30_000;

export interface HttpServer {
  readonly port: number;
  readonly server: Server;
  /** Stops accepting connections, waits for `inFlight` (the request being handled), then drops every connection. */
  close(inFlight?: Promise<unknown>): Promise<void>;
}

/** One listener: `/health` (alive), `/ready` (dependencies answer), `/metrics`, and the appservice API. */
export async function startHttpServer(o: HttpServerOptions): Promise<HttpServer> {
  const app = express();
  app.disable('x-powered-by');
  app.get('/health', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/ready', async (_req, res) => {
    await o.health.check();
    const report = o.health.report();
    res.status(report.ready ? 200 : 503).json(report);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics());
  });
  if (o.appservice) app.use('/_matrix/app/v1', o.appservice);
  app.use('/_matrix', (_req, res) => matrixError(res, 404, 'M_UNRECOGNIZED', 'Unrecognized request'));
  app.use((_req, res) => void res.status(404).json({ error: 'not found' }));
  // Body-parser failures carry a status (413 too large, 400 unreadable); anything else is ours.
  app.use((error: { status?: number; type?: string }, req: Request, res: Response, _next: NextFunction) => {
    if (error.status === 413) return matrixError(res, 413, 'M_TOO_LARGE', 'Request body too large');
    if (error.status && error.status >= 400 && error.status < 500) return matrixError(res, error.status, 'M_NOT_JSON', 'Could not read the request body');
    o.logger.error({ path: req.path, err: error instanceof Error ? error.message : String(error) }, 'http handler failed');
    matrixError(res, 500, 'M_UNKNOWN', 'Internal error');
  });

  const limits = o.slowClients ?? SLOW_CLIENT_LIMITS;
  // Node's own limits: a backstop to guardSlowClients, which acts within its limits without an idle timer.
  const server = http.createServer({ headersTimeout: NODE_HEADERS_TIMEOUT_MS, requestTimeout: NODE_REQUEST_TIMEOUT_MS }, app);
  // Synapse keeps connections open between transactions; keep-alive must outlive its idle time.
  server.keepAliveTimeout = 65_000;
  guardSlowClients(server, limits, o.logger);
  server.listen(o.port, o.bind);
  await once(server, 'listening'); // rejects on 'error' (port taken)
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    server,
    close: async (inFlight) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await inFlight?.catch(() => undefined);
      // Keep-alive connections from the homeserver would otherwise hold close() open for a minute.
      await new Promise((resolve) => setImmediate(resolve));
      server.closeAllConnections();
      await closed;
    },
  };
}
