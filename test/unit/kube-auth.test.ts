/**
 * Kubeconfig and authentication of the lean client against the kube simulator, which tells which
 * identity each request came with: client certificates (inline and files, made by openssl with
 * the simulator's CA), CA file / insecure-skip-tls-verify / tls-server-name, exec credential
 * plugins (v1 and v1beta1, shell scripts written here: caching until expirationTimestamp, a 401
 * running the plugin again, cluster info, failures in one sentence), several files in KUBECONFIG,
 * and every setting that is refused in one line naming it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';
import { KubeErrorDetail } from '../../src/kube/api-errors.ts';
import { KubeError, type DeploymentTarget } from '../../src/kube/kube.ts';
import { kubeconfigError } from '../../src/kube/kubeconfig-error.ts';
import { loadClusterConfig } from '../../src/kube/kubeconfig.ts';
import { createKube, type LeanKube, type LeanKubeOptions } from '../../src/kube/lean-kube.ts';
import { createLogger } from '../../src/log.ts';

const NS = 'agents';
const web: DeploymentTarget = { namespace: NS, name: 'web' };
const TOKEN_USER = 'system:serviceaccount:agents:toggle';
const CERT_USER = 'cert-user';

let dir: string;
let sim: KubeSimulator;
let cert: { cert: string; key: string };
let counter = 0;

type Obj = Record<string, unknown>;

/** Writes a kubeconfig (0600) naming the simulator; `cluster` and `user` are merged into the defaults. */
async function kubeconfig(user: Obj, cluster: Obj = {}, context: Obj = {}, name = `kc-${++counter}.yaml`): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    clusters: [{ name: 'sim', cluster: { server: sim.url, 'certificate-authority-data': Buffer.from(sim.caPem).toString('base64'), ...cluster } }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'c', context: { cluster: 'sim', user: 'u', ...context } }],
  }), { mode: 0o600 });
  return path;
}

const kubes: LeanKube[] = [];
function kube(path: string, extra: Partial<LeanKubeOptions> = {}): LeanKube {
  const k = createKube({ kubeconfigPath: path, requestTimeoutMs: 2_000, ...extra });
  kubes.push(k);
  return k;
}

const lastUser = (): string | undefined => sim.requests.at(-1)?.user;

/** A credential plugin: a shell script that counts its runs in `<name>.runs` and prints `output` (a shell word). */
async function plugin(name: string, body: string): Promise<{ path: string; runs: () => Promise<number> }> {
  const path = join(dir, name);
  const runs = `${path}.runs`;
  await writeFile(path, `#!/bin/sh\necho run >> '${runs}'\n${body}\n`, { mode: 0o700 });
  await chmod(path, 0o700);
  return { path, runs: async () => (await readFile(runs, 'utf8').catch(() => '')).split('\n').filter(Boolean).length };
}

const credential = (apiVersion: string, status: Obj): string => `cat <<'EOF'\n${JSON.stringify({ apiVersion, kind: 'ExecCredential', status })}\nEOF`;
const V1 = 'client.authentication.k8s.io/v1';
const V1BETA1 = 'client.authentication.k8s.io/v1beta1';

async function refusedWith(promise: Promise<unknown>, kind: string): Promise<KubeError> {
  const e = await promise.then(() => assert.fail('expected a KubeError'), (error: unknown) => error);
  assert.ok(e instanceof KubeError, String(e));
  assert.equal(e.kind, kind, e.human);
  assert.ok(e.cause instanceof KubeErrorDetail);
  return e;
}

/** The one config line the bot prints for this kubeconfig. */
function configLine(path: string): string {
  try {
    createKube({ kubeconfigPath: path, requestTimeoutMs: 1_000 });
  } catch (error) {
    return kubeconfigError(error, path).message;
  }
  return assert.fail('accepted');
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kube-auth-test-'));
  const identity = { canGet: true, canPatch: true, canWatch: true };
  sim = await startKubeSimulator({
    dir, readyDelayMs: 0, deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
    tokens: { 'good-token': { user: TOKEN_USER, ...identity } },
    certificates: { [CERT_USER]: { user: CERT_USER, ...identity } },
  });
  cert = await sim.issueClientCertificate(CERT_USER);
});

