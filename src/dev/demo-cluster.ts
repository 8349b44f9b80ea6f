/**
 * The cluster side of `npm run demo`: the simulated API server (default: starts in milliseconds),
 * or with `--real-kubernetes` the real control plane of src/dev/kube-testbed with the project's
 * RBAC manifests applied and the bot holding a bound service-account token, as in a pod.
 * Either way the demo prints what changes in the cluster while the conversation goes on.
 */
import { join } from 'node:path';
import type { Deps } from '../app.ts';
import { createKube } from '../kube/lean-kube.ts';
import { COLD_BUILD_NOTE, testbedBuilt } from './kube-testbed/build.ts';
import { applyTargetsRbac, requestPodToken, targetDeployment, writeServiceAccountFiles } from './kube-testbed/project-manifests.ts';
import { startKubeTestbed, type KubeTestbed } from './kube-testbed/testbed.ts';
import type { Stack } from './stack.ts';

export interface DemoCluster {
  /** One line for the banner, in plain words. */
  readonly description: string;
  /** What the bot is started with (the real cluster: its in-cluster credentials). */
  readonly deps: Partial<Deps>;
  readyReplicas(): Promise<number>;
  /** Prints changes until stopped. */
  watch(print: (line: string) => void): void;
  stop(): Promise<void>;
}

export const SIMULATED_DESCRIPTION = 'a SIMULATED API server on 127.0.0.1 (no real cluster is contacted or changed; `--real-kubernetes` for a real control plane)';

export function simulatedCluster(stack: Stack, namespace: string, name: string): DemoCluster {
  let unsubscribe = (): void => undefined;
  return {
    description: SIMULATED_DESCRIPTION,
    deps: {},
    readyReplicas: async () => (stack.sim.deployment(namespace, name)?.['status'] as { readyReplicas?: number } | undefined)?.readyReplicas ?? 0,
    watch(print) {
      unsubscribe = stack.sim.onChange((change) => {
        if (change.type === 'scaled') print(`[simulated cluster] ${change.namespace}/${change.name}: spec.replicas ${change.from} → ${change.to}`);
        else print(`[simulated cluster] ${change.namespace}/${change.name}: ${change.ready}/${change.desired} pods ready`);
      });
    },
    stop: async () => unsubscribe(),
  };
}

/**
 * Starts the real control plane (building it first if needed, saying so) and sets the bot up on it:
 * the Deployment `name`, and `more` beside it in the same namespace (further targets), each with its
 * Role and RoleBinding as the kustomization renders them.
 */
export async function realCluster(dir: string, namespace: string, name: string, more: readonly string[], say: (line: string) => void): Promise<DemoCluster> {
  if (!testbedBuilt()) say(`building the Kubernetes testbed first: ${COLD_BUILD_NOTE}`);
  const started = Date.now();
  const tb: KubeTestbed = await startKubeTestbed({ logger: { info: (m) => say(m) } });
  say(`real control plane up in ${((Date.now() - started) / 1000).toFixed(1)} s; kubectl: ${tb.binaries.path('kubectl')} --kubeconfig ${tb.adminKubeconfig} get pods -A`);
  const names = [name, ...more];
  await applyTargetsRbac(tb, names.map((n) => ({ namespace, name: n })));
  for (const n of names) await tb.admin.apply(targetDeployment(namespace, n));
  const token = await requestPodToken(tb);
  const saRoot = join(dir, 'pod-root');
  await writeServiceAccountFiles(saRoot, tb, token.token);
  // What the kubelet gives a pod: the API server's address in the environment.
  process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
  process.env['KUBERNETES_SERVICE_PORT'] = String(tb.port);
  const kube = createKube({ requestTimeoutMs: 5_000, serviceAccountRoot: saRoot, watch: names.map((n) => ({ namespace, name: n })) });
  const path = (n: string): string => `/apis/apps/v1/namespaces/${namespace}/deployments/${n}`;
  const podsPath = (n: string): string => `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(`app=${n}`)}`;
  let timer: NodeJS.Timeout | undefined;
  return {
    description: `a REAL Kubernetes ${tb.server} (etcd, kube-apiserver, controller-manager, scheduler; kwok as a fake kubelet: no containers run), the project's RBAC applied, the bot holding a bound service-account token`,
    deps: { kube },
    readyReplicas: async () => ((await tb.admin.ok('GET', path(name)))['status'] as { readyReplicas?: number }).readyReplicas ?? 0,
    watch(print) {
      const last = new Map<string, string>();
      const poll = async (): Promise<void> => {
        for (const n of names) {
          const d = await tb.admin.ok('GET', path(n));
          const pods = (await tb.admin.ok('GET', podsPath(n)))['items'] as Array<{ metadata: { name: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { phase?: string } }>;
          const desired = (d['spec'] as { replicas?: number }).replicas ?? 0;
          const ready = (d['status'] as { readyReplicas?: number }).readyReplicas ?? 0;
          const podText = pods.map((p) => `${p.metadata.name} ${p.metadata.deletionTimestamp ? 'Terminating' : p.status.phase ?? '?'}${p.spec.nodeName ? ` on ${p.spec.nodeName}` : ''}`).join(', ') || 'no pods';
          const line = `[real cluster] ${namespace}/${n}: spec.replicas ${desired}, ready ${ready}; ${podText}`;
          if (line !== last.get(n)) print(line);
          last.set(n, line);
        }
      };
      const loop = (): void => { timer = setTimeout(() => void poll().catch(() => undefined).finally(() => { if (timer) loop(); }), 100); };
      loop();
    },
    async stop() {
      clearTimeout(timer);
      timer = undefined;
      await kube.close();
      await tb.stop();
    },
  };
}
