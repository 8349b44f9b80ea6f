/**
 * The credentials of a test control plane, made with the `openssl` CLI (as the simulator does):
 * a CA, the API server's serving certificate for loopback and the in-cluster names, the RSA key
 * pair that signs service-account tokens, and the static token file of the control-plane
 * identities. Every file holding a key or a token is written 0600.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestbedPki {
  readonly caFile: string;
  readonly caPem: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly saKeyFile: string;
  readonly saPubFile: string;
  readonly tokenFile: string;
  /** Static bearer tokens (system:masters, the controller-manager, the scheduler, kwok). */
  readonly tokens: { readonly admin: string; readonly controllerManager: string; readonly scheduler: string; readonly kwok: string };
}

/** Names the serving certificate covers: loopback, and what in-cluster clients use for the kubernetes Service. */
const SERVER_SANS = [
  'IP:127.0.0.1', 'IP:10.96.0.1', 'DNS:localhost', 'DNS:kubernetes', 'DNS:kubernetes.default',
  'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local',
];

export async function makePki(dir: string): Promise<TestbedPki> {
  const file = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '30',
    '-subj', '/CN=openclaw-kube-testbed-ca', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', file('apiserver.key'), '-out', file('apiserver.csr'), '-subj', '/CN=kube-apiserver']);
  await writeFile(file('apiserver.ext'), [
    'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth',
    `subjectAltName=${SERVER_SANS.join(',')}`, 'authorityKeyIdentifier=keyid', 'subjectKeyIdentifier=hash', '',
  ].join('\n'));
  await run('openssl', ['x509', '-req', '-in', file('apiserver.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '30', '-extfile', file('apiserver.ext'), '-out', file('apiserver.crt')]);
  // Service-account tokens are signed with RS256 by default: an RSA pair.
  await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', file('sa.key')]);
  await run('openssl', ['pkey', '-in', file('sa.key'), '-pubout', '-out', file('sa.pub')]);
  for (const key of ['ca.key', 'apiserver.key', 'sa.key']) await chmod(file(key), 0o600);

  const token = (): string => randomBytes(24).toString('hex');
  const tokens = { admin: token(), controllerManager: token(), scheduler: token(), kwok: token() };
  // --token-auth-file: token,user,uid,"group1,group2". kwok acts as the nodes' kubelet: an admin is
  // simplest and it is not what these tests examine.
  await writeFile(file('tokens.csv'), [
    `${tokens.admin},testbed-admin,testbed-admin,"system:masters"`,
    `${tokens.controllerManager},system:kube-controller-manager,system:kube-controller-manager`,
    `${tokens.scheduler},system:kube-scheduler,system:kube-scheduler`,
    `${tokens.kwok},kwok,kwok,"system:masters"`,
    '',
  ].join('\n'), { mode: 0o600 });

  return {
    caFile: file('ca.crt'), caPem: await readFile(file('ca.crt'), 'utf8'),
    serverCertFile: file('apiserver.crt'), serverKeyFile: file('apiserver.key'),
    saKeyFile: file('sa.key'), saPubFile: file('sa.pub'),
    tokenFile: file('tokens.csv'), tokens,
  };
}

/** A kubeconfig for one bearer token (0600: it holds the token). */
export function kubeconfigYaml(server: string, caPem: string, token: string, user: string, namespace?: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: testbed', '  cluster:', `    server: ${server}`, `    certificate-authority-data: ${ca}`,
    'users:', `- name: ${user}`, '  user:', `    token: ${token}`,
    'contexts:', '- name: testbed', '  context:', '    cluster: testbed', `    user: ${user}`,
    ...(namespace ? [`    namespace: ${namespace}`] : []),
    'current-context: testbed', '',
  ].join('\n');
}

export async function writeKubeconfig(path: string, server: string, caPem: string, token: string, user: string, namespace?: string): Promise<void> {
  await writeFile(path, kubeconfigYaml(server, caPem, token, user, namespace), { mode: 0o600 });
}
