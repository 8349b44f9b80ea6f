/**
 * The bot's crypto store: the IndexedDB the wasm engine persists through, served from one SQLite
 * file on the volume (`idb/`), plus `device.json` naming the device.
 *
 * Why this shape: the engine reads `indexedDB` and the IDB* constructors from the global object and
 * cannot be handed a factory, so `install()` sets them. Every readwrite IndexedDB transaction is
 * one SQLite transaction, committed (fsynced: WAL, synchronous=FULL) before the engine's promise
 * resolves, so whatever the engine has done is on disk before anything leaves the process, and a
 * crash leaves the last committed transaction. One new session writes a few pages, whatever the
 * store holds; memory holds SQLite's bounded page cache, not the records. `flush()` remains as the
 * barrier callers already use: it waits for writes in progress and reports what was written.
 *
 * With a passphrase the engine encrypts every value itself (and hashes the keys), so the file holds
 * no readable secrets; without one only the file mode (0600) protects them.
 *
 * Files in the store's directory: `crypto-store.sqlite` (+ `-wal`, `-shm`), `device.json`.
 * A store in the older snapshot format (crypto-store.<gen>.snapshot) is migrated on open.
 */
import { existsSync, writeFileSync } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { join } from 'node:path';
import { defaultFs, DEVICE_FILE, fsyncDir, isDeviceInfo, readDeviceFile, writeDeviceFile, type DeviceFileFs, type DeviceInfo } from './device-file.ts';
import { IDBDatabase, IDBFactory } from './idb/factory.ts';
import { IDBCursor, IDBCursorWithValue } from './idb/cursor.ts';
import { IDBKeyRange } from './idb/key.ts';
import { IDBIndex, IDBObjectStore } from './idb/object-store.ts';
import { IDBOpenDBRequest, IDBRequest, IDBVersionChangeEvent } from './idb/request.ts';
import { SqliteBackend } from './idb/sqlite-backend.ts';
import { IDBTransaction } from './idb/transaction.ts';
import { importSnapshot, readSnapshot, SNAPSHOT_RE } from './snapshot-migration.ts';
export { DEVICE_FILE, type DeviceFileFs, type DeviceInfo } from './device-file.ts';
export { checkStoreOwner, type StoreCheck } from './store-owner.ts';

export const STORE_FILE = 'crypto-store.sqlite';
const SQLITE_CORRUPT = 11;
const SQLITE_NOTADB = 26;

/** What `open()` found. Bad data on disk gives `corrupt`; only I/O errors throw. */
export type LoadResult =
  | { kind: 'fresh'; device?: DeviceInfo }
  | { kind: 'loaded'; device: DeviceInfo | undefined; databases: number; records: number; migrated?: { records: number; movedTo: string } }
  | { kind: 'corrupt'; reason: string; device?: DeviceInfo };

export interface FlushStats {
  /** False when nothing was written since the last flush. */
  written: boolean;
  /** Records written (put or deleted) since the last flush, and their bytes (keys and values). */
  records: number;
  bytes: number;
  /** SQLite transactions committed since the last flush. */
  commits: number;
}

export interface CryptoStoreOptions {
  /** The `store_name` passed to `OlmMachine.initialize`. */
  readonly storeName: string;
  /** For tests: the filesystem used for device.json. */
  readonly fs?: DeviceFileFs;
}

function sqliteCode(error: unknown): number | undefined {
  const e = error as { code?: unknown; errcode?: unknown } | null;
  return e?.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number' ? e.errcode & 0xff : undefined;
}

export class CryptoStore {
  readonly storeName: string;
  readonly #fs: DeviceFileFs;
  #dir: string | undefined;
  #backend: SqliteBackend | undefined;
  #factory: IDBFactory | undefined;
  #device: DeviceInfo | undefined;
  #flushed = { records: 0, bytes: 0, commits: 0 };

  constructor(options: CryptoStoreOptions) {
    if (!options.storeName || options.storeName.includes('::')) throw new Error("storeName must be non-empty and must not contain '::'");
    this.storeName = options.storeName;
    this.#fs = options.fs ?? defaultFs;
  }