after(async () => {
  await Promise.all(kubes.map((k) => k.close()));
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('clusters and client certificates', () => {
  test('a client certificate and key as inline data', async () => {
    const k = kube(await kubeconfig({ 'client-certificate-data': Buffer.from(cert.cert).toString('base64'), 'client-key-data': Buffer.from(cert.key).toString('base64') }));
    assert.equal((await k.status(web)).desired, 0);
    assert.equal(lastUser(), CERT_USER);
  });

  test('a client certificate and key as files, relative to the kubeconfig; a CA file likewise', async () => {
    await mkdir(join(dir, 'pki'), { recursive: true });
    await writeFile(join(dir, 'pki', 'bot.crt'), cert.cert);
    await writeFile(join(dir, 'pki', 'bot.key'), cert.key, { mode: 0o600 });
    await writeFile(join(dir, 'pki', 'ca.crt'), sim.caPem);
    const k = kube(await kubeconfig({ 'client-certificate': 'pki/bot.crt', 'client-key': 'pki/bot.key' },
      { 'certificate-authority-data': undefined, 'certificate-authority': 'pki/ca.crt' }));
    assert.equal((await k.scale(web, 0)).desired, 0);
    assert.equal(lastUser(), CERT_USER);
  });

  test('a certificate the CA did not sign identifies nobody (401)', async () => {
    const other = await startKubeSimulator({ dir: join(dir, 'other-ca'), readyDelayMs: 0, deployments: [], tokens: {} });
    const foreign = await other.issueClientCertificate(CERT_USER);
    await other.stop();
    const k = kube(await kubeconfig({ 'client-certificate-data': Buffer.from(foreign.cert).toString('base64'), 'client-key-data': Buffer.from(foreign.key).toString('base64') }));
    await refusedWith(k.status(web), 'unauthorized');
  });

  test('no CA: refused as TLS; insecure-skip-tls-verify: accepted; tls-server-name checked against the certificate', async () => {
    const noCa = kube(await kubeconfig({ token: 'good-token' }, { 'certificate-authority-data': undefined }));
    const tls = await refusedWith(noCa.status(web), 'unreachable');
    assert.match(tls.human, /is unreachable \(TLS: [A-Z_]+\)$/);
    const insecure = kube(await kubeconfig({ token: 'good-token' }, { 'certificate-authority-data': undefined, 'insecure-skip-tls-verify': true }));
    assert.equal((await insecure.status(web)).desired, 0);
    const named = kube(await kubeconfig({ token: 'good-token' }, { 'tls-server-name': 'localhost' }));
    assert.equal((await named.status(web)).desired, 0);
    const misnamed = kube(await kubeconfig({ token: 'good-token' }, { 'tls-server-name': 'api.example.org' }));
    assert.equal((await refusedWith(misnamed.status(web), 'unreachable')).human, `the Kubernetes API at ${sim.url} is unreachable (TLS: ERR_TLS_CERT_ALTNAME_INVALID)`);
  });

  test('KUBECONFIG with several files: each name from the first file that has it', async () => {
    const first = join(dir, 'first.yaml');
    await writeFile(first, stringify({ 'current-context': 'c', contexts: [{ name: 'c', context: { cluster: 'sim', user: 'u', namespace: 'from-first' } }] }));
    const second = await kubeconfig({ token: 'good-token' }, {}, { namespace: 'from-second' });
    const both = `${first}${delimiter}${second}`;
    assert.equal(loadClusterConfig({ kubeconfigPath: both }).namespace, 'from-first');
    assert.equal((await kube(both).status(web)).desired, 0);
    assert.equal(lastUser(), TOKEN_USER);
  });
});

describe('exec credential plugins', () => {
  test('v1: the token is used and kept until its expirationTimestamp; the plugin gets KUBERNETES_EXEC_INFO, args and env', async () => {
    const info = join(dir, 'exec-info.json');
    const p = await plugin('v1-plugin.sh', [
      `printf '%s' "$KUBERNETES_EXEC_INFO" > '${info}'`,
      `[ "$1" = "--audience" ] && [ "$PLUGIN_MODE" = "good" ] || exit 9`,
      credential(V1, { token: 'good-token', expirationTimestamp: new Date(Date.now() + 3600_000).toISOString() }),
    ].join('\n'));
    const k = kube(await kubeconfig({ exec: { apiVersion: V1, command: p.path, args: ['--audience', 'sim'], env: [{ name: 'PLUGIN_MODE', value: 'good' }],
      interactiveMode: 'Never', provideClusterInfo: true } }));
    await k.status(web);
    await k.scale(web, 0);
    await k.ping(web);
    assert.equal(lastUser(), TOKEN_USER);
    assert.equal(await p.runs(), 1, 'one run for three requests');
    const sent = JSON.parse(await readFile(info, 'utf8')) as { apiVersion: string; kind: string; spec: { interactive: boolean; cluster: Obj } };
    assert.equal(sent.apiVersion, V1);
    assert.equal(sent.kind, 'ExecCredential');
    assert.equal(sent.spec.interactive, false);
    assert.equal(sent.spec.cluster['server'], sim.url);
    assert.equal(Buffer.from(String(sent.spec.cluster['certificate-authority-data']), 'base64').toString(), sim.caPem);
  });

  test('v1beta1, a relative command (relative to the kubeconfig), a token already expired: the plugin runs for every request', async () => {
    const p = await plugin('beta-plugin.sh', credential(V1BETA1, { token: 'good-token', expirationTimestamp: new Date(Date.now() - 1000).toISOString() }));
    const k = kube(await kubeconfig({ exec: { apiVersion: V1BETA1, command: './beta-plugin.sh' } }));
    await k.status(web);
    await k.status(web);
    assert.equal(await p.runs(), 2);
  });

  test('a client certificate from the plugin', async () => {
    const p = await plugin('cert-plugin.sh', credential(V1, { clientCertificateData: cert.cert, clientKeyData: cert.key }));
    const k = kube(await kubeconfig({ exec: { apiVersion: V1, command: p.path, interactiveMode: 'IfAvailable' } }));
    await k.status(web);
    assert.equal(lastUser(), CERT_USER);
  });

  test('a token refused with 401 (revoked before it expired): the plugin runs again and the request is retried once', async () => {
    // First run: a token the API does not know, valid for an hour; later runs: the good one.
    const p = await plugin('rotating-plugin.sh', [
      `if [ "$(wc -l < '${join(dir, 'rotating-plugin.sh.runs')}')" -le 1 ]; then`,
      credential(V1, { token: 'revoked-token', expirationTimestamp: new Date(Date.now() + 3600_000).toISOString() }),
      'else',
      credential(V1, { token: 'good-token' }),
      'fi',
    ].join('\n'));
    const k = kube(await kubeconfig({ exec: { apiVersion: V1, command: p.path } }));
    assert.equal((await k.status(web)).desired, 0);
    assert.equal(await p.runs(), 2);
    assert.deepEqual(sim.requests.slice(-2).map((r) => [r.status, r.user]), [[401, undefined], [200, TOKEN_USER]]);
  });

  test('failures: one unauthorized sentence naming the plugin; the detail (stderr, install hint) for the log only; no token in the log', async () => {
    const failing = await plugin('failing-plugin.sh', `echo 'boom: no session' >&2\nexit 3`);
    const lines: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _e, done) { lines.push(chunk.toString()); done(); } });
    const k1 = kube(await kubeconfig({ exec: { apiVersion: V1, command: failing.path } }), { logger: createLogger({ level: 'debug' }, sink) });
    const e1 = await refusedWith(k1.status(web), 'unauthorized');
    assert.equal(e1.human, 'unauthorized: the kubeconfig\'s credential plugin failing-plugin.sh failed (exit 3)');
    assert.equal((e1.cause as KubeErrorDetail).message, 'boom: no session');
    const k2 = kube(await kubeconfig({ exec: { apiVersion: V1, command: 'no-such-plugin-anywhere', installHint: 'install it with: apt install nothing' } }));
    const e2 = await refusedWith(k2.status(web), 'unauthorized');
    assert.equal(e2.human, 'unauthorized: the kubeconfig\'s credential plugin no-such-plugin-anywhere was not found');
    assert.equal((e2.cause as KubeErrorDetail).message, 'install it with: apt install nothing');
    const garbage = await plugin('garbage-plugin.sh', 'echo not json');
    const e3 = await refusedWith(kube(await kubeconfig({ exec: { apiVersion: V1, command: garbage.path } })).status(web), 'unauthorized');
    assert.equal(e3.human, 'unauthorized: the kubeconfig\'s credential plugin garbage-plugin.sh printed no ExecCredential');
    const wrongVersion = await plugin('version-plugin.sh', credential(V1BETA1, { token: 'good-token' }));
    await refusedWith(kube(await kubeconfig({ exec: { apiVersion: V1, command: wrongVersion.path } })).status(web), 'unauthorized');
    // A working plugin, logged at debug: its token appears nowhere.
    const good = await plugin('quiet-plugin.sh', credential(V1, { token: 'good-token' }));
    const k5 = kube(await kubeconfig({ exec: { apiVersion: V1, command: good.path } }), { logger: createLogger({ level: 'debug' }, sink) });
    await k5.scale(web, 0);
    assert.ok(lines.length > 0);
    assert.doesNotMatch(lines.join(''), /good-token/);
  });
});

