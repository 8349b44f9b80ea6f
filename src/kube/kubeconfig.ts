/**
 * Where the API server is and how to prove who we are: a pod's service account, or a kubeconfig
 * (its current context). Read once at start-up; what it names that can change while the bot runs
 * (a token file, an exec plugin's answer) is read again by `Credentials`.
 *
 * Supported, as kubectl reads them: `server`, `certificate-authority(-data)`,
 * `insecure-skip-tls-verify`, `tls-server-name`; users with `token`, `tokenFile`, a client
 * certificate and key (inline data or files), or an `exec` credential plugin
 * (client.authentication.k8s.io/v1 and v1beta1); the context's namespace; several files in
 * KUBECONFIG (the first file that sets a name wins). Anything else that changes how to connect
 * or authenticate (`auth-provider`, basic auth, impersonation, `proxy-url`) is refused in one
 * line naming it, rather than silently ignored.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';

export const SERVICE_ACCOUNT_DIR = 'var/run/secrets/kubernetes.io/serviceaccount';

export interface ExecConfig {
  readonly apiVersion: string;
  /** As written, or resolved against the kubeconfig's directory when it is a relative path. */
  readonly command: string;
  readonly args: readonly string[];
  readonly env: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  /** The cluster as the plugin sees it in KUBERNETES_EXEC_INFO when `provideClusterInfo` is set. */
  readonly cluster: Record<string, unknown> | undefined;
  readonly installHint: string | undefined;
}

export interface UserAuth {
  readonly token?: string;
  /** Absolute path of a file holding the token, re-read when it changes (in-cluster, `tokenFile`). */
  readonly tokenFile?: string;
  readonly clientCert?: string;
  readonly clientKey?: string;
  readonly exec?: ExecConfig;
}

export interface ClusterConfig {
  /** `https://host:port` (no trailing slash). */
  readonly server: string;
  /** PEM bundle to trust; undefined: the system's roots. */
  readonly ca: string | undefined;
  readonly insecureSkipTlsVerify: boolean;
  readonly tlsServerName: string | undefined;
  /** The context's namespace, or the pod's own in a cluster. */
  readonly namespace: string | undefined;
  readonly user: UserAuth;
  /** For messages: the kubeconfig path(s) or "the in-cluster service account". */
  readonly source: string;
}

/** A kubeconfig that parsed but cannot be used; `kubeconfigError` makes it the one config line. */
export class KubeconfigProblem extends Error {
  /** The file(s); undefined when there is no configuration at all (the message says it all). */
  readonly where: string | undefined;
  constructor(where: string | undefined, reason: string) {
    super(reason);
    this.name = 'KubeconfigProblem';
    this.where = where;
  }
}

export interface LoadOptions {
  /** One path or several joined with ':' (as KUBECONFIG). */
  readonly kubeconfigPath?: string | undefined;
  readonly env?: NodeJS.ProcessEnv;
  /** Prefix of the in-cluster files (tests lay a pod's directory out elsewhere); '' in production. */
  readonly serviceAccountRoot?: string;
}

/** A kubeconfig path when given; else the pod's service account in a cluster; else ~/.kube/config. */
export function loadClusterConfig(options: LoadOptions = {}): ClusterConfig {
  const env = options.env ?? process.env;
  if (options.kubeconfigPath) return fromKubeconfig(options.kubeconfigPath.split(delimiter).filter(Boolean));
  if (env['KUBERNETES_SERVICE_HOST']) return inCluster(env, options.serviceAccountRoot ?? '');
  // A given environment without HOME (tests) has no ~/.kube/config: the machine's own must not leak in.
  const home = env['HOME'] ?? (env === process.env ? homedir() : undefined);
  const path = join(home ?? '~', '.kube', 'config');
  if (home === undefined || !existsSync(path)) {
    throw new KubeconfigProblem(undefined, `no Kubernetes configuration: not in a cluster (KUBERNETES_SERVICE_HOST unset), KUBECONFIG unset, and no ${path}`);
  }
  return fromKubeconfig([path]);
}

function inCluster(env: NodeJS.ProcessEnv, root: string): ClusterConfig {
  const dir = join(root.replace(/\/+$/, '') || '/', SERVICE_ACCOUNT_DIR);
  const host = env['KUBERNETES_SERVICE_HOST'] as string;
  const port = env['KUBERNETES_SERVICE_PORT'] || '443';
  let namespace: string | undefined;
  try { namespace = readFileSync(join(dir, 'namespace'), 'utf8').trim() || undefined; } catch { /* optional */ }
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    insecureSkipTlsVerify: false,
    tlsServerName: undefined,
    namespace,
    user: { tokenFile: join(dir, 'token') },
    source: 'the in-cluster service account',
  };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Named { readonly dir: string; readonly value: Obj }