  get dir(): string | undefined {
    return this.#dir;
  }
  get device(): DeviceInfo | undefined {
    return this.#device;
  }
  /** The IndexedDB factory the engine uses (after `open`). */
  get factory(): IDBFactory {
    if (!this.#factory) throw new Error('CryptoStore: call open(dir) first');
    return this.#factory;
  }

  /**
   * Opens (or creates) the store in `dir`: checks SQLite's structure, migrates a snapshot store,
   * reads the device identity. Then `install()` before the engine starts.
   */
  async open(dir: string): Promise<LoadResult> {
    this.#dir = dir;
    await nodeFs.mkdir(dir, { recursive: true, mode: 0o700 });
    for (const name of await nodeFs.readdir(dir)) {
      // Temp files of interrupted device.json or snapshot writes.
      if (name.startsWith('.') && name.endsWith('.tmp')) await nodeFs.unlink(join(dir, name)).catch(() => undefined);
    }
    const sidecar = await readDeviceFile(dir);
    if (sidecar.kind === 'bad') return { kind: 'corrupt', reason: sidecar.reason };
    const known = sidecar.kind === 'ok' ? sidecar.device : undefined;
    const corrupt = (reason: string, device = known): LoadResult => (device ? { kind: 'corrupt', reason, device } : { kind: 'corrupt', reason });

    const path = join(dir, STORE_FILE);
    // Created here with mode 0600 whatever the umask; SQLite gives -wal and -shm the same mode.
    if (!existsSync(path)) writeFileSync(path, '', { mode: 0o600, flag: 'wx' });
    let backend: SqliteBackend;
    try {
      backend = new SqliteBackend(path);
      // SQLite's structure is checked here (about 100 ms at 30,000 sessions); each record's checksum
      // when it is read. Checking every record here too would cost 150-300 ms and 13-18 MiB of RSS
      // at that size, for records the engine may never read again.
      const problem = backend.verify(false);
      if (problem) {
        backend.close();
        return corrupt(`the crypto store ${path} is damaged: ${problem}`);
      }
    } catch (error) {
      const code = sqliteCode(error);
      if (code === SQLITE_CORRUPT || code === SQLITE_NOTADB) return corrupt(`the crypto store ${path} is damaged: ${(error as Error).message}`);
      throw error;
    }
    this.#backend = backend;
    this.#factory = new IDBFactory(backend);

    let migrated: { records: number; movedTo: string } | undefined;
    if ((await nodeFs.readdir(dir)).some((n) => SNAPSHOT_RE.test(n))) {
      try {
        migrated = await this.#migrate(dir, known);
      } catch (error) {
        if ((error as Error).name === 'SnapshotError') return corrupt(`crypto store snapshot in ${dir} is unreadable: ${(error as Error).message}`);
        throw error;
      }
    }

    let device: unknown;
    try {
      const stored = backend.meta('device');
      device = stored === undefined ? undefined : (JSON.parse(stored) as unknown);
    } catch {
      device = null;
    }
    if (device !== undefined && !isDeviceInfo(device)) return corrupt('the device identity in the crypto store is malformed');
    if (device && known && (device.userId !== known.userId || device.deviceId !== known.deviceId)) {
      return corrupt(`${DEVICE_FILE} (${known.userId} ${known.deviceId}) disagrees with the store (${device.userId} ${device.deviceId})`, device);
    }
    this.#device = device ?? known;
    const databases = backend.databases().filter((d) => d.name.startsWith(`${this.storeName}::`)).length;
    this.#flushed = { ...backend.written };
    if (databases === 0) return this.#device ? { kind: 'fresh', device: this.#device } : { kind: 'fresh' };
    const records = backend.query<{ n: number }>('SELECT count(*) AS n FROM idb_records')[0]?.n ?? 0;
    return { kind: 'loaded', device: this.#device, databases, records, ...(migrated ? { migrated } : {}) };
  }

  /** Imports the snapshot store in one transaction, then moves its files aside (so no old binary reads them again). */
  async #migrate(dir: string, known: DeviceInfo | undefined): Promise<{ records: number; movedTo: string } | undefined> {
    const backend = this.#backend as SqliteBackend;
    let records = 0;
    // A migration that committed but did not move the files yet: only the moving is left.
    if (backend.meta('migrated-from') === undefined) {
      if (backend.databases().length > 0) throw Object.assign(new Error('both a SQLite store and snapshot files are present'), { name: 'SnapshotError' });
      let snapshot;
      try {
        snapshot = await readSnapshot(dir, this.storeName);
      } catch (error) {
        throw Object.assign(new Error((error as Error).message), { name: 'SnapshotError' });
      }
      if (!snapshot) return undefined;
      const device = snapshot.device ?? known;
      await this.factory.exclusive(() => {
        records = importSnapshot(backend, snapshot);
        if (device) backend.setMeta('device', JSON.stringify(device));
        backend.setMeta('migrated-from', `snapshot generation ${snapshot.gen}`);
      });
    }
    const movedTo = join(dir, `migrated-snapshots-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await nodeFs.mkdir(movedTo, { recursive: true, mode: 0o700 });
    for (const name of await nodeFs.readdir(dir)) if (SNAPSHOT_RE.test(name)) await nodeFs.rename(join(dir, name), join(movedTo, name));
    await fsyncDir(movedTo);
    await fsyncDir(dir);
    return { records, movedTo };
  }

  /** Checks the whole file, every record's checksum included: what is wrong, or undefined. */
  verify(): string | undefined {
    return this.#backend?.verify(true);
  }

  /** Makes this store the process-wide IndexedDB the engine uses. */
  install(): void {
    const globals: Record<string, unknown> = {
      indexedDB: this.factory,
      IDBFactory,
      IDBDatabase,
      IDBTransaction,
      IDBObjectStore,
      IDBIndex,
      IDBCursor,
      IDBCursorWithValue,
      IDBKeyRange,
      IDBRequest,
      IDBOpenDBRequest,
      IDBVersionChangeEvent,
    };
    for (const [name, value] of Object.entries(globals)) {
      Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
    }
  }

  /** Records the device identity: in the store (committed) and in device.json. */
  async setDevice(device: { userId: string; deviceId: string; created?: string }): Promise<DeviceInfo> {
    const dir = this.#requireDir();
    const info: DeviceInfo = { userId: device.userId, deviceId: device.deviceId, created: device.created ?? this.#device?.created ?? new Date().toISOString() };
    await writeDeviceFile(dir, info, this.#fs);
    const backend = this.#backend as SqliteBackend;
    await this.factory.exclusive(() => backend.setMeta('device', JSON.stringify(info)));
    this.#device = info;
    return info;
  }

  /**
   * Waits until every write the engine has started is committed (each commit is already fsynced)
   * and reports what was written since the last flush. Rejects if one of them failed.
   */
  async flush(): Promise<FlushStats> {
    const backend = this.#backend;
    if (!backend?.isOpen) throw new Error('the crypto store is closed');
    await this.factory.scheduler.writesSettled();
    const now = backend.written;
    const stats = { records: now.records - this.#flushed.records, bytes: now.bytes - this.#flushed.bytes, commits: now.commits - this.#flushed.commits };
    this.#flushed = { ...now };
    return { written: stats.commits > 0, ...stats };
  }

  /** Closes the file (after the engine's machine is closed): the WAL is folded into the file first. */
  close(): void {
    const backend = this.#backend;
    if (!backend?.isOpen) return;
    try {
      backend.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } catch {
      // Busy or failing: the WAL stays and is read on the next open.
    }
    backend.close();
  }

  /**
   * Moves the store's files into `dir/discarded-<time>/` so a new device can start on an empty
   * store. Call with the engine's machine closed; this instance is closed afterwards.
   */
  async discard(): Promise<string> {
    const dir = this.#requireDir();
    this.#backend?.close();
    this.#device = undefined;
    const to = join(dir, `discarded-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await nodeFs.mkdir(to, { recursive: true, mode: 0o700 });
    for (const name of await nodeFs.readdir(dir)) {
      if (name.startsWith(STORE_FILE) || name === DEVICE_FILE || SNAPSHOT_RE.test(name)) await nodeFs.rename(join(dir, name), join(to, name));
    }
    await fsyncDir(to);
    await fsyncDir(dir);
    return to;
  }

  #requireDir(): string {
    if (this.#dir === undefined) throw new Error('CryptoStore: call open(dir) first');
    return this.#dir;
  }
}
