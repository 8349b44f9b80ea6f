import type { DatabaseSync } from 'node:sqlite';

/**
 * A start's or a stop's result message that the bot edits as the rollout moves (src/bot/progress-
 * tracker.ts). On the volume so that a restart in the middle finishes the same message.
 */
export interface ProgressRecord {
  /** The command's event id: the edits' transaction ids derive from it (`<id>.edit.<n>`). */
  readonly eventId: string;
  /** `namespace/name` of the Deployment. */
  readonly target: string;
  readonly roomId: string;
  readonly action: 'start' | 'stop';
  /** The result message being edited; undefined until its send returned an id. */
  readonly messageId: string | undefined;
  /** When the command acted. */
  readonly startedAt: number;
  /** Appended to every text: what the reply said besides the rollout (a timed run's stop time). */
  readonly suffix: string;
  /** The scale changed nothing (already on or off): a rollout already settled is not reported again. */
  readonly noChange: boolean;
  /** How long to follow it, once known (bot.progressDeadlineSeconds, or the Deployment's own deadline). */
  readonly deadlineMs: number | undefined;
  /** The text last sent (the reply's own before any edit), and when. */
  readonly lastText: string;
  readonly lastEditAt: number;
  /** Edits recorded so far: the next is `edit.<edits + 1>`. */
  readonly edits: number;
  /** The last recorded edit is the final one: only its delivery is left. */
  readonly finished: boolean;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS progress (
    event_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    room_id TEXT NOT NULL,
    action TEXT NOT NULL,
    message_id TEXT,
    started_at INTEGER NOT NULL,
    suffix TEXT NOT NULL,
    no_change INTEGER NOT NULL,
    deadline_ms INTEGER,
    last_text TEXT NOT NULL,
    last_edit_at INTEGER NOT NULL,
    edits INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;`;

/** Progress messages being followed; a row goes when its final edit has been sent. */
export class ProgressTable {
  readonly #db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec(SCHEMA);
  }

  get(eventId: string): ProgressRecord | undefined {
    const r = this.#db.prepare('SELECT * FROM progress WHERE event_id = ?').get(eventId) as Row | undefined;
    return r && fromRow(r);
  }

  /** Every message being followed, oldest first. */
  all(): ProgressRecord[] {
    return (this.#db.prepare('SELECT * FROM progress ORDER BY started_at').all() as unknown as Row[]).map(fromRow);
  }

  put(p: ProgressRecord): void {
    this.#db.prepare(`INSERT OR REPLACE INTO progress (event_id, target, room_id, action, message_id, started_at, suffix, no_change, deadline_ms, last_text, last_edit_at, edits, finished)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(p.eventId, p.target, p.roomId, p.action, p.messageId ?? null, p.startedAt, p.suffix, p.noChange ? 1 : 0,
      p.deadlineMs ?? null, p.lastText, p.lastEditAt, p.edits, p.finished ? 1 : 0);
  }

  delete(eventId: string): void {
    this.#db.prepare('DELETE FROM progress WHERE event_id = ?').run(eventId);
  }
}

type Row = Record<string, string | number | null>;

function fromRow(r: Row): ProgressRecord {
  return {
    eventId: String(r['event_id']), target: String(r['target']), roomId: String(r['room_id']), action: r['action'] === 'stop' ? 'stop' : 'start',
    messageId: r['message_id'] === null ? undefined : String(r['message_id']), startedAt: Number(r['started_at']), suffix: String(r['suffix']),
    noChange: r['no_change'] === 1, deadlineMs: r['deadline_ms'] === null ? undefined : Number(r['deadline_ms']),
    lastText: String(r['last_text']), lastEditAt: Number(r['last_edit_at']), edits: Number(r['edits']), finished: r['finished'] === 1,
  };
}
