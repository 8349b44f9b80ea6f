/**
 * Taming matrix-js-sdk for tests and the demo: its logging goes through one switch
 * (`E2EE_HUMAN_DEBUG=1`), and the timers it leaves behind do not keep a finished process alive.
 * Development-only code, used by `e2ee-human.ts`.
 */
import { ClientEvent, type MatrixClient } from 'matrix-js-sdk';
import { logger as sdkGlobalLogger, type Logger } from 'matrix-js-sdk/lib/logger.js';

// ---------------------------------------------------------------------------------------------
// Logging

const debugEnabled = (): boolean => {
  const v = process.env['E2EE_HUMAN_DEBUG'];
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
};

export function makeLogger(prefix: string): Logger {
  const out = (level: 'debug' | 'info' | 'warn' | 'error', p: string) => (...msg: unknown[]): void => {
    if (debugEnabled()) console.error(`[e2ee-human ${p}] ${level}`, ...msg);
  };
  const make = (p: string): Logger => ({
    trace: out('debug', p),
    debug: out('debug', p),
    info: out('info', p),
    warn: out('warn', p),
    error: out('error', p),
    getChild: (ns: string) => make(`${p}${ns}`),
  });
  return make(prefix);
}

/** The loglevel logger behind matrix-js-sdk's global `logger` (its type hides these members). */
interface LoglevelLogger {
  methodFactory: (methodName: string, level: number, loggerName: string | symbol) => (...msg: unknown[]) => void;
  rebuild(): void;
}

let globalLoggerGated = false;

/**
 * Parts of matrix-js-sdk (models, sync) log through its global logger, not the client's. Route it
 * (and the children it creates later, which copy its method factory) through the debug switch.
 */
export function gateGlobalLogger(): void {
  if (globalLoggerGated) return;
  globalLoggerGated = true;
  const ll = sdkGlobalLogger as unknown as LoglevelLogger;
  const original = ll.methodFactory;
  ll.methodFactory = (methodName, level, loggerName) => {
    const write = original(methodName, level, loggerName);
    return (...msg: unknown[]) => {
      if (debugEnabled()) write(...msg);
    };
  };
  ll.rebuild();
}

// ---------------------------------------------------------------------------------------------
// Timers

/** Calls `fn` with `setTimeout` handing out unref'd timers (they still fire while Node runs). */
function withUnrefTimers<T>(fn: () => T): T {
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = ((callback: (...a: unknown[]) => void, ms?: number, ...rest: unknown[]) =>
    realSetTimeout(callback, ms, ...rest).unref()) as typeof globalThis.setTimeout;
  try {
    return fn();
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
}

/**
 * matrix-js-sdk leaves timers behind that keep a stopped client's process alive (matrix-js-sdk#2472):
 * - every HTTP request gets a local timeout from its `timeoutSignal()` ponyfill, never cleared
 *   (110 s for /sync, 60 s for crypto requests); created synchronously at the start of
 *   `requestOtherUrl`, before its first `await`;
 * - every live encrypted event that never decrypts gets a 5-minute timer in
 *   `RustCrypto.onLiveEventFromSync`, run synchronously from `emit(ClientEvent.Event)`.
 * Both are made unref'd here; they still do their job while the process runs for other reasons.
 */
export function unrefSdkTimers(client: MatrixClient): void {
  const http = client.http as unknown as { requestOtherUrl: (...args: unknown[]) => Promise<unknown> };
  const request = http.requestOtherUrl.bind(http);
  http.requestOtherUrl = (...args: unknown[]): Promise<unknown> => withUnrefTimers(() => request(...args));
  const emitter = client as unknown as { emit: (event: string, ...args: unknown[]) => boolean };
  const emit = emitter.emit.bind(client);
  emitter.emit = (event: string, ...args: unknown[]): boolean =>
    event === ClientEvent.Event ? withUnrefTimers(() => emit(event, ...args)) : emit(event, ...args);
}
