/** The kube simulator's public types (kube-simulator.ts implements them). */
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
  /** `create` on events.k8s.io events (resourceNames cannot narrow a create). */
  readonly canCreateEvents?: boolean;
  /** `list` and `watch` on pods (core group; resourceNames cannot narrow them: generated names). Never `get`. */
  readonly canListPods?: boolean;
  /** As a Role's namespace: every grant above only there. Unset: every namespace. */
  readonly namespace?: string;
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
