import { MatrixError } from './matrix/client.ts';

/**
 * Whether redelivering a batch could fix a failure. The answer decides between failing the batch
 * (the homeserver resends it) and skipping one event: a permanent failure that fails the batch
 * holds back every later event of every room for as long as it keeps failing, and any homeserver
 * user can cause one (invite the bot, then kick it: the bot's leave gets 403).
 */
export interface Failure {
  readonly transient: boolean;
  /** A short label for logs and metrics: `homeserver-403`, `storage`, … */
  readonly reason: string;
}

/** Filesystem errors that go away when an operator frees space or remounts: worth a retry. */
const STORAGE_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'EACCES', 'EPERM']);

export function classify(error: unknown): Failure {
  if (error instanceof MatrixError) {
    // No answer, rate limited, or the server's own fault: it may well work next time.
    if (error.status === 0 || error.status === 429 || error.status >= 500) return { transient: true, reason: 'homeserver-unavailable' };
    // A token the homeserver no longer knows: password mode logs in again and retries.
    if (error.status === 401) return { transient: true, reason: 'homeserver-auth' };
    return { transient: false, reason: `homeserver-${error.status}` };
  }
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && (STORAGE_CODES.has(code) || code.startsWith('ERR_SQLITE'))) return { transient: true, reason: 'storage' };
  // Unknown: retried, and the pipeline's backstop bounds how long it may block the queue.
  return { transient: true, reason: 'unexpected' };
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Thrown by the pipeline when a batch fails; already logged there with the batch's context. */
export class BatchFailed extends Error {
  constructor(label: string, options: ErrorOptions) {
    super(`batch ${label} failed`, options);
    this.name = 'BatchFailed';
  }
}
