import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseRegistration, type Registration } from '../appservice/registration.ts';
import { contextNamespace } from '../kube/kubeconfig.ts';
import { compactDuration } from '../bot/durations.ts';
import { isUtc } from '../bot/time-text.ts';
import { configUserIdProblem, isServerName } from '../matrix/ids.ts';
import { ConfigError } from './config-error.ts';
import { keycloakLogin, type AuthMethod, type KeycloakLogin } from './jwt-config.ts';
import { SETTINGS } from './settings.ts';
import { coerce, fail, flattenFile, lookup, readText, SAMPLE_MARKER, type Found } from './sources.ts';
import { legacyTarget, parseTargets, type Target } from './targets.ts';

export { ConfigError };
export { describeConfig } from './describe.ts';
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

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
const LOCALPART = /^[a-z0-9._=\-/+]+$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

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
