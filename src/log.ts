import { pino, type Logger, type LevelWithSilent } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };

export interface LogOptions {
  readonly level: LevelWithSilent;
  /** `json`: one object per line for collectors; `pretty`: short coloured lines for a terminal. */
  readonly format?: 'json' | 'pretty';
}

/** Paths pino blanks out wherever they appear in a log object, as a second line of defence. */
const REDACT = [
  'token', 'accessToken', 'access_token', 'as_token', 'hs_token', 'asToken', 'hsToken',
  'password', 'passphrase', 'authorization', 'headers.authorization', 'req.headers.authorization',
  '*.token', '*.accessToken', '*.access_token', '*.password', '*.passphrase', '*.authorization',
];

export function createLogger(options: LogOptions, destination?: NodeJS.WritableStream): Logger {
  const out = destination ?? process.stdout;
  const stream = options.format === 'pretty'
    ? PinoPretty({ destination: out, colorize: Boolean((out as { isTTY?: boolean }).isTTY), translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,name', sync: true })
    : out;
  return pino(
    {
      level: options.level,
      base: { name: 'openclaw-toggle' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
}

/** A logger that drops everything: for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
