/**
 * IndexedDB transactions over one SQLite connection.
 *
 * Each readwrite (or upgrade) transaction is one SQLite transaction: BEGIN IMMEDIATE when it starts,
 * its requests executed in order, COMMIT when it completes (ROLLBACK when it aborts). So the file
 * holds exactly the committed IndexedDB transactions, and `complete` fires after the COMMIT has
 * been fsynced: the engine's promise resolves only once its change is on disk.
 *
 * Scheduling: one connection cannot nest transactions, so writers run one at a time and readers
 * run only while no writer does (readers see committed data only); transactions start in the order
 * they were created. Completion follows IndexedDB's auto-commit rule: a transaction finishes when it
 * has no pending request at the end of the task in which its last request's event was handled
 * (`setImmediate` runs after the microtasks in which the engine's futures issue follow-up requests),
 * or as soon as `commit()` is called and nothing is pending.
 */
import type { SqliteBackend, StoreInfo } from './sqlite-backend.ts';
import { fire, IdbEvent, stringList, type IDBRequest } from './request.ts';

export type TransactionMode = 'readonly' | 'readwrite' | 'versionchange';

/** The database connection as a transaction sees it (implemented by IDBDatabase). */
export interface TransactionHost {
  readonly name: string;
  readonly backend: SqliteBackend;
  readonly scheduler: Scheduler;
}

type Operation = () => unknown;

export class Scheduler {
  readonly #waiting: IDBTransaction[] = [];
  readonly #running = new Set<IDBTransaction>();
  readonly #idle: Array<{ until: Set<IDBTransaction>; resolve: () => void }> = [];

  add(tx: IDBTransaction): void {
    this.#waiting.push(tx);
    this.#pump();
  }

