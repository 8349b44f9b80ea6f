import { MatrixError } from './matrix/client.ts';
import { storageProblem } from './store/storage-error.ts';

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

export function classify(error: unknown): Failure {
  if (error instanceof MatrixError) {
    // No answer, rate limited, or the server's own fault: it may well work next time.
    if (error.status === 0 || error.status === 429 || error.status >= 500) return { transient: true, reason: 'homeserver-unavailable' };
    // A token the homeserver no longer knows: password mode logs in again and retries.
    if (error.status === 401) return { transient: true, reason: 'homeserver-auth' };
    return { transient: false, reason: `homeserver-${error.status}` };
  }
  // A volume that is full, read-only or failing (also when the crypto engine wraps the error) goes
  // away when an operator fixes it: worth a retry. Other SQLite errors too: the store may recover.
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (storageProblem(error) !== undefined || (typeof code === 'string' && code.startsWith('ERR_SQLITE'))) return { transient: true, reason: 'storage' };
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
