import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { parseRegistration, type Registration } from '../appservice/registration.ts';
import { contextNamespace } from '../kube/kubeconfig.ts';
import { compactDuration, parseDuration } from '../bot/durations.ts';
import { isUtc } from '../bot/time-text.ts';
import { configUserIdProblem, isServerName } from '../matrix/ids.ts';
import { ConfigError } from './config-error.ts';
import { keycloakLogin, type AuthMethod, type KeycloakLogin } from './jwt-config.ts';
import { SETTINGS, type Setting } from './settings.ts';
import { legacyTarget, parseTargets, type Target } from './targets.ts';

export { ConfigError };
export type { AuthMethod, JwtLoginType, KeycloakLogin } from './jwt-config.ts';
export type { Target } from './targets.ts';

export type Mode = 'appservice' | 'password';
export type TrustPolicy = 'tofu' | 'verified' | 'any';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** The validated, frozen configuration: everything downstream reads this, never the environment. */
export interface Config {
  readonly mode: Mode;
  readonly homeserver: { readonly url: string; readonly domain: string | undefined };
  readonly bot: {
    /** Localpart of the bot's user. */
    readonly localpart: string;
    /** The password, or with authMethod jwt the Keycloak password. */
    readonly password: string | undefined;
    readonly authMethod: AuthMethod;
    readonly allowedUsers: readonly string[];
    readonly echo: boolean;
    readonly commandPrefix: string;
    readonly displayName: string;
    readonly maxCommandAgeSeconds: number;
    /** ▶️ ⏹ 🔄 reactions on status and result replies, and reactions as commands. */
    readonly reactionButtons: boolean;
    readonly trust: TrustPolicy;
    /** ms; undefined: a bare start has no automatic stop (unless maxRunMs is set). */
    readonly defaultRunMs: number | undefined;
    /** Start/stop replies edited as the rollout moves (bot.progress), and for how long at most (bot.progressDeadlineSeconds). */
    readonly progress: boolean;
    readonly progressDeadlineMs: number | undefined;
    /** ms; undefined: no limit. */
    readonly maxRunMs: number | undefined;
    /** IANA name of the zone of clock times in chat. */
    readonly timeZone: string;
  };
  readonly appservice: {
    readonly registration: Registration | undefined;
    readonly registrationPath: string | undefined;
    readonly allowQueryToken: boolean;
  };
  /** Set when bot.authMethod is jwt. */
  readonly keycloak: KeycloakLogin | undefined;
  readonly http: { readonly bind: string; readonly port: number };
  readonly sync: { readonly maxRetries: number };
  /** What the bot starts and stops: `targets:`, or the one target of kubernetes.deployment/namespace. Never empty. */
  readonly targets: readonly Target[];
  readonly kubernetes: {
    /** The single target's (the first target's when `targets:` is set). */
    readonly deployment: string;
    readonly namespace: string;
    readonly kubeconfig: string | undefined;
    readonly timeoutSeconds: number;
  };
  readonly storage: { readonly path: string; readonly passphrase: string | undefined };
  readonly log: { readonly level: LogLevel; readonly format: 'json' | 'pretty' };
}

export interface LoadOptions {
  /** YAML config file; optional, the environment alone may be enough. */
  readonly file?: string | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The pod's namespace file, read when no namespace is configured. */
  readonly serviceAccountNamespaceFile?: string;
}

type Raw = string | number | boolean | readonly unknown[] | null;
interface Found {
  readonly value: Raw;
  /** Where the value came from, for error messages: `MATRIX_USER`, `config.yaml`, … */
  readonly source: string;
}

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
const LOCALPART = /^[a-z0-9._=\-/+]+$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** Placeholders from config.sample.yaml: starting with them unchanged is refused. */
const SAMPLE_MARKER = 'CHANGE-ME';
/** Python's logging names, and loguru's (the old bot's LOGURU_LEVEL): SUCCESS sits between INFO and WARNING. */
const PYTHON_LEVELS: Readonly<Record<string, LogLevel>> = { warning: 'warn', critical: 'fatal', notset: 'info', success: 'info' };

function readText(path: string, key: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(key, `cannot read ${what} ${path} (${code})`);
  }
}

