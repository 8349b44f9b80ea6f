import type { Logger } from '../log.ts';
import { MatrixError, p, type MatrixClient } from '../matrix/client.ts';
import { EXIT, StartupError } from '../startup-error.ts';
import { untilReachable } from '../matrix/reachable.ts';
import type { Registration } from './registration.ts';

/**
 * Finds out who the bot is on this homeserver (whoami with the as_token answers with the
 * registration's sender) and makes sure that user exists. Waits for an unreachable homeserver;
 * a homeserver that rejects the token is a configuration error and ends start-up.
 */
export async function connectBotUser(client: MatrixClient, registration: Registration, expectedDomain: string | undefined, logger: Logger, signal?: AbortSignal): Promise<string> {
  const whoami = await untilReachable(() => client.whoami(), logger, signal).catch((error: unknown) => {
    if (error instanceof MatrixError && (error.errcode === 'M_UNKNOWN_TOKEN' || error.status === 401)) {
      throw new StartupError(`the homeserver does not accept the registration's as_token (${error.errcode}): list ${registration.id}'s registration file under app_service_config_files in homeserver.yaml and restart Synapse`, EXIT.homeserver);
    }
    throw error;
  });
  const userId = whoami.user_id;
  const domain = userId.slice(userId.indexOf(':') + 1);
  if (expectedDomain && expectedDomain !== domain) {
    throw new StartupError(`homeserver.domain is "${expectedDomain}" but the homeserver says the bot is ${userId}`, EXIT.config);
  }
  try {
    await client.request('POST', '/v3/register', {
      body: { type: 'm.login.application_service', username: registration.senderLocalpart, inhibit_login: true },
      asSelfOnly: true,
    });
    logger.info({ user_id: userId }, 'registered the bot user');
  } catch (error) {
    // The sender user usually exists already (Synapse creates it); anything but "in use" is reported.
    if (!(error instanceof MatrixError && error.errcode === 'M_USER_IN_USE')) {
      logger.warn({ user_id: userId, errcode: error instanceof MatrixError ? error.errcode : undefined }, `could not register the bot user: ${(error as Error).message}`);
    }
  }
  return userId;
}

export async function ensureDisplayName(client: MatrixClient, userId: string, displayName: string, logger: Logger): Promise<void> {
  if (!displayName) return;
  try {
    const profile = await client.request<{ displayname?: string }>('GET', p`/v3/profile/${userId}/displayname`).catch(() => ({ displayname: undefined }));
    if (profile.displayname !== displayName) {
      await client.request('PUT', p`/v3/profile/${userId}/displayname`, { body: { displayname: displayName }, retries: 1 });
    }
  } catch (error) {
    logger.warn(`could not set the display name: ${(error as Error).message}`);
  }
}