function fromKubeconfig(paths: readonly string[]): ClusterConfig {
  const where = paths.join(delimiter);
  const fail = (reason: string): never => { throw new KubeconfigProblem(where, reason); };
  const clusters = new Map<string, Named>();
  const users = new Map<string, Named>();
  const contexts = new Map<string, Named>();
  let current: string | undefined;
  for (const path of paths) {
    const raw: unknown = parse(readFileSync(path, 'utf8'));
    if (raw === null || raw === undefined) continue; // an empty file, as kubectl allows
    if (!isObj(raw)) fail('not a YAML mapping');
    const doc = raw as Obj;
    const dir = dirname(resolve(path));
    for (const [key, into, inner] of [['clusters', clusters, 'cluster'], ['users', users, 'user'], ['contexts', contexts, 'context']] as const) {
      const list = doc[key];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) fail(`${key} must be a list`);
      for (const entry of list as unknown[]) {
        if (!isObj(entry) || typeof entry['name'] !== 'string') fail(`every entry of ${key} needs a name`);
        const e = entry as Obj;
        const value = e[inner] ?? {};
        if (!isObj(value)) fail(`${key} "${String(e['name'])}": ${inner} must be a mapping`);
        if (!into.has(e['name'] as string)) into.set(e['name'] as string, { dir, value: value as Obj });
      }
    }
    if (current === undefined && typeof doc['current-context'] === 'string' && doc['current-context'] !== '') current = doc['current-context'];
  }
  const noCluster = 'no current cluster (check current-context, contexts and clusters)';
  const context = current === undefined ? undefined : contexts.get(current)?.value;
  if (!context || typeof context['cluster'] !== 'string') return fail(noCluster);
  const cluster = clusters.get(context['cluster']);
  if (!cluster || typeof cluster.value['server'] !== 'string' || cluster.value['server'] === '') return fail(noCluster);
  const userName = typeof context['user'] === 'string' ? context['user'] : undefined;
  const user = userName === undefined ? undefined : users.get(userName);
  if (userName !== undefined && !user) fail(`user "${userName}" of context "${current}" is not in users`);
  const c = cluster.value;
  const server = (c['server'] as string).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(server)) fail(`cluster "${context['cluster']}": server ${JSON.stringify(server)} is not an http(s) URL`);
  if (c['proxy-url'] !== undefined) fail(`cluster "${context['cluster']}": proxy-url is not supported (the bot connects to the API server directly)`);
  const insecure = c['insecure-skip-tls-verify'] === true;
  const ca = pem(c, 'certificate-authority', cluster.dir, `cluster "${context['cluster']}"`, fail);
  if (insecure && ca !== undefined) fail(`cluster "${context['cluster']}": certificate-authority and insecure-skip-tls-verify cannot be used together (as in kubectl)`);
  const tlsServerName = typeof c['tls-server-name'] === 'string' && c['tls-server-name'] !== '' ? c['tls-server-name'] : undefined;
  const auth = user ? userAuth(user, `user "${userName}"`, fail, { server, ca, insecure, tlsServerName, config: c }) : {};
  const namespace = typeof context['namespace'] === 'string' && context['namespace'] !== '' ? context['namespace'] : undefined;
  return { server, ca, insecureSkipTlsVerify: insecure, tlsServerName, namespace, user: auth, source: where };
}

interface ClusterInfo { server: string; ca: string | undefined; insecure: boolean; tlsServerName: string | undefined; config: Obj }

