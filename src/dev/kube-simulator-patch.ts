/**
 * PATCH of the `scale` subresource in the simulator, answering as kube-apiserver v1.37 does.
 * Every status and message here was read off the real server (test/integration/kubernetes-rbac
 * compares both), including the odd ones: a non-integer replica count is a 422 whose message
 * quotes the whole patched Scale; a body that is not JSON is "invalid JSON patch" whatever the
 * patch type; a JSON patch that cannot be applied is a 422 with a generic message.
 */
import { parse as parseYaml } from 'yaml';

export class HttpStatus extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: number, reason: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
}

const JSON_PATCH = 'application/json-patch+json';
const APPLY = 'application/apply-patch+yaml';
export const SCALE_PATCH_TYPES = [JSON_PATCH, 'application/merge-patch+json', 'application/strategic-merge-patch+json', APPLY];

export interface ScalePatch {
  readonly name: string;
  readonly contentType: string;
  readonly text: string;
  /** The `fieldManager` query parameter (server-side apply requires one). */
  readonly fieldManager: string | null;
  readonly replicas: number;
  /** The Scale as the server serialises it, with `spec.replicas` set to a (possibly bad) value. */
  readonly scaleJson: (replicas: unknown) => string;
}

/** Go's word for a JSON value in "json: cannot unmarshal X into …". */
function goKind(value: unknown, withNumber: boolean): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  if (typeof value === 'number') return withNumber ? `number ${JSON.stringify(value)}` : 'number';
  if (typeof value === 'boolean') return 'bool';
  return typeof value; // string, object
}

const decodeError = (value: unknown, goType: string): HttpStatus =>
  new HttpStatus(400, 'BadRequest', `error decoding patch: json: cannot unmarshal ${goKind(value, false)} into Go value of type ${goType}`);

/** What the server says when a JSON patch cannot be applied (a failed test, a missing path). */
const patchFailed = (): HttpStatus => new HttpStatus(422, 'Invalid', 'the server rejected our request due to an error in our request', {});

export const invalidReplicas = (name: string, value: unknown): HttpStatus => new HttpStatus(422, 'Invalid',
  `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(value)}: must be greater than or equal to 0`,
  { name, group: 'autoscaling', kind: 'Scale', causes: [{ reason: 'FieldValueInvalid', field: 'spec.replicas',
    message: `Invalid value: ${JSON.stringify(value)}: must be greater than or equal to 0` }] });

/** A patched value for spec.replicas, checked as the server's decoding and validation do. */
function checked(p: ScalePatch, value: unknown): number {
  if (value === null || value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value > 2 ** 31 - 1 || value < -(2 ** 31)) {
    const invalid = `Invalid value: ${JSON.stringify(p.scaleJson(value))}: json: cannot unmarshal ${goKind(value, true)} into Go struct field ScaleSpec.spec.replicas of type int32`;
    throw new HttpStatus(422, 'Invalid', ` "" is invalid: patch: ${invalid}`, { causes: [{ reason: 'FieldValueInvalid', message: invalid, field: 'patch' }] });
  }
  if (value < 0) throw invalidReplicas(p.name, value);
  return value;
}

/** Applies a PATCH of `deployments/<name>/scale`; returns the new replica count or throws the server's Status. */
export function patchScale(p: ScalePatch): number {
  if (!SCALE_PATCH_TYPES.includes(p.contentType)) {
    throw new HttpStatus(415, 'UnsupportedMediaType', '415: Unsupported Media Type', {});
  }
  if (p.contentType === APPLY) return applyScale(p);
  let body: unknown;
  try { body = JSON.parse(p.text); } catch { throw new HttpStatus(400, 'BadRequest', 'invalid JSON patch'); }
  if (p.contentType === JSON_PATCH) return jsonPatch(p, body);
  // A merge patch and a strategic merge patch are the same thing for a Scale.
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw decodeError(body, 'map[string]interface {}');
  const spec = (body as Record<string, unknown>)['spec'];
  if (spec === null) return 0;
  if (typeof spec !== 'object' || spec === undefined || !('replicas' in spec)) return p.replicas;
  return checked(p, (spec as Record<string, unknown>)['replicas']);
}

/** RFC 6902 on the Scale. At 0 replicas the Scale has no spec.replicas: `remove` and `test` then fail. */
function jsonPatch(p: ScalePatch, body: unknown): number {
  if (!Array.isArray(body)) throw decodeError(body, '[]handlers.jsonPatchOp');
  let replicas: unknown = p.replicas;
  const present = (): boolean => replicas !== 0;
  for (const op of body as Array<Record<string, unknown>>) {
    if (op['path'] !== '/spec/replicas') {
      // Fields of a Scale other than spec.replicas are dropped; the simulator models only `add` of them.
      if (op['op'] === 'add') continue;
      throw patchFailed();
    }
    switch (op['op']) {
      case 'add': case 'replace': replicas = op['value']; break;
      case 'remove': if (!present()) throw patchFailed(); replicas = 0; break;
      case 'test': if (!present() || op['value'] !== replicas) throw patchFailed(); break;
      default: throw patchFailed();
    }
  }
  return checked(p, replicas);
}

/** Server-side apply of the Scale. The simulator keeps no managed fields: it never answers an apply conflict. */
function applyScale(p: ScalePatch): number {
  if (!p.fieldManager) {
    throw new HttpStatus(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
      { group: 'meta.k8s.io', kind: 'PatchOptions', causes: [{ reason: 'FieldValueRequired', message: 'Required value: is required for apply patch', field: 'fieldManager' }] });
  }
  let body: unknown;
  try {
    body = parseYaml(p.text);
  } catch (error) {
    throw new HttpStatus(400, 'BadRequest', `error decoding patch: error converting YAML to JSON: ${(error as Error).message.split('\n')[0]}`);
  }
  const spec = (body as { spec?: unknown } | null)?.spec;
  if (typeof spec !== 'object' || spec === null || !('replicas' in spec)) return p.replicas;
  return checked(p, (spec as Record<string, unknown>)['replicas']);
}
