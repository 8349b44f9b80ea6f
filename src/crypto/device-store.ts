import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DeviceId, initAsync, OlmMachine, UserId } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { Logger } from '../log.ts';
import { EXIT, StartupError } from '../startup-error.ts';
import { checkStoreOwner, CryptoStore, type DeviceFileFs } from './crypto-store.ts';

/** How the homeserver creates and removes the bot's devices; the source (appservice or password) provides it. */
export interface DeviceApi {
  /** Makes sure the device exists: `created` if it did not before. */
  ensure(deviceId: string): Promise<'created' | 'existed'>;
  /** Deletes a device; a device that is already gone is not an error. */
  remove(deviceId: string): Promise<void>;
  /** The ids of the bot user's devices on the homeserver. */
  list(): Promise<string[]>;
}

export interface DeviceCrypto {
  readonly machine: OlmMachine;
  readonly store: CryptoStore;
  readonly deviceId: string;
  /** Set when the store could not be used and a new device replaced the old one. */
  readonly replaced: { readonly oldDeviceId: string | undefined; readonly reason: string } | undefined;
}

/** The engine's store name (its IndexedDB databases are `<name>::…`); the legacy import writes the same. */
export const STORE_NAME = 'openclaw-crypto';

const DEVICE_PREFIX = 'OPENCLAW';

export function newDeviceId(): string {
  // Uppercase letters only, as clients show device ids; 8 random letters make collisions negligible.
  const letters = [...randomBytes(8)].map((b) => String.fromCharCode(65 + (b % 26))).join('');
  return `${DEVICE_PREFIX}${letters}`;
}

/**
 * Opens the bot's crypto store and device, or replaces them with a new device when the store is
 * lost, damaged, or belongs to another device. Reusing a device id with a fresh store is what
 * makes encrypted bots crash-loop on "One time key … already exists": the server still holds
 * the old keys. So the old device is deleted and a new one created, and the log says so once.
 */
export async function openDeviceCrypto(options: {
  readonly userId: string;
  readonly dir: string;
  readonly passphrase: string | undefined;
  readonly devices: DeviceApi;
  /** A device that exists but was never used (password mode's first login): used for a fresh store. */
  readonly freshDeviceId?: string | undefined;
  readonly logger: Logger;
  /** For tests: the filesystem device.json is written through (to inject failures). */
  readonly fs?: DeviceFileFs;
}): Promise<DeviceCrypto> {
  const { userId, devices, logger } = options;
  await initAsync();
  const dir = join(options.dir, 'crypto');
  const storeOptions = options.fs ? { storeName: STORE_NAME, fs: options.fs } : { storeName: STORE_NAME };
  let store = new CryptoStore(storeOptions);
  const loaded = await store.open(dir);
  const check = checkStoreOwner(loaded, { userId });
  if (loaded.kind === 'loaded' && loaded.migrated) {
    logger.info({ records: loaded.migrated.records, moved_to: loaded.migrated.movedTo }, 'moved the crypto store from snapshot files into SQLite (same device, keys and sessions); the old files were kept aside');
  }

  let replaced: DeviceCrypto['replaced'];
  let deviceId: string | undefined;
  if (check.kind === 'match') {
    if ((await devices.ensure(check.deviceId)) === 'existed') {
      deviceId = check.deviceId;
    } else {
      // The homeserver had forgotten the device (deleted by someone): its published keys are gone.
      replaced = { oldDeviceId: check.deviceId, reason: `device ${check.deviceId} no longer existed on the homeserver` };
    }
  } else if (check.kind === 'mismatch') {
    replaced = { oldDeviceId: check.storedDeviceId, reason: `the crypto store belongs to ${check.storedUserId} device ${check.storedDeviceId}` };
  } else if (check.kind === 'corrupt') {
    replaced = { oldDeviceId: check.storedDeviceId, reason: `the crypto store is unusable: ${check.reason}` };
  }

  const startOver = async (why: NonNullable<DeviceCrypto['replaced']>): Promise<string> => {
    if (loaded.kind !== 'fresh' || loaded.device) {
      const moved = await store.discard();
      logger.warn({ moved_to: moved }, 'kept the old crypto store aside');
    }
    store.close();
    store = new CryptoStore(storeOptions);
    await store.open(dir);
    store.install();
    const id = newDeviceId();
    await devices.ensure(id);
    const removed = await removeStaleDevices(devices, id, logger);
    logger.warn({ old_device_id: why.oldDeviceId, device_id: id, deleted: removed }, `${why.reason}; created a new device ${id}${removed.length ? ` and deleted ${removed.join(', ')}` : ''}. People in encrypted rooms will see the bot's new device; nothing else needs doing.`);
    return id;
  };

  if (replaced) deviceId = await startOver(replaced);
  else store.install();
  if (!deviceId) {
    deviceId = options.freshDeviceId ?? newDeviceId();
    await devices.ensure(deviceId);
    // A fresh store beside devices of ours on the server means the store was lost with its record.
    const removed = await removeStaleDevices(devices, deviceId, logger);
    if (removed.length > 0) logger.warn({ device_id: deviceId, deleted: removed }, `no crypto store found but the homeserver had bot devices ${removed.join(', ')} (the store was lost): deleted them and created ${deviceId}`);
    else logger.info({ device_id: deviceId }, 'created the bot device (first start)');
  }

  let machine: OlmMachine;
  try {
    machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(deviceId), STORE_NAME, options.passphrase);
  } catch (error) {
    const message = String((error as Error).message ?? error);
    if (/failed to be decrypted|unpickling|cipher/i.test(message)) {
      throw new StartupError(`storage.passphrase does not open the crypto store in ${dir}: restore the passphrase it was created with (or move the store away to start a new device)`, EXIT.store, { cause: error });
    }
    const damaged = /the crypto store is damaged: .*/.exec(message)?.[0];
    if ((damaged || /doesn't match the account/i.test(message)) && !replaced) {
      // A record that fails its checksum is found when the engine reads it (the account, here).
      replaced = { oldDeviceId: deviceId, reason: damaged ?? `the crypto store holds another account (${message})` };
      deviceId = await startOver(replaced);
      machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(deviceId), STORE_NAME, options.passphrase);
    } else {
      throw new StartupError(`cannot open the crypto store in ${dir}: ${message}`, EXIT.store, { cause: error });
    }
  }
  await store.setDevice({ userId, deviceId });
  await store.flush();
  return { machine, store, deviceId, replaced };
}

/** Deletes the bot's other devices (ours by their prefix), so no dead device with stale keys lingers. */
async function removeStaleDevices(devices: DeviceApi, keep: string, logger: Logger): Promise<string[]> {
  let ids: string[];
  try {
    ids = (await devices.list()).filter((id) => id !== keep && id.startsWith(DEVICE_PREFIX));
  } catch (error) {
    logger.warn(`could not list the bot's devices to delete stale ones: ${(error as Error).message}`);
    return [];
  }
  const removed: string[] = [];
  for (const id of ids) {
    try {
      await devices.remove(id);
      removed.push(id);
    } catch (error) {
      logger.warn({ device_id: id }, `could not delete a stale device: ${(error as Error).message}`);
    }
  }
  return removed;
}
