/**
 * IndexedDB keys, key paths and key ranges, and the byte encoding that lets SQLite order keys as
 * IndexedDB does: SQLite compares BLOBs with memcmp, so each key is encoded so that comparing the
 * bytes gives IndexedDB's order (number < date < string < binary < array; arrays element by
 * element, a prefix first; strings by UTF-16 code unit).
 *
 * Encoding (tag byte, then the value): numbers and dates as a float64 whose bytes sort like the
 * number; strings as code units in 1 to 3 bytes with a 0 terminator (Mozilla's key encoding, which
 * never lets a lead byte be 0); binary as bytes in 1 or 2 bytes with a 0 terminator; arrays as their
 * elements followed by a 0 terminator (every tag is above 0, so a prefix sorts first).
 */

export type IdbKey = number | string | Date | ArrayBuffer | IdbKey[];

const NUMBER = 0x10;
const DATE = 0x20;
const STRING = 0x30;
const BINARY = 0x40;
const ARRAY = 0x50;
const END = 0x00;

export function dataError(message: string): DOMException {
  return new DOMException(message, 'DataError');
}

/** The value as a valid key (binary views become ArrayBuffer copies), or undefined when it is not one. */
export function asKey(value: unknown, seen: Set<unknown> = new Set()): IdbKey | undefined {
  if (typeof value === 'number') return Number.isNaN(value) ? undefined : value;
  if (typeof value === 'string') return value;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : new Date(value.getTime());
  if (value instanceof ArrayBuffer) return value.slice(0);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice().buffer;
  if (Array.isArray(value)) {
    if (seen.has(value)) return undefined;
    seen.add(value);
    const out: IdbKey[] = [];
    for (const item of value) {
      const key = asKey(item, seen);
      if (key === undefined) return undefined;
      out.push(key);
    }
    seen.delete(value);
    return out;
  }
  return undefined;
}

/** As `asKey`, throwing IndexedDB's DataError for a value that is not a key. */
export function toKey(value: unknown): IdbKey {
  const key = asKey(value);
  if (key === undefined) throw dataError('the value is not a valid IndexedDB key');
  return key;
}

