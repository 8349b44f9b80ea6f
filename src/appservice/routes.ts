import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Logger } from '../log.ts';
import { TransactionFormatError } from './transaction.ts';

export interface AppserviceHandlers {
  readonly hsToken: string;
  readonly allowQueryToken: boolean;
  /** Resolves once the transaction's effects are durable; rejects to make Synapse retry it. */
  readonly onTransaction: (txnId: string, body: unknown) => Promise<void>;
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
  const body = express.raw({ type: () => true, limit: MAX_BODY_BYTES });
  const json = (req: Request): unknown => {
    const raw = req.body as unknown;
    if (!Buffer.isBuffer(raw) || raw.length === 0) return {};
    return JSON.parse(raw.toString('utf8'));
  };

  router.put('/transactions/:txnId', body, async (req: Request, res: Response) => {
    const txnId = String(req.params['txnId']);
    if (h.isStopping()) return matrixError(res, 503, 'M_UNAVAILABLE', 'Shutting down; retry later');
    let parsed: unknown;
    try {
      parsed = json(req);
    } catch {
      return matrixError(res, 400, 'M_NOT_JSON', 'Transaction body is not valid JSON');
    }
    try {
      await h.onTransaction(txnId, parsed);
      res.status(200).json({});
    } catch (error) {
      if (error instanceof TransactionFormatError) return matrixError(res, 400, 'M_BAD_JSON', error.message);
      // Logged by the pipeline with the batch's context; Synapse will retry the same transaction.
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

  router.post('/ping', body, (req: Request, res: Response) => {
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
