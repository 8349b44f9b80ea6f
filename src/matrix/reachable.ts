import type { Logger } from '../log.ts';
import { MatrixError } from './client.ts';

/**
 * Retries while the homeserver does not answer at all (down, starting), with capped backoff; also
 * while another service the login needs does not (an error whose `unreachable` names it: Keycloak).
 */
export async function untilReachable<T>(call: () => Promise<T>, logger: Logger, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const other = (error as { unreachable?: unknown } | null)?.unreachable;
      const unreachable = typeof other === 'string' || error instanceof MatrixError && (error.status === 0 || error.status === 502 || error.status === 503 || error.status === 504);
      if (!unreachable || signal?.aborted) throw error;
      const wait = Math.min(1000 * 2 ** (attempt - 1), 30_000);
      logger.warn({ attempt, retry_in_s: wait / 1000 }, typeof other === 'string' ? `${other} not reachable yet: ${(error as Error).message}` : `homeserver not reachable yet: ${(error as Error).message}`);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, wait);
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(new Error(`stopped while waiting for the ${typeof other === 'string' ? other : 'homeserver'}`));
        }, { once: true });
      });
    }
  }
}
