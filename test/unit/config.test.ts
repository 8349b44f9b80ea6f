import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildRegistration, registrationYaml } from '../../src/appservice/registration.ts';
import { ConfigError, describeConfig, loadConfig, type Config, type LoadOptions } from '../../src/config/config.ts';

let dir: string;
let registrationPath: string;
let registration: Record<string, unknown>;
/** A path that never exists, so a test run inside a pod does not pick up the pod's namespace. */
let noSaFile: string;
let counter = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'openclaw-config-test-'));
  noSaFile = join(dir, 'no-such-namespace-file');
  registration = buildRegistration({ id: 'openclaw-toggle', url: 'http://127.0.0.1:9000', senderLocalpart: 'openclaw', domain: 'example.org' });
  registrationPath = join(dir, 'registration.yaml');
  writeFileSync(registrationPath, registrationYaml(registration), { mode: 0o600 });
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a file in the temp dir and returns its path. */
function file(text: string, name = `file-${++counter}.yaml`): string {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

function baseEnv(): Record<string, string | undefined> {
  return {
    MATRIX_HOMESERVER: 'http://synapse:8008',
    AS_REGISTRATION_FILE: registrationPath,
    ALLOWED_USERS: '@alice:example.org',
  };
}

function load(env: Record<string, string | undefined>, extra: Partial<LoadOptions> = {}): Config {
  return loadConfig({ env, serviceAccountNamespaceFile: noSaFile, ...extra });
}

/** Asserts loading fails with a ConfigError for `key` whose message names the key and every `mentions`. */
function rejects(env: Record<string, string | undefined>, key: string, mentions: readonly string[] = [], extra: Partial<LoadOptions> = {}): ConfigError {
  let caught: unknown;
  try {
    load(env, extra);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${key}, got ${String(caught)}`);
  assert.equal(caught.key, key, caught.message);
  assert.ok(caught.message.includes(key), `message should name ${key}: ${caught.message}`);
  for (const text of mentions) assert.ok(caught.message.includes(text), `message should mention ${text}: ${caught.message}`);
  return caught;
}

describe('loadConfig: valid configurations', () => {
  test('minimal appservice config from the environment, with defaults', () => {
    const config = load(baseEnv());
    assert.equal(config.mode, 'appservice');
    assert.equal(config.homeserver.url, 'http://synapse:8008');
    assert.equal(config.homeserver.domain, undefined);
    assert.equal(config.bot.localpart, 'openclaw');
    assert.equal(config.bot.password, undefined);
    assert.deepEqual(config.bot.allowedUsers, ['@alice:example.org']);
    assert.equal(config.bot.echo, true);
    assert.equal(config.bot.commandPrefix, '');
    assert.equal(config.bot.displayName, 'OpenClaw toggle');
    assert.equal(config.bot.maxCommandAgeSeconds, 900);
    assert.equal(config.bot.trust, 'tofu');
    assert.equal(config.appservice.registrationPath, registrationPath);
    assert.deepEqual(config.appservice.registration, {
      id: 'openclaw-toggle',
      url: 'http://127.0.0.1:9000',
      asToken: registration['as_token'],
      hsToken: registration['hs_token'],
      senderLocalpart: 'openclaw',
    });
    assert.equal(config.appservice.allowQueryToken, false);
    assert.deepEqual(config.http, { bind: '0.0.0.0', port: 9000 });
    assert.deepEqual(config.kubernetes, { deployment: 'openclaw', namespace: 'default', kubeconfig: undefined, timeoutSeconds: 10 });
    assert.deepEqual(config.storage, { path: resolve('./data'), passphrase: undefined });
    assert.deepEqual(config.log, { level: 'info', format: 'json' });
  });

  test('trailing slashes of the homeserver URL are removed', () => {
    assert.equal(load({ ...baseEnv(), MATRIX_HOMESERVER: 'https://matrix.example.org/' }).homeserver.url, 'https://matrix.example.org');
  });

  test('the YAML file alone is enough', () => {
    const path = file(`homeserver:\n  url: http://file:8008\nbot:\n  allowedUsers: ["@a:example.org", "@b:example.org", "@a:example.org"]\nappservice:\n  registration: ${registrationPath}\n`);
    const config = load({}, { file: path });
    assert.equal(config.homeserver.url, 'http://file:8008');
    assert.deepEqual(config.bot.allowedUsers, ['@a:example.org', '@b:example.org'], 'duplicates removed');
    assert.equal(config.appservice.registration?.hsToken, registration['hs_token']);
  });

  test('the environment overrides the file; unset or empty variables do not', () => {
    const path = file(
      [
        'homeserver: { url: "http://file:8008" }',
        'http: { port: 8000, bind: "127.0.0.1" }',
        'bot: { echo: false, allowedUsers: ["@file:example.org"] }',
        'log: { level: debug }',
        'kubernetes: { namespace: from-file }',
        `appservice: { registration: "${registrationPath}" }`,
      ].join('\n'),
    );
    const config = load({ MATRIX_HOMESERVER: 'http://env:8008', HTTP_PORT: '9100', ALLOWED_USERS: '@env:example.org, @env2:example.org', DEPLOYMENT_NAMESPACE: '' }, { file: path });
    assert.equal(config.homeserver.url, 'http://env:8008');
    assert.equal(config.http.port, 9100);
    assert.equal(config.http.bind, '127.0.0.1');
    assert.deepEqual(config.bot.allowedUsers, ['@env:example.org', '@env2:example.org']);
    assert.equal(config.bot.echo, false);
    assert.equal(config.log.level, 'debug');
    assert.equal(config.kubernetes.namespace, 'from-file', 'an empty variable does not override the file');
  });

  test('ALLOWED_USERS accepts commas and whitespace as separators', () => {
    const config = load({ ...baseEnv(), ALLOWED_USERS: ' @a:example.org,@b:example.org  @c:example.org:8448 ,' });
    assert.deepEqual(config.bot.allowedUsers, ['@a:example.org', '@b:example.org', '@c:example.org:8448']);
  });

  test('booleans accept the usual spellings', () => {
    for (const [text, expected] of [['false', false], ['0', false], ['No', false], ['off', false], ['TRUE', true], ['1', true], ['yes', true], ['on', true]] as const) {
      assert.equal(load({ ...baseEnv(), ECHO_MODE: text }).bot.echo, expected, text);
    }
  });

  test('Python log level names and any case are accepted', () => {
    assert.equal(load({ ...baseEnv(), LOG_LEVEL: 'WARNING' }).log.level, 'warn');
    assert.equal(load({ ...baseEnv(), LOG_LEVEL: 'CRITICAL' }).log.level, 'fatal');
    assert.equal(load({ ...baseEnv(), LOG_LEVEL: 'Debug' }).log.level, 'debug');
    assert.equal(load({ ...baseEnv(), LOG_LEVEL: 'error' }).log.level, 'error');
    // The old bot's variable and loguru's names.
    assert.equal(load({ ...baseEnv(), LOGURU_LEVEL: 'SUCCESS' }).log.level, 'info');
    assert.equal(load({ ...baseEnv(), LOGURU_LEVEL: 'DEBUG' }).log.level, 'debug');
    assert.equal(load({ ...baseEnv(), LOGURU_LEVEL: 'DEBUG', LOG_LEVEL: 'error' }).log.level, 'error', 'LOG_LEVEL wins');
  });

  test('ports at both ends of the range are accepted', () => {
    assert.equal(load({ ...baseEnv(), HTTP_PORT: '0' }).http.port, 0);
    assert.equal(load({ ...baseEnv(), HTTP_PORT: '65535' }).http.port, 65535);
  });

  test('a *_FILE secret is read with its trailing newline stripped', () => {
    const secret = file('pa ss\tword\n', 'password.txt');
    const config = load({ MATRIX_HOMESERVER: 'http://synapse:8008', MATRIX_USER: 'bot', MATRIX_PASSWORD_FILE: secret, ALLOWED_USERS: '@alice:example.org' });
    assert.equal(config.bot.password, 'pa ss\tword');
    assert.equal(config.mode, 'password');
    const crlf = file('passphrase\r\n');
    assert.equal(load({ ...baseEnv(), CRYPTO_STORE_PASSPHRASE_FILE: crlf }).storage.passphrase, 'passphrase');
  });

  test('bot.passwordFile in YAML reads the secret file', () => {
    const secret = file('from-yaml-file\n');
    const path = file(`bot:\n  user: bot\n  passwordFile: ${secret}\n`);
    const config = load({ MATRIX_HOMESERVER: 'http://synapse:8008', ALLOWED_USERS: '@alice:example.org' }, { file: path });
    assert.equal(config.bot.password, 'from-yaml-file');
    assert.equal(config.mode, 'password');
  });

  test('a full user id as bot.user sets the domain', () => {
    const config = load({ MATRIX_HOMESERVER: 'http://synapse:8008', MATRIX_USER: '@bot:example.org', MATRIX_PASSWORD: 'pw', ALLOWED_USERS: '@alice:example.org' });
    assert.equal(config.bot.localpart, 'bot');
    assert.equal(config.homeserver.domain, 'example.org');
    const withPort = load({ MATRIX_HOMESERVER: 'http://synapse:8008', MATRIX_USER: '@bot:example.org:8448', MATRIX_SERVER_NAME: 'example.org:8448', MATRIX_PASSWORD: 'pw', ALLOWED_USERS: '@alice:example.org' });
    assert.equal(withPort.homeserver.domain, 'example.org:8448');
  });

  test('bot.user may repeat the registration sender, as localpart or full id', () => {
    assert.equal(load({ ...baseEnv(), MATRIX_USER: 'openclaw' }).bot.localpart, 'openclaw');
    const full = load({ ...baseEnv(), MATRIX_USER: '@openclaw:example.org' });
    assert.equal(full.bot.localpart, 'openclaw');
    assert.equal(full.homeserver.domain, 'example.org');
  });

  test('namespace: configured, else the service-account file, else default', () => {
    const saFile = file('agents\n', 'namespace');
    assert.equal(load(baseEnv(), { serviceAccountNamespaceFile: saFile }).kubernetes.namespace, 'agents');
    assert.equal(load({ ...baseEnv(), DEPLOYMENT_NAMESPACE: 'explicit' }, { serviceAccountNamespaceFile: saFile }).kubernetes.namespace, 'explicit');
    assert.equal(load(baseEnv()).kubernetes.namespace, 'default');
  });

  test('namespace: with a kubeconfig, its current context\'s namespace comes before the service-account file', () => {
    const saFile = file('agents\n', 'namespace-2');
    const kubeconfig = file('apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]\n'
      + 'users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: from-context}}]\n');
    assert.equal(load({ ...baseEnv(), KUBECONFIG: kubeconfig }, { serviceAccountNamespaceFile: saFile }).kubernetes.namespace, 'from-context');
    assert.equal(load({ ...baseEnv(), KUBECONFIG: kubeconfig, DEPLOYMENT_NAMESPACE: 'explicit' }).kubernetes.namespace, 'explicit');
    // A kubeconfig that cannot be read leaves the namespace to the next source (the loader reports the file later).
    assert.equal(load({ ...baseEnv(), KUBECONFIG: join(dir, 'missing') }).kubernetes.namespace, 'default');
    assert.equal(load(baseEnv(), { serviceAccountNamespaceFile: file('  \n') }).kubernetes.namespace, 'default', 'an empty file counts as absent');
  });

  test('mode inference', () => {
    const passwordEnv = { MATRIX_HOMESERVER: 'http://synapse:8008', MATRIX_USER: 'bot', MATRIX_PASSWORD: 'pw', ALLOWED_USERS: '@alice:example.org' };
    const password = load(passwordEnv);
    assert.equal(password.mode, 'password');
    assert.equal(password.appservice.registration, undefined);
    assert.equal(password.bot.password, 'pw');
    // A registration makes it appservice even with a password around.
    assert.equal(load({ ...baseEnv(), MATRIX_PASSWORD: 'pw' }).mode, 'appservice');
    // An explicit mode wins.
    assert.equal(load({ ...passwordEnv, BOT_MODE: 'password', AS_REGISTRATION_FILE: registrationPath }).mode, 'password');
  });

  test('the result is deeply frozen', () => {
    const config = load(baseEnv());
    assert.ok(Object.isFrozen(config));
    assert.throws(() => {
      (config as { mode: string }).mode = 'password';
    }, TypeError);
    assert.throws(() => {
      (config.http as { port: number }).port = 1;
    }, TypeError);
    assert.throws(() => {
      (config.bot.allowedUsers as string[]).push('@mallory:example.org');
    }, TypeError);
    assert.throws(() => {
      (config.appservice.registration as { hsToken: string }).hsToken = 'x';
    }, TypeError);
    assert.equal(config.mode, 'appservice');
    assert.deepEqual(config.bot.allowedUsers, ['@alice:example.org']);
  });

  test('describeConfig never contains secrets', () => {
    const passwordSecret = 'hunter2-very-secret-password';
    const passphraseSecret = 'store-passphrase-very-secret';
    const config = load({ ...baseEnv(), MATRIX_PASSWORD: passwordSecret, CRYPTO_STORE_PASSPHRASE: passphraseSecret });
    assert.equal(config.bot.password, passwordSecret);
    const text = JSON.stringify(describeConfig(config));
    for (const secret of [passwordSecret, passphraseSecret, registration['as_token'] as string, registration['hs_token'] as string]) {
      assert.ok(!text.includes(secret), `describeConfig leaks ${secret}: ${text}`);
    }
    const described = describeConfig(config);
    assert.equal(described['passwordGiven'], true);
    assert.equal(described['storePassphraseGiven'], true);
    assert.equal(described['appserviceId'], 'openclaw-toggle');
    assert.equal(describeConfig(load(baseEnv()))['passwordGiven'], false);
  });
});

