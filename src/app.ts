import { AppserviceSource } from './appservice/appservice-source.ts';
import { connectBotUser, ensureDisplayName } from './appservice/bot-user.ts';
import { Bot, type RoomActions } from './bot/bot.ts';
import type { Config } from './config/config.ts';
import type { CryptoStep } from './crypto/crypto-step.ts';
import { openDeviceCrypto } from './crypto/device-store.ts';
import { OlmCrypto } from './crypto/olm-crypto.ts';
import { appserviceDevices } from './appservice/devices.ts';
import { Health } from './health.ts';
import { startHttpServer, type HttpServer } from './http-server.ts';
import { createKube } from './kube/client-node-kube.ts';
import { instrumentKube } from './kube/instrumented-kube.ts';
import type { DeploymentTarget, Kube } from './kube/kube.ts';
import type { Logger } from './log.ts';
import { MatrixClient } from './matrix/client.ts';
import { Metrics } from './metrics.ts';
import { Pipeline } from './pipeline.ts';
import { EXIT, StartupError } from './startup-error.ts';
import { StateDb } from './store/state-db.ts';

export interface Deps {
  readonly logger: Logger;
  /** The Kubernetes adapter; by default the real one built from `config.kubernetes`. */
  readonly kube?: Kube;
  /** Prometheus process metrics (off in tests that start several bots in one process). */
  readonly defaultMetrics?: boolean;
  /** Seconds between background readiness checks. */
  readonly checkIntervalSeconds?: number;
}

export interface App {
  readonly userId: string;
  readonly deviceId: string;
  /** The device's ed25519 identity key (what clients show as its fingerprint). */
  readonly ed25519: string;
  readonly port: number;
  readonly metrics: Metrics;
  readonly health: Health;
  /** Stops taking new work, finishes the batch in flight, makes state durable, closes. */
  stop(): Promise<void>;
}

/** An encrypted message waits this long for its room key before the sender hears it failed. */
const KEY_WAIT_MS = 15_000;

/** Handled-event ids are kept this long; homeservers do not redeliver anything older. */
const HANDLED_EVENT_RETENTION_MS = 30 * 24 * 3600 * 1000;

