import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from './log.ts';

/**
 * Time limits for clients that connect and then send slowly or not at all: each would hold a
 * connection (and a body-parser buffer) for as long as it likes. Synapse sends a whole
 * transaction at once, so a few seconds are plenty.
 */
export interface SlowClientLimits {
  /** From connecting to the end of the first request's headers. */
  readonly headersMs: number;
  /** From the end of a request's headers to the end of its body. */
  readonly bodyMs: number;
}

export const SLOW_CLIENT_LIMITS: SlowClientLimits = { headersMs: 10_000, bodyMs: 10_000 };

/**
 * Enforces the limits with one timer per connection or request, which exists only while the
 * connection waits for it: an idle bot runs no timer for this. (Node's own `headersTimeout` and
 * `requestTimeout` are set too, as a backstop, but it checks them on a timer that runs all the time,
 * every 30 s by default; checking every second would cost more idle CPU than the rest of the bot.)
 * Node's keep-alive limit still applies between requests, so Synapse's connection pool works.
 */
export function guardSlowClients(server: Server, limits: SlowClientLimits, logger: Logger): void {
  const drop = (socket: Socket, why: string): void => {
    logger.debug({ remote: socket.remoteAddress, why }, 'dropped a slow HTTP client');
    socket.destroy();
  };
  const connecting = new WeakMap<Socket, NodeJS.Timeout>();
  server.on('connection', (socket: Socket) => {
    const timer = setTimeout(() => drop(socket, `no request within ${limits.headersMs} ms of connecting`), limits.headersMs);
    connecting.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  });
  server.on('request', (req: IncomingMessage) => {
    const { socket } = req;
    clearTimeout(connecting.get(socket));
    connecting.delete(socket);
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) return;
    // Cleared when the body has arrived, whether or not a handler read it (Node reads what is left after the response).
    const timer = setTimeout(() => drop(socket, `request body not received within ${limits.bodyMs} ms`), limits.bodyMs);
    const clear = (): void => clearTimeout(timer);
    req.once('end', clear);
    req.once('close', clear); // also when the connection ends first
  });
}
