import { readFileSync, statSync } from 'node:fs';
import { parse } from 'yaml';
import { KubeError } from './kube.ts';

/**
 * A bearer token kept in a file and re-read as soon as the file changes. The kubelet rotates a
 * pod's projected service-account token by swapping the file (a symlink flip): client-node reads
 * it at most once a minute, so for up to 60 s after a rotation it would keep sending the old
 * token, which fails once that token is revoked (its pod deleted) or expired. A `stat` per request
 * costs microseconds; the bot makes a few requests per command.
 */
export class TokenFile {
  readonly path: string;
  #token: string | undefined;
  #seen = '';

  constructor(path: string) {
    this.path = path;
  }

  /** The current token; the last good one if the file is briefly unreadable mid-rotation. */
  read(): string {
    try {
      const st = statSync(this.path);
      const seen = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (seen !== this.#seen || this.#token === undefined) {
        this.#token = readFileSync(this.path, 'utf8').trim();
        this.#seen = seen;
      }
    } catch (error) {
      if (this.#token !== undefined) return this.#token;
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new KubeError('unauthorized', `unauthorized: the bot cannot read its Kubernetes token file ${this.path} (${code})`, undefined, { cause: error });
    }
    if (this.#token === '') throw new KubeError('unauthorized', `unauthorized: the bot's Kubernetes token file ${this.path} is empty`);
    return this.#token;
  }
}

interface RawKubeconfig {
  'current-context'?: string;
  contexts?: Array<{ name?: string; context?: { user?: string } }>;
  users?: Array<{ name?: string; user?: { token?: string; tokenFile?: string; 'token-file'?: string } }>;
}

/**
 * The token file of a kubeconfig's current user (`tokenFile`, as client-go and kubectl spell it;
 * client-node reads only `token-file`, once, and ignores `tokenFile` entirely), or undefined when
 * the user has an inline token or none.
 */
export function kubeconfigTokenFile(text: string): string | undefined {
  const raw = parse(text) as RawKubeconfig | null;
  const contextName = raw?.['current-context'];
  const userName = raw?.contexts?.find((c) => c.name === contextName)?.context?.user;
  const user = raw?.users?.find((u) => u.name === userName)?.user;
  if (user === undefined || (typeof user.token === 'string' && user.token !== '')) return undefined;
  const file = user.tokenFile ?? user['token-file'];
  return typeof file === 'string' && file !== '' ? file : undefined;
}
