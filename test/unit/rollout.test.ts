import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { labelSelector } from '../../src/kube/pod-watch.ts';
import { deploymentProblem, startProgress, stopProgress, type DeploymentObject, type PodObject } from '../../src/kube/rollout.ts';

const IMAGE = 'ghcr.io/openclaw/openclaw:latest';
const deployment = (status: DeploymentObject['status'] = {}, replicas = 1): DeploymentObject => ({ spec: { replicas, progressDeadlineSeconds: 600 }, status });
const pod = (o: { node?: string; scheduled?: { status: string; reason?: string; message?: string }; containers?: NonNullable<PodObject['status']>['containerStatuses']; phase?: string; deleting?: boolean } = {}): PodObject => ({
  metadata: { name: 'openclaw-abc', ...(o.deleting ? { deletionTimestamp: '2026-11-30T00:00:00Z' } : {}) },
  spec: { ...(o.node ? { nodeName: o.node } : {}), containers: [{ name: 'openclaw', image: IMAGE }] },
  status: {
    phase: o.phase ?? 'Pending',
    conditions: o.scheduled ? [{ type: 'PodScheduled', ...o.scheduled }] : o.node ? [{ type: 'PodScheduled', status: 'True' }] : [],
    ...(o.containers ? { containerStatuses: o.containers } : {}),
  },
});

