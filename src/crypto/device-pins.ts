/**
 * Trust on first use for users without cross-signing: the devices of each user the bot obeys, by
 * device id and ed25519 key, in the state database (on the volume, so they survive restarts).
 *
 * The rule: a user's first device is pinned when the bot first sees it. A further device is obeyed
 * only once it is approved, from a device of the same user that is already pinned (`approve ID`)
 * or by the operator (`trust verify`). Pinning every new device on sight, as before, let anyone with
 * the user's password add a device and be obeyed at once.
 */
import type { Approval } from '../matrix/incoming.ts';
import type { StateDb } from '../store/state-db.ts';

/** The same key as before approvals existed: volumes written by older versions keep their pins. */
const key = (userId: string): string => `pinned-devices:${userId}`;

/** What is known of one device when a message of it is judged. */
export interface SeenDevice {
  readonly deviceId: string;
  readonly ed25519: string;
  /** The operator ran `trust verify` for it (the engine keeps that as the device's local trust). */
  readonly operatorVerified: boolean;
}

/** `pin`: record the device's key now; `approvable`: refused, but a pinned device or the operator may approve it. */
export type PinDecision =
  | { readonly trusted: true; readonly why: string; readonly pin: boolean }
  | { readonly trusted: false; readonly why: string; readonly approvers: readonly string[] };

/** Decides a device of a user without cross-signing, from the user's pins (device id → ed25519). */
export function decide(pins: Readonly<Record<string, string>>, userId: string, device: SeenDevice): PinDecision {
  const known = pins[device.deviceId];
  if (known === device.ed25519) return { trusted: true, why: 'pinned', pin: false };
  if (device.operatorVerified) return { trusted: true, why: 'approved by the operator', pin: true };
  const approvers = Object.keys(pins).filter((id) => id !== device.deviceId);
  if (known !== undefined) return { trusted: false, why: `device ${device.deviceId} presented a different key than the one I pinned for it`, approvers };
  if (approvers.length === 0) return { trusted: true, why: `the first device of ${userId} I have seen: pinned`, pin: true };
  return { trusted: false, why: `device ${device.deviceId} is a new device of ${userId}, not approved yet`, approvers };
}

/** Why an `approve` is not carried out. */
export type ApprovalRefusal = Extract<Approval, { kind: 'refused' }>['reason'];

/**
 * Decides `approve target`, sent from `approver` (a device of the same user). `target` is the key
 * the bot knows for that device now, or undefined when it knows no such device: the approval binds
 * that key, so the device approved is the one the bot refused, not whatever later takes its id.
 */
export function decideApproval(
  pins: Readonly<Record<string, string>>,
  approver: { readonly deviceId: string; readonly ed25519: string | undefined },
  target: { readonly deviceId: string; readonly ed25519: string | undefined },
): { readonly approved: true; readonly already: boolean } | { readonly approved: false; readonly refusal: ApprovalRefusal } {
  if (approver.deviceId === target.deviceId) return { approved: false, refusal: 'self' };
  if (approver.ed25519 === undefined || pins[approver.deviceId] !== approver.ed25519) return { approved: false, refusal: 'approver-not-pinned' };
  if (target.ed25519 === undefined) return { approved: false, refusal: 'unknown-device' };
  return { approved: true, already: pins[target.deviceId] === target.ed25519 };
}

/** The pins, read and written through the state database. */
export class DevicePins {
  readonly #state: StateDb;

  constructor(state: StateDb) {
    this.#state = state;
  }

  of(userId: string): Record<string, string> {
    return JSON.parse(this.#state.get(key(userId)) ?? '{}') as Record<string, string>;
  }

  pin(userId: string, deviceId: string, ed25519: string): void {
    this.#state.set(key(userId), JSON.stringify({ ...this.of(userId), [deviceId]: ed25519 }));
  }

  /** The operator's `trust repin` for a user without cross-signing: the next device is a first device again. */
  forget(userId: string): void {
    this.#state.set(key(userId), '{}');
  }
}
