/**
 * A **simulated** Kubernetes API server, for tests and the local demo. It is not Kubernetes.
 *
 * It speaks the real HTTPS API for the few endpoints this project uses (apps/v1 Deployment and its
 * autoscaling/v1 `scale` subresource, list and watch of Deployments (kube-simulator-watch.ts), the
 * creation of events.k8s.io/v1 Events (kube-simulator-events.ts), plus
 * `/version` and `/apis/apps/v1` discovery), answers with real `Status` objects
 * (401/403/404/409/415/422), checks bearer tokens and client certificates the way RBAC would, and
 * runs a tiny controller that makes the ready counts follow `spec.replicas` after `readyDelayMs`.
 * TLS uses a CA and server certificate generated at start with the `openssl` CLI, and
 * `kubeconfigPath` is a real kubeconfig naming that CA, so a client talks to it exactly as to a cluster.
 */
import { execFile } from 'node:child_process';
import { randomUUID, X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { createEvent, eventsForbidden } from './kube-simulator-events.ts';
import { HttpStatus, invalidReplicas, patchScale } from './kube-simulator-patch.ts';
import { nameFromFieldSelector, SimulatorWatches, type WatchRequest } from './kube-simulator-watch.ts';

export interface SimulatedDeployment {
  readonly namespace: string;
  readonly name: string;
  readonly replicas: number;
  readonly image?: string;
}

/** What a bearer token may do: `get` on deployments(/scale), `patch`/`update` on deployments/scale. */
export interface SimulatedIdentity {
  /** e.g. `system:serviceaccount:ns:sa` */
  readonly user: string;
  readonly canGet: boolean;
  readonly canPatch: boolean;
  /** `list` and `watch` on deployments (narrowed to one name by a fieldSelector, as RBAC's resourceNames allow). */
  readonly canWatch?: boolean;
  /** As a Role's resourceNames: every verb only on these Deployments. Unset: any Deployment. */
  readonly resourceNames?: readonly string[];
  /** `create` on events.k8s.io events in any namespace (resourceNames cannot narrow a create). */
  readonly canCreateEvents?: boolean;
}

export interface KubeSimulatorOptions {
  readonly deployments: readonly SimulatedDeployment[];
  /** bearer token → identity; unknown or missing tokens get 401. */
  readonly tokens: Readonly<Record<string, SimulatedIdentity>>;
  /** Client certificate common name → identity (certificates from `issueClientCertificate`). */
  readonly certificates?: Readonly<Record<string, SimulatedIdentity>>;
  /** How often an open watch with bookmarks gets one (the real server: about once a minute). */
  readonly bookmarkIntervalMs?: number;
  /** How long the simulated controller takes to make pods ready (or gone) after a scale. */
  readonly readyDelayMs: number;
  readonly host?: string;
  readonly port?: number;
  /** Where the CA, server certificate and kubeconfig are written. */
  readonly dir: string;
}

export interface SimulatorRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly user: string | undefined;
  /** 0 while unanswered (or for hung / closed requests, and answers the client was gone for). */
  status: number;
}

/**
 * Makes the next `count` (default 1) requests that `match` (default: all but `/version` and the
 * list/watch of the collection, which a watching client makes at times of its own) fail:
 * with an HTTP status (a `Status` body), by never answering (`hang`), or by closing the socket.
 * Three simulator faults model writes whose answer is lost, each as a real API server can show it:
 * - `answer-late`: the request is applied at once, its answer leaves `delayMs` later (an overloaded
 *   server or a slow proxy after the etcd commit); a client that gave up meanwhile gets nothing.
 * - `apply-then-close`: the request is applied, then the connection drops without an answer (the
 *   server or a load balancer restarting just after the commit).
 * - `apply-late`: the request waits `delayMs` before it is applied; if its client disconnected by then
 *   it is never applied, as the real server cancels a request's context when its client goes away.
 */
