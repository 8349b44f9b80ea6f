import type { Router } from 'express';
import { AppserviceSource } from './appservice/appservice-source.ts';
import { connectBotUser } from './appservice/bot-user.ts';
import { appserviceDevices } from './appservice/devices.ts';
import type { Config } from './config/config.ts';
import type { DeviceApi } from './crypto/device-store.ts';
import type { Health } from './health.ts';
import type { Logger } from './log.ts';
import type { SyncBatch } from './matrix/batch.ts';
import { MatrixClient } from './matrix/client.ts';
import { untilReachable } from './matrix/reachable.ts';
import type { StateDb } from './store/state-db.ts';
import { jwtLogin } from './sync/jwt-login.ts';
import { passwordLogin } from './sync/login-method.ts';
import { PasswordSession } from './sync/password-session.ts';
import { SyncSource } from './sync/sync-source.ts';

/**
 * Everything that differs between the two modes, behind one shape: who the bot is, how its
 * devices are made, and where batches come from. Nothing after this knows the mode.
 */
export interface Connection {
  readonly client: MatrixClient;
  /** Homeserver-facing routes for the HTTP listener (appservice mode only). */
  readonly router: Router | undefined;
  /** Finds out who the bot is (and logs in, in password mode); returns the user id. */
  connect(signal: AbortSignal): Promise<string>;
  devices(): DeviceApi;
  /** A device that exists but was never used, which a fresh crypto store may adopt. */
  readonly unusedDeviceId: string | undefined;
  /** Acts as this device from now on. */
  useDevice(userId: string, deviceId: string): void;
  /** Starts delivering batches; resolves once the homeserver is known to reach the bot. */
  begin(process: (batch: SyncBatch) => Promise<void>, userId: string, deviceId: string, hooks: Hooks): Promise<void>;
  stop(): Promise<void>;
}

export interface Hooks {
  /** After a new login on the same device (password mode, token rejected). */
  readonly afterRelogin: () => Promise<void>;
}

interface ConnectionDeps {
  readonly config: Config;
  readonly state: StateDb;
  readonly health: Health;
  readonly logger: Logger;
  readonly onFatal: (error: Error) => void;
}

export function createConnection(d: ConnectionDeps): Connection {
  return d.config.mode === 'appservice' ? appserviceConnection(d) : passwordConnection(d);
}

function appserviceConnection({ config, health, logger }: ConnectionDeps): Connection {
  const registration = config.appservice.registration;
  if (!registration) throw new Error('appservice mode without a registration');
  const client = new MatrixClient({ baseUrl: config.homeserver.url, accessToken: registration.asToken, logger });
  const source = new AppserviceSource({ registration, allowQueryToken: config.appservice.allowQueryToken, client, isStopping: () => health.stopping, logger });
  const timers: NodeJS.Timeout[] = [];
  let userId = '';
  return {
    client,
    router: source.router(),
    unusedDeviceId: undefined,
    async connect(signal) {
      userId = await connectBotUser(client, registration, config.homeserver.domain, logger, signal);
      client.setIdentity({ user_id: userId });
      return userId;
    },
    devices: () => appserviceDevices(client, userId, registration.senderLocalpart, config.bot.displayName, logger),
    useDevice(user, deviceId) {
      client.setIdentity({ user_id: user, device_id: deviceId });
    },
    async begin(process, user, deviceId) {
      source.attach({ device: { userId: user, deviceId }, process });
      const problem = await source.ping();
      if (problem) logger.warn(`homeserver → bot: ${problem}`);
      // Pushes that failed while the bot was down leave Synapse retrying on a backoff, and it drops
      // to-device messages until it recovers; each ping makes it retry at once.
      for (const delay of [1000, 3000]) timers.push(setTimeout(() => void source.ping(), delay).unref());
    },
    async stop() {
      for (const t of timers) clearTimeout(t);
    },
  };
}

function passwordConnection({ config, state, health, logger, onFatal }: ConnectionDeps): Connection {
  const password = config.bot.password;
  if (!password) throw new Error('password mode without a password');
  const client = new MatrixClient({ baseUrl: config.homeserver.url, accessToken: '', logger });
  const user = config.homeserver.domain ? `@${config.bot.localpart}:${config.homeserver.domain}` : config.bot.localpart;
  const method = config.keycloak ? jwtLogin(config.keycloak, user, config.bot.localpart, password) : passwordLogin(user, password);
  const session = new PasswordSession({ client, homeserver: config.homeserver.url, user, method, displayName: config.bot.displayName, state, storePath: config.storage.path, logger });
  let source: SyncSource | undefined;
  return {
    client,
    router: undefined,
    get unusedDeviceId() {
      return session.unusedDeviceId;
    },
    async connect(signal) {
      await untilReachable(() => session.connect(), logger, signal);
      return session.userId;
    },
    devices: () => session.devices(),
    useDevice() {
      // The access token already names the device.
    },
    async begin(process, _user, _device, hooks) {
      source = new SyncSource({ client, session, state, health, process, maxRetries: config.sync.maxRetries, longPollMs: 30_000, maxCommandAgeSeconds: config.bot.maxCommandAgeSeconds, afterRelogin: hooks.afterRelogin, onFatal, logger });
      await source.start();
    },
    async stop() {
      await source?.stop();
    },
  };
}
