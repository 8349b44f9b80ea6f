/**
 * kwok Stage objects of our own: pods that misbehave the way a real kubelet reports it, chosen by
 * the label `openclaw.test/pod` on the pod (template). kwok's own stages (node, pod-ready, delete)
 * still run everything else; its pod-ready is told to leave labelled pods alone.
 *
 * - `slow`: ContainerCreating (Pending), then after `openclaw.test/delay-ms` (default 3000) Running
 *   and Ready.
 * - `never-ready`: Running, container running, never ready (a readiness probe that never passes).
 * - `image-pull`: Pending, ErrImagePull with containerd's "not found" for the spec's image; after a
 *   second ImagePullBackOff (wrapping that error, as kubelets since 1.31 do), retried every 10 s.
 * - `crash`: starts, exits 1 after a second, is restarted at once, exits again, then
 *   CrashLoopBackOff with back-offs of 10 s, 20 s, ... 5 min, restartCount growing.
 *
 * Field names, phases, conditions and messages follow kubelet v1.37 (pkg/kubelet: status manager,
 * kuberuntime, images/image_manager.go). A kubelet keeps a condition's lastTransitionTime while its
 * status stays; later stages here therefore patch only what changes (conditions merge by type).
 *
 * Stages are matched on every change of a pod, so each stage's result must not match itself again
 * (else it loops), and every selector asks for no deletionTimestamp so kwok's pod-delete wins.
 */
import { parse, stringify } from 'yaml';

export const POD_BEHAVIOUR_LABEL = 'openclaw.test/pod';
export const POD_DELAY_ANNOTATION = 'openclaw.test/delay-ms';
export type PodBehaviour = 'slow' | 'never-ready' | 'image-pull' | 'crash';

interface Expr { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }

const LABEL_KEY = `.metadata.labels["${POD_BEHAVIOUR_LABEL}"]`;
// `[]?`: a pod the kubelet has not reported on yet has no containerStatuses.
const WAITING = '.status.containerStatuses[]?.state.waiting.reason';
const RUNNING = '.status.containerStatuses[]?.state.running';

/** Shared template variables: now, the pod, and its container names (for the conditions' messages). */
const PRELUDE = `{{ $now := Now }}{{ $root := . }}
{{ $names := list }}{{ range .spec.containers }}{{ $names = append $names .name }}{{ end }}`;

/**
 * Per container (inside a range over `$c`): `$ref`, the image as containerd names it (docker.io and
 * library/ added, :latest when untagged), and `$imageID`, a repo digest derived from it.
 */
const IMAGE_REF = `{{ $ref := $c.image }}{{ $first := first (splitList "/" $ref) }}
  {{ if not (contains "/" $ref) }}{{ $ref = printf "docker.io/library/%s" $ref }}
  {{ else if not (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}{{ $ref = printf "docker.io/%s" $ref }}{{ end }}
  {{ if not (or (contains "@" $ref) (contains ":" (last (splitList "/" $ref)))) }}{{ $ref = printf "%s:latest" $ref }}{{ end }}
  {{ $imageID := printf "%s@sha256:%s" (regexReplaceAll ":[^:/]*$" $ref "") (sha256sum $ref) }}`;

const CONTAINER_ID = '{{ printf "containerd://%s" (sha256sum (printf "%s/%s/%s" $root.metadata.uid $c.name $now)) | Quote }}';

/**
 * The kubelet's pod conditions (PodScheduled stays as the binding set it). A later stage leaves out
 * Initialized (`first: false`): it does not change, and its transition time should not either.
 */
function conditions(o: { sandbox: boolean; ready: boolean; first?: boolean }): string {
  const cond = (type: string, ok: boolean, notReady = false) => `- type: ${type}
  status: "${ok ? 'True' : 'False'}"
  lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  reason: ${notReady ? 'ContainersNotReady' : "''"}
  message: ${notReady ? '{{ printf "containers with unready status: [%s]" (join " " $names) | Quote }}' : "''"}`;
  return ['conditions:', cond('PodReadyToStartContainers', o.sandbox), ...(o.first === false ? [] : [cond('Initialized', true)]),
    cond('Ready', o.ready, !o.ready), cond('ContainersReady', o.ready, !o.ready)].join('\n');
}

/** Where the pod runs: the node's IP always, the pod's once its sandbox exists. */
function addresses(sandbox: boolean): string {
  const host = `{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}`;
  const pod = `{{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}`;
  return sandbox ? `${host}\n${pod}` : host;
}

