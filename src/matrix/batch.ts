import type { RoomEvent, ToDeviceEvent } from './events.ts';

/**
 * What one appservice transaction or one /sync response tells the bot, in one shape, so that
 * crypto and commands never know which mode produced it. Only data for the bot's own user and
 * device is kept.
 */
export interface SyncBatch {
  /** For logs: `txn 42` or `sync s72_…`. */
  readonly label: string;
  readonly roomEvents: readonly RoomEvent[];
  readonly toDevice: readonly ToDeviceEvent[];
  readonly deviceLists: { readonly changed: readonly string[]; readonly left: readonly string[] };
  /** One-time keys left on the server for the bot's device, by algorithm; undefined when not reported. */
  readonly oneTimeKeyCounts: Readonly<Record<string, number>> | undefined;
  /** Unused fallback key algorithms for the bot's device; undefined when not reported. */
  readonly unusedFallbackKeyTypes: readonly string[] | undefined;
  /** Events the source dropped as malformed (a redelivery would carry them again): logged and counted. */
  readonly dropped?: ReadonlyArray<{ readonly eventId: string | undefined; readonly reason: string }>;
  /** Room messages the source left out as too large to be commands (`isOversizedMessage`): counted. */
  readonly oversized?: number;
}

export function emptyBatch(label: string): SyncBatch {
  return { label, roomEvents: [], toDevice: [], deviceLists: { changed: [], left: [] }, oneTimeKeyCounts: undefined, unusedFallbackKeyTypes: undefined };
}
