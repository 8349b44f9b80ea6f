import type { Logger } from '../log.ts';
import { KubeError, type DeploymentStatus, type DeploymentTarget, type Kube, type ScaleResult } from './kube.ts';

export interface ConfirmOptions {
  readonly logger?: Logger;
  /** Wait before each read-back, in ms; their number bounds the retry. */
  readonly readBackDelaysMs?: readonly number[];
  /** Upper bound for all read-backs of one write together, so a chat answer never waits long. */
  readonly budgetMs?: number;
}

const DEFAULT_DELAYS_MS = [0, 500, 1500];
const DEFAULT_BUDGET_MS = 10_000;

/** Socket and TLS codes that prove the request never reached the API server (nothing to read back). */
const NEVER_SENT = /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|UND_ERR_CONNECT_TIMEOUT|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH)/;

/**
 * True when a failed write may still have been applied: its answer timed out or the connection
 * dropped after the request could have reached the server, or the server said it timed out itself
 * (504) or failed inside (500, e.g. "etcdserver: request timed out" after the commit).
 */
export function mayHaveApplied(error: KubeError): boolean {
  if (error.kind === 'timeout') return true;
  if (error.kind === 'server') return error.status === 500 || error.status === 504;
  if (error.kind !== 'unreachable') return false;
  const code = (error.cause as { code?: unknown } | undefined)?.code;
  return !(typeof code === 'string' && NEVER_SENT.test(code));
}

/**
 * Never reports a failure for a write that took effect. When a scale fails in a way that leaves its
 * outcome open (see `mayHaveApplied`), the Deployment is read back a few times, briefly, and the
 * answer is the truth: the change is in place (a success, with `readBack` set), it is not (the
 * original failure, saying what was read), or nobody can tell (`unknown-outcome`). A wrapper around
 * the seam, so it holds whichever client implements `Kube`.
 */
export function confirmWrites(kube: Kube, options: ConfirmOptions = {}): Kube {
  const delays = options.readBackDelaysMs ?? DEFAULT_DELAYS_MS;
  const budgetMs = options.budgetMs ?? DEFAULT_BUDGET_MS;
  const log = options.logger;

  async function readBack(target: DeploymentTarget, replicas: number, lost: KubeError): Promise<ScaleResult> {
    const deadline = Date.now() + budgetMs;
    let seen: DeploymentStatus | undefined;
    let readError: KubeError | undefined;
    for (const wait of delays) {
      if (Date.now() + wait >= deadline) break;
      await sleep(wait);
      try {
        const status = await within(kube.status(target), deadline - Date.now(), lost);
        if (status.desired === replicas) {
          log?.warn({ namespace: target.namespace, name: target.name, desired: replicas, lost: lost.human }, 'kubernetes: the answer to a scale was lost; read back, the change is in place');
          return { previous: undefined, desired: replicas, readBack: lost };
        }
        seen = status; // not (yet) applied: a write still in flight may land, so read again
      } catch (error) {
        readError = error instanceof KubeError ? error : new KubeError('other', 'reading the Deployment back failed', undefined, { cause: error });
        // Another read would meet the same refusal.
        if (readError.kind === 'forbidden' || readError.kind === 'unauthorized' || readError.kind === 'not-found') break;
      }
    }
    if (seen) {
      log?.warn({ namespace: target.namespace, name: target.name, wanted: replicas, desired: seen.desired, lost: lost.human }, 'kubernetes: a scale failed; read back, the change did not happen');
      const many = seen.desired === 1 ? 'replica' : 'replicas';
      return Promise.reject(new KubeError(lost.kind, `${lost.human}, and it still had ${seen.desired} ${many} desired when read back`, lost.status, { cause: lost.cause }));
    }
    const why = readError?.human ?? 'no time was left to read it';
    log?.error({ namespace: target.namespace, name: target.name, wanted: replicas, lost: lost.human, read_error: why }, 'kubernetes: cannot tell whether a scale took effect');
    return Promise.reject(new KubeError('unknown-outcome', `the answer to the change was lost (${lost.human}), and reading the Deployment back failed too (${why})`, lost.status, { cause: lost.cause }));
  }

  return {
    async scale(target, replicas) {
      try {
        return await kube.scale(target, replicas);
      } catch (error) {
        if (!(error instanceof KubeError) || !mayHaveApplied(error)) throw error;
        return readBack(target, replicas, error);
      }
    },
    status: (target) => kube.status(target),
    ping: (target) => kube.ping(target),
    // An Event is not worth a read-back: a lost answer means at worst a missing or a doubled audit line.
    ...(kube.recordEvent ? { recordEvent: kube.recordEvent.bind(kube) } : {}),
    ...(kube.checkPods ? { checkPods: kube.checkPods.bind(kube) } : {}),
    ...(kube.follow ? { follow: kube.follow.bind(kube) } : {}),
    ...(kube.rolloutNow ? { rolloutNow: kube.rolloutNow.bind(kube) } : {}),
  };
}

const sleep = (ms: number): Promise<void> => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());

/** The read, unless the budget runs out first (the read itself is left to its own deadline). */
function within<T>(read: Promise<T>, ms: number, lost: KubeError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const out = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new KubeError('timeout', `no answer within the ${Math.max(0, ms)} ms left to check`, undefined, { cause: lost.cause })), Math.max(0, ms));
  });
  read.catch(() => undefined);
  return Promise.race([read, out]).finally(() => clearTimeout(timer));
}
