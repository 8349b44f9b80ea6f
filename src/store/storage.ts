import { EXIT, StartupError } from '../startup-error.ts';
import { InstanceLock, InstanceLockedError } from './instance-lock.ts';
import { StateDb } from './state-db.ts';
import { storageFailure } from './storage-error.ts';

/** The volume as the running bot holds it: the single-writer lock, then the state database. */
export interface Storage {
  readonly lock: InstanceLock;
  readonly state: StateDb;
  /** Closes the state database, then lets the next instance in. */
  close(): void;
}

/**
 * Locks `dir` for this process and opens the state database in it. Every failure is a one-line
 * StartupError with exit code 4: another instance holds the lock, or the volume cannot be used.
 */
export function openStorage(dir: string): Storage {
  let lock: InstanceLock;
  try {
    lock = InstanceLock.acquire(dir);
  } catch (error) {
    if (error instanceof InstanceLockedError) throw new StartupError(`storage.path: ${error.message}`, EXIT.store, { cause: error });
    throw storageFailure(error, `cannot take the instance lock in ${dir}`);
  }
  let state: StateDb | undefined;
  try {
    state = StateDb.open(dir);
    // Opening succeeds on a read-only file or volume (SQLite falls back to reading); writing here
    // makes that a start-up failure instead of a failure of the first command.
    state.set('storage.checked_at', new Date().toISOString());
  } catch (error) {
    state?.close();
    lock.release();
    throw storageFailure(error, `cannot open the state store in ${dir}`);
  }
  const opened = state;
  return {
    lock,
    state: opened,
    close() {
      opened.close();
      lock.release();
    },
  };
}