/** Flattens the YAML file to dotted keys, refusing keys no setting knows (typos fail loudly). */
function flattenFile(path: string): Map<string, Found> {
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

function lookup(setting: Setting, file: Map<string, Found>, env: LoadOptions['env']): Found | undefined {
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

function fail(setting: Setting, found: Found, message: string): never {
  throw new ConfigError(setting.key, `${message} (from ${found.source})`);
}

function coerce(setting: Setting, found: Found): string | number | boolean | readonly unknown[] {
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

/** Loads config from an optional YAML file and the environment (environment wins), validates it, freezes it. */
export function loadConfig(options: LoadOptions): Config {
  const file = options.file ? flattenFile(resolve(options.file)) : new Map<string, Found>();
  const values = new Map<string, { value: string | number | boolean | readonly unknown[]; source: string }>();
  for (const setting of SETTINGS) {
    const found = lookup(setting, file, options.env);
    if (found && found.value !== null && found.value !== '') {
      const value = coerce(setting, found);
      // (targets: checked by parseTargets, which names the target's key)
      if (typeof value === 'string' && value.includes(SAMPLE_MARKER) || setting.kind === 'list' && Array.isArray(value) && value.some((v) => String(v).includes(SAMPLE_MARKER))) {
        fail(setting, found, setting.secret ? 'still holds the sample value: replace it' : `still holds the sample value "${String(value)}": replace it`);
      }
      values.set(setting.key, { value, source: found.source });
    } else if (setting.default !== undefined) {
      values.set(setting.key, { value: setting.default, source: 'default' });
    }
  }
  const str = (key: string): string | undefined => values.get(key)?.value as string | undefined;
  const must = (key: string, why: string): string => {
    const value = str(key);
    if (value === undefined || value === '') {
      const setting = SETTINGS.find((s) => s.key === key);
      throw new ConfigError(key, `is required ${why} (set ${setting?.env[0] ?? key} or ${key} in the config file)`);
    }
    return value;
  };
  const where = (key: string): string => values.get(key)?.source ?? 'default';

  const homeserverUrl = must('homeserver.url', 'to reach the homeserver');
  const registrationPath = str('appservice.registration');
  const password = str('bot.password');
  const mode: Mode = (str('mode') as Mode | undefined) ?? (password && !registrationPath ? 'password' : 'appservice');

  let registration: Registration | undefined;
  if (mode === 'appservice') {
    const path = must('appservice.registration', 'in appservice mode');
    registration = parseRegistration(readText(path, 'appservice.registration', 'registration file'));
  } else if (!password) {
    must('bot.password', 'in password mode');
  }
  const keycloak = keycloakLogin({ mode, str, must, where });

  // The user may be a localpart or a full id; a full id also tells the server name.
  let localpart = str('bot.user') ?? registration?.senderLocalpart;
  let domain = str('homeserver.domain');
  if (localpart === undefined) throw new ConfigError('bot.user', 'is required in password mode (set MATRIX_USER)');
  if (domain !== undefined && !isServerName(domain)) throw new ConfigError('homeserver.domain', `${JSON.stringify(domain)} is not a server name like example.org (from ${where('homeserver.domain')})`);
  if (localpart.startsWith('@')) {
    const problem = configUserIdProblem(localpart);
    if (problem) throw new ConfigError('bot.user', `${JSON.stringify(localpart)} is not a valid user id: ${problem} (from ${where('bot.user')})`);
    const [local, ...server] = localpart.slice(1).split(':');
    const serverName = server.join(':');
    if (domain && domain !== serverName) throw new ConfigError('homeserver.domain', `"${domain}" differs from the server of bot.user "${localpart}"`);
    domain = serverName;
    localpart = local as string;
  }
  if (!LOCALPART.test(localpart)) throw new ConfigError('bot.user', `${JSON.stringify(localpart)} is not a valid localpart (lower-case letters, digits and ._=-/+ only)`);
  if (registration && localpart !== registration.senderLocalpart) {
    throw new ConfigError('bot.user', `"${localpart}" is not the registration's sender_localpart "${registration.senderLocalpart}"`);
  }

  const allowedUsers = userIdList((values.get('bot.allowedUsers')?.value as readonly string[] | undefined) ?? [], where('bot.allowedUsers'));
  if (allowedUsers.length === 0) throw new ConfigError('bot.allowedUsers', 'needs at least one user id (set ALLOWED_USERS=@you:example.org)');

  const deployment = must('kubernetes.deployment', 'to know what to scale');
  if (!DNS_SUBDOMAIN.test(deployment)) throw new ConfigError('kubernetes.deployment', `"${deployment}" is not a valid Deployment name (from ${where('kubernetes.deployment')})`);
  // As kubectl: the configured one, else the kubeconfig context's, else the pod's own, else `default`.
  const namespace = str('kubernetes.namespace') ?? contextNamespace({ kubeconfigPath: str('kubernetes.kubeconfig'), env: options.env })
    ?? podNamespace(options.serviceAccountNamespaceFile ?? SA_NAMESPACE_FILE) ?? 'default';
  if (!DNS_LABEL.test(namespace)) throw new ConfigError('kubernetes.namespace', `"${namespace}" is not a valid namespace name (a DNS label) (from ${where('kubernetes.namespace')})`);
  const targets = configTargets(values.get('targets'), { deployment, namespace, allowedUsers, where });

  const prefix = (str('bot.commandPrefix') ?? '').trim();
  const defaultRunMs = values.get('bot.defaultRunTime')?.value as number | undefined;
  const maxRunMs = values.get('bot.maxRunTime')?.value as number | undefined;
  if (defaultRunMs !== undefined && maxRunMs !== undefined && defaultRunMs > maxRunMs) {
    throw new ConfigError('bot.defaultRunTime', `${compactDuration(defaultRunMs)} is longer than bot.maxRunTime ${compactDuration(maxRunMs)} (from ${where('bot.defaultRunTime')})`);
  }
  const timeZone = timeZoneName(str('bot.timeZone') as string, where('bot.timeZone'));
  const config: Config = {
    mode,
    homeserver: { url: homeserverUrl, domain },
    bot: {
      localpart,
      password,
      authMethod: keycloak ? 'jwt' : 'password',
      allowedUsers: [...new Set(allowedUsers)],
      echo: values.get('bot.echo')?.value as boolean,
      commandPrefix: prefix,
      displayName: str('bot.displayName') ?? '',
      maxCommandAgeSeconds: values.get('bot.maxCommandAgeSeconds')?.value as number,
      reactionButtons: values.get('bot.reactionButtons')?.value as boolean,
      trust: str('bot.trust') as TrustPolicy,
      defaultRunMs,
      maxRunMs,
      timeZone,
      progress: values.get('bot.progress')?.value as boolean,
      progressDeadlineMs: secondsToMs(values.get('bot.progressDeadlineSeconds')?.value as number | undefined),
    },
    appservice: {
      registration,
      registrationPath,
      allowQueryToken: values.get('appservice.allowQueryToken')?.value as boolean,
    },
    keycloak,
    http: { bind: str('http.bind') as string, port: values.get('http.port')?.value as number },
    sync: { maxRetries: values.get('sync.maxRetries')?.value as number },
    targets,
    kubernetes: {
      deployment: targets[0]!.deployment,
      namespace: targets[0]!.namespace,
      kubeconfig: str('kubernetes.kubeconfig'),
      timeoutSeconds: values.get('kubernetes.timeoutSeconds')?.value as number,
    },
    storage: { path: resolve(str('storage.path') as string), passphrase: str('storage.passphrase') },
    log: { level: str('log.level') as LogLevel, format: str('log.format') as 'json' | 'pretty' },
  };
  return deepFreeze(config);
}

/**
 * The allowed users as configured: comma-separated values, each one user id. A value holding
 * spaces is several ids only if every part is one (`@a:x @b:x`, as older setups wrote it);
 * otherwise the error quotes the whole value, not the fragment before the space.
 */
function userIdList(items: readonly string[], source: string): string[] {
  const users: string[] = [];
  for (const item of items) {
    const parts = item.split(/\s+/);
    if (parts.length > 1 && parts.every((part) => configUserIdProblem(part) === undefined)) {
      users.push(...parts);
      continue;
    }
    const problem = configUserIdProblem(item);
    if (problem) throw new ConfigError('bot.allowedUsers', `${JSON.stringify(item)} is not a full user id like @alice:example.org: ${problem} (from ${source})`);
    users.push(item);
  }
  return users;
}

/** The zone as Intl names it (`europe/berlin` → `Europe/Berlin`); UTC without asking Intl (see time-text.ts: its first use costs memory). */
function timeZoneName(zone: string, source: string): string {
  if (isUtc(zone)) return 'UTC';
  try {
    return new Intl.DateTimeFormat('en', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    throw new ConfigError('bot.timeZone', `"${zone}" is not a time zone name like Europe/Berlin or America/New_York (from ${source})`);
  }
}

function podNamespace(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** The effective configuration as log fields, secrets masked (the old bot printed this at start-up). */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    mode: config.mode,
    homeserver: config.homeserver.url,
    domain: config.homeserver.domain,
    user: config.bot.localpart,
    passwordGiven: config.bot.password !== undefined,
    authMethod: config.mode === 'password' ? config.bot.authMethod : undefined,
    keycloak: config.keycloak && { url: config.keycloak.url, realm: config.keycloak.realm, clientId: config.keycloak.clientId, clientSecretGiven: config.keycloak.clientSecret !== undefined, loginType: config.keycloak.loginType },
    allowedUsers: config.bot.allowedUsers,
    echo: config.bot.echo,
    commandPrefix: config.bot.commandPrefix || undefined,
    trust: config.bot.trust,
    maxCommandAgeSeconds: config.bot.maxCommandAgeSeconds,
    reactionButtons: config.bot.reactionButtons,
    defaultRunTime: config.bot.defaultRunMs === undefined ? undefined : compactDuration(config.bot.defaultRunMs),
    maxRunTime: config.bot.maxRunMs === undefined ? undefined : compactDuration(config.bot.maxRunMs),
    timeZone: config.bot.timeZone,
    progress: config.bot.progress,
    progressDeadlineSeconds: config.bot.progressDeadlineMs === undefined ? undefined : config.bot.progressDeadlineMs / 1000,
    registration: config.appservice.registrationPath,
    appserviceId: config.appservice.registration?.id,
    listen: `${config.http.bind}:${config.http.port}`,
    // One target: as before there were targets; several: each as name=namespace/deployment.
    deployment: config.targets.length === 1 ? `${config.targets[0]!.namespace}/${config.targets[0]!.deployment}` : undefined,
    targets: config.targets.length > 1 ? config.targets.map((t) => `${t.name}=${t.namespace}/${t.deployment}`) : undefined,
    kubeconfig: config.kubernetes.kubeconfig ?? 'in-cluster or default',
    storePath: config.storage.path,
    storePassphraseGiven: config.storage.passphrase !== undefined,
    logLevel: config.log.level,
  };
}

function secondsToMs(seconds: number | undefined): number | undefined {
  return seconds === undefined ? undefined : seconds * 1000;
}

/**
 * `targets:` when given, else the one target of kubernetes.deployment/namespace. With `targets:`,
 * those two may stay set (the kustomize base sets them for its Role) only if they name one of the
 * targets: a DEPLOYMENT_NAME silently ignored would scale something other than the operator meant.
 */
function configTargets(
  raw: { value: unknown; source: string } | undefined,
  single: { deployment: string; namespace: string; allowedUsers: readonly string[]; where: (key: string) => string },
): Target[] {
  if (raw === undefined) return [legacyTarget(single.namespace, single.deployment)];
  const targets = parseTargets(raw.value, single.allowedUsers, raw.source);
  const setHere = (key: string): boolean => single.where(key) !== 'default';
  if (setHere('kubernetes.deployment') && !targets.some((t) => t.deployment === single.deployment && (!setHere('kubernetes.namespace') || t.namespace === single.namespace))) {
    const place = setHere('kubernetes.namespace') ? `${single.namespace}/${single.deployment}` : `"${single.deployment}"`;
    throw new ConfigError('kubernetes.deployment', `${place} (from ${single.where('kubernetes.deployment')}) is none of targets; with targets set, leave it unset or name one of them`);
  }
  if (!setHere('kubernetes.deployment') && setHere('kubernetes.namespace') && !targets.some((t) => t.namespace === single.namespace)) {
    throw new ConfigError('kubernetes.namespace', `"${single.namespace}" (from ${single.where('kubernetes.namespace')}) is the namespace of none of targets; with targets set, leave it unset or name one of theirs`);
  }
  return targets;
}
