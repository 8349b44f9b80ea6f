import type { Logger } from '../log.ts';
import { HomeserverHttp, type HttpAnswer } from './http.ts';

/** A homeserver answer that was not 2xx, or no answer at all (`status` 0, errcode `M_CONNECTION`). */
export class MatrixError extends Error {
  readonly errcode: string;
  readonly status: number;
  readonly method: string;
  readonly path: string;
  readonly retryAfterMs: number | undefined;
  readonly body: Record<string, unknown> | undefined;
  constructor(init: { errcode: string; status: number; method: string; path: string; message: string; retryAfterMs?: number | undefined; body?: Record<string, unknown> | undefined }, options?: ErrorOptions) {
    super(`${init.method} ${init.path}: ${init.status || 'no answer'} ${init.errcode}: ${init.message}`, options);
    this.name = 'MatrixError';
    this.errcode = init.errcode;
    this.status = init.status;
    this.method = init.method;
    this.path = init.path;
    this.retryAfterMs = init.retryAfterMs;
    this.body = init.body;
  }
}

/** Encodes each interpolated value as one path segment: p`/rooms/${id}/send/${type}/${txn}`. */
export function p(strings: TemplateStringsArray, ...values: string[]): string {
  return strings.reduce((out, part, i) => out + part + (i < values.length ? encodeURIComponent(values[i] as string) : ''), '');
}

export interface RequestOptions {
  readonly query?: Record<string, string | undefined>;
  readonly body?: unknown;
  readonly timeoutMs?: number;
  /** Extra attempts after a connection failure, 429 or 5xx. Only for requests safe to repeat. */
  readonly retries?: number;
  /** Skip the client's identity parameters (appservice user/device masquerading). */
  readonly asSelfOnly?: boolean;
  /** Cancels the request (e.g. a long poll when the bot stops). */
  readonly signal?: AbortSignal;
}

export interface MatrixClientOptions {
  readonly baseUrl: string;
  readonly accessToken: string;
  /**
   * Query parameters that say who the request is for: in appservice mode `user_id` (the bot) and,
   * once the device exists, `device_id` (MSC4190/MSC3202 masquerading). Empty in password mode.
   */
  readonly identity?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
  readonly logger: Logger;
}

const API = '/_matrix/client';

/** A thin client-server API client: JSON in, JSON out, typed errors, nothing cached. */
export class MatrixClient {
  readonly baseUrl: string;
  #accessToken: string;
  #identity: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #http = new HomeserverHttp();

  constructor(options: MatrixClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#accessToken = options.accessToken;
    this.#identity = { ...options.identity };
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#logger = options.logger;
  }

  /** Sets the device the client acts as (appservice mode, once the device exists). */
  setIdentity(identity: Readonly<Record<string, string>>): void {
    this.#identity = { ...identity };
  }

  setAccessToken(token: string): void {
    this.#accessToken = token;
  }

  /** Closes the kept-alive connections (the client is not used afterwards). */
  close(): void {
    this.#http.close();
  }

  async request<T = Record<string, unknown>>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    return (await this.requestWithStatus<T>(method, path, options)).body;
  }

  /** Like `request`, with the HTTP status (some endpoints say "created" only through it). */
  async requestWithStatus<T = Record<string, unknown>>(method: string, path: string, options: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const retries = options.retries ?? 0;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#once<T>(method, path, options);
      } catch (error) {
        const retryable = error instanceof MatrixError && (error.status === 0 || error.status === 429 || error.status >= 500);
        if (!retryable || attempt >= retries) throw error;
        const wait = Math.min(error.retryAfterMs ?? 500 * 2 ** attempt, 10_000);
        this.#logger.debug({ method, path, attempt: attempt + 1, waitMs: wait, errcode: error.errcode }, 'retrying homeserver request');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  whoami(): Promise<{ user_id: string; device_id?: string }> {
    return this.request('GET', '/v3/account/whoami', { retries: 2 });
  }

  async joinRoom(roomIdOrAlias: string): Promise<string> {
    const result = await this.request<{ room_id: string }>('POST', p`/v3/join/${roomIdOrAlias}`, { body: {}, retries: 2 });
    return result.room_id;
  }

  async leaveRoom(roomId: string, reason?: string): Promise<void> {
    await this.request('POST', p`/v3/rooms/${roomId}/leave`, { body: reason ? { reason } : {}, retries: 2 });
  }

  /** Sends a room event; the transaction id makes a retried send land once. */
  async sendEvent(roomId: string, type: string, content: Record<string, unknown>, txnId: string): Promise<string> {
    const result = await this.request<{ event_id: string }>('PUT', p`/v3/rooms/${roomId}/send/${type}/${txnId}`, { body: content, retries: 3 });
    return result.event_id;
  }

  /** A state event's content, or undefined when the room has none of that type and key. */
  async getState(roomId: string, type: string, stateKey = ''): Promise<Record<string, unknown> | undefined> {
    try {
      return await this.request('GET', p`/v3/rooms/${roomId}/state/${type}/${stateKey}`, { retries: 2 });
    } catch (error) {
      if (error instanceof MatrixError && error.errcode === 'M_NOT_FOUND') return undefined;
      throw error;
    }
  }

  async joinedMembers(roomId: string): Promise<string[]> {
    const result = await this.request<{ joined: Record<string, unknown> }>('GET', p`/v3/rooms/${roomId}/joined_members`, { retries: 2 });
    return Object.keys(result.joined);
  }

  async #once<T>(method: string, path: string, options: RequestOptions): Promise<{ status: number; body: T }> {
    const url = new URL(path.startsWith('/_matrix') ? path : API + path, this.baseUrl);
    const query = { ...(options.asSelfOnly ? {} : this.#identity), ...options.query };
    for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
    const started = performance.now();
    let response: HttpAnswer;
    try {
      response = await this.#http.send({
        method,
        url,
        headers: { authorization: `Bearer ${this.#accessToken}`, ...(options.body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        timeoutMs: options.timeoutMs ?? this.#timeoutMs,
        signal: options.signal,
      });
    } catch (error) {
      const reason = (error as Error).name === 'TimeoutError' ? 'timed out' : describeFetchError(error);
      throw new MatrixError({ errcode: 'M_CONNECTION', status: 0, method, path: url.pathname, message: `homeserver ${reason}` }, { cause: error });
    }
    const text = response.text;
    const ms = Math.round(performance.now() - started);
    this.#logger.trace({ method, path: url.pathname, status: response.status, ms }, 'homeserver request');
    let json: Record<string, unknown> | undefined;
    try {
      json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      json = undefined;
    }
    if (response.status < 200 || response.status > 299) {
      const retryAfter = json?.['retry_after_ms'];
      throw new MatrixError({
        errcode: typeof json?.['errcode'] === 'string' ? json['errcode'] : `HTTP_${response.status}`,
        status: response.status,
        method,
        path: url.pathname,
        message: typeof json?.['error'] === 'string' ? json['error'] : text.slice(0, 200),
        retryAfterMs: typeof retryAfter === 'number' ? retryAfter : undefined,
        body: json,
      });
    }
    if (json === undefined) {
      throw new MatrixError({ errcode: 'M_NOT_JSON', status: response.status, method, path: url.pathname, message: 'the homeserver answered with something that is not JSON' });
    }
    return { status: response.status, body: json as T };
  }
}

function describeFetchError(error: unknown): string {
  const e = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return `unreachable (${e.code ?? e.cause?.code ?? e.cause?.message ?? e.message})`;
}