describe('start progress', () => {
  test('a normal start, step by step, ends ready', () => {
    assert.deepEqual(startProgress(deployment(), []), { phase: 'moving', steps: [], reason: 'waiting for the pod to be created' });
    assert.deepEqual(startProgress(deployment(), [pod()]), { phase: 'moving', steps: [], reason: 'waiting for the pod to be scheduled' });
    const creating = pod({ node: 'node-3', containers: [{ name: 'openclaw', image: IMAGE, ready: false, state: { waiting: { reason: 'ContainerCreating' } } }] });
    assert.deepEqual(startProgress(deployment(), [creating]), { phase: 'moving', steps: ['pod scheduled on node-3', 'pulling image and starting container'], reason: 'waiting for the container to start (pulling the image)' });
    const running = pod({ node: 'node-3', phase: 'Running', containers: [{ name: 'openclaw', image: IMAGE, ready: false, state: { running: { startedAt: '2026-11-30T00:00:05Z' } } }] });
    assert.deepEqual(startProgress(deployment(), [running]), { phase: 'moving', steps: ['pod scheduled on node-3', 'container running'], reason: 'waiting for the container to pass its readiness probe (0 of 1 ready)' });
    assert.deepEqual(startProgress(deployment({ readyReplicas: 1, updatedReplicas: 1 }), [running]), { phase: 'ready', steps: ['pod scheduled on node-3', 'container running', 'ready'] });
  });

  test('unschedulable: the scheduler\'s own message', () => {
    const p = pod({ scheduled: { status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.' } });
    assert.deepEqual(startProgress(deployment(), [p]), { phase: 'failed', steps: [], reason: 'the pod cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod' });
  });

  test('image pull failures name the image and quote the registry\'s answer, during the back-off too', () => {
    const typo = 'ghcr.io/openclaw/openclaw:typo';
    const answer = `failed to pull and unpack image "${typo}": failed to resolve reference "${typo}": ${typo}: not found`;
    const waitingPod = (reason: string, message: string) => pod({ node: 'n', containers: [{ name: 'openclaw', image: typo, state: { waiting: { reason, message } } }] });
    const expected = `the image ${typo} cannot be pulled (ErrImagePull: ${answer})`;
    // kubelet v1.37: the CRI's error as it comes (gRPC wrapper included), then a back-off wrapping it.
    assert.deepEqual(startProgress(deployment(), [waitingPod('ErrImagePull', `rpc error: code = NotFound desc = ${answer}`)]), { phase: 'failed', steps: ['pod scheduled on n'], reason: expected });
    assert.equal(startProgress(deployment(), [waitingPod('ImagePullBackOff', `Back-off pulling image "${typo}": ErrImagePull: rpc error: code = NotFound desc = ${answer}`)]).reason, expected);
    // Kubelets before 1.31: the back-off only repeated the image name.
    assert.equal(startProgress(deployment(), [waitingPod('ImagePullBackOff', `Back-off pulling image "${typo}"`)]).reason, `the image ${typo} cannot be pulled (ImagePullBackOff)`);
    const long = startProgress(deployment(), [waitingPod('ErrImagePull', `rpc error: code = NotFound desc = failed to pull and unpack image "x": ${'not found '.repeat(40)}`)]);
    assert.equal(long.phase, 'failed');
    assert.match(long.reason ?? '', /^the image ghcr\.io\/openclaw\/openclaw:typo cannot be pulled \(ErrImagePull: failed to pull and unpack image "x": not found .*…\)$/);
    assert.ok((long.reason ?? '').length < 320, 'long registry errors are cut');
  });

  test('a crash loop gives the last exit code and reason', () => {
    const crash = (terminated: { exitCode: number; reason: string }) => pod({ node: 'n', phase: 'Running', containers: [{ name: 'openclaw', image: IMAGE, restartCount: 4, state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 1m20s restarting failed container' } }, lastState: { terminated } }] });
    assert.equal(startProgress(deployment(), [crash({ exitCode: 1, reason: 'Error' })]).reason, 'the container openclaw keeps crashing (last exit code 1, 4 restarts)');
    assert.equal(startProgress(deployment(), [crash({ exitCode: 137, reason: 'OOMKilled' })]).reason, 'the container openclaw keeps crashing (last exit code 137, OOMKilled, 4 restarts)');
    const once = pod({ node: 'n', phase: 'Running', containers: [{ name: 'openclaw', image: IMAGE, restartCount: 1, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1, reason: 'Error' } } }] });
    assert.equal(startProgress(deployment(), [once]).reason, 'the container openclaw keeps crashing (last exit code 1, 1 restart)');
  });

  test('a quota or admission refusal: the Deployment\'s ReplicaFailure message', () => {
    const d = deployment({ conditions: [
      { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' },
      { type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'pods "openclaw-abc" is forbidden: exceeded quota: mem, requested: limits.memory=8Gi, used: limits.memory=0, limited: limits.memory=4Gi' },
    ] });
    assert.deepEqual(startProgress(d, []), { phase: 'failed', steps: [], reason: 'the cluster refused to create the pod: pods "openclaw-abc" is forbidden: exceeded quota: mem, requested: limits.memory=8Gi, used: limits.memory=0, limited: limits.memory=4Gi' });
  });

  test('the progress deadline passed: failed, with what it was still waiting for', () => {
    const d = deployment({ conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "openclaw-abc" has timed out progressing.' }] });
    const running = pod({ node: 'n', phase: 'Running', containers: [{ name: 'openclaw', image: IMAGE, ready: false, state: { running: {} } }] });
    assert.deepEqual(startProgress(d, [running]), { phase: 'failed', steps: ['pod scheduled on n', 'container running'], reason: 'it did not become ready within its progress deadline (600 s): waiting for the container to pass its readiness probe (0 of 1 ready)' });
  });

  test('pods being deleted (a previous run shutting down) are not this start\'s pods', () => {
    const old = pod({ node: 'n', deleting: true, containers: [{ name: 'openclaw', image: IMAGE, state: { waiting: { reason: 'CrashLoopBackOff' } } }] });
    assert.equal(startProgress(deployment(), [old]).phase, 'moving');
  });
});

describe('stop progress', () => {
  test('pods shutting down, then none', () => {
    assert.deepEqual(stopProgress([pod({ node: 'n', deleting: true })]), { phase: 'moving', steps: [], reason: '1 pod shutting down' });
    assert.deepEqual(stopProgress([pod({ node: 'n' }), pod({ node: 'n', deleting: true })]), { phase: 'moving', steps: [], reason: '2 pods still there' });
    assert.deepEqual(stopProgress([]), { phase: 'off', steps: ['no pods left'] });
  });
});

describe('deployment problem (what status can say without pods)', () => {
  test('a quota refusal or a passed deadline, only while the Deployment should run', () => {
    const quota = { type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'pods "openclaw-abc" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0' };
    assert.equal(deploymentProblem(deployment({ conditions: [quota] })), 'the cluster refused to create the pod: pods "openclaw-abc" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0');
    assert.equal(deploymentProblem(deployment({ conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }] })), 'it did not become ready within its progress deadline (600 s)');
    assert.equal(deploymentProblem(deployment({ conditions: [quota] }, 0)), undefined, 'stopped: nothing to get ready');
    assert.equal(deploymentProblem(deployment({ conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }, { type: 'Available', status: 'True' }] })), undefined);
  });
});

describe('label selector of a Deployment', () => {
  test('matchLabels and matchExpressions, as the API writes selectors', () => {
    assert.equal(labelSelector({ matchLabels: { app: 'openclaw', tier: 'agent' } }), 'app=openclaw,tier=agent');
    assert.equal(labelSelector({ matchLabels: { app: 'x' }, matchExpressions: [{ key: 'env', operator: 'In', values: ['a', 'b'] }, { key: 'gpu', operator: 'Exists' }, { key: 'old', operator: 'DoesNotExist' }, { key: 'z', operator: 'NotIn', values: ['q'] }] }), 'app=x,env in (a,b),gpu,!old,z notin (q)');
    assert.equal(labelSelector({}), undefined);
    assert.equal(labelSelector(undefined), undefined);
  });
});
