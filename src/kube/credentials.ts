/**
 * What goes with each request to prove who the bot is, read at call time so that rotated
 * credentials are used at once: a static token, a token file (re-read when it changes), a client
 * certificate, or an `exec` credential plugin's answer (kept until its expirationTimestamp, or
 * until the API server refuses it with a 401).
 */
import { execFile } from 'node:child_process';
import { basename } from 'node:path';
import { KubeErrorDetail } from './api-errors.ts';
import { KubeError } from './kube.ts';
import type { ExecConfig, UserAuth } from './kubeconfig.ts';
import { TokenFile } from './token-file.ts';

export interface Credential {
  readonly token?: string;
  readonly clientCert?: string;
  readonly clientKey?: string;
}

/** A plugin's credential is renewed this long before it expires, so no request carries one that lapses on the way. */
const EXPIRY_MARGIN_MS = 10_000;
const EXEC_TIMEOUT_MS = 30_000;
const MAX_OUTPUT = 1 << 20;

export class Credentials {
  readonly #user: UserAuth;
  readonly #tokenFile: TokenFile | undefined;
  readonly #execTimeoutMs: number;
  #cached: { credential: Credential; expiresAt: number } | undefined;
  #running: Promise<Credential> | undefined;

  constructor(user: UserAuth, options: { execTimeoutMs?: number } = {}) {
    this.#user = user;
    this.#tokenFile = user.tokenFile === undefined ? undefined : new TokenFile(user.tokenFile);
    this.#execTimeoutMs = options.execTimeoutMs ?? EXEC_TIMEOUT_MS;
  }

  /** True when a 401 can be cured by asking again (an exec plugin). */
  get renewable(): boolean {
    return this.#user.exec !== undefined;
  }

  /** The credential for the next request. */
  async current(): Promise<Credential> {
    const { token, clientCert, clientKey, exec } = this.#user;
    const fixed: Credential = {
      ...(token !== undefined ? { token } : this.#tokenFile ? { token: this.#tokenFile.read() } : {}),
      ...(clientCert !== undefined && clientKey !== undefined ? { clientCert, clientKey } : {}),
    };
    if (!exec) return fixed;
    // A certificate of the kubeconfig's own is kept even when the plugin supplies a token.
    return { ...fixed, ...(await this.#fromPlugin(exec)) };
  }

  /** The server refused the credential (401): the plugin runs again for the next request. */
  invalidate(): void {
    this.#cached = undefined;
  }

  #fromPlugin(exec: ExecConfig): Promise<Credential> {
    if (this.#cached && Date.now() < this.#cached.expiresAt) return Promise.resolve(this.#cached.credential);
    // Concurrent requests share one run of the plugin.
    this.#running ??= runPlugin(exec, this.#execTimeoutMs).then(({ credential, expiresAt }) => {
      this.#cached = { credential, expiresAt: expiresAt === undefined ? Infinity : expiresAt - EXPIRY_MARGIN_MS };
      return credential;
    }).finally(() => { this.#running = undefined; });
    return this.#running;
  }
}

function pluginError(exec: ExecConfig, what: string, detail: string, original?: unknown): KubeError {
  return new KubeError('unauthorized', `unauthorized: the kubeconfig's credential plugin ${basename(exec.command)} ${what}`, undefined,
    { cause: new KubeErrorDetail(detail.replace(/\s+/g, ' ').trim().slice(0, 300), 'ExecPlugin', undefined, original) });
}

/** Runs the plugin as client-go does: KUBERNETES_EXEC_INFO in, an ExecCredential on stdout. */
function runPlugin(exec: ExecConfig, timeoutMs: number): Promise<{ credential: Credential; expiresAt: number | undefined }> {
  const info = { apiVersion: exec.apiVersion, kind: 'ExecCredential', spec: { interactive: false, ...(exec.cluster ? { cluster: exec.cluster } : {}) } };
  const env: NodeJS.ProcessEnv = { ...process.env, KUBERNETES_EXEC_INFO: JSON.stringify(info) };
  for (const { name, value } of exec.env) env[name] = value;
  return new Promise((resolve, reject) => {
    execFile(exec.command, [...exec.args], { env, timeout: timeoutMs, maxBuffer: MAX_OUTPUT, encoding: 'utf8', windowsHide: true }, (error, stdout, stderr) => {
      const firstLine = stderr.split('\n').find((l) => l.trim() !== '') ?? '';
      if (error) {
        const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
        if (e.code === 'ENOENT') return reject(pluginError(exec, 'was not found', exec.installHint ?? `${exec.command}: not found`, error));
        if (e.killed && e.signal === 'SIGTERM') return reject(pluginError(exec, `did not answer within ${timeoutMs / 1000} s`, firstLine, error));
        const how = typeof e.code === 'number' ? `exit ${e.code}` : e.signal ? `signal ${e.signal}` : String(e.code ?? 'error');
        return reject(pluginError(exec, `failed (${how})`, firstLine || error.message, error));
      }
      let out: unknown;
      try { out = JSON.parse(stdout); } catch (parseError) { return reject(pluginError(exec, 'printed no ExecCredential', 'stdout is not JSON', parseError)); }
      const o = out as { apiVersion?: unknown; kind?: unknown; status?: Record<string, unknown> };
      if (o.kind !== 'ExecCredential' || o.apiVersion !== exec.apiVersion) {
        return reject(pluginError(exec, 'printed no ExecCredential', `got kind ${String(o.kind)} ${String(o.apiVersion)}, expected ExecCredential ${exec.apiVersion}`));
      }
      const s = o.status ?? {};
      const str = (k: string): string | undefined => (typeof s[k] === 'string' && s[k] !== '' ? s[k] : undefined);
      const token = str('token');
      const clientCert = str('clientCertificateData');
      const clientKey = str('clientKeyData');
      if (token === undefined && (clientCert === undefined || clientKey === undefined)) {
        return reject(pluginError(exec, 'printed no credential', 'status has neither token nor clientCertificateData and clientKeyData'));
      }
      const expiry = str('expirationTimestamp');
      const expiresAt = expiry === undefined ? undefined : Date.parse(expiry);
      if (expiresAt !== undefined && Number.isNaN(expiresAt)) return reject(pluginError(exec, 'printed a bad expirationTimestamp', expiry ?? ''));
      resolve({
        credential: { ...(token !== undefined ? { token } : {}), ...(clientCert !== undefined && clientKey !== undefined ? { clientCert, clientKey } : {}) },
        expiresAt,
      });
    });
  });
}