  finished(tx: IDBTransaction): void {
    this.#running.delete(tx);
    const at = this.#waiting.indexOf(tx);
    if (at >= 0) this.#waiting.splice(at, 1);
    for (const waiter of [...this.#idle]) {
      waiter.until.delete(tx);
      if (waiter.until.size === 0) {
        this.#idle.splice(this.#idle.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
    this.#pump();
  }

  /** Resolves when every writing transaction created so far has committed or aborted. */
  writesSettled(): Promise<void> {
    const until = new Set([...this.#waiting, ...this.#running].filter((tx) => tx.mode !== 'readonly'));
    if (until.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push({ until, resolve }));
  }

  #pump(): void {
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0] as IDBTransaction;
      const writerRunning = [...this.#running].some((tx) => tx.mode !== 'readonly');
      if (next.mode === 'readonly' ? writerRunning : this.#running.size > 0) return;
      this.#waiting.shift();
      this.#running.add(next);
      next.start();
    }
  }
}

export class IDBTransaction {
  oncomplete: ((event: IdbEvent) => void) | null = null;
  onerror: ((event: IdbEvent) => void) | null = null;
  onabort: ((event: IdbEvent) => void) | null = null;
  readonly mode: TransactionMode;
  readonly db: TransactionHost;
  readonly #scope: readonly string[];
  readonly #queue: Array<{ request: IDBRequest; op: Operation }> = [];
  readonly #stores = new Map<string, unknown>();
  #state: 'waiting' | 'running' | 'finished' = 'waiting';
  #stepScheduled = false;
  /** commit() was called: no more requests, and abort() can no longer undo it (IndexedDB's "committing"). */
  #committing = false;
  #error: unknown = null;
  #onStart: (() => void) | undefined;
  readonly #afterFinish: Array<(error: unknown, aborted: boolean) => void> = [];
  /** Builds the IDBObjectStore of a name (set by the object store module, which imports this one). */
  static storeFactory: (tx: IDBTransaction, info: StoreInfo) => unknown;

  /** `onStart` runs once the transaction holds the connection (an upgrade fires `upgradeneeded` there). */
  constructor(db: TransactionHost, scope: readonly string[], mode: TransactionMode, onStart?: () => void) {
    this.db = db;
    this.#scope = scope;
    this.mode = mode;
    this.#onStart = onStart;
    db.scheduler.add(this);
  }

  /** Runs `callback` after the transaction's own complete or abort event (the open request's turn). */
  afterFinish(callback: (error: unknown, aborted: boolean) => void): void {
    this.#afterFinish.push(callback);
  }

  get objectStoreNames(): string[] {
    return stringList(this.mode === 'versionchange' ? this.db.backend.stores(this.db.name).keys() : this.#scope);
  }
  get error(): unknown {
    return this.#error;
  }
  get durability(): string {
    return 'strict';
  }
  get finished(): boolean {
    return this.#state === 'finished';
  }

  objectStore(name: string): unknown {
    if (this.#state === 'finished') throw new DOMException('the transaction has finished', 'InvalidStateError');
    const info = this.db.backend.stores(this.db.name).get(name);
    if (!info || (this.mode !== 'versionchange' && !this.#scope.includes(name))) throw new DOMException(`no object store ${name} in this transaction`, 'NotFoundError');
    let store = this.#stores.get(name);
    if (!store) this.#stores.set(name, (store = IDBTransaction.storeFactory(this, info)));
    return store;
  }

  /** Queues an operation; it runs in order, and its result or error settles `request`. */
  enqueue(request: IDBRequest, op: Operation): IDBRequest {
    if (this.#state === 'finished' || this.#committing) throw new DOMException('the transaction has finished', 'TransactionInactiveError');
    this.#queue.push({ request, op });
    this.#schedule();
    return request;
  }

  /** Throws unless the transaction may write. */
  assertWritable(): void {
    if (this.mode === 'readonly') throw new DOMException('the transaction is read-only', 'ReadOnlyError');
  }

  commit(): void {
    if (this.#state === 'finished' || this.#committing) throw new DOMException('the transaction has finished', 'InvalidStateError');
    this.#committing = true;
    // With requests pending, it completes after the last one (the step loop finds the queue empty).
    if (this.#state === 'running' && this.#queue.length === 0) this.#complete();
  }

  abort(): void {
    // A transaction that finished (auto-committed) or is committing has nothing left to undo; the
    // engine's glue aborts every transaction it drops, so this must not throw.
    if (this.#state !== 'finished' && !this.#committing) this.#abort(null);
  }

  /** Called by the scheduler when the transaction may run. */
  start(): void {
    if (this.mode !== 'readonly') {
      try {
        this.db.backend.begin();
      } catch (error) {
        this.#state = 'running';
        this.#abort(error);
        return;
      }
    }
    this.#state = 'running';
    this.#schedule();
  }

  #schedule(): void {
    if (this.#state !== 'running' || this.#stepScheduled) return;
    this.#stepScheduled = true;
    setImmediate(() => {
      this.#stepScheduled = false;
      this.#step();
    });
  }

  #step(): void {
    if (this.#state !== 'running') return;
    const onStart = this.#onStart;
    if (onStart) {
      // In a task of its own, as IndexedDB fires `upgradeneeded`.
      this.#onStart = undefined;
      try {
        onStart();
      } catch (error) {
        this.#abort(error);
        return;
      }
      this.#schedule();
      return;
    }
    const next = this.#queue.shift();
    if (!next) {
      this.#complete();
      return;
    }
    let result: unknown;
    try {
      result = next.op();
    } catch (error) {
      const event = next.request.fail(error);
      // The error event bubbles to the transaction; unless a handler prevented it, it aborts.
      fire(this.onerror, event);
      if (!event.defaultPrevented) this.#abort(error);
      else this.#schedule();
      return;
    }
    const thrown = next.request.succeed(result);
    if (thrown) this.#abort(thrown.threw);
    else this.#schedule();
  }

  #complete(): void {
    if (this.mode !== 'readonly') {
      try {
        this.db.backend.commit();
      } catch (error) {
        // Disk full, I/O error: nothing of this transaction is on disk; it aborts with that error.
        this.#abort(error);
        return;
      }
    }
    this.#state = 'finished';
    this.db.scheduler.finished(this);
    setImmediate(() => {
      fire(this.oncomplete, new IdbEvent('complete', this));
      for (const callback of this.#afterFinish) callback(null, false);
    });
  }

  #abort(error: unknown): void {
    const wasRunning = this.#state === 'running';
    this.#state = 'finished';
    this.#error = error;
    if (wasRunning && this.mode !== 'readonly') {
      try {
        this.db.backend.rollback();
      } catch {
        // The connection lost the transaction already (SQLite rolls back on some I/O errors).
      }
    }
    const pending = this.#queue.splice(0);
    this.db.scheduler.finished(this);
    setImmediate(() => {
      for (const { request } of pending) request.fail(new DOMException('the transaction was aborted', 'AbortError'));
      fire(this.onabort, new IdbEvent('abort', this));
      for (const callback of this.#afterFinish) callback(error, true);
    });
  }
}
