/**
 * Password mode with a Keycloak token (AUTH_METHOD=jwt) against a real Synapse: its own
 * `jwt_config` (org.matrix.login.jwt) and the synapse-token-authenticator module
 * (com.famedly.login.token.oauth against the JWKS; com.famedly.login.token with HS512), with a
 * test double for Keycloak. Login, restart without a new login, a revoked token, and one error
 * line per failing side.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { loadConfig, type JwtLoginType } from '../../src/config/config.ts';
import { startKeycloakDouble, type KeycloakDouble } from '../../src/dev/keycloak-double.ts';
import { Human, type TimelineEvent } from '../../src/dev/human.ts';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import { startSynapse, type Synapse } from '../../src/dev/synapse.ts';
import { synapseJwtSettings } from '../../src/dev/synapse-jwt.ts';
import { start } from '../../src/app.ts';
import { createLogger, silentLogger } from '../../src/log.ts';
import { MatrixClient } from '../../src/matrix/client.ts';
import { jwtLogin } from '../../src/sync/jwt-login.ts';
import { PasswordSession } from '../../src/sync/password-session.ts';
import { StartupError } from '../../src/startup-error.ts';
import { StateDb } from '../../src/store/state-db.ts';

const REALM = 'matrix';
const CLIENT_ID = 'openclaw-bot';
const CLIENT_SECRET = 'keycloak-client-secret-1';
const KC_PASSWORD = 'the keycloak password';
/** jwcrypto (in the module) refuses HS512 keys shorter than 64 bytes, saying only "Verification failed". */
const HMAC = 'a shared HS512 secret of the realm, at least sixty-four bytes long: 0123456789';
const BOT = '@toggle:localhost';
/**
 * One Matrix user per bot store: a second fresh crypto store of a user who already has
 * cross-signing keys would need interactive auth to replace them (not what these tests are about).
 */
const USERS = { 'org.matrix.login.jwt': 'toggle', 'com.famedly.login.token.oauth': 'oauthbot' } as const;