/** containerStatuses, one entry per spec container, with `state` (and more) from `body`. */
function containers(body: string): string {
  return `containerStatuses:
{{ range $i, $c := $root.spec.containers }}
{{ $old := dict }}{{ if $root.status.containerStatuses }}{{ $old = index $root.status.containerStatuses $i }}{{ end }}
${IMAGE_REF}
- name: {{ $c.name | Quote }}
  image: {{ $c.image | Quote }}
${body}
{{ end }}`;
}

const running = (ready: boolean, restartCount = '0') => `  imageID: {{ $imageID | Quote }}
  containerID: ${CONTAINER_ID}
  ready: ${ready}
  started: true
  restartCount: ${restartCount}
  state:
    running:
      startedAt: {{ $now | Quote }}`;

const waiting = (reason: string, message?: string, imageID = '""') => `  imageID: ${imageID}
  ready: false
  started: false
  restartCount: 0
  state:
    waiting:
      reason: ${reason}${message ? `\n      message: ${message}` : ''}`;

/** containerd's answer for a tag or repository that does not exist (kubelet passes it through). */
const PULL_ERROR = '{{ printf "rpc error: code = NotFound desc = failed to pull and unpack image %q: failed to resolve reference %q: %s: not found" $ref $ref $ref }}';
const errImagePull = waiting('ErrImagePull', `{{ ${PULL_ERROR.slice(3, -3)} | Quote }}`);
const imagePullBackOff = waiting('ImagePullBackOff', `{{ printf "Back-off pulling image %q: ErrImagePull: %s" $c.image (${PULL_ERROR.slice(3, -3)}) | Quote }}`);

/** The kubelet's crash-loop back-off after n restarts (10 s doubling, at most 5 min), as Go prints it. */
const BACKOFFS = ['10s', '20s', '40s', '1m20s', '2m40s', '5m0s'];

const lastTerminated = (containerID: string, startedAt: string, finishedAt: string) => `  lastState:
    terminated:
      containerID: ${containerID}
      exitCode: 1
      reason: Error
      startedAt: ${startedAt}
      finishedAt: ${finishedAt}`;

/** The first exit is restarted at once (restartCount 1); later ones wait in CrashLoopBackOff. */
const crashExit = `{{ $n := int $old.restartCount }}
  imageID: {{ $old.imageID | Quote }}
  ready: false
${lastTerminated('{{ $old.containerID | Quote }}', '{{ $old.state.running.startedAt | Quote }}', '{{ $now | Quote }}')}
  {{ if eq $n 0 }}
  containerID: ${CONTAINER_ID}
  started: true
  restartCount: 1
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  containerID: {{ $old.containerID | Quote }}
  started: false
  restartCount: {{ $n }}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{ printf "back-off %s restarting failed container=%s pod=%s_%s(%s)" (index (list ${BACKOFFS.map((b) => `"${b}"`).join(' ')}) (min (sub $n 1) ${BACKOFFS.length - 1})) $c.name $root.metadata.name $root.metadata.namespace $root.metadata.uid | Quote }}
  {{ end }}`;

const crashRestart = `{{ $t := $old.lastState.terminated }}
  imageID: {{ $old.imageID | Quote }}
  containerID: ${CONTAINER_ID}
  ready: false
  started: true
  restartCount: {{ add1 $old.restartCount }}
  state:
    running:
      startedAt: {{ $now | Quote }}
${lastTerminated('{{ $t.containerID | Quote }}', '{{ $t.startedAt | Quote }}', '{{ $t.finishedAt | Quote }}')}`;

interface StageSpec {
  name: string;
  behaviour: PodBehaviour;
  when: Expr[];
  delay?: { ms: number; from?: string };
  status: string[];
}

