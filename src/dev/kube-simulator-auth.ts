/**
 * Who a request to the simulator comes from (a client certificate its CA signed, else a bearer
 * token) and what that identity may do there, as RBAC would answer: 401 for nobody, 403 with the
 * real server's message for a verb, resource, name or namespace the identity has no grant for.
 */
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { HttpStatus } from './kube-simulator-patch.ts';
import type { KubeSimulatorOptions, SimulatedIdentity } from './kube-simulator-types.ts';

export const inNamespace = (who: SimulatedIdentity, ns: string): boolean => who.namespace === undefined || who.namespace === ns;

export class SimulatorAuth {
  readonly #options: Pick<KubeSimulatorOptions, 'tokens' | 'certificates'>;
  readonly #caCert: X509Certificate;

  constructor(options: Pick<KubeSimulatorOptions, 'tokens' | 'certificates'>, caPem: string) {
    this.#options = options;
    this.#caCert = new X509Certificate(caPem);
  }

  // Client certificates are asked for, not required: tokens work too. Only one the CA signed identifies
  // (checked by hand: a `ca` option would make the server send its CA in the chain, which the real one does not).
  #verifiedByCa(peer: X509Certificate): boolean {
    const now = Date.now();
    return peer.checkIssued(this.#caCert) && peer.verify(this.#caCert.publicKey) && Date.parse(peer.validFrom) <= now && now <= Date.parse(peer.validTo);
  }

  /** A verified client certificate first, then the bearer token (the real server's order). */
  identify(req: IncomingMessage): SimulatedIdentity | undefined {
    const peer = this.#options.certificates ? (req.socket as TLSSocket).getPeerX509Certificate() : undefined;
    if (peer && this.#verifiedByCa(peer)) {
      const cn = /^CN=(.+)$/m.exec(peer.subject)?.[1];
      const who = cn === undefined ? undefined : this.#options.certificates?.[cn];
      if (who) return who;
    }
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    return match ? this.#options.tokens[match[1]!] : undefined;
  }

  /** `name` undefined: a list or watch of the whole collection, which no Role narrowed by resourceNames allows. */
  authorize(req: IncomingMessage, verb: string, resource: string, ns: string, name: string | undefined): void {
    const who = this.identify(req);
    if (!who) throw new HttpStatus(401, 'Unauthorized', 'Unauthorized');
    const named = who.resourceNames === undefined || (name !== undefined && who.resourceNames.includes(name));
    const allowed = inNamespace(who, ns) && named && (verb === 'get' ? who.canGet : verb === 'list' || verb === 'watch' ? who.canWatch === true && name !== undefined : who.canPatch);
    if (!allowed) {
      const subject = name === undefined ? 'deployments.apps' : `deployments.apps "${name}"`;
      throw new HttpStatus(403, 'Forbidden', `${subject} is forbidden: User "${who.user}" cannot ${verb} resource "${resource}" in API group "apps" in the namespace "${ns}"`,
        { ...(name !== undefined ? { name } : {}), group: 'apps', kind: 'deployments' });
    }
  }
}