/** A logger whose lines the test reads (and checks for secrets). */
function capture(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  let text = '';
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { text += chunk.toString('utf8'); done(); } });
  return { logger: createLogger({ level: 'debug' }, stream), text: () => text };
}

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('JWT login through Keycloak against a real Synapse', { timeout: 600_000 }, () => {
  let kc: KeycloakDouble;
  let stack: Stack;
  let alice: Human;
  const apps: App[] = [];
  const logs: Array<() => string> = [];

  const storeOf = (name: string): string => join(stack.dir, `bot-${name}`);
  const env = (type: JwtLoginType, store: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> => stack.botEnv({
    AS_REGISTRATION_FILE: undefined, MATRIX_USER: 'toggle', MATRIX_PASSWORD: KC_PASSWORD, AUTH_METHOD: 'jwt', JWT_LOGIN_TYPE: type,
    KEYCLOAK_URL: kc.url, KEYCLOAK_REALM: REALM, KEYCLOAK_CLIENT_ID: CLIENT_ID, KEYCLOAK_CLIENT_SECRET: CLIENT_SECRET,
    CRYPTO_STORE_PATH: storeOf(store), HTTP_PORT: '0', ...extra,
  });
  const startBot = async (e: Record<string, string | undefined>, onFatal?: (error: Error) => void): Promise<{ app: App; log: () => string }> => {
    const { logger, text } = capture();
    logs.push(text);
    const app = await start(loadConfig({ env: e }), { logger, defaultMetrics: false, ...(onFatal ? { onFatal } : {}) });
    apps.push(app);
    return { app, log: text };
  };
  const refusal = async (e: Record<string, string | undefined>): Promise<string> => {
    const { logger, text } = capture();
    logs.push(text);
    const error = await start(loadConfig({ env: e }), { logger, defaultMetrics: false }).then(() => undefined, (err: unknown) => err);
    assert.ok(error instanceof StartupError, `a StartupError, got ${String(error)}`);
    assert.ok(!error.message.includes('\n'), 'one line');
    return error.message;
  };
  const session = (store: string): { accessToken: string; deviceId: string } => {
    const state = StateDb.open(storeOf(store));
    try {
      return JSON.parse(state.get('password-session') ?? '{}') as { accessToken: string; deviceId: string };
    } finally {
      state.close();
    }
  };
  /** The bot answers a command in a room it was invited to: the login is real, not just a token. */
  const answers = async (room: string, bot: string): Promise<void> => {
    const isStatus = (e: TimelineEvent): boolean => e.room_id === room && e.sender === bot && /openclaw is/.test(String(e.content['body']));
    const before = alice.events.filter(isStatus).length;
    await alice.send(room, 'status');
    await alice.waitFor(room, isStatus, { count: before + 1, timeoutMs: 30_000 });
  };

  before(async () => {
    kc = await startKeycloakDouble({ realm: REALM, users: { toggle: KC_PASSWORD, oauthbot: KC_PASSWORD, waiter: KC_PASSWORD, uiabot: KC_PASSWORD, ghost: 'ghost password' }, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-jwt-')), synapseConfig: synapseJwtSettings(kc, { native: true, oauth: true }) });
    // The Matrix account exists (as where the old bot ran); its Matrix password is not what the bot uses.
    for (const user of ['toggle', 'oauthbot', 'waiter', 'uiabot']) await stack.synapse.registerUser(user, 'an unrelated matrix password');
    const login = await stack.synapse.registerUser('alice', 'alice-password');
    alice = new Human(stack.synapse.baseUrl, login.userId, login.accessToken);
    await alice.startSync();
  });

  after(async () => {
    for (const app of apps) await app.stop().catch(() => undefined);
    await alice?.stopSync();
    await stack?.stop();
    await kc?.stop();
    // Never a secret in any log line.
    for (const text of logs) for (const secret of [KC_PASSWORD, CLIENT_SECRET, 'ghost password']) assert.ok(!text().includes(secret), `a log holds ${secret}`);
  });

  for (const type of ['org.matrix.login.jwt', 'com.famedly.login.token.oauth'] as const) {
    describe(type, () => {
      let app: App;
      let room: string;
      const store = type;
      const user = USERS[type];
      const bot = `@${user}:localhost`;
      const myEnv = (): Record<string, string | undefined> => env(type, store, { MATRIX_USER: user });

      it('logs in with a fresh Keycloak token and obeys a command', async () => {
        const requests = kc.tokenRequests;
        const started = Date.now();
        const started_ = await startBot(myEnv());
        app = started_.app;
        console.log(`# ${type}: started and logged in in ${Date.now() - started} ms`);
        assert.equal(app.userId, bot);
        assert.equal(kc.tokenRequests, requests + 1);
        assert.match(started_.log(), new RegExp(`"device_id":"${app.deviceId}","msg":"logged in with a Keycloak token \\(${type.replace(/\./g, '\\.')}\\)"`));
        room = await alice.createRoom({ name: type, invite: [bot] });
        await alice.waitFor(room, (e) => e.type === 'm.room.member' && e.state_key === bot && e.content['membership'] === 'join', { timeoutMs: 30_000 });
        await answers(room, bot);
      });

      it('restarts on the same device without a new token or login', async () => {
        const before = { deviceId: app.deviceId, token: session(store).accessToken, requests: kc.tokenRequests };
        await app.stop();
        app = (await startBot(myEnv())).app;
        assert.deepEqual({ deviceId: app.deviceId, token: session(store).accessToken, requests: kc.tokenRequests }, before);
        await answers(room, bot);
      });

      it('when Synapse rejects its token, gets a new Keycloak token and logs in again on the same device', async () => {
        const before = session(store);
        const requests = kc.tokenRequests;
        const logout = await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/logout`, { method: 'POST', headers: { authorization: `Bearer ${before.accessToken}` } });
        assert.equal(logout.status, 200);
        await until(() => session(store).accessToken !== before.accessToken, 'a new login');
        assert.equal(session(store).deviceId, before.deviceId);
        assert.equal(kc.tokenRequests, requests + 1);
        await answers(room, bot);
      });

      it('retries a re-login while Keycloak is down, naming it, and logs in once it is back', async () => {
        const before = session(store);
        await kc.down();
        try {
          await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/logout`, { method: 'POST', headers: { authorization: `Bearer ${before.accessToken}` } });
          await until(() => /sync failed[^"]*Keycloak unreachable at/.test(logs.at(-1)?.() ?? ''), 'the retry line');
        } finally {
          await kc.up();
        }
        const line = JSON.parse(logs.at(-1)?.().split('\n').find((l) => /sync failed[^"]*Keycloak unreachable at/.test(l)) ?? '{}') as { msg?: string };
        assert.match(line.msg ?? '', /^sync failed \(attempt \d+ of 20\): Keycloak unreachable at http:\/\/127\.0\.0\.1:\d+\/realms\/matrix\/protocol\/openid-connect\/token: ECONNREFUSED$/);
        await until(() => session(store).accessToken !== before.accessToken, 'a new login', 30_000);
        assert.equal(session(store).deviceId, before.deviceId);
        await answers(room, bot);
      });

      it('stops with one line naming Keycloak when Keycloak refuses it at a re-login', async () => {
        let fatal: Error | undefined;
        await app.stop();
        app = (await startBot(myEnv(), (error) => (fatal = error))).app;
        kc.refuse(true);
        try {
          await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/logout`, { method: 'POST', headers: { authorization: `Bearer ${session(store).accessToken}` } });
          await until(() => fatal !== undefined, 'the fatal error');
        } finally {
          kc.refuse(false);
        }
        assert.equal(fatal?.message, `Keycloak refused the credentials of ${user} in realm matrix: 401 invalid_grant (Invalid user credentials); check bot.user / MATRIX_USER and bot.password / MATRIX_PASSWORD`);
        await app.stop();
      });
    });
  }

  describe('deleting a stale device (user-interactive auth)', () => {
    const opened: StateDb[] = [];
    after(() => opened.forEach((state) => state.close()));
    const sessionFor = (type: JwtLoginType, user: string): PasswordSession => {
      const dir = storeOf(`uia-${type}`);
      mkdirSync(dir, { recursive: true });
      const state = StateDb.open(dir);
      opened.push(state);
      const keycloak = { url: kc.url, realm: REALM, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, loginType: type };
      return new PasswordSession({
        client: new MatrixClient({ baseUrl: stack.synapse.baseUrl, accessToken: '', logger: silentLogger() }),
        homeserver: stack.synapse.baseUrl, user, method: jwtLogin(keycloak, user, user, KC_PASSWORD), displayName: 'uia test',
        state, storePath: dir, logger: silentLogger(),
      });
    };
    const devicesOf = async (user: string): Promise<string[]> => {
      const probe = await stack.synapse.login(user, 'an unrelated matrix password');
      const r = await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/devices`, { headers: { authorization: `Bearer ${probe.accessToken}` } });
      return ((await r.json()) as { devices: Array<{ device_id: string }> }).devices.map((d) => d.device_id);
    };

    it('the module\'s type gives a fresh Keycloak token to delete a device', async () => {
      const s = sessionFor('com.famedly.login.token.oauth', 'uiabot');
      await s.login('STALEDEVICE');
      await s.login('NEWDEVICE');
      const requests = kc.tokenRequests;
      await s.devices().remove('STALEDEVICE');
      assert.equal(kc.tokenRequests, requests + 1);
      assert.ok(!(await devicesOf('uiabot')).includes('STALEDEVICE'));
    });

    it("Synapse's own type cannot, and says to delete it by hand", async () => {
      const s = sessionFor('org.matrix.login.jwt', 'uiabot');
      await s.login('STALEDEVICE2');
      await s.login('NEWDEVICE2');
      await assert.rejects(s.devices().remove('STALEDEVICE2'), /^Error: the homeserver asks for com\.famedly\.login\.token\.oauth or m\.login\.password to delete a device, which a Keycloak token \(org\.matrix\.login\.jwt\) cannot give; delete device STALEDEVICE2 by hand$/);
      assert.ok((await devicesOf('uiabot')).includes('STALEDEVICE2'));
    });
  });

  describe('error lines, one per failing side', () => {
    it('Keycloak refuses the credentials, the client or the realm', async () => {
      const t: JwtLoginType = 'org.matrix.login.jwt';
      assert.equal(await refusal(env(t, 'e1', { MATRIX_PASSWORD: 'wrong password' })),
        'Keycloak refused the credentials of toggle in realm matrix: 401 invalid_grant (Invalid user credentials); check bot.user / MATRIX_USER and bot.password / MATRIX_PASSWORD');
      assert.match(await refusal(env(t, 'e1', { KEYCLOAK_CLIENT_SECRET: 'wrong secret' })),
        /^Keycloak refused the client openclaw-bot in realm matrix: 401 unauthorized_client \(Invalid client or Invalid client credentials\); check keycloak.clientId/);
      assert.match(await refusal(env(t, 'e1', { KEYCLOAK_REALM: 'nope' })), /^Keycloak has no realm nope at http:\/\/127\.0\.0\.1:\d+ \(404 Realm does not exist\); check keycloak.realm/);
    });

    it('Keycloak unreachable at start: one line per attempt naming it, and the login once it is back', async () => {
      await kc.down();
      const { logger, text } = capture();
      logs.push(text);
      const starting = start(loadConfig({ env: env('org.matrix.login.jwt', 'e2', { MATRIX_USER: 'waiter' }) }), { logger, defaultMetrics: false });
      try {
        await until(() => text().includes('Keycloak not reachable yet'), 'the unreachable line');
      } finally {
        await kc.up();
      }
      const app = await starting;
      apps.push(app);
      const line = text().split('\n').find((l) => l.includes('Keycloak not reachable yet')) ?? '';
      assert.match(JSON.parse(line).msg, new RegExp(`^Keycloak not reachable yet: Keycloak unreachable at ${kc.url.replace(/\./g, '\\.')}/realms/matrix/protocol/openid-connect/token: ECONNREFUSED$`));
      assert.equal(app.userId, '@waiter:localhost');
      await app.stop();
    });

    it('Synapse refuses the token: bad signature, expired, unknown user', async () => {
      const other = await startKeycloakDouble({ realm: REALM, users: { toggle: KC_PASSWORD }, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
      try {
        assert.equal(await refusal(env('org.matrix.login.jwt', 'e3', { KEYCLOAK_URL: other.url })),
          'Synapse refused the Keycloak token for toggle (org.matrix.login.jwt): JWT validation failed: Signature verification failed; see the README\'s "JWT / Keycloak" troubleshooting');
        // The module says the same for every refusal; Synapse's log says which (signature here).
        assert.equal(await refusal(env('com.famedly.login.token.oauth', 'e3', { KEYCLOAK_URL: other.url })),
          'Synapse refused the Keycloak token for toggle (com.famedly.login.token.oauth): Invalid username or password; see the README\'s "JWT / Keycloak" troubleshooting');
      } finally {
        await other.stop();
      }
      kc.expire(true);
      try {
        assert.match(await refusal(env('org.matrix.login.jwt', 'e3')), /^Synapse refused the Keycloak token for toggle \(org\.matrix\.login\.jwt\): JWT validation failed: expired_token: The token is expired;/);
        assert.match(await refusal(env('com.famedly.login.token.oauth', 'e3')), /^Synapse refused the Keycloak token for toggle \(com\.famedly\.login\.token\.oauth\): Invalid username or password;/);
      } finally {
        kc.expire(false);
      }
      assert.equal(await refusal(env('com.famedly.login.token.oauth', 'e4', { MATRIX_USER: 'ghost', MATRIX_PASSWORD: 'ghost password' })),
        'Synapse refused the Keycloak token for ghost (com.famedly.login.token.oauth): Invalid username or password; see the README\'s "JWT / Keycloak" troubleshooting');
    });

    describe('a Synapse with only the module\'s HS512 login', () => {
      let hs: Synapse;
      let hmacKc: KeycloakDouble;
      before(async () => {
        hmacKc = await startKeycloakDouble({ realm: REALM, users: { toggle: KC_PASSWORD }, clientId: CLIENT_ID, hmacSecret: HMAC, subjectIsUsername: true });
        hs = await startSynapse({ dir: join(stack.dir, 'synapse-hs512'), extraConfig: synapseJwtSettings(hmacKc, { hmacSecret: HMAC }), logger: { info: () => undefined, warn: () => undefined } });
        await hs.registerUser('toggle', 'an unrelated matrix password');
      });
      after(async () => {
        await hs?.stop();
        await hmacKc?.stop();
      });

      it('logs in with com.famedly.login.token (a public client: no secret)', async () => {
        const { app } = await startBot(env('com.famedly.login.token', 'hs512', { MATRIX_HOMESERVER: hs.baseUrl, KEYCLOAK_URL: hmacKc.url, KEYCLOAK_CLIENT_SECRET: undefined }));
        assert.equal(app.userId, BOT);
        await app.stop();
      });

      it('says Synapse does not offer a login type it lacks, and what it needs', async () => {
        assert.match(await refusal(env('org.matrix.login.jwt', 'hs512-native', { MATRIX_HOMESERVER: hs.baseUrl, KEYCLOAK_URL: hmacKc.url, KEYCLOAK_CLIENT_SECRET: undefined })),
          /^Synapse does not offer the login type org\.matrix\.login\.jwt \(it offers [^)]*com\.famedly\.login\.token[^)]*\): it needs jwt_config \(enabled: true\) in homeserver\.yaml, or set bot\.jwtLoginType \/ JWT_LOGIN_TYPE to one it offers$/);
      });
    });
  });
});
