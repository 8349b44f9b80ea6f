import { DeviceId, LocalTrust, OtherUserIdentity, UserId, type OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { TrustPolicy } from '../config/config.ts';
import type { Logger } from '../log.ts';
import type { Approval } from '../matrix/incoming.ts';
import type { StateDb } from '../store/state-db.ts';
import { decide, decideApproval, DevicePins } from './device-pins.ts';

export interface TrustVerdict {
  readonly deviceId: string | undefined;
  readonly trusted: boolean;
  /** Why, in words fit for chat and logs. */
  readonly why: string;
  /** Refused, but approvable (`approve ID`) from one of these devices of the same user, or by the operator. */
  readonly approvers?: readonly string[];
}

/**
 * Decides whether a decrypted message's sending device is obeyed, by policy:
 * - `tofu`: the engine pins each user's cross-signing identity the first time it sees it; a
 *   device must be signed by that identity, and after an identity change nothing is obeyed until
 *   an operator re-pins. Users without cross-signing: their first device is pinned on sight, and
 *   further ones only once approved (device-pins.ts).
 * - `verified`: only devices the bot verified (an operator's `trust verify`) or that are signed by an
 *   identity the bot verified.
 * - `any`: every device of an allowed user (the old bot's behaviour).
 */
export class TrustJudge {
  readonly #machine: OlmMachine;
  readonly #policy: TrustPolicy;
  readonly #pins: DevicePins;
  readonly #logger: Logger;

  readonly #refreshKeys: (userId: string) => Promise<void>;

  /** `refreshKeys` makes the engine fetch a user's device list (a fresh store knows nobody's devices). */
  constructor(machine: OlmMachine, policy: TrustPolicy, state: StateDb, logger: Logger, refreshKeys: (userId: string) => Promise<void>) {
    this.#refreshKeys = refreshKeys;
    this.#machine = machine;
    this.#policy = policy;
    this.#pins = new DevicePins(state);
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
      return await this.#pinned(sender, deviceId, device.ed25519Key?.toBase64(), device.isLocallyTrusted());
    } finally {
      device.free();
    }
  }

  /** Trust on first use for users without cross-signing: the first device, then approved ones. */
  async #pinned(sender: string, deviceId: string, ed25519: string | undefined, operatorVerified: boolean): Promise<TrustVerdict> {
    if (!ed25519) return { deviceId, trusted: false, why: `device ${deviceId} has no signing key` };
    const decision = decide(this.#pins.of(sender), sender, { deviceId, ed25519, operatorVerified });
    if (!decision.trusted) {
      this.#logger.warn({ user_id: sender, device_id: deviceId }, `not obeying a device of a user without cross-signing: ${decision.why}`);
      return { deviceId, trusted: false, why: decision.why, approvers: await this.#loggedIn(sender, decision.approvers) };
    }
    if (decision.pin) {
      this.#pins.pin(sender, deviceId, ed25519);
      this.#logger.info({ user_id: sender, device_id: deviceId }, `pinned a device of a user without cross-signing (${decision.why})`);
    }
    return { deviceId, trusted: true, why: decision.why };
  }

  /**
   * The pinned devices still logged in: only they can send an approval. A deleted one stays pinned,
   * though (so deleting a user's devices does not make the next one a "first device" again).
   */
  async #loggedIn(userId: string, deviceIds: readonly string[]): Promise<string[]> {
    const devices = await this.#machine.getUserDevices(new UserId(userId), 0);
    try {
      return deviceIds.filter((id) => {
        const device = devices.get(new DeviceId(id));
        const live = device !== undefined && !device.isDeleted();
        device?.free();
        return live;
      });
    } finally {
      devices.free();
    }
  }

  /**
   * `approve deviceId`, sent by `userId` from their device `byDeviceId`: pins the key the bot knows
   * for that device now. Runs in the crypto queue (the bot handles events inside it).
   */
  async approve(userId: string, byDeviceId: string, deviceId: string): Promise<Approval> {
    if (this.#policy === 'any') return { kind: 'not-applicable', why: 'under the trust policy "any" I obey every device of yours already' };
    if (this.#policy === 'verified') return { kind: 'not-applicable', why: `under the trust policy "verified" only the operator can approve a device ("trust verify ${userId} ${deviceId}")` };
    const user = new UserId(userId);
    const identity = await this.#machine.getIdentity(user);
    const crossSigned = identity instanceof OtherUserIdentity;
    identity?.free();
    if (crossSigned) return { kind: 'not-applicable', why: 'you use cross-signing, so I obey the sessions your identity has signed: verify the new session from this one in your client' };
    const keyOf = async (id: string, refresh: boolean): Promise<string | undefined> => {
      let device = await this.#machine.getDevice(user, new DeviceId(id), 0);
      if (!device && refresh) {
        await this.#refreshKeys(userId);
        device = await this.#machine.getDevice(user, new DeviceId(id), 0);
      }
      const key = device?.ed25519Key?.toBase64();
      device?.free();
      return key;
    };
    const pins = this.#pins.of(userId);
    const target = { deviceId, ed25519: byDeviceId === deviceId ? undefined : await keyOf(deviceId, true) };
    const decision = decideApproval(pins, { deviceId: byDeviceId, ed25519: await keyOf(byDeviceId, false) }, target);
    if (!decision.approved) {
      this.#logger.warn({ user_id: userId, device_id: deviceId, by_device_id: byDeviceId, reason: decision.refusal }, 'not approving a device');
      return { kind: 'refused', reason: decision.refusal };
    }
    if (!decision.already && target.ed25519) this.#pins.pin(userId, deviceId, target.ed25519);
    this.#logger.warn({ user_id: userId, device_id: deviceId, by_device_id: byDeviceId }, decision.already ? 'device already approved' : 'approved a device of a user without cross-signing, from another of their devices');
    return { kind: 'approved', already: decision.already };
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
      this.#pins.forget(request.userId);
      return `${request.userId} has no cross-signing identity; forgot their pinned devices: the next device they use is pinned on first use, further ones need approval`;
    }
    if (!request.deviceId) return 'verify needs a device id';
    const device = await this.#machine.getDevice(user, new DeviceId(request.deviceId), 0);
    if (!device) return `device ${request.deviceId} of ${request.userId} is unknown; it must have sent something first`;
    // Under "tofu", for a user without cross-signing, this local trust is what approves the device (see #pinned).
    await device.setLocalTrust(LocalTrust.Verified);
    device.free();
    return `verified device ${request.deviceId} of ${request.userId} (for a user without cross-signing under "tofu": approved)`;
  }
}
