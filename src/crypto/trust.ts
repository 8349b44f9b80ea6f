import { DeviceId, LocalTrust, OtherUserIdentity, UserId, type OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { TrustPolicy } from '../config/config.ts';
import type { Logger } from '../log.ts';
import type { StateDb } from '../store/state-db.ts';

export interface TrustVerdict {
  readonly deviceId: string | undefined;
  readonly trusted: boolean;
  /** Why, in words fit for chat and logs. */
  readonly why: string;
  /** Something the room should hear about (a newly pinned device). */
  readonly announce?: string;
}

/**
 * Decides whether a decrypted message's sending device is obeyed, by policy:
 * - `tofu`: the engine pins each user's cross-signing identity the first time it sees it; a
 *   device must be signed by that identity, and after an identity change nothing is obeyed until
 *   an operator re-pins. Users without cross-signing get each device pinned on first sight
 *   (its ed25519 key, kept in the state store) and new devices announced.
 * - `verified`: only devices the bot verified (an operator's `trust verify`) or that are signed by an
 *   identity the bot verified.
 * - `any`: every device of an allowed user (the old bot's behaviour).
 */
export class TrustJudge {
  readonly #machine: OlmMachine;
  readonly #policy: TrustPolicy;
  readonly #state: StateDb;
  readonly #logger: Logger;

  readonly #refreshKeys: (userId: string) => Promise<void>;

  /** `refreshKeys` makes the engine fetch a user's device list (a fresh store knows nobody's devices). */
  constructor(machine: OlmMachine, policy: TrustPolicy, state: StateDb, logger: Logger, refreshKeys: (userId: string) => Promise<void>) {
    this.#refreshKeys = refreshKeys;
    this.#machine = machine;
    this.#policy = policy;
    this.#state = state;
    this.#logger = logger;
  }

  async judge(sender: string, deviceId: string | undefined): Promise<TrustVerdict> {
    if (this.#policy === 'any') return { deviceId, trusted: true, why: 'trust policy "any"' };
    if (!deviceId) return { deviceId, trusted: false, why: 'the sending device is unknown' };
    // Zero timeout: this runs inside the crypto queue, which is what answers pending key queries.
    let device = await this.#machine.getDevice(new UserId(sender), new DeviceId(deviceId), 0);
    if (!device) {
      await this.#refreshKeys(sender);
      device = await this.#machine.getDevice(new UserId(sender), new DeviceId(deviceId), 0);
    }
    if (!device) return { deviceId, trusted: false, why: `device ${deviceId} is unknown to me` };
    try {
      if (this.#policy === 'verified') {
        return device.isVerified()
          ? { deviceId, trusted: true, why: 'verified' }
          : { deviceId, trusted: false, why: `device ${deviceId} is not verified (policy "verified"; an operator can run "trust verify ${sender} ${deviceId}")` };
      }
      const identity = await this.#machine.getIdentity(new UserId(sender));
      if (identity instanceof OtherUserIdentity) {
        try {
          if (identity.identityNeedsUserApproval() || identity.hasVerificationViolation()) {
            return { deviceId, trusted: false, why: `${sender}'s cryptographic identity changed since I first saw it; an operator must re-pin it ("trust repin ${sender}")` };
          }
        } finally {
          identity.free();
        }
        return device.isCrossSignedByOwner()
          ? { deviceId, trusted: true, why: 'signed by its owner\'s pinned identity' }
          : { deviceId, trusted: false, why: `device ${deviceId} is not signed by ${sender}'s identity (verify it from one of your other sessions)` };
      }
      identity?.free();
      return this.#pinDevice(sender, deviceId, device.ed25519Key?.toBase64());
    } finally {
      device.free();
    }
  }

  /** Trust on first use for users without cross-signing: remember each device's key. */
  #pinDevice(sender: string, deviceId: string, ed25519: string | undefined): TrustVerdict {
    if (!ed25519) return { deviceId, trusted: false, why: `device ${deviceId} has no signing key` };
    const key = `pinned-devices:${sender}`;
    const pinned = JSON.parse(this.#state.get(key) ?? '{}') as Record<string, string>;
    const known = pinned[deviceId];
    if (known === ed25519) return { deviceId, trusted: true, why: 'pinned on first use' };
    if (known !== undefined) {
      this.#logger.warn({ user_id: sender, device_id: deviceId }, 'a pinned device presented a different key');
      return { deviceId, trusted: false, why: `device ${deviceId} presented a different key than the one I pinned` };
    }
    pinned[deviceId] = ed25519;
    this.#state.set(key, JSON.stringify(pinned));
    this.#logger.info({ user_id: sender, device_id: deviceId }, 'pinned a new device of a user without cross-signing');
    return {
      deviceId,
      trusted: true,
      why: 'pinned on first use',
      announce: `🔑 New device ${deviceId} of ${sender} (no cross-signing): pinned, and its commands are obeyed. If this was not you, tell the operator.`,
    };
  }

  /** Applies an operator's re-pin or verification; returns a line for the log. */
  async apply(request: { kind: 'repin' | 'verify'; userId: string; deviceId: string | undefined }): Promise<string> {
    const user = new UserId(request.userId);
    if (request.kind === 'repin') {
      const identity = await this.#machine.getIdentity(user);
      if (identity instanceof OtherUserIdentity) {
        await identity.pinCurrentMasterKey();
        if (identity.hasVerificationViolation()) await identity.withdrawVerification();
        identity.free();
        return `re-pinned the current identity of ${request.userId}`;
      }
      identity?.free();
      this.#state.set(`pinned-devices:${request.userId}`, '{}');
      return `${request.userId} has no cross-signing identity; forgot their pinned devices, the next ones will be pinned on first use`;
    }
    if (!request.deviceId) return 'verify needs a device id';
    const device = await this.#machine.getDevice(user, new DeviceId(request.deviceId), 0);
    if (!device) return `device ${request.deviceId} of ${request.userId} is unknown; it must have sent something first`;
    await device.setLocalTrust(LocalTrust.Verified);
    device.free();
    return `verified device ${request.deviceId} of ${request.userId}`;
  }
}
