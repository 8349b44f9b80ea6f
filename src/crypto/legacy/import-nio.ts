/**
 * `import-legacy-store`: moves the old Python bot's matrix-nio crypto store into the bot's own
 * store, through the engine's libolm migration (`Migration` in matrix-sdk-crypto-wasm: it
 * decrypts libolm pickles with the pickle key and re-pickles them for vodozemac). The result is
 * the store the bot opens at start (same directory, store name and passphrase), with device.json
 * naming the old device, so the bot continues as that device: same device id, same identity keys,
 * and it can decrypt what the old bot could.
 *
 * Run with the bot stopped (the instance lock is taken, as the bot does).
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  BaseMigrationData,
  DeviceId,
  initAsync,
  Migration,
  OlmMachine,
  PickledInboundGroupSession,
  PickledSession,
  RoomId,
  StoreHandle,
  UserId,
} from '@matrix-org/matrix-sdk-crypto-wasm';
import { InstanceLock } from '../../store/instance-lock.ts';
import { StateDb } from '../../store/state-db.ts';
import { CryptoStore, STORE_FILE } from '../crypto-store.ts';
import { STORE_NAME } from '../device-store.ts';
import { LegacyStoreError, readNioStore, type NioMegolmSession, type NioOlmSession } from './nio-store.ts';

export interface ImportOptions {
  /** The old store: nio's store directory or one of its `.db` files. */
  readonly from: string;
  /** The bot's `storage.path`. */
  readonly storagePath: string;
  readonly passphrase: string | undefined;
  /** nio's pickle key (its default unless the old bot set one). */
  readonly pickleKey: string;
  /** Move an existing crypto store aside instead of refusing. */
  readonly force: boolean;
}

export interface ImportReport {
  readonly file: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly ed25519: string;
  readonly curve25519: string;
  readonly olmSessions: number;
  readonly megolmSessions: number;
  /** Where `--force` moved the previous crypto store. */
  readonly movedAside: string | undefined;
  /** A stored password login of another device was forgotten (the bot logs in again as the imported device). */
  readonly forgotLogin: string | undefined;
  /** What became of the previous store's cross-signing identity, when there was one. */
  readonly crossSigning: string | undefined;
}

/** The private cross-signing keys (unpadded base64 seeds). */
interface CrossSigningSeeds {
  readonly master: string | undefined;
  readonly selfSigning: string | undefined;
  readonly userSigning: string | undefined;
}

const BATCH = 500;
const SESSION_KEY = 'password-session';
const STATE_FILE = 'state.sqlite';

export async function importNioStore(o: ImportOptions): Promise<ImportReport> {
  const nio = readNioStore(o.from);
  const lock = InstanceLock.acquire(o.storagePath);
  try {
    await initAsync();
    const dir = join(o.storagePath, 'crypto');
    let store = new CryptoStore({ storeName: STORE_NAME });
    const loaded = await store.open(dir);
    let movedAside: string | undefined;
    let identity: CrossSigningSeeds | { error: string } | undefined;
    if (loaded.kind !== 'fresh' || loaded.device) {
      const what = loaded.device ? `the store of ${loaded.device.userId} device ${loaded.device.deviceId}` : 'a crypto store';
      if (!o.force) {
        store.close();
        throw new LegacyStoreError(`${dir} already holds ${what}; pass --force to move it aside (into ${dir}/discarded-<time>/) and import over it`);
      }
      // The bot may have run before on its own device and published a cross-signing identity for
      // the user: kept, or the bot would have to replace it (which needs the password, and makes
      // every client warn that the bot's identity changed).
      if (loaded.device?.userId === nio.userId) identity = await previousIdentity(store, loaded.device.deviceId, nio.userId, o.passphrase);
      movedAside = await store.discard();
      store = new CryptoStore({ storeName: STORE_NAME });
      await store.open(dir);
    }
    store.install();
    let keys: { ed25519: string; curve25519: string };
    try {
      await migrate(nio, new TextEncoder().encode(o.pickleKey), o.passphrase, identity && 'master' in identity ? identity : undefined);
      // Opened as the bot opens it: proves the store is complete and names the device's keys.
      const machine = await OlmMachine.initialize(new UserId(nio.userId), new DeviceId(nio.deviceId), STORE_NAME, o.passphrase);
      keys = { ed25519: machine.identityKeys.ed25519.toBase64(), curve25519: machine.identityKeys.curve25519.toBase64() };
      machine.close();
      await store.setDevice({ userId: nio.userId, deviceId: nio.deviceId });
      await store.flush();
    } catch (error) {
      // A half-written store must not be mistaken for the device's: it is removed (it was empty before).
      store.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(join(dir, STORE_FILE + suffix), { force: true });
      rmSync(join(dir, 'device.json'), { force: true });
      throw error;
    }
    store.close();
    const forgotLogin = forgetOtherLogin(o.storagePath, nio.userId, nio.deviceId);
    const crossSigning = identity === undefined ? undefined : 'error' in identity ? `not kept: ${identity.error}` : 'kept from the previous store';
    return { file: nio.file, userId: nio.userId, deviceId: nio.deviceId, ...keys, olmSessions: nio.olmSessions.length, megolmSessions: nio.megolmSessions.length, movedAside, forgotLogin, crossSigning };
  } finally {
    lock.release();
  }
}

