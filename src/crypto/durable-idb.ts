// Durable IndexedDB for the wasm crypto engine.
//
// `@matrix-org/matrix-sdk-crypto-wasm` persists through IndexedDB. Node has none, so the engine
// gets fake-indexeddb (a complete, in-memory IndexedDB), made durable here: all databases of one
// crypto store (`<storeName>::matrix-sdk-crypto`, plus `<storeName>::matrix-sdk-crypto-meta` when a
// passphrase is used) are written to the volume and restored before the OlmMachine opens.
//
// How the engine finds IndexedDB: its wasm-bindgen glue reads `indexedDB` from the global object
// every time it opens a database, and uses the global constructors `IDBKeyRange` (bound,
// lowerBound, upperBound) and `IDBCursor`, `IDBCursorWithValue`, `IDBDatabase`, `IDBOpenDBRequest`,
// `IDBRequest` (instanceof checks). It cannot be handed a factory. So `install()` sets these
// globals: the constructors from fake-indexeddb (shared by all its factories) and
// `globalThis.indexedDB` = this instance's own `IDBFactory` (a fresh one unless one is passed in).
// Other code in the process using `globalThis.indexedDB` (e.g. a matrix-js-sdk test client) shares
// that factory, which is harmless: only databases named `<storeName>::…` are persisted.
//
// Consistency: each database is read inside one readonly transaction over the object stores being
// captured. IndexedDB (and fake-indexeddb, lib/Database.js processTransactions) orders it after
// every overlapping readwrite transaction created before it and every later one after it, so the
// capture is transaction-consistent even while the engine is busy. Completeness is the caller's
// part: flush only after awaiting every OlmMachine promise of the batch (the crypto queue runs a
// batch, awaits all of it, flushes, then acknowledges). Engine methods resolve after their
// IndexedDB transaction has committed, so the flush then contains all effects of the batch.
// The two databases are not captured atomically together; `-meta` is written only when the store
// is created (it holds the passphrase-wrapped store cipher), so this does not matter.
//
// On disk (directory given to `load`), all files mode 0600:
//   crypto-store.<gen>.snapshot   generation segments (gen = 10-digit counter)
//   device.json                   { userId, deviceId, created } for operators (also inside segments)
// A segment is MAGIC | u32 headerLength | header (v8) | chunks | sha256 of everything before.
// The header of the newest segment is the manifest: databases (name, version), object stores
// (keyPath, autoIncrement, index definitions) and for each store a reference (gen, offset,
// length) to its chunk, which is v8.serialize({keys, values}) of the whole object store. v8
// serialisation is the structured-clone algorithm (ArrayBuffers, typed arrays, Maps, Dates, array
// keys survive). A flush re-reads only object stores a readwrite transaction touched since the
// last flush, writes them and the manifest into ONE new segment (temp file, fsync, rename, fsync
// directory: the rename is the commit point), then deletes segments no longer referenced. Unchanged
// stores (e.g. a large inbound_group_sessions3) are referenced in older segments and not rewritten.
// When dead bytes on disk exceed the live ones (+1 MiB), the next flush rewrites everything into a
// single segment. Load takes the newest segment; if it or a segment it references is damaged, the
// store is reported corrupt (never silently rolled back to an older state: that would re-use
// one-time keys already published).
//
// Encryption at rest: with a `storePassphrase` the engine encrypts every value itself
// (ChaCha20-Poly1305 under a key wrapped with a PBKDF2-derived key) and replaces primary keys by
// keyed hashes, so segments hold no readable secrets or identifiers beyond store/index names. Without
// a passphrase the values are base64-JSON pickles including private keys; then only the file mode
// and the volume protect them.

import { createHash, randomBytes } from "node:crypto";
import * as nodeFs from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { deserialize, serialize } from "node:v8";
import {
  IDBCursor as FakeIDBCursor,
  IDBCursorWithValue as FakeIDBCursorWithValue,
  IDBDatabase as FakeIDBDatabase,
  IDBFactory as FakeIDBFactory,
  IDBIndex as FakeIDBIndex,
  IDBKeyRange as FakeIDBKeyRange,
  IDBObjectStore as FakeIDBObjectStore,
  IDBOpenDBRequest as FakeIDBOpenDBRequest,
  IDBRequest as FakeIDBRequest,
  IDBTransaction as FakeIDBTransaction,
  IDBVersionChangeEvent as FakeIDBVersionChangeEvent,
} from "fake-indexeddb";

