import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deadlineMs, elapsed, nextEdit, progressState, EDIT_INTERVAL_MS } from '../../src/bot/progress.ts';
import type { DeploymentObject, PodObject } from '../../src/kube/rollout.ts';

const target = { namespace: 'agents', name: 'openclaw' };
const IMAGE = 'ghcr.io/openclaw/openclaw:latest';
const deployment = (status: DeploymentObject['status'] = {}, replicas = 1): DeploymentObject => ({ spec: { replicas, progressDeadlineSeconds: 600 }, status });
const running = (ready: boolean): PodObject => ({
  metadata: { name: 'openclaw-1' }, spec: { nodeName: 'node-3', containers: [{ name: 'openclaw', image: IMAGE }] },
  status: { phase: 'Running', conditions: [{ type: 'PodScheduled', status: 'True' }], containerStatuses: [{ name: 'openclaw', image: IMAGE, ready, state: { running: {} } }] },
});

describe('progress text', () => {
  test('a start with pods: moving (no clock in it), then ready with the time it took', () => {
    assert.deepEqual(progressState('start', target, { deployment: deployment(), pods: [] }, 1_000, false),
      { text: '▶️ Starting openclaw… ⏳ waiting for the pod to be created', final: false });
    assert.deepEqual(progressState('start', target, { deployment: deployment(), pods: [running(false)] }, 9_000, false),
      { text: '▶️ Starting openclaw… ⏳ pod scheduled on node-3 · container running · waiting for the container to pass its readiness probe (0 of 1 ready)', final: false });
    assert.deepEqual(progressState('start', target, { deployment: deployment({ readyReplicas: 1, updatedReplicas: 1 }), pods: [running(true)] }, 42_400, false),
      { text: '▶️ Started openclaw: ✅ ready after 42 s (pod scheduled on node-3 · container running).', final: true, done: true });
  });

  test('every pod ready but not yet counted by the Deployment (milliseconds apart): transient, not worth an edit', () => {
    const state = progressState('start', target, { deployment: deployment({ readyReplicas: 0 }), pods: [{ ...running(true), status: { ...running(true).status, conditions: [{ type: 'Ready', status: 'True' }] } }] }, 5_000, false);
    assert.equal(state.transient, true);
    assert.equal(state.final, false);
    assert.equal(progressState('start', target, { deployment: deployment(), pods: [running(false)] }, 5_000, false).transient, undefined);
  });

  test('a failure is final at once; past the deadline a start still moving is final too', () => {
    const unschedulable: PodObject = { metadata: { name: 'p' }, spec: {}, status: { conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient memory.' }] } };
    assert.deepEqual(progressState('start', target, { deployment: deployment(), pods: [unschedulable] }, 5_000, false),
      { text: '▶️ Starting openclaw: ❌ the pod cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory.', final: true });
    assert.deepEqual(progressState('start', target, { deployment: deployment(), pods: [running(false)] }, 600_000, true),
      { text: '▶️ Starting openclaw: ⚠️ still not ready after 10 min: waiting for the container to pass its readiness probe (0 of 1 ready).', final: true });
  });

  test('without pods (a Role that may not watch them): the Deployment\'s counts and conditions', () => {
    assert.deepEqual(progressState('start', target, { deployment: deployment({ readyReplicas: 0 }), pods: undefined }, 3_000, false),
      { text: '▶️ Starting openclaw… ⏳ 0 of 1 ready', final: false });
    const quota = deployment({ conditions: [{ type: 'ReplicaFailure', status: 'True', message: 'pods "openclaw-1" is forbidden: exceeded quota: q' }] });
    assert.equal(progressState('start', target, { deployment: quota, pods: undefined }, 3_000, false).text, '▶️ Starting openclaw: ❌ the cluster refused to create the pod: pods "openclaw-1" is forbidden: exceeded quota: q.');
    assert.deepEqual(progressState('start', target, { deployment: deployment({ readyReplicas: 1, updatedReplicas: 1 }), pods: undefined }, 65_000, false),
      { text: '▶️ Started openclaw: ✅ ready after 1 min 5 s.', final: true, done: true });
  });

  test('a stop: until no pod is left (or, without pods, until the Deployment counts none)', () => {
    const leaving: PodObject = { ...running(true), metadata: { name: 'openclaw-1', deletionTimestamp: '2026-11-30T00:00:00Z' } };
    assert.deepEqual(progressState('stop', target, { deployment: deployment({}, 0), pods: [leaving] }, 2_000, false), { text: '⏹ Stopping openclaw… ⏳ 1 pod shutting down', final: false });
    assert.deepEqual(progressState('stop', target, { deployment: deployment({}, 0), pods: [] }, 8_000, false), { text: '⏹ Stopped openclaw: ✅ off after 8 s.', final: true, done: true });
    assert.deepEqual(progressState('stop', target, { deployment: deployment({ replicas: 1 }, 0), pods: undefined }, 2_000, false), { text: '⏹ Stopping openclaw… ⏳ 1 pod still there', final: false });
    assert.equal(progressState('stop', target, { deployment: deployment({ replicas: 0 }, 0), pods: undefined }, 3_000, false).final, true);
  });
});

describe('when to edit', () => {
  test('only a changed text; at most every 2 s, except the final one', () => {
    const moving = { text: 'b', final: false };
    assert.equal(nextEdit('a', 0, { text: 'a', final: false }, 10_000), false, 'unchanged: nothing to send');
    assert.equal(nextEdit('a', 1_000, moving, 1_000 + EDIT_INTERVAL_MS - 1), false, 'too soon');
    assert.equal(nextEdit('a', 1_000, moving, 1_000 + EDIT_INTERVAL_MS), true);
    assert.equal(nextEdit('a', 1_000, { text: 'done', final: true }, 1_001), true, 'the final edit is never held back');
  });

  test('the deadline: configured, else the Deployment\'s own, else 10 min; elapsed times', () => {
    assert.equal(deadlineMs(120_000, deployment()), 120_000);
    assert.equal(deadlineMs(undefined, deployment()), 600_000);
    assert.equal(deadlineMs(undefined, { spec: { progressDeadlineSeconds: 90 } }), 90_000);
    assert.equal(deadlineMs(undefined, undefined), 600_000);
    assert.deepEqual([elapsed(300), elapsed(8_400), elapsed(60_000), elapsed(125_000), elapsed(3_600_000)], ['1 s', '8 s', '1 min', '2 min 5 s', '1 h']);
  });
});
