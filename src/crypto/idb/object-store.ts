/**
 * `IDBObjectStore` and `IDBIndex`: every call queues a request on the transaction, which runs it
 * against SQLite in order. Only out-of-line keys exist here: the engine creates its stores with
 * `createObjectStore(name)` and passes the key to every put.
 */
import { IDBCursor, IDBCursorWithValue, type CursorSource } from './cursor.ts';
import { dataError, encodeKey, toByteRange, toKey, type IdbKey } from './key.ts';
import { IDBRequest, stringList } from './request.ts';
import { constraintError, type IndexInfo, type StoreInfo } from './sqlite-backend.ts';
import { IDBTransaction } from './transaction.ts';

/** `count` as IndexedDB takes it (0 or absent: all) in SQLite's terms (-1: no limit). */
const limit = (count: unknown): number => (typeof count === 'number' && count > 0 ? count : -1);

function notSupported(what: string): DOMException {
  return new DOMException(`${what} is not supported by this IndexedDB (the crypto engine does not use it)`, 'NotSupportedError');
}

function openCursor(source: CursorSource, query: unknown, direction: unknown, withValue: boolean): IDBRequest {
  if (direction !== undefined && direction !== 'next') throw notSupported(`cursor direction ${String(direction)}`);
  const range = toByteRange(query);
  const request = new IDBRequest(source.owner, source.tx);
  const cursor = withValue ? new IDBCursorWithValue(source, range, request, true) : new IDBCursor(source, range, request, false);
  return source.tx.enqueue(request, () => cursor.step(undefined));
}

export class IDBObjectStore {
  readonly transaction: IDBTransaction;
  readonly #info: StoreInfo;
  readonly #indexes = new Map<string, IDBIndex>();

  constructor(transaction: IDBTransaction, info: StoreInfo) {
    this.transaction = transaction;
    this.#info = info;
  }

  get name(): string {
    return this.#info.name;
  }
  get keyPath(): null {
    return null;
  }
  get autoIncrement(): boolean {
    return false;
  }
  get indexNames(): string[] {
    return stringList(this.#info.indexes.keys());
  }

  get #backend() {
    return this.transaction.db.backend;
  }

  #request(op: () => unknown): IDBRequest {
    return this.transaction.enqueue(new IDBRequest(this, this.transaction), op);
  }

  /** Cursor access to this store (or one of its indexes). */
  source(index?: IndexInfo, owner: unknown = this): CursorSource {
    return {
      tx: this.transaction,
      info: this.#info,
      index,
      owner,
      putAt: (pk, value) => this.put(value, pk),
      deleteAt: (pk) => this.delete(pk),
    };
  }

  put(value: unknown, key?: unknown): IDBRequest {
    return this.#write(value, key, true);
  }
  add(value: unknown, key?: unknown): IDBRequest {
    return this.#write(value, key, false);
  }
  #write(value: unknown, key: unknown, overwrite: boolean): IDBRequest {
    this.transaction.assertWritable();
    if (key === undefined) throw dataError('this object store has no key path: a key must be given');
    const k: IdbKey = toKey(key);
    const encoded = encodeKey(k);
    const prepared = this.#backend.prepare(this.#info, value);
    return this.#request(() => {
      this.#backend.put(this.#info, encoded, prepared, overwrite);
      return k;
    });
  }

  get(query: unknown): IDBRequest {
    const range = toByteRange(query);
    return this.#request(() => {
      const row = this.#backend.records(this.#info, range, 1)[0];
      return row ? this.#backend.decodeValue(this.#info, row) : undefined;
    });
  }
  getKey(query: unknown): IDBRequest {
    const range = toByteRange(query);
    return this.#request(() => {
      const key = this.#backend.keys(this.#info, range, 1)[0];
      return key ? this.#backend.decodeKey(key) : undefined;
    });
  }
  getAll(query?: unknown, count?: number): IDBRequest {
    const range = toByteRange(query);
    return this.#request(() => this.#backend.records(this.#info, range, limit(count)).map((row) => this.#backend.decodeValue(this.#info, row)));
  }
  getAllKeys(query?: unknown, count?: number): IDBRequest {
    const range = toByteRange(query);
    return this.#request(() => this.#backend.keys(this.#info, range, limit(count)).map((key) => this.#backend.decodeKey(key)));
  }
  count(query?: unknown): IDBRequest {
    const range = toByteRange(query);
    return this.#request(() => this.#backend.count(this.#info, range));
  }
  delete(query: unknown): IDBRequest {
    this.transaction.assertWritable();
    const range = toByteRange(query);
    return this.#request(() => this.#backend.delete(this.#info, range));
  }
  clear(): IDBRequest {
    this.transaction.assertWritable();
    return this.#request(() => this.#backend.clear(this.#info));
  }
  openCursor(query?: unknown, direction?: unknown): IDBRequest {
    return openCursor(this.source(), query, direction, true);
  }
  openKeyCursor(query?: unknown, direction?: unknown): IDBRequest {
    return openCursor(this.source(), query, direction, false);
  }

  index(name: string): IDBIndex {
    const info = this.#info.indexes.get(name);
    if (!info) throw new DOMException(`no index ${name} on ${this.#info.name}`, 'NotFoundError');
    let index = this.#indexes.get(name);
    if (!index) this.#indexes.set(name, (index = new IDBIndex(this, info)));
    return index;
  }

  createIndex(name: string, keyPath: string | string[], options?: { unique?: boolean; multiEntry?: boolean }): IDBIndex {
    if (this.transaction.mode !== 'versionchange') throw new DOMException('indexes are created in an upgrade', 'InvalidStateError');
    if (this.#info.indexes.has(name)) throw constraintError(`index ${name} exists`);
    const path = Array.isArray(keyPath) ? keyPath.map(String) : String(keyPath);
    if (Array.isArray(path) && options?.multiEntry) throw new DOMException('a multiEntry index takes one key path', 'InvalidAccessError');
    this.#backend.createIndex(this.#info, name, path, options?.unique === true, options?.multiEntry === true);
    return this.index(name);
  }

  deleteIndex(name: string): void {
    if (this.transaction.mode !== 'versionchange') throw new DOMException('indexes are deleted in an upgrade', 'InvalidStateError');
    const info = this.#info.indexes.get(name);
    if (!info) throw new DOMException(`no index ${name} on ${this.#info.name}`, 'NotFoundError');
    this.#backend.deleteIndex(this.#info, info);
    this.#indexes.delete(name);
  }
}

