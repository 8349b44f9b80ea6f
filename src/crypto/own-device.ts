/**
 * The bot's own device as others see it: signed by the bot's cross-signing identity (created on
 * first start), and its keys held by the homeserver (published again when a deleted device lost them).
 * Called by the crypto step (olm-crypto.ts) inside the pipeline's queue.
 */
import { UserId, type OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { Logger } from '../log.ts';
import { MatrixError, type MatrixClient } from '../matrix/client.ts';
import { canonicalJson } from './canonical-json.ts';
import { CrossSigningNeedsAuth, type OutgoingRequests } from './outgoing-requests.ts';

export class OwnDevice {
  readonly #machine: OlmMachine;
  readonly #client: MatrixClient;
  readonly #userId: string;
  readonly #outgoing: OutgoingRequests;
  readonly #logger: Logger;

  constructor(machine: OlmMachine, client: MatrixClient, userId: string, outgoing: OutgoingRequests, logger: Logger) {
    this.#machine = machine;
    this.#client = client;
    this.#userId = userId;
    this.#outgoing = outgoing;
    this.#logger = logger;
  }

  /** Cross-signs the bot's device the first time (so clients show it as verified by its owner). */
  async crossSign(): Promise<void> {
    const machine = this.#machine;
    try {
      const status = await machine.crossSigningStatus();
      if (!status.hasMaster || !status.hasSelfSigning) {
        const requests = await machine.bootstrapCrossSigning(true);
        // Order matters: device keys, then the cross-signing keys, then the signature of the device.
        if (requests.uploadKeysRequest) await this.#outgoing.send(requests.uploadKeysRequest);
        await this.#outgoing.send(requests.uploadSigningKeysRequest);
        await this.#outgoing.send(requests.uploadSignaturesRequest);
        this.#logger.info('cross-signed the bot device with a new identity');
      } else {
        await this.#signOwnDevice();
      }
    } catch (error) {
      // A lost volume in a mode that cannot answer the homeserver's auth (JWT, appservice): the bot works
      // on with its device unsigned by its owner, rather than failing every start.
      if (!(error instanceof CrossSigningNeedsAuth) && !(error instanceof MatrixError && error.status >= 400 && error.status < 500 && error.status !== 429)) throw error;
      this.#logger.warn({ err: error.message }, 'could not cross-sign the bot device: it works, but clients show it as not verified by its owner. To fix: reset the account\'s cross-signing (from a client logged in as the bot), then restart the bot');
    }
  }

  /**
   * Makes sure the homeserver still holds this device's keys. Deleting a device (a logout, an admin)
   * deletes its keys; logging in again with the same device id brings the device back empty, and
   * the engine, believing its keys published, would never upload them again. So they are checked,
   * and signed and uploaded again (with the cross-signing signature) when missing.
   */
  async ensurePublished(): Promise<void> {
    const machine = this.#machine;
    const client = this.#client;
    const userId = this.#userId;
    await this.#outgoing.drain();
    const deviceId = machine.deviceId.toString();
    const ed25519 = machine.identityKeys.ed25519.toBase64();
    const curve25519 = machine.identityKeys.curve25519.toBase64();
    const query = await client.request<{ device_keys?: Record<string, Record<string, { keys?: Record<string, string> }>> }>('POST', '/v3/keys/query', {
      body: { device_keys: { [userId]: [deviceId] } },
      retries: 2,
    });
    const published = query.device_keys?.[userId]?.[deviceId]?.keys?.[`ed25519:${deviceId}`];
    if (published === ed25519) return;
    const keys = {
      user_id: userId,
      device_id: deviceId,
      algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
      keys: { [`curve25519:${deviceId}`]: curve25519, [`ed25519:${deviceId}`]: ed25519 },
    };
    const signatures = JSON.parse((await machine.sign(canonicalJson(keys))).asJSON()) as Record<string, Record<string, string>>;
    const own = signatures[userId]?.[`ed25519:${deviceId}`];
    if (!own) throw new Error('the crypto engine did not sign the device keys');
    await client.request('POST', '/v3/keys/upload', { body: { device_keys: { ...keys, signatures: { [userId]: { [`ed25519:${deviceId}`]: own } } } }, retries: 2 });
    // Zero timeout: this runs inside the crypto queue, so a pending key query would never be answered while it waited.
    const device = await machine.getDevice(new UserId(userId), machine.deviceId, 0);
    if (device) {
      // Re-sign the device with the bot's self-signing key, so clients see it as verified by its owner again.
      await this.#outgoing.send(await device.verify());
      device.free();
    }
    this.#logger.warn({ device_id: deviceId }, published ? 'the homeserver held other keys for this device; published ours again' : "the homeserver had lost this device's keys (the device was deleted and recreated); published them again");
  }

  /** A device that joined an existing identity (a store imported from the old bot) is signed by it once. */
  async #signOwnDevice(): Promise<void> {
    const machine = this.#machine;
    const userId = this.#userId;
    const logger = this.#logger;
    // Zero timeout: inside the crypto queue; the drain before this has answered the own key query.
    const device = await machine.getDevice(new UserId(userId), machine.deviceId, 0);
    if (!device) return;
    try {
      if (device.isCrossSignedByOwner()) return;
      await this.#outgoing.send(await device.verify());
      logger.info("signed the bot device with the bot's existing cross-signing identity");
    } finally {
      device.free();
    }
  }
}
