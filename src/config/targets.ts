/**
 * The `targets:` list of the YAML config (issue 13: several Deployments from one bot), validated
 * into Targets. Every error names its key (`targets[2].namespace`), as the other settings do.
 * Without `targets:`, the bot serves the one target of `kubernetes.deployment` and
 * `kubernetes.namespace`, which `legacyTarget` turns into the same shape.
 */
import { ConfigError } from './config-error.ts';
import { SAMPLE_MARKER } from './sources.ts';
import { isRoomId } from '../matrix/ids.ts';

export interface Target {
  /** How chat names it (`start comfy`); lower case. */
  readonly name: string;
  readonly namespace: string;
  readonly deployment: string;
  /** Other names for it in chat; lower case. */
  readonly aliases: readonly string[];
  /** Replicas a `start` asks for. */
  readonly replicas: number;
  /** Narrows `bot.allowedUsers` for this target; undefined: everyone allowed may control it. */
  readonly allowedUsers: readonly string[] | undefined;
  /** Room ids from which it may be controlled; undefined: any room the bot is in. */
  readonly rooms: readonly string[] | undefined;
}

/** Words chat uses for commands: a target named so would make `status start` ambiguous. */
const COMMAND_WORDS = new Set(['start', 'on', 'stop', 'off', 'extend', 'status', 'help', 'approve', 'for', 'by', 'all']);
const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const KEYS = new Set(['name', 'namespace', 'deployment', 'aliases', 'replicas', 'allowedUsers', 'rooms']);
const MAX_REPLICAS = 100;

/** The single target of the old settings (`DEPLOYMENT_NAME`, `DEPLOYMENT_NAMESPACE`): named after its Deployment. */
export function legacyTarget(namespace: string, deployment: string): Target {
  return { name: deployment.toLowerCase(), namespace, deployment, aliases: [], replicas: 1, allowedUsers: undefined, rooms: undefined };
}

/** Validates `targets:` from the YAML (as parsed); `allowedUsers` is the global allowlist each target may only narrow. */
export function parseTargets(raw: unknown, allowedUsers: readonly string[], source: string): Target[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError('targets', `expected a non-empty list of targets in ${source}`);
  const targets = raw.map((item, i) => parseTarget(item, `targets[${i}]`, allowedUsers, source));
  const seen = new Map<string, string>();
  const places = new Map<string, string>();
  targets.forEach((t, i) => {
    for (const [word, key] of [[t.name, `targets[${i}].name`], ...t.aliases.map((a, j) => [a, `targets[${i}].aliases[${j}]`] as const)] as const) {
      const other = seen.get(word);
      if (other) throw new ConfigError(key, `"${word}" already names ${other}; each name and alias must pick one target`);
      seen.set(word, `targets[${i}]`);
    }
    const place = `${t.namespace}/${t.deployment}`;
    const twin = places.get(place);
    if (twin) throw new ConfigError(`targets[${i}].deployment`, `${place} is already ${twin}`);
    places.set(place, `targets[${i}]`);
  });
  return targets;
}

function parseTarget(item: unknown, at: string, allowedUsers: readonly string[], source: string): Target {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new ConfigError(at, `expected a mapping (name, namespace, deployment, …) in ${source}`);
  const o = item as Record<string, unknown>;
  for (const key of Object.keys(o)) if (!KEYS.has(key)) throw new ConfigError(`${at}.${key}`, `unknown setting in ${source} (a target has ${[...KEYS].join(', ')})`);
  for (const [key, v] of Object.entries(o)) {
    const values = Array.isArray(v) ? v.map((item, j) => [`${at}.${key}[${j}]`, item] as const) : [[`${at}.${key}`, v] as const];
    for (const [where, value] of values) {
      if (typeof value === 'string' && value.includes(SAMPLE_MARKER)) throw new ConfigError(where, `still holds the sample value "${value}": replace it (in ${source})`);
    }
  }
  const deployment = text(o, 'deployment', at, source);
  if (!DNS_SUBDOMAIN.test(deployment)) throw new ConfigError(`${at}.deployment`, `"${deployment}" is not a valid Deployment name`);
  const namespace = text(o, 'namespace', at, source);
  if (!DNS_LABEL.test(namespace)) throw new ConfigError(`${at}.namespace`, `"${namespace}" is not a valid namespace name (a DNS label)`);
  const name = word(o['name'] ?? deployment, `${at}.name`);
  const aliases = list(o['aliases'], `${at}.aliases`).map((a, j) => word(a, `${at}.aliases[${j}]`));
  const replicas = o['replicas'] ?? 1;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS) {
    throw new ConfigError(`${at}.replicas`, `expected a whole number from 1 to ${MAX_REPLICAS}, got ${JSON.stringify(replicas)}`);
  }
  const users = o['allowedUsers'] === undefined ? undefined : list(o['allowedUsers'], `${at}.allowedUsers`).map((u, j) => {
    if (typeof u !== 'string' || !allowedUsers.includes(u)) {
      throw new ConfigError(`${at}.allowedUsers[${j}]`, `${JSON.stringify(u)} is not in bot.allowedUsers: a target's list can only narrow the global one`);
    }
    return u;
  });
  const rooms = o['rooms'] === undefined ? undefined : list(o['rooms'], `${at}.rooms`).map((r, j) => {
    // Room version 12 ids have no server part (`!opaque`); older ones do (`!opaque:example.org`). Aliases (#room:server) are not ids.
    if (!isRoomId(r)) throw new ConfigError(`${at}.rooms[${j}]`, `expected a room id like !abc:example.org or !abc (Element: Room settings → Advanced), got ${JSON.stringify(r)}`);
    return r;
  });
  return { name, namespace, deployment, aliases, replicas, allowedUsers: users, rooms };
}

function text(o: Record<string, unknown>, key: string, at: string, source: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(`${at}.${key}`, `required in ${source}`);
  return v.trim();
}

function list(v: unknown, key: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ConfigError(key, 'expected a list');
  return v;
}

function word(v: unknown, key: string): string {
  const w = typeof v === 'string' ? v.trim().toLowerCase() : '';
  if (!NAME.test(w)) throw new ConfigError(key, `${JSON.stringify(v)} cannot name a target in chat: one word of letters, digits, - or _ (at most 32)`);
  if (COMMAND_WORDS.has(w)) throw new ConfigError(key, `"${w}" is a command word; pick another name`);
  // `start 1d` must stay a run time: a name that reads as one would make it mean a target.
  if (/^\d/.test(w)) throw new ConfigError(key, `"${w}" begins with a digit, as run times do (start 2h); pick a name that begins with a letter`);
  return w;
}
