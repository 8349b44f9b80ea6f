import { accessSync, chmodSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/**
 * One bot per `storage.path`. Two processes writing one crypto store would each advance the same
 * ratchets and publish the same one-time keys: the store would be silently wrong afterwards.
 *
 * The lock is a kernel file lock, taken through SQLite on a file of its own (`instance.lock`): an
 * exclusive transaction that stays open for the life of the process. The kernel drops it when the
 * process ends in any way (SIGKILL, OOM kill, a crash), so a stale lock cannot exist, and a
 * restarted process that gets the same pid (pid 1 in a container) is not confused with the old one,
 * as it would be with a pid file. `state.sqlite` is not locked: the `trust` command writes to it
 * while the bot runs.
 *
 * A locked SQLite file cannot be read by the process that is refused, so the owner describes
 * itself in a separate file, `instance.json`, written once it holds the lock. That file is never
 * opened by this module while the lock is held: closing any descriptor of a file drops the
 * process's POSIX locks on it, so only SQLite may touch `instance.lock`.
 */

export const LOCK_FILE = 'instance.lock';
export const OWNER_FILE = 'instance.json';

/** What the running instance says about itself, for the one that is refused. */
export interface InstanceOwner {
  readonly pid: number;
  readonly hostname: string;
  /** ISO time the instance took the lock. */
  readonly started: string;
}

/** Another live process holds the lock on this storage path. */
export class InstanceLockedError extends Error {
  readonly dir: string;
  /** Undefined when the owner has not described itself (yet, or its file is unreadable). */
  readonly owner: InstanceOwner | undefined;
  constructor(dir: string, owner: InstanceOwner | undefined) {
    super(`${dir} is in use by another instance of the bot (${owner ? describeOwner(owner) : 'it has not said who it is yet'}); only one may use a storage path at a time: stop the other one first`);
    this.name = 'InstanceLockedError';
    this.dir = dir;
    this.owner = owner;
  }
}

export function describeOwner(owner: InstanceOwner): string {
  // From a file on the volume: kept to one short line whatever it holds.
  const clean = (text: string): string => text.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 100);
  return `pid ${owner.pid} on host ${clean(owner.hostname)}, started ${clean(owner.started)}`;
}

const SQLITE_BUSY = 5;

export class InstanceLock {
  readonly dir: string;
  readonly owner: InstanceOwner;
  readonly #db: DatabaseSync;

  private constructor(dir: string, db: DatabaseSync, owner: InstanceOwner) {
    this.dir = dir;
    this.#db = db;
    this.owner = owner;
  }

  /**
   * Takes the lock on `dir` (creating it) or throws `InstanceLockedError` naming the holder.
   * Filesystem errors (read-only, full, not a directory …) are thrown as they are.
   */
  static acquire(dir: string, now: Date = new Date()): InstanceLock {
    makeDir(dir);
    // SQLite would only say "cannot open"; access() names the reason (EROFS, EACCES).
    accessSync(dir, constants.W_OK | constants.X_OK);
    const path = join(dir, LOCK_FILE);
    // timeout 0: a held lock is an answer, not something to wait for.
    const db = new DatabaseSync(path, { timeout: 0 });
    try {
      // EXCLUSIVE locking mode keeps the lock even if the transaction ended; the open transaction takes it now.
      db.exec('PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;');
    } catch (error) {
      db.close();
      if (isBusy(error)) throw new InstanceLockedError(dir, readOwner(dir));
      throw error;
    }
    try {
      chmodSync(path, 0o600);
      const owner: InstanceOwner = { pid: process.pid, hostname: hostname(), started: now.toISOString() };
      // Written atomically, so the refused instance never reads half a file.
      const tmp = join(dir, `.${OWNER_FILE}.${process.pid}.tmp`);
      try {
        writeFileSync(tmp, JSON.stringify(owner) + '\n', { mode: 0o600 });
        renameSync(tmp, join(dir, OWNER_FILE));
      } catch (error) {
        rmSync(tmp, { force: true, recursive: true });
        throw error;
      }
      return new InstanceLock(dir, db, owner);
    } catch (error) {
      // Not usable (e.g. a read-only volume): let go, the caller reports the error.
      db.close();
      throw error;
    }
  }

  /** Lets the next instance start. The owner file goes first, so it never describes a process that is gone. */
  release(): void {
    if (!this.#db.isOpen) return;
    try {
      unlinkSync(join(this.dir, OWNER_FILE));
    } catch {
      // Already gone or the volume went read-only: the next owner overwrites it.
    }
    this.#db.close();
  }
}

/** mkdir -p, except that a failure names its real cause: recursive mkdir reports a read-only volume as ENOENT. */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    const missing: string[] = [];
    for (let d = dir; !existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.unshift(d);
    for (const d of missing) mkdirSync(d, { mode: 0o700 });
    throw error;
  }
}

function isBusy(error: unknown): boolean {
  const { errcode } = error as { errcode?: unknown };
  return typeof errcode === 'number' && (errcode & 0xff) === SQLITE_BUSY;
}

/** The holder's own description, if it has written one that parses. */
export function readOwner(dir: string): InstanceOwner | undefined {
  try {
    const value = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as Partial<InstanceOwner>;
    if (typeof value.pid !== 'number' || typeof value.hostname !== 'string' || typeof value.started !== 'string') return undefined;
    return { pid: value.pid, hostname: value.hostname, started: value.started };
  } catch {
    return undefined;
  }
}
