/**
 * The IndexedDB subset over SQLite (src/crypto/idb), on its own: key order, the requests and
 * cursors the engine uses, transactions (order, auto-commit, abort, rollback), and that what a
 * transaction committed is in the file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IDBFactory } from '../../src/crypto/idb/factory.ts';
import { compareKeys, decodeKey, encodeKey, IDBKeyRange, type IdbKey } from '../../src/crypto/idb/key.ts';
import { SqliteBackend } from '../../src/crypto/idb/sqlite-backend.ts';

let root: string;
let n = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'idb-sqlite-'))));
after(() => rmSync(root, { recursive: true, force: true }));

/** IndexedDB's key comparison, written out from the spec, as the reference for the byte order. */
function reference(a: IdbKey, b: IdbKey): number {
  const type = (k: IdbKey): number => (typeof k === 'number' ? 0 : k instanceof Date ? 1 : typeof k === 'string' ? 2 : k instanceof ArrayBuffer ? 3 : 4);
  if (type(a) !== type(b)) return type(a) < type(b) ? -1 : 1;
  if (typeof a === 'number' || a instanceof Date) {
    const x = Number(a);
    const y = Number(b);
    return x === y ? 0 : x < y ? -1 : 1;
  }
  if (typeof a === 'string') return a === b ? 0 : a < (b as string) ? -1 : 1; // code-unit order
  if (a instanceof ArrayBuffer) return Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b as ArrayBuffer)));
  const bb = b as IdbKey[];
  for (let i = 0; i < Math.min(a.length, bb.length); i++) {
    const c = reference(a[i] as IdbKey, bb[i] as IdbKey);
    if (c !== 0) return c;
  }
  return a.length === bb.length ? 0 : a.length < bb.length ? -1 : 1;
}

function randomKey(depth = 0): IdbKey {
  const r = Math.random();
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;
  if (r < 0.2) return pick([0, -0, 1, -1, 0.5, -1e300, 1e300, Infinity, -Infinity, 2 ** 53, Math.random() * 1000 - 500]);
  if (r < 0.3) return new Date(Math.floor(Math.random() * 2e12));
  if (r < 0.6) {
    const units = [0, 1, 0x7e, 0x7f, 0x80, 0x3fff, 0x407d, 0x407e, 0xd800, 0xffff, 97, 98];
    return String.fromCharCode(...Array.from({ length: Math.floor(Math.random() * 4) }, () => pick(units)));
  }
  if (r < 0.75) return new Uint8Array(Array.from({ length: Math.floor(Math.random() * 4) }, () => pick([0, 1, 0x7e, 0x7f, 0x80, 0xfe, 0xff]))).buffer;
  if (depth > 2) return 'leaf';
  return Array.from({ length: Math.floor(Math.random() * 3) }, () => randomKey(depth + 1));
}

