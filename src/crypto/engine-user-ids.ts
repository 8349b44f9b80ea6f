/** The engine's UserIds for a list of Matrix user ids, dropping the ones it could not track. */
import { UserId } from '@matrix-org/matrix-sdk-crypto-wasm';
import { isUserId } from '../matrix/ids.ts';

/**
 * Fresh UserIds (the engine consumes them) for the ids that are valid: a malformed id from the
 * homeserver (a crafted device list or member event) would make the engine throw for the whole batch.
 */
export function users(ids: readonly string[]): UserId[] {
  const out: UserId[] = [];
  for (const id of ids) {
    if (!isUserId(id)) continue;
    try {
      out.push(new UserId(id));
    } catch {
      // The engine's grammar is the last word; an id it refuses is not one it can track.
    }
  }
  return out;
}
