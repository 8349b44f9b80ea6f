/**
 * The crypto store (src/crypto/crypto-store.ts) with the real wasm engine: what a restart keeps,
 * file modes, damage and loss detected, ownership, discarding, and that one new session writes the
 * same small amount whatever the store holds (counted in records and bytes, not timed).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as sdk from '@matrix-org/matrix-sdk-crypto-wasm';
import { DatabaseSync } from 'node:sqlite';
import { checkStoreOwner, CryptoStore, DEVICE_FILE, STORE_FILE, type LoadResult } from '../../src/crypto/crypto-store.ts';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { silentLogger, type Logger } from '../../src/log.ts';
import { EngineHomeserver, exportedRoomKeys } from '../../src/dev/engine-homeserver.ts';

const USER = '@bot:example.org';
const DEVICE = 'BOTDEVICE';
const STORE = 'crypto';
const PASSPHRASE = 'test passphrase';

let root: string;
let counter = 0;
before(async () => {
  root = await fs.mkdtemp(join(tmpdir(), 'crypto-store-'));
  await sdk.initAsync();
});
after(() => fs.rm(root, { recursive: true, force: true }));
const newDir = (): string => join(root, `store-${++counter}`);

async function openStore(dir: string): Promise<{ store: CryptoStore; loaded: LoadResult }> {
  const store = new CryptoStore({ storeName: STORE });
  const loaded = await store.open(dir);
  if (loaded.kind !== 'corrupt') store.install();
  return { store, loaded };
}
const initMachine = (deviceId = DEVICE): Promise<sdk.OlmMachine> => sdk.OlmMachine.initialize(new sdk.UserId(USER), new sdk.DeviceId(deviceId), STORE, PASSPHRASE);
const identity = (m: sdk.OlmMachine) => ({ deviceId: m.deviceId.toString(), ed25519: m.identityKeys.ed25519.toBase64(), curve25519: m.identityKeys.curve25519.toBase64() });
const tracked = async (m: sdk.OlmMachine): Promise<string[]> => [...(await m.trackedUsers())].map((u) => u.toString()).sort();

/** A device in `dir` with its keys uploaded; the machine is closed, the store too. */
async function createDevice(dir: string): Promise<ReturnType<typeof identity>> {
  const { store, loaded } = await openStore(dir);
  assert.equal(checkStoreOwner(loaded, { userId: USER }).kind, 'fresh');
  const machine = await initMachine();
  await store.setDevice({ userId: USER, deviceId: DEVICE });
  await new EngineHomeserver().drain(machine);
  const id = identity(machine);
  machine.close();
  store.close();
  return id;
}

