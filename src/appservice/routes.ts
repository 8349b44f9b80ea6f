import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Logger } from '../log.ts';
import { BatchFailed, errorMessage } from '../failure.ts';
import { TransactionFormatError } from './transaction.ts';
import { readTransactionBody, type TransactionBody } from './transaction-body.ts';

export interface AppserviceHandlers {
  readonly hsToken: string;
  readonly allowQueryToken: boolean;
  /**
   * Resolves once the transaction's effects are durable; rejects to make Synapse retry it.
   * `digest` is a hash of the raw body, to recognise a resend.
   */
  readonly onTransaction: (txnId: string, body: unknown, digest: string) => Promise<void>;
  /** True if the bot owns this user id (Synapse's user query). */
  readonly ownsUser: (userId: string) => boolean;
  /** Synapse confirmed it can reach us (our own start-up ping comes back here). */
  readonly onPing: (transactionId: string | undefined) => void;
  /** While shutting down, transactions get 503 so Synapse keeps them for the next instance. */
  readonly isStopping: () => boolean;
  readonly logger: Logger;
}

/** Spec-shaped error replies: `{errcode, error}` with the right status. */
export function matrixError(res: Response, status: number, errcode: string, error: string): void {
  res.status(status).json({ errcode, error });
}

/** Hashing first makes the comparison constant-time whatever the lengths. */
function sameToken(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export const MAX_BODY_BYTES = 10 * 1024 * 1024;
/**
 * Deepest JSON nesting accepted. Matrix events are shallow (a handful of levels); thousands of
 * levels only serve to exhaust the stack of whatever walks the value later.
 */
export const MAX_JSON_DEPTH = 64;

/** Nesting depth of a parsed JSON value, without recursion (the value may be hostile). */
export function jsonDepth(value: unknown, limit = Number.POSITIVE_INFINITY): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return deepest;
    for (const child of Object.values(v)) if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return deepest;
}

/** The homeserver-facing API: `/_matrix/app/v1/…`, authenticated with `hs_token`. */
export function appserviceRouter(h: AppserviceHandlers): Router {
  const router = express.Router();

  router.use((req: Request, res: Response, next: NextFunction) => {
    const header = req.get('authorization');
    let token: string | undefined;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match) return matrixError(res, 401, 'M_MISSING_TOKEN', 'Authorization header must be "Bearer <hs_token>"');
      token = match[1];
    } else if (h.allowQueryToken && typeof req.query['access_token'] === 'string') {
      token = req.query['access_token'];
    }
    if (token === undefined) return matrixError(res, 401, 'M_MISSING_TOKEN', 'Missing hs_token');
    if (!sameToken(token, h.hsToken)) {
      h.logger.warn({ path: req.path, remote: req.socket.remoteAddress }, 'appservice request with a wrong hs_token');
      return matrixError(res, 403, 'M_FORBIDDEN', 'Bad hs_token');
    }
    next();
  });

  // Raw bytes, parsed here, so that non-JSON gets the spec's M_NOT_JSON rather than a generic 400.
  const pingBody = express.raw({ type: () => true, limit: MAX_BODY_BYTES });
  const json = (req: Request): unknown => {
    const raw = req.body as unknown;
    if (!Buffer.isBuffer(raw) || raw.length === 0) return {};
    return JSON.parse(raw.toString('utf8'));
  };

  router.put('/transactions/:txnId', async (req: Request, res: Response, next: NextFunction) => {
    const txnId = String(req.params['txnId']);
    if (h.isStopping()) return matrixError(res, 503, 'M_UNAVAILABLE', 'Shutting down; retry later');
    // Read here rather than by a body parser: the long message texts of a big transaction are
    // dropped while the bytes stream in (see transaction-body.ts), and nothing holds the raw body.
    let body: TransactionBody;
    try {
      body = await readTransactionBody(req, MAX_BODY_BYTES);
    } catch (error) {
      return next(error); // 413 M_TOO_LARGE, or 400, from the HTTP server's error handler
    }
    const { digest } = body;
    let parsed: unknown;
    try {
      parsed = body.text.length === 0 ? {} : JSON.parse(body.text);
    } catch {
      h.logger.warn({ txn_id: txnId }, 'refused a transaction whose body is not JSON');
      return matrixError(res, 400, 'M_NOT_JSON', 'Transaction body is not valid JSON');
    }
    if (jsonDepth(parsed, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
      h.logger.warn({ txn_id: txnId, max_depth: MAX_JSON_DEPTH }, 'refused a transaction nested deeper than any Matrix event');
      return matrixError(res, 400, 'M_BAD_JSON', `Transaction body is nested deeper than ${MAX_JSON_DEPTH} levels`);
    }
    try {
      await h.onTransaction(txnId, parsed, digest);
      res.status(200).json({});
    } catch (error) {
      if (error instanceof TransactionFormatError) {
        h.logger.warn({ txn_id: txnId, err: error.message }, 'refused a malformed transaction');
        return matrixError(res, 400, 'M_BAD_JSON', error.message);
      }
      // A failed batch is logged by the pipeline with its context; anything else is logged here.
      if (!(error instanceof BatchFailed)) h.logger.error({ txn_id: txnId, err: errorMessage(error) }, 'transaction failed; Synapse will retry it');
      matrixError(res, 500, 'M_UNKNOWN', 'Transaction failed; please retry');
    }
  });

  router.get('/users/:userId', (req: Request, res: Response) => {
    if (h.ownsUser(String(req.params['userId']))) return void res.status(200).json({});
    matrixError(res, 404, 'M_NOT_FOUND', 'No such user in this appservice');
  });

  router.get('/rooms/:alias', (_req: Request, res: Response) => {
    matrixError(res, 404, 'M_NOT_FOUND', 'This appservice provides no room aliases');
  });

  router.post('/ping', pingBody, (req: Request, res: Response) => {
    let parsed: unknown;
    try {
      parsed = json(req);
    } catch {
      return matrixError(res, 400, 'M_NOT_JSON', 'Ping body is not valid JSON');
    }
    const id = (parsed as { transaction_id?: unknown } | null)?.transaction_id;
    h.onPing(typeof id === 'string' ? id : undefined);
    res.status(200).json({});
  });

  router.use((_req: Request, res: Response) => matrixError(res, 404, 'M_UNRECOGNIZED', 'Unrecognized request'));
  return router;
}
