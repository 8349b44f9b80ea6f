/**
 * The simulator's TLS material, made with the `openssl` CLI: a CA and a server certificate for
 * 127.0.0.1 / localhost (once per directory), and client certificates signed by that CA.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Generates (once per dir) an EC P-256 CA and a server certificate for 127.0.0.1 / localhost. */
export async function ensureCertificates(dir: string): Promise<{ ca: string; key: string; cert: string }> {
  const file = (name: string): string => join(dir, name);
  try {
    const [ca, key, cert] = await Promise.all(['ca.crt', 'server.key', 'server.crt'].map((n) => readFile(file(n), 'utf8')));
    return { ca: ca!, key: key!, cert: cert! };
  } catch {
    // not there yet: generate below
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '30',
    '-subj', '/CN=kube-simulator-ca', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=kube-simulator']);
  await writeFile(file('server.ext'), [
    'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost', 'authorityKeyIdentifier=keyid', 'subjectKeyIdentifier=hash', '',
  ].join('\n'));
  await run('openssl', ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '30', '-extfile', file('server.ext'), '-out', file('server.crt')]);
  const [ca, key, cert] = await Promise.all(['ca.crt', 'server.key', 'server.crt'].map((n) => readFile(file(n), 'utf8')));
  return { ca: ca!, key: key!, cert: cert! };
}

let certificateSerial = 0;

/** A client certificate for `cn` (clientAuth), signed by the CA that `ensureCertificates` made in `dir`. */
export async function issueClientCertificate(dir: string, cn: string): Promise<{ cert: string; key: string }> {
  const base = join(dir, `client-${cn.replace(/[^a-z0-9-]/gi, '_')}-${++certificateSerial}`);
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${cn}/O=simulated`]);
  await writeFile(`${base}.ext`, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  await run('openssl', ['x509', '-req', '-in', `${base}.csr`, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'),
    '-CAcreateserial', '-days', '2', '-extfile', `${base}.ext`, '-out', `${base}.crt`]);
  const [cert, key] = await Promise.all([readFile(`${base}.crt`, 'utf8'), readFile(`${base}.key`, 'utf8')]);
  return { cert, key };
}
