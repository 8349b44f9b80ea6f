import { join } from 'node:path';
import { ensureDisplayName } from './appservice/bot-user.ts';
import { Bot, type RoomActions } from './bot/bot.ts';
import type { Clock } from './bot/clock.ts';
import { TimeText } from './bot/time-text.ts';
import type { Config } from './config/config.ts';
import { createConnection, type Connection } from './connection.ts';
import { openDeviceCrypto } from './crypto/device-store.ts';
import { OlmCrypto } from './crypto/olm-crypto.ts';
import { errorMessage } from './failure.ts';
import { Health, PROBE_TIMEOUT_MS } from './health.ts';
import { startHttpServer, type HttpServer } from './http-server.ts';
import { confirmWrites } from './kube/confirmed-kube.ts';
import { instrumentKube } from './kube/instrumented-kube.ts';
import { kubeconfigError } from './kube/kubeconfig-error.ts';
import { targetLabel, type DeploymentTarget, type Kube } from './kube/kube.ts';
import { createKube, type LeanKube } from './kube/lean-kube.ts';
import type { Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import { Pipeline } from './pipeline.ts';
import { EXIT, StartupError } from './startup-error.ts';
import { openStorage } from './store/storage.ts';
import { asStorageFailure, onVolume } from './store/storage-error.ts';

export interface Deps {
  readonly logger: Logger;
  /** The Kubernetes adapter; by default the real one built from `config.kubernetes`. */
  readonly kube?: Kube;
  /** Prometheus process metrics (off in tests that start several bots in one process). */
  readonly defaultMetrics?: boolean;
  /** Called if the bot gives up while running (password mode: homeserver unreachable too long). */
  readonly onFatal?: (error: Error) => void;
  /** Aborts start-up (a SIGTERM while waiting for the homeserver). */
  readonly signal?: AbortSignal;
  /** The clock of timed runs (tests move it by hand: src/dev/fake-clock.ts). */
  readonly clock?: Clock;
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

/** A write whose answer was lost is read back for up to one request's time limit, and at least this long. */
const READ_BACK_MIN_MS = 3_000;

/** Handled-event ids are kept this long; homeservers do not redeliver anything older. */
const HANDLED_EVENT_RETENTION_MS = 30 * 24 * 3600 * 1000;

/** The Kubernetes client, watching each target's Deployment so that status and readiness cost no request. */
function loadKube(config: Config, targets: readonly DeploymentTarget[], logger: Logger): LeanKube {
  try {
    return createKube({ kubeconfigPath: config.kubernetes.kubeconfig, requestTimeoutMs: config.kubernetes.timeoutSeconds * 1000, logger, watch: targets });
  } catch (error) {
    throw kubeconfigError(error, config.kubernetes.kubeconfig);
  }
}

/**
 * Starts the bot: one pipeline (crypto → policy and commands → Kubernetes), fed by the mode's
 * source (appservice transactions or /sync). `main` calls this; tests call it in-process.
 */
export async function start(config: Config, deps: Deps): Promise<App> {
  const logger = deps.logger;
  // Labelled with their names in chat, for the log and the metrics; the API sees namespace and name only.
  const targets: DeploymentTarget[] = config.targets.map((t) => ({ namespace: t.namespace, name: t.deployment, label: t.name }));
  const metrics = new Metrics({ defaultMetrics: deps.defaultMetrics ?? true });
  const health = new Health(['homeserver', 'kubernetes'], {
    onChange: (component, s) => (s.ok ? logger.info({ component }, `${component}: ready (${s.detail})`) : logger.warn({ component }, `${component}: not ready: ${s.detail}`)),
  });
  // First of all: a second instance on the same volume must stop here, before it touches anything.
  const storage = openStorage(config.storage.path);
  const { state } = storage;
  const timers: NodeJS.Timeout[] = [];
  const abort = new AbortController();
  deps.signal?.addEventListener('abort', () => abort.abort(), { once: true });
  let connection: Connection;
  try {
    connection = createConnection({
      config,
      state,
      health,
      logger,
      onFatal: deps.onFatal ?? ((error) => logger.fatal(`giving up: ${error.message}`)),
    });
  } catch (error) {
    storage.close();
    throw error;
  }
  let http: HttpServer | undefined;
  let olm: OlmCrypto | undefined;
  let ownKube: LeanKube | undefined;
  try {
    // Listening first: in appservice mode Synapse may push as soon as the bot registers its user or
    // device, and the listener holds those transactions until the pipeline is ready.
    try {
      http = await startHttpServer({ bind: config.http.bind, port: config.http.port, health, metrics, appservice: connection.router, logger });
    } catch (error) {
      throw new StartupError(`http.port: cannot listen on ${config.http.bind}:${config.http.port}: ${(error as Error).message}`, EXIT.listen, { cause: error });
    }
    // Outermost: a write whose answer was lost is read back (each read timed and counted like any call).
    // A client given in `deps` belongs to the caller; the one made here is closed by stop().
    const base = deps.kube ?? (ownKube = loadKube(config, targets, logger));
    const kube = confirmWrites(instrumentKube(base, metrics, health), {
      logger, budgetMs: Math.max(READ_BACK_MIN_MS, config.kubernetes.timeoutSeconds * 1000),
    });
    // The watch's state for /metrics, from the bot's own client or one given in deps that has a watch.
    const watched = 'watches' in base ? (base as LeanKube) : undefined;
    metrics.watchSource(() => (watched?.watches() ?? []).map((w) => ({ target: targetLabel(w.target), live: w.live, stats: w.stats })));
    const { client } = connection;
    const userId = await connection.connect(abort.signal);
    health.set('homeserver', true, 'the homeserver answered');
    await ensureDisplayName(client, userId, config.bot.displayName, logger);

    const device = await onVolume(`cannot use the crypto store in ${join(config.storage.path, 'crypto')}`, () => openDeviceCrypto({
      userId,
      dir: config.storage.path,
      passphrase: config.storage.passphrase,
      devices: connection.devices(),
      freshDeviceId: connection.unusedDeviceId,
      logger,
    }));
    connection.useDevice(userId, device.deviceId);
    // Password mode can answer the homeserver's password prompt for replacing the account's cross-signing keys (a lost volume).
    const password = config.mode === 'password' && config.bot.authMethod === 'password' ? config.bot.password : undefined;
    const uiaAuth = password === undefined ? undefined
      : (session: string | undefined) => ({ type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password, ...(session ? { session } : {}) });
    const crypto = new OlmCrypto({
      machine: device.machine, store: device.store, client, userId, allowedUsers: config.bot.allowedUsers, trust: config.bot.trust, state, logger, keyWaitMs: KEY_WAIT_MS,
      ...(uiaAuth ? { uiaAuth } : {}),
    });
    olm = crypto;
    await onVolume(`cannot write the crypto store in ${join(config.storage.path, 'crypto')}`, () => crypto.setUp());
    const ed25519 = device.machine.identityKeys.ed25519.toBase64();
    logger.info({ device_id: device.deviceId, ed25519 }, 'end-to-end encryption ready');

    const rooms: RoomActions = {
      join: async (roomId) => void (await client.joinRoom(roomId)),
      leave: (roomId, reason) => client.leaveRoom(roomId, reason),
      send: async (roomId, content, txnId, type = 'm.room.message') => {
        // The reaction buttons go in plaintext, as Element Web sends every reaction: an emoji under the
        // bot's own message says nothing the homeserver does not see anyway, and encrypting three of
        // them per reply took the bot's CPU per command from ~16 to ~25 ms (`npm run bench`).
        const out = type === 'm.reaction' ? { type, content } : await crypto.prepareSend(roomId, type, content);
        return client.sendEvent(roomId, out.type, out.content, txnId);
      },
    };
    const bot = new Bot({
      userId,
      allowedUsers: config.bot.allowedUsers,
      targets: config.targets,
      echo: config.bot.echo,
      commandPrefix: config.bot.commandPrefix,
      maxCommandAgeSeconds: config.bot.maxCommandAgeSeconds,
      reactionButtons: config.bot.reactionButtons,
      runs: {
        limits: { defaultMs: config.bot.defaultRunMs, maxMs: config.bot.maxRunMs },
        time: new TimeText(config.bot.timeZone),
        ...(deps.clock ? { clock: deps.clock } : {}),
      },
      progress: { enabled: config.bot.progress, deadlineMs: config.bot.progressDeadlineMs },
      kube,
      rooms,
      devices: crypto,
      state,
      metrics,
      logger,
    });
    const source = config.mode === 'appservice' ? 'appservice' : 'sync';
    const pipeline = new Pipeline({ crypto, bot, state, metrics, logger });

    // Readiness is asked for by /ready (see Health); the instrumented adapter records the answer.
    // Any answer from the API makes it ready, a 403 for one target included: that target's status says
    // so, and the others work on.
    health.probe('kubernetes', () => Promise.all(targets.map((t) => kube.ping(t).catch(() => undefined))).then(() => undefined));
    health.probe('homeserver', (signal) =>
      client
        .request('GET', '/_matrix/client/versions', { asSelfOnly: true, timeoutMs: PROBE_TIMEOUT_MS, signal })
        .then(() => health.set('homeserver', true, 'the homeserver answered'))
        .catch((error: unknown) => void (signal.aborted || health.set('homeserver', false, (error as Error).message))),
    );
    await health.check();
    const prune = (): void => void state.prune(HANDLED_EVENT_RETENTION_MS);
    prune();
    timers.push(setInterval(prune, 24 * 3600 * 1000).unref());
    // For each target: may the bot read its Deployment, record its scales as Events, watch its pods?
    // One warning now for each it may not, rather than one per command.
    void bot.check().catch((error: unknown) => logger.warn({ err: errorMessage(error) }, 'the start-up checks of the targets failed'));
    // Timed runs: a stop that fell due while the bot was down goes first in the queue, before any
    // batch (so before any command); later ones wake one timer. Its failures are retried inside.
    void bot.startTimers((work) => pipeline.exclusive(work));

    await connection.begin((batch) => pipeline.process(batch, source), userId, device.deviceId, {
      afterRelogin: () => pipeline.exclusive(() => crypto.ensurePublished()),
    });
    // Messages that were waiting for their keys when the bot stopped are retried from now on.
    pipeline.wakeWhilePending();
    logger.info({ user_id: userId, device_id: device.deviceId, mode: config.mode, port: http.port, targets: targets.map((t) => `${t.label}=${t.namespace}/${t.name}`) }, 'ready');

    const server = http;
    return {
      userId,
      deviceId: device.deviceId,
      ed25519,
      port: server.port,
      metrics,
      health,
      stop: async () => {
        health.markStopping();
        bot.stopTimers();
        abort.abort();
        for (const t of timers) clearTimeout(t);
        await connection.stop();
        await server.close(pipeline.drain());
        await bot.settled();
        await crypto.close();
        await ownKube?.close();
        connection.client.close();
        storage.close();
      },
    };
  } catch (error) {
    abort.abort();
    for (const t of timers) clearTimeout(t);
    await connection.stop().catch(() => undefined);
    await http?.close();
    await olm?.close().catch(() => undefined);
    await ownKube?.close();
    connection.client.close();
    storage.close();
    // Any other step that wrote to the volume (a login saved, a sync position): still one line, exit 4.
    throw asStorageFailure(error, 'writing to the volume failed during start-up');
  }
}
