/**
 * The matrix-nio store reader on hand-made databases with nio's table layout (a real store made by
 * matrix-nio is read in test/integration/legacy-store.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DatabaseSync } from 'node:sqlite';
import { LegacyStoreError, readNioStore } from '../../src/crypto/legacy/nio-store.ts';

const SCHEMA = `
  CREATE TABLE accounts (id INTEGER PRIMARY KEY, account BLOB, user_id TEXT, device_id TEXT, shared INTEGER);
  CREATE TABLE olmsessions (creation_time TEXT, last_usage_date TEXT, sender_key TEXT, account_id INTEGER, session BLOB, session_id TEXT PRIMARY KEY);
  CREATE TABLE megolminboundsessions (sender_key TEXT, account_id INTEGER, fp_key TEXT, room_id TEXT, session BLOB, session_id TEXT PRIMARY KEY);
  CREATE TABLE forwardedchains (id INTEGER PRIMARY KEY, sender_key TEXT, session_id TEXT);
`;

function nioDb(dir: string, name: string, accounts: Array<[string, string]>): string {
  const file = join(dir, name);
  const db = new DatabaseSync(file);
  db.exec(SCHEMA);
  accounts.forEach(([user, device], i) => {
    db.prepare('INSERT INTO accounts VALUES (?, ?, ?, ?, 1)').run(i + 1, Buffer.from(`account-pickle-${i}`), user, device);
    db.prepare('INSERT INTO olmsessions VALUES (?, ?, ?, ?, ?, ?)').run('2024-05-06 07:08:09.123456', '2024-05-07 00:00:00.000000', 'curveA', i + 1, Buffer.from('olm-pickle'), `olm-${i}`);
    db.prepare('INSERT INTO megolminboundsessions VALUES (?, ?, ?, ?, ?, ?)').run('curveA', i + 1, 'edA', '!room:x', Buffer.from('megolm-1'), `m1-${i}`);
    db.prepare('INSERT INTO megolminboundsessions VALUES (?, ?, ?, ?, ?, ?)').run('curveB', i + 1, 'edB', '!room:x', 'megolm-2', `m2-${i}`);
    db.prepare('INSERT INTO forwardedchains (sender_key, session_id) VALUES (?, ?)').run('curveC', `m2-${i}`);
  });
  db.close();
  return file;
}

const fails = (from: string, pattern: RegExp): void => {
  assert.throws(() => readNioStore(from), (error: unknown) => error instanceof LegacyStoreError && pattern.test(error.message) && !error.message.includes('\n'));
};

describe('readNioStore', () => {
  test('reads the account and its sessions without touching the store', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nio-read-'));
    const file = nioDb(dir, '@bot:x_DEV.db', [['@bot:x', 'DEV']]);
    const before = readFileSync(file);
    const store = readNioStore(dir);
    assert.equal(store.userId, '@bot:x');
    assert.equal(store.deviceId, 'DEV');
    assert.equal(store.accountPickle, 'account-pickle-0');
    assert.equal(store.olmSessions.length, 1);
    assert.equal(store.olmSessions[0]?.pickle, 'olm-pickle');
    assert.equal(store.olmSessions[0]?.created.getFullYear(), 2024);
    assert.equal(store.olmSessions[0]?.created.getMilliseconds(), 123);
    assert.deepEqual(store.megolmSessions.map((s) => [s.pickle, s.signingKey, s.forwarded]), [['megolm-1', 'edA', false], ['megolm-2', 'edB', true]]);
    assert.deepEqual(readFileSync(file), before);
    assert.deepEqual(readdirSync(dir), ['@bot:x_DEV.db'], 'no -shm, -wal or -journal appeared beside it');
  });

  test('refuses several accounts, naming them; a single .db file may be chosen', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nio-read-'));
    nioDb(dir, 'a.db', [['@bot:x', 'ONE']]);
    const b = nioDb(dir, 'b.db', [['@bot:x', 'TWO']]);
    fails(dir, /several accounts in .*: @bot:x ONE .*, @bot:x TWO .*pass --from the \.db file/);
    assert.equal(readNioStore(b).deviceId, 'TWO');
  });

  test('one line for a missing path, an empty directory, a foreign SQLite file, a file that is not SQLite', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nio-read-'));
    fails(join(dir, 'missing'), /missing does not exist$/);
    fails(dir, /^no matrix-nio database \(\*\.db\) in /);
    const foreign = new DatabaseSync(join(dir, 'other.db'));
    foreign.exec('CREATE TABLE t (x)');
    foreign.close();
    fails(join(dir, 'other.db'), /is not a matrix-nio store \(no table accounts, olmsessions, megolminboundsessions\)$/);
    writeFileSync(join(dir, 'junk.db'), 'not sqlite at all, long enough to be read as a header........................................');
    fails(join(dir, 'junk.db'), /is not a readable SQLite database/);
  });

  test('no account: the old bot never logged in with encryption on', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nio-read-'));
    nioDb(dir, 'empty.db', []);
    fails(dir, /^no account in the matrix-nio store/);
  });
});