// The project compiles with lib es2024 (no DOM), so fake-indexeddb's DOM-typed exports are
// effectively untyped here; these structural types describe what this module uses.
interface IdbRequest<T> {
  result: T;
  error: unknown;
  onsuccess: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
interface IdbOpenRequest<T> extends IdbRequest<T> {
  onupgradeneeded: ((ev: unknown) => void) | null;
  onblocked: ((ev: unknown) => void) | null;
}
interface IdbIndex {
  name: string;
  keyPath: string | string[];
  unique: boolean;
  multiEntry: boolean;
}
interface IdbObjectStore {
  keyPath: string | string[] | null;
  autoIncrement: boolean;
  indexNames: Iterable<string>;
  index(name: string): IdbIndex;
  getAll(): IdbRequest<unknown[]>;
  getAllKeys(): IdbRequest<unknown[]>;
  put(value: unknown, key?: unknown): IdbRequest<unknown>;
  createIndex(name: string, keyPath: string | string[], options: { unique: boolean; multiEntry: boolean }): IdbIndex;
}
interface IdbTransaction {
  objectStore(name: string): IdbObjectStore;
  oncomplete: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onabort: ((ev: unknown) => void) | null;
  error: unknown;
}
interface IdbDatabase {
  name: string;
  version: number;
  objectStoreNames: Iterable<string>;
  transaction(names: string | string[], mode?: "readonly" | "readwrite"): IdbTransaction;
  createObjectStore(name: string, options: { keyPath: string | string[] | null; autoIncrement: boolean }): IdbObjectStore;
  close(): void;
  onversionchange: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
}
/** The part of `IDBFactory` this module uses (fake-indexeddb's `IDBFactory` is one). */
export interface IdbFactoryLike {
  open(name: string, version?: number): IdbOpenRequest<IdbDatabase>;
  deleteDatabase(name: string): IdbOpenRequest<undefined>;
  databases(): Promise<Array<{ name?: string; version?: number }>>;
}

/** Identity of the Matrix device whose crypto store this is. */
export interface DeviceInfo {
  userId: string;
  deviceId: string;
  /** ISO 8601 time the device's store was created. */
  created: string;
}

/** Whether the store on disk belongs to the expected user/device (see `checkStoreOwner`). */
export type StoreCheck =
  | { kind: "fresh" }
  | { kind: "match"; userId: string; deviceId: string; created: string }
  | { kind: "mismatch"; storedUserId: string; storedDeviceId: string }
  | { kind: "corrupt"; reason: string; storedDeviceId?: string };

/** What `load()` found. Bad data on disk gives `corrupt`; only I/O errors throw. */
export type LoadResult =
  | { kind: "fresh"; device?: DeviceInfo }
  | { kind: "loaded"; device: DeviceInfo | undefined; gen: number; databases: number; records: number; bytes: number }
  | { kind: "corrupt"; reason: string; device?: DeviceInfo };

export interface FlushStats {
  /** False when nothing changed since the last flush (no file written). */
  written: boolean;
  gen: number;
  /** Size of the segment written by this flush. */
  bytes: number;
  /** Bytes of all segment files now on disk. */
  diskBytes: number;
  databases: number;
  records: number;
  /** Object stores re-read and re-serialised this time, as `db-suffix/store`. */
  serialised: string[];
  storesTotal: number;
  /** Reading and serialising (ms). */
  snapshotMs: number;
  /** Writing, fsyncing, renaming, deleting old segments (ms). */
  writeMs: number;
}

/** Filesystem calls used for writing; injectable so tests can simulate failures. */
export interface SnapshotFs {
  open: typeof nodeFs.open;
  rename: typeof nodeFs.rename;
  unlink: typeof nodeFs.unlink;
}

export interface DurableIndexedDbOptions {
  /** The `store_name` passed to `OlmMachine.initialize` / `StoreHandle.open`. */
  storeName: string;
  /** Factory the engine will use; a fresh fake-indexeddb `IDBFactory` by default. */
  factory?: IdbFactoryLike;
  /** For tests: filesystem used for writing. */
  fs?: SnapshotFs;
}

export const DEVICE_FILE = "device.json";
const SEGMENT_RE = /^crypto-store\.(\d{10})\.snapshot$/;
export function segmentFileName(gen: number): string {
  return `crypto-store.${String(gen).padStart(10, "0")}.snapshot`;
}
const MAGIC = Buffer.from("OCKIDB02", "latin1");
const PREAMBLE = MAGIC.byteLength + 4;
const HASH_BYTES = 32;
const FORMAT = 2;
const COMPACT_SLACK = 1 << 20;

interface IndexDef {
  name: string;
  keyPath: string | string[];
  unique: boolean;
  multiEntry: boolean;
}
/** Where a chunk lives: segment `gen`, `offset` from the start of that segment's chunk area. */
interface ChunkRef {
  gen: number;
  offset: number;
  length: number;
}
interface StoreMeta {
  name: string;
  keyPath: string | string[] | null;
  autoIncrement: boolean;
  indexes: IndexDef[];
  records: number;
}
interface StoreHeader extends StoreMeta {
  chunk: ChunkRef;
}
interface DatabaseHeader {
  name: string;
  version: number;
  stores: StoreHeader[];
}
interface SegmentHeader {
  format: number;
  storeName: string;
  gen: number;
  written: string;
  device: DeviceInfo | undefined;
  databases: DatabaseHeader[];
}
interface StoreChunk {
  keys: unknown[];
  values: unknown[];
}
/** Cached state of one object store: its metadata and either a ref on disk or unwritten bytes. */
interface CachedStore {
  meta: StoreMeta;
  ref: ChunkRef | undefined;
  bytes: Buffer | undefined;
}
interface CachedDatabase {
  version: number;
  stores: Map<string, CachedStore>;
}

function request<T>(req: IdbRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function txDone(tx: IdbTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

// ---- dirty tracking -------------------------------------------------------------------------
// Every non-readonly transaction opened on a fake-indexeddb database marks the object stores of
// its scope dirty, by database name. The hook is installed once per process on fake-indexeddb's
// IDBDatabase prototype (the wasm glue calls `db.transaction(names, mode)` through it); it only
// records names, then calls the original. Over-approximation is harmless (the store is re-read).
// Schema changes happen only in versionchange transactions, which bump the version: a version
// different from the cached one makes the whole database dirty.
type DirtyListener = (dbName: string, stores: readonly string[] | "all") => void;
const dirtyListeners = new Set<DirtyListener>();
let prototypePatched = false;

function patchTransactionTracking(): void {
  if (prototypePatched) return;
  prototypePatched = true;
  const proto = (FakeIDBDatabase as unknown as { prototype: Record<string, unknown> }).prototype;
  const original = proto["transaction"] as (this: IdbDatabase, ...args: unknown[]) => unknown;
  proto["transaction"] = function (this: IdbDatabase, names: unknown, mode?: unknown, ...rest: unknown[]): unknown {
    const tx = original.call(this, names, mode, ...rest);
    // Anything but readonly (the default) may write: "readwrite", or the non-standard
    // "readwriteflush" the glue knows about.
    if (mode !== undefined && mode !== "readonly" && dirtyListeners.size > 0) {
      const list = typeof names === "string" ? [names] : Array.from(names as Iterable<string>);
      for (const listener of dirtyListeners) listener(this.name, list);
    }
    return tx;
  };
}

// ---- atomic file writing --------------------------------------------------------------------

const defaultFs: SnapshotFs = { open: nodeFs.open, rename: nodeFs.rename, unlink: nodeFs.unlink };

/**
 * Write `chunks` to `path` atomically: temp file in the same directory (mode 0600), fsync, rename
 * over `path`, fsync the directory. On failure the temp file is removed and `path` is untouched.
 */
export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[], fs: SnapshotFs = defaultFs): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await fs.open(tmp, "wx", 0o600);
  try {
    try {
      for (const chunk of chunks) {
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

async function fsyncDir(dir: string): Promise<void> {
  const dh = await nodeFs.open(dir, "r");
  try {
    await dh.sync();
  } catch (err) {
    // Some filesystems cannot fsync a directory; the rename is then as durable as they make it.
    const code = errCode(err);
    if (code !== "EINVAL" && code !== "ENOTSUP" && code !== "EISDIR" && code !== "EPERM") throw err;
  } finally {
    await dh.close();
  }
}

// ---- segment encoding -----------------------------------------------------------------------

function encodeSegment(header: SegmentHeader, chunks: readonly Buffer[]): Buffer[] {
  const headerBytes = serialize(header);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(headerBytes.byteLength);
  const parts = [MAGIC, len, headerBytes, ...chunks];
  const hash = createHash("sha256");
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());
  return parts;
}

interface DecodedSegment {
  header: SegmentHeader;
  /** The chunk area (between header and checksum). */
  chunks: Buffer;
}

/** Verify and split a segment; throws an Error with a readable message when it is damaged. */
function decodeSegment(buf: Buffer): DecodedSegment {
  if (buf.byteLength < PREAMBLE + HASH_BYTES) throw new Error(`file too short (${buf.byteLength} bytes)`);
  if (!buf.subarray(0, MAGIC.byteLength).equals(MAGIC)) throw new Error("not a crypto store snapshot (bad magic)");
  const body = buf.subarray(0, buf.byteLength - HASH_BYTES);
  if (!createHash("sha256").update(body).digest().equals(buf.subarray(buf.byteLength - HASH_BYTES))) {
    throw new Error("checksum mismatch (truncated or damaged file)");
  }
  const headerLen = body.readUInt32BE(MAGIC.byteLength);
  if (PREAMBLE + headerLen > body.byteLength) throw new Error("header length out of range");
  const header = deserialize(body.subarray(PREAMBLE, PREAMBLE + headerLen)) as SegmentHeader;
  if (header === null || typeof header !== "object" || header.format !== FORMAT || !Array.isArray(header.databases)) {
    throw new Error(`unsupported snapshot format ${String((header as { format?: unknown } | null)?.format)}`);
  }
  return { header, chunks: body.subarray(PREAMBLE + headerLen) };
}

function isDeviceInfo(v: unknown): v is DeviceInfo {
  const d = v as DeviceInfo | null;
  return typeof d === "object" && d !== null && typeof d.userId === "string" && typeof d.deviceId === "string" && typeof d.created === "string";
}

/**
 * Decide from a `load()` result whether the store belongs to `expected`. Leave out
 * `expected.deviceId` when it is not known in advance (any device of that user then matches).
 * A device.json without any snapshot means the store was lost: `corrupt` with `storedDeviceId`.
 */
export function checkStoreOwner(load: LoadResult, expected: { userId: string; deviceId?: string }): StoreCheck {
  if (load.kind === "corrupt") {
    return load.device ? { kind: "corrupt", reason: load.reason, storedDeviceId: load.device.deviceId } : { kind: "corrupt", reason: load.reason };
  }
  if (load.kind === "fresh") {
    if (!load.device) return { kind: "fresh" };
    return {
      kind: "corrupt",
      reason: `no crypto store snapshot, but ${DEVICE_FILE} records device ${load.device.deviceId} of ${load.device.userId}: the store was lost`,
      storedDeviceId: load.device.deviceId,
    };
  }
  const d = load.device;
  if (!d) return { kind: "corrupt", reason: "the crypto store snapshot records no device identity" };
  if (load.databases === 0) return { kind: "corrupt", reason: "the crypto store snapshot contains no database", storedDeviceId: d.deviceId };
  if (d.userId !== expected.userId || (expected.deviceId !== undefined && d.deviceId !== expected.deviceId)) {
    return { kind: "mismatch", storedUserId: d.userId, storedDeviceId: d.deviceId };
  }
  return { kind: "match", userId: d.userId, deviceId: d.deviceId, created: d.created };
}

// ---- the store ------------------------------------------------------------------------------

/**
 * Makes the engine's IndexedDB databases durable.
 *
 *   const store = new DurableIndexedDb({ storeName: "crypto" });
 *   store.install();                                  // before the engine touches IndexedDB
 *   const loaded = await store.load(dir);             // before OlmMachine.initialize
 *   const check = checkStoreOwner(loaded, { userId }); // fresh | match | mismatch | corrupt
 *   //   mismatch/corrupt: await store.discard(), then start a new device
 *   const machine = await OlmMachine.initialize(user, device, "crypto", passphrase);
 *   if (check.kind !== "match") await store.setDevice({ userId, deviceId });
 *   // per batch: await all machine work, then `await store.flush()`, then acknowledge.
 */
export class DurableIndexedDb {
  readonly storeName: string;
  readonly factory: IdbFactoryLike;
  #fs: SnapshotFs;
  #dir: string | undefined;
  #device: DeviceInfo | undefined;
  #connections = new Map<string, IdbDatabase>();
  #cache = new Map<string, CachedDatabase>();
  #dirty = new Map<string, Set<string> | "all">();
  /** Segment files on disk: gen → size. */
  #segments = new Map<number, number>();
  #nextGen = 1;
  #committedGen = 0;
  #forceFull = false;
  /** Signature of the manifest last written (device + databases/versions/stores). */
  #lastManifest: string | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #listener: DirtyListener;

  constructor(options: DurableIndexedDbOptions) {
    if (!options.storeName || options.storeName.includes("::")) throw new Error("storeName must be non-empty and must not contain '::'");
    this.storeName = options.storeName;
    this.factory = options.factory ?? (new FakeIDBFactory() as unknown as IdbFactoryLike);
    this.#fs = options.fs ?? defaultFs;
    this.#listener = (dbName, stores) => this.#markDirty(dbName, stores);
    patchTransactionTracking();
    dirtyListeners.add(this.#listener);
  }

  /** Prefix of this store's database names. */
  get prefix(): string {
    return `${this.storeName}::`;
  }

  /** Directory given to `load`. */
  get dir(): string | undefined {
    return this.#dir;
  }

  /** Device identity recorded for this store, if any. */
  get device(): DeviceInfo | undefined {
    return this.#device;
  }

  #owns(dbName: string): boolean {
    return dbName.startsWith(this.prefix);
  }

  #markDirty(dbName: string, stores: readonly string[] | "all"): void {
    if (!this.#owns(dbName)) return;
    const cur = this.#dirty.get(dbName);
    if (cur === "all") return;
    if (stores === "all") {
      this.#dirty.set(dbName, "all");
      return;
    }
    const set = cur ?? new Set<string>();
    for (const s of stores) set.add(s);
    this.#dirty.set(dbName, set);
  }

  /** Make this instance's factory the process-wide IndexedDB the engine uses (see top of file). */
  install(): void {
    const globals: Record<string, unknown> = {
      indexedDB: this.factory,
      IDBFactory: FakeIDBFactory,
      IDBCursor: FakeIDBCursor,
      IDBCursorWithValue: FakeIDBCursorWithValue,
      IDBDatabase: FakeIDBDatabase,
      IDBIndex: FakeIDBIndex,
      IDBKeyRange: FakeIDBKeyRange,
      IDBObjectStore: FakeIDBObjectStore,
      IDBOpenDBRequest: FakeIDBOpenDBRequest,
      IDBRequest: FakeIDBRequest,
      IDBTransaction: FakeIDBTransaction,
      IDBVersionChangeEvent: FakeIDBVersionChangeEvent,
    };
    for (const [name, value] of Object.entries(globals)) {
      Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
    }
  }

  /** Stop tracking writes and close this instance's own connections (not the engine's). */
  close(): void {
    dirtyListeners.delete(this.#listener);
    for (const db of this.#connections.values()) db.close();
    this.#connections.clear();
  }

  /**
   * Restore this store's databases from `dir` into the factory. Run it before the engine opens the
   * store, on a factory holding none of its databases. Removes temp files of interrupted writes and
   * unreferenced segments.
   */
  async load(dir: string): Promise<LoadResult> {
    this.#dir = dir;
    await nodeFs.mkdir(dir, { recursive: true, mode: 0o700 });
    const existing = (await this.factory.databases()).filter((d) => d.name !== undefined && this.#owns(d.name));
    if (existing.length > 0) throw new Error(`IndexedDB already holds ${existing.map((d) => d.name).join(", ")}: load() must run first`);

    const gens: number[] = [];
    for (const name of await nodeFs.readdir(dir)) {
      const m = SEGMENT_RE.exec(name);
      if (m?.[1] !== undefined) gens.push(Number(m[1]));
      else if (name.startsWith(".") && name.endsWith(".tmp") && (name.startsWith(".crypto-store.") || name.startsWith(`.${DEVICE_FILE}.`))) {
        await nodeFs.unlink(join(dir, name)).catch(() => undefined);
      }
    }
    gens.sort((a, b) => b - a);
    this.#nextGen = (gens[0] ?? 0) + 1;

    const sidecar = await this.#readDeviceFile(dir);
    if (sidecar.kind === "bad") return { kind: "corrupt", reason: sidecar.reason };
    const sidecarDevice = sidecar.device;
    const corrupt = (reason: string, device: DeviceInfo | undefined = sidecarDevice): LoadResult =>
      device ? { kind: "corrupt", reason, device } : { kind: "corrupt", reason };

    const newest = gens[0];
    if (newest === undefined) return sidecarDevice ? { kind: "fresh", device: sidecarDevice } : { kind: "fresh" };

    const segments = new Map<number, DecodedSegment>();
    let bytes = 0;
    const readSegment = async (gen: number): Promise<DecodedSegment> => {
      const cached = segments.get(gen);
      if (cached) return cached;
      const path = join(dir, segmentFileName(gen));
      let buf: Buffer;
      try {
        buf = await nodeFs.readFile(path);
      } catch (err) {
        if (errCode(err) === "ENOENT") throw new Error(`${path} is missing`);
        throw err;
      }
      let seg: DecodedSegment;
      try {
        seg = decodeSegment(buf);
      } catch (err) {
        throw new Error(`${path}: ${(err as Error).message}`);
      }
      if (seg.header.gen !== gen) throw new Error(`${path} claims generation ${seg.header.gen}`);
      segments.set(gen, seg);
      this.#segments.set(gen, buf.byteLength);
      bytes += buf.byteLength;
      return seg;
    };

    let header: SegmentHeader;
    const chunks: Array<{ db: DatabaseHeader; store: StoreHeader; data: StoreChunk }> = [];
    try {
      header = (await readSegment(newest)).header;
      if (header.storeName !== this.storeName) throw new Error(`snapshot belongs to store "${header.storeName}", not "${this.storeName}"`);
      if (header.device !== undefined && !isDeviceInfo(header.device)) throw new Error("snapshot device identity is malformed");
      for (const db of header.databases) {
        if (!this.#owns(db.name)) throw new Error(`snapshot contains foreign database ${db.name}`);
        for (const store of db.stores) {
          const { gen, offset, length } = store.chunk;
          if (gen > newest) throw new Error(`${db.name}/${store.name} refers to a newer generation ${gen}`);
          const seg = await readSegment(gen);
          if (offset < 0 || offset + length > seg.chunks.byteLength) throw new Error(`chunk of ${db.name}/${store.name} is out of range`);
          const data = deserialize(seg.chunks.subarray(offset, offset + length)) as StoreChunk;
          if (!Array.isArray(data?.keys) || !Array.isArray(data.values) || data.keys.length !== data.values.length) {
            throw new Error(`chunk of ${db.name}/${store.name} is malformed`);
          }
          chunks.push({ db, store, data });
        }
      }
    } catch (err) {
      this.#segments.clear();
      return corrupt(`crypto store snapshot in ${dir} is unreadable: ${(err as Error).message}`);
    }
    const device = header.device ?? sidecarDevice;
    if (header.device && sidecarDevice && (header.device.userId !== sidecarDevice.userId || header.device.deviceId !== sidecarDevice.deviceId)) {
      this.#segments.clear();
      return corrupt(
        `${DEVICE_FILE} (${sidecarDevice.userId} ${sidecarDevice.deviceId}) disagrees with the snapshot (${header.device.userId} ${header.device.deviceId})`,
        header.device,
      );
    }

    let records = 0;
    for (const db of header.databases) {
      records += await this.#restoreDatabase(
        db,
        chunks.filter((c) => c.db === db),
      );
      const stores = new Map<string, CachedStore>();
      for (const s of db.stores) {
        const { chunk, ...meta } = s;
        stores.set(s.name, { meta, ref: chunk, bytes: undefined });
      }
      this.#cache.set(db.name, { version: db.version, stores });
      this.#dirty.delete(db.name); // our own restore writes
    }
    // The signature of what is on disk: a device known only from device.json is not in it yet, so
    // the next flush writes a segment that records it.
    this.#device = header.device;
    this.#lastManifest = this.#manifestSignature();
    this.#device = device;
    this.#committedGen = newest;
    // Segments not referenced by the newest one are leftovers of interrupted clean-ups.
    for (const gen of gens) {
      if (!segments.has(gen)) await nodeFs.unlink(join(dir, segmentFileName(gen))).catch(() => undefined);
    }
    return { kind: "loaded", device, gen: newest, databases: header.databases.length, records, bytes };
  }

  async #restoreDatabase(db: DatabaseHeader, chunks: Array<{ store: StoreHeader; data: StoreChunk }>): Promise<number> {
    const req = this.factory.open(db.name, db.version);
    let upgraded = false;
    req.onupgradeneeded = () => {
      upgraded = true;
      const conn = req.result;
      for (const s of db.stores) {
        const os = conn.createObjectStore(s.name, { keyPath: s.keyPath, autoIncrement: s.autoIncrement });
        for (const ix of s.indexes) os.createIndex(ix.name, ix.keyPath, { unique: ix.unique, multiEntry: ix.multiEntry });
      }
    };
    const conn = await request(req);
    try {
      if (!upgraded) throw new Error(`database ${db.name} already existed`);
      if (db.stores.length === 0) return 0;
      const tx = conn.transaction(
        db.stores.map((s) => s.name),
        "readwrite",
      );
      const done = txDone(tx);
      let records = 0;
      for (const { store, data } of chunks) {
        const os = tx.objectStore(store.name);
        // Explicit keys for out-of-line stores; in-line keys come from the values. (An
        // autoIncrement generator resumes after the highest restored key, which differs from the
        // original only if the highest keys had been deleted; the engine uses no autoIncrement.)
        for (let i = 0; i < data.keys.length; i++) {
          if (store.keyPath === null) os.put(data.values[i], data.keys[i]);
          else os.put(data.values[i]);
        }
        records += data.keys.length;
      }
      await done;
      return records;
    } finally {
      conn.close();
    }
  }

  /** Record the device identity: now in device.json (atomically), and in the next segment. */
  async setDevice(device: { userId: string; deviceId: string; created?: string }): Promise<DeviceInfo> {
    const dir = this.#requireDir();
    const info: DeviceInfo = { userId: device.userId, deviceId: device.deviceId, created: device.created ?? new Date().toISOString() };
    await writeFileAtomic(join(dir, DEVICE_FILE), [Buffer.from(JSON.stringify(info, null, 2) + "\n")], this.#fs);
    this.#device = info;
    return info;
  }

  async #readDeviceFile(dir: string): Promise<{ kind: "none"; device?: undefined } | { kind: "ok"; device: DeviceInfo } | { kind: "bad"; reason: string }> {
    const path = join(dir, DEVICE_FILE);
    let text: string;
    try {
      text = await nodeFs.readFile(path, "utf8");
    } catch (err) {
      if (errCode(err) === "ENOENT") return { kind: "none" };
      throw err;
    }
    try {
      const v: unknown = JSON.parse(text);
      if (!isDeviceInfo(v)) return { kind: "bad", reason: `${path} lacks userId/deviceId/created` };
      return { kind: "ok", device: { userId: v.userId, deviceId: v.deviceId, created: v.created } };
    } catch (err) {
      return { kind: "bad", reason: `${path} is not valid JSON: ${(err as Error).message}` };
    }
  }

  #requireDir(): string {
    if (this.#dir === undefined) throw new Error("DurableIndexedDb: call load(dir) first");
    return this.#dir;
  }

  #manifestSignature(): string {
    const dbs = [...this.#cache.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, db]) => [name, db.version, [...db.stores.keys()].sort()]);
    return JSON.stringify([this.#device ?? null, dbs]);
  }

  /**
   * Persist the current state of this store's databases. Serialised with itself; safe to call at
   * any time (see top of file). Resolves after the new segment and its directory entry are fsynced;
   * rejects (leaving the previous state on disk intact) when writing fails.
   */
  flush(): Promise<FlushStats> {
    const run = this.#chain.then(
      () => this.#flushNow(),
      () => this.#flushNow(),
    );
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #flushNow(): Promise<FlushStats> {
    const dir = this.#requireDir();
    const t0 = performance.now();
    const names = (await this.factory.databases())
      .map((d) => d.name)
      .filter((n): n is string => n !== undefined && this.#owns(n))
      .sort();
    const full = this.#forceFull;
    const serialised: string[] = [];
    let storesTotal = 0;
    let records = 0;

    for (const name of names) {
      const conn = await this.#connection(name);
      // From here to the creation of the readonly transaction all is synchronous: every write
      // transaction created before it is in `dirty` (and ordered before our read); every one
      // created after it is ordered after our read and marked dirty for the next flush.
      const storeNames = [...conn.objectStoreNames].sort();
      let cached = this.#cache.get(name);
      if (!cached || cached.version !== conn.version) {
        cached = { version: conn.version, stores: new Map() };
        this.#cache.set(name, cached);
      }
      const db = cached;
      const dirty = this.#dirty.get(name);
      this.#dirty.delete(name);
      for (const s of [...db.stores.keys()]) if (!storeNames.includes(s)) db.stores.delete(s);
      const toRead = storeNames.filter((s) => full || dirty === "all" || dirty?.has(s) === true || !db.stores.has(s));
      if (toRead.length > 0) {
        try {
          const tx = conn.transaction(toRead, "readonly");
          const done = txDone(tx);
          const results = await Promise.all(
            toRead.map(async (s) => {
              const os = tx.objectStore(s);
              const indexes: IndexDef[] = [...os.indexNames].sort().map((ixName) => {
                const ix = os.index(ixName);
                return { name: ix.name, keyPath: ix.keyPath, unique: ix.unique, multiEntry: ix.multiEntry };
              });
              const [keys, values] = await Promise.all([request(os.getAllKeys()), request(os.getAll())]);
              const bytes = serialize({ keys, values } satisfies StoreChunk);
              const meta: StoreMeta = { name: s, keyPath: os.keyPath, autoIncrement: os.autoIncrement, indexes, records: keys.length };
              return { s, entry: { meta, ref: undefined, bytes } satisfies CachedStore };
            }),
          );
          await done;
          for (const r of results) db.stores.set(r.s, r.entry);
        } catch (err) {
          this.#markDirty(name, dirty === "all" ? "all" : toRead);
          throw err;
        }
        for (const s of toRead) serialised.push(`${name.slice(this.prefix.length)}/${s}`);
      }
      storesTotal += storeNames.length;
      for (const s of db.stores.values()) records += s.meta.records;
    }
    for (const name of [...this.#cache.keys()]) if (!names.includes(name)) this.#cache.delete(name);

    // Lay out the new segment: unwritten chunks go into it, the rest keep their refs.
    const gen = this.#nextGen;
    const header: SegmentHeader = { format: FORMAT, storeName: this.storeName, gen, written: new Date().toISOString(), device: this.#device, databases: [] };
    const newChunks: Buffer[] = [];
    const assigned: Array<{ entry: CachedStore; ref: ChunkRef }> = [];
    let offset = 0;
    for (const name of names) {
      const db = this.#cache.get(name);
      if (!db) continue;
      const dbHeader: DatabaseHeader = { name, version: db.version, stores: [] };
      for (const s of [...db.stores.keys()].sort()) {
        const entry = db.stores.get(s);
        if (!entry) continue;
        let ref = entry.ref;
        if (!ref) {
          if (!entry.bytes) throw new Error(`internal: no data for ${name}/${s}`);
          ref = { gen, offset, length: entry.bytes.byteLength };
          offset += entry.bytes.byteLength;
          newChunks.push(entry.bytes);
          assigned.push({ entry, ref });
        }
        dbHeader.stores.push({ ...entry.meta, chunk: ref });
      }
      header.databases.push(dbHeader);
    }
    const signature = this.#manifestSignature();
    const t1 = performance.now();
    const base = { gen: this.#committedGen, databases: header.databases.length, records, serialised, storesTotal, snapshotMs: t1 - t0 };
    if (newChunks.length === 0 && signature === this.#lastManifest) {
      return { ...base, written: false, bytes: 0, diskBytes: this.#diskBytes(), writeMs: 0 };
    }

    const parts = encodeSegment(header, newChunks);
    const size = parts.reduce((n, p) => n + p.byteLength, 0);
    this.#nextGen = gen + 1; // never reuse a generation number, even after a failure
    await writeFileAtomic(join(dir, segmentFileName(gen)), parts, this.#fs);
    // Committed.
    this.#committedGen = gen;
    for (const { entry, ref } of assigned) {
      entry.ref = ref;
      entry.bytes = undefined;
    }
    this.#lastManifest = signature;
    this.#segments.set(gen, size);
    const referenced = new Set<number>(header.databases.flatMap((d) => d.stores.map((s) => s.chunk.gen)));
    referenced.add(gen);
    for (const old of [...this.#segments.keys()]) {
      if (referenced.has(old)) continue;
      await nodeFs.unlink(join(dir, segmentFileName(old))).catch((err: unknown) => {
        if (errCode(err) !== "ENOENT") throw err;
      });
      this.#segments.delete(old);
    }
    const live = header.databases.reduce((n, d) => n + d.stores.reduce((m, s) => m + s.chunk.length, 0), 0);
    const diskBytes = this.#diskBytes();
    this.#forceFull = diskBytes > 2 * live + COMPACT_SLACK;
    const t2 = performance.now();
    return { ...base, gen, written: true, bytes: size, diskBytes, writeMs: t2 - t1 };
  }

  #diskBytes(): number {
    let n = 0;
    for (const size of this.#segments.values()) n += size;
    return n;
  }

  async #connection(name: string): Promise<IdbDatabase> {
    const cached = this.#connections.get(name);
    if (cached) return cached;
    const conn = await request(this.factory.open(name));
    // Never block the engine: let go when it upgrades or deletes the database.
    conn.onversionchange = () => {
      conn.close();
      if (this.#connections.get(name) === conn) this.#connections.delete(name);
      this.#markDirty(name, "all");
    };
    conn.onclose = () => {
      if (this.#connections.get(name) === conn) this.#connections.delete(name);
    };
    this.#connections.set(name, conn);
    return conn;
  }

  /**
   * Move the store's files into `dir/discarded-<time>/` and delete its databases from the factory,
   * so a new device can start on an empty store. Call with the engine's machine closed. Returns the
   * directory the files were moved to.
   */
  async discard(): Promise<string> {
    const dir = this.#requireDir();
    for (const db of this.#connections.values()) db.close();
    this.#connections.clear();
    this.#cache.clear();
    this.#dirty.clear();
    this.#segments.clear();
    this.#device = undefined;
    this.#lastManifest = undefined;
    this.#committedGen = 0;
    this.#forceFull = false;
    for (const d of await this.factory.databases()) {
      if (d.name !== undefined && this.#owns(d.name)) await request(this.factory.deleteDatabase(d.name));
    }
    const to = join(dir, `discarded-${new Date().toISOString().replace(/[:.]/g, "-")}`);
    await nodeFs.mkdir(to, { recursive: true, mode: 0o700 });
    for (const name of await nodeFs.readdir(dir)) {
      if (SEGMENT_RE.test(name) || name === DEVICE_FILE) await nodeFs.rename(join(dir, name), join(to, name));
    }
    await fsyncDir(to);
    await fsyncDir(dir);
    return to;
  }
}
