import { ConfigError } from '../config/config-error.ts';
import { KubeconfigProblem } from './kubeconfig.ts';

/**
 * A kubeconfig that cannot be used, as one line naming the setting and the file. YAML parsers
 * put an excerpt of the file under their first line; the first line already says what and where
 * (`Sequence item without - indicator at line 4, column 1`).
 */
export function kubeconfigError(error: unknown, path: string | undefined): ConfigError {
  if (error instanceof KubeconfigProblem && error.where === undefined) return new ConfigError('kubernetes.kubeconfig', error.message);
  const where = error instanceof KubeconfigProblem ? error.where : path ?? 'the in-cluster service account or ~/.kube/config';
  const { code } = error as { code?: unknown };
  const file = (error as { path?: unknown }).path;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    return new ConfigError('kubernetes.kubeconfig', `cannot read ${typeof file === 'string' && path === undefined ? file : where} (${code})`);
  }
  const first = (error instanceof Error ? error.message : String(error)).split('\n')[0]?.trim().replace(/:$/, '') ?? '';
  const reason = first.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 200);
  return new ConfigError('kubernetes.kubeconfig', `${where} is not a usable kubeconfig: ${reason}`);
}
