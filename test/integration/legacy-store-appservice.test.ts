/**
 * The old bot's store imported, then run in appservice mode: the registration's sender is the old
 * bot's user (generate-registration --localpart <old localpart>), and the bot continues as the old
 * device through MSC4190 (the device exists, so `PUT /devices/{id}` answers 200 and it is kept).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { loadConfig } from '../../src/config/config.ts';
import { runImportLegacyStore } from '../../src/crypto/legacy/import-command.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { runLegacyNioBot, type LegacyNioRun } from '../../src/dev/legacy-nio-bot.ts';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import { queryKeys, type PublishedKeys } from './lib/key-query.ts';

const OLD_PASSWORD = 'old bot password';
const OLD_DEVICE = 'NIOASLEGACY';

describe('import of the old bot store, then appservice mode as the same user and device', { timeout: 600_000 }, () => {
  let stack: Stack;
  let alice: E2eeHuman;
  let aliceToken: string;
  let app: App | undefined;
  let room: string;
  let nio: LegacyNioRun;
  let original: string;
  const fromBot = (m: Message): boolean => m.sender === stack.botUserId && m.relatesTo?.['rel_type'] !== 'm.replace';
  const devicesSeenByAlice = async (): Promise<PublishedKeys['devices']> => (await queryKeys(stack.synapse.baseUrl, aliceToken, stack.botUserId)).devices;

  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-legacy-as-')) });
    // The old bot was an ordinary user with a password, syncing with /sync. Synapse refuses /sync to
    // an appservice's sender user and refuses to create users in an exclusive namespace, so the old
    // bot runs while the registration names another sender; the real one comes back before the import.
    original = await readFile(stack.registrationPath, 'utf8');
    const placeholder = original
      .replace(/^sender_localpart: .*$/m, 'sender_localpart: placeholder')
      .replace(/@openclaw:localhost/, '@placeholder:localhost');
    assert.notEqual(placeholder, original);
    await writeFile(stack.registrationPath, placeholder, { mode: 0o600 });
    await stack.synapse.restart();
    await stack.synapse.registerUser('openclaw', OLD_PASSWORD);
    const login = await stack.synapse.registerUser('alice', 'alice-password-4');
    aliceToken = login.accessToken;
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: 'alice-password-4' });
  });

  after(async () => {
    await app?.stop().catch(() => undefined);
    await alice?.stop().catch(() => undefined);
    await stack?.stop();
  });

  it('continues as the old device: no new device, new commands decrypt with the imported session', async () => {
    const nioStore = join(stack.dir, 'old-bot', 'crypto_store');
    await mkdir(nioStore, { recursive: true });
    room = await alice.createEncryptedRoom([stack.botUserId], { name: 'old bot room' });
    nio = await runLegacyNioBot({
      homeserver: stack.synapse.baseUrl, user: stack.botUserId, password: OLD_PASSWORD, deviceId: OLD_DEVICE, storeDir: nioStore, expect: 'status',
      onJoined: async () => {
        await alice.waitForMembership(room, stack.botUserId);
        await alice.send(room, 'status');
      },
    });
    // The old bot is stopped; its user becomes the appservice's sender.
    await writeFile(stack.registrationPath, original, { mode: 0o600 });
    await stack.synapse.restart();
    const config = loadConfig({ env: stack.botEnv() });
    assert.equal(config.mode, 'appservice');
    let out = '';
    const code = await runImportLegacyStore({ from: nioStore, pickleKeyFile: undefined, force: false }, config, (s) => (out += s), (s) => assert.fail(s));
    assert.equal(code, 0);
    assert.match(out, new RegExp(`device ${OLD_DEVICE} `));

    app = (await stack.startBot()).app;
    assert.equal(app.deviceId, OLD_DEVICE);
    assert.equal(app.ed25519, nio.ed25519);
    assert.deepEqual(Object.keys(await devicesSeenByAlice()), [OLD_DEVICE], 'no new device appeared');
    await stack.waitForAppserviceUp();
    const before = alice.messages(room).filter(fromBot).length;
    await alice.send(room, 'status');
    const replies = (await alice.waitForMessages(room, fromBot, { count: before + 2, timeoutMs: 30_000 })).slice(before);
    assert.ok(replies.every((m) => m.encrypted && !m.decryptionFailed), JSON.stringify(replies));
    assert.match(replies[1]?.body ?? '', /openclaw is ⚪ off/);
    const commands = alice.messages(room).filter((m) => m.sender === alice.userId && m.body === 'status');
    assert.equal(commands[1]?.megolm?.sessionId, commands[0]?.megolm?.sessionId, 'the new command used the session the old bot had received');
    assert.deepEqual(Object.keys(await devicesSeenByAlice()), [OLD_DEVICE], 'still no new device');
    // nio had no cross-signing; the bot gives the old device its own identity at its first start.
    const trust = await alice.deviceTrust(stack.botUserId, OLD_DEVICE);
    assert.deepEqual({ known: trust.known, signedByOwner: trust.signedByOwner, ed25519: trust.ed25519 }, { known: true, signedByOwner: true, ed25519: nio.ed25519 });
  });
});
