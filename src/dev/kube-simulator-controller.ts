/**
 * The simulator's Deployments and its tiny deployment controller: a scale changes spec.replicas at
 * once, and after `readyDelayMs` the pods and the ready counts follow. Every change of a Deployment
 * takes the simulator's next resourceVersion and goes to the Deployments' watches.
 */
import { randomUUID } from 'node:crypto';
import type { SimulatedDeployment, SimulatorChange } from './kube-simulator-types.ts';
import { deploymentObject as render, labelsOf, type DeploymentState } from './kube-simulator-deployment.ts';
import { templateHash, type PodOwner, type SimulatedPods } from './kube-simulator-pods.ts';
import type { SimulatorWatches } from './kube-simulator-watch.ts';

const keyOf = (ns: string, name: string): string => `${ns}/${name}`;

export class DeploymentController {
  readonly #deployments = new Map<string, DeploymentState>();
  readonly #listeners = new Set<(change: SimulatorChange) => void>();
  readonly #watches: SimulatorWatches;
  readonly #pods: SimulatedPods;
  readonly #nextRevision: () => number;
  readonly #readyDelayMs: number;

  constructor(o: { watches: SimulatorWatches; pods: SimulatedPods; nextRevision: () => number; readyDelayMs: number }) {
    this.#watches = o.watches;
    this.#pods = o.pods;
    this.#nextRevision = o.nextRevision;
    this.#readyDelayMs = o.readyDelayMs;
  }

  get(ns: string, name: string): DeploymentState | undefined {
    return this.#deployments.get(keyOf(ns, name));
  }

  onChange(listener: (change: SimulatorChange) => void): () => void {
    this.#listeners.add(listener);
    return () => { this.#listeners.delete(listener); };
  }

  /** Every change gets the next revision and goes to the watches, with the object as it is now. */
  #bump(d: DeploymentState, type: 'ADDED' | 'MODIFIED' = 'MODIFIED'): void {
    const rv = this.#nextRevision();
    d.resourceVersion = String(rv);
    this.#watches.record(type, d.namespace, d.name, rv, this.object(d));
  }

  #emit(change: SimulatorChange): void { for (const l of this.#listeners) l(change); }

  add(spec: SimulatedDeployment): void {
    const image = spec.image ?? 'ghcr.io/example/agent:latest';
    const owner: PodOwner = { namespace: spec.namespace, name: spec.name, image, labels: labelsOf(spec.name),
      templateHash: templateHash(`${spec.name}/${image}`), replicaSetUid: randomUUID() };
    const d: DeploymentState = {
      namespace: spec.namespace, name: spec.name, uid: randomUUID(), created: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      image, owner, resourceVersion: '', generation: 1, replicas: spec.replicas,
      observed: { generation: 1, replicas: spec.replicas, ready: spec.replicas, available: spec.replicas, updated: spec.replicas },
      timer: undefined,
    };
    this.#deployments.set(keyOf(spec.namespace, spec.name), d);
    this.#bump(d, 'ADDED');
    // Present from the start, already running.
    this.#pods.scaled(owner, spec.replicas);
    this.#pods.settled(owner);
  }

  /** The simulated deployment controller: status follows spec after `readyDelayMs`. */
  setReplicas(d: DeploymentState, replicas: number): void {
    if (replicas === d.replicas) return;
    const from = d.replicas;
    d.replicas = replicas;
    d.generation += 1;
    d.observed.generation = d.generation;
    this.#bump(d);
    this.#emit({ type: 'scaled', namespace: d.namespace, name: d.name, from, to: replicas });
    this.#pods.scaled(d.owner, replicas);
    // The controller's status update for the pods now going away (status.terminatingReplicas).
    if (this.#pods.terminating(d.owner) > 0) this.#bump(d);
    clearTimeout(d.timer);
    d.timer = setTimeout(() => {
      d.timer = undefined;
      // Pods first: the counts report what the pods have become.
      this.#pods.settled(d.owner);
      d.observed = { generation: d.generation, replicas, ready: replicas, available: replicas, updated: replicas };
      this.#bump(d);
      this.#emit({ type: 'settled', namespace: d.namespace, name: d.name, ready: replicas, desired: replicas });
    }, this.#readyDelayMs);
    d.timer.unref();
  }

  /** The Deployment as GET returns it. */
  object(d: DeploymentState): Record<string, unknown> {
    return render(d, this.#pods.terminating(d.owner));
  }

  /** The namespace's Deployments (or the one named), as a list or a watch starts from them. */
  current(ns: string, name: string | undefined): Array<{ name: string; object: Record<string, unknown> }> {
    return [...this.#deployments.values()].filter((d) => d.namespace === ns && (name === undefined || d.name === name))
      .map((d) => ({ name: d.name, object: this.object(d) }));
  }

  delete(ns: string, name: string): boolean {
    const d = this.#deployments.get(keyOf(ns, name));
    if (!d) return false;
    clearTimeout(d.timer);
    this.#deployments.delete(keyOf(ns, name));
    this.#pods.removeAll(d.owner);
    const rv = this.#nextRevision();
    d.resourceVersion = String(rv);
    this.#watches.record('DELETED', ns, name, rv, this.object(d));
    return true;
  }

  stop(): void {
    for (const d of this.#deployments.values()) clearTimeout(d.timer);
  }
}
