import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { MAX_COMMAND_CHARS, OVERSIZED_MARK } from '../matrix/events.ts';

/**
 * A transaction body as the route needs it: its JSON text, without the long strings that cannot
 * be part of a command, and a hash of the bytes as they came (to recognise a resend).
 */
export interface TransactionBody {
  readonly text: string;
  readonly digest: string;
  /** Strings replaced by OVERSIZED_MARK. */
  readonly pruned: number;
}

/** An error the HTTP error handler turns into a spec reply (413 M_TOO_LARGE, else M_NOT_JSON). */
class BodyError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * Reads the body chunk by chunk and keeps no chunk: the largest legitimate transaction (100 events
 * of 64 KiB) would otherwise live three times over (the bytes, the text, the parsed strings),
 * growing the heap and the allocator's arenas by tens of MiB that are not given back promptly.
 */
export function readTransactionBody(req: IncomingMessage, limit: number): Promise<TransactionBody> {
  return new Promise((resolve, reject) => {
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity') return reject(new BodyError(415, `unsupported content encoding "${encoding}"`));
    if (Number(req.headers['content-length'] ?? 0) > limit) return reject(new BodyError(413, 'request body too large'));
    const hash = createHash('sha256');
    const pruner = new StringPruner();
    let bytes = 0;
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.resume(); // Node discards what is left; the reply still goes out
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes > limit) return fail(new BodyError(413, 'request body too large'));
      hash.update(chunk);
      pruner.push(chunk);
    };
    const onEnd = (): void => {
      if (settled) return;
      settled = true;
      resolve({ text: pruner.end().toString('utf8'), digest: hash.digest('base64url'), pruned: pruner.pruned });
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', (error) => fail(new BodyError(400, error.message)));
    req.once('close', () => fail(new BodyError(400, 'the connection closed before the body was complete')));
  });
}

/** Which strings may be cut: `events[*].content.<one of these>`, the places a long message keeps its text. */
const PRUNABLE = new Set(['body', 'formatted_body', 'ciphertext']);
/** Only the first levels of nesting are tracked: the path above is four deep. */
const TRACKED_DEPTH = 4;
const MAX_KEY_BYTES = 32;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MARK_TOKEN = Buffer.from(JSON.stringify(OVERSIZED_MARK));

interface Frame {
  readonly array: boolean;
  /** In an object: the current key (undefined until read, or when long or escaped). */
  key: string | undefined;
  expectKey: boolean;
}

/**
 * Copies JSON bytes through, replacing each prunable string longer than MAX_COMMAND_CHARS (UTF-16
 * units, as `String.length` counts them) by OVERSIZED_MARK, without ever holding such a string:
 * chunk boundaries may fall anywhere. It does not validate: JSON.parse does, on the output. A
 * string it misses (an escaped key, say) is only parsed in full; the rule is applied after parsing.
 */
export class StringPruner {
  readonly #out: Buffer[] = [];
  readonly #frames: Frame[] = [];
  #depth = 0;
  #inString = false;
  /** 0: not in an escape; -1: just after a backslash; n > 0: hex digits of a \u escape left. */
  #escape = 0;
  #role: 'key' | 'value' | 'prunable' = 'value';
  #keyBytes: number[] | undefined;
  /** A prunable string's bytes from earlier chunks, while it is still short enough to keep. */
  #pending: Buffer[] | undefined;
  #units = 0;
  #skipping = false;
  pruned = 0;

