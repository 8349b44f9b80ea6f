/**
 * A copy of `config/kubernetes` set up for several targets the way README.md ("Several targets") tells an
 * operator to: the first target in the base's DEPLOYMENT_NAMESPACE / DEPLOYMENT_NAME literals, one copy of
 * `targets/comfy` per further target (the two values of its target.yaml edited) listed where the base's commented
 * `# - targets/comfy` line is, and optionally the targets-file component enabled by uncommenting its lines,
 * with a targets.yaml written for these targets. Editing the commented lines themselves (not inserting our
 * own) makes the tests fail when the instructions in kustomization.yaml stop working.
 *
 * Used by the unit test (any kustomize on PATH) and the testbed (its own kubectl). Development-only.
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

/** A target Deployment: its namespace and name. */
export interface TargetRef {
  readonly namespace: string;
  readonly name: string;
}

export const PROJECT_BASE = fileURLToPath(new URL('../../../config/kubernetes/', import.meta.url));
/** The example directory an operator copies per extra target, relative to the base. */
export const EXAMPLE_TARGET_DIR = 'targets/comfy';
/** In a target directory, the ConfigMap naming its Deployment: the one file an operator edits there. */
export const TARGET_FILE = 'target.yaml';
/** The component shipping the targets file, relative to the base, and where the file is in it. */
export const TARGETS_FILE_COMPONENT = 'components/targets-file';
export const TARGETS_FILE = `${TARGETS_FILE_COMPONENT}/targets.yaml`;

export interface PrepareOptions {
  /** Enable the targets-file component, with a targets.yaml naming each target after its Deployment. */
  readonly targetsFile?: boolean;
  /** A last change to the base's kustomization.yaml text (e.g. another bot namespace). */
  readonly edit?: (text: string) => string;
}

/** Sets `- KEY=value` literals (a configMapGenerator's) or, with `': '`, `KEY: value` lines (a ConfigMap's data); each must be there already. */
export function setLiterals(text: string, values: Readonly<Record<string, string>>, file: string, separator: '=' | ': ' = '='): string {
  let out = text;
  for (const [key, value] of Object.entries(values)) {
    const line = new RegExp(separator === '=' ? `^(\\s*- ${key}=).*$` : `^(\\s+${key}: ).*$`, 'm');
    if (!line.test(out)) throw new Error(`${file} has no ${key}${separator.trim()} line any more`);
    out = out.replace(line, `$1${value}`);
  }
  return out;
}

const targetLiterals = (t: TargetRef): Record<string, string> => ({ DEPLOYMENT_NAMESPACE: t.namespace, DEPLOYMENT_NAME: t.name });

/** Replaces commented lines (matched whole) by `lines`; they must be there. */
function uncomment(text: string, commented: RegExp, lines: string, what: string): string {
  if (!commented.test(text)) throw new Error(`config/kubernetes/kustomization.yaml has no commented ${what} any more`);
  return text.replace(commented, lines);
}

/** The targets file for these targets: named in chat after their Deployments. */
export function targetsFileText(targets: readonly TargetRef[]): string {
  return stringify({ targets: targets.map((t) => ({ name: t.name, namespace: t.namespace, deployment: t.name })) });
}

/**
 * Copies the base to `work` (with a dummy registration for its secretGenerator) and sets it up for
 * `targets`, the first being the base's own. Returns the extra target directories, relative to `work`.
 */
export async function prepareTargetsCopy(work: string, targets: readonly TargetRef[], options: PrepareOptions = {}): Promise<string[]> {
  const [first, ...extra] = targets;
  if (first === undefined) throw new Error('at least one target');
  await cp(PROJECT_BASE, work, { recursive: true });
  await writeFile(join(work, 'registration.yaml'), 'id: testbed\n', { mode: 0o600 });
  const dirs = extra.map((_, i) => `targets/extra-${i + 1}`);
  for (const [i, t] of extra.entries()) {
    const dir = join(work, dirs[i] as string);
    await cp(join(work, EXAMPLE_TARGET_DIR), dir, { recursive: true });
    const file = join(dir, TARGET_FILE);
    await writeFile(file, setLiterals(await readFile(file, 'utf8'), targetLiterals(t), `${EXAMPLE_TARGET_DIR}/${TARGET_FILE}`, ': '));
  }
  const path = join(work, 'kustomization.yaml');
  let text = setLiterals(await readFile(path, 'utf8'), targetLiterals(first), 'config/kubernetes/kustomization.yaml');
  if (dirs.length > 0) {
    text = uncomment(text, /^[ \t]*# - targets\/comfy[ \t]*$/m, dirs.map((d) => `  - ${d}`).join('\n'), `"- ${EXAMPLE_TARGET_DIR}" line`);
  }
  if (options.targetsFile) {
    text = uncomment(text, /^# components:[ \t]*\n#[ \t]+- components\/targets-file[ \t]*$/m, `components:\n  - ${TARGETS_FILE_COMPONENT}`, '"components:" lines');
    await writeFile(join(work, TARGETS_FILE), targetsFileText(targets));
  }
  await writeFile(path, options.edit ? options.edit(text) : text);
  return dirs;
}
