/**
 * A crypto store written by the snapshot store this one replaced (the fixture in
 * test/fixtures/legacy-crypto-store was written by src/crypto/durable-idb.ts itself, with its
 * generator, at commit 2ad845e) opens as the same device with the same keys and sessions: the
 * migration runs once, in one transaction, and moves the old files aside.
 */
import { strict as assert } from 'node:assert';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { EncryptionSettings, RoomId, UserId } from '@matrix-org/matrix-sdk-crypto-wasm';
import { CryptoStore, STORE_FILE } from '../../src/crypto/crypto-store.ts';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { megolmIdentity } from '../../src/crypto/megolm-index.ts';
import { silentLogger } from '../../src/log.ts';
import { StartupError } from '../../src/startup-error.ts';
import { decryptBody } from '../../src/dev/engine-homeserver.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/legacy-crypto-store/', import.meta.url));
const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as {
  userId: string;
  deviceId: string;
  passphrase: string;
  ed25519: string;
  curve25519: string;
  roomKeys: number;
  trackedUsers: string[];
  aliceEvent: Record<string, unknown>;
  aliceBody: string;
  lastOutbound: { sessionId: string; index: number };
};

let root: string;
let n = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'store-migration-'))));
after(() => rmSync(root, { recursive: true, force: true }));

/** A storage path holding a copy of the fixture's crypto directory. */
function copyFixture(): string {
  const dir = join(root, `case-${++n}`);
  cpSync(join(FIXTURE, 'crypto'), join(dir, 'crypto'), { recursive: true });
  return dir;
}
const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };
const open = (dir: string, passphrase = expected.passphrase) => openDeviceCrypto({ userId: expected.userId, dir, passphrase, devices, logger: silentLogger() });

describe('a store in the snapshot format is migrated on first start', () => {
  test('same device, identity keys, tracked users, room keys; old messages decrypt; no Megolm index reused', async () => {
    const dir = copyFixture();
    const { machine, store, deviceId, replaced } = await open(dir);
    assert.equal(replaced, undefined);
    assert.equal(deviceId, expected.deviceId);
    assert.equal(machine.identityKeys.ed25519.toBase64(), expected.ed25519);
    assert.equal(machine.identityKeys.curve25519.toBase64(), expected.curve25519);
    assert.deepEqual([...(await machine.trackedUsers())].map((u) => u.toString()).sort(), expected.trackedUsers);
    assert.equal((await machine.roomKeyCounts()).total, expected.roomKeys);
    // Alice's inbound session and the Olm session that brought it survived.
    assert.equal(await decryptBody(machine, expected.aliceEvent), expected.aliceBody);
    // The bot's outbound session goes on where it was: same session, next index.
    const room = new RoomId(String(expected.aliceEvent['room_id']));
    assert.deepEqual(await machine.shareRoomKey(room, [new UserId('@alice:example.org')], new EncryptionSettings()), [], 'the room key was shared before');
    const next = megolmIdentity(JSON.parse(await machine.encryptRoomEvent(room, 'm.room.message', JSON.stringify({ msgtype: 'm.text', body: 'after' }))) as Record<string, unknown>);
    assert.deepEqual(next, { sessionId: expected.lastOutbound.sessionId, index: expected.lastOutbound.index + 1 });
    machine.close();
    store.close();

    // The old files were moved aside, once; the next start opens the SQLite store alone.
    const files = readdirSync(join(dir, 'crypto'));
    assert.ok(files.includes(STORE_FILE));
    assert.ok(!files.some((f) => f.endsWith('.snapshot')));
    const aside = files.filter((f) => f.startsWith('migrated-snapshots-'));
    assert.equal(aside.length, 1);
    assert.equal(readdirSync(join(dir, 'crypto', aside[0] as string)).filter((f) => f.endsWith('.snapshot')).length, 2);
    const again = new CryptoStore({ storeName: 'openclaw-crypto' });
    const loaded = await again.open(join(dir, 'crypto'));
    assert.equal(loaded.kind, 'loaded');
    assert.equal(loaded.kind === 'loaded' && loaded.migrated, undefined);
    assert.equal(loaded.kind === 'loaded' && loaded.device?.deviceId, expected.deviceId);
    again.close();
  });

  test('the passphrase behaves as before: a wrong one is a start-up error, not a new device', async () => {
    const dir = copyFixture();
    await assert.rejects(open(dir, 'not the passphrase'), (e) => e instanceof StartupError && e.exitCode === 4 && /storage\.passphrase does not open the crypto store/.test(e.message));
    // The store stays as it was migrated, for the right passphrase.
    const { deviceId, machine, store } = await open(dir);
    assert.equal(deviceId, expected.deviceId);
    machine.close();
    store.close();
  });

  test('a damaged snapshot is reported, never half-migrated', async () => {
    const dir = copyFixture();
    const newest = readdirSync(join(dir, 'crypto')).filter((f) => f.endsWith('.snapshot')).sort().at(-1) as string;
    truncateSync(join(dir, 'crypto', newest), 1000);
    const store = new CryptoStore({ storeName: 'openclaw-crypto' });
    const loaded = await store.open(join(dir, 'crypto'));
    assert.equal(loaded.kind, 'corrupt');
    assert.match(loaded.kind === 'corrupt' ? loaded.reason : '', /snapshot .* is unreadable: .*checksum mismatch/);
    assert.equal(loaded.kind === 'corrupt' && loaded.device?.deviceId, expected.deviceId, 'device.json names the device to replace');
    store.close();
    // The bot then starts over with a new device, keeping the damaged files aside.
    const opened = await open(dir);
    assert.notEqual(opened.deviceId, expected.deviceId);
    assert.equal(opened.replaced?.oldDeviceId, expected.deviceId);
    assert.ok(!existsSync(join(dir, 'crypto', newest)));
    opened.machine.close();
    opened.store.close();
  });
});
