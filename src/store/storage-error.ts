import { EXIT, StartupError } from '../startup-error.ts';

/**
 * Failures of the volume under `storage.path` (full, read-only, wrong owner, a file where a
 * directory belongs …), told apart from bugs, so that start-up can end with one line and exit 4
 * instead of a stack trace: the operator has to fix the volume, and restarting will not.
 */

/** errno codes that are about the filesystem, with words an operator understands. */
const ERRNO: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on the volume',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the volume',
  EROFS: 'the volume is mounted read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EISDIR: 'a directory is where a file belongs',
  ENOENT: 'no such file or directory',
  EEXIST: 'a file is in the way',
  ENOTEMPTY: 'a directory is in the way',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the path is too long',
  EIO: 'input/output error on the volume',
  ESTALE: 'stale file handle (the network volume went away)',
  ENXIO: 'the device behind the volume is gone',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EBUSY: 'the file is busy',
};

/** SQLite primary result codes (node:sqlite's `errcode`, low byte) that are about the file, not the SQL. */
const SQLITE: Readonly<Record<number, string>> = {
  3: 'permission denied (SQLITE_PERM)',
  5: 'the database is locked by another process (SQLITE_BUSY)',
  8: 'the database cannot be written (SQLITE_READONLY: read-only volume or file)',
  10: 'input/output error on the volume (SQLITE_IOERR)',
  11: 'the database file is damaged (SQLITE_CORRUPT)',
  13: 'no space left on the volume (SQLITE_FULL)',
  14: 'the database file cannot be opened (SQLITE_CANTOPEN)',
  26: 'the file is not a database (SQLITE_NOTADB)',
};

/** System calls whose errors are about sockets or child processes, never the volume (a firewall's EPERM on connect). */
const NOT_FILES = new Set(['connect', 'listen', 'bind', 'accept', 'getaddrinfo', 'spawn', 'kill']);

interface Coded {
  readonly code?: unknown;
  readonly errcode?: unknown;
  readonly path?: unknown;
  readonly syscall?: unknown;
  readonly cause?: unknown;
}

/**
 * One line saying what went wrong with the volume, or undefined when `error` (or its causes) is
 * not a filesystem or SQLite file failure.
 */
export function storageProblem(error: unknown): string | undefined {
  for (let e = error, depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++, e = (e as Coded).cause) {
    const { code, errcode, path, syscall } = e as Coded;
    if (typeof code === 'string' && ERRNO[code] && !(typeof syscall === 'string' && NOT_FILES.has(syscall))) {
      return `${ERRNO[code]} (${code}${typeof path === 'string' ? `: ${path}` : ''})`;
    }
    if (code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' && SQLITE[errcode & 0xff]) {
      return SQLITE[errcode & 0xff];
    }
  }
  return undefined;
}

/** The one-line start-up failure for a storage problem (exit 4); other errors are returned as they are. */
export function asStorageFailure(error: unknown, what: string): unknown {
  if (error instanceof StartupError) return error;
  const problem = storageProblem(error);
  if (problem === undefined) return error;
  return new StartupError(`storage.path: ${what}: ${problem}`, EXIT.store, { cause: error });
}

/** As `asStorageFailure`, for a step that only touches the volume: whatever failed, it is a storage failure. */
export function storageFailure(error: unknown, what: string): StartupError {
  if (error instanceof StartupError) return error;
  const problem = storageProblem(error) ?? firstLine(error);
  return new StartupError(`storage.path: ${what}: ${problem}`, EXIT.store, { cause: error });
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}

/** Runs a start-up step that uses the volume; its storage failures become one line and exit 4. */
export async function onVolume<T>(what: string, step: () => Promise<T> | T): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw asStorageFailure(error, what);
  }
}
