/**
 * Reads the crypto store format that came before the SQLite one, so that an existing bot keeps its
 * device, keys and sessions on its first start with the new store.
 *
 * That format (written by `durable-idb.ts` until it was replaced): files
 * `crypto-store.<gen>.snapshot`, each MAGIC | u32 header length | header (v8) | chunks | sha256 of
 * all before it. The newest segment's header lists every IndexedDB database (name, version) and
 * object store (indexes, and a reference {gen, offset, length} to its chunk, which may live in an
 * older segment); a chunk is v8.serialize({keys, values}) of the whole object store. A damaged or
 * missing segment makes the store unreadable: it is reported, never half-migrated.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deserialize } from 'node:v8';
import { isDeviceInfo, type DeviceInfo } from './device-file.ts';
import { encodeKey, toKey } from './idb/key.ts';
import type { SqliteBackend } from './idb/sqlite-backend.ts';

export const SNAPSHOT_RE = /^crypto-store\.(\d{10})\.snapshot$/;
const MAGIC = Buffer.from('OCKIDB02', 'latin1');
const PREAMBLE = MAGIC.byteLength + 4;
const HASH_BYTES = 32;

interface IndexDef {
  name: string;
  keyPath: string | string[];
  unique: boolean;
  multiEntry: boolean;
}
interface StoreHeader {
  name: string;
  indexes: IndexDef[];
  chunk: { gen: number; offset: number; length: number };
}
interface SegmentHeader {
  format: number;
  storeName: string;
  gen: number;
  device: DeviceInfo | undefined;
  databases: Array<{ name: string; version: number; stores: StoreHeader[] }>;
}
interface Segment {
  header: SegmentHeader;
  chunks: Buffer;
}

/** What a snapshot store held, ready to import. */
export interface Snapshot {
  readonly gen: number;
  readonly files: readonly string[];
  readonly device: DeviceInfo | undefined;
  readonly databases: ReadonlyArray<{
    name: string;
    version: number;
    stores: ReadonlyArray<{ name: string; indexes: readonly IndexDef[]; keys: unknown[]; values: unknown[] }>;
  }>;
}

/** Snapshot files in `dir`, oldest first. */
export async function snapshotFiles(dir: string): Promise<string[]> {
  const gens = (await readdir(dir)).flatMap((name) => (SNAPSHOT_RE.test(name) ? [name] : []));
  return gens.sort();
}

function decodeSegment(buf: Buffer): Segment {
  if (buf.byteLength < PREAMBLE + HASH_BYTES) throw new Error(`file too short (${buf.byteLength} bytes)`);
  if (!buf.subarray(0, MAGIC.byteLength).equals(MAGIC)) throw new Error('not a crypto store snapshot (bad magic)');
  const body = buf.subarray(0, buf.byteLength - HASH_BYTES);
  if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.byteLength - HASH_BYTES))) {
    throw new Error('checksum mismatch (truncated or damaged file)');
  }
  const headerLen = body.readUInt32BE(MAGIC.byteLength);
  if (PREAMBLE + headerLen > body.byteLength) throw new Error('header length out of range');
  const header = deserialize(body.subarray(PREAMBLE, PREAMBLE + headerLen)) as SegmentHeader;
  if (header === null || typeof header !== 'object' || header.format !== 2 || !Array.isArray(header.databases)) {
    throw new Error(`unsupported snapshot format ${String((header as { format?: unknown } | null)?.format)}`);
  }
  return { header, chunks: body.subarray(PREAMBLE + headerLen) };
}

/**
 * Reads the snapshot store of `storeName` in `dir` (throws with a readable reason when it is
 * damaged); undefined when there is none.
 */
export async function readSnapshot(dir: string, storeName: string): Promise<Snapshot | undefined> {
  const files = await snapshotFiles(dir);
  const newest = files.at(-1);
  if (!newest) return undefined;
  const segments = new Map<number, Segment>();
  const segment = async (gen: number): Promise<Segment> => {
    const cached = segments.get(gen);
    if (cached) return cached;
    const name = `crypto-store.${String(gen).padStart(10, '0')}.snapshot`;
    if (!files.includes(name)) throw new Error(`${name} is missing`);
    let seg: Segment;
    try {
      seg = decodeSegment(await readFile(join(dir, name)));
    } catch (err) {
      throw new Error(`${name}: ${(err as Error).message}`);
    }
    if (seg.header.gen !== gen) throw new Error(`${name} claims generation ${seg.header.gen}`);
    segments.set(gen, seg);
    return seg;
  };
  const gen = Number(SNAPSHOT_RE.exec(newest)?.[1]);
  const { header } = await segment(gen);
  if (header.storeName !== storeName) throw new Error(`snapshot belongs to store "${header.storeName}", not "${storeName}"`);
  if (header.device !== undefined && !isDeviceInfo(header.device)) throw new Error('snapshot device identity is malformed');
  const databases: Array<Snapshot['databases'][number]> = [];
  for (const db of header.databases) {
    if (!db.name.startsWith(`${storeName}::`)) throw new Error(`snapshot contains foreign database ${db.name}`);
    const stores = [];
    for (const store of db.stores) {
      const { gen: at, offset, length } = store.chunk;
      if (at > gen) throw new Error(`${db.name}/${store.name} refers to a newer generation ${at}`);
      const seg = await segment(at);
      if (offset < 0 || offset + length > seg.chunks.byteLength) throw new Error(`chunk of ${db.name}/${store.name} is out of range`);
      const data = deserialize(seg.chunks.subarray(offset, offset + length)) as { keys: unknown[]; values: unknown[] };
      if (!Array.isArray(data?.keys) || !Array.isArray(data.values) || data.keys.length !== data.values.length) {
        throw new Error(`chunk of ${db.name}/${store.name} is malformed`);
      }
      stores.push({ name: store.name, indexes: store.indexes, keys: data.keys, values: data.values });
    }
    databases.push({ name: db.name, version: db.version, stores });
  }
  return { gen, files, device: header.device, databases };
}

/** Writes a snapshot's databases into the (empty) SQLite store; the caller wraps it in one transaction. */
export function importSnapshot(backend: SqliteBackend, snapshot: Snapshot): number {
  let records = 0;
  for (const db of snapshot.databases) {
    backend.setVersion(db.name, db.version);
    for (const s of db.stores) {
      const store = backend.createStore(db.name, s.name);
      for (const ix of s.indexes) backend.createIndex(store, ix.name, ix.keyPath, ix.unique, ix.multiEntry);
      for (let i = 0; i < s.keys.length; i++) backend.put(store, encodeKey(toKey(s.keys[i])), backend.prepare(store, s.values[i]), true);
      records += s.keys.length;
    }
  }
  return records;
}
