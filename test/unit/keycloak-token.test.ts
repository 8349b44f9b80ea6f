/** Keycloak's answers to the password grant, as the bot reads them: one line each, naming what to fix, never a secret. */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { KeycloakLogin } from '../../src/config/config.ts';
import { StartupError } from '../../src/startup-error.ts';
import { KeycloakTokens, KeycloakUnreachable } from '../../src/sync/keycloak.ts';

let server: Server;
let url: string;
let answer: { status: number; body: string } = { status: 200, body: '{}' };
let lastForm: URLSearchParams | undefined;

before(async () => {
  server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      lastForm = new URLSearchParams(text);
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const SECRET = 'client-secret-x';
const PASSWORD = 'pass word';
const tokens = (extra: Partial<KeycloakLogin> = {}): KeycloakTokens =>
  new KeycloakTokens({ url, realm: 'matrix', clientId: 'bot', clientSecret: SECRET, loginType: 'org.matrix.login.jwt', ...extra }, { user: 'openclaw', password: PASSWORD });

async function refusedWith(status: number, body: unknown): Promise<Error> {
  answer = { status, body: typeof body === 'string' ? body : JSON.stringify(body) };
  const t = tokens();
  try {
    return await t.accessToken().then(() => assert.fail('expected a refusal'), (error: unknown) => error as Error);
  } finally {
    t.close();
  }
}

describe('Keycloak password grant', () => {
  it('sends the form the grant needs, the secret only when set, and returns the access token', async () => {
    answer = { status: 200, body: JSON.stringify({ access_token: 'eyJ.a.b', expires_in: 300, token_type: 'Bearer' }) };
    const t = tokens();
    assert.equal(await t.accessToken(), 'eyJ.a.b');
    assert.deepEqual(Object.fromEntries(lastForm ?? []), { grant_type: 'password', client_id: 'bot', username: 'openclaw', password: PASSWORD, client_secret: SECRET });
    const pub = tokens({ clientSecret: undefined });
    await pub.accessToken();
    assert.equal(lastForm?.has('client_secret'), false);
    t.close();
    pub.close();
  });

  it('names each refusal and what to check', async () => {
    const cases: Array<[number, unknown, RegExp]> = [
      [401, { error: 'invalid_grant', error_description: 'Invalid user credentials' }, /^Keycloak refused the credentials of openclaw in realm matrix: 401 invalid_grant \(Invalid user credentials\); check bot\.user/],
      [400, { error: 'invalid_grant', error_description: 'Account disabled' }, /^Keycloak refused the credentials of openclaw in realm matrix: 400 invalid_grant \(Account disabled\)/],
      [401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' }, /^Keycloak refused the client bot in realm matrix: 401 unauthorized_client/],
      [400, { error: 'unauthorized_client', error_description: 'Client not allowed for direct access grants' }, /^Keycloak refused the client bot in realm matrix: 400 unauthorized_client \(Client not allowed for direct access grants\); .*direct access grants$/],
      [401, { error: 'invalid_client', error_description: 'Invalid client credentials' }, /^Keycloak refused the client bot/],
      [404, { error: 'Realm does not exist' }, /^Keycloak has no realm matrix at http:\/\/127\.0\.0\.1:\d+ \(404 Realm does not exist\)/],
      [404, '<html>not found</html>', /^Keycloak has no realm matrix/],
      [403, '<html>proxy says no</html>', /^Keycloak refused the token request for openclaw: 403, not a Keycloak answer/],
      [200, { token_type: 'Bearer' }, /^Keycloak answered without an access token/],
    ];
    for (const [status, body, pattern] of cases) {
      const error = await refusedWith(status, body);
      assert.ok(error instanceof StartupError, `${status}: ${String(error)}`);
      assert.match(error.message, pattern);
      assert.ok(!error.message.includes(PASSWORD) && !error.message.includes(SECRET) && !error.message.includes('\n'));
    }
  });

  it('treats no answer, 5xx and 429 as Keycloak being unreachable, to be retried', async () => {
    for (const status of [500, 502, 503, 429]) {
      const error = await refusedWith(status, { error: 'unknown_error' });
      assert.ok(error instanceof KeycloakUnreachable, `${status}`);
      assert.equal(error.unreachable, 'Keycloak');
      assert.match(error.message, new RegExp(`^Keycloak unavailable at ${url.replace(/\./g, '\\.')}/realms/matrix/protocol/openid-connect/token: ${status}`));
    }
    const down = new KeycloakTokens({ url: 'http://127.0.0.1:9', realm: 'matrix', clientId: 'bot', clientSecret: undefined, loginType: 'org.matrix.login.jwt' }, { user: 'openclaw', password: PASSWORD });
    const error = await down.accessToken().then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof KeycloakUnreachable);
    assert.equal(error.message, 'Keycloak unreachable at http://127.0.0.1:9/realms/matrix/protocol/openid-connect/token: ECONNREFUSED');
    down.close();
  });
});
