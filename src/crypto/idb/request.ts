/**
 * IndexedDB requests and events, as far as the engine's glue uses them: `on…` handler properties
 * (never addEventListener), `result`, `error`, `readyState`, `source`, `transaction`, and events
 * carrying `target` (plus `oldVersion`/`newVersion` for an upgrade). The glue checks
 * `instanceof IDBRequest` / `IDBOpenDBRequest`, so these classes become the globals.
 */

type Handler = ((event: IdbEvent) => void) | null;

/** The event object handed to `on…` handlers. */
export class IdbEvent {
  readonly type: string;
  readonly target: unknown;
  #prevented = false;
  constructor(type: string, target: unknown) {
    this.type = type;
    this.target = target;
  }
  get currentTarget(): unknown {
    return this.target;
  }
  get defaultPrevented(): boolean {
    return this.#prevented;
  }
  preventDefault(): void {
    this.#prevented = true;
  }
  stopPropagation(): void {}
  stopImmediatePropagation(): void {}
}

export class IDBVersionChangeEvent extends IdbEvent {
  readonly oldVersion: number;
  readonly newVersion: number | null;
  constructor(type: string, target: unknown, oldVersion: number, newVersion: number | null) {
    super(type, target);
    this.oldVersion = oldVersion;
    this.newVersion = newVersion;
  }
}

/**
 * Calls a handler; returns what it threw, if anything. The store's own code must not unwind
 * through it: an exception in a request's handler aborts that transaction, as in a browser.
 */
export function fire(handler: Handler | undefined, event: IdbEvent): { threw: unknown } | undefined {
  if (!handler) return undefined;
  try {
    handler.call(event.target, event);
    return undefined;
  } catch (error) {
    return { threw: error };
  }
}

export class IDBRequest {
  onsuccess: Handler = null;
  onerror: Handler = null;
  #result: unknown = undefined;
  #error: unknown = null;
  #done = false;
  readonly #source: unknown;
  #transaction: unknown;

  constructor(source: unknown, transaction: unknown) {
    this.#source = source;
    this.#transaction = transaction;
  }

  get result(): unknown {
    return this.#result;
  }
  get error(): unknown {
    return this.#error;
  }
  get readyState(): 'pending' | 'done' {
    return this.#done ? 'done' : 'pending';
  }
  get source(): unknown {
    return this.#source;
  }
  get transaction(): unknown {
    return this.#transaction;
  }
  set transaction(tx: unknown) {
    this.#transaction = tx;
  }

  /** Back to pending (a cursor's request is reused for every step). */
  reset(): void {
    this.#done = false;
    this.#result = undefined;
    this.#error = null;
  }

  /** Sets the result without an event (an open request holds its connection during `upgradeneeded`). */
  settle(result: unknown): void {
    this.#done = true;
    this.#result = result;
  }

  /** Settles the request and fires `success`; returns what the handler threw, if anything. */
  succeed(result: unknown): { threw: unknown } | undefined {
    this.#done = true;
    this.#result = result;
    this.#error = null;
    return fire(this.onsuccess, new IdbEvent('success', this));
  }

  /** Settles the request with an error and fires `error`: the event, to see whether it was prevented. */
  fail(error: unknown): IdbEvent {
    this.#done = true;
    this.#result = undefined;
    this.#error = error;
    const event = new IdbEvent('error', this);
    fire(this.onerror, event);
    return event;
  }
}

export class IDBOpenDBRequest extends IDBRequest {
  onupgradeneeded: Handler = null;
  onblocked: Handler = null;
}

/** `DOMStringList` as an array (the glue reads `length` and indexes) with `contains` and `item`. */
export function stringList(names: Iterable<string>): string[] & { contains(name: string): boolean; item(i: number): string | null } {
  const list = [...names].sort() as string[] & { contains(name: string): boolean; item(i: number): string | null };
  Object.defineProperty(list, 'contains', { value: (name: string) => list.includes(name) });
  Object.defineProperty(list, 'item', { value: (i: number) => list[i] ?? null });
  return list;
}
