/**
 * Replacing the account's cross-signing keys (after a lost volume) when the homeserver asks for the
 * account's password (user-interactive auth, 401 with flows): answered with the password when the bot
 * has one (password mode), else refused as CrossSigningNeedsAuth, which the bot words as one warning
 * and starts anyway. Against a fake homeserver that answers as Synapse does.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as sdk from '@matrix-org/matrix-sdk-crypto-wasm';
import { CrossSigningNeedsAuth, OutgoingRequests } from '../../src/crypto/outgoing-requests.ts';
import { silentLogger } from '../../src/log.ts';
import { MatrixError, type MatrixClient } from '../../src/matrix/client.ts';

before(async () => {
  await sdk.initAsync();
});

/** Synapse's answer without auth (or with a wrong password): 401 with the flows and a session. */
function homeserver(password: string) {
  const calls: Array<Record<string, unknown>> = [];
  const client = {
    request: async (_method: string, path: string, options: { body?: Record<string, unknown> }) => {
      const body = options.body ?? {};
      calls.push(body);
      const auth = body['auth'] as { password?: string; session?: string } | undefined;
      if (auth?.password === password && auth.session === 'S1') return {};
      throw new MatrixError({ errcode: auth ? 'M_FORBIDDEN' : 'M_UNKNOWN', status: 401, method: 'POST', path, message: 'auth needed',
        body: { flows: [{ stages: ['m.login.password'] }], params: {}, session: 'S1' } });
    },
  } as unknown as MatrixClient;
  return { client, calls };
}

const request = (): sdk.UploadSigningKeysRequest => new sdk.UploadSigningKeysRequest(JSON.stringify({ master_key: { user_id: '@bot:example.org' } }));

test('with the password: asked again with auth, the session of the 401 carried over', async () => {
  const hs = homeserver('pw');
  const uia = (session: string | undefined) => ({ type: 'm.login.password', identifier: { type: 'm.id.user', user: '@bot:example.org' }, password: 'pw', ...(session ? { session } : {}) });
  await new OutgoingRequests(undefined as never, hs.client, silentLogger(), async () => undefined, uia).send(request());
  assert.equal(hs.calls.length, 2);
  assert.equal(hs.calls[0]!['auth'], undefined);
  assert.deepEqual(hs.calls[1]!['auth'], { type: 'm.login.password', identifier: { type: 'm.id.user', user: '@bot:example.org' }, password: 'pw', session: 'S1' });
  assert.deepEqual(hs.calls[1]!['master_key'], { user_id: '@bot:example.org' }, 'the keys themselves unchanged');
});

test('without a password to give, or with one refused: CrossSigningNeedsAuth, and no blind retries', async () => {
  const none = homeserver('pw');
  await assert.rejects(new OutgoingRequests(undefined as never, none.client, silentLogger(), async () => undefined).send(request()), CrossSigningNeedsAuth);
  assert.equal(none.calls.length, 1);
  const wrong = homeserver('pw');
  const uia = (session: string | undefined) => ({ type: 'm.login.password', password: 'not it', ...(session ? { session } : {}) });
  await assert.rejects(new OutgoingRequests(undefined as never, wrong.client, silentLogger(), async () => undefined, uia).send(request()),
    (e: unknown) => e instanceof CrossSigningNeedsAuth && !/not it/.test(e.message));
  assert.equal(wrong.calls.length, 2);
});
