import { strict as assert } from "node:assert";
import * as fs from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as sdk from "@matrix-org/matrix-sdk-crypto-wasm";
import { DEVICE_FILE, DurableIndexedDb, checkStoreOwner, segmentFileName, type LoadResult, type SnapshotFs } from "../../src/crypto/durable-idb.ts";

const USER = "@bot:example.org";
const DEVICE = "BOTDEVICE";
const STORE = "crypto";
const PASSPHRASE = "test passphrase";

let root: string;
before(async () => {
  root = await fs.mkdtemp(join(tmpdir(), "durable-idb-"));
  await sdk.initAsync();
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

let dirCounter = 0;
function newDir(): string {
  return join(root, `store-${++dirCounter}`);
}

/** A store on a brand-new fake IndexedDB factory, installed as the engine's, loaded from `dir`. */
async function openStore(dir: string, fsImpl?: SnapshotFs): Promise<{ store: DurableIndexedDb; loaded: LoadResult }> {
  const store = new DurableIndexedDb(fsImpl ? { storeName: STORE, fs: fsImpl } : { storeName: STORE });
  store.install();
  const loaded = await store.load(dir);
  return { store, loaded };
}

function initMachine(deviceId = DEVICE): Promise<sdk.OlmMachine> {
  return sdk.OlmMachine.initialize(new sdk.UserId(USER), new sdk.DeviceId(deviceId), STORE, PASSPHRASE);
}

/** Answer the machine's outgoing requests with fabricated successful responses. */
async function drain(machine: sdk.OlmMachine): Promise<void> {
  const uploaded = new Map<string, unknown>(); // user → device keys from KeysUpload
  for (let round = 0; round < 10; round++) {
    const requests = await machine.outgoingRequests();
    if (requests.length === 0) return;
    for (const req of requests) {
      let response: unknown = {};
      const body = JSON.parse(req.body) as Record<string, Record<string, unknown>>;
      if (req.type === sdk.RequestType.KeysUpload) {
        if (body["device_keys"]) uploaded.set(machine.userId.toString(), body["device_keys"]);
        response = { one_time_key_counts: { signed_curve25519: 50 } };
      } else if (req.type === sdk.RequestType.KeysQuery) {
        // Every queried user: only our own device is known to this fake server.
        const deviceKeys: Record<string, Record<string, unknown>> = {};
        for (const user of Object.keys(body["device_keys"] ?? {})) {
          const keys = uploaded.get(user);
          deviceKeys[user] = keys ? { [machine.deviceId.toString()]: keys } : {};
        }
        response = { device_keys: deviceKeys, failures: {} };
      }
      if (req.id !== undefined) await machine.markRequestAsSent(req.id, req.type, JSON.stringify(response));
    }
  }
  throw new Error("outgoing requests did not settle");
}

function identity(machine: sdk.OlmMachine): { deviceId: string; ed25519: string; curve25519: string } {
  return { deviceId: machine.deviceId.toString(), ed25519: machine.identityKeys.ed25519.toBase64(), curve25519: machine.identityKeys.curve25519.toBase64() };
}

async function trackedUsers(machine: sdk.OlmMachine): Promise<string[]> {
  return [...(await machine.trackedUsers())].map((u) => u.toString()).sort();
}

async function segments(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => n.endsWith(".snapshot")).sort();
}

/** Create a device in `dir`, upload its keys, flush; return its identity. */
async function createDevice(dir: string): Promise<ReturnType<typeof identity>> {
  const { store, loaded } = await openStore(dir);
  assert.equal(checkStoreOwner(loaded, { userId: USER }).kind, "fresh");
  const machine = await initMachine();
  await store.setDevice({ userId: USER, deviceId: DEVICE });
  await drain(machine);
  const stats = await store.flush();
  assert.equal(stats.written, true);
  const id = identity(machine);
  machine.close();
  store.close();
  return id;
}

describe("DurableIndexedDb with the wasm OlmMachine", () => {
  test("a machine re-opened from the snapshot on a new IndexedDB keeps its identity and state", async () => {
    const dir = newDir();
    const { store, loaded } = await openStore(dir);
    assert.deepEqual(loaded, { kind: "fresh" });
    const machine = await initMachine();
    await store.setDevice({ userId: USER, deviceId: DEVICE });
    await drain(machine);
    await machine.updateTrackedUsers([new sdk.UserId("@alice:example.org")]);
    await drain(machine);
    const stats = await store.flush();
    assert.ok(stats.bytes > 0 && stats.databases === 2, `two databases (store + meta) written: ${JSON.stringify(stats)}`);
    const before = identity(machine);
    const tracked = await trackedUsers(machine);
    machine.close();
    store.close();

    // Simulated restart: new factory, nothing in memory.
    const again = await openStore(dir);
    assert.equal(again.loaded.kind, "loaded");
    assert.deepEqual(checkStoreOwner(again.loaded, { userId: USER, deviceId: DEVICE }), {
      kind: "match",
      userId: USER,
      deviceId: DEVICE,
      created: again.store.device?.created,
    });
    const reopened = await initMachine();
    assert.deepEqual(identity(reopened), before);
    assert.deepEqual(await trackedUsers(reopened), tracked);
    // Keys were marked as uploaded before the flush: nothing to upload again.
    const pending = await reopened.outgoingRequests();
    assert.equal(pending.filter((r) => r.type === sdk.RequestType.KeysUpload).length, 0);
    reopened.close();
    again.store.close();
  });

  test("snapshot files and device.json are mode 0600", async () => {
    const dir = newDir();
    await createDevice(dir);
    const files = [...(await segments(dir)), DEVICE_FILE];
    assert.ok(files.length >= 2);
    for (const f of files) {
      const st = await fs.stat(join(dir, f));
      assert.equal(st.mode & 0o777, 0o600, `${f} mode ${(st.mode & 0o777).toString(8)}`);
    }
  });

  test("a truncated or garbage snapshot is reported as corrupt, not thrown", async () => {
    const dir = newDir();
    await createDevice(dir);
    const [newest] = (await segments(dir)).reverse();
    assert.ok(newest);
    const path = join(dir, newest);
    const size = (await fs.stat(path)).size;

    await fs.truncate(path, Math.floor(size / 2));
    let { store, loaded } = await openStore(dir);
    let check = checkStoreOwner(loaded, { userId: USER });
    assert.equal(check.kind, "corrupt");
    assert.equal(check.kind === "corrupt" && check.storedDeviceId, DEVICE, "device.json still names the lost device");
    store.close();

    await fs.writeFile(path, Buffer.from("this is not a snapshot at all, just some garbage bytes ".repeat(20)));
    ({ store, loaded } = await openStore(dir));
    check = checkStoreOwner(loaded, { userId: USER });
    assert.equal(check.kind, "corrupt");
    assert.match(check.kind === "corrupt" ? check.reason : "", /bad magic/);
    store.close();

    await fs.writeFile(join(dir, DEVICE_FILE), "{not json");
    ({ store, loaded } = await openStore(dir));
    assert.equal(checkStoreOwner(loaded, { userId: USER }).kind, "corrupt");
    store.close();
  });

  test("a lost snapshot with device.json left behind is corrupt and names the old device", async () => {
    const dir = newDir();
    await createDevice(dir);
    for (const f of await segments(dir)) await fs.unlink(join(dir, f));
    const { store, loaded } = await openStore(dir);
    const check = checkStoreOwner(loaded, { userId: USER });
    assert.equal(check.kind, "corrupt");
    assert.equal(check.kind === "corrupt" && check.storedDeviceId, DEVICE);
    store.close();
  });

  test("mismatch detection: other device or other user", async () => {
    const dir = newDir();
    await createDevice(dir);
    const { store, loaded } = await openStore(dir);
    assert.deepEqual(checkStoreOwner(loaded, { userId: USER, deviceId: "OTHER" }), { kind: "mismatch", storedUserId: USER, storedDeviceId: DEVICE });
    assert.deepEqual(checkStoreOwner(loaded, { userId: "@other:example.org" }), { kind: "mismatch", storedUserId: USER, storedDeviceId: DEVICE });
    assert.equal(checkStoreOwner(loaded, { userId: USER }).kind, "match");
    // The engine refuses too, with its own error.
    await assert.rejects(initMachine("OTHER"), /doesn't match/);
    store.close();
  });

  test("a failed write leaves the previous snapshot intact and the next flush catches up", async () => {
    const dir = newDir();
    let failWrites = false;
    const failingFs: SnapshotFs = {
      rename: fs.rename,
      unlink: fs.unlink,
      open: (async (path: string, flags?: string, mode?: number) => {
        const fh = await fs.open(path, flags, mode);
        if (!failWrites) return fh;
        return new Proxy(fh, {
          get(target, prop) {
            if (prop === "write") {
              return async (buf: Uint8Array, offset: number, length: number) => {
                await target.write(buf, offset, Math.min(length, 64));
                throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
              };
            }
            const v: unknown = Reflect.get(target, prop, target);
            return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
      }) as unknown as typeof fs.open,
    };

    const { store } = await openStore(dir, failingFs);
    const machine = await initMachine();
    await store.setDevice({ userId: USER, deviceId: DEVICE });
    await drain(machine);
    await store.flush();
    const filesBefore = await segments(dir);
    const bytesBefore = await Promise.all(filesBefore.map((f) => fs.readFile(join(dir, f))));

    await machine.updateTrackedUsers([new sdk.UserId("@carol:example.org")]);
    failWrites = true;
    await assert.rejects(store.flush(), /ENOSPC/);
    assert.deepEqual(await fs.readdir(dir).then((all) => all.filter((f) => f.endsWith(".tmp"))), [], "temp file removed");
    assert.deepEqual(await segments(dir), filesBefore);
    const bytesAfter = await Promise.all(filesBefore.map((f) => fs.readFile(join(dir, f))));
    assert.deepEqual(bytesAfter, bytesBefore);

    // What is on disk is the old state: a restart would not know carol.
    {
      const probe = new DurableIndexedDb({ storeName: STORE });
      probe.install();
      assert.equal((await probe.load(dir)).kind, "loaded");
      const m = await initMachine();
      assert.ok(!(await trackedUsers(m)).includes("@carol:example.org"));
      m.close();
      probe.close();
    }

    // The next successful flush writes the change that failed before.
    store.install();
    failWrites = false;
    const stats = await store.flush();
    assert.equal(stats.written, true);
    assert.ok(stats.serialised.includes("matrix-sdk-crypto/tracked_users"), JSON.stringify(stats.serialised));
    machine.close();
    store.close();

    const { store: s2 } = await openStore(dir);
    const m2 = await initMachine();
    assert.ok((await trackedUsers(m2)).includes("@carol:example.org"));
    m2.close();
    s2.close();
  });

  test("incremental flushes: untouched stores are not rewritten, a no-op flush writes nothing", async () => {
    const dir = newDir();
    const { store } = await openStore(dir);
    const machine = await initMachine();
    await store.setDevice({ userId: USER, deviceId: DEVICE });
    await drain(machine);
    const first = await store.flush();
    assert.equal(first.serialised.length, first.storesTotal, "first flush reads everything");

    const idle = await store.flush();
    assert.equal(idle.written, false);
    assert.deepEqual(idle.serialised, []);

    await machine.updateTrackedUsers([new sdk.UserId("@dave:example.org")]);
    await drain(machine);
    const inc = await store.flush();
    assert.equal(inc.written, true);
    assert.ok(inc.serialised.length < inc.storesTotal, JSON.stringify(inc.serialised));
    assert.ok(inc.bytes < first.bytes, `incremental segment ${inc.bytes} < full ${first.bytes}`);
    // The old segment is still referenced by unchanged stores; a restart sees everything.
    const before = identity(machine);
    machine.close();
    store.close();
    assert.equal((await segments(dir)).length, 2);

    const { store: s2, loaded } = await openStore(dir);
    assert.equal(loaded.kind === "loaded" && loaded.gen, inc.gen);
    const m2 = await initMachine();
    assert.deepEqual(identity(m2), before);
    assert.ok((await trackedUsers(m2)).includes("@dave:example.org"));
    // Right after a load nothing is dirty.
    assert.equal((await s2.flush()).written, false);
    m2.close();
    s2.close();
  });

  test("discard moves the files aside and empties the IndexedDB for a new device", async () => {
    const dir = newDir();
    await createDevice(dir);
    const { store } = await openStore(dir);
    const moved = await store.discard();
    assert.deepEqual(await segments(dir), []);
    assert.ok((await fs.readdir(moved)).includes(DEVICE_FILE));
    const machine = await initMachine("NEWDEVICE");
    assert.equal(machine.deviceId.toString(), "NEWDEVICE");
    await store.setDevice({ userId: USER, deviceId: "NEWDEVICE" });
    await store.flush();
    machine.close();
    store.close();
    const again = await openStore(dir);
    assert.equal(checkStoreOwner(again.loaded, { userId: USER }).kind, "match");
    again.store.close();
  });
});

describe("DurableIndexedDb snapshot fidelity (plain IndexedDB)", () => {
  interface Req<T> {
    result: T;
    error: unknown;
    onsuccess: (() => void) | null;
    onerror: (() => void) | null;
    onupgradeneeded?: (() => void) | null;
  }
  const req = <T>(r: Req<T>): Promise<T> =>
    new Promise((resolve, reject) => {
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });

  test("structured-clone values, keys, indexes, keyPath and autoIncrement round-trip", async () => {
    const dir = newDir();
    const { store } = await openStore(dir);
    const name = `${STORE}::plain`;
    const open = (store.factory as any).open(name, 3) as Req<any>;
    open.onupgradeneeded = () => {
      const db = open.result;
      const a = db.createObjectStore("outofline");
      a.createIndex("byTag", "tag", { unique: false, multiEntry: true });
      const b = db.createObjectStore("inline", { keyPath: ["room", "id"] });
      b.createIndex("byRoom", "room", { unique: false });
      db.createObjectStore("auto", { autoIncrement: true });
    };
    const db = await req(open);
    const tx = db.transaction(["outofline", "inline", "auto"], "readwrite");
    const value = { bytes: new Uint8Array([1, 2, 3]), buf: new ArrayBuffer(4), map: new Map([["k", 1]]), date: new Date(5), tag: ["x", "y"], n: 1n };
    tx.objectStore("outofline").put(value, ["array", "key", 1]);
    tx.objectStore("outofline").put("plain", new Uint8Array([9]));
    tx.objectStore("inline").put({ room: "!r", id: 7, body: "hi" });
    tx.objectStore("auto").put({ a: 1 });
    tx.objectStore("auto").put({ a: 2 });
    await new Promise((resolve) => (tx.oncomplete = resolve));
    db.close();
    await store.setDevice({ userId: USER, deviceId: DEVICE });
    await store.flush();
    store.close();

    const { store: s2, loaded } = await openStore(dir);
    assert.equal(loaded.kind === "loaded" && loaded.records, 5);
    const db2 = await req((s2.factory as any).open(name) as Req<any>);
    assert.equal(db2.version, 3);
    const t2 = db2.transaction(["outofline", "inline", "auto"], "readonly");
    const got = await req(t2.objectStore("outofline").get(["array", "key", 1]));
    assert.deepEqual(got, value);
    assert.ok(got.bytes instanceof Uint8Array && got.map instanceof Map && got.date instanceof Date);
    assert.equal(await req(t2.objectStore("outofline").get(new Uint8Array([9]))), "plain");
    assert.deepEqual(await req(t2.objectStore("outofline").index("byTag").getAllKeys("y")), [["array", "key", 1]]);
    const inline = t2.objectStore("inline");
    assert.deepEqual(inline.keyPath, ["room", "id"]);
    assert.deepEqual(await req(inline.index("byRoom").getAll("!r")), [{ room: "!r", id: 7, body: "hi" }]);
    const auto = t2.objectStore("auto");
    assert.equal(auto.autoIncrement, true);
    assert.deepEqual(await req(auto.getAllKeys()), [1, 2]);
    db2.close();
    // The key generator continues after the restored keys.
    const db3 = await req((s2.factory as any).open(name) as Req<any>);
    const t3 = db3.transaction("auto", "readwrite");
    assert.equal(await req(t3.objectStore("auto").put({ a: 3 })), 3);
    db3.close();
    assert.equal((await segments(dir)).length, 1);
    assert.equal(segmentFileName(1), (await segments(dir))[0]);
    await s2.flush(); // caches a connection, which must not block the upgrade below

    // A schema upgrade (as a new engine version would do) invalidates everything cached.
    const up = (s2.factory as any).open(name, 4) as Req<any>;
    up.onupgradeneeded = () => {
      (up as any).transaction.objectStore("inline").createIndex("byBody", "body", { unique: false });
    };
    (await req(up)).close();
    const stats = await s2.flush();
    assert.equal(stats.serialised.length, 3, JSON.stringify(stats.serialised));
    s2.close();
    const { store: s3 } = await openStore(dir);
    const db4 = await req((s3.factory as any).open(name) as Req<any>);
    assert.equal(db4.version, 4);
    assert.deepEqual(await req(db4.transaction("inline", "readonly").objectStore("inline").index("byBody").getAll("hi")), [{ room: "!r", id: 7, body: "hi" }]);
    db4.close();
    s3.close();
  });
});
