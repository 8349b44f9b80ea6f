import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { ProgressTable } from './progress-table.ts';
import { RunsTable } from './runs-table.ts';

export type { RunRecord } from './runs-table.ts';
export type { ProgressRecord } from './progress-table.ts';

export interface OperatorRequest {
  readonly kind: 'repin' | 'verify';
  readonly userId: string;
  readonly deviceId: string | undefined;
}

/** The bot's small durable state on the volume: handled event ids and a few named values. */
export class StateDb {
  readonly path: string;
  /** Timed runs, one per Deployment. */
  readonly runs: RunsTable;
  /** Start/stop results being edited as the rollout moves. */
  readonly progress: ProgressTable;
  readonly #db: DatabaseSync;
  readonly #claim: StatementSync;
  readonly #has: StatementSync;
  readonly #finish: StatementSync;
  readonly #finished: StatementSync;
  readonly #get: StatementSync;
  readonly #set: StatementSync;
  // On every batch or every reply: prepared once. Rarer statements are prepared where they run.
  readonly #markActing: StatementSync;
  readonly #acting: StatementSync;
  readonly #recordReply: StatementSync;
  readonly #reply: StatementSync;
  readonly #replies: StatementSync;
  readonly #batchFailures: StatementSync;

  private constructor(path: string) {
    this.path = path;
    this.#db = new DatabaseSync(path);
    // FULL: a committed claim survives a power cut, which is what "executed at most once" rests on.
    this.#db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS handled_events (
        event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        handled_at INTEGER NOT NULL,
        finished INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS handled_events_at ON handled_events (handled_at);
      CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS pending_decryption (
        event_id TEXT PRIMARY KEY,
        event_json TEXT NOT NULL,
        first_seen INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS replies (
        event_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        room_id TEXT NOT NULL,
        content_json TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        PRIMARY KEY (event_id, purpose)
      );
      CREATE TABLE IF NOT EXISTS failing_batches (
        fingerprint TEXT PRIMARY KEY,
        first_failed_at INTEGER NOT NULL,
        failures INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS dead_letters (
        event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        recorded_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS button_messages (
        event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        recorded_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS operator_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        user_id TEXT NOT NULL,
        device_id TEXT,
        requested_at INTEGER NOT NULL
      );
    `);
    // Added after the first release: databases created before have no such column yet.
    const columns = this.#db.prepare('PRAGMA table_info(handled_events)').all() as Array<{ name: string }>;
    if (!columns.some((c) => c.name === 'acting')) this.#db.exec('ALTER TABLE handled_events ADD COLUMN acting INTEGER NOT NULL DEFAULT 0');
    // Several targets (issue 13): which one a message's buttons act on. NULL for messages from before.
    const buttonColumns = this.#db.prepare('PRAGMA table_info(button_messages)').all() as Array<{ name: string }>;
    if (!buttonColumns.some((c) => c.name === 'target')) this.#db.exec('ALTER TABLE button_messages ADD COLUMN target TEXT');
    this.runs = new RunsTable(this.#db);
    this.progress = new ProgressTable(this.#db);
    this.#claim = this.#db.prepare('INSERT INTO handled_events (event_id, room_id, handled_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING');
    this.#has = this.#db.prepare('SELECT 1 FROM handled_events WHERE event_id = ?');
    this.#finish = this.#db.prepare('UPDATE handled_events SET finished = 1 WHERE event_id = ?');
    this.#finished = this.#db.prepare('SELECT finished FROM handled_events WHERE event_id = ?');
    this.#get = this.#db.prepare('SELECT value FROM kv WHERE key = ?');
    this.#set = this.#db.prepare('INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    this.#markActing = this.#db.prepare('UPDATE handled_events SET acting = 1 WHERE event_id = ?');
    this.#acting = this.#db.prepare('SELECT acting FROM handled_events WHERE event_id = ?');
    this.#recordReply = this.#db.prepare('INSERT INTO replies (event_id, purpose, room_id, content_json, recorded_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
    this.#reply = this.#db.prepare('SELECT content_json FROM replies WHERE event_id = ? AND purpose = ?');
    this.#replies = this.#db.prepare('SELECT purpose, room_id, content_json FROM replies WHERE event_id = ? ORDER BY rowid');
    this.#batchFailures = this.#db.prepare('SELECT failures, first_failed_at FROM failing_batches WHERE fingerprint = ?');
    for (const suffix of ['', '-wal', '-shm']) {
      try {
        chmodSync(path + suffix, 0o600);
      } catch {
        // -wal/-shm appear lazily; the process umask (077) covers them when they do.
      }
    }
  }

  static open(dir: string): StateDb {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return new StateDb(join(dir, 'state.sqlite'));
  }

  /**
   * Records that an event is being handled. True the first time for an event id, false ever
   * after: the caller acts only on true, so each event is acted on at most once.
   */
  claimEvent(eventId: string, roomId: string, now = Date.now()): boolean {
    return Number(this.#claim.run(eventId, roomId, now).changes) === 1;
  }

  /** Records that handling ran to its end (the reply was sent). */
  finishEvent(eventId: string): void {
    this.#finish.run(eventId);
  }

  /**
   * Records that the event's command is about to act on the cluster (the request may leave the
   * process from now on). A restart that finds this without a recorded outcome cannot know
   * whether it acted; one that does not find it knows it did not.
   */
  markActing(eventId: string): void {
    this.#markActing.run(eventId);
  }

  wasActing(eventId: string): boolean {
    const row = this.#acting.get(eventId) as { acting: number } | undefined;
    return row?.acting === 1;
  }

  /**
   * For an event claimed before: true if its handling finished, false if the bot stopped in the
   * middle (crashed or was killed after the claim), undefined if it was never claimed.
   */
  wasFinished(eventId: string): boolean | undefined {
    const row = this.#finished.get(eventId) as { finished: number } | undefined;
    return row === undefined ? undefined : row.finished === 1;
  }

  wasHandled(eventId: string): boolean {
    return this.#has.get(eventId) !== undefined;
  }

  /** Runs `work` as one SQLite transaction: all of its writes are on disk, or none. */
  atomically<T>(work: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      this.#db.exec('COMMIT');
      return result;
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  get(key: string): string | undefined {
    const row = this.#get.get(key) as { value: string } | undefined;
    return row?.value;
  }

  set(key: string, value: string): void {
    this.#set.run(key, value);
  }

  /**
   * Trust changes an operator asked for from the command line (`trust repin`, `trust verify`),
   * picked up by the running bot. The database is the only channel both processes may write.
   */
  addOperatorRequest(kind: OperatorRequest['kind'], userId: string, deviceId?: string): void {
    this.#db.prepare('INSERT INTO operator_requests (kind, user_id, device_id, requested_at) VALUES (?, ?, ?, ?)').run(kind, userId, deviceId ?? null, Date.now());
  }

  /** Returns and removes the pending operator requests, oldest first. */
  takeOperatorRequests(): OperatorRequest[] {
    const rows = this.#db.prepare('DELETE FROM operator_requests RETURNING id, kind, user_id, device_id').all() as Array<{ id: number; kind: string; user_id: string; device_id: string | null }>;
    return rows
      .sort((a, b) => a.id - b.id)
      .map((r) => ({ kind: r.kind as OperatorRequest['kind'], userId: r.user_id, deviceId: r.device_id ?? undefined }));
  }

  /**
   * Encrypted events waiting for their room key (it often arrives a transaction after the
   * message). Kept here because the transaction that carried them is already acknowledged.
   */
  addPendingDecryption(eventId: string, eventJson: string, firstSeen: number): void {
    this.#db.prepare('INSERT INTO pending_decryption (event_id, event_json, first_seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING').run(eventId, eventJson, firstSeen);
  }

  removePendingDecryption(eventId: string): void {
    this.#db.prepare('DELETE FROM pending_decryption WHERE event_id = ?').run(eventId);
  }

  pendingDecryptions(): Array<{ eventJson: string; firstSeen: number }> {
    const rows = this.#db.prepare('SELECT event_json, first_seen FROM pending_decryption ORDER BY first_seen').all() as Array<{ event_json: string; first_seen: number }>;
    return rows.map((r) => ({ eventJson: r.event_json, firstSeen: r.first_seen }));
  }

  /**
   * Records a reply before it is sent, and returns the one recorded first: a redelivered event
   * re-sends exactly what was decided the first time (same content, same transaction id) instead of
   * deciding again. Rows keep their insertion order (rowid), which is the order they are sent in.
   */
  recordReply(eventId: string, purpose: string, roomId: string, contentJson: string, now = Date.now()): string {
    this.#recordReply.run(eventId, purpose, roomId, contentJson, now);
    const row = this.#reply.get(eventId, purpose) as { content_json: string };
    return row.content_json;
  }

  /** The replies recorded for an event, in the order they were recorded. */
  recordedReplies(eventId: string): Array<{ purpose: string; roomId: string; contentJson: string }> {
    const rows = this.#replies.all(eventId) as Array<{ purpose: string; room_id: string; content_json: string }>;
    return rows.map((r) => ({ purpose: r.purpose, roomId: r.room_id, contentJson: r.content_json }));
  }

  /**
   * Counts one more failure of a batch (by fingerprint) and returns how many there have been and
   * since when. Kept on disk: a batch that crashes or fails the bot must not reset its count by it.
   */
  batchFailed(fingerprint: string, now = Date.now()): { failures: number; firstFailedAt: number } {
    const row = this.#db
      .prepare('INSERT INTO failing_batches (fingerprint, first_failed_at, failures) VALUES (?, ?, 1) ON CONFLICT (fingerprint) DO UPDATE SET failures = failures + 1 RETURNING failures, first_failed_at')
      .get(fingerprint, now) as { failures: number; first_failed_at: number };
    return { failures: row.failures, firstFailedAt: row.first_failed_at };
  }

  batchFailures(fingerprint: string): { failures: number; firstFailedAt: number } | undefined {
    const row = this.#batchFailures.get(fingerprint) as { failures: number; first_failed_at: number } | undefined;
    return row && { failures: row.failures, firstFailedAt: row.first_failed_at };
  }

  batchSucceeded(fingerprint: string): void {
    this.#db.prepare('DELETE FROM failing_batches WHERE fingerprint = ?').run(fingerprint);
  }

  /** An event given up on after its batch kept failing: kept for the operator, never retried. */
  addDeadLetter(eventId: string, roomId: string, reason: string, detail: string, now = Date.now()): void {
    this.#db.prepare('INSERT INTO dead_letters (event_id, room_id, reason, detail, recorded_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING').run(eventId, roomId, reason, detail.slice(0, 500), now);
  }

  deadLetters(): Array<{ eventId: string; roomId: string; reason: string; detail: string }> {
    const rows = this.#db.prepare('SELECT event_id, room_id, reason, detail FROM dead_letters ORDER BY recorded_at').all() as Array<{ event_id: string; room_id: string; reason: string; detail: string }>;
    return rows.map((r) => ({ eventId: r.event_id, roomId: r.room_id, reason: r.reason, detail: r.detail }));
  }

  /** Remembers a message the bot sent with reaction buttons: only reactions to these are commands. */
  /** `target`: the key (`namespace/deployment`) of the target its buttons act on. */
  addButtonMessage(eventId: string, roomId: string, target: string, now = Date.now()): void {
    this.#db.prepare('INSERT INTO button_messages (event_id, room_id, recorded_at, target) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING').run(eventId, roomId, now, target);
  }

  /** Undefined: not a message with buttons (in this room). `target` undefined: recorded before there were targets. */
  buttonMessage(eventId: string, roomId: string): { readonly target: string | undefined } | undefined {
    const row = this.#db.prepare('SELECT target FROM button_messages WHERE event_id = ? AND room_id = ?').get(eventId, roomId) as { target: string | null } | undefined;
    return row && { target: row.target ?? undefined };
  }

  /** Forgets handled events (and their replies) older than the cut-off; homeservers do not redeliver events that old. */
  prune(olderThanMs: number, now = Date.now()): number {
    const cutoff = now - olderThanMs;
    this.#db.prepare('DELETE FROM replies WHERE recorded_at < ?').run(cutoff);
    this.#db.prepare('DELETE FROM failing_batches WHERE first_failed_at < ?').run(cutoff);
    this.#db.prepare('DELETE FROM dead_letters WHERE recorded_at < ?').run(cutoff);
    this.#db.prepare('DELETE FROM button_messages WHERE recorded_at < ?').run(cutoff);
    // A followed message left behind (its Deployment no longer configured, say): its edits were pruned above.
    this.#db.prepare('DELETE FROM progress WHERE started_at < ?').run(cutoff);
    return Number(this.#db.prepare('DELETE FROM handled_events WHERE handled_at < ?').run(cutoff).changes);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
