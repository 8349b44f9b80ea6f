import { ConfigError } from '../config/config-error.ts';

/**
 * A kubeconfig that cannot be used, as one line naming the setting and the file. YAML parsers
 * put an excerpt of the file under their first line (five lines and a caret); the first line
 * already says what and where (`bad indentation of a sequence entry (4:4)`).
 */
export function kubeconfigError(error: unknown, path: string | undefined): ConfigError {
  const where = path ?? 'the in-cluster service account or ~/.kube/config';
  const { code } = error as { code?: unknown };
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new ConfigError('kubernetes.kubeconfig', `cannot read ${where} (${code})`);
  const first = (error instanceof Error ? error.message : String(error)).split('\n')[0]?.trim() ?? '';
  // client-node's words for a file that parsed but names no usable cluster.
  const reason = first === 'No active cluster!' ? 'no current cluster (check current-context, contexts and clusters)' : first.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 200);
  return new ConfigError('kubernetes.kubeconfig', `${where} is not a usable kubeconfig: ${reason}`);
}