describe('CryptoStore with the wasm OlmMachine', () => {
  test('a restart keeps identity, tracked users and uploaded keys, with no flush and no close', async () => {
    const dir = newDir();
    const { store, loaded } = await openStore(dir);
    assert.deepEqual(loaded, { kind: 'fresh' });
    const machine = await initMachine();
    await store.setDevice({ userId: USER, deviceId: DEVICE });
    await new EngineHomeserver().drain(machine);
    await machine.updateTrackedUsers([new sdk.UserId('@alice:example.org')]);
    const before = identity(machine);
    const users = await tracked(machine);
    // Nothing else: what the engine's promises resolved is on disk already.
    const again = await openStore(dir);
    assert.equal(again.loaded.kind, 'loaded');
    assert.deepEqual(checkStoreOwner(again.loaded, { userId: USER, deviceId: DEVICE }), { kind: 'match', userId: USER, deviceId: DEVICE, created: again.store.device?.created });
    const reopened = await initMachine();
    assert.deepEqual(identity(reopened), before);
    assert.deepEqual(await tracked(reopened), users);
    assert.equal((await reopened.outgoingRequests()).filter((r) => r.type === sdk.RequestType.KeysUpload).length, 0, 'keys are not uploaded twice');
    reopened.close();
    machine.close();
    again.store.close();
    store.close();
  });

  test('the store file, its WAL and device.json are mode 0600 whatever the umask', async () => {
    const dir = newDir();
    const old = process.umask(0o022);
    try {
      const { store } = await openStore(dir);
      const machine = await initMachine();
      await store.setDevice({ userId: USER, deviceId: DEVICE });
      const files = (await fs.readdir(dir)).filter((f) => !f.startsWith('.'));
      assert.deepEqual(files.sort(), [DEVICE_FILE, STORE_FILE, `${STORE_FILE}-shm`, `${STORE_FILE}-wal`].sort());
      for (const f of files) assert.equal((await fs.stat(join(dir, f))).mode & 0o777, 0o600, f);
      machine.close();
      store.close();
    } finally {
      process.umask(old);
    }
  });

  test('a damaged file is reported as corrupt at open, naming the device', async () => {
    const dir = newDir();
    await createDevice(dir);
    const path = join(dir, STORE_FILE);
    const intact = await fs.readFile(path);
    const expectCorrupt = async (): Promise<void> => {
      const { store, loaded } = await openStore(dir);
      const check = checkStoreOwner(loaded, { userId: USER });
      assert.equal(check.kind, 'corrupt', JSON.stringify(loaded));
      assert.match(check.kind === 'corrupt' ? check.reason : '', /damaged/);
      assert.equal(check.kind === 'corrupt' && check.storedDeviceId, DEVICE, 'device.json still names the device');
      store.close();
    };
    await fs.writeFile(path, intact.subarray(0, Math.floor(intact.length / 2)));
    await expectCorrupt();
    await fs.writeFile(path, Buffer.from('this is not a database at all, just garbage '.repeat(200)));
    await expectCorrupt();
    await fs.writeFile(path, intact);
    await fs.writeFile(join(dir, DEVICE_FILE), '{not json');
    const { store, loaded } = await openStore(dir);
    assert.equal(checkStoreOwner(loaded, { userId: USER }).kind, 'corrupt');
    store.close();
  });

  test('a damaged record is found when read (or by verify), and the bot starts over with a new device', async () => {
    const dir = newDir();
    const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };
    const open = (logger: Logger = silentLogger()) => openDeviceCrypto({ userId: USER, dir, passphrase: PASSPHRASE, devices, freshDeviceId: DEVICE, logger });
    const first = await open();
    first.machine.close();
    first.store.close();
    // Bytes of the account's record change while SQLite's structure stays intact (bit rot).
    const path = join(dir, 'crypto', STORE_FILE);
    const raw = new DatabaseSync(path);
    raw.exec("UPDATE idb_records SET value = CAST(replace(CAST(value AS TEXT), 'ciphertext', 'cipherTEXT') AS BLOB) WHERE store = (SELECT id FROM idb_stores WHERE name = 'core')");
    raw.close();
    const store = new CryptoStore({ storeName: 'openclaw-crypto' });
    assert.equal((await store.open(join(dir, 'crypto'))).kind, 'loaded', 'structure intact: the open does not read every record');
    assert.match(store.verify() ?? '', /matrix-sdk-crypto\/core fails its checksum/);
    store.install();
    await assert.rejects(
      sdk.OlmMachine.initialize(new sdk.UserId(USER), new sdk.DeviceId(DEVICE), 'openclaw-crypto', PASSPHRASE),
      /the crypto store is damaged: a record of openclaw-crypto::matrix-sdk-crypto\/core fails its checksum/,
    );
    store.close();

    const again = await open();
    assert.notEqual(again.deviceId, DEVICE);
    assert.match(again.replaced?.reason ?? '', /damaged/);
    assert.equal(again.replaced?.oldDeviceId, DEVICE);
    again.machine.close();
    again.store.close();
  });

  test('a lost store with device.json left behind is corrupt and names the old device', async () => {
    const dir = newDir();
    await createDevice(dir);
    await fs.unlink(join(dir, STORE_FILE));
    const { store, loaded } = await openStore(dir);
    const check = checkStoreOwner(loaded, { userId: USER });
    assert.equal(check.kind, 'corrupt');
    assert.equal(check.kind === 'corrupt' && check.storedDeviceId, DEVICE);
    store.close();
  });

  test('mismatch: another device or another user', async () => {
    const dir = newDir();
    await createDevice(dir);
    const { store, loaded } = await openStore(dir);
    assert.deepEqual(checkStoreOwner(loaded, { userId: USER, deviceId: 'OTHER' }), { kind: 'mismatch', storedUserId: USER, storedDeviceId: DEVICE });
    assert.deepEqual(checkStoreOwner(loaded, { userId: '@other:example.org' }), { kind: 'mismatch', storedUserId: USER, storedDeviceId: DEVICE });
    await assert.rejects(initMachine('OTHER'), /doesn't match/);
    store.close();
  });

  test('discard moves the files aside; a new device starts on an empty store', async () => {
    const dir = newDir();
    await createDevice(dir);
    const { store } = await openStore(dir);
    const moved = await store.discard();
    assert.deepEqual((await fs.readdir(moved)).filter((f) => f === DEVICE_FILE || f === STORE_FILE).sort(), [DEVICE_FILE, STORE_FILE].sort());
    const next = await openStore(dir);
    assert.deepEqual(next.loaded, { kind: 'fresh' });
    const machine = await initMachine('NEWDEVICE');
    await next.store.setDevice({ userId: USER, deviceId: 'NEWDEVICE' });
    machine.close();
    next.store.close();
    const again = await openStore(dir);
    assert.equal(checkStoreOwner(again.loaded, { userId: USER, deviceId: 'NEWDEVICE' }).kind, 'match');
    again.store.close();
  });
});

