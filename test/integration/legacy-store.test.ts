/**
 * Moving from the old Python bot: a real matrix-nio store (nio 0.25.2 on libolm, made here by a
 * short nio script against the test Synapse) is imported with `import-legacy-store`, then the bot
 * runs in password mode as the old user and device. Judged by what the human's client sees.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DecryptionSettings, RoomId, TrustRequirement } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { App } from '../../src/app.ts';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { openDeviceCrypto } from '../../src/crypto/device-store.ts';
import { runImportLegacyStore } from '../../src/crypto/legacy/import-command.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { runLegacyNioBot, type LegacyNioRun } from '../../src/dev/legacy-nio-bot.ts';
import { ensureNioVenv } from '../../src/dev/nio-venv.ts';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import { silentLogger } from '../../src/log.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { queryKeys, type PublishedKeys } from './lib/key-query.ts';

const BOT_PASSWORD = 'old bot password';
const ALICE_PASSWORD = 'alice-password-3';
const OLD_DEVICE = 'NIOLEGACYBOT';
/** The bot's own store is encrypted at rest: the import must write it under the same passphrase. */
const BOT_ENV = { AS_REGISTRATION_FILE: undefined, MATRIX_USER: 'toggle', MATRIX_PASSWORD: BOT_PASSWORD, CRYPTO_STORE_PASSPHRASE: 'store passphrase' };