describe('loadConfig: every error names its setting', () => {
  test('missing MATRIX_HOMESERVER', () => {
    const env = baseEnv();
    delete env['MATRIX_HOMESERVER'];
    rejects(env, 'homeserver.url', ['MATRIX_HOMESERVER']);
  });

  test('bad URL and non-http URL', () => {
    rejects({ ...baseEnv(), MATRIX_HOMESERVER: 'not a url' }, 'homeserver.url', ['MATRIX_HOMESERVER', 'not a url']);
    rejects({ ...baseEnv(), MATRIX_HOMESERVER: 'synapse:8008' }, 'homeserver.url', ['MATRIX_HOMESERVER']);
    rejects({ ...baseEnv(), MATRIX_HOMESERVER: 'ftp://synapse.example.org' }, 'homeserver.url', ['MATRIX_HOMESERVER', 'ftp://']);
  });

  test('a bad URL from the file names the file', () => {
    const path = file('homeserver:\n  url: ftp://x\n');
    rejects({ ...baseEnv(), MATRIX_HOMESERVER: undefined }, 'homeserver.url', [path], { file: path });
  });

  test('missing registration in appservice mode', () => {
    const env = baseEnv();
    delete env['AS_REGISTRATION_FILE'];
    rejects(env, 'appservice.registration', ['AS_REGISTRATION_FILE']);
    rejects({ ...env, BOT_MODE: 'appservice', MATRIX_PASSWORD: 'pw' }, 'appservice.registration', ['AS_REGISTRATION_FILE']);
  });

  test('unreadable registration', () => {
    const missing = join(dir, 'missing-registration.yaml');
    rejects({ ...baseEnv(), AS_REGISTRATION_FILE: missing }, 'appservice.registration', [missing, 'ENOENT']);
    rejects({ ...baseEnv(), AS_REGISTRATION_FILE: dir }, 'appservice.registration', [dir]);
  });

  test('registration missing hs_token, or not YAML, or not a mapping', () => {
    const { hs_token: _dropped, ...rest } = registration;
    rejects({ ...baseEnv(), AS_REGISTRATION_FILE: file(registrationYaml(rest)) }, 'appservice.registration', ['hs_token']);
    rejects({ ...baseEnv(), AS_REGISTRATION_FILE: file('id: [unclosed\n') }, 'appservice.registration', ['YAML']);
    rejects({ ...baseEnv(), AS_REGISTRATION_FILE: file('- just\n- a list\n') }, 'appservice.registration', ['mapping']);
  });

  test('registration with as_token == hs_token', () => {
    const same = { ...registration, hs_token: registration['as_token'] };
    rejects({ ...baseEnv(), AS_REGISTRATION_FILE: file(registrationYaml(same)) }, 'appservice.registration', ['as_token', 'hs_token']);
  });

  test('bad ALLOWED_USERS entry', () => {
    rejects({ ...baseEnv(), ALLOWED_USERS: '@alice:example.org,bob' }, 'bot.allowedUsers', ['"bob"', 'ALLOWED_USERS']);
    rejects({ ...baseEnv(), ALLOWED_USERS: 'alice:example.org' }, 'bot.allowedUsers', ['ALLOWED_USERS']);
    rejects({ ...baseEnv(), ALLOWED_USERS: '@alice' }, 'bot.allowedUsers', ['ALLOWED_USERS']);
  });

  test('empty ALLOWED_USERS', () => {
    rejects({ ...baseEnv(), ALLOWED_USERS: '' }, 'bot.allowedUsers', ['ALLOWED_USERS']);
    rejects({ ...baseEnv(), ALLOWED_USERS: ' , ,' }, 'bot.allowedUsers', ['ALLOWED_USERS']);
    rejects({ ...baseEnv(), ALLOWED_USERS: undefined }, 'bot.allowedUsers', ['ALLOWED_USERS']);
  });

  test('bad boolean ECHO_MODE', () => {
    rejects({ ...baseEnv(), ECHO_MODE: 'maybe' }, 'bot.echo', ['ECHO_MODE', 'maybe']);
  });

  test('non-integer and out-of-range HTTP_PORT', () => {
    rejects({ ...baseEnv(), HTTP_PORT: 'eighty' }, 'http.port', ['HTTP_PORT', 'eighty']);
    rejects({ ...baseEnv(), HTTP_PORT: '80.5' }, 'http.port', ['HTTP_PORT']);
    rejects({ ...baseEnv(), HTTP_PORT: '65536' }, 'http.port', ['HTTP_PORT', '65535']);
    rejects({ ...baseEnv(), HTTP_PORT: '-1' }, 'http.port', ['HTTP_PORT']);
    const path = file('http:\n  port: 9000.5\n');
    rejects(baseEnv(), 'http.port', [path], { file: path });
  });

  test('bad enum LOG_LEVEL and BOT_MODE', () => {
    rejects({ ...baseEnv(), LOG_LEVEL: 'verbose' }, 'log.level', ['LOG_LEVEL', 'verbose']);
    rejects({ ...baseEnv(), BOT_MODE: 'sync' }, 'mode', ['BOT_MODE']);
    rejects({ ...baseEnv(), TRUST_POLICY: 'everyone' }, 'bot.trust', ['TRUST_POLICY']);
  });

  test('an unknown YAML key (a typo) is refused', () => {
    const typo = file('bot:\n  alowedUsers: ["@alice:example.org"]\n');
    rejects(baseEnv(), 'bot.alowedUsers', [typo], { file: typo });
    const topLevel = file('homeserverr:\n  url: http://x\n');
    rejects(baseEnv(), 'homeserverr', [topLevel], { file: topLevel });
    const emptySection = file('typo: {}\n');
    rejects(baseEnv(), 'typo', [emptySection], { file: emptySection });
    const scalar = file('debug: true\n');
    rejects(baseEnv(), 'debug', [scalar], { file: scalar });
  });

  test('a YAML file that is not a mapping is refused', () => {
    const list = file('- a\n- b\n');
    rejects(baseEnv(), 'config', [list], { file: list });
    const text = file('just a string\n');
    rejects(baseEnv(), 'config', [text], { file: text });
    const broken = file('bot: [unclosed\n');
    rejects(baseEnv(), 'config', [broken], { file: broken });
  });

  test('an empty YAML file is fine', () => {
    assert.equal(load(baseEnv(), { file: file('') }).mode, 'appservice');
  });

  test('a missing config file is refused', () => {
    const missing = join(dir, 'nope.yaml');
    rejects(baseEnv(), 'config', [missing], { file: missing });
  });

  test('both MATRIX_PASSWORD and MATRIX_PASSWORD_FILE set', () => {
    rejects({ ...baseEnv(), MATRIX_PASSWORD: 'pw', MATRIX_PASSWORD_FILE: file('pw\n') }, 'bot.password', ['MATRIX_PASSWORD', 'MATRIX_PASSWORD_FILE']);
  });

  test('both bot.password and bot.passwordFile in YAML', () => {
    const path = file(`bot:\n  password: pw\n  passwordFile: ${file('pw\n')}\n`);
    rejects(baseEnv(), 'bot.password', ['bot.passwordFile'], { file: path });
  });

  test('an unreadable secret file', () => {
    const missing = join(dir, 'no-password-file');
    rejects({ ...baseEnv(), MATRIX_PASSWORD_FILE: missing }, 'bot.password', [missing]);
  });

  test('the sample marker CHANGE-ME is refused', () => {
    rejects({ ...baseEnv(), MATRIX_HOMESERVER: 'https://CHANGE-ME.example.org' }, 'homeserver.url', ['CHANGE-ME', 'MATRIX_HOMESERVER']);
    rejects({ ...baseEnv(), ALLOWED_USERS: '@alice:example.org,@you:CHANGE-ME.example.org' }, 'bot.allowedUsers', ['CHANGE-ME']);
    const path = file('kubernetes:\n  deployment: CHANGE-ME\n');
    rejects(baseEnv(), 'kubernetes.deployment', ['CHANGE-ME', path], { file: path });
  });

  test('bot.user not matching the registration sender', () => {
    rejects({ ...baseEnv(), MATRIX_USER: 'someoneelse' }, 'bot.user', ['someoneelse', 'openclaw']);
    rejects({ ...baseEnv(), MATRIX_USER: '@someoneelse:example.org' }, 'bot.user', ['someoneelse']);
  });

  test('invalid bot.user', () => {
    rejects({ ...baseEnv(), MATRIX_USER: 'Open Claw' }, 'bot.user', ['Open Claw']);
    rejects({ ...baseEnv(), MATRIX_USER: '@openclaw' }, 'bot.user', ['MATRIX_USER']);
  });

  test('domain of bot.user differing from homeserver.domain', () => {
    rejects({ ...baseEnv(), MATRIX_USER: '@openclaw:example.org', MATRIX_SERVER_NAME: 'other.org' }, 'homeserver.domain', ['other.org', 'example.org']);
  });

  test('invalid namespace and deployment names', () => {
    rejects({ ...baseEnv(), DEPLOYMENT_NAMESPACE: 'Bad_NS' }, 'kubernetes.namespace', ['Bad_NS', 'DEPLOYMENT_NAMESPACE']);
    rejects({ ...baseEnv(), DEPLOYMENT_NAMESPACE: 'a.b' }, 'kubernetes.namespace', ['DEPLOYMENT_NAMESPACE']);
    rejects({ ...baseEnv(), DEPLOYMENT_NAMESPACE: 'x'.repeat(64) }, 'kubernetes.namespace', ['DEPLOYMENT_NAMESPACE']);
    rejects({ ...baseEnv(), DEPLOYMENT_NAME: 'Web!' }, 'kubernetes.deployment', ['Web!', 'DEPLOYMENT_NAME']);
    rejects({ ...baseEnv(), DEPLOYMENT_NAME: '-web' }, 'kubernetes.deployment', ['DEPLOYMENT_NAME']);
    rejects(baseEnv(), 'kubernetes.namespace', ['Not_Valid'], { serviceAccountNamespaceFile: file('Not_Valid\n') });
  });

  test('password mode without a password names bot.password', () => {
    rejects({ MATRIX_HOMESERVER: 'http://synapse:8008', BOT_MODE: 'password', MATRIX_USER: 'bot', ALLOWED_USERS: '@alice:example.org' }, 'bot.password', ['MATRIX_PASSWORD']);
  });

  test('password mode without a user names bot.user', () => {
    rejects({ MATRIX_HOMESERVER: 'http://synapse:8008', MATRIX_PASSWORD: 'pw', ALLOWED_USERS: '@alice:example.org' }, 'bot.user', ['MATRIX_USER']);
  });
});