/** The previous store's private cross-signing keys, read through the engine (the store is installed for that). */
async function previousIdentity(store: CryptoStore, deviceId: string, userId: string, passphrase: string | undefined): Promise<CrossSigningSeeds | { error: string } | undefined> {
  store.install();
  let machine: OlmMachine | undefined;
  try {
    machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(deviceId), STORE_NAME, passphrase);
    const seeds = await machine.exportCrossSigningKeys();
    if (!seeds?.masterKey) return undefined;
    return { master: seeds.masterKey, selfSigning: seeds.self_signing_key, userSigning: seeds.userSigningKey };
  } catch (error) {
    return { error: `the previous store could not be read (${String((error as Error).message ?? error)})` };
  } finally {
    machine?.close();
  }
}

async function migrate(nio: ReturnType<typeof readNioStore>, pickleKey: Uint8Array, passphrase: string | undefined, identity: CrossSigningSeeds | undefined): Promise<void> {
  const handle = await StoreHandle.open(STORE_NAME, passphrase);
  try {
    const base = new BaseMigrationData();
    base.userId = new UserId(nio.userId);
    base.deviceId = new DeviceId(nio.deviceId);
    base.pickledAccount = nio.accountPickle;
    if (identity) {
      base.privateCrossSigningMasterKey = identity.master;
      base.privateCrossSigningSelfSigningKey = identity.selfSigning;
      base.privateCrossSigningUserSigningKey = identity.userSigning;
    }
    await engineStep('the account', () => Migration.migrateBaseData(base, pickleKey, handle));
    for (let i = 0; i < nio.olmSessions.length; i += BATCH) {
      const batch = nio.olmSessions.slice(i, i + BATCH).map(olmSession);
      await engineStep('an Olm session', () => Migration.migrateOlmSessions(batch, pickleKey, handle));
    }
    for (let i = 0; i < nio.megolmSessions.length; i += BATCH) {
      const batch = nio.megolmSessions.slice(i, i + BATCH).map(megolmSession);
      await engineStep('a Megolm session', () => Migration.migrateMegolmSessions(batch, pickleKey, handle));
    }
  } finally {
    handle.free();
  }
}

function olmSession(s: NioOlmSession): PickledSession {
  const p = new PickledSession();
  p.pickle = s.pickle;
  p.senderKey = s.senderKey;
  p.creationTime = s.created;
  p.lastUseTime = s.lastUsed;
  // nio does not record it; it only matters for when the engine may replace a wedged session.
  p.createdUsingFallbackKey = false;
  return p;
}

function megolmSession(s: NioMegolmSession): PickledInboundGroupSession {
  const p = new PickledInboundGroupSession();
  p.pickle = s.pickle;
  p.roomId = new RoomId(s.roomId);
  p.senderKey = s.senderKey;
  p.senderSigningKey = s.signingKey;
  p.imported = s.forwarded;
  p.backedUp = false;
  return p;
}

/** The engine's errors for a wrong key are terse ("The pickle couldn't be decrypted"): say which key. */
async function engineStep(what: string, step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (error) {
    const message = String((error as Error).message ?? error);
    if (/decrypt|mac|cipher|decode|unpickl/i.test(message)) {
      throw new LegacyStoreError(`cannot read ${what} of the old store with this pickle key (${message}): the old bot's pickle key is "DEFAULT_KEY" unless it set one; give it with --pickle-key-file`);
    }
    throw new LegacyStoreError(`the engine refused ${what} of the old store: ${message}`);
  }
}

/**
 * A password login stored for another device would be reused at start, and the bot would then
 * replace the imported device. It is forgotten, so the bot logs in again as the imported device.
 */
function forgetOtherLogin(storagePath: string, userId: string, deviceId: string): string | undefined {
  if (!existsSync(join(storagePath, STATE_FILE))) return undefined;
  let state: StateDb | undefined;
  try {
    state = StateDb.open(storagePath);
    const raw = state.get(SESSION_KEY);
    if (!raw) return undefined;
    const stored = JSON.parse(raw) as { userId?: string; deviceId?: string };
    if (stored.userId === userId && stored.deviceId === deviceId) return undefined;
    state.set(SESSION_KEY, '');
    return `${stored.userId ?? '?'} device ${stored.deviceId ?? '?'}`;
  } finally {
    state?.close();
  }
}