  push(chunk: Buffer): void {
    let from = 0; // the part of `chunk` before this is dealt with
    // Where the next quote and backslash are, so that the bulk of a long string is skipped by memchr.
    const find = (byte: number, at: number): number => {
      const found = chunk.indexOf(byte, at);
      return found === -1 ? chunk.length : found;
    };
    let quoteAt = -1;
    let backslashAt = -1;
    for (let i = 0; i < chunk.length; i++) {
      if (this.#inString && this.#escape === 0 && (this.#role === 'value' || this.#skipping)) {
        if (quoteAt < i) quoteAt = find(QUOTE, i);
        if (backslashAt < i) backslashAt = find(BACKSLASH, i);
        i = Math.min(quoteAt, backslashAt);
        if (i === chunk.length) break;
      }
      const b = chunk[i] as number;
      if (this.#inString) {
        if (this.#escape !== 0) {
          this.#escape = this.#escape === -1 ? (b === 0x75 ? 4 : 0) : this.#escape - 1;
          continue;
        }
        if (b === QUOTE) {
          this.#inString = false;
          if (this.#role === 'key') {
            const top = this.#frames[this.#depth - 1];
            if (top) top.key = this.#keyBytes ? String.fromCharCode(...this.#keyBytes) : undefined;
          } else if (this.#role === 'prunable') {
            if (this.#skipping) {
              this.#out.push(MARK_TOKEN);
              this.pruned++;
              from = i + 1;
            } else if (this.#pending) {
              this.#out.push(...this.#pending);
            }
            this.#pending = undefined;
            this.#skipping = false;
          }
          continue;
        }
        if (b === BACKSLASH) this.#escape = -1;
        if (this.#role === 'key') {
          // Escaped or long keys are not names this looks for.
          if (b === BACKSLASH || (this.#keyBytes && this.#keyBytes.length >= MAX_KEY_BYTES)) this.#keyBytes = undefined;
          else this.#keyBytes?.push(b);
        } else if (this.#role === 'prunable' && !this.#skipping) {
          // One unit per escape, per UTF-8 sequence (two for 4-byte ones, a surrogate pair); none per continuation byte.
          if ((b & 0xc0) !== 0x80) this.#units += b >= 0xf0 ? 2 : 1;
          if (this.#units > MAX_COMMAND_CHARS) {
            this.#skipping = true;
            this.#pending = undefined;
          }
        }
        continue;
      }
      if (b === QUOTE) {
        this.#inString = true;
        this.#role = this.#startRole();
        if (this.#role === 'key') this.#keyBytes = [];
        if (this.#role === 'prunable') {
          this.#flush(chunk, from, i);
          from = i;
          this.#pending = [];
          this.#units = 0;
        }
      } else if (b === 0x7b || b === 0x5b) { // { [
        if (this.#depth < TRACKED_DEPTH) this.#frames.push({ array: b === 0x5b, key: undefined, expectKey: b === 0x7b });
        this.#depth++;
      } else if (b === 0x7d || b === 0x5d) { // } ]
        if (this.#depth > 0 && this.#depth <= TRACKED_DEPTH) this.#frames.pop();
        if (this.#depth > 0) this.#depth--;
      } else if (b === 0x3a || b === 0x2c) { // : ,
        const top = this.#depth <= TRACKED_DEPTH ? this.#frames[this.#depth - 1] : undefined;
        if (top && !top.array) {
          top.expectKey = b === 0x2c;
          if (b === 0x2c) top.key = undefined;
        }
      }
    }
    if (this.#inString && this.#role === 'prunable') {
      // Kept (copied: a slice would keep the whole chunk alive) until the string is known to be short.
      if (!this.#skipping) this.#pending?.push(Buffer.from(chunk.subarray(from)));
    } else {
      this.#flush(chunk, from, chunk.length);
    }
  }

  end(): Buffer {
    return Buffer.concat(this.#out);
  }

  #flush(chunk: Buffer, from: number, to: number): void {
    if (to > from) this.#out.push(Buffer.from(chunk.subarray(from, to)));
  }

  #startRole(): 'key' | 'value' | 'prunable' {
    if (this.#depth > TRACKED_DEPTH) return 'value';
    const top = this.#frames[this.#depth - 1];
    if (top && !top.array && top.expectKey) return 'key';
    const [root, events, event, content] = this.#frames;
    const prunable = this.#depth === 4 && root?.key === 'events' && events?.array && event?.key === 'content' && content && PRUNABLE.has(content.key ?? '');
    return prunable ? 'prunable' : 'value';
  }
}
