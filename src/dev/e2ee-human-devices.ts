/**
 * The E2EE human's device operations: its own device's keys on the server and its cross-signing
 * (both at start-up), how it sees another device, and an event from a device nobody can decrypt.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError, Method, type MatrixClient } from 'matrix-js-sdk';
import { DeviceId, EncryptionSettings, OlmMachine, RoomId, UserId } from '@matrix-org/matrix-sdk-crypto-wasm';
import type { CryptoApi } from 'matrix-js-sdk/lib/crypto-api/index.js';
import type { DeviceTrust } from './e2ee-human-types.ts';
import { until } from './e2ee-human-timeline.ts';

/** The device's keys as the server publishes them; undefined when it has none. */
export async function publishedDeviceKeys(client: MatrixClient, userId: string, deviceId: string): Promise<unknown> {
  const q = await client.http.authedRequest<{ device_keys?: Record<string, Record<string, unknown>> }>(
    Method.Post, '/keys/query', undefined, { device_keys: { [userId]: [deviceId] } },
  );
  return q.device_keys?.[userId]?.[deviceId];
}

/** Device keys and one-time keys on the server: others can now start Olm sessions with us. */
export async function waitForOwnKeysPublished(client: MatrixClient, userId: string, deviceId: string): Promise<void> {
  await until('this device\'s keys to be uploaded', 20_000, async () => {
    if ((await publishedDeviceKeys(client, userId, deviceId)) === undefined) return undefined;
    const counts = await client.http.authedRequest<{ one_time_key_counts?: Record<string, number> }>(Method.Post, '/keys/upload', undefined, {});
    return (counts.one_time_key_counts?.['signed_curve25519'] ?? 0) > 0 ? true : undefined;
  }, 100);
}

/** Signs the device with the user's cross-signing identity, creating (or with `replaceIdentity` replacing) it. */
export async function crossSign(
  crypto: CryptoApi, who: { userId: string; deviceId: string; password: string }, replaceIdentity: boolean,
): Promise<void> {
  const local = await crypto.getCrossSigningStatus();
  const haveKeys = local.privateKeysCachedLocally.masterKey && local.privateKeysCachedLocally.selfSigningKey;
  const onServer = await crypto.userHasCrossSigningKeys(who.userId, true);
  if (onServer && !haveKeys && !replaceIdentity) {
    throw new Error(
      `${who.userId} already has a cross-signing identity whose keys this device (${who.deviceId}) lacks; ` +
      'pass crossSign: false for an unsigned device, or replaceIdentity: true to reset the identity',
    );
  }
  await crypto.bootstrapCrossSigning({
    setupNewCrossSigning: onServer && !haveKeys,
    authUploadDeviceSigningKeys: async (makeRequest) => {
      try {
        // Synapse lets a user's *first* cross-signing upload through without interactive auth.
        return await makeRequest(null);
      } catch (err) {
        if (!(err instanceof MatrixError) || err.httpStatus !== 401) throw err;
        const session = typeof err.data['session'] === 'string' ? err.data['session'] : undefined;
        return await makeRequest({
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user: who.userId },
          password: who.password,
          ...(session === undefined ? {} : { session }),
        });
      }
    },
  });
  // The signature is uploaded; our own view of the device follows after a key query.
  await until(`${who.deviceId} to be signed by ${who.userId}'s identity`, 15_000, async () => {
    await crypto.getUserDeviceInfo([who.userId], true);
    const status = await crypto.getDeviceVerificationStatus(who.userId, who.deviceId);
    return status?.signedByOwner ? true : undefined;
  }, 100);
}

export async function deviceTrustOf(crypto: CryptoApi, userId: string, deviceId: string): Promise<DeviceTrust> {
  const devices = (await crypto.getUserDeviceInfo([userId], true)).get(userId);
  const device = devices?.get(deviceId);
  const status = device ? await crypto.getDeviceVerificationStatus(userId, deviceId) : null;
  return {
    known: device !== undefined,
    signedByOwner: status?.signedByOwner ?? false,
    crossSigningVerified: status?.crossSigningVerified ?? false,
    ed25519: device?.getFingerprint(),
  };
}

export async function sendUndecryptableEvent(client: MatrixClient, userId: string, roomId: string): Promise<string> {
  // A real Megolm message from a throwaway in-memory device whose room key was shared with nobody:
  // what a recipient sees when the key never reached it (e.g. sent while it was down).
  const ghost = await OlmMachine.initialize(new UserId(userId), new DeviceId(`GHOST${randomBytes(4).toString('hex').toUpperCase()}`));
  try {
    await ghost.shareRoomKey(new RoomId(roomId), [], new EncryptionSettings());
    const content = JSON.parse(await ghost.encryptRoomEvent(new RoomId(roomId), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body: 'start' }))) as Record<string, unknown>;
    const txnId = `utd-${Date.now()}-${randomBytes(4).toString('hex')}`;
    // Straight to the API: the SDK's send path would try to encrypt (or refuse) it.
    const path = `/rooms/${encodeURIComponent(roomId)}/send/m.room.encrypted/${encodeURIComponent(txnId)}`;
    const result = await client.http.authedRequest<{ event_id: string }>(Method.Put, path, undefined, content);
    return result.event_id;
  } finally {
    ghost.close();
  }
}