/** Bytes this process has handed to write(2) so far. */
const wchar = (): number => Number(/^wchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))?.[1]);

describe('one new session writes O(1) data', () => {
  test('the records and bytes written for one new room key do not grow with the sessions held', async () => {
    const cost: Array<{ held: number; records: number; bytes: number; commits: number; written: number }> = [];
    for (const held of [20, 2000]) {
      const dir = newDir();
      const { store } = await openStore(dir);
      const machine = await initMachine();
      await store.setDevice({ userId: USER, deviceId: DEVICE });
      for (let i = 0; i < held; i += 1000) await machine.importExportedRoomKeys(exportedRoomKeys(Math.min(1000, held - i), `held${i}`), () => undefined);
      await store.flush();
      for (let r = 0; r < 6; r++) {
        const w0 = wchar();
        await machine.importExportedRoomKeys(exportedRoomKeys(1, `new${r}`), () => undefined);
        const stats = await store.flush();
        cost.push({ held, records: stats.records, bytes: stats.bytes, commits: stats.commits, written: wchar() - w0 });
      }
      assert.equal((await machine.roomKeyCounts()).total, held + 6);
      machine.close();
      store.close();
    }
    const small = cost.filter((c) => c.held === 20);
    const large = cost.filter((c) => c.held === 2000);
    for (const c of cost) {
      assert.equal(c.records, 1, `one record for one session: ${JSON.stringify(c)}`);
      assert.ok(c.bytes < 4096, `the record is a few KiB: ${JSON.stringify(c)}`);
      assert.ok(c.written <= 64 * 1024, `at most 64 KiB reach the disk: ${JSON.stringify(c)}`);
    }
    // 100× the sessions, about the same few pages: the record's and its index entries' b-tree
    // leaves, sometimes a page split (the snapshot store wrote the whole 3.5 MB store here).
    const mean = (list: typeof cost): number => list.reduce((n, c) => n + c.written, 0) / list.length;
    assert.ok(mean(large) <= 2 * mean(small) + 8 * 1024, `written with 2,000 sessions ${mean(large)} vs 20 sessions ${mean(small)} bytes on average`);
  });
});
