/**
 * Where a start or a stop stands, read from the Deployment and its pods the way `kubectl describe`
 * would, in one sentence for chat: progress steps while it moves, the reason when it is stuck.
 *
 * Pure functions over the API objects (as the watch or a list returns them): the caller decides
 * when to look (each watch event) and how to show it (an edited message).
 */

/** The parts of a Deployment this reads. */
export interface DeploymentObject {
  readonly metadata?: { readonly generation?: number };
  readonly spec?: { readonly replicas?: number; readonly progressDeadlineSeconds?: number; readonly selector?: unknown };
  readonly status?: {
    readonly observedGeneration?: number;
    readonly replicas?: number;
    readonly readyReplicas?: number;
    readonly updatedReplicas?: number;
    readonly conditions?: ReadonlyArray<Condition>;
  };
}

/** The parts of a Pod this reads. */
export interface PodObject {
  readonly metadata?: { readonly name?: string; readonly deletionTimestamp?: string };
  readonly spec?: { readonly nodeName?: string; readonly containers?: ReadonlyArray<{ readonly name?: string; readonly image?: string }> };
  readonly status?: {
    readonly phase?: string;
    readonly conditions?: ReadonlyArray<Condition>;
    readonly containerStatuses?: ReadonlyArray<ContainerStatus>;
    readonly initContainerStatuses?: ReadonlyArray<ContainerStatus>;
  };
}

interface Condition { readonly type?: string; readonly status?: string; readonly reason?: string; readonly message?: string; readonly lastTransitionTime?: string }

interface ContainerStatus {
  readonly name?: string;
  readonly image?: string;
  readonly ready?: boolean;
  readonly restartCount?: number;
  readonly state?: { readonly waiting?: { readonly reason?: string; readonly message?: string }; readonly running?: { readonly startedAt?: string }; readonly terminated?: Terminated };
  readonly lastState?: { readonly terminated?: Terminated };
}

interface Terminated { readonly exitCode?: number; readonly reason?: string; readonly signal?: number }

export type RolloutPhase = 'ready' | 'off' | 'moving' | 'failed';

export interface Rollout {
  readonly phase: RolloutPhase;
  /** What has happened so far, in order (e.g. "pod scheduled on node-3", "starting container"). */
  readonly steps: readonly string[];
  /** One sentence: why it failed (phase failed) or what it waits for (phase moving). */
  readonly reason?: string;
}