describe('import of the old Python bot (matrix-nio) crypto store', { timeout: 600_000 }, () => {
  let stack: Stack;
  let alice: E2eeHuman;
  let aliceToken: string;
  let app: App | undefined;
  let room: string;
  let nio: LegacyNioRun;
  let nioStore: string;
  let config: Config;
  const botUser = '@toggle:localhost';
  const fromBot = (m: Message): boolean => m.sender === botUser && m.relatesTo?.['rel_type'] !== 'm.replace';

  const importStore = async (extra: { pickleKeyFile?: string; force?: boolean } = {}): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const code = await runImportLegacyStore({ from: nioStore, pickleKeyFile: extra.pickleKeyFile, force: extra.force ?? false }, config, (s) => (out += `${s}\n`), (s) => (err += `${s}\n`));
    return { code, out, err };
  };
  const hashDir = (dir: string): string => {
    const h = createHash('sha256');
    for (const name of readdirSync(dir).sort()) h.update(name).update(readFileSync(join(dir, name)));
    return h.digest('hex');
  };
  const devicesSeenByAlice = async (): Promise<PublishedKeys['devices']> => (await queryKeys(stack.synapse.baseUrl, aliceToken, botUser)).devices;
  const masterKey = async (userId: string): Promise<string | undefined> => (await queryKeys(stack.synapse.baseUrl, aliceToken, userId)).masterKey;

  before(async () => {
    const started = Date.now();
    await ensureNioVenv();
    console.log(`# nio venv ready in ${Date.now() - started} ms`);
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-legacy-')) });
    await stack.synapse.registerUser('toggle', BOT_PASSWORD);
    const login = await stack.synapse.registerUser('alice', ALICE_PASSWORD);
    aliceToken = login.accessToken;
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: ALICE_PASSWORD });
    nioStore = join(stack.dir, 'old-bot', 'crypto_store');
    config = loadConfig({ env: stack.botEnv(BOT_ENV) });
  });

  after(async () => {
    await app?.stop().catch(() => undefined);
    await alice?.stop().catch(() => undefined);
    await stack?.stop();
  });

  it('the old bot (matrix-nio) joins an encrypted room and receives a command in a Megolm session', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(nioStore, { recursive: true });
    room = await alice.createEncryptedRoom([botUser], { name: 'old bot room' });
    const started = Date.now();
    nio = await runLegacyNioBot({
      homeserver: stack.synapse.baseUrl,
      user: botUser,
      password: BOT_PASSWORD,
      deviceId: OLD_DEVICE,
      storeDir: nioStore,
      expect: 'status',
      onJoined: async (joined) => {
        assert.equal(joined, room);
        await alice.waitForMembership(room, botUser);
        await alice.send(room, 'status');
      },
    });
    console.log(`# nio script ran in ${Date.now() - started} ms`);
    assert.equal(nio.deviceId, OLD_DEVICE);
    assert.deepEqual(Object.keys(await devicesSeenByAlice()), [OLD_DEVICE]);
  });

  it('refuses bad input with one line and a non-zero exit, and never modifies the old store', async () => {
    const before = hashDir(nioStore);
    const keyFile = join(stack.dir, 'wrong-key');
    await writeFile(keyFile, 'not the key\n');
    const wrongKey = await importStore({ pickleKeyFile: keyFile });
    assert.notEqual(wrongKey.code, 0);
    assert.match(wrongKey.err, /^import-legacy-store: cannot read the account of the old store with this pickle key .*\n$/);
    const missing = await runImportLegacyStore({ from: join(stack.dir, 'nowhere'), pickleKeyFile: undefined, force: false }, config, () => undefined, (s) => assert.match(s, /^import-legacy-store: .*nowhere does not exist$/));
    assert.notEqual(missing, 0);
    assert.equal(hashDir(nioStore), before);
  });

  it('imports the account, the Olm and the Megolm sessions, and refuses to overwrite without --force', async () => {
    const before = hashDir(nioStore);
    const first = await importStore();
    assert.equal(first.code, 0, first.err);
    console.log(first.out.trim().replace(/^/gm, '# '));
    assert.match(first.out, new RegExp(`user ${botUser}, device ${OLD_DEVICE} \\(ed25519 ${nio.ed25519.replace(/[+/]/g, '\\$&')}, curve25519`));
    assert.match(first.out, /\b[1-9]\d* Olm sessions?, [1-9]\d* inbound Megolm sessions?/);
    const again = await importStore();
    assert.notEqual(again.code, 0);
    assert.match(again.err, /^import-legacy-store: .* already holds the store of @toggle:localhost device NIOLEGACYBOT; pass --force/);
    // As if the bot had already run on its own device: that stored login must not be reused.
    const state = StateDb.open(config.storage.path);
    state.set('password-session', JSON.stringify({ homeserver: stack.synapse.baseUrl, userId: botUser, deviceId: 'OPENCLAWEARLIER', accessToken: 'stale' }));
    state.close();
    const forced = await importStore({ force: true });
    assert.equal(forced.code, 0, forced.err);
    assert.match(forced.out, /the previous crypto store was moved to .*discarded-/);
    assert.match(forced.out, /forgot the stored login of @toggle:localhost device OPENCLAWEARLIER: the bot logs in again as NIOLEGACYBOT/);
    assert.equal(hashDir(nioStore), before, 'the old store is unchanged');
  });

  it('the imported store, opened as the bot opens it, decrypts the command sent to the old bot', async () => {
    const res = await fetch(`${stack.synapse.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(nio.decrypted)}`, { headers: { authorization: `Bearer ${aliceToken}` } });
    const event = (await res.json()) as Record<string, unknown>;
    assert.equal(event['type'], 'm.room.encrypted');
    const devices = { ensure: async () => 'existed' as const, list: async () => [OLD_DEVICE], remove: async () => undefined };
    assert.equal(config.storage.passphrase, 'store passphrase');
    const device = await openDeviceCrypto({ userId: botUser, dir: config.storage.path, passphrase: config.storage.passphrase, devices, logger: silentLogger() });
    try {
      assert.equal(device.deviceId, OLD_DEVICE);
      assert.equal(device.replaced, undefined);
      assert.equal(device.machine.identityKeys.ed25519.toBase64(), nio.ed25519);
      const decrypted = await device.machine.decryptRoomEvent(JSON.stringify(event), new RoomId(room), new DecryptionSettings(TrustRequirement.Untrusted));
      assert.equal((JSON.parse(decrypted.event) as { content: { body: string } }).content.body, 'status');
    } finally {
      device.machine.close();
      device.store.close();
    }
  });

  it('the bot runs in password mode as the old device: no new device, new commands work', async () => {
    app = (await stack.startBot({ env: BOT_ENV })).app;
    assert.equal(app.deviceId, OLD_DEVICE);
    assert.equal(app.ed25519, nio.ed25519);
    const seen = await devicesSeenByAlice();
    assert.deepEqual(Object.keys(seen), [OLD_DEVICE], 'no new device appeared');
    assert.equal(seen[OLD_DEVICE]?.keys[`ed25519:${OLD_DEVICE}`], nio.ed25519);
    const before = alice.messages(room).filter(fromBot).length;
    await alice.send(room, 'status');
    const replies = (await alice.waitForMessages(room, fromBot, { count: before + 2, timeoutMs: 30_000 })).slice(before);
    assert.ok(replies.every((m) => m.encrypted && !m.decryptionFailed), JSON.stringify(replies));
    assert.match(replies[1]?.body ?? '', /openclaw is ⚪ off/);
    // Alice's client kept its Megolm session (same device on the bot's side): the new command was
    // decrypted with the session imported from the old store.
    const commands = alice.messages(room).filter((m) => m.sender === alice.userId && m.body === 'status');
    assert.equal(commands.length, 2);
    assert.equal(commands[1]?.megolm?.sessionId, commands[0]?.megolm?.sessionId);
    assert.equal(alice.messages(room).filter(fromBot).length, 2, 'the command sent to the old bot was not run again');
    // Its replies' room key reached Alice's device through the imported Olm session: the bot never
    // claimed a one-time key to make a new one (read from Synapse's access log).
    const log = readFileSync(join(stack.synapse.dir, 'homeserver.log'), 'utf8');
    assert.equal(log.split('\n').filter((l) => l.includes(`{${botUser}}`) && l.includes('/keys/claim')).length, 0);
    assert.deepEqual(Object.keys(await devicesSeenByAlice()), [OLD_DEVICE], 'still no new device');
    const whileRunning = await importStore({ force: true });
    assert.notEqual(whileRunning.code, 0);
    assert.match(whileRunning.err, /^import-legacy-store: .* is in use by another instance of the bot \(pid \d+/);
    // nio had no cross-signing; the bot gives the old device its own identity at its first start.
    const trust = await alice.deviceTrust(botUser, OLD_DEVICE);
    assert.deepEqual({ known: trust.known, signedByOwner: trust.signedByOwner, ed25519: trust.ed25519 }, { known: true, signedByOwner: true, ed25519: nio.ed25519 });
  });

  it('the new bot had already run on its own device: --force imports over it, the identity is kept', async () => {
    await app?.stop();
    app = undefined;
    const password = 'early bot password';
    await stack.synapse.registerUser('early', password);
    const early = '@early:localhost';
    const env = { ...BOT_ENV, MATRIX_USER: 'early', MATRIX_PASSWORD: password, CRYPTO_STORE_PATH: join(stack.dir, 'early-data') };
    const earlyRoom = await alice.createEncryptedRoom([early], { name: 'early room' });
    const store = join(stack.dir, 'early-old-bot');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(store, { recursive: true });
    const old = await runLegacyNioBot({
      homeserver: stack.synapse.baseUrl, user: early, password, deviceId: 'NIOEARLY', storeDir: store, expect: 'status',
      onJoined: async () => {
        await alice.waitForMembership(earlyRoom, early);
        await alice.send(earlyRoom, 'status');
      },
    });
    // The operator tries the new bot first: a new device, and a cross-signing identity for the user.
    const first = (await stack.startBot({ env })).app;
    const firstDevice = first.deviceId;
    await first.stop();
    const identity = await masterKey(early);
    assert.ok(identity);
    const earlyConfig = loadConfig({ env: stack.botEnv(env) });
    let out = '';
    let err = '';
    const code = await runImportLegacyStore({ from: store, pickleKeyFile: undefined, force: true }, earlyConfig, (x) => (out += x), (x) => (err += x));
    assert.equal(code, 0, err);
    assert.match(out, /the bot's cross-signing identity: kept from the previous store/);
    app = (await stack.startBot({ env })).app;
    assert.equal(app.deviceId, 'NIOEARLY');
    assert.equal(app.ed25519, old.ed25519);
    assert.equal(await masterKey(early), identity, 'the cross-signing identity is the one the new bot had made');
    const trust = await alice.deviceTrust(early, 'NIOEARLY');
    assert.deepEqual({ known: trust.known, signedByOwner: trust.signedByOwner }, { known: true, signedByOwner: true });
    assert.ok(firstDevice.startsWith('OPENCLAW'));
    const before = alice.messages(earlyRoom).filter((m) => m.sender === early && m.relatesTo?.['rel_type'] !== 'm.replace').length;
    await alice.send(earlyRoom, 'status');
    const replies = (await alice.waitForMessages(earlyRoom, (m) => m.sender === early && m.relatesTo?.['rel_type'] !== 'm.replace', { count: before + 2, timeoutMs: 30_000 })).slice(before);
    assert.match(replies[1]?.body ?? '', /openclaw is/);
  });
});
