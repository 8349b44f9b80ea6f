/**
 * Reads the old Python bot's crypto store: matrix-nio's SQLite database (`<user>_<device>.db` in
 * its store directory, tables made by peewee from nio's `store/models.py`), which holds libolm
 * pickles encrypted with nio's pickle key. Nothing here decrypts a pickle: the engine does that.
 *
 * The old store is never written: its file (with any `-journal`/`-wal` beside it) is copied into a
 * private temporary directory and the copy is opened read-only, since even a read-only SQLite open
 * may create or fold a `-shm`/`-wal` file next to the database.
 */
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/** nio's `ClientConfig.pickle_key` default (matrix-nio 0.25.2, `client/base_client.py`). */
export const NIO_DEFAULT_PICKLE_KEY = 'DEFAULT_KEY';

/** A problem with the input, told to the operator in one line. */
export class LegacyStoreError extends Error {
  override readonly name = 'LegacyStoreError';
}

export interface NioOlmSession {
  readonly pickle: string;
  readonly senderKey: string;
  readonly created: Date;
  readonly lastUsed: Date;
}

export interface NioMegolmSession {
  readonly pickle: string;
  readonly sessionId: string;
  readonly roomId: string;
  readonly senderKey: string;
  /** The ed25519 key the sender claimed (nio's `fp_key`). */
  readonly signingKey: string;
  /** Forwarded to the old bot rather than sent by its creator. */
  readonly forwarded: boolean;
}

export interface NioStore {
  readonly file: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly accountPickle: string;
  /** Whether nio had uploaded the account's device keys. */
  readonly shared: boolean;
  readonly olmSessions: readonly NioOlmSession[];
  readonly megolmSessions: readonly NioMegolmSession[];
}

const REQUIRED_TABLES = ['accounts', 'olmsessions', 'megolminboundsessions'];

function text(value: unknown, what: string): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  throw new LegacyStoreError(`${what} is not text or a blob`);
}

/** nio writes naive local times as "%Y-%m-%d %H:%M:%S.%f". */
function nioDate(value: unknown): Date {
  const m = typeof value === 'string' ? /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(value) : null;
  if (!m) return new Date(0);
  const [, y, mo, d, h, mi, s, frac] = m.map(Number) as number[];
  return new Date(y!, mo! - 1, d!, h!, mi!, s!, Math.floor((frac ?? 0) / 1000));
}

/** The nio databases in `from` (a store directory or one `.db` file). */
export function findNioDatabases(from: string): string[] {
  if (!existsSync(from)) throw new LegacyStoreError(`${from} does not exist`);
  if (statSync(from).isFile()) return [from];
  const files = readdirSync(from).filter((n) => n.endsWith('.db')).map((n) => join(from, n));
  if (files.length === 0) throw new LegacyStoreError(`no matrix-nio database (*.db) in ${from}`);
  return files;
}

/** Copies a database with its journal files into a fresh private directory; returns the copy and a cleanup. */
function privateCopy(file: string): { copy: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'nio-store-'));
  const copy = join(dir, basename(file));
  for (const suffix of ['', '-journal', '-wal']) {
    if (existsSync(file + suffix)) copyFileSync(file + suffix, copy + suffix);
  }
  return { copy, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Reads the one nio account under `from`. Several accounts (several databases, or one database
 * with several rows) are refused: the operator names the file to use.
 */
export function readNioStore(from: string): NioStore {
  const stores = findNioDatabases(from).flatMap((file) => readNioDatabase(file));
  if (stores.length === 0) throw new LegacyStoreError(`no account in the matrix-nio store ${from} (did the old bot ever log in with encryption on?)`);
  if (stores.length > 1) {
    throw new LegacyStoreError(`several accounts in ${from}: ${stores.map((s) => `${s.userId} ${s.deviceId} (${s.file})`).join(', ')}; pass --from the .db file of the one to import`);
  }
  return stores[0] as NioStore;
}

function readNioDatabase(file: string): NioStore[] {
  const { copy, cleanup } = privateCopy(file);
  let db: DatabaseSync | undefined;
  try {
    try {
      db = new DatabaseSync(copy, { readOnly: true });
      const tables = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((r) => r.name));
      const missing = REQUIRED_TABLES.filter((t) => !tables.has(t));
      if (missing.length > 0) throw new LegacyStoreError(`${file} is not a matrix-nio store (no table ${missing.join(', ')})`);
    } catch (error) {
      if (error instanceof LegacyStoreError) throw error;
      throw new LegacyStoreError(`${file} is not a readable SQLite database: ${(error as Error).message}`);
    }
    const accounts = db.prepare('SELECT id, account, user_id, device_id, shared FROM accounts').all();
    return accounts.map((a) => {
      const where = `${file} (account ${String(a['user_id'])} ${String(a['device_id'])})`;
      const olm = db!.prepare('SELECT session, sender_key, creation_time, last_usage_date FROM olmsessions WHERE account_id = ?').all(a['id'] as number);
      const forwarded = new Set(
        (db!.prepare('SELECT DISTINCT session_id FROM forwardedchains').all() as Array<{ session_id: string }>).map((r) => r.session_id),
      );
      const megolm = db!.prepare('SELECT session, session_id, room_id, sender_key, fp_key FROM megolminboundsessions WHERE account_id = ?').all(a['id'] as number);
      return {
        file,
        userId: text(a['user_id'], `user_id in ${where}`),
        deviceId: text(a['device_id'], `device_id in ${where}`),
        accountPickle: text(a['account'], `the account pickle in ${where}`),
        shared: Boolean(a['shared']),
        olmSessions: olm.map((s) => ({
          pickle: text(s['session'], `an Olm session in ${where}`),
          senderKey: text(s['sender_key'], `an Olm session's sender key in ${where}`),
          created: nioDate(s['creation_time']),
          lastUsed: nioDate(s['last_usage_date']),
        })),
        megolmSessions: megolm.map((s) => ({
          pickle: text(s['session'], `a Megolm session in ${where}`),
          sessionId: text(s['session_id'], `a Megolm session id in ${where}`),
          roomId: text(s['room_id'], `a Megolm session's room in ${where}`),
          senderKey: text(s['sender_key'], `a Megolm session's sender key in ${where}`),
          signingKey: text(s['fp_key'], `a Megolm session's signing key in ${where}`),
          forwarded: forwarded.has(text(s['session_id'], 'session id')),
        })),
      };
    });
  } finally {
    db?.close();
    cleanup();
  }
}