export type SimulatorFailure = {
  readonly count?: number;
  readonly match?: (request: { method: string; path: string }) => boolean;
} & (
  | { readonly status: number; readonly message?: string; readonly reason?: string }
  | { readonly mode: 'hang' | 'close' | 'apply-then-close' }
  | { readonly mode: 'answer-late' | 'apply-late'; readonly delayMs: number }
);

export type SimulatorChange =
  | { readonly type: 'scaled'; readonly namespace: string; readonly name: string; readonly from: number; readonly to: number }
  | { readonly type: 'settled'; readonly namespace: string; readonly name: string; readonly ready: number; readonly desired: number };

export interface KubeSimulator {
  readonly url: string;
  readonly kubeconfigPath: string;
  readonly caPem: string;
  /** Every request received, in order. */
  readonly requests: SimulatorRequest[];
  replicas(namespace: string, name: string): number | undefined;
  /** The Deployment object as `GET` would return it, or undefined. */
  deployment(namespace: string, name: string): Record<string, unknown> | undefined;
  onChange(listener: (change: SimulatorChange) => void): () => void;
  setFailure(failure: SimulatorFailure): void;
  clearFailures(): void;
  /** Sets spec.replicas as another client would (`kubectl scale`), behind the bot's back. */
  scale(namespace: string, name: string, replicas: number): void;
  /** Watches open now. */
  readonly openWatches: number;
  /** The Events created (not dry-run) in a namespace, oldest first, as the server stored them. */
  events(namespace: string): Array<Record<string, unknown>>;
  /** Closes every open watch; with `compact`, older resourceVersions then get 410 (an API server restart). */
  dropWatches(options?: { compact?: boolean }): void;
  /** Open watches receive nothing more, without being closed (a half-open connection). */
  freezeWatches(): void;
  /** A client certificate and key (PEM) for `cn`, signed by the simulator's CA. */
  issueClientCertificate(cn: string): Promise<{ cert: string; key: string }>;
  writeKubeconfig(path: string, token: string, namespace?: string): Promise<void>;
  addDeployment(deployment: SimulatedDeployment): void;
  deleteDeployment(namespace: string, name: string): boolean;
  stop(): Promise<void>;
}

interface DeploymentState {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly created: string;
  readonly image: string;
  resourceVersion: string;
  generation: number;
  replicas: number;
  observed: { generation: number; replicas: number; ready: number; available: number; updated: number };
  timer: NodeJS.Timeout | undefined;
}

const run = promisify(execFile);
const MAX_BODY = 1 << 20;

/** Generates (once per dir) an EC P-256 CA and a server certificate for 127.0.0.1 / localhost. */
async function ensureCertificates(dir: string): Promise<{ ca: string; key: string; cert: string }> {
  const file = (name: string): string => join(dir, name);
  try {
    const [ca, key, cert] = await Promise.all(['ca.crt', 'server.key', 'server.crt'].map((n) => readFile(file(n), 'utf8')));
    return { ca: ca!, key: key!, cert: cert! };
  } catch {
    // not there yet: generate below
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '30',
    '-subj', '/CN=kube-simulator-ca', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=kube-simulator']);
  await writeFile(file('server.ext'), [
    'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost', 'authorityKeyIdentifier=keyid', 'subjectKeyIdentifier=hash', '',
  ].join('\n'));
  await run('openssl', ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '30', '-extfile', file('server.ext'), '-out', file('server.crt')]);
  const [ca, key, cert] = await Promise.all(['ca.crt', 'server.key', 'server.crt'].map((n) => readFile(file(n), 'utf8')));
  return { ca: ca!, key: key!, cert: cert! };
}

