/**
 * The files a test Synapse runs with: `homeserver.yaml` (loopback, SQLite, no federation, rate
 * limits out of the way, the appservice-encryption features on) and its logging config.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { join, resolve } from 'node:path';

export type Json = Record<string, unknown>;

export function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Json, extra: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

const UNLIMITED = { per_second: 100_000, burst_count: 100_000 };

/** The homeserver.yaml the harness writes (exported for tests and docs). */
export function synapseConfig(p: {
  dir: string; serverName: string; port: number; registrationSharedSecret: string;
  appserviceRegistrations: readonly string[]; extraConfig?: Record<string, unknown>;
}): Json {
  const dir = resolve(p.dir);
  const base: Json = {
    server_name: p.serverName,
    public_baseurl: `http://127.0.0.1:${p.port}/`,
    pid_file: join(dir, 'homeserver.pid'),
    listeners: [{
      port: p.port,
      bind_addresses: ['127.0.0.1'],
      type: 'http',
      tls: false,
      x_forwarded: false,
      // `client` also serves /_synapse/admin; no federation listener.
      resources: [{ names: ['client'], compress: false }],
    }],
    database: { name: 'sqlite3', args: { database: join(dir, 'homeserver.db') } },
    log_config: join(dir, 'log.config'),
    media_store_path: join(dir, 'media_store'),
    signing_key_path: join(dir, 'signing.key'), // created by Synapse at start when missing
    report_stats: false,
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_domain_whitelist: [],
    enable_metrics: false,
    url_preview_enabled: false,
    presence: { enabled: false },
    enable_registration: false,
    registration_shared_secret: p.registrationSharedSecret,
    bcrypt_rounds: 4,
    app_service_config_files: p.appserviceRegistrations.map((f) => resolve(f)),
    experimental_features: {
      msc2409_to_device_messages_enabled: true,
      msc3202_transaction_extensions: true,
    },
    // Every rc_* that Synapse 1.163's RatelimitConfig reads (except rc_federation, which has a
    // different shape and does not matter without federation).
    rc_message: UNLIMITED,
    rc_registration: UNLIMITED,
    rc_registration_token_validity: UNLIMITED,
    rc_login: { address: UNLIMITED, account: UNLIMITED, failed_attempts: UNLIMITED },
    rc_admin_redaction: UNLIMITED,
    rc_joins: { local: UNLIMITED, remote: UNLIMITED },
    rc_joins_per_room: UNLIMITED,
    rc_key_requests: UNLIMITED,
    rc_3pid_validation: UNLIMITED,
    rc_invites: { per_room: UNLIMITED, per_user: UNLIMITED, per_issuer: UNLIMITED },
    rc_third_party_invite: UNLIMITED,
    rc_media_create: UNLIMITED,
    rc_presence: { per_user: UNLIMITED },
    rc_delayed_event_mgmt: UNLIMITED,
    rc_room_creation: UNLIMITED,
    rc_reports: UNLIMITED,
    rc_user_directory: UNLIMITED,
    rc_profile: UNLIMITED,
  };
  return p.extraConfig ? deepMerge(base, p.extraConfig) : base;
}

/** Python logging config: INFO to `<dir>/homeserver.log` only, nothing to the console. */
export function synapseLogConfig(dir: string): Json {
  return {
    version: 1,
    formatters: {
      precise: { format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s' },
    },
    handlers: {
      file: {
        class: 'logging.FileHandler',
        formatter: 'precise',
        filename: join(resolve(dir), 'homeserver.log'),
        encoding: 'utf8',
      },
    },
    loggers: {
      // DEBUG here would log access tokens.
      'synapse.storage.SQL': { level: 'INFO' },
    },
    root: { level: 'INFO', handlers: ['file'] },
    disable_existing_loggers: false,
  };
}
