/**
 * The audit trail in the cluster: every scale the bot makes becomes a Kubernetes Event on the
 * Deployment (events.k8s.io/v1, reason `ScaledByChat`, the note saying who, where and why), so
 * `kubectl describe deployment` and the cluster's event pipelines show who did what.
 *
 * Best effort by design: an Event never delays or fails the chat reply (it is sent alongside, its
 * failure only logged). RBAC may not grant `create` on events (the Role is from before, or the
 * operator left it out on purpose): a dry-run at start-up finds that out and logs one warning, and
 * the bot then records nothing, rather than failing on every scale.
 */
import { errorMessage } from '../failure.ts';
import { KubeError, type DeploymentTarget, type Kube } from '../kube/kube.ts';
import type { Logger } from '../log.ts';

export const AUDIT_REASON = 'ScaledByChat';

export class ScaleAudit {
  readonly #kube: Kube;
  readonly #target: DeploymentTarget;
  readonly #logger: Logger;
  #refused = false;
  /** Events on their way (tests wait for them). */
  readonly #pending = new Set<Promise<void>>();

  constructor(kube: Kube, target: DeploymentTarget, logger: Logger) {
    this.#kube = kube;
    this.#target = target;
    this.#logger = logger;
  }

  /** False once the API refused `create` on events: nothing more is sent. */
  get enabled(): boolean {
    return this.#kube.recordEvent !== undefined && !this.#refused;
  }

  /** At start-up: may the bot create Events? A dry-run create answers without storing anything. */
  async check(): Promise<void> {
    if (!this.enabled) return;
    try {
      await this.#kube.recordEvent!(this.#target, { reason: AUDIT_REASON, action: 'Check', note: 'start-up check of the bot\'s permission to record its scales' }, { dryRun: true });
      this.#logger.debug('kubernetes: scales will be recorded as Events on the Deployment');
    } catch (error) {
      this.#failed(error);
    }
  }

  /** Records a scale; returns at once. */
  record(action: 'Start' | 'Stop', note: string): void {
    if (!this.enabled) return;
    const sent = this.#kube.recordEvent!(this.#target, { reason: AUDIT_REASON, action, note: note.slice(0, 1024) })
      .catch((error: unknown) => this.#failed(error))
      .finally(() => this.#pending.delete(sent));
    this.#pending.add(sent);
  }

  /** Resolves when the Events sent so far have been answered. */
  async settled(): Promise<void> {
    await Promise.all([...this.#pending]);
  }

  #failed(error: unknown): void {
    if (error instanceof KubeError && error.kind === 'forbidden') {
      if (this.#refused) return;
      this.#refused = true;
      this.#logger.warn({ namespace: this.#target.namespace }, `kubernetes: cannot record scales as Events (${error.human}); the bot works on without them. To have them, the Role needs create on events in API group events.k8s.io: see config/kubernetes/role.yaml`);
      return;
    }
    const human = error instanceof KubeError ? error.human : errorMessage(error);
    this.#logger.warn({ namespace: this.#target.namespace, kind: error instanceof KubeError ? error.kind : undefined }, `kubernetes: could not record a scale as an Event: ${human}`);
  }
}
