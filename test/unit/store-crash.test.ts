/**
 * kill -9 at random points while the crypto store writes (bounded rounds, real child processes):
 * after each kill the store opens, the device is the same, every room key the process had
 * acknowledged is there, and no Megolm (session, index) that left the process is used again.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

const CHILD = fileURLToPath(new URL('./store-crash-child.ts', import.meta.url));
const NODE = join(process.cwd(), 'node_modules/.bin/node');
const ROUNDS = 12;

let root: string;
before(() => (root = mkdtempSync(join(tmpdir(), 'store-crash-'))));
after(() => rmSync(root, { recursive: true, force: true }));

interface Line {
  deviceId?: string;
  open?: { deviceId: string; replaced: string | null; sessions: string[]; sent: string };
  key?: string;
  sent?: string;
}

/**
 * Runs the child; with `killAfterMs`, SIGKILLs it that long after its first line. Resolves with the
 * complete lines it printed (a line cut by the kill was never finished, so it never left).
 */
function runChild(mode: string, dir: string, killAfterMs?: number): Promise<{ lines: Line[]; code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [CHILD, mode, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (killAfterMs !== undefined && !timer && out.includes('\n')) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const complete = out.slice(0, out.lastIndexOf('\n') + 1);
      resolve({ lines: complete.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line), code, signal, stderr: err });
    });
  });
}

test(`kill -9 at random points of the store's writes, ${ROUNDS} rounds: the store opens, the device stays, nothing acknowledged is lost`, { timeout: 180_000 }, async (t) => {
  const dir = join(root, 'bot');
  const setup = await runChild('setup', dir);
  assert.equal(setup.code, 0, setup.stderr);
  const deviceId = setup.lines[0]?.deviceId;
  assert.equal(deviceId, 'CRASHBOT');

  const acknowledgedKeys = new Set<string>();
  const usedIndexes = new Set<string>();
  let steps = 0;
  for (let round = 0; round <= ROUNDS; round++) {
    // The last round is not killed early: it only checks what the previous kill left.
    const killAfterMs = round < ROUNDS ? 5 + Math.floor(Math.random() * 150) : 0;
    const { lines, signal, stderr } = await runChild('run', dir, killAfterMs);
    assert.equal(signal, 'SIGKILL', `round ${round}: the child ended on its own: ${stderr}`);
    const open = lines[0]?.open;
    assert.ok(open, `round ${round}: the store did not open: ${stderr}`);
    assert.equal(open.deviceId, deviceId, `round ${round}: the device changed (${open.replaced})`);
    assert.equal(open.replaced, null);
    const present = new Set(open.sessions);
    for (const key of acknowledgedKeys) assert.ok(present.has(key), `round ${round}: acknowledged room key ${key} is lost`);
    for (const line of lines) {
      if (line.key) acknowledgedKeys.add(line.key);
      const sent = line.sent ?? line.open?.sent;
      if (sent) {
        assert.ok(!usedIndexes.has(sent), `round ${round}: Megolm ${sent} used twice`);
        usedIndexes.add(sent);
      }
    }
    steps += lines.length - 1;
  }
  t.diagnostic(`${ROUNDS} kills after ${steps} acknowledged steps: ${acknowledgedKeys.size} room keys all kept, ${usedIndexes.size} Megolm indexes none reused`);
  assert.ok(acknowledgedKeys.size > ROUNDS, 'the kills landed while the store was writing');
});
