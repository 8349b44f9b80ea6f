import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LogOptions {
  readonly level: LevelWithSilent;
}

/** Paths pino blanks out wherever they appear in a log object, as a second line of defence. */
const REDACT = [
  'token', 'accessToken', 'access_token', 'as_token', 'hs_token', 'asToken', 'hsToken',
  'password', 'passphrase', 'authorization', 'headers.authorization', 'req.headers.authorization',
  '*.token', '*.accessToken', '*.access_token', '*.password', '*.passphrase', '*.authorization',
];

export function createLogger(options: LogOptions, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level: options.level,
      base: { name: 'openclaw-toggle' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? process.stdout,
  );
}

/** A logger that drops everything: for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
