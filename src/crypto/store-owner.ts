import { DEVICE_FILE, type DeviceInfo } from './device-file.ts';
import type { LoadResult } from './crypto-store.ts';

/** Whether the store on disk belongs to the expected user/device (see `checkStoreOwner`). */
export type StoreCheck =
  | { kind: 'fresh' }
  | { kind: 'match'; userId: string; deviceId: string; created: string }
  | { kind: 'mismatch'; storedUserId: string; storedDeviceId: string }
  | { kind: 'corrupt'; reason: string; storedDeviceId?: string };

/**
 * Decides from an `open()` result whether the store belongs to `expected`. Leave out
 * `expected.deviceId` when it is not known in advance (any device of that user then matches).
 * A device.json without a store means the store was lost: `corrupt` with `storedDeviceId`.
 */
export function checkStoreOwner(load: LoadResult, expected: { userId: string; deviceId?: string }): StoreCheck {
  if (load.kind === 'corrupt') {
    return load.device ? { kind: 'corrupt', reason: load.reason, storedDeviceId: load.device.deviceId } : { kind: 'corrupt', reason: load.reason };
  }
  if (load.kind === 'fresh') {
    if (!load.device) return { kind: 'fresh' };
    return {
      kind: 'corrupt',
      reason: `no crypto store, but ${DEVICE_FILE} records device ${load.device.deviceId} of ${load.device.userId}: the store was lost`,
      storedDeviceId: load.device.deviceId,
    };
  }
  const d: DeviceInfo | undefined = load.device;
  if (!d) return { kind: 'corrupt', reason: 'the crypto store records no device identity' };
  if (d.userId !== expected.userId || (expected.deviceId !== undefined && d.deviceId !== expected.deviceId)) {
    return { kind: 'mismatch', storedUserId: d.userId, storedDeviceId: d.deviceId };
  }
  return { kind: 'match', userId: d.userId, deviceId: d.deviceId, created: d.created };
}