/** Starts the bot in appservice mode. Password mode arrives with its own source; everything below it is shared. */
export async function start(config: Config, deps: Deps): Promise<App> {
  const logger = deps.logger;
  const registration = config.appservice.registration;
  if (config.mode !== 'appservice' || !registration) {
    throw new StartupError('password mode is not available in this version; use mode: appservice', EXIT.config);
  }
  const target: DeploymentTarget = { namespace: config.kubernetes.namespace, name: config.kubernetes.deployment };
  const metrics = new Metrics({ defaultMetrics: deps.defaultMetrics ?? true });
  const health = new Health(['homeserver', 'kubernetes']);
  let state: StateDb;
  try {
    state = StateDb.open(config.storage.path);
  } catch (error) {
    throw new StartupError(`storage.path: cannot open the state store in ${config.storage.path}: ${(error as Error).message}`, EXIT.store, { cause: error });
  }
  const timers: NodeJS.Timeout[] = [];
  let crypto: CryptoStep | undefined;
  let http: HttpServer | undefined;
  const abort = new AbortController();
  try {
    const kube = instrumentKube(
      deps.kube ?? createKube({ kubeconfigPath: config.kubernetes.kubeconfig, requestTimeoutMs: config.kubernetes.timeoutSeconds * 1000, logger }),
      metrics,
      health,
    );
    const client = new MatrixClient({ baseUrl: config.homeserver.url, accessToken: registration.asToken, logger });
    // Listening first: Synapse may push as soon as the bot registers its user or device.
    const source = new AppserviceSource({
      registration,
      allowQueryToken: config.appservice.allowQueryToken,
      client,
      isStopping: () => health.stopping,
      logger,
    });
    try {
      http = await startHttpServer({ bind: config.http.bind, port: config.http.port, health, metrics, appservice: source.router(), logger });
    } catch (error) {
      throw new StartupError(`http.port: cannot listen on ${config.http.bind}:${config.http.port}: ${(error as Error).message}`, EXIT.listen, { cause: error });
    }
    const userId = await connectBotUser(client, registration, config.homeserver.domain, logger, abort.signal);
    client.setIdentity({ user_id: userId });
    health.set('homeserver', true, 'whoami answered');
    await ensureDisplayName(client, userId, config.bot.displayName, logger);

    const devices = appserviceDevices(client, userId, registration.senderLocalpart, config.bot.displayName, logger);
    const device = await openDeviceCrypto({ userId, dir: config.storage.path, passphrase: config.storage.passphrase, devices, logger });
    client.setIdentity({ user_id: userId, device_id: device.deviceId });
    const olm = new OlmCrypto({ machine: device.machine, store: device.store, client, userId, allowedUsers: config.bot.allowedUsers, trust: config.bot.trust, state, logger, keyWaitMs: KEY_WAIT_MS });
    crypto = olm;
    await olm.setUp();
    logger.info({ device_id: device.deviceId, ed25519: device.machine.identityKeys.ed25519.toBase64() }, 'end-to-end encryption ready');
    const rooms: RoomActions = {
      join: async (roomId) => void (await client.joinRoom(roomId)),
      leave: (roomId, reason) => client.leaveRoom(roomId, reason),
      send: async (roomId, content, txnId) => {
        const out = await olm.prepareSend(roomId, 'm.room.message', content);
        await client.sendEvent(roomId, out.type, out.content, txnId);
      },
    };
    const bot = new Bot({
      userId,
      allowedUsers: config.bot.allowedUsers,
      target,
      echo: config.bot.echo,
      commandPrefix: config.bot.commandPrefix,
      maxCommandAgeSeconds: config.bot.maxCommandAgeSeconds,
      kube,
      rooms,
      state,
      metrics,
      logger,
    });
    const pipeline = new Pipeline({ crypto: olm, bot, metrics, logger });
    source.attach({ device: { userId, deviceId: device.deviceId }, process: (batch) => pipeline.process(batch, 'appservice') });

    const check = async (): Promise<void> => {
      await kube.ping(target).catch((error: unknown) => logger.warn(`kubernetes check: ${(error as Error).message}`));
      await client
        .request('GET', '/_matrix/client/versions', { asSelfOnly: true, timeoutMs: 10_000 })
        .then(() => health.set('homeserver', true, 'the homeserver answered'))
        .catch((error: unknown) => health.set('homeserver', false, (error as Error).message));
    };
    await check();
    const prune = (): void => void state.prune(HANDLED_EVENT_RETENTION_MS);
    prune();
    timers.push(setInterval(() => void check(), (deps.checkIntervalSeconds ?? 30) * 1000).unref());
    timers.push(setInterval(prune, 24 * 3600 * 1000).unref());
    // Messages waiting for room keys are retried even when no transaction comes.
    timers.push(setInterval(() => void pipeline.tick(), 1000).unref());

    const problem = await source.ping();
    if (problem) logger.warn(`homeserver → bot: ${problem}`);
    else logger.info({ user_id: userId, port: http.port, deployment: `${target.namespace}/${target.name}` }, 'ready: the homeserver reaches the bot');
    // Pushes that failed while the bot was down leave Synapse retrying on a backoff, and it drops
    // to-device messages until it recovers; each ping makes it retry at once.
    for (const delay of [1000, 3000]) timers.push(setTimeout(() => void source.ping(), delay).unref());

    const server = http;
    return {
      userId,
      deviceId: device.deviceId,
      ed25519: device.machine.identityKeys.ed25519.toBase64(),
      port: server.port,
      metrics,
      health,
      stop: async () => {
        health.markStopping();
        abort.abort();
        for (const t of timers) clearTimeout(t);
        await server.close(pipeline.drain());
        await olm.close();
        state.close();
      },
    };
  } catch (error) {
    abort.abort();
    for (const t of timers) clearTimeout(t);
    await http?.close();
    await crypto?.close().catch(() => undefined);
    state.close();
    throw error;
  }
}