describe('loadConfig: secrets and user ids', () => {
  test('a secret holding the sample marker is refused without printing it', () => {
    const error = rejects({ ...baseEnv(), MATRIX_PASSWORD: 'xxCHANGE-MEsecret' }, 'bot.password');
    assert.ok(!error.message.includes('xxCHANGE-MEsecret'), error.message);
  });

  test('a secret is taken as given, spaces included', () => {
    assert.equal(load({ ...baseEnv(), MATRIX_PASSWORD: '  pw with spaces  ' }).bot.password, '  pw with spaces  ');
  });

  test('historical user ids with upper-case letters are accepted as allowed users', () => {
    assert.deepEqual(load({ ...baseEnv(), ALLOWED_USERS: '@Alice:example.org' }).bot.allowedUsers, ['@Alice:example.org']);
    rejects({ ...baseEnv(), ALLOWED_USERS: '@al ice:example.org' }, 'bot.allowedUsers');
  });

  test('a user id with a space is refused quoting the whole value, not the part before the space', () => {
    const error = rejects({ ...baseEnv(), ALLOWED_USERS: '@al ice:localhost' }, 'bot.allowedUsers', ['"@al ice:localhost"', 'ALLOWED_USERS', 'spaces']);
    assert.ok(!error.message.includes('"@al"'), error.message);
    rejects({ ...baseEnv(), ALLOWED_USERS: '@bob:localhost, @al ice:localhost' }, 'bot.allowedUsers', ['"@al ice:localhost"']);
    const path = file('bot:\n  allowedUsers: ["@bob:localhost", "@al ice:localhost"]\n');
    rejects({ ...baseEnv(), ALLOWED_USERS: undefined }, 'bot.allowedUsers', ['"@al ice:localhost"', path], { file: path });
  });

  test('markup, quotes and other characters outside the grammar are refused, naming the character', () => {
    for (const [id, character] of [['@<script>:localhost', '"<"'], ['@a"b:localhost', '"\\""'], ["@a'b:localhost", `"'"`], ['@a&b:localhost', '"&"'], ['@a>b:localhost', '">"'], ['@a!b:localhost', '"!"'], ['@é:localhost', '"é"']] as const) {
      rejects({ ...baseEnv(), ALLOWED_USERS: id }, 'bot.allowedUsers', [JSON.stringify(id), character]);
    }
    rejects({ ...baseEnv(), ALLOWED_USERS: '@alice:exa_mple.org' }, 'bot.allowedUsers', ['"exa_mple.org" is not a server name']);
    rejects({ ...baseEnv(), ALLOWED_USERS: 'alice:example.org' }, 'bot.allowedUsers', ['starts with "@"']);
    rejects({ ...baseEnv(), ALLOWED_USERS: '@alice' }, 'bot.allowedUsers', ['":server" part is missing']);
  });

  test('the grammar that is accepted: a-z, 0-9, ._=-/+ and upper-case letters; ports and IP literals as servers', () => {
    const ids = ['@a.b_c=d-e/f+g:example.org', '@Alice:example.org', '@bob:example.org:8448', '@carol:127.0.0.1', '@dave:[::1]:8008'];
    assert.deepEqual(load({ ...baseEnv(), ALLOWED_USERS: ids.join(',') }).bot.allowedUsers, ids);
  });

  test('the error stays one line whatever the value holds', () => {
    const error = rejects({ ...baseEnv(), ALLOWED_USERS: '@a:localhost\n<img src=x>\r\u001b[31m' }, 'bot.allowedUsers');
    assert.ok(!/[\u0000-\u001f]/.test(error.message), error.message);
  });

  test('bot.user as a full id follows the same grammar, quoted whole', () => {
    const passwordEnv = { MATRIX_HOMESERVER: 'http://synapse:8008', MATRIX_PASSWORD: 'pw', ALLOWED_USERS: '@alice:example.org' };
    rejects({ ...passwordEnv, MATRIX_USER: '@bo t:example.org' }, 'bot.user', ['"@bo t:example.org"', 'MATRIX_USER']);
    rejects({ ...passwordEnv, MATRIX_USER: '@<b>:example.org' }, 'bot.user', ['"<"']);
    rejects({ ...passwordEnv, MATRIX_USER: 'b<o>t' }, 'bot.user', ['"b<o>t"']);
    rejects({ ...passwordEnv, MATRIX_USER: 'bot', MATRIX_SERVER_NAME: 'exa mple.org' }, 'homeserver.domain', ['"exa mple.org"']);
  });
});