function stage(s: StageSpec): Record<string, unknown> {
  const matchExpressions: Expr[] = [
    { key: LABEL_KEY, operator: 'In', values: [s.behaviour] }, // first: other pods stop here
    { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' },
    ...s.when,
  ];
  return {
    apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'Stage', metadata: { name: `openclaw-${s.name}` },
    spec: {
      resourceRef: { apiGroup: 'v1', kind: 'Pod' },
      selector: { matchExpressions: matchExpressions.map(({ key, operator, values }) => ({ jq: { key, operator, ...(values ? { values } : {}) } })) },
      ...(s.delay ? { delay: { durationMilliseconds: s.delay.ms, ...(s.delay.from ? { durationFrom: { jq: { expression: s.delay.from } } } : {}) } } : {}),
      next: { statusTemplate: [PRELUDE, ...s.status].join('\n') + '\n' },
    },
  };
}

const pending: Expr = { key: '.status.phase', operator: 'In', values: ['Pending'] };
const fresh: Expr = { key: '.status.containerStatuses', operator: 'DoesNotExist' };
const waitingIn = (...values: string[]): Expr => ({ key: WAITING, operator: 'In', values });
const startTime = 'startTime: {{ $now | Quote }}';

/** Our stages, in the order kwok tries them (each pod state matches at most one). */
export function openclawStages(): Array<Record<string, unknown>> {
  return [
    stage({ name: 'slow-create', behaviour: 'slow', when: [pending, fresh],
      status: [conditions({ sandbox: false, ready: false }), containers(waiting('ContainerCreating')), addresses(false), 'phase: Pending', startTime] }),
    // A missing or unparsable annotation gives "ms" or "<junk>ms", which kwok cannot parse: the default applies.
    stage({ name: 'slow-ready', behaviour: 'slow', when: [pending, waitingIn('ContainerCreating')],
      delay: { ms: 3000, from: `.metadata.annotations["${POD_DELAY_ANNOTATION}"] + "ms"` },
      status: [conditions({ sandbox: true, ready: true, first: false }), containers(running(true)), addresses(true), 'phase: Running'] }),
    stage({ name: 'never-ready', behaviour: 'never-ready', when: [pending],
      status: [conditions({ sandbox: true, ready: false }), containers(running(false)), addresses(true), 'phase: Running', startTime] }),
    stage({ name: 'image-pull', behaviour: 'image-pull', when: [pending, fresh],
      status: [conditions({ sandbox: true, ready: false }), containers(errImagePull), addresses(true), 'phase: Pending', startTime] }),
    stage({ name: 'image-pull-backoff', behaviour: 'image-pull', when: [waitingIn('ErrImagePull')], delay: { ms: 1000 },
      status: [containers(imagePullBackOff)] }),
    stage({ name: 'image-pull-retry', behaviour: 'image-pull', when: [waitingIn('ImagePullBackOff')], delay: { ms: 10_000 },
      status: [containers(errImagePull)] }),
    stage({ name: 'crash-start', behaviour: 'crash', when: [pending],
      status: [conditions({ sandbox: true, ready: false }), containers(running(false)), addresses(true), 'phase: Running', startTime] }),
    stage({ name: 'crash-exit', behaviour: 'crash', when: [{ key: RUNNING, operator: 'Exists' }], delay: { ms: 1000 },
      status: [containers(crashExit)] }),
    stage({ name: 'crash-restart', behaviour: 'crash', when: [waitingIn('CrashLoopBackOff')],
      delay: { ms: 10_000, from: `${JSON.stringify(BACKOFFS)}[[.status.containerStatuses[0].restartCount - 1, ${BACKOFFS.length - 1}] | min]` },
      status: [containers(crashRestart)] }),
  ];
}

/** Templates as literal blocks, unwrapped, so that the file reads like kwok's own. */
const YAML_OPTIONS = { blockQuote: 'literal', lineWidth: 0 } as const;

/**
 * kwok's own stage file, with pod-ready told to skip labelled pods (its selector gets one more
 * expression); any other file passes unchanged.
 */
export function withoutLabelledPods(fileText: string): string {
  const doc = parse(fileText) as { metadata?: { name?: string }; spec?: { selector?: { matchExpressions?: unknown[] } } };
  if (doc.metadata?.name !== 'pod-ready') return fileText;
  const expressions = doc.spec?.selector?.matchExpressions;
  if (!Array.isArray(expressions)) throw new Error("kwok's pod-ready stage has no selector.matchExpressions to extend");
  expressions.push({ key: LABEL_KEY, operator: 'DoesNotExist' });
  return stringify(doc, YAML_OPTIONS);
}

/** kwok's stage files (texts) plus ours, as one multi-document YAML for `kwok --config`. */
export function stagesFile(kwokFiles: readonly string[]): string {
  return [...kwokFiles.map(withoutLabelledPods), ...openclawStages().map((s) => stringify(s, YAML_OPTIONS))].join('\n---\n');
}
