/** The JWT / Keycloak settings of password mode (bot.authMethod jwt): the old bot's names, and one line per mistake. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { buildRegistration, registrationYaml } from '../../src/appservice/registration.ts';
import { ConfigError, describeConfig, loadConfig, type Config } from '../../src/config/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'openclaw-jwt-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const oldBotEnv = {
  MATRIX_HOMESERVER: 'http://synapse:8008',
  MATRIX_USER: 'openclaw',
  MATRIX_PASSWORD: 'keycloak password',
  ALLOWED_USERS: '@alice:example.org',
  DEPLOYMENT_NAMESPACE: 'agents',
  AUTH_METHOD: 'jwt',
  KEYCLOAK_URL: 'https://sso.example.org/',
  KEYCLOAK_REALM: 'matrix',
  KEYCLOAK_CLIENT_ID: 'openclaw-bot',
};

const load = (env: Record<string, string | undefined>): Config => loadConfig({ env, serviceAccountNamespaceFile: join(dir, 'none') });

function refused(env: Record<string, string | undefined>, key: string, pattern: RegExp): void {
  assert.throws(() => load(env), (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.key, key);
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes('\n'), 'one line');
    return true;
  });
}

describe('JWT / Keycloak settings', () => {
  test("the old bot's variables give a password-mode Keycloak login with the default login type", () => {
    const config = load(oldBotEnv);
    assert.equal(config.mode, 'password');
    assert.equal(config.bot.authMethod, 'jwt');
    assert.deepEqual(config.keycloak, { url: 'https://sso.example.org', realm: 'matrix', clientId: 'openclaw-bot', clientSecret: undefined, loginType: 'com.famedly.login.token.oauth' });
  });

  test('each login type is accepted; anything else is refused naming bot.jwtLoginType', () => {
    for (const type of ['com.famedly.login.token.oauth', 'com.famedly.login.token', 'org.matrix.login.jwt']) {
      assert.equal(load({ ...oldBotEnv, JWT_LOGIN_TYPE: type }).keycloak?.loginType, type);
    }
    refused({ ...oldBotEnv, JWT_LOGIN_TYPE: 'm.login.jwt' }, 'bot.jwtLoginType', /must be one of com\.famedly\.login\.token\.oauth, com\.famedly\.login\.token, org\.matrix\.login\.jwt, got "m\.login\.jwt" \(from JWT_LOGIN_TYPE\)/);
    refused({ ...oldBotEnv, AUTH_METHOD: 'oauth' }, 'bot.authMethod', /must be one of password, jwt/);
  });

  test('the client secret may come from a file, and is never shown', () => {
    const secretFile = join(dir, 'client-secret');
    writeFileSync(secretFile, 's3cret-client\n', { mode: 0o600 });
    const config = load({ ...oldBotEnv, KEYCLOAK_CLIENT_SECRET_FILE: secretFile });
    assert.equal(config.keycloak?.clientSecret, 's3cret-client');
    const described = JSON.stringify(describeConfig(config));
    assert.ok(!described.includes('s3cret-client') && !described.includes('keycloak password'));
    assert.match(described, /"clientSecretGiven":true/);
    refused({ ...oldBotEnv, KEYCLOAK_CLIENT_SECRET: 'x', KEYCLOAK_CLIENT_SECRET_FILE: secretFile }, 'keycloak.clientSecret', /both KEYCLOAK_CLIENT_SECRET and KEYCLOAK_CLIENT_SECRET_FILE are set/);
  });

  test('missing or malformed Keycloak settings are refused, each naming its key', () => {
    refused({ ...oldBotEnv, KEYCLOAK_URL: undefined }, 'keycloak.url', /is required with bot.authMethod jwt \(set KEYCLOAK_URL/);
    refused({ ...oldBotEnv, KEYCLOAK_REALM: undefined }, 'keycloak.realm', /set KEYCLOAK_REALM/);
    refused({ ...oldBotEnv, KEYCLOAK_CLIENT_ID: undefined }, 'keycloak.clientId', /set KEYCLOAK_CLIENT_ID/);
    refused({ ...oldBotEnv, BOT_MODE: 'password', MATRIX_PASSWORD: undefined }, 'bot.password', /is required in password mode/);
    refused({ ...oldBotEnv, KEYCLOAK_URL: 'sso.example.org' }, 'keycloak.url', /must be an http\(s\) URL/);
    refused({ ...oldBotEnv, KEYCLOAK_URL: 'https://sso.example.org/realms/matrix' }, 'keycloak.url', /without \/realms\//);
    refused({ ...oldBotEnv, KEYCLOAK_REALM: 'a/b' }, 'keycloak.realm', /not a realm name/);
    const registration = join(dir, 'registration.yaml');
    writeFileSync(registration, registrationYaml(buildRegistration({ id: 'toggle', url: 'http://127.0.0.1:9000', senderLocalpart: 'openclaw', domain: 'example.org' })), { mode: 0o600 });
    refused({ ...oldBotEnv, BOT_MODE: 'appservice', AS_REGISTRATION_FILE: registration }, 'bot.authMethod', /password-mode login, but the mode is appservice/);
  });

  test('password login stays the default and ignores Keycloak settings', () => {
    const config = load({ ...oldBotEnv, AUTH_METHOD: undefined });
    assert.equal(config.bot.authMethod, 'password');
    assert.equal(config.keycloak, undefined);
  });
});
