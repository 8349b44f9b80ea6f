import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { openclawStages, stagesFile, withoutLabelledPods } from '../../src/dev/kube-testbed/stages.ts';

type Stage = { metadata: { name: string }; spec: { selector: { matchExpressions: Array<{ key?: string; operator?: string; jq?: { key: string; operator: string; values?: string[] } }> }; next: { statusTemplate: string } } };

// The shape of kwok's own pod-ready (kustomize/stage/pod/fast/pod-ready.yaml), trimmed.
const POD_READY = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
  next:
    statusTemplate: |
      phase: Running
`;

describe('the testbed\'s kwok stages', () => {
  test('kwok\'s pod-ready leaves labelled pods alone; other files pass unchanged', () => {
    const ready = parse(withoutLabelledPods(POD_READY)) as Stage;
    assert.deepEqual(ready.spec.selector.matchExpressions.at(-1), { key: '.metadata.labels["openclaw.test/pod"]', operator: 'DoesNotExist' });
    assert.equal(ready.spec.next.statusTemplate, 'phase: Running\n');
    const other = POD_READY.replace('name: pod-ready', 'name: pod-delete');
    assert.equal(withoutLabelledPods(other), other);
  });

  test('each of ours asks for its label first and for a pod not being deleted (pod-delete must win)', () => {
    const stages = openclawStages() as unknown as Stage[];
    assert.equal(new Set(stages.map((s) => s.metadata.name)).size, stages.length);
    for (const s of stages) {
      const [label, deleting] = s.spec.selector.matchExpressions.map((e) => e.jq);
      assert.equal(label?.key, '.metadata.labels["openclaw.test/pod"]', s.metadata.name);
      assert.equal(label?.operator, 'In');
      assert.deepEqual(deleting, { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' }, s.metadata.name);
    }
    const behaviours = new Set(stages.map((s) => s.spec.selector.matchExpressions[0]?.jq?.values?.[0]));
    assert.deepEqual([...behaviours].sort(), ['crash', 'image-pull', 'never-ready', 'slow']);
  });

  test('one multi-document file: kwok\'s, then ours', () => {
    const docs = parseAllDocuments(stagesFile([POD_READY])).map((d) => d.toJS() as Stage);
    assert.equal(docs[0]?.metadata.name, 'pod-ready');
    assert.equal(docs.length, 1 + openclawStages().length);
    assert.ok(docs.every((d) => d.spec.next.statusTemplate.startsWith('{{ $now := Now }}') || d.metadata.name === 'pod-ready'));
  });
});
