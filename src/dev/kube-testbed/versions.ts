/**
 * The pinned versions of the test control plane and where their binaries are cached.
 *
 * The cache lives outside the clone (default `$HOME/.cache/openclaw-kube-testbed`, or
 * `KUBE_TESTBED_CACHE`) so that a fresh clone on the same machine, CI included, reuses a build
 * that costs ~20 minutes cold. Binaries sit in a directory keyed by the versions and by a hash
 * of the committed wrapper go.mod/go.sum files: changing a pin builds into a new directory.
 * The Go module and build caches are shared by all keys (both are content-addressed).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ETCD_VERSION = 'v3.7.3';
export const KUBERNETES_VERSION = 'v1.37.2';
export const KWOK_VERSION = 'v0.8.0';

/** The wrapper Go modules (committed, so go.sum pins every dependency). */
export const GO_MODULES_DIR = fileURLToPath(new URL('./go/', import.meta.url));

export type TestbedBinary = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubectl' | 'kwok';

/** How each binary is built: which wrapper module, which main package, and its version stamp. */
export const BINARIES: Readonly<Record<TestbedBinary, { module: string; pkg: string; ldflags: string }>> = (() => {
  // Without these stamps the servers report v0.0.0, and clients then warn about version skew.
  const k8sStamp = ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']
    .map((p) => `-X ${p}.gitVersion=${KUBERNETES_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${KUBERNETES_VERSION.split('.')[1]!}`)
    .join(' ');
  const k8s = (cmd: string) => ({ module: 'kubernetes', pkg: `k8s.io/kubernetes/cmd/${cmd}`, ldflags: `-s -w ${k8sStamp}` });
  return {
    'etcd': { module: 'etcd', pkg: 'go.etcd.io/etcd/server/v3', ldflags: '-s -w' },
    'kube-apiserver': k8s('kube-apiserver'),
    'kube-controller-manager': k8s('kube-controller-manager'),
    'kube-scheduler': k8s('kube-scheduler'),
    'kubectl': k8s('kubectl'),
    'kwok': { module: 'kwok', pkg: 'sigs.k8s.io/kwok/cmd/kwok', ldflags: '-s -w' },
  };
})();

/**
 * kwok refuses to start without Stage objects; these come from the kwok module itself (copied into
 * the cache). stages.ts adds our own at start-up (pods that misbehave) and narrows pod-ready.
 */
export const KWOK_STAGE_FILES: readonly string[] = [
  'kustomize/stage/node/fast/node-initialize.yaml',
  'kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml',
  'kustomize/stage/pod/fast/pod-ready.yaml',
  'kustomize/stage/pod/fast/pod-complete.yaml',
  'kustomize/stage/pod/fast/pod-delete.yaml',
];

/** The cache root: `KUBE_TESTBED_CACHE`, else `$HOME/.cache/openclaw-kube-testbed`. */
export function testbedCacheRoot(): string {
  const fromEnv = process.env['KUBE_TESTBED_CACHE'];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  return join(homedir(), '.cache', 'openclaw-kube-testbed');
}

/** The directory of this exact set of pins: `<root>/etcd-…_k8s-…_kwok-…_<hash>`. */
export function testbedKeyDir(root = testbedCacheRoot()): string {
  const hash = createHash('sha256');
  for (const mod of ['etcd', 'kubernetes', 'kwok']) {
    for (const file of ['go.mod', 'go.sum']) hash.update(readFileSync(join(GO_MODULES_DIR, mod, file)));
  }
  const key = `etcd-${ETCD_VERSION}_k8s-${KUBERNETES_VERSION}_kwok-${KWOK_VERSION}_${hash.digest('hex').slice(0, 10)}`;
  return join(root, key);
}

/** Where the binaries and the kwok stage files are, once built. */
export function testbedPaths(root = testbedCacheRoot()): { keyDir: string; binDir: string; stagesDir: string } {
  const keyDir = testbedKeyDir(root);
  return { keyDir, binDir: join(keyDir, 'bin'), stagesDir: join(keyDir, 'stages') };
}
