/**
 * The SQLite file under the crypto store (node:sqlite, built into Node): the connection, its
 * settings, its transactions, a few metadata rows, and the integrity check. What the rows mean is
 * sqlite-backend.ts.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { crc32 } from 'node:zlib';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS idb_databases (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idb_stores (id INTEGER PRIMARY KEY, db TEXT NOT NULL, name TEXT NOT NULL, UNIQUE (db, name));
CREATE TABLE IF NOT EXISTS idb_indexes (id INTEGER PRIMARY KEY, store INTEGER NOT NULL, name TEXT NOT NULL, key_path TEXT NOT NULL,
  is_unique INTEGER NOT NULL, multi_entry INTEGER NOT NULL, UNIQUE (store, name));
CREATE TABLE IF NOT EXISTS idb_records (store INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key));
CREATE TABLE IF NOT EXISTS idb_index_entries (idx INTEGER NOT NULL, key BLOB NOT NULL, pk BLOB NOT NULL, PRIMARY KEY (idx, key, pk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

/** A record's checksum: CRC-32 over its key and its value bytes, stored after the value. */
export function recordSum(key: Uint8Array, bytes: Uint8Array): number {
  return crc32(bytes, crc32(key));
}

export class SqliteFile {
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  /** Records written (put or deleted) and their bytes, and commits, since the file was opened. */
  readonly written = { records: 0, bytes: 0, commits: 0 };

  constructor(path: string) {
    this.path = path;
    this.#db = new DatabaseSync(path);
    try {
      // WAL with synchronous=FULL: a COMMIT returns once its pages are fsynced, so an IndexedDB
      // transaction that reports "complete" is on disk; a crash mid-write leaves the last commit.
      // The page cache is the only memory that grows with use, and it is capped (2 MiB).
      // 2 KiB pages (set before the first table exists): a session record (~1.8 KiB) fits in one,
      // and a new session dirties half as many bytes as with 4 KiB pages (12-27 KiB vs 16-45 KiB).
      this.#db.exec('PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -2048; PRAGMA busy_timeout = 5000;');
      this.#db.exec(SCHEMA);
    } catch (error) {
      this.#db.close();
      throw error;
    }
  }

  #st(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  exec(sql: string): void {
    this.#db.exec(sql);
  }
  /** Rows of a query; BLOB columns come back as Buffers. */
  query<T>(sql: string, ...params: Array<string | number | Buffer | null>): T[] {
    const rows = this.#st(sql).all(...params) as Array<Record<string, unknown>>;
    for (const row of rows) {
      for (const [k, v] of Object.entries(row)) if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    }
    return rows as T[];
  }
  run(sql: string, ...params: Array<string | number | Buffer | null>): number {
    return Number(this.#st(sql).run(...params).changes);
  }
  /** Runs an INSERT; the new row's id. */
  insert(sql: string, ...params: Array<string | number | Buffer | null>): number {
    return Number(this.#st(sql).run(...params).lastInsertRowid);
  }

  close(): void {
    if (!this.#db.isOpen) return;
    this.#statements.clear();
    this.#db.close();
  }

  get isOpen(): boolean {
    return this.#db.isOpen;
  }

  /**
   * Checks the file: SQLite's structure (quick_check) and, with `records`, every record's checksum
   * (streamed one row at a time). Returns what is wrong, or undefined.
   */
  verify(records: boolean): string | undefined {
    const check = this.query<{ quick_check: string }>('PRAGMA quick_check(5)').map((r) => r.quick_check);
    if (check.length !== 1 || check[0] !== 'ok') return `SQLite integrity check failed: ${check.join('; ')}`;
    if (!records) return undefined;
    const st = this.#db.prepare('SELECT store, key, value FROM idb_records');
    st.setReturnArrays(true);
    for (const [store, key, value] of st.iterate() as Iterable<[number, Uint8Array, Uint8Array]>) {
      const sum = new DataView(value.buffer, value.byteOffset, value.byteLength);
      if (value.length < 4 || sum.getUint32(value.length - 4) !== recordSum(key, value.subarray(0, value.length - 4))) {
        const name = this.query<{ db: string; name: string }>('SELECT db, name FROM idb_stores WHERE id = ?', store)[0];
        return `a record of ${name ? `${name.db}/${name.name}` : `store ${store}`} fails its checksum`;
      }
    }
    return undefined;
  }

  begin(): void {
    this.#db.exec('BEGIN IMMEDIATE');
  }
  commit(): void {
    this.#db.exec('COMMIT');
    this.written.commits++;
  }
  rollback(): void {
    if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
  }

  /** A row of the store's own metadata (the device identity, the migration mark). */
  meta(name: string): string | undefined {
    return this.query<{ value: string }>('SELECT value FROM store_meta WHERE name = ?', name)[0]?.value;
  }
  setMeta(name: string, value: string): void {
    this.run('INSERT OR REPLACE INTO store_meta (name, value) VALUES (?, ?)', name, value);
  }
}
