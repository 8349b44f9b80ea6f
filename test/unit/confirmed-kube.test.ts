/**
 * Issue 8 item 4: a write whose answer was lost is read back before anything is said. The real
 * lean adapter talks to the simulated API server, whose simulator faults lose the answer
 * after (or before) the PATCH is applied.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeFailure, scaled } from '../../src/bot/replies.ts';
import { startKubeSimulator, type KubeSimulator } from '../../src/dev/kube-simulator.ts';
import { createKube } from '../../src/kube/lean-kube.ts';
import { confirmWrites, mayHaveApplied } from '../../src/kube/confirmed-kube.ts';
import { KubeError, type DeploymentTarget, type Kube } from '../../src/kube/kube.ts';

const NS = 'agents';
const web: DeploymentTarget = { namespace: NS, name: 'web' };
const TIMEOUT = 300;
const isPatch = (r: { method: string }): boolean => r.method === 'PATCH';
const isDeploymentGet = (r: { method: string; path: string }): boolean => r.method === 'GET' && !r.path.endsWith('/scale');
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let sim: KubeSimulator;
let kube: Kube;

async function failure(promise: Promise<unknown>): Promise<KubeError> {
  const error = await promise.then(() => assert.fail('expected a KubeError'), (e: unknown) => e);
  assert.ok(error instanceof KubeError, String(error));
  return error;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'confirmed-kube-test-'));
  sim = await startKubeSimulator({
    dir, readyDelayMs: 50, deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
    tokens: { t: { user: `system:serviceaccount:${NS}:toggle`, canGet: true, canPatch: true } },
  });
  kube = confirmWrites(createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: TIMEOUT }), { readBackDelaysMs: [0, 100, 200], budgetMs: 3000 });
});

beforeEach(async () => {
  sim.clearFailures();
  await createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: 2000 }).scale(web, 0);
});

after(async () => {
  await sim.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('confirmWrites: read back a write whose answer was lost', () => {
  test('an answered write is passed through, with no extra request', async () => {
    const first = sim.requests.length;
    assert.deepEqual(await kube.scale(web, 1), { previous: 0, desired: 1 });
    assert.deepEqual(sim.requests.slice(first).map((r) => r.method), ['GET', 'PATCH']);
  });

  test('a slow PATCH that took effect: answered as a success, read back once', async () => {
    sim.setFailure({ mode: 'answer-late', delayMs: TIMEOUT * 3, match: isPatch });
    const first = sim.requests.length;
    const result = await kube.scale(web, 1);
    assert.equal(result.desired, 1);
    assert.equal(result.previous, undefined);
    assert.equal(result.readBack?.kind, 'timeout');
    assert.equal(sim.replicas(NS, 'web'), 1);
    assert.deepEqual(sim.requests.slice(first).map((r) => `${r.method} ${r.path.endsWith('/scale') ? 'scale' : 'deployment'}`),
      ['GET scale', 'PATCH scale', 'GET deployment']);
    const reply = scaled(web, result).text;
    assert.equal(reply, '▶️ web is on (1 desired; the Kubernetes API\'s answer was lost, so I read the Deployment back to check). Say "status" to see when it is ready.');
    assert.doesNotMatch(reply, /Could not|⚠️/);
  });

  test('a dropped connection after the PATCH was applied: a success', async () => {
    sim.setFailure({ mode: 'apply-then-close', match: isPatch });
    const result = await kube.scale(web, 1);
    assert.equal(result.readBack?.kind, 'unreachable');
    assert.equal(sim.replicas(NS, 'web'), 1);
    assert.match(scaled(web, result).text, /^▶️ web is on \(1 desired;/);
  });

  test('a scale-down whose answer was lost reads back as off', async () => {
    await createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: 2000 }).scale(web, 1);
    sim.setFailure({ mode: 'answer-late', delayMs: TIMEOUT * 3, match: isPatch });
    const result = await kube.scale(web, 0);
    assert.deepEqual({ desired: result.desired, kind: result.readBack?.kind }, { desired: 0, kind: 'timeout' });
    assert.match(scaled(web, result).text, /^⏹ web is off \(0 desired;/);
  });

  test('a PATCH that timed out before it was applied: the failure, saying what was read back', async () => {
    sim.setFailure({ mode: 'apply-late', delayMs: TIMEOUT * 2, match: isPatch });
    const first = sim.requests.length;
    const error = await failure(kube.scale(web, 1));
    assert.equal(error.kind, 'timeout');
    assert.equal(error.human, `the Kubernetes API at ${sim.url} did not answer within ${TIMEOUT} ms, and it still had 0 replicas desired when read back`);
    await delay(TIMEOUT * 2);
    assert.equal(sim.replicas(NS, 'web'), 0, 'the abandoned PATCH was never applied');
    // Read back every time it was allowed to: a write still in flight could have landed.
    assert.equal(sim.requests.slice(first).filter(isDeploymentGet).length, 3);
    assert.match(kubeFailure('start', web, error).text, /^⚠️ Could not start web: .* did not answer within 300 ms, and it still had 0 replicas desired when read back$/);
  });

  test('read-back failing too: cannot tell, said plainly, pointing at "status"', async () => {
    sim.setFailure({ mode: 'answer-late', delayMs: TIMEOUT * 3, match: isPatch });
    sim.setFailure({ status: 503, reason: 'ServiceUnavailable', count: 10, match: isDeploymentGet });
    const error = await failure(kube.scale(web, 1));
    assert.equal(error.kind, 'unknown-outcome');
    assert.match(error.human, /^the answer to the change was lost \(the Kubernetes API at \S+ did not answer within 300 ms\), and reading the Deployment back failed too \(the Kubernetes API failed with 503 ServiceUnavailable; try again shortly\)$/);
    const text = kubeFailure('start', web, error).text;
    assert.match(text, /^⚠️ I cannot tell whether web was started: .*\. Say "status" to see its state\.$/);
    assert.doesNotMatch(text, /Could not/);
    assert.equal(sim.replicas(NS, 'web'), 1, 'it did take effect, which the bot could not know');
  });

  test('read-back that hangs is bounded by the budget', async () => {
    const bounded = confirmWrites(createKube({ kubeconfigPath: sim.kubeconfigPath, requestTimeoutMs: TIMEOUT }), { readBackDelaysMs: [0, 100, 200], budgetMs: 500 });
    sim.setFailure({ mode: 'apply-then-close', match: isPatch });
    sim.setFailure({ mode: 'hang', count: 10, match: isDeploymentGet });
    const started = Date.now();
    const error = await failure(bounded.scale(web, 1));
    const took = Date.now() - started;
    assert.equal(error.kind, 'unknown-outcome');
    assert.ok(took < 500 + TIMEOUT + 300, `took ${took} ms`);
    sim.clearFailures();
  });

  test('a failure that proves nothing was applied is passed through without a read-back', async () => {
    sim.setFailure({ status: 403, reason: 'Forbidden', message: 'no', match: isPatch });
    const first = sim.requests.length;
    assert.equal((await failure(kube.scale(web, 1))).kind, 'forbidden');
    assert.equal(sim.requests.slice(first).filter(isDeploymentGet).length, 0);
  });
});

describe('mayHaveApplied', () => {
  const withCode = (kind: 'unreachable', code: string): KubeError => new KubeError(kind, 'x', undefined, { cause: Object.assign(new Error('x'), { code }) });
  test('timeouts, dropped connections, 500 and 504 may have been applied', () => {
    assert.equal(mayHaveApplied(new KubeError('timeout', 'x')), true);
    assert.equal(mayHaveApplied(withCode('unreachable', 'UND_ERR_SOCKET')), true);
    assert.equal(mayHaveApplied(withCode('unreachable', 'ECONNRESET')), true);
    assert.equal(mayHaveApplied(new KubeError('server', 'x', 504)), true);
    assert.equal(mayHaveApplied(new KubeError('server', 'x', 500)), true);
  });
  test('refused connections, TLS failures and refusals by the server were not', () => {
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'ERR_TLS_CERT_ALTNAME_INVALID']) {
      assert.equal(mayHaveApplied(withCode('unreachable', code)), false, code);
    }
    for (const kind of ['forbidden', 'not-found', 'conflict', 'unauthorized', 'invalid'] as const) {
      assert.equal(mayHaveApplied(new KubeError(kind, 'x', 400)), false, kind);
    }
    assert.equal(mayHaveApplied(new KubeError('server', 'x', 503)), false);
    assert.equal(mayHaveApplied(new KubeError('server', 'x', 429)), false);
  });
  test('a stopped API server: ECONNREFUSED is answered as it is', async () => {
    const goneDir = join(dir, 'gone');
    const gone = await startKubeSimulator({ dir: goneDir, readyDelayMs: 0, deployments: [{ namespace: NS, name: 'web', replicas: 0 }],
      tokens: { t: { user: 'u', canGet: true, canPatch: true } } });
    const k = confirmWrites(createKube({ kubeconfigPath: gone.kubeconfigPath, requestTimeoutMs: TIMEOUT }));
    await gone.stop();
    const error = await failure(k.scale(web, 1));
    assert.equal(error.kind, 'unreachable');
    assert.match(error.human, /ECONNREFUSED\)$/);
  });
});
