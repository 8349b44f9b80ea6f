/**
 * A whole local installation on loopback: a real Synapse with the bot's registration, the
 * **simulated** Kubernetes API, and the bot started in-process. Used by the integration tests,
 * the demo and the benchmark, so they all exercise the same wiring as production.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { start, type App, type Deps } from '../app.ts';
import { buildRegistration, registrationYaml } from '../appservice/registration.ts';
import { loadConfig, type Config } from '../config/config.ts';
import { createLogger, type Logger } from '../log.ts';
import { Human } from './human.ts';
import { startKubeSimulator, type KubeSimulator } from './kube-simulator.ts';
import { freeLoopbackPort, startSynapse, type HarnessLogger, type Synapse } from './synapse.ts';

export const NAMESPACE = 'agents';
export const DEPLOYMENT = 'openclaw';
export const BOT_LOCALPART = 'openclaw';
/** Tokens of the simulated cluster: the bot's service account, and one that may only read. */
export const SA_TOKEN = 'sim-token-toggle-bot';
export const READ_ONLY_TOKEN = 'sim-token-read-only';

export interface StackOptions {
  readonly dir: string;
  /** Delay of the simulated controller before pods are ready. */
  readonly readyDelayMs?: number;
  readonly harnessLogger?: HarnessLogger;
  /** Extra homeserver.yaml settings. */
  readonly synapseConfig?: Record<string, unknown>;
  /** Further Deployments of the simulated cluster, in NAMESPACE (the bot's token may scale them too): several targets. */
  readonly moreDeployments?: readonly string[];
}

