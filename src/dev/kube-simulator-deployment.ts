/**
 * The simulator's Deployments as the API serves them: the Deployment object (apps/v1) and its
 * `scale` subresource (autoscaling/v1), in the shape and key order of kube-apiserver v1.37.
 */
import type { PodOwner } from './kube-simulator-pods.ts';

export interface DeploymentState {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly created: string;
  readonly image: string;
  readonly owner: PodOwner;
  resourceVersion: string;
  generation: number;
  replicas: number;
  observed: { generation: number; replicas: number; ready: number; available: number; updated: number };
  timer: NodeJS.Timeout | undefined;
}

/** The template's labels, which its selector matches (one label, as `kubectl create deployment` makes). */
export const labelsOf = (name: string): Record<string, string> => ({ app: name });
const labels = (d: DeploymentState): Record<string, string> => labelsOf(d.name);
const omitZero = (o: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== 0));
const meta = (d: DeploymentState): Record<string, unknown> => ({
  name: d.name, namespace: d.namespace, uid: d.uid, resourceVersion: d.resourceVersion, creationTimestamp: d.created,
});

/** The Deployment as GET returns it; `terminating`: its pods that are going away. */
export function deploymentObject(d: DeploymentState, terminating: number): Record<string, unknown> {
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
      // v1.37 always reports it, 0 included: the pods that are going away.
      terminatingReplicas: terminating,
      conditions: [
        { type: 'Progressing', status: 'True', lastUpdateTime: d.created, lastTransitionTime: d.created, reason: 'NewReplicaSetAvailable',
          message: `ReplicaSet "${d.name}-${d.owner.templateHash}" has successfully progressed.` },
        { type: 'Available', status: available ? 'True' : 'False', lastUpdateTime: d.created, lastTransitionTime: d.created,
          reason: available ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable',
          message: available ? 'Deployment has minimum availability.' : 'Deployment does not have minimum availability.' },
      ],
    },
  };
}

/** The patched Scale as the server quotes it in a decoding error (its key order). */
export function scaleJson(d: DeploymentState, replicas: unknown): string {
  return JSON.stringify({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: meta(d), spec: { replicas },
    status: { replicas: d.observed.replicas, selector: `app=${d.name}` } });
}

export function scaleObject(d: DeploymentState): Record<string, unknown> {
  // autoscaling/v1 ScaleSpec.replicas is `omitempty`: a Deployment at 0 answers `"spec": {}`.
  return {
    kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: meta(d),
    spec: d.replicas === 0 ? {} : { replicas: d.replicas },
    status: { replicas: d.observed.replicas, selector: `app=${d.name}` },
  };
}

