/**
 * A test double for Keycloak: the few endpoints a bot and Synapse use, on loopback. It serves the
 * Resource Owner Password Credentials grant (`POST /realms/<realm>/protocol/openid-connect/token`),
 * signs access tokens as Keycloak does by default (RS256, `kid` in the header, `iss`, `sub` a
 * UUID, `preferred_username`, `aud: account`, `azp`, five minutes of life), and publishes the key
 * as a JWKS (`…/protocol/openid-connect/certs`) with the discovery document beside it. Its error
 * answers have Keycloak's shapes. It can be told to refuse everyone, or be down.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import { createHash, createHmac, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface KeycloakDoubleOptions {
  readonly realm: string;
  /** Username → password. */
  readonly users: Readonly<Record<string, string>>;
  readonly clientId: string;
  /** Unset: a public client. */
  readonly clientSecret?: string;
  /** HS512 with this secret instead of RS256 (as a realm whose client signs with a shared key). */
  readonly hmacSecret?: string;
  /** `sub` is the username rather than a UUID (a realm with a mapper for it, as com.famedly.login.token needs). */
  readonly subjectIsUsername?: boolean;
  /** Token lifetime; Keycloak's default is 300 s. */
  readonly lifetimeSeconds?: number;
  /** 0: any free port. */
  readonly port?: number;
}

export interface KeycloakDouble {
  /** Base URL, as KEYCLOAK_URL. */
  readonly url: string;
  readonly issuer: string;
  readonly jwksUrl: string;
  /** The RS256 public key as PEM (for Synapse's own jwt_config). */
  readonly publicKeyPem: string;
  /** Token requests received (whatever their outcome). */
  readonly tokenRequests: number;
  /** Answer every token request with 401 invalid_grant, as for a changed password. */
  refuse(on: boolean): void;
  /** Issue tokens that expired ten minutes ago (beyond Synapse's two minutes of leeway). */
  expire(on: boolean): void;
  /** Stop listening (connections are refused) until `up()`, on the same port. */
  down(): Promise<void>;
  up(): Promise<void>;
  stop(): Promise<void>;
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

export async function startKeycloakDouble(o: KeycloakDoubleOptions): Promise<KeycloakDouble> {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = publicKey.export({ format: 'jwk' });
  const kid = createHash('sha256').update(JSON.stringify(jwk)).digest('base64url').slice(0, 16);
  let refusing = false;
  let expired = false;
  let tokenRequests = 0;
  let base = '';
  const realmPath = `/realms/${o.realm}`;
  const issuer = (): string => `${base}${realmPath}`;

  const signToken = (username: string): string => {
    const now = Math.floor(Date.now() / 1000) - (expired ? 900 : 0);
    const claims = {
      exp: now + (o.lifetimeSeconds ?? 300), iat: now, jti: randomUUID(), iss: issuer(), aud: 'account',
      // Keycloak's sub is the user's UUID; the username is in preferred_username. The double derives
      // a stable UUID-like id from the name, so a restart of it does not change the user.
      sub: o.subjectIsUsername ? username : uuidFrom(username), typ: 'Bearer', azp: o.clientId, scope: 'openid profile email', preferred_username: username,
    };
    const header = o.hmacSecret ? { alg: 'HS512', typ: 'JWT' } : { alg: 'RS256', typ: 'JWT', kid };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = o.hmacSecret ? createHmac('sha512', o.hmacSecret).update(input).digest() : sign('sha256', Buffer.from(input), privateKey as KeyObject);
    return `${input}.${b64url(signature)}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', base);
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (!url.pathname.startsWith(`${realmPath}/`)) return json(404, { error: 'Realm does not exist' });
    const rest = url.pathname.slice(realmPath.length);
    if (req.method === 'GET' && rest === '/protocol/openid-connect/certs') {
      return json(200, { keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] });
    }
    if (req.method === 'GET' && rest === '/.well-known/openid-configuration') {
      return json(200, { issuer: issuer(), token_endpoint: `${issuer()}/protocol/openid-connect/token`, jwks_uri: `${issuer()}/protocol/openid-connect/certs`, grant_types_supported: ['password'] });
    }
    if (req.method !== 'POST' || rest !== '/protocol/openid-connect/token') return json(404, { error: 'Unable to find matching target resource method' });
    tokenRequests++;
    const form = new URLSearchParams(await readBody(req));
    if (form.get('client_id') !== o.clientId) return json(401, { error: 'invalid_client', error_description: 'Invalid client or Invalid client credentials' });
    if (o.clientSecret !== undefined && form.get('client_secret') !== o.clientSecret) return json(401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' });
    if (form.get('grant_type') !== 'password') return json(400, { error: 'unsupported_grant_type', error_description: 'Unsupported grant_type' });
    const username = form.get('username') ?? '';
    if (refusing || o.users[username] === undefined || o.users[username] !== form.get('password')) return json(401, { error: 'invalid_grant', error_description: 'Invalid user credentials' });
    return json(200, { access_token: signToken(username), expires_in: o.lifetimeSeconds ?? 300, refresh_expires_in: 1800, refresh_token: b64url(randomUUID()), token_type: 'Bearer', 'not-before-policy': 0, scope: 'openid profile email' });
  };

  let server: Server;
  const sockets = new Set<Socket>();
  let port = o.port ?? 0;
  const listen = async (): Promise<void> => {
    server = createServer((req, res) => void handle(req, res).catch(() => res.writeHead(500).end()));
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    port = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
  };
  const close = async (): Promise<void> => {
    if (!server.listening) return;
    // Kept-alive connections too: "down" means nothing answers.
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  await listen();

  return {
    url: base,
    issuer: issuer(),
    jwksUrl: `${issuer()}/protocol/openid-connect/certs`,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    get tokenRequests() {
      return tokenRequests;
    },
    refuse: (on) => void (refusing = on),
    expire: (on) => void (expired = on),
    down: close,
    up: listen,
    stop: close,
  };
}

function uuidFrom(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