describe('loadConfig: the example registration', () => {
  test('registration/registration.example.yaml is refused until generated for real', () => {
    rejects({ ...baseEnv(), AS_REGISTRATION_FILE: resolve('registration/registration.example.yaml') }, 'appservice.registration', ['placeholder']);
  });
});

describe('loadConfig: timed runs', () => {
  test('no default, no maximum and UTC unless set', () => {
    const config = load(baseEnv());
    assert.equal(config.bot.defaultRunMs, undefined);
    assert.equal(config.bot.maxRunMs, undefined);
    assert.equal(config.bot.timeZone, 'UTC');
  });

  test('run times as people write them, from the environment or the file; the zone by its IANA name in any case', () => {
    const config = load({ ...baseEnv(), DEFAULT_RUN_TIME: '1h30m', MAX_RUN_TIME: '8h', BOT_TIME_ZONE: 'europe/berlin' });
    assert.equal(config.bot.defaultRunMs, 90 * 60_000);
    assert.equal(config.bot.maxRunMs, 8 * 3_600_000);
    assert.equal(config.bot.timeZone, 'Europe/Berlin');
    const fromFile = load(baseEnv(), { file: file('bot:\n  defaultRunTime: 90m\n  maxRunTime: 1d\n  timeZone: Etc/UTC\n') });
    assert.deepEqual([fromFile.bot.defaultRunMs, fromFile.bot.maxRunMs, fromFile.bot.timeZone], [90 * 60_000, 86_400_000, 'UTC']);
    assert.equal(describeConfig(config)['defaultRunTime'], '1h30m');
  });

  test('a run time that is not one, a default beyond the maximum, an unknown zone: one line naming the key', () => {
    rejects({ ...baseEnv(), DEFAULT_RUN_TIME: '2 hours' }, 'bot.defaultRunTime', ['2 hours', 'DEFAULT_RUN_TIME']);
    rejects({ ...baseEnv(), MAX_RUN_TIME: '30s' }, 'bot.maxRunTime', ['30s']);
    rejects(baseEnv(), 'bot.maxRunTime', ['480'], { file: file('bot:\n  maxRunTime: 480\n') });
    rejects({ ...baseEnv(), DEFAULT_RUN_TIME: '10h', MAX_RUN_TIME: '8h' }, 'bot.defaultRunTime', ['10h', '8h']);
    rejects({ ...baseEnv(), BOT_TIME_ZONE: 'Mars/Olympus' }, 'bot.timeZone', ['Mars/Olympus', 'BOT_TIME_ZONE']);
  });
});

