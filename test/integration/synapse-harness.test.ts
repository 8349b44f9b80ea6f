/**
 * The Synapse harness against a real Synapse: users, login, restart with persisted data, and
 * the appservice features the bot relies on (MSC4190 device creation, device masquerading).
 * Also pins down what Synapse answers when an appservice lacks a flag, so a Synapse upgrade
 * that changes these answers shows up here first.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { ensureSynapseVenv, startSynapse, SYNAPSE_VERSION, type Synapse } from '../../src/dev/synapse.ts';

const token = (): string => randomBytes(32).toString('hex'); // 64 chars

interface Reply { status: number; body: Record<string, unknown> }

async function call(synapse: Synapse, method: string, path: string, accessToken?: string, body?: unknown): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (accessToken !== undefined) headers['authorization'] = `Bearer ${accessToken}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${synapse.baseUrl}${path}`, {
    method,
    headers,
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

describe(`Synapse ${SYNAPSE_VERSION} harness`, { timeout: 15 * 60_000 }, () => {
  let dir: string;
  let synapse: Synapse;
  const secrets: string[] = [];
  const as = { id: 'harness-test', asToken: token(), hsToken: token() };
  // The same appservice without io.element.msc4190 / org.matrix.msc3202, to see what differs.
  const plainAs = { id: 'harness-plain', asToken: token(), hsToken: token() };
  let alice: { userId: string; accessToken: string; deviceId: string };
  let bobLogin: { userId: string; accessToken: string; deviceId: string };

  before(async () => {
    await ensureSynapseVenv(); // may install (once); not counted in the start-up time below
    dir = await mkdtemp(join(tmpdir(), 'synapse-harness-'));
    const reg = join(dir, 'appservice.yaml');
    await writeFile(reg, stringifyYaml({
      id: as.id,
      url: null,
      as_token: as.asToken,
      hs_token: as.hsToken,
      sender_localpart: 'testbot',
      namespaces: {
        users: [{ exclusive: true, regex: '@testbot:localhost' }, { exclusive: true, regex: '@testbot_ghost_.*:localhost' }],
        aliases: [],
        rooms: [],
      },
      rate_limited: false,
      receive_ephemeral: true,
      'de.sorunome.msc2409.push_ephemeral': true,
      'org.matrix.msc3202': true,
      'io.element.msc4190': true,
    }), { mode: 0o600 });
    const plainReg = join(dir, 'appservice-plain.yaml');
    await writeFile(plainReg, stringifyYaml({
      id: plainAs.id,
      url: null,
      as_token: plainAs.asToken,
      hs_token: plainAs.hsToken,
      sender_localpart: 'plainbot',
      namespaces: { users: [{ exclusive: true, regex: '@plainbot:localhost' }] },
      rate_limited: false,
    }), { mode: 0o600 });
    secrets.push(as.asToken, as.hsToken, plainAs.asToken, plainAs.hsToken);

    const started = Date.now();
    synapse = await startSynapse({ dir: join(dir, 'hs'), appserviceRegistrations: [reg, plainReg], logger: { info: () => {}, warn: () => {} } });
    console.log(`# Synapse start-up: ${Date.now() - started} ms`);
    secrets.push(synapse.registrationSharedSecret);
  });

  after(async () => {
    if (synapse) await synapse.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers /_matrix/client/versions', async () => {
    const r = await call(synapse, 'GET', '/_matrix/client/versions');
    assert.equal(r.status, 200);
    assert.ok(Array.isArray(r.body['versions']));
    assert.ok((r.body['versions'] as string[]).includes('v1.11'));
    assert.match(synapse.baseUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(synapse.serverName, 'localhost');
    assert.ok(synapse.pid > 0);
  });

  it('registers users through the shared secret and logs in', async () => {
    alice = await synapse.registerUser('alice', 'alice-password', true);
    const bob = await synapse.registerUser('bob', 'bob-password');
    assert.equal(alice.userId, '@alice:localhost');
    assert.equal(bob.userId, '@bob:localhost');
    bobLogin = await synapse.login('bob', 'bob-password');
    assert.equal(bobLogin.userId, '@bob:localhost');
    assert.notEqual(bobLogin.deviceId, bob.deviceId);
    secrets.push(alice.accessToken, bob.accessToken, bobLogin.accessToken, 'alice-password', 'bob-password');

    const who = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami', bobLogin.accessToken);
    assert.equal(who.status, 200);
    assert.equal(who.body['user_id'], '@bob:localhost');
    assert.equal(who.body['device_id'], bobLogin.deviceId);

    const admin = await call(synapse, 'GET', `/_synapse/admin/v2/users/${encodeURIComponent(alice.userId)}`, alice.accessToken);
    assert.equal(admin.status, 200);
    assert.equal(admin.body['admin'], true);

    await assert.rejects(synapse.login('bob', 'wrong'), /HTTP 403 M_FORBIDDEN/);
  });

  it('accepts the appservice: register with inhibit_login, MSC4190 device, device masquerading', async () => {
    const reg = await call(synapse, 'POST', '/_matrix/client/v3/register', as.asToken,
      { type: 'm.login.application_service', username: 'testbot', inhibit_login: true });
    console.log(`# register: ${reg.status} ${JSON.stringify(reg.body)}`);
    assert.equal(reg.status, 200);
    assert.equal(reg.body['user_id'], '@testbot:localhost');
    assert.equal(reg.body['access_token'], undefined);

    const again = await call(synapse, 'POST', '/_matrix/client/v3/register', as.asToken,
      { type: 'm.login.application_service', username: 'testbot', inhibit_login: true });
    console.log(`# register again: ${again.status} ${JSON.stringify(again.body)}`);
    assert.equal(again.status, 400);
    assert.equal(again.body['errcode'], 'M_USER_IN_USE');

    // Without inhibit_login an MSC4190 appservice is refused, but Synapse has created the
    // user before it refuses: the next attempt gets M_USER_IN_USE.
    const noInhibit = await call(synapse, 'POST', '/_matrix/client/v3/register', as.asToken,
      { type: 'm.login.application_service', username: 'testbot_ghost_1' });
    console.log(`# register without inhibit_login: ${noInhibit.status} ${JSON.stringify(noInhibit.body)}`);
    assert.equal(noInhibit.status, 400);
    assert.equal(noInhibit.body['errcode'], 'M_APPSERVICE_LOGIN_UNSUPPORTED');
    const afterRefusal = await call(synapse, 'POST', '/_matrix/client/v3/register', as.asToken,
      { type: 'm.login.application_service', username: 'testbot_ghost_1', inhibit_login: true });
    console.log(`# register with inhibit_login after that refusal: ${afterRefusal.status} ${JSON.stringify(afterRefusal.body)}`);
    assert.equal(afterRefusal.status, 400);
    assert.equal(afterRefusal.body['errcode'], 'M_USER_IN_USE');

    const created = await call(synapse, 'PUT', '/_matrix/client/v3/devices/TESTDEVICE?user_id=%40testbot%3Alocalhost', as.asToken, { display_name: 'x' });
    console.log(`# PUT device (new): ${created.status} ${JSON.stringify(created.body)}`);
    assert.equal(created.status, 201);
    const existed = await call(synapse, 'PUT', '/_matrix/client/v3/devices/TESTDEVICE?user_id=%40testbot%3Alocalhost', as.asToken, { display_name: 'x' });
    console.log(`# PUT device (existing): ${existed.status} ${JSON.stringify(existed.body)}`);
    assert.equal(existed.status, 200);

    const who = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami?user_id=%40testbot%3Alocalhost&device_id=TESTDEVICE', as.asToken);
    console.log(`# whoami as device: ${who.status} ${JSON.stringify(who.body)}`);
    assert.equal(who.status, 200);
    assert.equal(who.body['user_id'], '@testbot:localhost');
    assert.equal(who.body['device_id'], 'TESTDEVICE');

    const whoNoDevice = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami?user_id=%40testbot%3Alocalhost', as.asToken);
    console.log(`# whoami without device_id: ${whoNoDevice.status} ${JSON.stringify(whoNoDevice.body)}`);
    assert.equal(whoNoDevice.status, 200);
    assert.equal(whoNoDevice.body['device_id'], undefined);

    const unknown = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami?user_id=%40testbot%3Alocalhost&device_id=NOSUCHDEVICE', as.asToken);
    console.log(`# whoami as unknown device: ${unknown.status} ${JSON.stringify(unknown.body)}`);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body['errcode'], 'M_UNKNOWN_DEVICE');

    const foreign = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami?user_id=%40bob%3Alocalhost', as.asToken);
    console.log(`# whoami as a user outside the namespace: ${foreign.status} ${JSON.stringify(foreign.body)}`);
    assert.equal(foreign.status, 403);

    const login = await call(synapse, 'POST', '/_matrix/client/v3/login', as.asToken,
      { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: 'testbot' } });
    console.log(`# m.login.application_service login with MSC4190 on: ${login.status} ${JSON.stringify(login.body)}`);
    assert.equal(login.status, 400);
    assert.equal(login.body['errcode'], 'M_APPSERVICE_LOGIN_UNSUPPORTED');

    const ping = await call(synapse, 'POST', `/_matrix/client/v1/appservice/${as.id}/ping`, as.asToken, {});
    console.log(`# ping with url: null: ${ping.status} ${JSON.stringify(ping.body)}`);
    assert.equal(ping.status, 400);
    assert.equal(ping.body['errcode'], 'M_URL_NOT_SET');
  });

  it('shows what an appservice without io.element.msc4190 gets', async () => {
    const reg = await call(synapse, 'POST', '/_matrix/client/v3/register', plainAs.asToken,
      { type: 'm.login.application_service', username: 'plainbot' });
    console.log(`# (no msc4190) register without inhibit_login: ${reg.status} fields ${Object.keys(reg.body).join(',')}`);
    assert.equal(reg.status, 200);
    assert.equal(typeof reg.body['access_token'], 'string');
    secrets.push(reg.body['access_token'] as string);

    const created = await call(synapse, 'PUT', '/_matrix/client/v3/devices/PLAINDEV?user_id=%40plainbot%3Alocalhost', plainAs.asToken, { display_name: 'x' });
    console.log(`# (no msc4190) PUT device: ${created.status} ${JSON.stringify(created.body)}`);
    const who = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami?user_id=%40plainbot%3Alocalhost&device_id=PLAINDEV', plainAs.asToken);
    console.log(`# (no msc4190) whoami as device: ${who.status} ${JSON.stringify(who.body)}`);
    // Synapse 1.163 creates the device whatever the flag says (the flag only changes
    // register/login and DELETE-without-UIA); the masquerade then works too.
    assert.equal(created.status, 201);
    assert.equal(who.status, 200);
    assert.equal(who.body['device_id'], 'PLAINDEV');

    const login = await call(synapse, 'POST', '/_matrix/client/v3/login', plainAs.asToken,
      { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: 'plainbot' }, device_id: 'LOGINDEV' });
    console.log(`# (no msc4190) appservice login: ${login.status} device_id=${String(login.body['device_id'])}`);
    assert.equal(login.status, 200);
    assert.equal(login.body['device_id'], 'LOGINDEV');
    secrets.push(login.body['access_token'] as string);
  });

  it('keeps users, tokens and appservice devices across a restart', async () => {
    const pidBefore = synapse.pid;
    const started = Date.now();
    await synapse.restart();
    console.log(`# Synapse restart: ${Date.now() - started} ms`);
    assert.notEqual(synapse.pid, pidBefore);
    assert.ok(synapse.running);

    const who = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami', bobLogin.accessToken);
    assert.equal(who.status, 200);
    assert.equal(who.body['device_id'], bobLogin.deviceId);
    const whoAlice = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami', alice.accessToken);
    assert.equal(whoAlice.status, 200);
    const whoBot = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami?user_id=%40testbot%3Alocalhost&device_id=TESTDEVICE', as.asToken);
    assert.equal(whoBot.status, 200);
    assert.equal(whoBot.body['device_id'], 'TESTDEVICE');
    // The shared secret survives the restart too.
    const carol = await synapse.registerUser('carol', 'carol-password');
    assert.equal(carol.userId, '@carol:localhost');
    secrets.push(carol.accessToken);
  });

  it('survives SIGKILL and restarts on the same data', async () => {
    await synapse.kill();
    assert.equal(synapse.running, false);
    await assert.rejects(fetch(`${synapse.baseUrl}/_matrix/client/versions`));
    await synapse.restart();
    const who = await call(synapse, 'GET', '/_matrix/client/v3/account/whoami', bobLogin.accessToken);
    assert.equal(who.status, 200);
  });

  it('keeps secrets out of log tails', async () => {
    const tail = synapse.logTail(100_000);
    assert.match(tail, /homeserver\.log/);
    for (const s of secrets) assert.ok(!tail.includes(s), 'a secret appears in logTail()');
    // Synapse itself does not write them to its log either (tokens in URLs are redacted).
    const raw = await readFile(join(synapse.dir, 'homeserver.log'), 'utf8');
    for (const s of secrets) assert.ok(!raw.includes(s), 'a secret appears in homeserver.log');
  });

  it('stops', async () => {
    const pid = synapse.pid;
    await synapse.stop();
    assert.equal(synapse.running, false);
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    await assert.rejects(fetch(`${synapse.baseUrl}/_matrix/client/versions`));
  });
});