/** Image pull failures the kubelet reports in a container's waiting state. */
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull', 'RegistryUnavailable']);
/** Waiting reasons that will not pass without a change (the kubelet retries them, in vain). */
const CONFIG_FAILURES = new Set(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError']);

/** A start in progress or done: `desired` replicas wanted. */
export function startProgress(deployment: DeploymentObject, pods: readonly PodObject[]): Rollout {
  const desired = deployment.spec?.replicas ?? 0;
  const ready = deployment.status?.readyReplicas ?? 0;
  const live = pods.filter((p) => p.metadata?.deletionTimestamp === undefined);
  const steps = podSteps(live);
  if (desired > 0 && ready >= desired && (deployment.status?.updatedReplicas ?? ready) >= desired) return { phase: 'ready', steps: [...steps, 'ready'] };

  const refused = replicaFailure(deployment);
  if (refused) return { phase: 'failed', steps, reason: refused };
  for (const pod of live) {
    const failure = podFailure(pod);
    if (failure) return { phase: 'failed', steps, reason: failure };
  }
  const waiting = waitingFor(live, desired, ready);
  if (deadlineExceeded(deployment)) return { phase: 'failed', steps, reason: `${deadlineSentence(deployment)}${waiting ? `: ${waiting}` : ''}` };
  return { phase: 'moving', steps, reason: waiting };
}

/**
 * Why a Deployment that should run cannot get there, from its own conditions alone (no pods: what
 * `status` can say from the watched Deployment, and all a Role without access to pods allows).
 */
export function deploymentProblem(deployment: DeploymentObject): string | undefined {
  if ((deployment.spec?.replicas ?? 0) === 0) return undefined;
  return replicaFailure(deployment) ?? (deadlineExceeded(deployment) ? deadlineSentence(deployment) : undefined);
}

/** Refused before any pod exists: a quota or an admission webhook (the ReplicaSet's error, lifted by the Deployment controller). */
function replicaFailure(deployment: DeploymentObject): string | undefined {
  const failure = condition(deployment.status?.conditions, 'ReplicaFailure');
  return failure?.status === 'True' ? `the cluster refused to create the pod: ${clean(failure.message)}` : undefined;
}

function deadlineExceeded(deployment: DeploymentObject): boolean {
  const progressing = condition(deployment.status?.conditions, 'Progressing');
  return progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded';
}

function deadlineSentence(deployment: DeploymentObject): string {
  const deadline = deployment.spec?.progressDeadlineSeconds;
  return `it did not become ready within its progress deadline${deadline ? ` (${deadline} s)` : ''}`;
}

/** How many pods, not being deleted, report Ready (the Deployment counts them a moment later). */
export function readyPods(pods: readonly PodObject[]): number {
  return pods.filter((p) => p.metadata?.deletionTimestamp === undefined && condition(p.status?.conditions, 'Ready')?.status === 'True').length;
}

/** A stop in progress or done: no pod may remain. */
export function stopProgress(pods: readonly PodObject[]): Rollout {
  if (pods.length === 0) return { phase: 'off', steps: ['no pods left'] };
  const terminating = pods.filter((p) => p.metadata?.deletionTimestamp !== undefined).length;
  const n = pods.length;
  return { phase: 'moving', steps: [], reason: `${n} pod${n === 1 ? '' : 's'} ${terminating === n ? 'shutting down' : 'still there'}` };
}

/** Progress steps of the furthest pod: scheduled, pulling/starting, running. */
function podSteps(pods: readonly PodObject[]): string[] {
  const pod = pods.find((p) => p.spec?.nodeName) ?? pods[0];
  if (!pod) return [];
  const steps: string[] = [];
  if (pod.spec?.nodeName && condition(pod.status?.conditions, 'PodScheduled')?.status !== 'False') steps.push(`pod scheduled on ${pod.spec.nodeName}`);
  const containers = pod.status?.containerStatuses ?? [];
  const inits = pod.status?.initContainerStatuses ?? [];
  if (inits.some((c) => c.state?.running || c.state?.waiting)) steps.push('running init containers');
  if (containers.some((c) => c.state?.waiting?.reason === 'ContainerCreating')) steps.push('pulling image and starting container');
  if (containers.length > 0 && containers.every((c) => c.state?.running)) steps.push('container running');
  return steps;
}

/** The one thing that stops this pod from ever becoming ready, if there is one. */
function podFailure(pod: PodObject): string | undefined {
  const scheduled = condition(pod.status?.conditions, 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') return `the pod cannot be scheduled: ${clean(scheduled.message)}`;
  for (const c of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    const waiting = c.state?.waiting;
    const image = c.image ?? pod.spec?.containers?.find((s) => s.name === c.name)?.image;
    if (waiting?.reason && PULL_FAILURES.has(waiting.reason)) return `the image ${image ? `${image} ` : ''}cannot be pulled (${pullError(waiting.reason, waiting.message)})`;
    const container = c.name ? `the container ${c.name}` : 'the container';
    if (waiting?.reason === 'CrashLoopBackOff') return `${container} keeps crashing (${exitOf(c.lastState?.terminated)}, ${plural(c.restartCount ?? 0, 'restart')})`;
    if (waiting?.reason && CONFIG_FAILURES.has(waiting.reason)) return `${container} cannot start (${waiting.reason}${waiting.message ? `: ${clean(waiting.message)}` : ''})`;
  }
  if (pod.status?.phase === 'Failed') return 'the pod failed';
  return undefined;
}

/** What a start waits for now, in a few words. */
function waitingFor(pods: readonly PodObject[], desired: number, ready: number): string | undefined {
  if (pods.length === 0) return 'waiting for the pod to be created';
  const pod = pods[0] as PodObject;
  if (!pod.spec?.nodeName) return 'waiting for the pod to be scheduled';
  const containers = pod.status?.containerStatuses ?? [];
  const waiting = containers.find((c) => c.state?.waiting)?.state?.waiting;
  if (waiting?.reason === 'ContainerCreating' || containers.length === 0) return 'waiting for the container to start (pulling the image)';
  if (containers.some((c) => c.state?.running && !c.ready)) return `waiting for the container to pass its readiness probe (${ready} of ${desired} ready)`;
  return `${ready} of ${desired} ready`;
}

/**
 * The pull error the kubelet reports, as `Reason: what the registry answered`. A back-off since
 * kubelet 1.31 wraps the error that caused it (`Back-off pulling image "x": ErrImagePull: …`):
 * that error is given, so the text stays the same while the kubelet alternates between the two; an
 * older back-off only repeats the image name. The gRPC wrapper (`rpc error: code = NotFound desc =`)
 * says nothing to a reader and would push the registry's answer past the length limit.
 */
function pullError(reason: string, message: string | undefined): string {
  let text = message;
  if (reason === 'ImagePullBackOff') {
    const wrapped = /^Back-off pulling image "(?:[^"\\]|\\.)*": (\w+): ([\s\S]*)$/.exec(message ?? '');
    if (!wrapped) return reason;
    [reason, text] = [wrapped[1]!, wrapped[2]];
  }
  text = text?.replace(/^rpc error: code = \w+ desc = /, '');
  return text ? `${reason}: ${clean(text)}` : reason;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function exitOf(t: Terminated | undefined): string {
  if (!t) return 'no exit code yet';
  const code = t.exitCode !== undefined ? `last exit code ${t.exitCode}` : 'exited';
  return t.reason && t.reason !== 'Error' ? `${code}, ${t.reason}` : code;
}

function condition(conditions: ReadonlyArray<Condition> | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** Longest message from the cluster quoted in chat (registry errors can run to a screenful). */
const MAX_MESSAGE = 240;

/** Messages from the cluster as one line without a trailing dot (they go inside a sentence). */
function clean(message: string | undefined): string {
  const line = (message ?? 'no reason given').replace(/\s+/g, ' ').trim().replace(/\.$/, '');
  return line.length > MAX_MESSAGE ? `${line.slice(0, MAX_MESSAGE - 1)}…` : line;
}
