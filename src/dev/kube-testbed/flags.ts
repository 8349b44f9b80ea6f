/**
 * Command lines of the testbed's processes, and its fake Node. Everything listens on 127.0.0.1
 * only. Facts behind the less obvious flags are in KUBERNETES-TESTBED.md (shared notes).
 */
import type { KubeObject } from './api-client.ts';
import type { TestbedPki } from './pki.ts';

export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const FAKE_NODE_NAME = 'kwok-node-0';
/** kwok manages only Nodes carrying this annotation, never a real one. */
export const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';

export function etcdArgs(dataDir: string, clientPort: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    '--name', 'testbed', '--data-dir', dataDir,
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `testbed=${peer}`, '--initial-cluster-state', 'new',
    // A throwaway store: no fsync makes every write ~100x cheaper on a shared disk.
    '--unsafe-no-fsync', '--log-level', 'warn',
  ];
}

export function apiServerArgs(pki: TestbedPki, port: number, etcdPort: number): string[] {
  return [
    '--etcd-servers', `http://127.0.0.1:${etcdPort}`,
    '--bind-address', '127.0.0.1', '--advertise-address', '127.0.0.1', '--secure-port', String(port),
    // With a loopback advertise address the endpoint reconciler refuses to start.
    '--endpoint-reconciler-type', 'none',
    '--tls-cert-file', pki.serverCertFile, '--tls-private-key-file', pki.serverKeyFile,
    '--client-ca-file', pki.caFile,
    '--token-auth-file', pki.tokenFile,
    '--authorization-mode', 'RBAC',
    '--service-account-issuer', SERVICE_ACCOUNT_ISSUER,
    '--service-account-key-file', pki.saPubFile,
    '--service-account-signing-key-file', pki.saKeyFile,
    '--service-cluster-ip-range', '10.96.0.0/16',
    '--profiling=false',
  ];
}

export function controllerManagerArgs(pki: TestbedPki, kubeconfig: string): string[] {
  return [
    '--kubeconfig', kubeconfig,
    // No HTTPS endpoint of its own: nothing probes it, and no port can clash.
    '--secure-port', '0', '--bind-address', '127.0.0.1',
    '--leader-elect=false',
    '--use-service-account-credentials=true',
    '--service-account-private-key-file', pki.saKeyFile,
    '--root-ca-file', pki.caFile,
    '--controllers', '*',
    '--profiling=false',
  ];
}

export function schedulerArgs(kubeconfig: string): string[] {
  return ['--kubeconfig', kubeconfig, '--secure-port', '0', '--bind-address', '127.0.0.1', '--leader-elect=false', '--profiling=false'];
}

export function kwokArgs(kubeconfig: string, stagesFile: string, serverPort: number): string[] {
  return [
    '--kubeconfig', kubeconfig,
    '--config', stagesFile,
    '--manage-all-nodes=false',
    '--manage-nodes-with-annotation-selector', `${KWOK_NODE_ANNOTATION}=fake`,
    '--server-address', `127.0.0.1:${serverPort}`,
  ];
}

/** The Node kwok plays the kubelet of. No taint: the Deployments under test schedule onto it. */
export function fakeNode(): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Node',
    metadata: {
      name: FAKE_NODE_NAME,
      annotations: { [KWOK_NODE_ANNOTATION]: 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: { 'kubernetes.io/hostname': FAKE_NODE_NAME, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', type: 'kwok' },
    },
    spec: {},
  };
}
