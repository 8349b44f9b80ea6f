/**
 * The bot's Keycloak token: the Resource Owner Password Credentials grant, as the old bot did.
 * One request per Matrix login (the token is used once, at once, and never kept), over the same
 * `node:http(s)` client as the homeserver's rather than `fetch` (see matrix/http.ts: ~22 MiB).
 */
import type { KeycloakLogin } from '../config/config.ts';
import { HomeserverHttp, type HttpAnswer } from '../matrix/http.ts';
import { EXIT, StartupError } from '../startup-error.ts';

/** Keycloak did not answer, or answered with its own fault: worth another try later. */
export class KeycloakUnreachable extends Error {
  override readonly name = 'KeycloakUnreachable';
  /** Read by `untilReachable` to name the side it waits for. */
  readonly unreachable = 'Keycloak';
}

export interface KeycloakCredentials {
  readonly user: string;
  readonly password: string;
}

const TIMEOUT_MS = 15_000;

export class KeycloakTokens {
  readonly #k: KeycloakLogin;
  readonly #credentials: KeycloakCredentials;
  readonly #http = new HomeserverHttp();

  constructor(keycloak: KeycloakLogin, credentials: KeycloakCredentials) {
    this.#k = keycloak;
    this.#credentials = credentials;
  }

  get tokenUrl(): string {
    return `${this.#k.url}/realms/${encodeURIComponent(this.#k.realm)}/protocol/openid-connect/token`;
  }

  /** A fresh access token; a refusal is a StartupError naming the setting to fix, never the secrets. */
  async accessToken(): Promise<string> {
    const form = new URLSearchParams({ grant_type: 'password', client_id: this.#k.clientId, username: this.#credentials.user, password: this.#credentials.password });
    if (this.#k.clientSecret !== undefined) form.set('client_secret', this.#k.clientSecret);
    let answer: HttpAnswer;
    try {
      answer = await this.#http.send({
        method: 'POST',
        url: new URL(this.tokenUrl),
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
        timeoutMs: TIMEOUT_MS,
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new KeycloakUnreachable(`Keycloak unreachable at ${this.tokenUrl}: ${code ?? (error as Error).message}`, { cause: error });
    }
    const body = parseJson(answer.text);
    if (answer.status === 200 && typeof body?.['access_token'] === 'string') return body['access_token'];
    throw this.#refusal(answer, body);
  }

  close(): void {
    this.#http.close();
  }

  #refusal(answer: HttpAnswer, body: Record<string, unknown> | undefined): Error {
    const error = typeof body?.['error'] === 'string' ? body['error'] : undefined;
    const description = typeof body?.['error_description'] === 'string' ? body['error_description'] : undefined;
    const said = `${answer.status}${error ? ` ${error}` : ''}${description ? ` (${description})` : ''}`;
    const { realm, clientId } = this.#k;
    if (answer.status >= 500 || answer.status === 429) return new KeycloakUnreachable(`Keycloak unavailable at ${this.tokenUrl}: ${said}`);
    if (answer.status === 200) return new StartupError(`Keycloak answered without an access token (${this.tokenUrl})`, EXIT.homeserver);
    // Keycloak's own answers: a wrong user or password is 401 invalid_grant; a disabled or
    // unfinished account 400 invalid_grant; a wrong client secret 401 unauthorized_client or
    // invalid_client; a client without "Direct access grants" 400 unauthorized_client; an unknown realm 404.
    if (error === 'invalid_grant') return new StartupError(`Keycloak refused the credentials of ${this.#credentials.user} in realm ${realm}: ${said}; check bot.user / MATRIX_USER and bot.password / MATRIX_PASSWORD`, EXIT.homeserver);
    if (error === 'invalid_client' || error === 'unauthorized_client') return new StartupError(`Keycloak refused the client ${clientId} in realm ${realm}: ${said}; check keycloak.clientId / KEYCLOAK_CLIENT_ID, keycloak.clientSecret / KEYCLOAK_CLIENT_SECRET and that the client allows direct access grants`, EXIT.homeserver);
    if (answer.status === 404) return new StartupError(`Keycloak has no realm ${realm} at ${this.#k.url} (${said}); check keycloak.realm / KEYCLOAK_REALM and keycloak.url / KEYCLOAK_URL`, EXIT.homeserver);
    return new StartupError(`Keycloak refused the token request for ${this.#credentials.user}: ${body ? said : `${answer.status}, not a Keycloak answer`} (${this.tokenUrl})`, EXIT.homeserver);
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
