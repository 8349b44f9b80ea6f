import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceApi } from '../crypto/device-store.ts';
import { newDeviceId } from '../crypto/device-store.ts';
import type { Logger } from '../log.ts';
import { MatrixError, p, type MatrixClient } from '../matrix/client.ts';
import { EXIT, StartupError } from '../startup-error.ts';
import type { StateDb } from '../store/state-db.ts';
import { retryable, type LoginMethod } from './login-method.ts';

/** A login kept on the volume (in the 0600 state database) so restarts reuse the token and the device. */
interface StoredSession {
  readonly homeserver: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly accessToken: string;
}

const SESSION_KEY = 'password-session';

export interface PasswordSessionOptions {
  readonly client: MatrixClient;
  readonly homeserver: string;
  /** Localpart, or the full user id when configured so. */
  readonly user: string;
  /** The password, or a Keycloak token (bot.authMethod). */
  readonly method: LoginMethod;
  readonly displayName: string;
  readonly state: StateDb;
  /** Where the crypto store records its device (`<storage>/crypto/device.json`). */
  readonly storePath: string;
  readonly logger: Logger;
}

/**
 * The bot as an ordinary logged-in user, with a password or a Keycloak token (login-method.ts).
 * It logs in only when it has no valid token, and always asks for a device id it chooses (the
 * stored one when there is one), so that a new login keeps the same device and its keys rather
 * than leaving dead devices behind.
 */
export class PasswordSession {
  readonly #o: PasswordSessionOptions;
  #session: StoredSession | undefined;
  #brandNew = false;

  constructor(options: PasswordSessionOptions) {
    this.#o = options;
  }