describe('keys', () => {
  test('the byte encoding sorts as IndexedDB compares, and decodes to the same key', () => {
    const keys = Array.from({ length: 3000 }, () => randomKey());
    // -0 and 0 are the same key; it comes back as 0.
    const norm = (k: IdbKey): IdbKey => (Array.isArray(k) ? k.map(norm) : Object.is(k, -0) ? 0 : k);
    for (const k of keys) assert.deepEqual(decodeKey(encodeKey(k)), norm(k));
    for (let i = 0; i < keys.length - 1; i++) {
      const a = keys[i] as IdbKey;
      const b = keys[i + 1] as IdbKey;
      assert.equal(compareKeys(a, b), reference(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }
  });

  test('ranges include what IndexedDB includes', () => {
    assert.ok(IDBKeyRange.bound('a', 'b').includes('a'));
    assert.ok(!IDBKeyRange.bound('a', 'b', true).includes('a'));
    assert.ok(IDBKeyRange.bound(['x', 1, 'a'], ['x', 2], true, true).includes(['x', 1, 'b']));
    assert.ok(!IDBKeyRange.bound(['x', 1, 'a'], ['x', 2], true, true).includes(['x', 2]));
    assert.throws(() => IDBKeyRange.bound('b', 'a'), { name: 'DataError' });
    assert.throws(() => IDBKeyRange.only({}), { name: 'DataError' });
  });
});

// ---- a tiny promise layer over the event API, as a test's view of it ----------------------------
type Req = { result: any; error: any; onsuccess: any; onerror: any; onupgradeneeded?: any; transaction?: any };
const req = (r: Req): Promise<any> => new Promise((resolve, reject) => ((r.onsuccess = () => resolve(r.result)), (r.onerror = () => reject(r.error))));
const done = (tx: any): Promise<void> => new Promise((resolve, reject) => ((tx.oncomplete = () => resolve()), (tx.onabort = () => reject(tx.error ?? new Error('aborted')))));

function fresh(): { path: string; factory: IDBFactory; backend: SqliteBackend } {
  const path = join(root, `db-${++n}.sqlite`);
  const backend = new SqliteBackend(path);
  return { path, backend, factory: new IDBFactory(backend) };
}

async function openWithSchema(factory: IDBFactory): Promise<any> {
  const open = factory.open('t::db', 3) as unknown as Req;
  open.onupgradeneeded = (e: { oldVersion: number; newVersion: number }) => {
    assert.deepEqual([e.oldVersion, e.newVersion], [0, 3]);
    const db = open.result;
    const s = db.createObjectStore('sessions');
    s.createIndex('by_sender', ['sender', 'type', 'id']);
    s.createIndex('backup', 'needs_backup', { unique: false });
    s.createIndex('tags', 'tags', { multiEntry: true });
    db.createObjectStore('core').createIndex('by_info', 'info', { unique: true });
  };
  return req(open);
}

describe('the IndexedDB subset', () => {
  test('upgrade, put/get/getAll/getAllKeys/count/delete with keys and ranges, values cloned', async () => {
    const { factory } = fresh();
    const db = await openWithSchema(factory);
    assert.deepEqual([...db.objectStoreNames], ['core', 'sessions']);
    const tx = db.transaction(['sessions'], 'readwrite');
    const s = tx.objectStore('sessions');
    const value = { sender: 'alice', type: 1, id: 'x', needs_backup: 1, tags: ['a', 'b', 'a'], map: new Map([[1, 2]]), bytes: new Uint8Array([1, 2]), when: new Date(5), big: 7n };
    s.put(value, 'k1');
    value.sender = 'mutated after put'; // the store cloned the value at put time
    s.put({ sender: 'alice', type: 2, id: 'y', tags: ['b'] }, 'k2');
    s.put({ sender: 'bob', type: 1, id: 'z' }, ['array', 1]);
    await done(tx);

    const r = db.transaction('sessions', 'readonly').objectStore('sessions');
    const got = await req(r.get('k1'));
    assert.equal(got.sender, 'alice');
    assert.ok(got.map instanceof Map && got.bytes instanceof Uint8Array && got.when instanceof Date && got.big === 7n);
    assert.deepEqual(await req(r.getAllKeys()), ['k1', 'k2', ['array', 1]], 'strings before arrays');
    assert.deepEqual((await req(r.getAll(IDBKeyRange.bound('k1', 'k2', true)))).map((v: any) => v.id), ['y']);
    assert.deepEqual((await req(r.getAll(null, 1))).map((v: any) => v.id), ['x']);
    assert.equal(await req(r.count()), 3);
    assert.equal(await req(r.get('nope')), undefined);
    const ix = r.index('by_sender');
    assert.deepEqual((await req(ix.getAll(IDBKeyRange.bound(['alice', 1, ''], ['alice', 2], true, true)))).map((v: any) => v.id), ['x']);
    assert.deepEqual(await req(ix.getAllKeys(['bob', 1, 'z'])), [['array', 1]]);
    assert.equal(await req(r.index('backup').count()), 1, 'a record without the key path is not in the index');
    assert.deepEqual(await req(r.index('tags').getAllKeys('b')), ['k1', 'k2'], 'multiEntry: one entry per distinct element');

    const w = db.transaction('sessions', 'readwrite').objectStore('sessions');
    w.delete(IDBKeyRange.lowerBound('k2'));
    assert.deepEqual(await req(w.getAllKeys()), ['k1'], 'the delete ran before the read (requests run in order)');
    assert.deepEqual(await req(w.index('tags').getAllKeys('b')), ['k1'], 'index entries went with the record');
    db.close();
  });

  test('cursors walk in key order, and update and delete where they stand', async () => {
    const { factory } = fresh();
    const db = await openWithSchema(factory);
    const tx = db.transaction('sessions', 'readwrite');
    const s = tx.objectStore('sessions');
    for (const k of ['c', 'a', 'b', 'd']) s.put({ sender: k, type: 0, id: k, needs_backup: 1 }, k);
    const seen: string[] = [];
    const cursorReq = s.openCursor(IDBKeyRange.upperBound('c'));
    cursorReq.onsuccess = () => {
      const cursor = cursorReq.result;
      if (!cursor) return;
      seen.push(cursor.key);
      if (cursor.key === 'a') cursor.delete();
      if (cursor.key === 'b') cursor.update({ ...cursor.value, needs_backup: undefined });
      cursor.continue();
    };
    await done(tx);
    assert.deepEqual(seen, ['a', 'b', 'c']);
    const r = db.transaction('sessions').objectStore('sessions');
    assert.deepEqual(await req(r.getAllKeys()), ['b', 'c', 'd']);
    assert.deepEqual(await req(r.index('backup').getAllKeys()), ['c', 'd']);
    db.close();
  });

  test('an error aborts the transaction and rolls back its earlier writes; abort() does too', async () => {
    const { factory } = fresh();
    const db = await openWithSchema(factory);
    const tx = db.transaction('core', 'readwrite');
    const core = tx.objectStore('core');
    core.put({ info: 'one' }, 'a');
    core.put({ info: 'one' }, 'b'); // unique index: ConstraintError
    await assert.rejects(done(tx), { name: 'ConstraintError' });
    assert.equal(await req(db.transaction('core').objectStore('core').count()), 0);

    const t2 = db.transaction('core', 'readwrite');
    t2.objectStore('core').add({ info: 'x' }, 'a');
    const added = await req(t2.objectStore('core').get('a'));
    assert.equal(added.info, 'x');
    t2.abort();
    await assert.rejects(done(t2));
    assert.equal(await req(db.transaction('core').objectStore('core').count()), 0);
    assert.throws(() => db.transaction('core').objectStore('core').put(1, 'k'), { name: 'ReadOnlyError' });

    // commit() with a request pending, then abort() (the engine's glue aborts what it drops): committed.
    const t3 = db.transaction('core', 'readwrite');
    t3.objectStore('core').put({ info: 'kept' }, 'c');
    t3.commit();
    t3.abort();
    await done(t3);
    assert.equal((await req(db.transaction('core').objectStore('core').get('c'))).info, 'kept');
    db.close();
  });

  test('writers run one after another in creation order; a committed transaction is in the file', async () => {
    const { factory, path } = fresh();
    const db = await openWithSchema(factory);
    const order: string[] = [];
    const t1 = db.transaction('core', 'readwrite');
    const t2 = db.transaction('core', 'readwrite');
    t2.objectStore('core').put({ info: 'second' }, 'k').onsuccess = () => order.push('t2');
    t1.objectStore('core').put({ info: 'first' }, 'k').onsuccess = () => order.push('t1');
    await Promise.all([done(t1), done(t2)]);
    assert.deepEqual(order, ['t1', 't2']);
    // Another connection (another process after a crash) reads what was committed.
    const other = new IDBFactory(new SqliteBackend(path));
    const db2 = await req(other.open('t::db') as unknown as Req);
    assert.equal(db2.version, 3);
    assert.equal((await req(db2.transaction('core').objectStore('core').get('k'))).info, 'second');
    db.close();
    db2.close();
  });

  test('a later upgrade keeps the data and may add indexes over it', async () => {
    const { factory } = fresh();
    const db = await openWithSchema(factory);
    const tx = db.transaction('sessions', 'readwrite');
    tx.objectStore('sessions').put({ sender: 's', type: 1, id: 'i', room: '!r' }, 'k');
    await done(tx);
    db.close();
    const up = factory.open('t::db', 4) as unknown as Req;
    up.onupgradeneeded = () => up.transaction.objectStore('sessions').createIndex('by_room', 'room');
    const db4 = await req(up);
    assert.deepEqual(await req(db4.transaction('sessions').objectStore('sessions').index('by_room').getAllKeys('!r')), ['k']);
    await assert.rejects(req(factory.open('t::db', 2) as unknown as Req), { name: 'VersionError' });
    db4.close();
  });

  test('a damaged record is reported, never handed out', async () => {
    const { factory, backend } = fresh();
    const db = await openWithSchema(factory);
    const tx = db.transaction('core', 'readwrite');
    tx.objectStore('core').put({ info: 'secret key material' }, 'k');
    await done(tx);
    assert.equal(backend.verify(true), undefined);
    backend.exec("UPDATE idb_records SET value = CAST(replace(CAST(value AS TEXT), 'secret', 'SECRET') AS BLOB)");
    assert.match(backend.verify(true) ?? '', /t::db\/core fails its checksum/);
    await assert.rejects(req(db.transaction('core').objectStore('core').get('k')), { name: 'StoreDamageError' });
    db.close();
  });
});
