/**
 * `POST /apis/events.k8s.io/v1/namespaces/{ns}/events` in the simulator, answering as
 * kube-apiserver v1.37 does for the part the bot uses (read off the real server; the comparison in
 * test/integration/kubernetes-rbac.test.ts sends the same requests to both): a named Event is
 * created (201, also with `dryRun=All`, then not stored), a second one of the same name is 409, an
 * eventTime without exactly six fractional digits is 400 (Go's MicroTime layout), and the fields
 * pkg/apis/core/validation/events.go checks for a new Event give 422 with the server's causes.
 * `generateName` is not validated as a prefix, as the real server does (the bot names its Events).
 */
import { randomUUID } from 'node:crypto';
import { HttpStatus } from './kube-simulator-patch.ts';

const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

interface Cause { readonly reason: string; readonly message: string; readonly field: string }

const required = (field: string): Cause => ({ reason: 'FieldValueRequired', message: 'Required value', field });
const invalid = (field: string, value: string, detail: string): Cause => ({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(value)}: ${detail}`, field });

export interface EventCreate {
  readonly namespace: string;
  readonly text: string;
  readonly dryRun: boolean;
  /** Names already stored in the namespace. */
  readonly exists: (name: string) => boolean;
  readonly resourceVersion: () => string;
}

/** The stored Event as the server answers it; throws an HttpStatus as the real server would. */
export function createEvent(o: EventCreate): Record<string, unknown> {
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(o.text) as Record<string, unknown>;
  } catch (e) {
    throw new HttpStatus(400, 'BadRequest', `the object provided is unrecognized (must be of type Event): couldn't get version/kind; json parse error: ${(e as Error).message}`);
  }
  const meta = (body['metadata'] ?? {}) as Record<string, unknown>;
  if (meta['namespace'] !== undefined && meta['namespace'] !== o.namespace) {
    throw new HttpStatus(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
  }
  const eventTime = typeof body['eventTime'] === 'string' ? body['eventTime'] : '';
  if (eventTime !== '' && !MICRO_TIME.test(eventTime)) {
    throw new HttpStatus(400, 'BadRequest', `Event in version "v1" cannot be handled as a Event: parsing time ${JSON.stringify(eventTime)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse ${JSON.stringify(eventTime.slice(19))} as ".000000"`);
  }
  const str = (key: string): string => (typeof body[key] === 'string' ? body[key] : '');
  const name = typeof meta['name'] === 'string' && meta['name'] !== '' ? meta['name']
    : typeof meta['generateName'] === 'string' ? `${meta['generateName']}${randomUUID().slice(0, 5)}` : '';
  const regarding = (body['regarding'] ?? {}) as Record<string, unknown>;
  const causes: Cause[] = [];
  if (eventTime !== '') {
    // The checks of a new Event (legacyValidateEvent with eventTime set), in the server's order.
    if (!regarding['namespace'] && o.namespace !== 'default' && o.namespace !== 'kube-system') causes.push(invalid('involvedObject.namespace', '', 'does not match event.namespace'));
    const controller = str('reportingController');
    if (controller === '') causes.push(required('reportingController'), invalid('reportingController', '', 'name part must be non-empty'));
    const part = controller.split('/').at(-1) ?? '';
    if (part !== '' && !QUALIFIED_NAME_PART.test(part)) {
      causes.push(invalid('reportingController', controller, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
    }
    for (const [field, limit] of [['reportingInstance', 128], ['action', 128], ['reason', 128]] as const) {
      if (str(field) === '') causes.push(required(field));
      if (str(field).length > limit) causes.push(invalid(field, '', `can have at most ${limit} characters`));
    }
    if (str('note').length > 1024) causes.push(invalid('message', '', 'can have at most 1024 characters'));
  }
  if (name === '') causes.push({ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' });
  else if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    causes.push(invalid('metadata.name', name, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"));
  }
  if (eventTime === '') causes.push(required('eventTime'));
  if (body['type'] !== 'Normal' && body['type'] !== 'Warning') causes.push(invalid('type', '', `has invalid value: ${str('type')}`));
  if (causes.length > 0) {
    const list = causes.map((c) => `${c.field}: ${c.message}`);
    throw new HttpStatus(422, 'Invalid', `Event ${JSON.stringify(name)} is invalid: ${list.length === 1 ? list[0] : `[${list.join(', ')}]`}`, { name, kind: 'Event', causes });
  }
  if (o.exists(name)) {
    throw new HttpStatus(409, 'AlreadyExists', `events.events.k8s.io ${JSON.stringify(name)} already exists`, { name, group: 'events.k8s.io', kind: 'events' });
  }
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    kind: 'Event', apiVersion: 'events.k8s.io/v1',
    metadata: { name, namespace: o.namespace, uid: randomUUID(), ...(o.dryRun ? {} : { resourceVersion: o.resourceVersion() }), creationTimestamp: now },
    eventTime, reportingController: str('reportingController'), reportingInstance: str('reportingInstance'), action: str('action'), reason: str('reason'),
    regarding, ...(str('note') !== '' ? { note: str('note') } : {}), type: body['type'],
    deprecatedSource: {}, deprecatedFirstTimestamp: null, deprecatedLastTimestamp: null,
  };
}

/** The real server's refusal of `create events` by RBAC. */
export function eventsForbidden(user: string, namespace: string): HttpStatus {
  return new HttpStatus(403, 'Forbidden', `events.events.k8s.io is forbidden: User "${user}" cannot create resource "events" in API group "events.k8s.io" in the namespace "${namespace}"`,
    { group: 'events.k8s.io', kind: 'events' });
}
