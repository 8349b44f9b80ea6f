/**
 * Where the IndexedDB records live: one SQLite file (sqlite-file.ts) holding every database,
 * object store, record and index entry of one crypto store. Records are rows, written one by one
 * inside the SQLite transaction of their IndexedDB transaction, so one new session writes a few
 * pages whatever the store holds, and nothing is kept in memory beyond SQLite's bounded page cache.
 *
 * Keys are stored in their sortable encoding (key.ts), values as V8 structured-clone bytes followed
 * by a CRC-32 of key and value: SQLite checks its own structure but not the bytes of a row, and a
 * damaged record must be reported, not handed to the engine.
 */
import { deserialize, serialize } from 'node:v8';
import { asKey, decodeKey, encodeKey, evaluateKeyPath, type ByteRange } from './key.ts';
import { recordSum, SqliteFile } from './sqlite-file.ts';

export interface IndexInfo {
  readonly id: number;
  readonly name: string;
  readonly keyPath: string | string[];
  readonly unique: boolean;
  readonly multiEntry: boolean;
}
export interface StoreInfo {
  readonly id: number;
  readonly db: string;
  readonly name: string;
  readonly indexes: Map<string, IndexInfo>;
}
export interface Row {
  readonly key: Buffer;
  readonly value: Buffer;
}
/** A value ready to store (see `prepare`). */
export interface Prepared {
  readonly bytes: Buffer;
  readonly indexKeys: Map<number, Buffer[]>;
}
/** An index entry with its record: `key` is the index key, `pk` the record's primary key. */
export interface IndexRow extends Row {
  readonly pk: Buffer;
}

/** A record whose checksum does not match: the file was damaged after it was written. */
export class StoreDamageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreDamageError';
  }
}

export function constraintError(message: string): DOMException {
  return new DOMException(message, 'ConstraintError');
}

const ALL: ByteRange = { lower: undefined, upper: undefined, lowerOpen: false, upperOpen: false };

/** `col > ?` and/or `col < ?` (open or closed) for a byte range. */
function rangeSql(col: string, range: ByteRange): { sql: string; params: Buffer[] } {
  const parts: string[] = [];
  const params: Buffer[] = [];
  if (range.lower) {
    parts.push(`${col} ${range.lowerOpen ? '>' : '>='} ?`);
    params.push(range.lower);
  }
  if (range.upper) {
    parts.push(`${col} ${range.upperOpen ? '<' : '<='} ?`);
    params.push(range.upper);
  }
  return { sql: parts.length ? ` AND ${parts.join(' AND ')}` : '', params };
}

export class SqliteBackend extends SqliteFile {
  #schema: Map<string, Map<string, StoreInfo>> | undefined;

  override rollback(): void {
    super.rollback();
    this.#schema = undefined; // schema changes of the transaction are gone too
  }

  // ---- databases and schema ------------------------------------------------------------------
  databases(): Array<{ name: string; version: number }> {
    return this.query<{ name: string; version: number }>('SELECT name, version FROM idb_databases ORDER BY name');
  }
  version(db: string): number {
    return this.query<{ version: number }>('SELECT version FROM idb_databases WHERE name = ?', db)[0]?.version ?? 0;
  }
  setVersion(db: string, version: number): void {
    this.run('INSERT OR REPLACE INTO idb_databases (name, version) VALUES (?, ?)', db, version);
  }
  deleteDatabase(db: string): void {
    for (const store of this.stores(db).values()) this.deleteStore(store);
    this.run('DELETE FROM idb_databases WHERE name = ?', db);
  }

  /** The object stores of a database, with their indexes (kept in memory: a few dozen rows). */
  stores(db: string): Map<string, StoreInfo> {
    if (!this.#schema) {
      const schema = new Map<string, Map<string, StoreInfo>>();
      for (const s of this.query<{ id: number; db: string; name: string }>('SELECT id, db, name FROM idb_stores')) {
        const map = schema.get(s.db) ?? new Map<string, StoreInfo>();
        map.set(s.name, { id: s.id, db: s.db, name: s.name, indexes: new Map() });
        schema.set(s.db, map);
      }
      const byId = new Map([...schema.values()].flatMap((m) => [...m.values()].map((s) => [s.id, s] as const)));
      for (const i of this.query<{ id: number; store: number; name: string; key_path: string; is_unique: number; multi_entry: number }>('SELECT * FROM idb_indexes')) {
        byId.get(i.store)?.indexes.set(i.name, { id: i.id, name: i.name, keyPath: JSON.parse(i.key_path) as string | string[], unique: i.is_unique === 1, multiEntry: i.multi_entry === 1 });
      }
      this.#schema = schema;
    }
    let map = this.#schema.get(db);
    if (!map) this.#schema.set(db, (map = new Map()));
    return map;
  }

