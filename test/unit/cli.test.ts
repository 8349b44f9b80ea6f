import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { generateRegistration, parseCli, VERSION, type CliAction } from '../../src/cli.ts';
import { ConfigError } from '../../src/config/config-error.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const NODE = join(ROOT, 'node_modules', '.bin', 'node');
const MAIN = join(ROOT, 'src', 'main.ts');

let dir: string;
let counter = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'openclaw-cli-test-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Generate = Extract<CliAction, { kind: 'generate-registration' }>;

function cliError(argv: readonly string[], key: string, mentions: readonly string[] = []): ConfigError {
  let caught: unknown;
  try {
    parseCli(argv, {});
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${argv.join(' ')}, got ${String(caught)}`);
  assert.equal(caught.key, key, caught.message);
  for (const text of mentions) assert.ok(caught.message.includes(text), `message should mention ${text}: ${caught.message}`);
  return caught;
}

function generateAction(argv: readonly string[]): Generate {
  const action = parseCli(argv, {});
  assert.equal(action.kind, 'generate-registration');
  return action as Generate;
}

function freshPath(): string {
  return join(dir, `registration-${++counter}.yaml`);
}

/** Python's re.match semantics (anchored at the start only), which is how Synapse tests a namespace. */
function synapseMatches(regex: string, userId: string): boolean {
  return new RegExp(`^(?:${regex})`).test(userId);
}

describe('parseCli', () => {
  test('trust: a user id by the configuration grammar, quoted whole when refused', () => {
    assert.deepEqual(parseCli(['trust', 'repin', '@Alice:example.org'], {}), { kind: 'trust', configFile: undefined, request: 'repin', userId: '@Alice:example.org', deviceId: undefined });
    cliError(['trust', 'repin', '@<b>:example.org'], 'cli', ['"@<b>:example.org"', '"<"']);
    cliError(['trust', 'repin', '@al ice:example.org'], 'cli', ['"@al ice:example.org"']);
    cliError(['trust', 'repin'], 'cli', ['full user id']);
  });

  test('import-legacy-store: --from required, pickle key file and --force optional', () => {
    assert.deepEqual(parseCli(['import-legacy-store', '--from', '/data/crypto_store'], {}), { kind: 'import-legacy-store', configFile: undefined, from: '/data/crypto_store', pickleKeyFile: undefined, force: false });
    assert.deepEqual(parseCli(['import-legacy-store', '--from', 'd', '--pickle-key-file', 'k', '--force', '-c', 'c.yaml'], {}), { kind: 'import-legacy-store', configFile: 'c.yaml', from: 'd', pickleKeyFile: 'k', force: true });
    cliError(['import-legacy-store'], '--from', ['crypto store directory']);
  });

  test('no arguments: run, config from CONFIG_FILE if set', () => {
    assert.deepEqual(parseCli([], {}), { kind: 'run', configFile: undefined });
    assert.deepEqual(parseCli([], { CONFIG_FILE: '/etc/bot.yaml' }), { kind: 'run', configFile: '/etc/bot.yaml' });
    assert.deepEqual(parseCli(['run', '-c', 'a.yaml'], { CONFIG_FILE: '/etc/bot.yaml' }), { kind: 'run', configFile: 'a.yaml' });
    assert.deepEqual(parseCli(['--config', 'b.yaml'], {}), { kind: 'run', configFile: 'b.yaml' });
  });

  test('check-config', () => {
    assert.deepEqual(parseCli(['check-config'], {}), { kind: 'check-config', configFile: undefined });
    assert.deepEqual(parseCli(['check-config', '--config', 'c.yaml'], {}), { kind: 'check-config', configFile: 'c.yaml' });
  });

  test('generate-registration with long flags', () => {
    const action = parseCli(['generate-registration', '--url', 'http://bot:9000/', '--out', 'reg.yaml', '--id', 'my-id', '--localpart', 'toggle', '--domain', 'example.org', '--force'], {});
    assert.deepEqual(action, { kind: 'generate-registration', url: 'http://bot:9000', out: 'reg.yaml', id: 'my-id', localpart: 'toggle', domain: 'example.org', force: true });
  });

  test('generate-registration defaults', () => {
    const action = parseCli(['generate-registration', '--url', 'https://bot.example.org', '--out', 'reg.yaml'], {});
    assert.deepEqual(action, { kind: 'generate-registration', url: 'https://bot.example.org', out: 'reg.yaml', id: 'openclaw-toggle', localpart: 'openclaw', domain: undefined, force: false });
  });

  test('-r -u URL -f FILE short flags', () => {
    const action = parseCli(['-r', '-u', 'http://bot:9000', '-f', '/data/reg.yaml'], {});
    assert.deepEqual(action, { kind: 'generate-registration', url: 'http://bot:9000', out: '/data/reg.yaml', id: 'openclaw-toggle', localpart: 'openclaw', domain: undefined, force: false });
  });

  test('missing --url or --out names the flag', () => {
    cliError(['generate-registration', '--out', 'reg.yaml'], '--url', ['--url']);
    cliError(['-r', '-f', 'reg.yaml'], '--url', ['--url']);
    cliError(['generate-registration', '--url', 'http://bot:9000'], '--out', ['--out']);
    cliError(['-r', '-u', 'http://bot:9000'], '--out', ['--out']);
  });

  test('a bad or non-http URL is refused', () => {
    cliError(['generate-registration', '--url', 'not a url', '--out', 'r.yaml'], '--url', ['not a url']);
    cliError(['generate-registration', '--url', 'ftp://bot', '--out', 'r.yaml'], '--url', ['ftp://bot']);
  });

  test('an invalid localpart is refused', () => {
    cliError(['generate-registration', '--url', 'http://bot:9000', '--out', 'r.yaml', '--localpart', 'Open Claw'], '--localpart', ['Open Claw']);
  });

  test('unknown commands, unknown flags and extra arguments are refused', () => {
    cliError(['frobnicate'], 'cli', ['frobnicate']);
    cliError(['--bogus'], 'cli', ['--bogus']);
    cliError(['run', 'extra'], 'cli', ['extra']);
  });

  test('--version and --help, long and short', () => {
    assert.deepEqual(parseCli(['--version'], {}), { kind: 'version' });
    assert.deepEqual(parseCli(['-v'], {}), { kind: 'version' });
    assert.deepEqual(parseCli(['--help'], {}), { kind: 'help' });
    assert.deepEqual(parseCli(['-h'], {}), { kind: 'help' });
    assert.deepEqual(parseCli(['check-config', '--help'], {}), { kind: 'help' });
    assert.match(VERSION, /^\d+\.\d+\.\d+/);
  });
});

describe('generateRegistration', () => {
  test('writes a 0600 file with every field Synapse needs', () => {
    const out = freshPath();
    const message = generateRegistration(generateAction(['generate-registration', '--url', 'http://bot:9000', '--out', out, '--domain', 'example.org']));
    assert.equal(statSync(out).mode & 0o777, 0o600);
    const reg = parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
    assert.equal(reg['id'], 'openclaw-toggle');
    assert.equal(reg['url'], 'http://bot:9000');
    const asToken = reg['as_token'];
    const hsToken = reg['hs_token'];
    assert.ok(typeof asToken === 'string' && asToken.length >= 64, 'as_token is 64+ chars');
    assert.ok(typeof hsToken === 'string' && hsToken.length >= 64, 'hs_token is 64+ chars');
    assert.notEqual(asToken, hsToken);
    assert.equal(reg['sender_localpart'], 'openclaw');
    const namespaces = reg['namespaces'] as { users: Array<{ exclusive: boolean; regex: string }> };
    assert.equal(namespaces.users.length, 1);
    const [users] = namespaces.users;
    assert.ok(users);
    assert.equal(users.exclusive, true);
    assert.ok(synapseMatches(users.regex, '@openclaw:example.org'));
    assert.ok(!synapseMatches(users.regex, '@openclawx:example.org'));
    assert.ok(!synapseMatches(users.regex, '@alice:example.org'));
    assert.ok(!synapseMatches(users.regex, '@openclaw:exampleXorg'), 'the dot in the domain is escaped');
    assert.ok(!synapseMatches(users.regex, '@openclaw:other.org'));
    assert.equal(reg['rate_limited'], false);
    assert.equal(reg['receive_ephemeral'], true);
    assert.equal(reg['de.sorunome.msc2409.push_ephemeral'], true);
    assert.equal(reg['org.matrix.msc3202'], true);
    assert.equal(reg['io.element.msc4190'], true);

    assert.ok(message.includes('app_service_config_files'), message);
    assert.ok(message.includes('msc2409_to_device_messages_enabled'), message);
    assert.ok(message.includes('msc3202_transaction_extensions'), message);
    assert.ok(message.includes(out), message);
  });

  test('without --domain the namespace matches the localpart on any server, and only it', () => {
    const out = freshPath();
    generateRegistration(generateAction(['-r', '-u', 'http://bot:9000', '-f', out]));
    const reg = parse(readFileSync(out, 'utf8')) as { namespaces: { users: Array<{ exclusive: boolean; regex: string }> } };
    const regex = reg.namespaces.users[0]?.regex ?? '';
    assert.equal(reg.namespaces.users[0]?.exclusive, true);
    assert.ok(synapseMatches(regex, '@openclaw:example.org'));
    assert.ok(synapseMatches(regex, '@openclaw:other.org'));
    assert.ok(!synapseMatches(regex, '@openclawx:example.org'));
    assert.ok(!synapseMatches(regex, '@alice:example.org'));
  });

  test('two registrations get different tokens', () => {
    const a = freshPath();
    const b = freshPath();
    generateRegistration(generateAction(['-r', '-u', 'http://bot:9000', '-f', a]));
    generateRegistration(generateAction(['-r', '-u', 'http://bot:9000', '-f', b]));
    const ra = parse(readFileSync(a, 'utf8')) as Record<string, string>;
    const rb = parse(readFileSync(b, 'utf8')) as Record<string, string>;
    assert.notEqual(ra['as_token'], rb['as_token']);
    assert.notEqual(ra['hs_token'], rb['hs_token']);
  });

  test('refuses to overwrite without --force; --force replaces and keeps 0600', () => {
    const out = freshPath();
    writeFileSync(out, 'keep me\n', { mode: 0o644 });
    let caught: unknown;
    try {
      generateRegistration(generateAction(['generate-registration', '--url', 'http://bot:9000', '--out', out]));
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof ConfigError);
    assert.equal(caught.key, '--out');
    assert.ok(caught.message.includes('--force'), caught.message);
    assert.equal(readFileSync(out, 'utf8'), 'keep me\n', 'the existing file is untouched');

    generateRegistration(generateAction(['generate-registration', '--url', 'http://bot:9000', '--out', out, '--force']));
    assert.equal(statSync(out).mode & 0o777, 0o600);
    const reg = parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
    assert.equal(reg['id'], 'openclaw-toggle');
  });
});

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runMain(args: readonly string[], env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(NODE, [MAIN, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

describe('the real entry point', () => {
  /** Only what node needs: no CONFIG_FILE, MATRIX_* or other settings leak in from the test's environment. */
  const cleanEnv = (): Record<string, string> => ({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir });

  test('generate-registration exits 0 and writes the file; no config exits 2 with one line naming homeserver.url', async () => {
    const out = join(dir, 'main-registration.yaml');
    const [generated, unconfigured] = await Promise.all([
      runMain(['generate-registration', '--url', 'http://bot:9000', '--out', out], cleanEnv()),
      runMain([], cleanEnv()),
    ]);

    assert.equal(generated.code, 0, generated.stderr);
    assert.ok(existsSync(out));
    assert.equal(statSync(out).mode & 0o777, 0o600);
    assert.ok(generated.stdout.includes('app_service_config_files'), generated.stdout);

    assert.equal(unconfigured.code, 2, unconfigured.stderr);
    const lines = unconfigured.stderr.split('\n').filter((line) => line.length > 0);
    assert.equal(lines.length, 1, `exactly one line on stderr: ${unconfigured.stderr}`);
    assert.ok(lines[0]?.includes('homeserver.url'), lines[0]);
    assert.ok(lines[0]?.includes('MATRIX_HOMESERVER'), lines[0]);
  });
});

describe('signals', () => {
  test('SIGTERM while waiting for an unreachable homeserver stops start-up cleanly with exit 0', async () => {
    const registration = join(dir, 'signal-registration.yaml');
    generateRegistration(generateAction(['generate-registration', '--url', 'http://127.0.0.1:9', '--out', registration]));
    // A kubeconfig that parses (the cluster is never reached before the homeserver answers).
    const kubeconfig = join(dir, 'signal-kubeconfig');
    writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n');
    const child = spawn(NODE, [MAIN], {
      cwd: dir,
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: dir,
        MATRIX_HOMESERVER: 'http://127.0.0.1:9', // nothing listens on the discard port
        AS_REGISTRATION_FILE: registration,
        ALLOWED_USERS: '@alice:example.org',
        CRYPTO_STORE_PATH: join(dir, 'signal-data'),
        HTTP_BIND_ADDRESS: '127.0.0.1',
        HTTP_PORT: '0',
        KUBECONFIG: kubeconfig,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    // Wait until it says it is waiting for the homeserver, then ask it to stop.
    const deadline = Date.now() + 15_000;
    while (!stdout.includes('homeserver not reachable yet') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(stdout.includes('homeserver not reachable yet'), stdout);
    const started = Date.now();
    const code = await new Promise<number | null>((resolvePromise) => {
      child.on('close', resolvePromise);
      child.kill('SIGTERM');
    });
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 5_000, 'stopped promptly');
    assert.match(stdout, /stopped during start-up/);
  });
});
