import { randomBytes } from 'node:crypto';
import { parse, stringify } from 'yaml';
import { ConfigError } from '../config/config-error.ts';

/** The parts of an appservice registration the bot needs at run time. */
export interface Registration {
  readonly id: string;
  readonly url: string | null;
  readonly asToken: string;
  readonly hsToken: string;
  readonly senderLocalpart: string;
}

export interface RegistrationOptions {
  readonly id: string;
  readonly url: string;
  readonly senderLocalpart: string;
  /** Server name, to anchor the user namespace regex; unset matches the localpart on any server. */
  readonly domain?: string;
}

const KEY = 'appservice.registration';
const TOKEN_BYTES = 48; // 64 base64url characters

export function newToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A Synapse-ready registration: an exclusive namespace holding only the bot, no rate limits, and
 * every flag Synapse needs to push encryption data (MSC2409 ephemeral + to-device, MSC3202
 * device lists and key counts, MSC4190 device management). Both names of the ephemeral flag are
 * written because Synapse releases have honoured one or the other.
 */
export function buildRegistration(options: RegistrationOptions): Record<string, unknown> {
  const server = options.domain ? escapeRegex(options.domain) : '.*';
  return {
    id: options.id,
    url: options.url,
    as_token: newToken(),
    hs_token: newToken(),
    sender_localpart: options.senderLocalpart,
    namespaces: {
      users: [{ exclusive: true, regex: `@${escapeRegex(options.senderLocalpart)}:${server}` }],
      aliases: [],
      rooms: [],
    },
    rate_limited: false,
    receive_ephemeral: true,
    'de.sorunome.msc2409.push_ephemeral': true,
    'org.matrix.msc3202': true,
    'io.element.msc4190': true,
  };
}

export function registrationYaml(registration: Record<string, unknown>): string {
  return (
    '# Appservice registration for openclaw-k8s-toggle-operator. Contains secrets: keep it 0600.\n' +
    '# Synapse: list this file under app_service_config_files and restart Synapse.\n' +
    stringify(registration)
  );
}

function requireString(raw: Record<string, unknown>, field: string): string {
  const value = raw[field];
  if (typeof value !== 'string' || value.length === 0) {
    throw new ConfigError(KEY, `the registration has no ${field}`);
  }
  return value;
}

/** Reads the fields the bot needs; every problem names the registration and the field. */
export function parseRegistration(text: string): Registration {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (error) {
    throw new ConfigError(KEY, `the registration is not valid YAML (${(error as Error).message.split('\n')[0]})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(KEY, 'the registration is not a YAML mapping');
  }
  const record = raw as Record<string, unknown>;
  const url = record['url'];
  if (url !== null && url !== undefined && typeof url !== 'string') {
    throw new ConfigError(KEY, 'the registration url must be a string or null');
  }
  const registration: Registration = {
    id: requireString(record, 'id'),
    url: typeof url === 'string' ? url : null,
    asToken: requireString(record, 'as_token'),
    hsToken: requireString(record, 'hs_token'),
    senderLocalpart: requireString(record, 'sender_localpart'),
  };
  for (const [field, value] of [['as_token', registration.asToken], ['hs_token', registration.hsToken], ['url', registration.url ?? '']] as const) {
    if (value.includes('CHANGE-ME')) throw new ConfigError(KEY, `the registration's ${field} is still the example's placeholder: generate a registration (generate-registration)`);
  }
  if (registration.asToken === registration.hsToken) {
    throw new ConfigError(KEY, 'as_token and hs_token must differ');
  }
  return registration;
}
