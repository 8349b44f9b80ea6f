/**
 * The text of a start's or a stop's result message as the rollout moves (issue 11, part 1), and
 * when to edit it: pure functions of what the Kubernetes client sees (LeanKube.rollout: the
 * Deployment, and its pods when the Role allows watching them) and the time. The caller keeps the
 * tracked message on the volume, looks every few seconds while one is tracked, and sends an edit
 * (`m.replace`) when `nextEdit` says so.
 */
import { deploymentProblem, readyPods, startProgress, stopProgress, type DeploymentObject, type PodObject, type Rollout } from '../kube/rollout.ts';
import type { DeploymentTarget } from '../kube/kube.ts';
import { formatDuration } from './durations.ts';
import { shown } from './replies.ts';

export type ProgressAction = 'start' | 'stop';

export interface ProgressView {
  readonly deployment: DeploymentObject;
  /** Undefined when the pods cannot be watched (the Role): the Deployment's own counts are all there is. */
  readonly pods: readonly PodObject[] | undefined;
}

export interface ProgressState {
  readonly text: string;
  /** Ready, off or failed: the last edit. */
  readonly final: boolean;
  /** Ready or off: it got where it was asked to go. */
  readonly done?: true;
  /** Every pod is ready but the Deployment has not counted them yet (milliseconds apart): not worth an edit. */
  readonly transient?: true;
}

/** Edits at most this often (the final one excepted): a phone shows every edit as a change. */
export const EDIT_INTERVAL_MS = 2_000;
/** How long a start is followed when the Deployment sets no progress deadline of its own (Kubernetes' default is 600 s too). */
export const DEFAULT_DEADLINE_MS = 600_000;

/** How long to follow: the configured time, else the Deployment's `progressDeadlineSeconds`, else 10 min. */
export function deadlineMs(configured: number | undefined, deployment: DeploymentObject | undefined): number {
  const own = deployment?.spec?.progressDeadlineSeconds;
  return configured ?? (own !== undefined ? own * 1000 : DEFAULT_DEADLINE_MS);
}

/** The message for where the rollout stands, `elapsedMs` after the command; past the deadline a start that is not ready is final. */
export function progressState(action: ProgressAction, target: DeploymentTarget, view: ProgressView, elapsedMs: number, deadlinePassed: boolean): ProgressState {
  const after = elapsed(elapsedMs);
  const name = shown(target);
  if (action === 'stop') {
    const r = view.pods ? stopProgress(view.pods) : countsStop(view.deployment);
    if (r.phase === 'off') return { text: `⏹ Stopped ${name}: ✅ off after ${after}.`, final: true, done: true };
    if (deadlinePassed) return { text: `⏹ Stopping ${name}: ⚠️ still not off after ${after}: ${r.reason ?? 'pods still there'}.`, final: true };
    return { text: `⏹ Stopping ${name}… ⏳ ${r.reason ?? 'pods shutting down'}`, final: false };
  }
  const r = view.pods ? startProgress(view.deployment, view.pods) : countsStart(view.deployment);
  const steps = r.steps.filter((s) => s !== 'ready');
  if (r.phase === 'ready') return { text: `▶️ Started ${name}: ✅ ready after ${after}${steps.length ? ` (${steps.join(' · ')})` : ''}.`, final: true, done: true };
  if (r.phase === 'failed') return { text: `▶️ Starting ${name}: ❌ ${r.reason ?? 'it failed'}.`, final: true };
  if (deadlinePassed) return { text: `▶️ Starting ${name}: ⚠️ still not ready after ${after}${r.reason ? `: ${r.reason}` : ''}.`, final: true };
  const text = `▶️ Starting ${name}… ⏳ ${[...steps, ...(r.reason ? [r.reason] : [])].join(' · ') || 'waiting'}`;
  const desired = view.deployment.spec?.replicas ?? 0;
  return desired > 0 && view.pods !== undefined && readyPods(view.pods) >= desired ? { text, final: false, transient: true } : { text, final: false };
}

/** The text of an earlier start or stop that a later command took over: final, and says where to look. */
export function supersededText(action: ProgressAction, target: DeploymentTarget, by: ProgressAction): string {
  const what = action === 'start' ? `▶️ Starting ${shown(target)}` : `⏹ Stopping ${shown(target)}`;
  return `${what}: no longer followed here: a ${by} came after it (see below).`;
}

/** Final text when the deadline passed while the watch was down: nothing known to report. */
export function lostText(action: ProgressAction, target: DeploymentTarget, elapsedMs: number): string {
  const what = action === 'start' ? `▶️ Starting ${shown(target)}` : `⏹ Stopping ${shown(target)}`;
  return `${what}: ⚠️ I could not follow it for ${elapsed(elapsedMs)}: the Kubernetes API did not answer. Say "status" to see where it stands.`;
}

/** A progress text with what else the reply said (a timed run's stop time) after it. */
export function withSuffix(text: string, suffix: string): string {
  if (!suffix) return text;
  return `${/[.!?]$/.test(text) ? text : `${text}.`}${suffix}`;
}

/**
 * Whether to send `next` now: when it differs from what was last sent, and either it is final or
 * the last edit is at least EDIT_INTERVAL_MS old. The moving texts carry no clock, so an unchanged
 * rollout sends nothing.
 */
export function nextEdit(lastText: string, lastEditAt: number, next: ProgressState, now: number): boolean {
  if (next.text === lastText) return false;
  return next.final || now - lastEditAt >= EDIT_INTERVAL_MS;
}

/** Seconds while they matter: `8 s`, `1 min 12 s`, then `formatDuration`'s minutes. */
export function elapsed(ms: number): string {
  const seconds = Math.max(1, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 600) return `${Math.floor(seconds / 60)} min${seconds % 60 ? ` ${seconds % 60} s` : ''}`;
  return formatDuration(ms);
}

/** Without pods: the Deployment's counts and conditions. */
function countsStart(d: DeploymentObject): Rollout {
  const desired = d.spec?.replicas ?? 0;
  const ready = d.status?.readyReplicas ?? 0;
  if (desired > 0 && ready >= desired && (d.status?.updatedReplicas ?? ready) >= desired) return { phase: 'ready', steps: [] };
  const problem = deploymentProblem(d);
  if (problem) return { phase: 'failed', steps: [], reason: problem };
  return { phase: 'moving', steps: [], reason: `${ready} of ${desired} ready` };
}

function countsStop(d: DeploymentObject): Rollout {
  const pods = d.status?.replicas ?? 0;
  if ((d.spec?.replicas ?? 0) === 0 && pods === 0) return { phase: 'off', steps: [] };
  return { phase: 'moving', steps: [], reason: `${pods} pod${pods === 1 ? '' : 's'} still there` };
}
