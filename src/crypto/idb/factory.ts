/**
 * `IDBFactory` and `IDBDatabase` over one SQLite file. Opening with a higher version runs an
 * upgrade transaction (one SQLite transaction, like any writer) in which the engine creates and
 * deletes object stores and indexes; the engine opens its database once per schema version when it
 * migrates a store. Other open connections are told with `versionchange` but never block an
 * upgrade: the engine closes its old connections itself.
 */
import { compareKeys, toKey } from './key.ts';
import { fire, IDBOpenDBRequest, IDBVersionChangeEvent, stringList } from './request.ts';
import type { SqliteBackend } from './sqlite-backend.ts';
import { IDBTransaction, Scheduler, type TransactionHost } from './transaction.ts';
import './object-store.ts'; // registers how transactions build object stores

type Handler = ((event: unknown) => void) | null;

export class IDBDatabase implements TransactionHost {
  onversionchange: Handler = null;
  onclose: Handler = null;
  onabort: Handler = null;
  onerror: Handler = null;
  readonly name: string;
  readonly backend: SqliteBackend;
  readonly scheduler: Scheduler;
  #version: number;
  #closed = false;
  /** The running upgrade transaction of this connection, while `upgradeneeded` may change the schema. */
  upgrade: IDBTransaction | undefined;
  readonly #factory: IDBFactory;

  constructor(factory: IDBFactory, name: string, version: number) {
    this.#factory = factory;
    this.name = name;
    this.backend = factory.backend;
    this.scheduler = factory.scheduler;
    this.#version = version;
  }

  get version(): number {
    return this.#version;
  }
  set version(v: number) {
    this.#version = v;
  }
  get closed(): boolean {
    return this.#closed;
  }
  get objectStoreNames(): string[] {
    return stringList(this.backend.stores(this.name).keys());
  }

  transaction(names: string | Iterable<string>, mode: string = 'readonly'): IDBTransaction {
    if (this.#closed) throw new DOMException('the database connection is closed', 'InvalidStateError');
    const scope = [...new Set(typeof names === 'string' ? [names] : [...names])].sort();
    if (scope.length === 0) throw new DOMException('a transaction needs at least one object store', 'InvalidAccessError');
    const stores = this.backend.stores(this.name);
    for (const s of scope) if (!stores.has(s)) throw new DOMException(`no object store ${s}`, 'NotFoundError');
    if (mode !== 'readonly' && mode !== 'readwrite' && mode !== 'readwriteflush') throw new TypeError(`unknown transaction mode ${mode}`);
    return new IDBTransaction(this, scope, mode === 'readonly' ? 'readonly' : 'readwrite');
  }

  createObjectStore(name: string, options?: { keyPath?: unknown; autoIncrement?: boolean }): unknown {
    const tx = this.#upgrading();
    if ((options?.keyPath !== undefined && options.keyPath !== null) || options?.autoIncrement) {
      throw new DOMException('key paths and key generators are not supported by this IndexedDB (the crypto engine does not use them)', 'NotSupportedError');
    }
    if (this.backend.stores(this.name).has(name)) throw new DOMException(`object store ${name} exists`, 'ConstraintError');
    this.backend.createStore(this.name, name);
    return tx.objectStore(name);
  }

  deleteObjectStore(name: string): void {
    this.#upgrading();
    const info = this.backend.stores(this.name).get(name);
    if (!info) throw new DOMException(`no object store ${name}`, 'NotFoundError');
    this.backend.deleteStore(info);
  }

  #upgrading(): IDBTransaction {
    if (!this.upgrade || this.upgrade.finished) throw new DOMException('the schema changes only in an upgrade', 'InvalidStateError');
    return this.upgrade;
  }

  close(): void {
    this.#closed = true;
    this.#factory.forget(this);
  }
}

export class IDBFactory {
  readonly backend: SqliteBackend;
  readonly scheduler = new Scheduler();
  readonly #connections = new Set<IDBDatabase>();

  constructor(backend: SqliteBackend) {
    this.backend = backend;
  }

  forget(db: IDBDatabase): void {
    this.#connections.delete(db);
  }

  open(name: string, version?: number): IDBOpenDBRequest {
    if (version !== undefined && (!Number.isInteger(version) || version < 1)) throw new TypeError('the version must be a positive integer');
    const request = new IDBOpenDBRequest(null, null);
    setImmediate(() => this.#open(request, String(name), version));
    return request;
  }

  #open(request: IDBOpenDBRequest, name: string, requested: number | undefined): void {
    let current: number;
    try {
      current = this.backend.version(name);
    } catch (error) {
      request.fail(error);
      return;
    }
    const version = requested ?? Math.max(current, 1);
    if (version < current) {
      request.fail(new DOMException(`the database is at version ${current}, above ${version}`, 'VersionError'));
      return;
    }
    const conn = new IDBDatabase(this, name, current);
    this.#connections.add(conn);
    if (version === current) {
      request.succeed(conn);
      return;
    }
    for (const other of this.#connections) {
      if (other !== conn && other.name === name && !other.closed) fire(other.onversionchange, new IDBVersionChangeEvent('versionchange', other, current, version));
    }
    const tx = new IDBTransaction(conn, [], 'versionchange', () => {
      const old = this.backend.version(name);
      this.backend.setVersion(name, version);
      conn.version = version;
      conn.upgrade = tx;
      request.transaction = tx;
      // The handler finds the connection in `result` and changes the schema synchronously.
      request.settle(conn);
      const thrown = fire(request.onupgradeneeded, new IDBVersionChangeEvent('upgradeneeded', request, old, version));
      if (thrown) throw thrown.threw;
    });
    tx.afterFinish((error, aborted) => {
      conn.upgrade = undefined;
      request.transaction = null;
      if (aborted) {
        conn.version = current;
        conn.close();
        request.fail(error ?? new DOMException('the upgrade was aborted', 'AbortError'));
      } else {
        request.succeed(conn);
      }
    });
  }

  deleteDatabase(name: string): IDBOpenDBRequest {
    const request = new IDBOpenDBRequest(null, null);
    setImmediate(() => {
      const conn = new IDBDatabase(this, String(name), 0);
      const tx = new IDBTransaction(conn, [], 'versionchange', () => this.backend.deleteDatabase(String(name)));
      tx.afterFinish((error, aborted) => (aborted ? request.fail(error) : request.succeed(undefined)));
    });
    return request;
  }

  /** Runs `work` as a writer of its own, between the engine's transactions; resolves once committed. */
  exclusive(work: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const tx = new IDBTransaction({ name: '', backend: this.backend, scheduler: this.scheduler }, [], 'readwrite', work);
      tx.afterFinish((error, aborted) => (aborted ? reject(error) : resolve()));
    });
  }

  databases(): Promise<Array<{ name: string; version: number }>> {
    return Promise.resolve().then(() => this.backend.databases());
  }

  cmp(a: unknown, b: unknown): number {
    return compareKeys(toKey(a), toKey(b));
  }
}
