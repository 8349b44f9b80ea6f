import type { DeviceApi } from '../crypto/device-store.ts';
import type { Logger } from '../log.ts';
import { MatrixError, p, type MatrixClient } from '../matrix/client.ts';
import { EXIT, StartupError } from '../startup-error.ts';

/**
 * The bot's devices in appservice mode. MSC4190: the appservice creates and deletes its users'
 * devices directly (`PUT/DELETE /devices/{id}?user_id=`), with no login and no interactive auth.
 * Where a homeserver does not offer that, `m.login.application_service` login creates the device.
 */
export function appserviceDevices(client: MatrixClient, userId: string, localpart: string, displayName: string, logger: Logger): DeviceApi {
  let viaLogin = false;
  const unsupported = (error: unknown): boolean =>
    error instanceof MatrixError && (error.errcode === 'M_UNRECOGNIZED' || error.status === 404 || error.status === 405);

  return {
    async ensure(deviceId) {
      if (!viaLogin) {
        try {
          const { status } = await client.requestWithStatus('PUT', p`/v3/devices/${deviceId}`, {
            query: { user_id: userId },
            body: { display_name: displayName || 'openclaw toggle bot' },
            asSelfOnly: true,
            retries: 2,
          });
          return status === 201 ? 'created' : 'existed';
        } catch (error) {
          if (!unsupported(error)) throw error;
          viaLogin = true;
          logger.warn('the homeserver does not let appservices create devices (MSC4190); falling back to appservice login');
        }
      }
      try {
        await client.request('POST', '/v3/login', {
          body: { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: localpart }, device_id: deviceId, initial_device_display_name: displayName },
          asSelfOnly: true,
        });
        return 'existed';
      } catch (error) {
        throw new StartupError(`cannot create the bot's device: the homeserver refused both MSC4190 device creation and appservice login (${(error as Error).message}); set io.element.msc4190: true in the registration, or use a homeserver that supports it`, EXIT.homeserver, { cause: error });
      }
    },
    async list() {
      const result = await client.request<{ devices: Array<{ device_id: string }> }>('GET', '/v3/devices', { query: { user_id: userId }, asSelfOnly: true, retries: 2 });
      return result.devices.map((d) => d.device_id);
    },
    async remove(deviceId) {
      try {
        await client.request('DELETE', p`/v3/devices/${deviceId}`, { query: { user_id: userId }, body: {}, asSelfOnly: true });
      } catch (error) {
        if (error instanceof MatrixError && error.status === 404) return;
        throw error;
      }
    },
  };
}
