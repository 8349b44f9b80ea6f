/**
 * `/ready` against real dependencies going away and coming back (a real Synapse, the simulated
 * Kubernetes API told to hang), and start-up failures that need a homeserver to be reached:
 * the crypto store's directory unusable, a second instance on the same volume.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { startStack, type Stack } from '../../src/dev/stack.ts';
import { StartupError } from '../../src/startup-error.ts';

const NODE = join(process.cwd(), 'node_modules/.bin/node');

describe('readiness on demand, and start-up failures of the volume', { timeout: 300_000 }, () => {
  let stack: Stack;
  let app: App;

  const ready = async (): Promise<{ status: number; body: { components: Record<string, { ok: boolean; detail: string }> } }> => {
    const response = await fetch(`http://127.0.0.1:${app.port}/ready`);
    return { status: response.status, body: (await response.json()) as { components: Record<string, { ok: boolean; detail: string }> } };
  };

  /** Polls /ready (as a kubelet would, only faster) until it answers `status`; returns how long that took. */
  async function until(status: number, withinMs: number): Promise<number> {
    const started = Date.now();
    for (;;) {
      const answer = await ready();
      if (answer.status === status) return Date.now() - started;
      if (Date.now() - started > withinMs) assert.fail(`/ready still ${answer.status} after ${withinMs} ms: ${JSON.stringify(answer.body)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-ready-')) });
    ({ app } = await stack.startBot({ env: { KUBE_TIMEOUT_SECONDS: '3' } }));
  });

  after(async () => {
    stack?.sim.clearFailures();
    await stack?.stop();
  });

  it('is ready once started, and asks nobody while nobody asks it', async () => {
    assert.equal((await ready()).status, 200);
    const before = stack.sim.requests.length;
    await new Promise((r) => setTimeout(r, 4_000));
    assert.equal(stack.sim.requests.length, before, 'no background polling of the cluster');
  });

  it('goes 503 within seconds when the Kubernetes API stops answering, and 200 soon after it is back', async () => {
    // Every new request hangs, the watch's too, and the open watch is cut (a hung server's stream goes silent
    // instead: the bot notices that within 90 s, the watch's idle limit; see test/unit/kube-watch.test.ts).
    stack.sim.setFailure({ mode: 'hang', count: 1_000_000, match: (r) => r.path !== '/version' });
    stack.sim.dropWatches();
    const down = await until(503, 8_000);
    const { body } = await ready();
    assert.equal(body.components['kubernetes']?.ok, false);
    assert.match(body.components['kubernetes']?.detail ?? '', /no answer within|did not answer/);
    assert.equal(body.components['homeserver']?.ok, true);
    stack.sim.clearFailures();
    const up = await until(200, 8_000);
    console.log(`# kubernetes hung → /ready 503 after ${down} ms; answering again → 200 after ${up} ms`);
  });

  it('goes 503 within seconds when Synapse stops, and 200 soon after it is back', async () => {
    await stack.synapse.stop();
    let down: number;
    try {
      down = await until(503, 8_000);
      assert.equal((await ready()).body.components['homeserver']?.ok, false);
    } finally {
      await stack.synapse.restart();
    }
    const up = await until(200, 8_000);
    console.log(`# Synapse stopped → /ready 503 after ${down} ms; restarted → 200 after ${up} ms`);
  });

  it('a second instance on the same storage path is refused in one line (exit 4) while the first runs', async () => {
    await assert.rejects(stack.startBot({ env: { HTTP_PORT: '0' } }), (error: unknown) => {
      assert.ok(error instanceof StartupError);
      assert.equal(error.exitCode, 4);
      assert.match(error.message, new RegExp(`^storage\\.path: .* is in use by another instance of the bot \\(pid ${process.pid} on host `));
      return true;
    });
    assert.equal((await ready()).status, 200, 'the running one is untouched');
  });

  it('storage.path/crypto a regular file (ENOTDIR): the process exits 4 with one line, after reaching the homeserver', async () => {
    const data = join(stack.dir, 'crypto-is-a-file');
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'crypto'), 'not a directory');
    const child = spawn(NODE, ['src/main.ts'], {
      env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...stack.botEnv({ CRYPTO_STORE_PATH: data, HTTP_PORT: '0' }) } as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 4, stderr + stdout);
    const lines = stderr.split('\n').filter((line) => line.trim());
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0] ?? '', /^start-up failed: storage\.path: cannot use the crypto store in .*crypto-is-a-file\/crypto: .*\((EEXIST|ENOTDIR)/);
    assert.ok(!/\n\s+at /.test(stderr + stdout), 'no stack trace');
  });
});
