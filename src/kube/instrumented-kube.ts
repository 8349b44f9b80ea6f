import type { Health } from '../health.ts';
import type { Metrics } from '../metrics.ts';
import { KubeError, targetLabel, type DeploymentTarget, type Kube } from './kube.ts';

/** Times every call for /metrics and keeps the readiness of "the Kubernetes API answers" current. */
export function instrumentKube(kube: Kube, metrics: Metrics, health: Health): Kube {
  async function timed<T>(operation: string, target: DeploymentTarget, call: () => Promise<T>): Promise<T> {
    const end = metrics.kubeLatency.startTimer({ operation, target: targetLabel(target) });
    try {
      const result = await call();
      end({ outcome: 'ok' });
      health.set('kubernetes', true, 'the API answered');
      return result;
    } catch (error) {
      const kind = error instanceof KubeError ? error.kind : 'other';
      end({ outcome: kind });
      // Any HTTP answer (even 403/404) means the API is there; only silence makes us unready.
      const silent = kind === 'unreachable' || kind === 'timeout';
      health.set('kubernetes', !silent, error instanceof KubeError ? error.human : 'unexpected error');
      throw error;
    }
  }
  return {
    scale: (target, replicas) => timed('scale', target, () => kube.scale(target, replicas)),
    status: (target) => timed('status', target, () => kube.status(target)),
    ping: (target) => timed('ping', target, () => kube.ping(target)),
    ...(kube.recordEvent ? { recordEvent: (target, event, options) => timed('event', target, () => kube.recordEvent!(target, event, options)) } : {}),
    ...(kube.checkPods ? { checkPods: (target) => timed('pods-check', target, () => kube.checkPods!(target)) } : {}),
    ...(kube.follow ? { follow: kube.follow.bind(kube) } : {}),
    ...(kube.rolloutNow ? { rolloutNow: (target) => timed('pods-list', target, () => kube.rolloutNow!(target)) } : {}),
  };
}