function userAuth({ dir, value: u }: Named, who: string, fail: (reason: string) => never, cluster: ClusterInfo): UserAuth {
  const provider = u['auth-provider'];
  if (provider !== undefined) {
    const name = isObj(provider) && typeof provider['name'] === 'string' ? ` "${provider['name']}"` : '';
    fail(`${who}: auth-provider${name} is not supported (the legacy plugins are gone from kubectl too): use an exec credential plugin`);
  }
  if (u['username'] !== undefined || u['password'] !== undefined) fail(`${who}: basic authentication (username/password) is not supported`);
  for (const key of ['as', 'as-uid', 'as-groups', 'as-user-extra']) {
    if (u[key] !== undefined) fail(`${who}: impersonation (${key}) is not supported`);
  }
  const str = (key: string): string | undefined => (typeof u[key] === 'string' && u[key] !== '' ? u[key] : undefined);
  const token = str('token');
  const tokenFile = str('tokenFile') ?? str('token-file');
  const clientCert = pem(u, 'client-certificate', dir, who, fail);
  const clientKey = pem(u, 'client-key', dir, who, fail);
  if ((clientCert === undefined) !== (clientKey === undefined)) fail(`${who}: a client certificate needs both client-certificate and client-key`);
  const exec = u['exec'] === undefined || u['exec'] === null ? undefined : execConfig(u['exec'], dir, who, fail, cluster);
  return {
    // An inline token wins over a token file, and either over an exec plugin (as client-go does).
    ...(token !== undefined ? { token } : tokenFile !== undefined ? { tokenFile: isAbsolute(tokenFile) ? tokenFile : resolve(dir, tokenFile) } : {}),
    ...(clientCert !== undefined && clientKey !== undefined ? { clientCert, clientKey } : {}),
    ...(exec && token === undefined && tokenFile === undefined ? { exec } : {}),
  };
}

const EXEC_VERSIONS = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'];

function execConfig(raw: unknown, dir: string, who: string, fail: (reason: string) => never, cluster: ClusterInfo): ExecConfig {
  if (!isObj(raw)) return fail(`${who}: exec must be a mapping`);
  const apiVersion = raw['apiVersion'];
  if (typeof apiVersion !== 'string' || !EXEC_VERSIONS.includes(apiVersion)) {
    fail(`${who}: exec apiVersion ${JSON.stringify(apiVersion ?? null)} is not supported (use ${EXEC_VERSIONS.join(' or ')})`);
  }
  const command = raw['command'];
  if (typeof command !== 'string' || command === '') return fail(`${who}: exec needs a command`);
  if (raw['interactiveMode'] === 'Always') fail(`${who}: exec interactiveMode Always needs a terminal, and the bot has none`);
  const args = raw['args'] ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) fail(`${who}: exec args must be a list of strings`);
  const env = raw['env'] ?? [];
  if (!Array.isArray(env) || !env.every((e) => isObj(e) && typeof e['name'] === 'string' && typeof e['value'] === 'string')) {
    fail(`${who}: exec env must be a list of {name, value}`);
  }
  const ext = cluster.config['extensions'];
  const extension = Array.isArray(ext) ? (ext as unknown[]).find((e) => isObj(e) && e['name'] === 'client.authentication.k8s.io/exec') as Obj | undefined : undefined;
  return {
    apiVersion: apiVersion as string,
    // client-go: a command with a path separator is relative to the kubeconfig; a bare name is looked up in PATH.
    command: command.includes('/') && !isAbsolute(command) ? resolve(dir, command) : command,
    args: args as string[],
    env: env as Array<{ name: string; value: string }>,
    cluster: raw['provideClusterInfo'] === true ? {
      server: cluster.server,
      ...(cluster.tlsServerName !== undefined ? { 'tls-server-name': cluster.tlsServerName } : {}),
      ...(cluster.insecure ? { 'insecure-skip-tls-verify': true } : {}),
      ...(cluster.ca !== undefined ? { 'certificate-authority-data': Buffer.from(cluster.ca).toString('base64') } : {}),
      ...(extension?.['extension'] !== undefined ? { config: extension['extension'] } : {}),
    } : undefined,
    installHint: typeof raw['installHint'] === 'string' ? raw['installHint'] : undefined,
  };
}

/** `<key>-data` (base64) or `<key>` (a file, relative to the kubeconfig), as PEM text. */
function pem(o: Obj, key: string, dir: string, who: string, fail: (reason: string) => never): string | undefined {
  const data = o[`${key}-data`];
  if (typeof data === 'string' && data !== '') {
    const text = Buffer.from(data, 'base64').toString('utf8');
    if (!text.includes('-----BEGIN')) fail(`${who}: ${key}-data is not base64 of a PEM block`);
    return text;
  }
  const file = o[key];
  if (typeof file !== 'string' || file === '') return undefined;
  const path = isAbsolute(file) ? file : resolve(dir, file);
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    return fail(`${who}: cannot read ${key} ${path} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

/** The namespace of the kubeconfig's current context, or undefined (any problem is reported later, by the loader). */
export function contextNamespace(options: LoadOptions): string | undefined {
  try {
    const env = options.env ?? process.env;
    if (!options.kubeconfigPath && env['KUBERNETES_SERVICE_HOST']) return undefined;
    return loadClusterConfig(options).namespace;
  } catch {
    return undefined;
  }
}
