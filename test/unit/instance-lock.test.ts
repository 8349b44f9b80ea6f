import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { InstanceLock, InstanceLockedError, OWNER_FILE, readOwner } from '../../src/store/instance-lock.ts';
import { openStorage } from '../../src/store/storage.ts';
import { StartupError } from '../../src/startup-error.ts';
import { canUnshare, lines, MAIN, NODE, ROOT, startBotProcess, unreachableBotEnv, type BotProcess } from './bot-process.ts';

let dir: string;
let counter = 0;
const running: BotProcess[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'openclaw-lock-test-'));
});

after(async () => {
  for (const bot of running) {
    if (bot.child.exitCode === null && bot.child.signalCode === null) bot.child.kill('SIGKILL');
    await bot.exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

function fresh(): string {
  return join(dir, `case-${++counter}`);
}

function start(env: NodeJS.ProcessEnv, wrapper?: readonly string[]): BotProcess {
  const bot = startBotProcess(env, wrapper ? { wrapper } : {});
  running.push(bot);
  return bot;
}

/** Kills the process (or, through `unshare`, the bot inside it) with SIGKILL and waits until it is gone. */
async function killHard(bot: BotProcess, insideNamespace = false): Promise<void> {
  const pid = bot.child.pid as number;
  if (insideNamespace) {
    // The bot is unshare's child (pid 1 inside); kill it, not unshare, so it dies as a container's process would.
    const inner = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    for (const p of inner) process.kill(p, 'SIGKILL');
  } else {
    bot.child.kill('SIGKILL');
  }
  await bot.exited;
}

describe('InstanceLock in one process', () => {
  test('a second acquire is refused naming the holder; after release it succeeds', () => {
    const path = fresh();
    const first = InstanceLock.acquire(path, new Date('2030-01-02T03:04:05.000Z'));
    assert.deepEqual(readOwner(path), { pid: process.pid, hostname: hostname(), started: '2030-01-02T03:04:05.000Z' });
    assert.throws(() => InstanceLock.acquire(path), (error: unknown) => {
      assert.ok(error instanceof InstanceLockedError);
      assert.equal(error.owner?.pid, process.pid);
      assert.match(error.message, new RegExp(`pid ${process.pid} on host ${hostname()}, started 2030-01-02T03:04:05.000Z`));
      return true;
    });
    first.release();
    assert.equal(existsSync(join(path, OWNER_FILE)), false, 'the owner file goes with the lock');
    const second = InstanceLock.acquire(path);
    second.release();
    second.release(); // twice is harmless
  });

  test('a stale owner file from a dead process does not block: the lock is what counts', () => {
    const path = fresh();
    InstanceLock.acquire(path).release();
    writeFileSync(join(path, OWNER_FILE), JSON.stringify({ pid: process.pid, hostname: hostname(), started: '2020-01-01T00:00:00.000Z' }));
    const lock = InstanceLock.acquire(path);
    assert.notEqual(readOwner(path)?.started, '2020-01-01T00:00:00.000Z', 'overwritten by the new owner');
    lock.release();
  });

  test('the refusal stays one line whatever the owner file holds', () => {
    const path = fresh();
    const lock = InstanceLock.acquire(path);
    try {
      writeFileSync(join(path, OWNER_FILE), JSON.stringify({ pid: 7, hostname: 'evil\nhost\r\u001b[31m', started: 'x'.repeat(500) }));
      assert.throws(() => openStorage(path), (error: unknown) => {
        assert.ok(error instanceof StartupError);
        assert.equal(error.exitCode, 4);
        assert.equal(lines(error.message).length, 1, error.message);
        assert.ok(!/[\u0000-\u001f]/.test(error.message), error.message);
        assert.ok(error.message.length < 400, error.message);
        return true;
      });
      writeFileSync(join(path, OWNER_FILE), 'not json');
      assert.throws(() => openStorage(path), /in use by another instance of the bot \(it has not said who it is yet\)/);
    } finally {
      lock.release();
    }
  });

  test('openStorage: refused with exit 4 and one line naming the other instance', () => {
    const path = fresh();
    const storage = openStorage(path);
    try {
      assert.throws(() => openStorage(path), (error: unknown) => {
        assert.ok(error instanceof StartupError);
        assert.equal(error.exitCode, 4);
        assert.match(error.message, new RegExp(`^storage\\.path: ${path} is in use by another instance of the bot \\(pid ${process.pid} on host ${hostname()}, started `));
        return true;
      });
      // The state database stays writable by others (the trust command) while the lock is held.
      storage.state.addOperatorRequest('repin', '@alice:example.org');
    } finally {
      storage.close();
    }
    openStorage(path).close();
  });
});

describe('two bot processes on one storage path', { timeout: 120_000 }, () => {
  test('the second exits 4 with one line naming the first; trust still works; after SIGKILL of the first a new one starts', async () => {
    const data = fresh();
    const env = unreachableBotEnv(dir, data);
    const first = start(env);
    await first.waitFor('homeserver not reachable yet');

    const second = start(env);
    const { code } = await second.exited;
    assert.equal(code, 4, second.stderr());
    const refusal = lines(second.stderr());
    assert.equal(refusal.length, 1, second.stderr());
    assert.match(refusal[0] ?? '', new RegExp(`^start-up failed: storage\\.path: ${data} is in use by another instance of the bot \\(pid ${first.child.pid} on host ${hostname()}, started \\d{4}-`));
    assert.equal(first.child.exitCode, null, 'the first one keeps running');

    // The operator's trust command writes to the state database beside the running bot.
    const trust = spawnSync(NODE, [MAIN, 'trust', 'repin', '@alice:example.org'], { cwd: ROOT, env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(trust.status, 0, trust.stderr);

    await killHard(first);
    assert.ok(existsSync(join(data, OWNER_FILE)), 'a killed process leaves its owner file behind');
    const third = start(env);
    await third.waitFor('homeserver not reachable yet');
    assert.equal(readOwner(data)?.pid, third.child.pid, 'the new instance owns the lock');

    third.child.kill('SIGTERM');
    assert.equal((await third.exited).code, 0);
    assert.equal(existsSync(join(data, OWNER_FILE)), false, 'a clean stop removes the owner file');
  });

  test('as pid 1 in a container: a restart with the same pid is not blocked by the killed one', async (t) => {
    const wrapper = ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL'];
    if (!canUnshare(wrapper)) {
      t.skip('cannot create a pid namespace here (needs root or user namespaces)');
      return;
    }
    const data = fresh();
    const env = unreachableBotEnv(dir, data);
    const first = start(env, wrapper);
    await first.waitFor('homeserver not reachable yet');
    assert.equal(readOwner(data)?.pid, 1, 'the bot runs as pid 1 in its namespace');

    const second = start(env, wrapper);
    assert.equal((await second.exited).code, 4, second.stderr());
    assert.equal(lines(second.stderr()).length, 1, second.stderr());
    assert.match(second.stderr(), /in use by another instance of the bot \(pid 1 on host /);

    await killHard(first, true);
    assert.equal(readOwner(data)?.pid, 1, 'the owner file of the killed pid 1 is still there');
    const third = start(env, wrapper);
    await third.waitFor('homeserver not reachable yet');
    await killHard(third, true);
  });
});