class Writer {
  #buf = Buffer.allocUnsafe(64);
  #len = 0;
  byte(b: number): void {
    if (this.#len === this.#buf.length) this.#grow(1);
    this.#buf[this.#len++] = b;
  }
  float(n: number): void {
    if (this.#len + 8 > this.#buf.length) this.#grow(8);
    // Sign bit flipped for positives, all bits flipped for negatives: the bytes then sort like the numbers.
    const v = n === 0 ? 0 : n;
    this.#buf.writeDoubleBE(v, this.#len);
    if (v < 0 || Object.is(v, -0)) for (let i = 0; i < 8; i++) this.#buf[this.#len + i] = ~this.#buf[this.#len + i]! & 0xff;
    else this.#buf[this.#len] = this.#buf[this.#len]! ^ 0x80;
    this.#len += 8;
  }
  #grow(n: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }
  done(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

function write(w: Writer, key: IdbKey): void {
  if (typeof key === 'number') {
    w.byte(NUMBER);
    w.float(key);
  } else if (key instanceof Date) {
    w.byte(DATE);
    w.float(key.getTime());
  } else if (typeof key === 'string') {
    w.byte(STRING);
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c < 0x7f) w.byte(c + 1);
      else if (c < 0x3fff + 0x7f) {
        const d = c - 0x7f;
        w.byte(0x80 | (d >> 8));
        w.byte(d & 0xff);
      } else {
        w.byte(0xc0 | (c >> 10));
        w.byte((c >> 2) & 0xff);
        w.byte((c & 3) << 6);
      }
    }
    w.byte(END);
  } else if (key instanceof ArrayBuffer) {
    w.byte(BINARY);
    for (const b of new Uint8Array(key)) {
      if (b < 0x7f) w.byte(b + 1);
      else {
        w.byte(0x80);
        w.byte(b - 0x7f);
      }
    }
    w.byte(END);
  } else {
    w.byte(ARRAY);
    for (const item of key) write(w, item);
    w.byte(END);
  }
}

/** The sortable bytes of a valid key. */
export function encodeKey(key: IdbKey): Buffer {
  const w = new Writer();
  write(w, key);
  return w.done();
}

/** The key back from its bytes. */
export function decodeKey(bytes: Uint8Array): IdbKey {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const float = (): number => {
    const b = Buffer.from(buf.subarray(pos, pos + 8));
    if (b[0]! & 0x80) b[0] = b[0]! ^ 0x80;
    else for (let i = 0; i < 8; i++) b[i] = ~b[i]! & 0xff;
    pos += 8;
    return b.readDoubleBE(0);
  };
  const read = (): IdbKey => {
    const tag = buf[pos++];
    if (tag === NUMBER) return float();
    if (tag === DATE) return new Date(float());
    if (tag === STRING) {
      const units: number[] = [];
      for (let b = buf[pos++]!; b !== END; b = buf[pos++]!) {
        if (b < 0x80) units.push(b - 1);
        else if (b < 0xc0) units.push((((b & 0x3f) << 8) | buf[pos++]!) + 0x7f);
        else {
          units.push(((b & 0x3f) << 10) | (buf[pos]! << 2) | (buf[pos + 1]! >> 6));
          pos += 2;
        }
      }
      let s = '';
      for (let i = 0; i < units.length; i += 4096) s += String.fromCharCode(...units.slice(i, i + 4096));
      return s;
    }
    if (tag === BINARY) {
      const bytes: number[] = [];
      for (let b = buf[pos++]!; b !== END; b = buf[pos++]!) bytes.push(b < 0x80 ? b - 1 : buf[pos++]! + 0x7f);
      return new Uint8Array(bytes).buffer;
    }
    if (tag === ARRAY) {
      const items: IdbKey[] = [];
      while (buf[pos] !== END) items.push(read());
      pos++;
      return items;
    }
    throw new Error(`damaged key encoding (tag ${String(tag)})`);
  };
  const key = read();
  if (pos !== buf.length) throw new Error('damaged key encoding (trailing bytes)');
  return key;
}

/** IndexedDB's comparison of two valid keys (-1, 0, 1). */
export function compareKeys(a: IdbKey, b: IdbKey): number {
  return Buffer.compare(encodeKey(a), encodeKey(b));
}

/** Evaluates a key path (a property name, a dotted path, or an array of them) on a stored value. */
export function evaluateKeyPath(value: unknown, path: string | readonly string[]): unknown {
  if (typeof path !== 'string') return path.map((p) => evaluateKeyPath(value, p));
  if (path === '') return value;
  let current: unknown = value;
  for (const part of path.split('.')) {
    if (current === null || typeof current !== 'object' || !(part in current)) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

/** `IDBKeyRange`: the global the engine builds its ranges with. */
export class IDBKeyRange {
  readonly lower: IdbKey | undefined;
  readonly upper: IdbKey | undefined;
  readonly lowerOpen: boolean;
  readonly upperOpen: boolean;

  private constructor(lower: IdbKey | undefined, upper: IdbKey | undefined, lowerOpen: boolean, upperOpen: boolean) {
    this.lower = lower;
    this.upper = upper;
    this.lowerOpen = lowerOpen;
    this.upperOpen = upperOpen;
  }

  static only(value: unknown): IDBKeyRange {
    const key = toKey(value);
    return new IDBKeyRange(key, key, false, false);
  }
  static lowerBound(lower: unknown, open = false): IDBKeyRange {
    return new IDBKeyRange(toKey(lower), undefined, open, true);
  }
  static upperBound(upper: unknown, open = false): IDBKeyRange {
    return new IDBKeyRange(undefined, toKey(upper), true, open);
  }
  static bound(lower: unknown, upper: unknown, lowerOpen = false, upperOpen = false): IDBKeyRange {
    const lo = toKey(lower);
    const hi = toKey(upper);
    const cmp = compareKeys(lo, hi);
    if (cmp > 0 || (cmp === 0 && (lowerOpen || upperOpen))) throw dataError('the lower bound of the range is above its upper bound');
    return new IDBKeyRange(lo, hi, lowerOpen, upperOpen);
  }

  includes(value: unknown): boolean {
    const key = toKey(value);
    if (this.lower !== undefined) {
      const c = compareKeys(key, this.lower);
      if (c < 0 || (c === 0 && this.lowerOpen)) return false;
    }
    if (this.upper !== undefined) {
      const c = compareKeys(key, this.upper);
      if (c > 0 || (c === 0 && this.upperOpen)) return false;
    }
    return true;
  }
}

/** A range in encoded form, as the SQL queries take it (no bound: undefined). */
export interface ByteRange {
  readonly lower: Buffer | undefined;
  readonly upper: Buffer | undefined;
  readonly lowerOpen: boolean;
  readonly upperOpen: boolean;
}

/** A query argument (undefined, null, a key or an IDBKeyRange) as a byte range. */
export function toByteRange(query: unknown): ByteRange {
  if (query === undefined || query === null) return { lower: undefined, upper: undefined, lowerOpen: false, upperOpen: false };
  if (query instanceof IDBKeyRange) {
    return {
      lower: query.lower === undefined ? undefined : encodeKey(query.lower),
      upper: query.upper === undefined ? undefined : encodeKey(query.upper),
      lowerOpen: query.lowerOpen,
      upperOpen: query.upperOpen,
    };
  }
  const key = encodeKey(toKey(query));
  return { lower: key, upper: key, lowerOpen: false, upperOpen: false };
}
