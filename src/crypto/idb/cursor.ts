/**
 * Cursors over an object store or an index, in ascending order (`next`: the only direction the
 * engine uses). A cursor remembers its position as encoded keys and fetches one row per step, so
 * walking a large store never holds more than one record.
 */
import { encodeKey, toKey, type ByteRange, type IdbKey } from './key.ts';
import type { IDBRequest } from './request.ts';
import type { IndexInfo, SqliteBackend, StoreInfo } from './sqlite-backend.ts';
import type { IDBTransaction } from './transaction.ts';

/** Where a cursor reads from: the object store, or one of its indexes. */
export interface CursorSource {
  readonly tx: IDBTransaction;
  readonly info: StoreInfo;
  readonly index: IndexInfo | undefined;
  /** The IDBObjectStore or IDBIndex object, for `cursor.source`. */
  readonly owner: unknown;
  /** Queues a write of `value` under primary key `pk` (cursor.update). */
  putAt(pk: IdbKey, value: unknown): IDBRequest;
  /** Queues a delete of the record with primary key `pk` (cursor.delete). */
  deleteAt(pk: IdbKey): IDBRequest;
}

interface Position {
  key: Buffer;
  pk: Buffer;
  value: Buffer | undefined;
}

/** The first row of `source` in `range` after `after` (exclusive) and at or above `atLeast`. */
function nextRow(backend: SqliteBackend, source: CursorSource, range: ByteRange, after: Position | undefined, atLeast: Buffer | undefined): Position | undefined {
  let r = range;
  if (atLeast && (!r.lower || Buffer.compare(atLeast, r.lower) > 0)) r = { ...r, lower: atLeast, lowerOpen: false };
  if (source.index) {
    const row = backend.entries(source.info, source.index, r, 1, after)[0];
    return row && { key: row.key, pk: row.pk, value: row.value };
  }
  const row = backend.records(source.info, r, 1, after?.pk)[0];
  return row && { key: row.key, pk: row.key, value: row.value };
}

export class IDBCursor {
  readonly #source: CursorSource;
  readonly #range: ByteRange;
  readonly #request: IDBRequest;
  readonly #withValue: boolean;
  #position: Position | undefined;
  #key: IdbKey | undefined;
  #pk: IdbKey | undefined;
  #value: unknown;
  /** Set while a continue() is pending: IndexedDB forbids a second one. */
  #moving = false;

  constructor(source: CursorSource, range: ByteRange, request: IDBRequest, withValue: boolean) {
    this.#source = source;
    this.#range = range;
    this.#request = request;
    this.#withValue = withValue;
  }

  get source(): unknown {
    return this.#source.owner;
  }
  get direction(): string {
    return 'next';
  }
  get key(): IdbKey | undefined {
    return this.#key;
  }
  get primaryKey(): IdbKey | undefined {
    return this.#pk;
  }
  get request(): IDBRequest {
    return this.#request;
  }
  protected get currentValue(): unknown {
    return this.#value;
  }

  /** Moves to the next row (or the first at or after `key`); the result is this cursor, or null at the end. */
  step(atLeast: Buffer | undefined): IDBCursor | null {
    const backend = this.#source.tx.db.backend;
    const next = nextRow(backend, this.#source, this.#range, this.#position, atLeast);
    this.#moving = false;
    this.#position = next;
    if (!next) {
      this.#key = this.#pk = this.#value = undefined;
      return null;
    }
    this.#key = backend.decodeKey(next.key);
    this.#pk = backend.decodeKey(next.pk);
    this.#value = this.#withValue && next.value ? backend.decodeValue(this.#source.info, { key: next.pk, value: next.value }) : undefined;
    return this;
  }

  continue(key?: unknown): void {
    if (this.#moving || !this.#position) throw new DOMException('the cursor is not on a record', 'InvalidStateError');
    const atLeast = key === undefined ? undefined : encodeKey(toKey(key));
    if (atLeast && Buffer.compare(atLeast, this.#position.key) <= 0) throw new DOMException('continue() must move forward', 'DataError');
    this.#moving = true;
    this.#request.reset();
    this.#source.tx.enqueue(this.#request, () => this.step(atLeast));
  }

  advance(count: number): void {
    if (!Number.isInteger(count) || count < 1) throw new TypeError('advance() takes a positive integer');
    if (this.#moving || !this.#position) throw new DOMException('the cursor is not on a record', 'InvalidStateError');
    this.#moving = true;
    this.#request.reset();
    this.#source.tx.enqueue(this.#request, () => {
      let result: IDBCursor | null = this;
      for (let i = 0; i < count && result; i++) result = this.step(undefined);
      return result;
    });
  }

  update(value: unknown): IDBRequest {
    if (this.#pk === undefined) throw new DOMException('the cursor is not on a record', 'InvalidStateError');
    return this.#source.putAt(this.#pk, value);
  }

  delete(): IDBRequest {
    if (this.#pk === undefined) throw new DOMException('the cursor is not on a record', 'InvalidStateError');
    return this.#source.deleteAt(this.#pk);
  }
}

export class IDBCursorWithValue extends IDBCursor {
  get value(): unknown {
    return this.currentValue;
  }
}
