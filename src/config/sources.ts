/**
 * Where settings come from: the YAML file flattened to dotted keys, the environment (which wins),
 * secret files, and each raw value coerced to its setting's kind. Errors name the setting and the
 * source (`MATRIX_USER`, `config.yaml`, …). config.ts builds the Config from what this returns.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { parseDuration } from '../bot/durations.ts';
import { ConfigError } from './config-error.ts';
import type { LoadOptions, LogLevel } from './config.ts';
import { SETTINGS, type Setting } from './settings.ts';

/** Placeholders from config.sample.yaml: starting with them unchanged is refused. */
export const SAMPLE_MARKER = 'CHANGE-ME';

export type Raw = string | number | boolean | readonly unknown[] | null;
export interface Found {
  readonly value: Raw;
  /** Where the value came from, for error messages: `MATRIX_USER`, `config.yaml`, … */
  readonly source: string;
}

/** Python's logging names, and loguru's (the old bot's LOGURU_LEVEL): SUCCESS sits between INFO and WARNING. */
const PYTHON_LEVELS: Readonly<Record<string, LogLevel>> = { warning: 'warn', critical: 'fatal', notset: 'info', success: 'info' };

export function readText(path: string, key: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(key, `cannot read ${what} ${path} (${code})`);
  }
}

/** Flattens the YAML file to dotted keys, refusing keys no setting knows (typos fail loudly). */
export function flattenFile(path: string): Map<string, Found> {
  const text = readText(path, 'config', 'config file');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (error) {
    throw new ConfigError('config', `${path} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  const out = new Map<string, Found>();
  if (doc === null || doc === undefined) return out;
  const known = new Set(SETTINGS.flatMap((s) => (s.secret ? [s.key, `${s.key}File`] : [s.key])));
  const walk = (node: unknown, prefix: string): void => {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) {
      throw new ConfigError(prefix || 'config', `expected a mapping in ${path}`);
    }
    for (const [name, value] of Object.entries(node as Record<string, unknown>)) {
      const key = prefix ? `${prefix}.${name}` : name;
      if (known.has(key)) {
        out.set(key, { value: value as Raw, source: path });
      } else if (value !== null && typeof value === 'object' && !Array.isArray(value) && SETTINGS.some((st) => st.key.startsWith(`${key}.`))) {
        walk(value, key);
      } else {
        throw new ConfigError(key, `unknown setting in ${path}`);
      }
    }
  };
  walk(doc, '');
  return out;
}

export function lookup(setting: Setting, file: Map<string, Found>, env: LoadOptions['env']): Found | undefined {
  const fromEnv = setting.env.find((name) => env[name] !== undefined && env[name] !== '');
  const fileEnv = setting.secret ? setting.env.map((n) => `${n}_FILE`).find((n) => env[n]) : undefined;
  if (fromEnv && fileEnv) throw new ConfigError(setting.key, `both ${fromEnv} and ${fileEnv} are set; keep one`);
  if (fromEnv) return { value: env[fromEnv] as string, source: fromEnv };
  if (fileEnv) return { value: readSecretFile(env[fileEnv] as string, setting.key), source: fileEnv };
  const inFile = file.get(setting.key);
  const inFileRef = setting.secret ? file.get(`${setting.key}File`) : undefined;
  if (inFile && inFileRef) throw new ConfigError(setting.key, `both ${setting.key} and ${setting.key}File are set; keep one`);
  if (inFileRef) {
    if (typeof inFileRef.value !== 'string') throw new ConfigError(`${setting.key}File`, 'must be a file path');
    return { value: readSecretFile(inFileRef.value, setting.key), source: `${setting.key}File` };
  }
  return inFile;
}

function readSecretFile(path: string, key: string): string {
  // Secret files (Kubernetes Secrets, Docker secrets) usually end with a newline that is not part of the secret.
  return readText(path, key, 'secret file').replace(/\r?\n$/, '');
}

export function fail(setting: Setting, found: Found, message: string): never {
  throw new ConfigError(setting.key, `${message} (from ${found.source})`);
}

export function coerce(setting: Setting, found: Found): string | number | boolean | readonly unknown[] {
  const { value } = found;
  switch (setting.kind) {
    case 'targets':
      // Validated with the allowlist it narrows, once that is known (loadConfig).
      if (!Array.isArray(value)) fail(setting, found, 'must be a list of targets (name, namespace, deployment, …)');
      return value;
    case 'string':
    case 'path':
    case 'url': {
      if (typeof value !== 'string' && typeof value !== 'number') fail(setting, found, 'must be a string');
      // Secrets are taken as given: a password may well begin or end with a space.
      const text = setting.secret ? String(value) : String(value).trim();
      if (setting.kind === 'url') {
        let url: URL;
        try {
          url = new URL(text);
        } catch {
          fail(setting, found, `must be an http(s) URL, got "${text}"`);
        }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(setting, found, `must be an http(s) URL, got "${text}"`);
        return text.replace(/\/+$/, '');
      }
      return text;
    }
    case 'int': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN;
      if (!Number.isInteger(n)) fail(setting, found, `must be a whole number, got "${String(value)}"`);
      if (setting.min !== undefined && n < setting.min) fail(setting, found, `must be at least ${setting.min}, got ${n}`);
      if (setting.max !== undefined && n > setting.max) fail(setting, found, `must be at most ${setting.max}, got ${n}`);
      return n;
    }
    case 'bool': {
      if (typeof value === 'boolean') return value;
      const text = String(value).trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(text)) return true;
      if (['false', '0', 'no', 'off'].includes(text)) return false;
      fail(setting, found, `must be true or false, got "${String(value)}"`);
    }
    // falls through: fail() never returns
    case 'list': {
      // Split at commas only: what lies between them is one value as the operator wrote it, so an
      // error can quote it whole (the setting's own check may split it further).
      const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : fail(setting, found, 'must be a list');
      return items.map((item) => {
        if (typeof item !== 'string') fail(setting, found, 'must be a list of strings');
        return item.trim();
      }).filter((item) => item.length > 0);
    }
    case 'duration': {
      const ms = typeof value === 'string' ? parseDuration(value) : undefined;
      if (ms === undefined) fail(setting, found, `must be a run time like 2h, 90m or 1h30m (at least one minute), got "${String(value)}"`);
      return ms;
    }
    case 'enum': {
      let text = String(value).trim().toLowerCase();
      if (setting.key === 'log.level') text = PYTHON_LEVELS[text] ?? text;
      if (!setting.values?.includes(text)) fail(setting, found, `must be one of ${setting.values?.join(', ')}, got "${String(value)}"`);
      return text;
    }
  }
}