export class IDBIndex {
  readonly objectStore: IDBObjectStore;
  readonly #info: IndexInfo;

  constructor(store: IDBObjectStore, info: IndexInfo) {
    this.objectStore = store;
    this.#info = info;
  }

  get name(): string {
    return this.#info.name;
  }
  get keyPath(): string | string[] {
    return this.#info.keyPath;
  }
  get unique(): boolean {
    return this.#info.unique;
  }
  get multiEntry(): boolean {
    return this.#info.multiEntry;
  }

  #request(op: (s: CursorSource) => unknown): IDBRequest {
    const source = this.objectStore.source(this.#info, this);
    return source.tx.enqueue(new IDBRequest(this, source.tx), () => op(source));
  }

  get(query: unknown): IDBRequest {
    const range = toByteRange(query);
    return this.#request((s) => {
      const row = s.tx.db.backend.entries(s.info, this.#info, range, 1)[0];
      return row ? s.tx.db.backend.decodeValue(s.info, { key: row.pk, value: row.value }) : undefined;
    });
  }
  getKey(query: unknown): IDBRequest {
    const range = toByteRange(query);
    return this.#request((s) => {
      const pk = s.tx.db.backend.entryKeys(this.#info, range, 1)[0];
      return pk ? s.tx.db.backend.decodeKey(pk) : undefined;
    });
  }
  getAll(query?: unknown, count?: number): IDBRequest {
    const range = toByteRange(query);
    return this.#request((s) => s.tx.db.backend.entries(s.info, this.#info, range, limit(count)).map((row) => s.tx.db.backend.decodeValue(s.info, { key: row.pk, value: row.value })));
  }
  getAllKeys(query?: unknown, count?: number): IDBRequest {
    const range = toByteRange(query);
    return this.#request((s) => s.tx.db.backend.entryKeys(this.#info, range, limit(count)).map((pk) => s.tx.db.backend.decodeKey(pk)));
  }
  count(query?: unknown): IDBRequest {
    const range = toByteRange(query);
    return this.#request(() => this.objectStore.transaction.db.backend.entryCount(this.#info, range));
  }
  openCursor(query?: unknown, direction?: unknown): IDBRequest {
    return openCursor(this.objectStore.source(this.#info, this), query, direction, true);
  }
  openKeyCursor(query?: unknown, direction?: unknown): IDBRequest {
    return openCursor(this.objectStore.source(this.#info, this), query, direction, false);
  }
}

IDBTransaction.storeFactory = (tx, info) => new IDBObjectStore(tx, info);
