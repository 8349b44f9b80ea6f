/**
 * Every setting the bot reads, in one table: its YAML key, its environment names (the old
 * Python bot's names first, so its deployments keep working), its type, default and
 * documentation. The loader, the sample config test and the README table all come from here.
 */

/** `targets`: a list of mappings, YAML only (src/config/targets.ts validates it). */
export type SettingKind = 'string' | 'url' | 'int' | 'bool' | 'list' | 'enum' | 'path' | 'duration' | 'targets';

export interface Setting {
  /** Dotted YAML path, e.g. `kubernetes.namespace`. */
  readonly key: string;
  /** Environment variable names, most preferred first. */
  readonly env: readonly string[];
  readonly kind: SettingKind;
  readonly values?: readonly string[];
  readonly default?: string | number | boolean | readonly string[];
  /** Secrets may come from a file (`<key>File` in YAML, `<ENV>_FILE` in the environment) and are masked. */
  readonly secret?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly doc: string;
}

export const SETTINGS: readonly Setting[] = [
  {
    key: 'mode', env: ['BOT_MODE'], kind: 'enum', values: ['appservice', 'password'],
    doc: 'How the bot reaches the homeserver: `appservice` (Synapse pushes events; needs a registration) or `password` (log in and /sync like the old bot). Unset: `password` when a password is given and no registration file is, else `appservice`.',
  },
  {
    key: 'homeserver.url', env: ['MATRIX_HOMESERVER'], kind: 'url',
    doc: 'Client-server API base URL of the homeserver, e.g. `http://synapse:8008`. Required.',
  },
  {
    key: 'homeserver.domain', env: ['MATRIX_SERVER_NAME'], kind: 'string',
    doc: 'The server name (the part after `:` in user ids). Unset: taken from `bot.user` if it is a full user id, else asked from the homeserver at start-up.',
  },
  {
    key: 'bot.user', env: ['MATRIX_USER'], kind: 'string',
    doc: "The bot's user: a localpart (`openclaw`) or a full user id. The localpart: lower-case letters, digits and `._=-/+`. Appservice mode: must be the registration's `sender_localpart` (the default).",
  },
  {
    key: 'bot.password', env: ['MATRIX_PASSWORD'], kind: 'string', secret: true,
    doc: 'Password-mode login password. Secret: may come from `MATRIX_PASSWORD_FILE` / `bot.passwordFile`.',
  },
  {
    key: 'bot.authMethod', env: ['AUTH_METHOD'], kind: 'enum', values: ['password', 'jwt'], default: 'password',
    doc: 'Password mode: how the bot logs in. `password`: `m.login.password` with `bot.password`. `jwt`: the bot asks Keycloak for a token (password grant, with `bot.user` and `bot.password` as the Keycloak credentials) and logs in with it (`bot.jwtLoginType`), as the old bot did; see "JWT / Keycloak".',
  },
  {
    key: 'bot.jwtLoginType', env: ['JWT_LOGIN_TYPE'], kind: 'enum', values: ['com.famedly.login.token.oauth', 'com.famedly.login.token', 'org.matrix.login.jwt'], default: 'com.famedly.login.token.oauth',
    doc: "With `bot.authMethod: jwt`: the Matrix login type the token is sent with. `com.famedly.login.token.oauth`: Synapse's synapse-token-authenticator module checks it against Keycloak's JWKS; `com.famedly.login.token`: the same module with a shared secret (HS512); `org.matrix.login.jwt`: Synapse's own `jwt_config`.",
  },
  {
    key: 'keycloak.url', env: ['KEYCLOAK_URL'], kind: 'url',
    doc: 'With `bot.authMethod: jwt`: base URL of Keycloak, e.g. `https://sso.example.org` (the token endpoint is `<url>/realms/<realm>/protocol/openid-connect/token`). Required then.',
  },
  {
    key: 'keycloak.realm', env: ['KEYCLOAK_REALM'], kind: 'string',
    doc: 'With `bot.authMethod: jwt`: the Keycloak realm of the bot\'s account. Required then.',
  },
  {
    key: 'keycloak.clientId', env: ['KEYCLOAK_CLIENT_ID'], kind: 'string',
    doc: 'With `bot.authMethod: jwt`: the Keycloak client the bot asks as; it must allow the password grant ("Direct access grants"). Required then.',
  },
  {
    key: 'keycloak.clientSecret', env: ['KEYCLOAK_CLIENT_SECRET'], kind: 'string', secret: true,
    doc: 'With `bot.authMethod: jwt`: the client\'s secret; leave it unset for a public client. Secret: may come from `KEYCLOAK_CLIENT_SECRET_FILE` / `keycloak.clientSecretFile`.',
  },
  {
    key: 'bot.allowedUsers', env: ['ALLOWED_USERS'], kind: 'list',
    doc: 'Full user ids allowed to command the bot and to invite it (comma-separated in the environment). Required, at least one. Grammar: `@localpart:server`, the localpart of lower-case letters, digits and `._=-/+` (the Matrix spec), upper-case letters also accepted (older accounts); spaces, quotes, `<>&` and other characters are refused.',
  },
  {
    key: 'bot.echo', env: ['ECHO_MODE'], kind: 'bool', default: true,
    doc: 'Echo each accepted command as "🦞 <command>" before acting (the old bot\'s behaviour).',
  },
  {
    key: 'bot.commandPrefix', env: ['COMMAND_PREFIX'], kind: 'string', default: '',
    doc: 'If set (e.g. `!toggle`), only messages starting with it are commands; useful in busy rooms.',
  },
  {
    key: 'bot.displayName', env: ['BOT_DISPLAY_NAME'], kind: 'string', default: 'OpenClaw toggle',
    doc: "Display name the bot sets for itself at start-up (empty: leave it alone).",
  },
  {
    key: 'bot.maxCommandAgeSeconds', env: ['MAX_COMMAND_AGE_SECONDS'], kind: 'int', default: 900, min: 0,
    doc: 'A command older than this when it reaches the bot (e.g. delivered late after downtime) is not executed; the sender is told. 0 disables the check.',
  },
  {
    key: 'bot.reactionButtons', env: ['REACTION_BUTTONS'], kind: 'bool', default: true,
    doc: 'Add ▶️ ⏹ 🔄 reactions to status and start/stop replies; an allowed user reacting with one runs start, stop or status, exactly as if typed (same trust checks, echo and age limit).',
  },
  {
    key: 'bot.trust', env: ['TRUST_POLICY'], kind: 'enum', values: ['tofu', 'verified', 'any'], default: 'tofu',
    doc: "Which devices of an allowed user are obeyed in encrypted rooms: `tofu` (pin the user's identity on first sight; for a user without cross-signing, their first device, and further ones once approved with `approve DEVICEID`), `verified` (only devices the bot verified), `any` (the old bot's behaviour).",
  },
  {
    key: 'bot.defaultRunTime', env: ['DEFAULT_RUN_TIME'], kind: 'duration',
    doc: 'A bare `start` stops by itself after this long (`2h`, `90m`, `1h30m`, `1d`); `start 4h` still sets its own time. Unset: a bare `start` runs until someone says `stop` (or for `bot.maxRunTime`, when that is set).',
  },
  {
    key: 'bot.maxRunTime', env: ['MAX_RUN_TIME'], kind: 'duration',
    doc: 'The longest run anyone may ask for: `start 12h` beyond it is refused, and no `extend` may make a run end further ahead than this from now. Unset: no limit.',
  },
  {
    key: 'bot.progress', env: ['PROGRESS_MESSAGES'], kind: 'bool', default: true,
    doc: 'Edit the reply to `start` and `stop` in place as the rollout moves (pod scheduled, pulling the image, ready; or why it fails), at most every 2 s, until ready, off, failed or `bot.progressDeadlineSeconds`. Off: the reply is sent once, as the old bot did.',
  },
  {
    key: 'bot.progressDeadlineSeconds', env: ['PROGRESS_DEADLINE_SECONDS'], kind: 'int', min: 1,
    doc: 'How long a start or stop is followed, in seconds, before its message says "still not ready" and stops changing. Unset: the Deployment\'s own `progressDeadlineSeconds` (Kubernetes\' default: 600).',
  },
  {
    key: 'bot.timeZone', env: ['BOT_TIME_ZONE'], kind: 'string', default: 'UTC',
    doc: 'Time zone of the clock times in chat (`stops at 16:02 CEST`), an IANA name such as `Europe/Berlin`; the zone is named in each message. Any zone but UTC costs about 8 MiB of memory (the ICU time-zone data).',
  },
  {
    key: 'appservice.registration', env: ['AS_REGISTRATION_FILE'], kind: 'path',
    doc: 'Path to the appservice registration YAML (the same file Synapse loads); tokens, id and sender are read from it. Required in appservice mode.',
  },
  {
    key: 'sync.maxRetries', env: ['SYNC_MAX_RETRIES'], kind: 'int', default: 20, min: 0,
    doc: 'Password mode: consecutive failed attempts to reach the homeserver (backoff doubling up to 60 s) before the bot exits non-zero, as the old bot did. 0: retry forever.',
  },
  {
    key: 'http.bind', env: ['HTTP_BIND_ADDRESS'], kind: 'string', default: '0.0.0.0',
    doc: 'Address the HTTP listener binds: appservice transactions, `/health`, `/ready`, `/metrics`.',
  },
  {
    key: 'http.port', env: ['HTTP_PORT'], kind: 'int', default: 9000, min: 0, max: 65535,
    doc: 'Port of the HTTP listener; in appservice mode it must match the port in the registration `url`.',
  },
  {
    key: 'appservice.allowQueryToken', env: ['AS_ALLOW_QUERY_TOKEN'], kind: 'bool', default: false,
    doc: 'Also accept `hs_token` as the legacy `access_token` query parameter (old homeservers only).',
  },
  {
    key: 'targets', env: [], kind: 'targets',
    doc: 'Several Deployments from one bot (YAML only): a list of `name` (how chat names it: `start comfy`), `namespace`, `deployment`, and optional `aliases`, `replicas` (what `start` asks for, default 1), `allowedUsers` (narrows `bot.allowedUsers` for this target) and `rooms` (room ids that may control it). Unset: the one target of `kubernetes.deployment` and `kubernetes.namespace`, named after its Deployment. When set, those two may stay set only if they name one of the targets.',
  },
  {
    key: 'kubernetes.deployment', env: ['DEPLOYMENT_NAME'], kind: 'string', default: 'openclaw',
    doc: 'Name of the Deployment to start and stop (the single target; see `targets` for several).',
  },
  {
    key: 'kubernetes.namespace', env: ['DEPLOYMENT_NAMESPACE'], kind: 'string',
    doc: "Namespace of the Deployment. Unset: the kubeconfig context's namespace, else the pod's own in a cluster, else `default`.",
  },
  {
    key: 'kubernetes.kubeconfig', env: ['KUBECONFIG'], kind: 'path',
    doc: 'Kubeconfig file to use outside a cluster. Unset: in-cluster service account, else `~/.kube/config`.',
  },
  {
    key: 'kubernetes.timeoutSeconds', env: ['KUBE_TIMEOUT_SECONDS'], kind: 'int', default: 10, min: 1, max: 120,
    doc: 'Time limit for one Kubernetes API request.',
  },
  {
    key: 'storage.path', env: ['CRYPTO_STORE_PATH'], kind: 'path', default: './data',
    doc: 'Directory (a persistent volume in Kubernetes) for the crypto store and the record of handled events. Files are created 0600.',
  },
  {
    key: 'storage.passphrase', env: ['CRYPTO_STORE_PASSPHRASE'], kind: 'string', secret: true,
    doc: 'Optional passphrase encrypting the crypto store at rest. Secret: may come from `CRYPTO_STORE_PASSPHRASE_FILE`.',
  },
  {
    key: 'log.level', env: ['LOG_LEVEL', 'LOGURU_LEVEL'], kind: 'enum', values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info',
    doc: 'Log level. Python names (`WARNING`, `CRITICAL`, loguru\'s `SUCCESS`) and any case are accepted; `LOGURU_LEVEL` is the old bot\'s name for it (`LOG_LEVEL` wins when both are set).',
  },
  {
    key: 'log.format', env: ['LOG_FORMAT'], kind: 'enum', values: ['json', 'pretty'], default: 'json',
    doc: '`json`: one JSON object per line (for log collectors); `pretty`: short human-readable lines for a terminal.',
  },
];

export function settingFor(key: string): Setting {
  const found = SETTINGS.find((s) => s.key === key);
  if (!found) throw new Error(`no such setting: ${key}`);
  return found;
}
