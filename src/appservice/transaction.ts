import type { SyncBatch } from '../matrix/batch.ts';
import { isOversizedMessage, roomEventProblem, isToDeviceEvent, stringList, type RoomEvent, type ToDeviceEvent } from '../matrix/events.ts';

/**
 * The only place that knows the transaction field names, stable and unstable (MSC2409 to-device
 * and ephemeral, MSC3202 device lists and key counts). Everything after this sees a SyncBatch.
 */
const F = {
  events: 'events',
  toDevice: ['de.sorunome.msc2409.to_device', 'to_device'],
  deviceLists: ['org.matrix.msc3202.device_lists', 'device_lists'],
  otkCounts: ['org.matrix.msc3202.device_one_time_keys_count', 'org.matrix.msc3202.device_one_time_key_counts', 'device_one_time_keys_count'],
  fallbackKeys: ['org.matrix.msc3202.device_unused_fallback_key_types', 'device_unused_fallback_key_types'],
} as const;

export class TransactionFormatError extends Error {}

type Json = Record<string, unknown>;

function first(body: Json, names: readonly string[]): unknown {
  for (const name of names) if (body[name] !== undefined) return body[name];
  return undefined;
}

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export interface BotDevice {
  readonly userId: string;
  /** Unset while the bot has no device (no encryption): device-scoped data is then dropped. */
  readonly deviceId: string | undefined;
}

/** Validates a transaction body and keeps what concerns the bot's user and device. */
export function parseTransaction(txnId: string, body: unknown, bot: BotDevice): SyncBatch {
  if (!isObject(body)) throw new TransactionFormatError('the transaction body must be a JSON object');
  const events = body[F.events];
  if (!Array.isArray(events)) throw new TransactionFormatError('the transaction has no "events" array');
  // A malformed event is dropped rather than failing the transaction: a retry would carry it again forever.
  const roomEvents: RoomEvent[] = [];
  const dropped: Array<{ eventId: string | undefined; reason: string }> = [];
  let oversized = 0;
  for (const event of events) {
    const problem = roomEventProblem(event);
    if (problem === undefined) {
      if (isOversizedMessage(event as RoomEvent)) oversized++;
      else roomEvents.push(event as RoomEvent);
    } else dropped.push({ eventId: typeof (event as { event_id?: unknown } | null)?.event_id === 'string' ? (event as { event_id: string }).event_id.slice(0, 255) : undefined, reason: problem });
  }

  const toDevice: ToDeviceEvent[] = [];
  const rawToDevice = first(body, F.toDevice);
  if (Array.isArray(rawToDevice) && bot.deviceId) {
    for (const e of rawToDevice) {
      if (!isToDeviceEvent(e)) continue;
      if (e.to_user_id !== undefined && e.to_user_id !== bot.userId) continue;
      if (e.to_device_id !== undefined && e.to_device_id !== bot.deviceId && e.to_device_id !== '*') continue;
      toDevice.push(e);
    }
  }

  const lists = first(body, F.deviceLists);
  const deviceLists = isObject(lists) ? { changed: stringList(lists['changed']), left: stringList(lists['left']) } : { changed: [], left: [] };

  const forDevice = (names: readonly string[]): unknown => {
    const byUser = first(body, names);
    if (!isObject(byUser) || !bot.deviceId) return undefined;
    const byDevice = byUser[bot.userId];
    return isObject(byDevice) ? byDevice[bot.deviceId] : undefined;
  };
  const counts = forDevice(F.otkCounts);
  const oneTimeKeyCounts = isObject(counts)
    ? Object.fromEntries(Object.entries(counts).filter((entry): entry is [string, number] => typeof entry[1] === 'number'))
    : undefined;
  const fallback = forDevice(F.fallbackKeys);

  return {
    label: `txn ${txnId}`,
    roomEvents,
    toDevice,
    deviceLists,
    oneTimeKeyCounts,
    unusedFallbackKeyTypes: Array.isArray(fallback) ? stringList(fallback) : undefined,
    dropped,
    oversized,
  };
}
