import { readFileSync, statSync } from 'node:fs';
import { KubeError } from './kube.ts';

/**
 * A bearer token kept in a file and re-read as soon as the file changes. The kubelet rotates a
 * pod's projected service-account token by swapping the file (a symlink flip): a client that
 * re-reads it on a timer (client-node: once a minute) keeps sending the old token for a while,
 * which fails once that token is revoked (its pod deleted) or expired. A `stat` per request costs
 * microseconds; the bot makes a few requests per command.
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
