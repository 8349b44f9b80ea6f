#!/usr/bin/env node
import { start, type App } from './app.ts';
import { generateRegistration, NAME, parseCli, USAGE, VERSION } from './cli.ts';
import { ConfigError } from './config/config-error.ts';
import { runImportLegacyStore } from './crypto/legacy/import-command.ts';
import { describeConfig, loadConfig, type Config } from './config/config.ts';
import { createLogger, type Logger } from './log.ts';
import { EXIT, StartupError } from './startup-error.ts';
import { StateDb } from './store/state-db.ts';
import { storageFailure } from './store/storage-error.ts';

/** Shutdown must finish inside Kubernetes' default 30 s grace period, with room to spare. */
const STOP_DEADLINE_MS = 10_000;

async function main(): Promise<number> {
  // Every file the bot creates (state, crypto store, registration) holds secrets: owner-only.
  process.umask(0o077);
  const action = parseCli(process.argv.slice(2), process.env);
  switch (action.kind) {
    case 'version':
      console.log(`${NAME} ${VERSION}`);
      return 0;
    case 'help':
      console.log(USAGE);
      return 0;
    case 'generate-registration':
      console.log(generateRegistration(action));
      return 0;
    case 'check-config': {
      const config = loadConfig({ file: action.configFile, env: process.env });
      console.log(JSON.stringify(describeConfig(config), null, 2));
      return 0;
    }
    case 'trust': {
      // The running bot owns the crypto store; the request goes through the state database, which both may write.
      const config = loadConfig({ file: action.configFile, env: process.env });
      let state: StateDb | undefined;
      try {
        state = StateDb.open(config.storage.path);
        state.addOperatorRequest(action.request, action.userId, action.deviceId);
      } catch (error) {
        throw storageFailure(error, `cannot queue the request in the state store in ${config.storage.path}`);
      } finally {
        state?.close();
      }
      console.log(`Queued "${action.request}" for ${action.userId}${action.deviceId ? ` device ${action.deviceId}` : ''}: the running bot applies it before it handles the next message, and logs it.`);
      return 0;
    }
    case 'import-legacy-store': {
      const config = loadConfig({ file: action.configFile, env: process.env });
      return await runImportLegacyStore(action, config);
    }
    case 'run':
      break;
  }
  const config = loadConfig({ file: action.configFile, env: process.env });
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  logger.info({ version: VERSION, config: describeConfig(config) }, `${NAME} starting`);
  return await run(config, logger);
}

/**
 * Runs until SIGTERM/SIGINT (exit 0 after a clean stop) or a fatal error while running (exit 1).
 * Signals are handled from the start: one during start-up (e.g. while waiting for the homeserver)
 * aborts it cleanly instead of killing the process mid-write.
 */
async function run(config: Config, logger: Logger): Promise<number> {
  const starting = new AbortController();
  let app: App | undefined;
  let stopping = false;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  const stop = (reason: string, code: number): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'stopping: finishing the transaction in flight, flushing state');
    if (!app) {
      starting.abort();
      return; // start() unwinds and closes what it opened; its rejection ends main
    }
    const deadline = setTimeout(() => {
      logger.error('did not stop within 10 s; exiting anyway');
      finish(1);
    }, STOP_DEADLINE_MS);
    app.stop().then(
      () => {
        clearTimeout(deadline);
        logger.info('stopped');
        finish(code);
      },
      (error: unknown) => {
        clearTimeout(deadline);
        logger.error({ err: error }, 'error while stopping');
        finish(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM', 0));
  process.once('SIGINT', () => stop('SIGINT', 0));
  try {
    app = await start(config, {
      logger,
      signal: starting.signal,
      onFatal: (error) => {
        logger.fatal(`giving up: ${error.message}`);
        stop('fatal error', 1);
      },
    });
  } catch (error) {
    if (starting.signal.aborted) {
      logger.info('stopped during start-up');
      return 0;
    }
    throw error;
  }
  if (stopping) {
    // A signal arrived just as start-up finished.
    stopping = false;
    stop('signal during start-up', 0);
  }
  return done;
}

/** Lets stdout drain before exiting; the timer only fires if a stray handle keeps the loop alive. */
function exit(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}

main().then(
  (code) => exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) {
      console.error(`config error: ${error.message}`);
      return exit(EXIT.config);
    }
    if (error instanceof StartupError) {
      console.error(`start-up failed: ${error.message}`);
      return exit(error.exitCode);
    }
    console.error(`fatal: ${error instanceof Error ? error.stack : String(error)}`);
    exit(1);
  },
);
