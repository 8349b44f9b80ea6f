/**
 * The bot's volume is lost (a new crypto store) while its account keeps the cross-signing identity it
 * published before: the homeserver then wants the account's password to replace those keys. Against
 * a real Synapse, with a real E2EE client judging the bot's device:
 * password mode answers with the password: a new identity, the new device signed by it, and the bot
 * works (it used to fail every start with 401 on /keys/device_signing/upload). Without a password to
 * give (a JWT login) the bot starts with one warning instead: test/unit/cross-signing-auth.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { startE2eeHuman, type E2eeHuman } from '../../src/dev/e2ee-human.ts';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import type { createLogger } from '../../src/log.ts';

const BOT_PASSWORD = 'lost volume bot password';

describe('a lost volume while the account keeps its cross-signing identity', { timeout: 300_000 }, () => {
  let stack: Stack;
  let alice: E2eeHuman;
  const apps: App[] = [];
  const botUser = '@toggle:localhost';

  const startBot = async (store: string, logger?: ReturnType<typeof createLogger>): Promise<App> => {
    const { app } = await stack.startBot({
      env: stack.botEnv({ AS_REGISTRATION_FILE: undefined, MATRIX_USER: 'toggle', MATRIX_PASSWORD: BOT_PASSWORD, CRYPTO_STORE_PATH: join(stack.dir, store) }),
      ...(logger ? { logger } : {}),
    });
    apps.push(app);
    return app;
  };

  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-lost-volume-')) });
    await stack.synapse.registerUser('toggle', BOT_PASSWORD);
    const login = await stack.synapse.registerUser('alice', 'alice-password');
    alice = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: 'alice-password' });
  });

  after(async () => {
    for (const app of apps) await app.stop().catch(() => undefined);
    await alice?.stop().catch(() => undefined);
    await stack?.stop();
  });

  it('password mode: a new identity with the password, the new device signed by it, and the bot answers', async () => {
    const first = await startBot('volume-1');
    const room = await alice.createEncryptedRoom([botUser], { name: 'before the loss' });
    await alice.waitForMessages(room, (m) => m.sender === botUser && /Hello!/.test(m.body ?? ''), { timeoutMs: 30_000 });
    assert.equal((await alice.deviceTrust(botUser, first.deviceId)).signedByOwner, true, 'the first device is cross-signed');
    await first.stop();
    // The volume is gone: a new store, a new device, while the account still has the old identity.
    const second = await startBot('volume-2');
    assert.notEqual(second.deviceId, first.deviceId);
    const sent = await alice.send(room, 'status');
    const [reply] = await alice.waitForMessages(room, (m) => m.sender === botUser && /desired 0/.test(m.body ?? '') && m.ts > 0 && m.eventId !== sent, { timeoutMs: 30_000 });
    assert.equal(reply?.decryptionFailed, false);
    assert.equal(reply?.senderDeviceId, second.deviceId, 'answered by the new device');
    const deadline = Date.now() + 20_000;
    while (!(await alice.deviceTrust(botUser, second.deviceId)).signedByOwner) {
      assert.ok(Date.now() < deadline, 'the new device is signed by the new identity, as alice\'s client sees it');
      await new Promise((r) => setTimeout(r, 200));
    }
    await second.stop();
  });
});
