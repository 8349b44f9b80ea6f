import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import type { DeviceFileFs } from '../../src/crypto/crypto-store.ts';
import { silentLogger } from '../../src/log.ts';
import { StartupError } from '../../src/startup-error.ts';
import { openStorage } from '../../src/store/storage.ts';
import { onVolume, storageProblem } from '../../src/store/storage-error.ts';
import { canUnshare, lines, startBotProcess, unreachableBotEnv } from './bot-process.ts';

let root: string;
let counter = 0;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'openclaw-storage-test-'));
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

function fresh(): string {
  return join(root, `case-${++counter}`);
}

function errno(code: string, syscall: string, path?: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: failed, ${syscall}${path ? ` '${path}'` : ''}`), { code, syscall, ...(path ? { path } : {}) });
}

/** Asserts a one-line StartupError with exit code 4 that starts with `storage.path:` and matches `pattern`. */
function assertStorageFailure(error: unknown, pattern: RegExp): true {
  assert.ok(error instanceof StartupError, `expected a StartupError, got ${String(error)}`);
  assert.equal(error.exitCode, 4);
  assert.equal(lines(error.message).length, 1, error.message);
  assert.match(error.message, /^storage\.path: /);
  assert.match(error.message, pattern);
  return true;
}

describe('storageProblem: which failures are the volume', () => {
  test('filesystem errno codes, in words, with the code and path', () => {
    assert.equal(storageProblem(errno('ENOSPC', 'write')), 'no space left on the volume (ENOSPC)');
    assert.equal(storageProblem(errno('EROFS', 'open', '/data/x')), 'the volume is mounted read-only (EROFS: /data/x)');
    for (const code of ['EACCES', 'EPERM', 'ENOTDIR', 'EISDIR', 'EDQUOT', 'EIO']) assert.ok(storageProblem(errno(code, 'open', '/d')), code);
  });

  test('found in the cause chain', () => {
    assert.match(storageProblem(new Error('flush failed', { cause: errno('ENOSPC', 'write') })) ?? '', /ENOSPC/);
  });

  test('SQLite file errors', () => {
    const dir = fresh();
    mkdirSync(dir);
    writeFileSync(join(dir, 'bad.sqlite'), 'this is not a database, not at all, not even a little bit of one.');
    let caught: unknown;
    try {
      new DatabaseSync(join(dir, 'bad.sqlite')).exec('SELECT * FROM sqlite_master');
    } catch (error) {
      caught = error;
    }
    assert.match(storageProblem(caught) ?? '', /SQLITE_NOTADB/);
    assert.match(storageProblem(Object.assign(new Error('database or disk is full'), { code: 'ERR_SQLITE_ERROR', errcode: 13 })) ?? '', /SQLITE_FULL/);
    assert.match(storageProblem(Object.assign(new Error('disk I/O error'), { code: 'ERR_SQLITE_ERROR', errcode: 10 | (3 << 8) })) ?? '', /SQLITE_IOERR/, 'extended codes');
  });

  test('not the volume: bugs, SQL errors, network errors', () => {
    assert.equal(storageProblem(new TypeError('x is undefined')), undefined);
    assert.equal(storageProblem(Object.assign(new Error('no such table: t'), { code: 'ERR_SQLITE_ERROR', errcode: 1 })), undefined);
    assert.equal(storageProblem(errno('EPERM', 'connect')), undefined, 'a firewall, not a disk');
    assert.equal(storageProblem(errno('ECONNREFUSED', 'connect')), undefined);
    assert.equal(storageProblem('a string'), undefined);
  });
});

describe('openStorage: one line and exit 4 for every volume failure', () => {
  test('storage.path is a file', () => {
    const file = fresh();
    writeFileSync(file, 'x');
    assert.throws(() => openStorage(file), (e) => assertStorageFailure(e, /a file is in the way \(EEXIST/));
    assert.throws(() => openStorage(join(file, 'data')), (e) => assertStorageFailure(e, /not a directory \(ENOTDIR/));
  });

  test('state.sqlite is a directory, or not a database', () => {
    const a = fresh();
    mkdirSync(join(a, 'state.sqlite'), { recursive: true });
    assert.throws(() => openStorage(a), (e) => assertStorageFailure(e, /cannot open the state store .*SQLITE_CANTOPEN/));
    const b = fresh();
    mkdirSync(b);
    writeFileSync(join(b, 'state.sqlite'), 'garbage '.repeat(100));
    assert.throws(() => openStorage(b), (e) => assertStorageFailure(e, /SQLITE_NOTADB/));
    // The lock was let go: once the volume is fixed, the bot starts.
    rmSync(join(b, 'state.sqlite'));
    openStorage(b).close();
  });

  test('the lock file is a directory', () => {
    const dir = fresh();
    mkdirSync(join(dir, 'instance.lock'), { recursive: true });
    assert.throws(() => openStorage(dir), (e) => assertStorageFailure(e, /cannot take the instance lock in .*SQLITE_CANTOPEN/));
  });
});

describe('the crypto store at start-up: one line and exit 4', () => {
  const devices: DeviceApi = { ensure: async () => 'created', remove: async () => undefined, list: async () => [] };
  const open = (dir: string, fs?: DeviceFileFs): Promise<unknown> =>
    onVolume(`cannot use the crypto store in ${join(dir, 'crypto')}`, () => openDeviceCrypto({ userId: '@bot:example.org', dir, passphrase: undefined, devices, logger: silentLogger(), ...(fs ? { fs } : {}) }));

  test('storage.path/crypto is a regular file', async () => {
    const dir = fresh();
    mkdirSync(dir);
    writeFileSync(join(dir, 'crypto'), 'not a directory');
    await assert.rejects(open(dir), (e) => assertStorageFailure(e, /cannot use the crypto store in .*crypto: .*\((EEXIST|ENOTDIR)/));
  });

  const failing = (when: (path: string) => boolean, code: string): DeviceFileFs => ({
    rename: fsp.rename,
    unlink: fsp.unlink,
    open: (async (path: string, flags?: string, mode?: number) => {
      if (when(path)) throw errno(code, 'open', path);
      return fsp.open(path, flags, mode);
    }) as DeviceFileFs['open'],
  });

  test('ENOSPC writing device.json', async () => {
    const dir = fresh();
    await assert.rejects(open(dir, failing((p) => p.includes('device.json'), 'ENOSPC')), (e) => assertStorageFailure(e, /no space left on the volume \(ENOSPC: .*device\.json/));
  });

  test('the store file cannot be opened (a directory where it belongs)', async () => {
    const dir = fresh();
    mkdirSync(join(dir, 'crypto', 'crypto-store.sqlite'), { recursive: true });
    await assert.rejects(open(dir), (e) => assertStorageFailure(e, /cannot use the crypto store in .*crypto: .*SQLITE_CANTOPEN/));
  });
});

describe('the bot process on a volume it cannot use', { timeout: 120_000 }, () => {
  const mounting = ['unshare', '--mount', '--propagation', 'private'];

  /** Runs the bot with `storage.path` at `data` after `setup`: shell commands run in a private mount namespace, so mounts vanish with it. */
  async function runOn(setup: string, data: string): Promise<{ code: number | null; stderr: string }> {
    const bot = startBotProcess(unreachableBotEnv(root, data), { wrapper: [...mounting, 'sh', '-c', `${setup} && exec "$0" "$@"`] });
    const { code } = await bot.exited;
    return { code, stderr: bot.stderr() };
  }

  function assertOneLine(result: { code: number | null; stderr: string }, pattern: RegExp): void {
    assert.equal(result.code, 4, result.stderr);
    const out = lines(result.stderr);
    assert.equal(out.length, 1, result.stderr);
    assert.match(out[0] ?? '', /^start-up failed: storage\.path: /);
    assert.match(out[0] ?? '', pattern);
  }

  test('read-only volume (tmpfs mounted ro): EROFS', async (t) => {
    if (!canUnshare(mounting)) return t.skip('cannot make a mount namespace here (needs root)');
    const mnt = fresh();
    mkdirSync(mnt);
    assertOneLine(await runOn(`mount -t tmpfs -o ro,size=1m none ${mnt}`, join(mnt, 'data')), /read-only \(EROFS/);
  });

  test('an existing store on a volume remounted read-only: EROFS', async (t) => {
    if (!canUnshare(mounting)) return t.skip('cannot make a mount namespace here (needs root)');
    const mnt = fresh();
    openStorage(join(mnt, 'data')).close();
    assertOneLine(await runOn(`mount --bind ${mnt} ${mnt} && mount -o remount,bind,ro ${mnt}`, join(mnt, 'data')), /read-only \(EROFS/);
  });

  test('a full volume: no space left', async (t) => {
    if (!canUnshare(mounting)) return t.skip('cannot make a mount namespace here (needs root)');
    const mnt = fresh();
    mkdirSync(mnt);
    const fill = `mount -t tmpfs -o size=64k none ${mnt} && (dd if=/dev/zero of=${mnt}/fill bs=4k 2>/dev/null || true)`;
    assertOneLine(await runOn(fill, join(mnt, 'data')), /no space left on the volume/);
  });

  test('a volume the bot user may not write: EACCES', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to run the bot as another user');
    const base = fresh();
    mkdirSync(base, { mode: 0o755 });
    const env = unreachableBotEnv(base, join(base, 'data'));
    for (const file of ['registration.yaml', 'kubeconfig']) chownSync(join(base, file), 65534, 65534);
    mkdirSync(join(base, 'data'), { mode: 0o755 }); // root's, not writable by the bot
    chmodSync(root, 0o755);
    const bot = startBotProcess(env, { uid: 65534, gid: 65534 });
    const { code } = await bot.exited;
    assertOneLine({ code, stderr: bot.stderr() }, /permission denied \(EACCES/);
  });
});