  get userId(): string {
    if (!this.#session) throw new Error('not logged in');
    return this.#session.userId;
  }

  get deviceId(): string {
    if (!this.#session) throw new Error('not logged in');
    return this.#session.deviceId;
  }

  /** Restores the stored login if the homeserver still accepts it, else logs in (same device when known). */
  async connect(): Promise<void> {
    const stored = this.#load();
    if (stored) {
      this.#o.client.setAccessToken(stored.accessToken);
      try {
        const whoami = await this.#o.client.whoami();
        if (whoami.user_id === stored.userId && (whoami.device_id === undefined || whoami.device_id === stored.deviceId)) {
          this.#session = stored;
          this.#o.logger.info({ user_id: stored.userId, device_id: stored.deviceId }, 'reusing the stored login');
          return;
        }
      } catch (error) {
        if (!(error instanceof MatrixError && error.errcode === 'M_UNKNOWN_TOKEN')) throw error;
        this.#o.logger.warn({ device_id: stored.deviceId }, 'the stored access token was rejected; logging in again with the same device');
      }
    }
    const known = stored?.deviceId ?? this.#storeDeviceId();
    await this.login(known ?? newDeviceId());
    this.#brandNew = known === undefined;
  }

  /** The device of a first login that has no keys anywhere yet: the crypto store may adopt it. */
  get unusedDeviceId(): string | undefined {
    return this.#brandNew ? this.#session?.deviceId : undefined;
  }

  /** Logs in with a given device id (the homeserver creates it, or reuses it with its keys). */
  async login(deviceId: string): Promise<void> {
    const { client, logger, method } = this.#o;
    let result: { user_id: string; access_token: string; device_id: string };
    try {
      await method.check(() => this.#offered());
      const credentials = await method.credentials();
      result = await client.request('POST', '/v3/login', {
        body: { ...credentials, device_id: deviceId, initial_device_display_name: this.#o.displayName || 'openclaw toggle bot' },
        asSelfOnly: true,
        retries: 2,
      });
    } catch (error) {
      throw await this.#loginFailure(error);
    }
    this.#session = { homeserver: this.#o.homeserver, userId: result.user_id, deviceId: result.device_id, accessToken: result.access_token };
    client.setAccessToken(result.access_token);
    this.#o.state.set(SESSION_KEY, JSON.stringify(this.#session));
    logger.info({ user_id: result.user_id, device_id: result.device_id }, `logged in with ${method.label}`);
  }

  /** One clear line for each way a login is refused; secrets never appear. */
  async #loginFailure(error: unknown): Promise<Error> {
    if (!(error instanceof MatrixError) || retryable(error)) return error as Error; // transient: the caller retries
    if (error.errcode === 'M_USER_DEACTIVATED') return new StartupError(`login refused: the account ${this.#o.user} is deactivated`, EXIT.homeserver);
    return this.#o.method.refusal(error, () => this.#offered());
  }

  /** The login types the homeserver offers (empty when it does not say: the login itself will tell). */
  #offered(): Promise<string[]> {
    return this.#o.client
      .request<{ flows?: Array<{ type?: string }> }>('GET', '/v3/login', { asSelfOnly: true, retries: 2 })
      .then((r) => (r.flows ?? []).map((f) => f.type ?? '?'), () => []);
  }

  /** Handles a rejected token while running: a new login on the same device. */
  async relogin(): Promise<void> {
    this.#o.logger.warn({ device_id: this.deviceId }, 'the access token was rejected; logging in again with the same device');
    await this.login(this.deviceId);
  }

  #load(): StoredSession | undefined {
    const raw = this.#o.state.get(SESSION_KEY);
    if (!raw) return undefined;
    try {
      const session = JSON.parse(raw) as StoredSession;
      // A different homeserver or user in the config makes the stored login irrelevant.
      if (session.homeserver !== this.#o.homeserver) return undefined;
      if (this.#o.user.startsWith('@') ? session.userId !== this.#o.user : !session.userId.startsWith(`@${this.#o.user}:`)) return undefined;
      return session;
    } catch {
      return undefined;
    }
  }

  /** The device the crypto store belongs to, if it survived while the stored login did not. */
  #storeDeviceId(): string | undefined {
    try {
      const device = JSON.parse(readFileSync(join(this.#o.storePath, 'crypto', 'device.json'), 'utf8')) as { deviceId?: unknown };
      return typeof device.deviceId === 'string' ? device.deviceId : undefined;
    } catch {
      return undefined;
    }
  }

  /** Device management for the crypto store, as this user: devices are made by logging in. */
  devices(): DeviceApi {
    return {
      ensure: async (deviceId) => {
        if (this.#session?.deviceId === deviceId) return 'existed';
        await this.login(deviceId);
        return 'created';
      },
      list: async () => {
        const result = await this.#o.client.request<{ devices: Array<{ device_id: string }> }>('GET', '/v3/devices', { retries: 2 });
        return result.devices.map((d) => d.device_id);
      },
      remove: async (deviceId) => {
        // Deleting a device needs the credentials again (user-interactive auth).
        const path = p`/v3/devices/${deviceId}`;
        try {
          await this.#o.client.request('DELETE', path, { body: {} });
        } catch (error) {
          if (error instanceof MatrixError && error.status === 404) return;
          const session = error instanceof MatrixError && error.status === 401 ? error.body?.['session'] : undefined;
          if (typeof session !== 'string') throw error;
          const flows = uiaStages((error as MatrixError).body);
          const auth = await this.#o.method.interactiveAuth(session, flows);
          if (!auth) throw new Error(`the homeserver asks for ${[...flows].sort().join(' or ') || 'an interactive login'} to delete a device, which ${this.#o.method.label} cannot give; delete device ${deviceId} by hand`);
          await this.#o.client.request('DELETE', path, { body: { auth } });
        }
      },
    };
  }
}

/** The single-stage flows of a user-interactive auth answer (`{flows: [{stages: [...]}]}`). */
function uiaStages(body: Record<string, unknown> | undefined): string[] {
  const flows = Array.isArray(body?.['flows']) ? (body['flows'] as Array<{ stages?: unknown }>) : [];
  return flows.flatMap((f) => (Array.isArray(f.stages) && f.stages.length === 1 && typeof f.stages[0] === 'string' ? [f.stages[0]] : []));
}