export async function startKubeSimulator(options: KubeSimulatorOptions): Promise<KubeSimulator> {
  await mkdir(options.dir, { recursive: true });
  const tls = await ensureCertificates(options.dir);
  const deployments = new Map<string, DeploymentState>();
  const listeners = new Set<(change: SimulatorChange) => void>();
  const failures: Array<SimulatorFailure & { remaining: number }> = [];
  const requests: SimulatorRequest[] = [];
  const events = new Map<string, Record<string, unknown>>();
  let revision = 1000;
  let stopped = false;
  const watches = new SimulatorWatches({ bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60_000, revision: () => revision });

  const keyOf = (ns: string, name: string): string => `${ns}/${name}`;
  /** Every change gets the next revision and goes to the watches, with the object as it is now. */
  const bump = (d: DeploymentState, type: 'ADDED' | 'MODIFIED' = 'MODIFIED'): void => {
    d.resourceVersion = String(++revision);
    watches.record(type, d.namespace, d.name, revision, deploymentObject(d));
  };
  const emit = (change: SimulatorChange): void => { for (const l of listeners) l(change); };

  function addDeployment(spec: SimulatedDeployment): void {
    const d: DeploymentState = {
      namespace: spec.namespace, name: spec.name, uid: randomUUID(), created: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      image: spec.image ?? 'ghcr.io/example/agent:latest', resourceVersion: '', generation: 1, replicas: spec.replicas,
      observed: { generation: 1, replicas: spec.replicas, ready: spec.replicas, available: spec.replicas, updated: spec.replicas },
      timer: undefined,
    };
    deployments.set(keyOf(spec.namespace, spec.name), d);
    bump(d, 'ADDED');
  }

  /** The simulated deployment controller: status follows spec after `readyDelayMs`. */
  function setReplicas(d: DeploymentState, replicas: number): void {
    if (replicas === d.replicas) return;
    const from = d.replicas;
    d.replicas = replicas;
    d.generation += 1;
    d.observed.generation = d.generation;
    bump(d);
    emit({ type: 'scaled', namespace: d.namespace, name: d.name, from, to: replicas });
    clearTimeout(d.timer);
    d.timer = setTimeout(() => {
      d.timer = undefined;
      d.observed = { generation: d.generation, replicas, ready: replicas, available: replicas, updated: replicas };
      bump(d);
      emit({ type: 'settled', namespace: d.namespace, name: d.name, ready: replicas, desired: replicas });
    }, options.readyDelayMs);
    d.timer.unref();
  }

  const labels = (d: DeploymentState): Record<string, string> => ({ app: d.name });
  const omitZero = (o: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== 0));
  const meta = (d: DeploymentState): Record<string, unknown> => ({
    name: d.name, namespace: d.namespace, uid: d.uid, resourceVersion: d.resourceVersion, creationTimestamp: d.created,
  });

  function deploymentObject(d: DeploymentState): Record<string, unknown> {
    const o = d.observed;
    const available = o.available >= d.replicas;
    return {
      kind: 'Deployment', apiVersion: 'apps/v1',
      metadata: { ...meta(d), generation: d.generation, labels: labels(d), annotations: { 'deployment.kubernetes.io/revision': '1' } },
      spec: {
        replicas: d.replicas,
        selector: { matchLabels: labels(d) },
        template: {
          metadata: { labels: labels(d) },
          spec: { containers: [{ name: d.name, image: d.image, resources: {}, imagePullPolicy: 'IfNotPresent' }], restartPolicy: 'Always' },
        },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } },
        revisionHistoryLimit: 10, progressDeadlineSeconds: 600,
      },
      status: {
        observedGeneration: o.generation,
        ...omitZero({ replicas: o.replicas, updatedReplicas: o.updated, readyReplicas: o.ready, availableReplicas: o.available,
          unavailableReplicas: Math.max(0, d.replicas - o.available) }),
        // v1.37 always reports it, 0 included (pods that are going away); the simulator has none.
        terminatingReplicas: 0,
        conditions: [
          { type: 'Progressing', status: 'True', lastUpdateTime: d.created, lastTransitionTime: d.created, reason: 'NewReplicaSetAvailable',
            message: `ReplicaSet "${d.name}-5d4f8c7b9" has successfully progressed.` },
          { type: 'Available', status: available ? 'True' : 'False', lastUpdateTime: d.created, lastTransitionTime: d.created,
            reason: available ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable',
            message: available ? 'Deployment has minimum availability.' : 'Deployment does not have minimum availability.' },
        ],
      },
    };
  }

  /** The patched Scale as the server quotes it in a decoding error (its key order). */
  function scaleJson(d: DeploymentState, replicas: unknown): string {
    return JSON.stringify({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: meta(d), spec: { replicas },
      status: { replicas: d.observed.replicas, selector: `app=${d.name}` } });
  }

  function scaleObject(d: DeploymentState): Record<string, unknown> {
    // autoscaling/v1 ScaleSpec.replicas is `omitempty`: a Deployment at 0 answers `"spec": {}`.
    return {
      kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: meta(d),
      spec: d.replicas === 0 ? {} : { replicas: d.replicas },
      status: { replicas: d.observed.replicas, selector: `app=${d.name}` },
    };
  }

  const notFound = (name: string): HttpStatus =>
    new HttpStatus(404, 'NotFound', `deployments.apps "${name}" not found`, { name, group: 'apps', kind: 'deployments' });

  function checkReplicas(name: string, value: unknown): number {
    if (value === null || value === undefined) return 0;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      throw new HttpStatus(400, 'BadRequest',
        `json: cannot unmarshal ${typeof value} into Go struct field ScaleSpec.spec.replicas of type int32`);
    }
    if (value < 0) throw invalidReplicas(name, value);
    return value;
  }

  async function readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) throw new HttpStatus(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 1048576');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** `name` undefined: a list or watch of the whole collection, which no Role narrowed by resourceNames allows. */
  function authorize(req: IncomingMessage, verb: string, resource: string, ns: string, name: string | undefined): void {
    const who = identify(req);
    if (!who) throw new HttpStatus(401, 'Unauthorized', 'Unauthorized');
    const named = who.resourceNames === undefined || (name !== undefined && who.resourceNames.includes(name));
    const allowed = named && (verb === 'get' ? who.canGet : verb === 'list' || verb === 'watch' ? who.canWatch === true && name !== undefined : who.canPatch);
    if (!allowed) {
      const subject = name === undefined ? 'deployments.apps' : `deployments.apps "${name}"`;
      throw new HttpStatus(403, 'Forbidden', `${subject} is forbidden: User "${who.user}" cannot ${verb} resource "${resource}" in API group "apps" in the namespace "${ns}"`,
        { ...(name !== undefined ? { name } : {}), group: 'apps', kind: 'deployments' });
    }
  }

  /** A verified client certificate first, then the bearer token (the real server's order). */
  function identify(req: IncomingMessage): SimulatedIdentity | undefined {
    const peer = options.certificates ? (req.socket as TLSSocket).getPeerX509Certificate() : undefined;
    if (peer && verifiedByCa(peer)) {
      const cn = /^CN=(.+)$/m.exec(peer.subject)?.[1];
      const who = cn === undefined ? undefined : options.certificates?.[cn];
      if (who) return who;
    }
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    return match ? options.tokens[match[1]!] : undefined;
  }

  /** GET of the collection: a list, or with `watch` a watch (answered by `serveWatch`). */
  function listOrWatch(req: IncomingMessage, url: URL, ns: string): Record<string, unknown> | WatchRequest {
    const name = nameFromFieldSelector(url.searchParams.get('fieldSelector'));
    if (name === null) throw new HttpStatus(400, 'BadRequest', `unable to parse requirement: field selector ${url.searchParams.get('fieldSelector')} is not supported by the simulator`);
    const watch = ['1', 'true'].includes(url.searchParams.get('watch') ?? '');
    authorize(req, watch ? 'watch' : 'list', 'deployments', ns, name);
    if (watch) {
      const timeout = url.searchParams.get('timeoutSeconds');
      return { namespace: ns, name, resourceVersion: url.searchParams.get('resourceVersion') ?? undefined,
        bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true', timeoutSeconds: timeout === null ? undefined : Number(timeout) };
    }
    return watches.list(current(ns, name).map((c) => c.object));
  }

  function current(ns: string, name: string | undefined): Array<{ name: string; object: Record<string, unknown> }> {
    return [...deployments.values()].filter((d) => d.namespace === ns && (name === undefined || d.name === name))
      .map((d) => ({ name: d.name, object: deploymentObject(d) }));
  }

  async function route(req: IncomingMessage, url: URL): Promise<unknown> {
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const dryRun = url.searchParams.get('dryRun') === 'All';
    if (path === '/version' && method === 'GET') {
      return { major: '1', minor: '33', gitVersion: 'v1.33.0-kube-simulator', platform: 'linux/amd64' };
    }
    if (path === '/apis/apps/v1' && method === 'GET') {
      if (!identify(req)) throw new HttpStatus(401, 'Unauthorized', 'Unauthorized');
      return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: 'apps/v1', resources: [
        { name: 'deployments', singularName: 'deployment', namespaced: true, kind: 'Deployment',
          verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'], shortNames: ['deploy'] },
        { name: 'deployments/scale', singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale',
          verbs: ['get', 'patch', 'update'] },
      ] };
    }
    const eventsPath = /^\/apis\/events\.k8s\.io\/v1\/namespaces\/([^/]+)\/events$/.exec(path);
    if (eventsPath && method === 'POST') {
      const ns = decodeURIComponent(eventsPath[1]!);
      const who = identify(req);
      if (!who) throw new HttpStatus(401, 'Unauthorized', 'Unauthorized');
      if (!who.canCreateEvents) throw eventsForbidden(who.user, ns);
      const event = createEvent({ namespace: ns, text: await readBody(req), dryRun, exists: (name) => events.has(`${ns}/${name}`), resourceVersion: () => String(++revision) });
      if (!dryRun) events.set(`${ns}/${String((event['metadata'] as { name: string }).name)}`, event);
      return new Created(event);
    }
    const collection = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments$/.exec(path);
    if (collection && method === 'GET') return listOrWatch(req, url, decodeURIComponent(collection[1]!));
    const m = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments\/([^/]+)(\/scale)?$/.exec(path);
    if (!m) throw new HttpStatus(404, 'NotFound', 'the server could not find the requested resource');
    const ns = decodeURIComponent(m[1]!);
    const name = decodeURIComponent(m[2]!);
    const sub = m[3] !== undefined;
    const resource = sub ? 'deployments/scale' : 'deployments';
    const verb = method === 'GET' ? 'get' : method === 'PATCH' ? 'patch' : method === 'PUT' ? 'update' : undefined;
    if (!verb || (!sub && verb !== 'get')) {
      throw new HttpStatus(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
    }
    authorize(req, verb, resource, ns, name);
    const d = deployments.get(keyOf(ns, name));
    if (!d) throw notFound(name);
    if (verb === 'get') return sub ? scaleObject(d) : deploymentObject(d);

    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    let replicas: number;
    if (verb === 'patch') {
      replicas = patchScale({ name, contentType, text: await readBody(req), fieldManager: url.searchParams.get('fieldManager'),
        replicas: d.replicas, scaleJson: (value) => scaleJson(d, value) });
    } else {
      if (contentType !== 'application/json') {
        throw new HttpStatus(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf');
      }
      let body: { metadata?: { resourceVersion?: string }; spec?: { replicas?: unknown } } | null;
      const text = await readBody(req);
      try {
        body = JSON.parse(text) as typeof body;
      } catch (e) {
        throw new HttpStatus(400, 'BadRequest', `the object provided is unrecognized (must be of type Scale): couldn't get version/kind; json parse error: ${(e as Error).message}`);
      }
      const rv = body?.metadata?.resourceVersion;
      if (rv !== undefined && rv !== '' && rv !== d.resourceVersion) {
        throw new HttpStatus(409, 'Conflict', `Operation cannot be fulfilled on deployments.apps "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          { name, group: 'apps', kind: 'deployments' });
      }
      replicas = checkReplicas(name, body?.spec?.replicas);
    }
    if (dryRun) return { ...scaleObject(d), spec: replicas === 0 ? {} : { replicas } };
    setReplicas(d, replicas);
    return scaleObject(d);
  }

  function send(res: ServerResponse, entry: SimulatorRequest, status: number, body: unknown): void {
    entry.status = status;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json', 'content-length': Buffer.byteLength(text),
      'cache-control': 'no-cache, private', 'audit-id': randomUUID(),
    });
    res.end(text);
  }

  const statusBody = (e: HttpStatus): Record<string, unknown> => ({
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: e.message, reason: e.reason,
    ...(e.details ? { details: e.details } : {}), code: e.code,
  });

  const pending = new Set<NodeJS.Timeout>();
  const later = (ms: number, work: () => void): void => {
    const timer = setTimeout(() => { pending.delete(timer); work(); }, ms);
    timer.unref();
    pending.add(timer);
  };

  /** Routes a request (applying it); `then` decides what the client gets: by default the answer. */
  function handle(req: IncomingMessage, res: ServerResponse, url: URL, entry: SimulatorRequest,
    then: (status: number, body: unknown) => void = (status, body) => send(res, entry, status, body)): void {
    route(req, url).then(
      (body) => {
        if (body instanceof Created) return then(201, body.object);
        if (!isWatch(body)) return then(200, body);
        entry.status = 200;
        watches.serve(res, body, () => current(body.namespace, body.name));
      },
      (e: unknown) => {
        req.resume();
        const err = e instanceof HttpStatus ? e : new HttpStatus(500, 'InternalError', `Internal error occurred: ${String(e)}`);
        then(err.code, statusBody(err));
      },
    );
  }

  for (const d of options.deployments) addDeployment(d);
  const isCollection = (path: string): boolean => /^\/apis\/apps\/v1\/namespaces\/[^/]+\/deployments$/.test(path);

  // Client certificates are asked for, not required: tokens work too. Only one the CA signed identifies
  // (checked by hand: a `ca` option would make the server send its CA in the chain, which the real one does not).
  const caCert = new X509Certificate(tls.ca);
  const verifiedByCa = (peer: X509Certificate): boolean => {
    const now = Date.now();
    return peer.checkIssued(caCert) && peer.verify(caCert.publicKey) && Date.parse(peer.validFrom) <= now && now <= Date.parse(peer.validTo);
  };
  const server: Server = createServer({ key: tls.key, cert: tls.cert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://simulator');
    const method = req.method ?? 'GET';
    const entry: SimulatorRequest = {
      method, path: url.pathname, contentType: req.headers['content-type'], user: identify(req)?.user, status: 0,
    };
    requests.push(entry);
    // Before an answer is sent, 'close' means the client went away (it gave up, or the socket dropped).
    let clientGone = false;
    res.once('close', () => { clientGone = true; });
    const failure = failures.find((f) => (f.match ? f.match({ method, path: url.pathname }) : url.pathname !== '/version' && !isCollection(url.pathname)));
    if (!failure) {
      handle(req, res, url, entry);
      return;
    }
    if (--failure.remaining <= 0) failures.splice(failures.indexOf(failure), 1);
    if (!('mode' in failure)) {
      req.resume();
      send(res, entry, failure.status, statusBody(new HttpStatus(failure.status, failure.reason ?? defaultReason(failure.status),
        failure.message ?? `simulated failure (${failure.status})`)));
      return;
    }
    switch (failure.mode) {
      case 'hang': // never answer; stop() closes the connection
      case 'close':
        req.resume();
        if (failure.mode === 'close') req.socket.destroy();
        return;
      case 'apply-then-close':
        handle(req, res, url, entry, () => req.socket.destroy());
        return;
      case 'answer-late':
        handle(req, res, url, entry, (status, body) => later(failure.delayMs, () => { if (!clientGone) send(res, entry, status, body); }));
        return;
      case 'apply-late':
        later(failure.delayMs, () => { if (!clientGone) handle(req, res, url, entry); });
        return;
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('kube simulator: no TCP address');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `https://${host}:${address.port}`;

  async function writeKubeconfig(path: string, token: string, namespace?: string): Promise<void> {
    const contextNamespace = namespace ?? options.deployments[0]?.namespace;
    const config = {
      apiVersion: 'v1', kind: 'Config', preferences: {},
      clusters: [{ name: 'kube-simulator', cluster: { server: url, 'certificate-authority-data': Buffer.from(tls.ca).toString('base64') } }],
      users: [{ name: 'kube-simulator-user', user: { token } }],
      contexts: [{ name: 'kube-simulator', context: { cluster: 'kube-simulator', user: 'kube-simulator-user',
        ...(contextNamespace !== undefined ? { namespace: contextNamespace } : {}) } }],
      'current-context': 'kube-simulator',
    };
    await writeFile(path, toYaml(config), { mode: 0o600 });
  }

  const kubeconfigPath = join(options.dir, 'kubeconfig.yaml');
  const firstToken = Object.keys(options.tokens)[0];
  await writeKubeconfig(kubeconfigPath, firstToken ?? 'no-token');

  return {
    url, kubeconfigPath, caPem: tls.ca, requests,
    replicas: (ns, name) => deployments.get(keyOf(ns, name))?.replicas,
    deployment: (ns, name) => {
      const d = deployments.get(keyOf(ns, name));
      return d ? deploymentObject(d) : undefined;
    },
    onChange: (listener) => { listeners.add(listener); return () => { listeners.delete(listener); }; },
    setFailure: (failure) => { failures.push({ ...failure, remaining: failure.count ?? 1 }); },
    clearFailures: () => { failures.length = 0; },
    scale: (ns, name, replicas) => {
      const d = deployments.get(keyOf(ns, name));
      if (!d) throw new Error(`kube simulator: no deployment ${ns}/${name}`);
      setReplicas(d, replicas);
    },
    get openWatches() { return watches.open; },
    events: (ns) => [...events.entries()].filter(([key]) => key.startsWith(`${ns}/`)).map(([, event]) => event),
    dropWatches: (o) => { watches.drop(); if (o?.compact) watches.compact(); },
    freezeWatches: () => watches.freeze(),
    issueClientCertificate: (cn) => issueClientCertificate(options.dir, cn),
    writeKubeconfig,
    addDeployment,
    deleteDeployment: (ns, name) => {
      const d = deployments.get(keyOf(ns, name));
      if (!d) return false;
      clearTimeout(d.timer);
      deployments.delete(keyOf(ns, name));
      d.resourceVersion = String(++revision);
      watches.record('DELETED', ns, name, revision, deploymentObject(d));
      return true;
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      for (const d of deployments.values()) clearTimeout(d.timer);
      for (const timer of pending) clearTimeout(timer);
      watches.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** An answer of 201 Created (the route's other answers are 200). */
class Created {
  readonly object: Record<string, unknown>;
  constructor(object: Record<string, unknown>) { this.object = object; }
}

const isWatch = (body: unknown): body is WatchRequest =>
  typeof body === 'object' && body !== null && 'bookmarks' in body && 'resourceVersion' in body && !('kind' in body);

let certificateSerial = 0;

/** A client certificate for `cn` (clientAuth), signed by the CA that `ensureCertificates` made in `dir`. */
async function issueClientCertificate(dir: string, cn: string): Promise<{ cert: string; key: string }> {
  const base = join(dir, `client-${cn.replace(/[^a-z0-9-]/gi, '_')}-${++certificateSerial}`);
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${cn}/O=simulated`]);
  await writeFile(`${base}.ext`, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  await run('openssl', ['x509', '-req', '-in', `${base}.csr`, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'),
    '-CAcreateserial', '-days', '2', '-extfile', `${base}.ext`, '-out', `${base}.crt`]);
  const [cert, key] = await Promise.all([readFile(`${base}.crt`, 'utf8'), readFile(`${base}.key`, 'utf8')]);
  return { cert, key };
}

function defaultReason(status: number): string {
  const reasons: Record<number, string> = {
    400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 422: 'Invalid',
    429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
  };
  return reasons[status] ?? 'Unknown';
}
