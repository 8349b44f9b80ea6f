import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import packageJson from '../package.json' with { type: 'json' };
import { buildRegistration, registrationYaml } from './appservice/registration.ts';
import { ConfigError } from './config/config-error.ts';
import { configUserIdProblem } from './matrix/ids.ts';

export const VERSION: string = packageJson.version;
export const NAME = 'openclaw-k8s-toggle-operator';

export type CliAction =
  | { readonly kind: 'run'; readonly configFile: string | undefined }
  | { readonly kind: 'check-config'; readonly configFile: string | undefined }
  | { readonly kind: 'generate-registration'; readonly url: string; readonly out: string; readonly id: string; readonly localpart: string; readonly domain: string | undefined; readonly force: boolean }
  | { readonly kind: 'trust'; readonly configFile: string | undefined; readonly request: 'repin' | 'verify'; readonly userId: string; readonly deviceId: string | undefined }
  | { readonly kind: 'import-legacy-store'; readonly configFile: string | undefined; readonly from: string; readonly pickleKeyFile: string | undefined; readonly force: boolean }
  | { readonly kind: 'version' }
  | { readonly kind: 'help' };

export const USAGE = `${NAME} ${VERSION}: start and stop a Kubernetes Deployment from Matrix chat.

Usage:
  ${NAME} [run] [-c config.yaml]          run the bot (config file optional; environment variables override it)
  ${NAME} check-config [-c config.yaml]   validate the configuration, print it with secrets masked, exit
  ${NAME} generate-registration --url URL --out FILE [--id ID] [--localpart NAME] [--domain SERVER] [--force]
  ${NAME} -r -u URL -f FILE               the same, with the flags bridge operators know
  ${NAME} trust repin @user:server        accept a user's changed cryptographic identity (run beside the bot)
  ${NAME} trust verify @user:server DEVICE   mark one device of a user as verified (policy "verified"), or approve it (policy "tofu", a user without cross-signing)
  ${NAME} --version | --help

The config file may also be given as CONFIG_FILE.`;

/** Parses argv (without node and the script); throws ConfigError('cli', …) on misuse. */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CliAction {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'generate-registration': { type: 'boolean', short: 'r' },
        url: { type: 'string', short: 'u' },
        out: { type: 'string', short: 'f' },
        id: { type: 'string' },
        localpart: { type: 'string' },
        domain: { type: 'string' },
        force: { type: 'boolean' },
        from: { type: 'string' },
        'pickle-key-file': { type: 'string' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new ConfigError('cli', `${(error as Error).message} (see --help)`);
  }
  const { values, positionals } = parsed;
  if (values.version) return { kind: 'version' };
  if (values.help) return { kind: 'help' };
  const command = positionals[0] ?? (values['generate-registration'] ? 'generate-registration' : 'run');
  const configFile = values.config ?? env['CONFIG_FILE'];
  if (command === 'trust') return parseTrust(positionals.slice(1), configFile);
  if (positionals.length > 1) throw new ConfigError('cli', `unexpected argument "${positionals[1]}" (see --help)`);
  switch (command) {
    case 'run':
      return { kind: 'run', configFile };
    case 'check-config':
      return { kind: 'check-config', configFile };
    case 'import-legacy-store':
      if (!values.from) throw new ConfigError('--from', "is required: the old bot's crypto store directory (its CRYPTO_STORE_PATH, e.g. /data/crypto_store)");
      return { kind: 'import-legacy-store', configFile, from: values.from, pickleKeyFile: values['pickle-key-file'], force: values.force ?? false };
    case 'generate-registration': {
      if (!values.url) throw new ConfigError('--url', 'is required: the address Synapse uses to reach the bot, e.g. http://openclaw-toggle:9000');
      if (!values.out) throw new ConfigError('--out', 'is required: the registration file to write');
      let url: URL;
      try {
        url = new URL(values.url);
      } catch {
        throw new ConfigError('--url', `"${values.url}" is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('--url', `"${values.url}" must be http or https`);
      const localpart = values.localpart ?? 'openclaw';
      if (!/^[a-z0-9._=\-/+]+$/.test(localpart)) throw new ConfigError('--localpart', `"${localpart}" is not a valid localpart`);
      return { kind: 'generate-registration', url: values.url.replace(/\/+$/, ''), out: values.out, id: values.id ?? 'openclaw-toggle', localpart, domain: values.domain, force: values.force ?? false };
    }
    default:
      throw new ConfigError('cli', `unknown command "${command}" (see --help)`);
  }
}

function parseTrust(args: readonly string[], configFile: string | undefined): CliAction {
  const [request, userId, deviceId, extra] = args;
  if (request !== 'repin' && request !== 'verify') throw new ConfigError('cli', 'trust needs "repin @user:server" or "verify @user:server DEVICE" (see --help)');
  if (!userId) throw new ConfigError('cli', `trust ${request} needs a full user id like @alice:example.org`);
  const problem = configUserIdProblem(userId);
  if (problem) throw new ConfigError('cli', `trust ${request} needs a full user id like @alice:example.org, not ${JSON.stringify(userId)}: ${problem}`);
  if (request === 'verify' && !deviceId) throw new ConfigError('cli', 'trust verify needs a device id after the user id');
  if (extra !== undefined || (request === 'repin' && deviceId !== undefined)) throw new ConfigError('cli', `unexpected argument "${extra ?? deviceId}" (see --help)`);
  return { kind: 'trust', configFile, request, userId, deviceId };
}

/** Writes a fresh registration (0600) and returns what to tell the operator. */
export function generateRegistration(action: Extract<CliAction, { kind: 'generate-registration' }>): string {
  const path = resolve(action.out);
  // New tokens would no longer match what Synapse loaded: never replace silently.
  if (existsSync(path) && !action.force) throw new ConfigError('--out', `${path} exists; keep it, or pass --force to replace it (then restart Synapse)`);
  const registration = buildRegistration({ id: action.id, url: action.url, senderLocalpart: action.localpart, domain: action.domain });
  // A fresh 0600 file renamed into place: the tokens are never readable by others, even with --force.
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, registrationYaml(registration), { mode: 0o600, flag: 'wx' });
  renameSync(temp, path);
  return [
    `Wrote ${path} (mode 0600; it holds the appservice tokens).`,
    'Add to homeserver.yaml, then restart Synapse:',
    `  app_service_config_files: [${path}]`,
    '  experimental_features: { msc2409_to_device_messages_enabled: true, msc3202_transaction_extensions: true }',
    `Then run the bot with AS_REGISTRATION_FILE=${path} (or appservice.registration in its config).`,
  ].join('\n');
}