describe('loadConfig: targets', () => {
  const TWO = [
    'targets:',
    '  - name: openclaw',
    '    namespace: agents',
    '    deployment: openclaw',
    '  - name: comfy',
    '    namespace: media',
    '    deployment: comfyui',
    '    aliases: [images]',
    '    replicas: 2',
    '    allowedUsers: ["@alice:example.org"]',
    '    rooms: ["!team:example.org"]',
  ].join('\n');

  test('the old single-target settings, unchanged, mean one target named after its Deployment', () => {
    const config = load({ ...baseEnv(), DEPLOYMENT_NAME: 'OpenClaw-Prod'.toLowerCase(), DEPLOYMENT_NAMESPACE: 'agents' });
    assert.deepEqual(config.targets, [{ name: 'openclaw-prod', namespace: 'agents', deployment: 'openclaw-prod', aliases: [], replicas: 1, allowedUsers: undefined, rooms: undefined }]);
    assert.equal(config.kubernetes.deployment, 'openclaw-prod');
    assert.equal(describeConfig(config)['deployment'], 'agents/openclaw-prod');
  });

  test('targets: from the YAML file', () => {
    const config = load(baseEnv(), { file: file(TWO) });
    assert.deepEqual(config.targets.map((t) => [t.name, t.namespace, t.deployment, t.replicas, t.aliases, t.allowedUsers, t.rooms]), [
      ['openclaw', 'agents', 'openclaw', 1, [], undefined, undefined],
      ['comfy', 'media', 'comfyui', 2, ['images'], ['@alice:example.org'], ['!team:example.org']],
    ]);
    assert.equal(config.kubernetes.deployment, 'openclaw', 'the first target, for what reads the single one');
    assert.deepEqual(describeConfig(config)['targets'], ['openclaw=agents/openclaw', 'comfy=media/comfyui']);
    assert.ok(Object.isFrozen(config.targets[1]!.aliases));
  });

  test('with targets:, DEPLOYMENT_NAME/NAMESPACE may stay if they name one of them (the kustomize base sets them)', () => {
    const config = load({ ...baseEnv(), DEPLOYMENT_NAME: 'comfyui', DEPLOYMENT_NAMESPACE: 'media' }, { file: file(TWO) });
    assert.equal(config.targets.length, 2);
    rejects({ ...baseEnv(), DEPLOYMENT_NAME: 'other' }, 'kubernetes.deployment', ['"other"', 'DEPLOYMENT_NAME', 'none of targets'], { file: file(TWO) });
    rejects({ ...baseEnv(), DEPLOYMENT_NAME: 'comfyui', DEPLOYMENT_NAMESPACE: 'agents' }, 'kubernetes.deployment', ['agents/comfyui'], { file: file(TWO) });
    rejects({ ...baseEnv(), DEPLOYMENT_NAMESPACE: 'elsewhere' }, 'kubernetes.namespace', ['"elsewhere"', 'DEPLOYMENT_NAMESPACE'], { file: file(TWO) });
  });

  test('errors name the target\'s key', () => {
    rejects(baseEnv(), 'targets[1].namespace', ['Bad_NS'], { file: file(TWO.replace('namespace: media', 'namespace: Bad_NS')) });
    rejects(baseEnv(), 'targets[1].allowedUsers[0]', ['@bob:example.org', 'bot.allowedUsers'], { file: file(TWO.replace('["@alice:example.org"]', '["@bob:example.org"]')) });
    rejects(baseEnv(), 'targets', ['list'], { file: file('targets: comfy\n') });
    rejects(baseEnv(), 'targets[0].name', ['command word'], { file: file(TWO.replace('name: openclaw', 'name: stop')) });
    rejects(baseEnv(), 'targets[1].deployment', ['CHANGE-ME'], { file: file(TWO.replace('deployment: comfyui', 'deployment: CHANGE-ME')) });
  });
});
