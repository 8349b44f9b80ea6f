import type { DatabaseSync } from 'node:sqlite';

/**
 * The current run of a Deployment started from chat: who started it, where, and when it stops by
 * itself (`stopsAt`, absent for a run with no automatic stop). One per Deployment: the timer belongs
 * to the Deployment, not to a person.
 */
export interface RunRecord {
  /** `namespace/name` of the Deployment. */
  readonly target: string;
  /** The event id of the command that began the run: notices about it derive their ids from it. */
  readonly runId: string;
  /** Where it was started: the warning and the automatic stop are said there. */
  readonly roomId: string;
  readonly startedBy: string;
  readonly startedAt: number;
  readonly stopsAt: number | undefined;
  /** The last change (start, extend): by whom, when, and by which event (a redelivered command must not apply twice). */
  readonly changedBy: string;
  readonly changedAt: number;
  readonly changedEvent: string;
  /** The `stopsAt` the 10-minute warning was sent for, if it was. */
  readonly warnedFor: number | undefined;
  /** The automatic stop is acting: its PATCH may have left the process. */
  readonly stopping: boolean;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS runs (
    target TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    stops_at INTEGER,
    changed_by TEXT NOT NULL,
    changed_at INTEGER NOT NULL,
    changed_event TEXT NOT NULL,
    warned_for INTEGER,
    stopping INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;`;

/** Timed runs on the volume (src/bot/timed-runs.ts, run-scheduler.ts): one row per Deployment. */
export class RunsTable {
  readonly #db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec(SCHEMA);
  }

  /** The Deployment's current run, if one was started from chat and not stopped since. */
  get(target: string): RunRecord | undefined {
    const r = this.#db.prepare('SELECT * FROM runs WHERE target = ?').get(target) as Record<string, string | number | null> | undefined;
    if (!r) return undefined;
    const num = (v: string | number | null | undefined): number | undefined => (v === null || v === undefined ? undefined : Number(v));
    return {
      target, runId: String(r['run_id']), roomId: String(r['room_id']), startedBy: String(r['started_by']), startedAt: Number(r['started_at']),
      stopsAt: num(r['stops_at']), changedBy: String(r['changed_by']), changedAt: Number(r['changed_at']), changedEvent: String(r['changed_event']),
      warnedFor: num(r['warned_for']), stopping: r['stopping'] === 1,
    };
  }

  /** Writes the Deployment's run, replacing the one it had. */
  put(r: RunRecord): void {
    this.#db.prepare(`INSERT OR REPLACE INTO runs (target, run_id, room_id, started_by, started_at, stops_at, changed_by, changed_at, changed_event, warned_for, stopping)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(r.target, r.runId, r.roomId, r.startedBy, r.startedAt, r.stopsAt ?? null, r.changedBy, r.changedAt,
      r.changedEvent, r.warnedFor ?? null, r.stopping ? 1 : 0);
  }

  /** Ends the Deployment's run (only `runId`'s, when given: a newer run is left alone). */
  delete(target: string, runId?: string): void {
    if (runId === undefined) this.#db.prepare('DELETE FROM runs WHERE target = ?').run(target);
    else this.#db.prepare('DELETE FROM runs WHERE target = ? AND run_id = ?').run(target, runId);
  }
}
