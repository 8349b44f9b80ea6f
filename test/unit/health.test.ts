import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Health, type ComponentState } from '../../src/health.ts';

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Timers alive in the process right now (the test runner's own are there before and after alike). */
const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('readiness checked on demand', () => {
  test('probes run when asked, not before; answers are cached for maxAge', async () => {
    const health = new Health(['kubernetes'], { maxAgeMs: 200, probeTimeoutMs: 100 });
    let calls = 0;
    health.probe('kubernetes', async () => {
      calls++;
      health.set('kubernetes', true, 'answered');
    });
    await wait(50);
    assert.equal(calls, 0, 'nothing runs in the background');
    assert.equal(health.report().ready, false);
    await health.check();
    assert.equal(calls, 1);
    assert.equal(health.report().ready, true);
    await health.check();
    assert.equal(calls, 1, 'cached');
    await wait(220);
    await health.check();
    assert.equal(calls, 2, 'asked again once the answer is old');
  });

  test('concurrent checks share one probe', async () => {
    const health = new Health(['homeserver'], { maxAgeMs: 1000, probeTimeoutMs: 500 });
    let calls = 0;
    health.probe('homeserver', async () => {
      calls++;
      await wait(50);
      health.set('homeserver', true, 'answered');
    });
    await Promise.all([health.check(), health.check(), health.check()]);
    assert.equal(calls, 1);
  });

  test('a probe that hangs: not ready after the timeout, its signal aborted; the next check asks afresh', async () => {
    const health = new Health(['kubernetes'], { maxAgeMs: 0, probeTimeoutMs: 100 });
    const signals: AbortSignal[] = [];
    let hang = true;
    health.probe('kubernetes', async (signal) => {
      signals.push(signal);
      if (hang) return new Promise<void>(() => undefined);
      health.set('kubernetes', true, 'answered');
    });
    const started = performance.now();
    await health.check();
    assert.ok(performance.now() - started < 300, 'bounded');
    assert.deepEqual(health.report().components['kubernetes']?.ok, false);
    assert.match(health.report().components['kubernetes']?.detail ?? '', /no answer within 0.1 s/);
    assert.equal(signals[0]?.aborted, true);
    hang = false;
    await health.check();
    assert.equal(signals.length, 2, 'a new probe, not the hung one');
    assert.equal(health.report().ready, true);
  });

  test('a probe that throws marks its component not ready with the reason', async () => {
    const health = new Health(['homeserver'], { maxAgeMs: 0 });
    health.probe('homeserver', async () => {
      throw new Error('ECONNREFUSED');
    });
    await health.check();
    assert.deepEqual({ ok: health.report().components['homeserver']?.ok, detail: health.report().components['homeserver']?.detail }, { ok: false, detail: 'ECONNREFUSED' });
  });

  test('real traffic counts as an answer: no probe while it is fresh', async () => {
    const health = new Health(['kubernetes'], { maxAgeMs: 10_000 });
    let calls = 0;
    health.probe('kubernetes', async () => void calls++);
    health.set('kubernetes', false, 'the API is unreachable (ECONNREFUSED)');
    await health.check();
    assert.equal(calls, 0);
    assert.equal(health.report().ready, false);
  });

  test('no timer is left once a check is done, so an idle bot wakes for nothing', async () => {
    const health = new Health(['homeserver', 'kubernetes'], { maxAgeMs: 0, probeTimeoutMs: 5_000 });
    health.probe('homeserver', async () => health.set('homeserver', true, 'ok'));
    health.probe('kubernetes', async () => health.set('kubernetes', true, 'ok'));
    const before = timers();
    await health.check();
    await wait(0);
    assert.equal(timers(), before);
  });

  test('stopping: not ready, and nothing is asked', async () => {
    const health = new Health(['homeserver'], { maxAgeMs: 0 });
    let calls = 0;
    health.probe('homeserver', async () => {
      calls++;
      health.set('homeserver', true, 'ok');
    });
    health.markStopping();
    await health.check();
    assert.equal(calls, 0);
    assert.equal(health.report().ready, false);
  });

  test('changes of readiness are reported once each', async () => {
    const changes: Array<[string, ComponentState['ok']]> = [];
    const health = new Health(['kubernetes'], { onChange: (c, s) => changes.push([c, s.ok]) });
    health.set('kubernetes', true, 'a');
    health.set('kubernetes', true, 'b');
    health.set('kubernetes', false, 'c');
    health.set('kubernetes', false, 'd');
    health.set('kubernetes', true, 'e');
    assert.deepEqual(changes, [['kubernetes', true], ['kubernetes', false], ['kubernetes', true]]);
  });
});
