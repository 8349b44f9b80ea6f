/**
 * `approve DEVICEID`: one of an allowed user's devices lets the bot obey another of theirs (trust
 * on first use for users without cross-signing, src/crypto/device-pins.ts). The bot claims the event
 * first, as for every command; this decides the answer.
 */
import type { Logger } from '../log.ts';
import type { DeviceApprover, IncomingEvent } from '../matrix/incoming.ts';
import type { Metrics } from '../metrics.ts';
import type { Parsed } from './commands.ts';
import type { Policy } from './policy.ts';
import { approval, type Reply } from './replies.ts';

export interface ApprovalContext {
  readonly policy: Policy;
  /** The crypto step; absent without encryption. */
  readonly devices: DeviceApprover | undefined;
  readonly prefix: string;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/**
 * Refused like any command from a device the policy does not obey (so an unapproved device cannot
 * approve, itself or another); otherwise the crypto step pins the device, for the sender's own
 * devices only. Not subject to the age limit and not echoed: it changes nothing in the cluster.
 */
export async function answerApproval(incoming: IncomingEvent, parsed: Extract<Parsed, { kind: 'approve' }>, c: ApprovalContext): Promise<Reply> {
  const { event, senderDevice: device } = incoming;
  const refusal = c.policy.refusal(incoming, parsed);
  const byDevice = incoming.encrypted ? device?.deviceId : undefined;
  const outcome = refusal || !parsed.deviceId || !byDevice || !c.devices ? undefined : await c.devices.approve(event.sender, byDevice, parsed.deviceId);
  c.metrics.commands.inc({ command: 'approve', outcome: outcome?.kind === 'approved' ? 'ok' : 'refused', target: '' });
  const result = refusal ? 'untrusted-device' : outcome?.kind === 'refused' ? outcome.reason : outcome?.kind ?? 'no-device';
  c.log.info({ command: 'approve', device_id: byDevice, approving: parsed.deviceId, outcome: result }, 'approve');
  return refusal ?? approval(parsed.deviceId, event.sender, c.prefix, outcome);
}
