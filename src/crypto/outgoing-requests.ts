import {
  KeysBackupRequest,
  KeysClaimRequest,
  KeysQueryRequest,
  KeysUploadRequest,
  RoomMessageRequest,
  SignatureUploadRequest,
  ToDeviceRequest,
  UploadSigningKeysRequest,
  type OlmMachine,
} from '@matrix-org/matrix-sdk-crypto-wasm';
import { faultPoint } from '../fault-points.ts';
import type { Logger } from '../log.ts';
import { MatrixError, p, type MatrixClient } from '../matrix/client.ts';

export type AnyRequest =
  | KeysUploadRequest
  | KeysQueryRequest
  | KeysClaimRequest
  | ToDeviceRequest
  | SignatureUploadRequest
  | RoomMessageRequest
  | KeysBackupRequest
  | UploadSigningKeysRequest;

/** The `auth` of a user-interactive auth answer for `session`; undefined: the bot cannot give one. */
export type UiaAuth = (session: string | undefined) => Record<string, unknown> | undefined;

/** The homeserver wants the account's own credentials to replace its cross-signing keys, and the bot has none to give (or they were refused). */
export class CrossSigningNeedsAuth extends Error {
  constructor(cause: MatrixError) {
    super(`the homeserver wants the account's password to replace its cross-signing keys (${cause.message})`, { cause });
    this.name = 'CrossSigningNeedsAuth';
  }
}

/** Bodies the engine hands over are JSON strings; the client wants objects. */
const json = (body: string): unknown => JSON.parse(body);

/**
 * Sends the engine's outgoing requests to the homeserver and reports the answers back. Only ever
 * driven from the crypto queue: the engine re-issues unanswered requests under new ids, so two
 * concurrent drains would send them twice.
 */
export class OutgoingRequests {
  readonly #machine: OlmMachine;
  readonly #client: MatrixClient;
  readonly #logger: Logger;
  readonly #makeDurable: () => Promise<void>;
  readonly #uiaAuth: UiaAuth | undefined;

  /**
   * `makeDurable` writes the engine's state to disk. It runs before every request that carries
   * something the engine just created: one-time and cross-signing keys, Olm-encrypted room keys
   * (each advances an Olm ratchet), signatures. Once such a request has left, a restart must not
   * come back with state from before it: it would publish other keys under the same ids, or
   * encrypt again with a ratchet step already used.
   */
  constructor(machine: OlmMachine, client: MatrixClient, logger: Logger, makeDurable: () => Promise<void>, uiaAuth?: UiaAuth) {
    this.#machine = machine;
    this.#client = client;
    this.#logger = logger;
    this.#makeDurable = makeDurable;
    this.#uiaAuth = uiaAuth;
  }

  /** Sends everything the engine has queued; repeats while answers make it queue more (bounded). */
  async drain(): Promise<void> {
    for (let round = 0; round < 5; round++) {
      const requests = (await this.#machine.outgoingRequests()) as AnyRequest[];
      if (requests.length === 0) return;
      for (const request of requests) await this.send(request);
    }
  }

  async send(request: AnyRequest): Promise<void> {
    // A key query carries nothing of ours; everything else does (see the constructor).
    if (!(request instanceof KeysQueryRequest)) await this.#makeDurable();
    const response = await this.#http(request);
    if (request instanceof ToDeviceRequest) faultPoint('after-to-device');
    // Requests without an id (bootstrap signature and signing-key uploads) are not tracked by the engine.
    if ('id' in request && request.id !== undefined && !(request instanceof UploadSigningKeysRequest)) {
      // markRequestAsSent throws synchronously on a malformed response; the await inside try covers both.
      try {
        await this.#machine.markRequestAsSent(request.id, request.type, JSON.stringify(response));
      } catch (error) {
        this.#logger.error({ request: request.constructor.name, err: String(error) }, 'the crypto engine rejected a homeserver answer');
        throw error;
      }
    }
  }

  /**
   * Replacing cross-signing keys the account already has (the bot's volume was lost) needs
   * user-interactive auth: answered with `uiaAuth` (password mode: the password), else refused with
   * a `CrossSigningNeedsAuth` the caller words.
   */
  async #uploadSigningKeys(body: Record<string, unknown>): Promise<unknown> {
    const path = '/v3/keys/device_signing/upload';
    try {
      return await this.#client.request('POST', path, { body, retries: 1 });
    } catch (error) {
      const uia = error instanceof MatrixError && error.status === 401 && Array.isArray(error.body?.['flows']);
      if (!uia) throw error;
      const session = typeof error.body?.['session'] === 'string' ? error.body['session'] : undefined;
      const auth = this.#uiaAuth?.(session);
      if (!auth) throw new CrossSigningNeedsAuth(error);
      try {
        return await this.#client.request('POST', path, { body: { ...body, auth }, retries: 1 });
      } catch (again) {
        throw again instanceof MatrixError && again.status === 401 ? new CrossSigningNeedsAuth(again) : again;
      }
    }
  }

  async #http(request: AnyRequest): Promise<unknown> {
    const c = this.#client;
    if (request instanceof KeysUploadRequest) return c.request('POST', '/v3/keys/upload', { body: json(request.body), retries: 2 });
    if (request instanceof KeysQueryRequest) return c.request('POST', '/v3/keys/query', { body: json(request.body), retries: 2 });
    if (request instanceof KeysClaimRequest) return c.request('POST', '/v3/keys/claim', { body: json(request.body), retries: 2 });
    if (request instanceof ToDeviceRequest) {
      return c.request('PUT', p`/v3/sendToDevice/${request.event_type}/${request.txn_id}`, { body: json(request.body), retries: 3 });
    }
    if (request instanceof SignatureUploadRequest) return c.request('POST', '/v3/keys/signatures/upload', { body: json(request.body), retries: 2 });
    if (request instanceof RoomMessageRequest) {
      return c.request('PUT', p`/v3/rooms/${request.room_id}/send/${request.event_type}/${request.txn_id}`, { body: json(request.body), retries: 3 });
    }
    if (request instanceof KeysBackupRequest) {
      return c.request('PUT', '/v3/room_keys/keys', { query: { version: request.version }, body: json(request.body), retries: 2 });
    }
    if (request instanceof UploadSigningKeysRequest) return this.#uploadSigningKeys(json(request.body) as Record<string, unknown>);
    throw new Error(`unknown outgoing crypto request ${(request as object).constructor.name}`);
  }
}
