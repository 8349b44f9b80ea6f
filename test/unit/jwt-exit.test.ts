/**
 * The process, as an operator runs it: a Keycloak that refuses the bot ends it with exit code 3
 * and one line on stderr, naming Keycloak and the settings to check, never the secrets. (The
 * homeserver never answers here: the token is asked for before the login, so it is not reached.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startKeycloakDouble } from '../../src/dev/keycloak-double.ts';
import { lines, startBotProcess, unreachableBotEnv } from './bot-process.ts';

const dir = mkdtempSync(join(tmpdir(), 'openclaw-jwt-exit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a Keycloak refusal ends start-up with exit code 3 and one line', async () => {
  const kc = await startKeycloakDouble({ realm: 'matrix', users: { openclaw: 'right password' }, clientId: 'openclaw-bot', clientSecret: 'client secret 7' });
  try {
    const bot = startBotProcess(unreachableBotEnv(dir, join(dir, 'data'), {
      AS_REGISTRATION_FILE: '', MATRIX_USER: 'openclaw', MATRIX_PASSWORD: 'wrong password 7', AUTH_METHOD: 'jwt',
      KEYCLOAK_URL: kc.url, KEYCLOAK_REALM: 'matrix', KEYCLOAK_CLIENT_ID: 'openclaw-bot', KEYCLOAK_CLIENT_SECRET: 'client secret 7',
    }));
    const { code } = await bot.exited;
    assert.equal(code, 3, bot.stderr());
    assert.deepEqual(lines(bot.stderr()), ['start-up failed: Keycloak refused the credentials of openclaw in realm matrix: 401 invalid_grant (Invalid user credentials); check bot.user / MATRIX_USER and bot.password / MATRIX_PASSWORD']);
    for (const secret of ['wrong password 7', 'client secret 7']) assert.ok(!bot.stdout().includes(secret) && !bot.stderr().includes(secret));
  } finally {
    await kc.stop();
  }
});
