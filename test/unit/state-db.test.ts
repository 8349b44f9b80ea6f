import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateDb } from '../../src/store/state-db.ts';

let root: string;
let counter = 0;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'openclaw-state-test-'));
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

/** A fresh, not yet existing store directory (nested, to check it is created). */
function freshDir(): string {
  return join(root, `store-${++counter}`, 'data');
}

describe('StateDb', () => {
  test('creates its directory and a 0600 database file', () => {
    const dir = freshDir();
    const db = StateDb.open(dir);
    try {
      assert.equal(db.path, join(dir, 'state.sqlite'));
      assert.ok(existsSync(db.path));
      assert.equal(statSync(db.path).mode & 0o777, 0o600);
      assert.equal(statSync(dir).mode & 0o077, 0, 'the directory is not open to group or others');
      db.claimEvent('$write', '!room:example.org');
      db.set('k', 'v');
      for (const suffix of ['-wal', '-shm']) {
        if (existsSync(db.path + suffix)) assert.equal(statSync(db.path + suffix).mode & 0o777, 0o600, suffix);
      }
    } finally {
      db.close();
    }
  });

  test('claimEvent is true once per event id, then false', () => {
    const db = StateDb.open(freshDir());
    try {
      assert.equal(db.wasHandled('$a'), false);
      assert.equal(db.claimEvent('$a', '!room:example.org'), true);
      assert.equal(db.wasHandled('$a'), true);
      assert.equal(db.claimEvent('$a', '!room:example.org'), false);
      assert.equal(db.claimEvent('$a', '!other:example.org'), false, 'the event id alone decides');
      assert.equal(db.claimEvent('$b', '!room:example.org'), true);
      assert.equal(db.wasHandled('$c'), false);
    } finally {
      db.close();
    }
  });

  test('claims and values survive close and reopen', () => {
    const dir = freshDir();
    const first = StateDb.open(dir);
    assert.equal(first.claimEvent('$durable', '!room:example.org'), true);
    first.set('device_id', 'ABCDEFGH');
    first.close();

    const second = StateDb.open(dir);
    try {
      assert.equal(second.wasHandled('$durable'), true);
      assert.equal(second.claimEvent('$durable', '!room:example.org'), false);
      assert.equal(second.get('device_id'), 'ABCDEFGH');
      assert.equal(statSync(second.path).mode & 0o777, 0o600, 'still 0600 after reopening');
    } finally {
      second.close();
    }
  });

  test('key-value get and set', () => {
    const db = StateDb.open(freshDir());
    try {
      assert.equal(db.get('missing'), undefined);
      db.set('k', 'v1');
      assert.equal(db.get('k'), 'v1');
      db.set('k', 'v2');
      assert.equal(db.get('k'), 'v2', 'set replaces');
      db.set('empty', '');
      assert.equal(db.get('empty'), '', 'an empty string is a value, not absence');
      db.set('other', 'x');
      assert.equal(db.get('k'), 'v2');
    } finally {
      db.close();
    }
  });

  test('prune removes only claims older than the cut-off', () => {
    const db = StateDb.open(freshDir());
    const now = 1_800_000_000_000;
    const day = 24 * 3600 * 1000;
    try {
      assert.equal(db.claimEvent('$old1', '!r:x.org', now - 40 * day), true);
      assert.equal(db.claimEvent('$old2', '!r:x.org', now - 31 * day), true);
      assert.equal(db.claimEvent('$recent', '!r:x.org', now - 29 * day), true);
      assert.equal(db.claimEvent('$edge', '!r:x.org', now - 30 * day), true);
      assert.equal(db.claimEvent('$new', '!r:x.org', now), true);

      assert.equal(db.prune(30 * day, now), 2);
      assert.equal(db.wasHandled('$old1'), false);
      assert.equal(db.wasHandled('$old2'), false);
      assert.equal(db.wasHandled('$recent'), true);
      assert.equal(db.wasHandled('$new'), true);
      assert.equal(db.wasHandled('$edge'), true, 'exactly at the cut-off is not older than it');
      assert.equal(db.claimEvent('$recent', '!r:x.org', now), false);
      assert.equal(db.prune(30 * day, now), 0, 'nothing left to prune');
    } finally {
      db.close();
    }
  });

  test('close is idempotent', () => {
    const db = StateDb.open(freshDir());
    db.close();
    assert.doesNotThrow(() => db.close());
  });
});

describe('StateDb: upgrades', () => {
  test('a database from before the "acting" column gains it, keeping its claims', async () => {
    const { DatabaseSync } = await import('node:sqlite');
    const { mkdirSync } = await import('node:fs');
    const dir = join(root, 'old-schema');
    mkdirSync(dir, { recursive: true });
    const old = new DatabaseSync(join(dir, 'state.sqlite'));
    old.exec(`CREATE TABLE handled_events (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL, handled_at INTEGER NOT NULL, finished INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
      INSERT INTO handled_events VALUES ('$old', '!r:x', 1, 0);`);
    old.close();
    const db = StateDb.open(dir);
    try {
      assert.equal(db.wasFinished('$old'), false);
      assert.equal(db.wasActing('$old'), false);
      db.markActing('$old');
      assert.equal(db.wasActing('$old'), true);
    } finally {
      db.close();
    }
  });
});
