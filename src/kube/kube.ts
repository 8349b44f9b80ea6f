/** The one seam between the bot and Kubernetes: everything the commands need, nothing more. */
import type { DeploymentObject, PodObject } from './rollout.ts';

export interface DeploymentTarget {
  readonly namespace: string;
  /** The Deployment's name. */
  readonly name: string;
  /** How chat names it (a configured target's name, src/config/targets.ts); the Deployment's name when unset. Never sent to the API. */
  readonly label?: string;
}

/** What a target's state is stored and watched under (runs, progress, buttons; the watch): `namespace/deployment`. */
export const targetKey = (t: DeploymentTarget): string => `${t.namespace}/${t.name}`;

/** How chat, the log and the metrics name a target: its label, else its Deployment's name. */
export const targetLabel = (t: DeploymentTarget): string => t.label ?? t.name;

/** A one-word summary derived from the replica counts (see `summarise`). */
export type DeploymentState = 'off' | 'starting' | 'running' | 'stopping';

export interface DeploymentStatus {
  readonly desired: number;
  readonly ready: number;
  readonly available: number;
  readonly updated: number;
  readonly state: DeploymentState;
  /** One sentence when the Deployment's own conditions say it cannot get ready (a quota, the progress deadline). */
  readonly problem?: string | undefined;
  /** Since when it has been available (its Available condition's last change to True), when it is. */
  readonly availableSince?: number | undefined;
}

export interface ScaleResult {
  /** spec.replicas before the change; undefined when unknown (the outcome was read back, see `readBack`). */
  readonly previous: number | undefined;
  readonly desired: number;
  /**
   * Set when the write's own answer was lost (this error: a timeout, a dropped connection) and the
   * Deployment, read back afterwards, showed the requested count: the change is in place.
   */
  readonly readBack?: KubeError;
}

/** An Event about the Deployment (events.k8s.io/v1, type Normal), e.g. the audit of a scale. */
export interface KubeEvent {
  /** Why, machine-readable in CamelCase (`ScaledByChat`). */
  readonly reason: string;
  /** What was done (`Start`, `Stop`). */
  readonly action: string;
  /** For humans, at most 1 KiB. */
  readonly note: string;
}

export interface Kube {
  /** Sets spec.replicas through the scale subresource (never a read-modify-replace of the Deployment). */
  scale(target: DeploymentTarget, replicas: number): Promise<ScaleResult>;
  status(target: DeploymentTarget): Promise<DeploymentStatus>;
  /** Readiness probe: no request while a watch on the Deployment is connected, else one GET; resolves or throws the same KubeError as `status`. */
  ping(target: DeploymentTarget): Promise<void>;
  /**
   * Creates an Event regarding the Deployment; `dryRun` asks whether it would be allowed without
   * storing it. Optional: a client that cannot (a test's fake) leaves it out, and nothing is recorded.
   */
  recordEvent?(target: DeploymentTarget, event: KubeEvent, options?: { readonly dryRun?: boolean }): Promise<void>;
  /**
   * Follows the Deployment and, where the Role allows, its pods: `changed` is called after each change
   * of either. Optional: a client without a watch leaves it out, and replies are not edited.
   */
  follow?(target: DeploymentTarget, changed: () => void): RolloutFollow;
  /**
   * Where the rollout stands now, pods included: from the pods' watch when a rollout is followed, else
   * one list of the Deployment's pods. Undefined when it cannot tell (no watch, pods not allowed).
   */
  rolloutNow?(target: DeploymentTarget): Promise<RolloutView | undefined>;
  /** At start-up: throws the KubeError a list of the namespace's pods gets (forbidden: progress comes from the Deployment alone). */
  checkPods?(target: DeploymentTarget): Promise<void>;
}

/** Where a Deployment's rollout stands: the Deployment as last watched, and its pods (undefined when they cannot be watched). */
export interface RolloutView {
  readonly deployment: DeploymentObject;
  readonly pods: readonly PodObject[] | undefined;
}

/** A rollout being followed (progress messages): read it on each change, close it when done. */
export interface RolloutFollow {
  /** Undefined while the watch is down or the Deployment is not known to exist. */
  view(): RolloutView | undefined;
  close(): void;
}

export type KubeErrorKind =
  | 'forbidden'
  | 'not-found'
  | 'conflict'
  | 'unauthorized'
  | 'invalid'
  | 'server'
  | 'timeout'
  | 'unreachable'
  /** A write whose answer was lost, and reading the Deployment back failed too: it may or may not have happened. */
  | 'unknown-outcome'
  | 'other';

/**
 * A Kubernetes failure with one human sentence for chat, kept apart from the log fields. Adapters
 * put the raw detail in `cause`, with the socket error code (ECONNREFUSED, …) as `cause.code`.
 */
export class KubeError extends Error {
  readonly kind: KubeErrorKind;
  readonly status: number | undefined;
  /** One sentence, safe to show in chat (no tokens, no stack). */
  readonly human: string;
  constructor(kind: KubeErrorKind, human: string, status?: number, options?: ErrorOptions) {
    super(human, options);
    this.name = 'KubeError';
    this.kind = kind;
    this.status = status;
    this.human = human;
  }
}

export function summarise(desired: number, ready: number): DeploymentState {
  if (desired === 0) return ready === 0 ? 'off' : 'stopping';
  return ready >= desired ? 'running' : 'starting';
}