  createStore(db: string, name: string): StoreInfo {
    const id = this.insert('INSERT INTO idb_stores (db, name) VALUES (?, ?)', db, name);
    const info: StoreInfo = { id, db, name, indexes: new Map() };
    this.stores(db).set(name, info);
    return info;
  }
  deleteStore(store: StoreInfo): void {
    for (const index of store.indexes.values()) this.deleteIndex(store, index);
    this.run('DELETE FROM idb_records WHERE store = ?', store.id);
    this.run('DELETE FROM idb_stores WHERE id = ?', store.id);
    this.stores(store.db).delete(store.name);
  }
  createIndex(store: StoreInfo, name: string, keyPath: string | string[], unique: boolean, multiEntry: boolean): IndexInfo {
    const id = this.insert('INSERT INTO idb_indexes (store, name, key_path, is_unique, multi_entry) VALUES (?, ?, ?, ?, ?)', store.id, name, JSON.stringify(keyPath), unique ? 1 : 0, multiEntry ? 1 : 0);
    const index: IndexInfo = { id, name, keyPath, unique, multiEntry };
    store.indexes.set(name, index);
    // Records already in the store get their entries now (the engine adds indexes in migrations).
    for (let batch = this.records(store, ALL, 256); batch.length > 0; batch = this.records(store, ALL, 256, batch.at(-1)?.key)) {
      for (const row of batch) this.#addEntries(index, row.key, this.#indexKeys(index, this.decodeValue(store, row)));
    }
    return index;
  }
  deleteIndex(store: StoreInfo, index: IndexInfo): void {
    this.run('DELETE FROM idb_index_entries WHERE idx = ?', index.id);
    this.run('DELETE FROM idb_indexes WHERE id = ?', index.id);
    store.indexes.delete(index.name);
  }

  // ---- values --------------------------------------------------------------------------------
  decodeValue(store: StoreInfo, row: Row): unknown {
    const bytes = row.value.subarray(0, row.value.length - 4);
    if (row.value.length < 4 || row.value.readUInt32BE(row.value.length - 4) !== recordSum(row.key, bytes)) {
      throw new StoreDamageError(`the crypto store is damaged: a record of ${store.db}/${store.name} fails its checksum`);
    }
    return deserialize(bytes);
  }

  // ---- records -------------------------------------------------------------------------------
  /** Records of a store in key order within `range`, from after `after` (exclusive) if given. */
  records(store: StoreInfo, range: ByteRange, limit: number, after?: Buffer): Row[] {
    const r = rangeSql('key', range);
    const a = after ? ' AND key > ?' : '';
    const params = after ? [...r.params, after] : r.params;
    return this.query<Row>(`SELECT key, value FROM idb_records WHERE store = ?${r.sql}${a} ORDER BY key LIMIT ?`, store.id, ...params, limit);
  }
  keys(store: StoreInfo, range: ByteRange, limit: number): Buffer[] {
    const r = rangeSql('key', range);
    return this.query<{ key: Buffer }>(`SELECT key FROM idb_records WHERE store = ?${r.sql} ORDER BY key LIMIT ?`, store.id, ...r.params, limit).map((row) => row.key);
  }
  count(store: StoreInfo, range: ByteRange): number {
    const r = rangeSql('key', range);
    return this.query<{ n: number }>(`SELECT count(*) AS n FROM idb_records WHERE store = ?${r.sql}`, store.id, ...r.params)[0]?.n ?? 0;
  }

