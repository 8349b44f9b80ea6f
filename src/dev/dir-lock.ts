/**
 * A cross-process lock made of a directory (mkdir is atomic) with an owner file. A lock whose
 * owner died, or that is older than `staleMs`, is broken. Used around caches that several test
 * processes (or a CI run and a developer) may fill at the same time.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface DirLockOptions {
  /** A held lock older than this is considered abandoned. */
  staleMs: number;
  /** Give up waiting after this long. */
  waitMs: number;
  /** Called once when we start waiting for another holder. */
  onWait?: (lockDir: string) => void;
}

interface LockOwner { pid: number; host: string; since: number }

/** Runs `fn` while holding `lockDir`; removes it afterwards, also when `fn` throws. */
export async function withDirLock<T>(lockDir: string, options: DirLockOptions, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + options.waitMs;
  let told = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      const owner: LockOwner = { pid: process.pid, host: hostname(), since: Date.now() };
      await writeFile(join(lockDir, 'owner.json'), JSON.stringify(owner));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await lockIsStale(lockDir, options.staleMs)) {
      // Move it aside atomically, then delete: two breakers cannot both win the rename.
      const aside = `${lockDir}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
      try { await rename(lockDir, aside); await rm(aside, { recursive: true, force: true }); } catch { /* someone else broke it */ }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for the lock ${lockDir}`);
    if (!told) { options.onWait?.(lockDir); told = true; }
    await sleep(1000);
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

async function lockIsStale(lockDir: string, staleMs: number): Promise<boolean> {
  let owner: LockOwner | undefined;
  try {
    owner = JSON.parse(await readFile(join(lockDir, 'owner.json'), 'utf8')) as LockOwner;
  } catch {
    // Owner file not written yet (just created) or lost: go by the directory's age.
    try {
      return Date.now() - (await stat(lockDir)).mtimeMs > 60_000;
    } catch {
      return false; // gone: the next mkdir will tell
    }
  }
  if (Date.now() - owner.since > staleMs) return true;
  return owner.host === hostname() && !pidAlive(owner.pid);
}

/** True while a process with this id exists (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}
