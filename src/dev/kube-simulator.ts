/**
 * A **simulated** Kubernetes API server, for tests and the local demo. It is not Kubernetes.
 *
 * It speaks the real HTTPS API for the few endpoints this project uses (apps/v1 Deployment and its
 * autoscaling/v1 `scale` subresource, list and watch of Deployments (kube-simulator-watch.ts) and of
 * their pods by label selector (kube-simulator-pods.ts), the creation of events.k8s.io/v1 Events
 * (kube-simulator-events.ts), plus
 * `/version` and `/apis/apps/v1` discovery), answers with real `Status` objects
 * (401/403/404/409/415/422; kube-simulator-http.ts), checks bearer tokens and client certificates the
 * way RBAC would (kube-simulator-auth.ts), and runs a tiny controller that makes the ready counts, and
 * the pods, follow `spec.replicas` after `readyDelayMs` (kube-simulator-controller.ts).
 * TLS uses a CA and server certificate generated at start with the `openssl` CLI, and
 * `kubeconfigPath` is a real kubeconfig naming that CA, so a client talks to it exactly as to a cluster.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { SimulatorAuth, inNamespace } from './kube-simulator-auth.ts';
import { DeploymentController } from './kube-simulator-controller.ts';
import { createEvent, eventsForbidden } from './kube-simulator-events.ts';
import { Created, defaultReason, isWatch, readBody, send, statusBody, type ServeWatch } from './kube-simulator-http.ts';
import { HttpStatus, invalidReplicas, patchScale } from './kube-simulator-patch.ts';
import { ensureCertificates, issueClientCertificate } from './kube-simulator-tls.ts';
import type { KubeSimulator, KubeSimulatorOptions, SimulatorFailure, SimulatorRequest } from './kube-simulator-types.ts';
import { scaleJson, scaleObject } from './kube-simulator-deployment.ts';
import { SimulatedPods } from './kube-simulator-pods.ts';
import { DEPLOYMENTS, nameFromFieldSelector, PODS, SimulatorWatches, watchRequestOf } from './kube-simulator-watch.ts';

// The public types live in their own module; importers keep importing them from here.
export type * from './kube-simulator-types.ts';

export async function startKubeSimulator(options: KubeSimulatorOptions): Promise<KubeSimulator> {
  await mkdir(options.dir, { recursive: true });
  const tls = await ensureCertificates(options.dir);
  const failures: Array<SimulatorFailure & { remaining: number }> = [];
  const requests: SimulatorRequest[] = [];
  const events = new Map<string, Record<string, unknown>>();
  let revision = 1000;
  let stopped = false;
  const bookmarkIntervalMs = options.bookmarkIntervalMs ?? 60_000;
  const watches = new SimulatorWatches({ bookmarkIntervalMs, revision: () => revision, kind: DEPLOYMENTS });
  // A watch cache of its own (as the real server keeps per resource), on the same resourceVersion counter.
  const podWatches = new SimulatorWatches({ bookmarkIntervalMs, revision: () => revision, kind: PODS });
  const allWatches = [watches, podWatches];
  const pods = new SimulatedPods({ watches: podWatches, nextRevision: () => ++revision, momentMs: Math.min(1_000, options.readyDelayMs / 4) });

  const deployments = new DeploymentController({ watches, pods, nextRevision: () => ++revision, readyDelayMs: options.readyDelayMs });

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

  /** GET of the collection: a list, or with `watch` a watch. */
  function listOrWatch(req: IncomingMessage, url: URL, ns: string): Record<string, unknown> | ServeWatch {
    const name = nameFromFieldSelector(url.searchParams.get('fieldSelector'));
    if (name === null) throw new HttpStatus(400, 'BadRequest', `unable to parse requirement: field selector ${url.searchParams.get('fieldSelector')} is not supported by the simulator`);
    const watch = watchRequestOf(url, ns, name);
    auth.authorize(req, watch ? 'watch' : 'list', 'deployments', ns, name);
    if (watch) return { watch, on: watches, current: () => deployments.current(ns, name) };
    return watches.list(deployments.current(ns, name).map((c) => c.object));
  }

  async function route(req: IncomingMessage, url: URL): Promise<unknown> {
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const dryRun = url.searchParams.get('dryRun') === 'All';
    if (path === '/version' && method === 'GET') {
      return { major: '1', minor: '33', gitVersion: 'v1.33.0-kube-simulator', platform: 'linux/amd64' };
    }
    if (path === '/apis/apps/v1' && method === 'GET') {
      if (!auth.identify(req)) throw new HttpStatus(401, 'Unauthorized', 'Unauthorized');
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
      const who = auth.identify(req);
      if (!who) throw new HttpStatus(401, 'Unauthorized', 'Unauthorized');
      if (!who.canCreateEvents || !inNamespace(who, ns)) throw eventsForbidden(who.user, ns);
      const event = createEvent({ namespace: ns, text: await readBody(req), dryRun, exists: (name) => events.has(`${ns}/${name}`), resourceVersion: () => String(++revision) });
      if (!dryRun) events.set(`${ns}/${String((event['metadata'] as { name: string }).name)}`, event);
      return new Created(event);
    }
    const podsPath = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?$/.exec(path);
    if (podsPath && method === 'GET') {
      const who = auth.identify(req);
      if (!who) throw new HttpStatus(401, 'Unauthorized', 'Unauthorized');
      const ns = decodeURIComponent(podsPath[1]!);
      return pods.answer(url, ns, podsPath[2] === undefined ? undefined : decodeURIComponent(podsPath[2]),
        { user: who.user, canList: who.canListPods === true && inNamespace(who, ns) });
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
    auth.authorize(req, verb, resource, ns, name);
    const d = deployments.get(ns, name);
    if (!d) throw notFound(name);
    if (verb === 'get') return sub ? scaleObject(d) : deployments.object(d);

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
    deployments.setReplicas(d, replicas);
    return scaleObject(d);
  }

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
        body.on.serve(res, body.watch, body.current);
      },
      (e: unknown) => {
        req.resume();
        const err = e instanceof HttpStatus ? e : new HttpStatus(500, 'InternalError', `Internal error occurred: ${String(e)}`);
        then(err.code, statusBody(err));
      },
    );
  }

  for (const d of options.deployments) deployments.add(d);
  const isCollection = (path: string): boolean => /^\/apis\/apps\/v1\/namespaces\/[^/]+\/deployments$|^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(path);

  // Client certificates are asked for, not required (tokens work too): kube-simulator-auth.ts checks them.
  const auth = new SimulatorAuth(options, tls.ca);
  const server: Server = createServer({ key: tls.key, cert: tls.cert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://simulator');
    const method = req.method ?? 'GET';
    const entry: SimulatorRequest = {
      method, path: url.pathname, contentType: req.headers['content-type'], user: auth.identify(req)?.user, status: 0,
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
    replicas: (ns, name) => deployments.get(ns, name)?.replicas,
    deployment: (ns, name) => {
      const d = deployments.get(ns, name);
      return d ? deployments.object(d) : undefined;
    },
    onChange: (listener) => deployments.onChange(listener),
    setFailure: (failure) => { failures.push({ ...failure, remaining: failure.count ?? 1 }); },
    clearFailures: () => { failures.length = 0; },
    scale: (ns, name, replicas) => {
      const d = deployments.get(ns, name);
      if (!d) throw new Error(`kube simulator: no deployment ${ns}/${name}`);
      deployments.setReplicas(d, replicas);
    },
    get openWatches() { return watches.open + podWatches.open; },
    events: (ns) => [...events.entries()].filter(([key]) => key.startsWith(`${ns}/`)).map(([, event]) => event),
    dropWatches: (o) => { for (const w of allWatches) { w.drop(); if (o?.compact) w.compact(); } },
    freezeWatches: () => { for (const w of allWatches) w.freeze(); },
    issueClientCertificate: (cn) => issueClientCertificate(options.dir, cn),
    writeKubeconfig,
    addDeployment: (spec) => deployments.add(spec),
    deleteDeployment: (ns, name) => deployments.delete(ns, name),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      deployments.stop();
      for (const timer of pending) clearTimeout(timer);
      for (const w of allWatches) w.stop();
      pods.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