describe('what the client refuses: one config line naming it', () => {
  test('no configuration at all: not in a cluster, no KUBECONFIG, no ~/.kube/config', () => {
    const home = join(dir, 'empty-home');
    let line = '';
    try { createKube({ requestTimeoutMs: 1_000, env: { HOME: home } }); } catch (error) { line = kubeconfigError(error, undefined).message; }
    assert.equal(line, `kubernetes.kubeconfig: no Kubernetes configuration: not in a cluster (KUBERNETES_SERVICE_HOST unset), KUBECONFIG unset, and no ${home}/.kube/config`);
  });

  const cases: Array<[string, Obj, Obj, RegExp]> = [
    ['a legacy auth-provider', { 'auth-provider': { name: 'gcp', config: {} } }, {}, /user "u": auth-provider "gcp" is not supported .*use an exec credential plugin$/],
    ['basic authentication', { username: 'admin', password: 'secret' }, {}, /user "u": basic authentication \(username\/password\) is not supported$/],
    ['impersonation', { token: 't', as: 'someone' }, {}, /user "u": impersonation \(as\) is not supported$/],
    ['an exec apiVersion no longer served', { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } }, {}, /exec apiVersion "client\.authentication\.k8s\.io\/v1alpha1" is not supported/],
    ['an interactive-only plugin', { exec: { apiVersion: V1, command: 'x', interactiveMode: 'Always' } }, {}, /interactiveMode Always needs a terminal/],
    ['a certificate without its key', { 'client-certificate-data': Buffer.from('-----BEGIN CERTIFICATE-----').toString('base64') }, {}, /needs both client-certificate and client-key$/],
    ['a proxy', { token: 't' }, { 'proxy-url': 'http://proxy:3128' }, /cluster "sim": proxy-url is not supported/],
    ['a CA together with insecure-skip-tls-verify', { token: 't' }, { 'insecure-skip-tls-verify': true }, /certificate-authority and insecure-skip-tls-verify cannot be used together/],
    ['a client-key file that is not there', { 'client-certificate': 'nope.crt', 'client-key': 'nope.key' }, {}, /cannot read client-certificate .*nope\.crt \(ENOENT\)$/],
  ];
  for (const [what, user, cluster, expected] of cases) {
    test(what, async () => {
      const path = await kubeconfig(user, cluster);
      const line = configLine(path);
      assert.ok(line.startsWith(`kubernetes.kubeconfig: ${path} is not a usable kubeconfig: `), line);
      assert.match(line, expected);
      assert.doesNotMatch(line, /\n|secret/);
    });
  }
});