  /**
   * A value as it will be stored: its structured-clone bytes and its index keys, taken when the
   * engine calls put (IndexedDB clones the value at that moment, not when the request runs).
   */
  prepare(store: StoreInfo, value: unknown): Prepared {
    const indexKeys = new Map<number, Buffer[]>();
    for (const index of store.indexes.values()) indexKeys.set(index.id, this.#indexKeys(index, value));
    return { bytes: serialize(value), indexKeys };
  }

  put(store: StoreInfo, key: Buffer, prepared: Prepared, overwrite: boolean): void {
    const existing = this.query<Row>('SELECT key, value FROM idb_records WHERE store = ? AND key = ?', store.id, key)[0];
    if (existing && !overwrite) throw constraintError('a record with this key already exists in the object store');
    // A failure below (a unique index) aborts the IndexedDB transaction, which rolls all of it back.
    if (existing && store.indexes.size > 0) this.#removeEntries(store, existing);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(recordSum(key, prepared.bytes));
    const bytes = Buffer.concat([prepared.bytes, sum]);
    this.run('INSERT OR REPLACE INTO idb_records (store, key, value) VALUES (?, ?, ?)', store.id, key, bytes);
    for (const index of store.indexes.values()) this.#addEntries(index, key, prepared.indexKeys.get(index.id) ?? this.#indexKeys(index, deserialize(prepared.bytes)));
    this.written.records++;
    this.written.bytes += key.length + bytes.length;
  }

  delete(store: StoreInfo, range: ByteRange): void {
    if (store.indexes.size > 0) {
      for (let batch = this.records(store, range, 256); batch.length > 0; batch = this.records(store, range, 256, batch.at(-1)?.key)) {
        for (const row of batch) this.#removeEntries(store, row);
      }
    }
    const r = rangeSql('key', range);
    this.written.records += this.run(`DELETE FROM idb_records WHERE store = ?${r.sql}`, store.id, ...r.params);
  }

  clear(store: StoreInfo): void {
    for (const index of store.indexes.values()) this.run('DELETE FROM idb_index_entries WHERE idx = ?', index.id);
    this.written.records += this.run('DELETE FROM idb_records WHERE store = ?', store.id);
  }

  #indexKeys(index: IndexInfo, value: unknown): Buffer[] {
    const raw = evaluateKeyPath(value, index.keyPath);
    if (index.multiEntry && Array.isArray(raw)) {
      const keys = new Map<string, Buffer>();
      for (const item of raw) {
        const k = asKey(item);
        if (k !== undefined) {
          const bytes = encodeKey(k);
          keys.set(bytes.toString('hex'), bytes);
        }
      }
      return [...keys.values()];
    }
    const key = asKey(raw);
    return key === undefined ? [] : [encodeKey(key)];
  }
  #addEntries(index: IndexInfo, pk: Buffer, keys: readonly Buffer[]): void {
    for (const k of keys) {
      if (index.unique && this.query('SELECT 1 FROM idb_index_entries WHERE idx = ? AND key = ? AND pk <> ?', index.id, k, pk).length > 0) {
        throw constraintError(`the unique index ${index.name} already holds this key`);
      }
      this.run('INSERT OR REPLACE INTO idb_index_entries (idx, key, pk) VALUES (?, ?, ?)', index.id, k, pk);
    }
  }
  #removeEntries(store: StoreInfo, row: Row): void {
    const old = this.decodeValue(store, row);
    for (const index of store.indexes.values()) {
      for (const k of this.#indexKeys(index, old)) this.run('DELETE FROM idb_index_entries WHERE idx = ? AND key = ? AND pk = ?', index.id, k, row.key);
    }
  }

  // ---- indexes -------------------------------------------------------------------------------
  /** Index entries in (index key, primary key) order, joined with their records. */
  entries(store: StoreInfo, index: IndexInfo, range: ByteRange, limit: number, after?: { key: Buffer; pk: Buffer }): IndexRow[] {
    const r = rangeSql('e.key', range);
    const a = after ? ' AND (e.key > ? OR (e.key = ? AND e.pk > ?))' : '';
    const params = after ? [...r.params, after.key, after.key, after.pk] : r.params;
    return this.query<IndexRow>(
      `SELECT e.key AS key, e.pk AS pk, r.value AS value FROM idb_index_entries e JOIN idb_records r ON r.store = ? AND r.key = e.pk WHERE e.idx = ?${r.sql}${a} ORDER BY e.key, e.pk LIMIT ?`,
      store.id,
      index.id,
      ...params,
      limit,
    );
  }
  entryKeys(index: IndexInfo, range: ByteRange, limit: number): Buffer[] {
    const r = rangeSql('key', range);
    return this.query<{ pk: Buffer }>(`SELECT pk FROM idb_index_entries WHERE idx = ?${r.sql} ORDER BY key, pk LIMIT ?`, index.id, ...r.params, limit).map((row) => row.pk);
  }
  entryCount(index: IndexInfo, range: ByteRange): number {
    const r = rangeSql('key', range);
    return this.query<{ n: number }>(`SELECT count(*) AS n FROM idb_index_entries WHERE idx = ?${r.sql}`, index.id, ...r.params)[0]?.n ?? 0;
  }

  decodeKey(bytes: Buffer): ReturnType<typeof decodeKey> {
    return decodeKey(bytes);
  }
}