export interface Stack {
  readonly synapse: Synapse;
  readonly sim: KubeSimulator;
  readonly registrationPath: string;
  /** A kubeconfig whose token may read but not scale (RBAC 403 tests). */
  readonly readOnlyKubeconfig: string;
  readonly botPort: number;
  readonly botUserId: string;
  readonly dir: string;
  /** Environment for the bot, as an operator would set it (tests add or override keys). */
  botEnv(overrides?: Record<string, string | undefined>): Record<string, string | undefined>;
  /** `file`: a YAML config file read under the environment (as `-c`), e.g. for `targets:`. */
  startBot(options?: { env?: Record<string, string | undefined>; file?: string; logger?: Logger; deps?: Partial<Deps> }): Promise<{ app: App; config: Config }>;
  /**
   * Waits until Synapse is not retrying failed pushes to the bot. After the bot was down, Synapse
   * retries on a backoff and meanwhile drops to-device messages (room keys) sent to it, so a test
   * that restarts the bot waits for this before sending an encrypted command. Read from Synapse's
   * own log (its appservice scheduler's lines), since Synapse exposes this state nowhere else.
   */
  waitForAppserviceUp(timeoutMs?: number): Promise<void>;
  /**
   * PUTs a transaction to the bot as Synapse would (with the registration's hs_token): for
   * replays and crafted bodies Synapse itself would not send. A string body is sent as it is.
   */
  pushTransaction(txnId: string, body: unknown): Promise<Response>;
  /** Registers a user and returns them as a Human with a running /sync loop. */
  human(localpart: string): Promise<Human>;
  stop(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const dir = options.dir;
  await mkdir(dir, { recursive: true });
  const botPort = await freeLoopbackPort();
  const registrationPath = join(dir, 'registration.yaml');
  const registration = buildRegistration({ id: 'openclaw-toggle', url: `http://127.0.0.1:${botPort}`, senderLocalpart: BOT_LOCALPART, domain: 'localhost' });
  await writeFile(registrationPath, registrationYaml(registration), { mode: 0o600 });

  const sim = await startKubeSimulator({
    dir: join(dir, 'kube'),
    deployments: [DEPLOYMENT, ...(options.moreDeployments ?? [])].map((name) => ({ namespace: NAMESPACE, name, replicas: 0, image: 'ghcr.io/openclaw/openclaw:latest' })),
    tokens: {
      // As the project's Role (config/kubernetes/role.yaml) grants it, in the target namespace.
      [SA_TOKEN]: { user: `system:serviceaccount:${NAMESPACE}:openclaw-toggle`, canGet: true, canPatch: true, canWatch: true, canCreateEvents: true, canListPods: true, namespace: NAMESPACE },
      [READ_ONLY_TOKEN]: { user: `system:serviceaccount:${NAMESPACE}:read-only`, canGet: true, canPatch: false },
    },
    readyDelayMs: options.readyDelayMs ?? 300,
  });
  const readOnlyKubeconfig = join(dir, 'kube', 'read-only.kubeconfig');
  await sim.writeKubeconfig(readOnlyKubeconfig, READ_ONLY_TOKEN, NAMESPACE);

  let synapse: Synapse;
  try {
    synapse = await startSynapse({
      dir: join(dir, 'synapse'),
      appserviceRegistrations: [registrationPath],
      ...(options.harnessLogger ? { logger: options.harnessLogger } : {}),
      ...(options.synapseConfig ? { extraConfig: options.synapseConfig } : {}),
    });
  } catch (error) {
    await sim.stop();
    throw error;
  }
  const humans: Human[] = [];
  const apps = new Set<App>();
  let humanCount = 0;

  const botEnv = (overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> => ({
    MATRIX_HOMESERVER: synapse.baseUrl,
    AS_REGISTRATION_FILE: registrationPath,
    ALLOWED_USERS: '@alice:localhost',
    DEPLOYMENT_NAME: DEPLOYMENT,
    DEPLOYMENT_NAMESPACE: NAMESPACE,
    KUBECONFIG: sim.kubeconfigPath,
    CRYPTO_STORE_PATH: join(dir, 'bot-data'),
    HTTP_BIND_ADDRESS: '127.0.0.1',
    HTTP_PORT: String(botPort),
    LOG_LEVEL: 'info',
    ...overrides,
  });

  return {
    synapse,
    sim,
    registrationPath,
    readOnlyKubeconfig,
    botPort,
    botUserId: `@${BOT_LOCALPART}:${synapse.serverName}`,
    dir,
    botEnv,
    async startBot(o = {}) {
      const config = loadConfig({ env: botEnv(o.env), file: o.file });
      // Without a logger of the caller's, the bot logs at debug into the stack's directory, for diagnosis.
      const logger = o.logger ?? createLogger({ level: 'debug' }, createWriteStream(join(dir, 'bot.log'), { flags: 'a', mode: 0o600 }));
      const app = await start(config, { logger, defaultMetrics: false, ...o.deps });
      const stop = app.stop;
      apps.add(app);
      const tracked: App = { ...app, stop: async () => { apps.delete(app); await stop(); } };
      return { app: tracked, config };
    },
    async waitForAppserviceUp(timeoutMs = 15_000) {
      const settleMs = 500; // failures of pushes started while the bot was down are logged a little later
      const started = Date.now();
      for (;;) {
        const log = await readFile(join(synapse.dir, 'homeserver.log'), 'utf8');
        const last = [...log.matchAll(/Starting recoverer for AS ID|Successfully recovered application service/g)].at(-1)?.[0];
        if (Date.now() - started >= settleMs && last !== 'Starting recoverer for AS ID') return;
        if (Date.now() - started > timeoutMs) throw new Error('Synapse is still retrying pushes to the bot');
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    pushTransaction(txnId, body) {
      return fetch(`http://127.0.0.1:${botPort}/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${String(registration['hs_token'])}`, 'content-type': 'application/json' },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
    },
    async human(localpart) {
      const user = await synapse.registerUser(localpart, `pw-${localpart}-${humanCount++}`);
      const human = new Human(synapse.baseUrl, user.userId, user.accessToken);
      await human.startSync();
      humans.push(human);
      return human;
    },
    async stop() {
      for (const human of humans) await human.stopSync();
      for (const app of apps) await app.stop().catch(() => undefined);
      await synapse.stop();
      await sim.stop();
    },
  };
}
