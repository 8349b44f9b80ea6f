/**
 * What timed runs cost (`node test/bench/timed-runs.ts`; not part of `npm test`, about a minute):
 * 1. How late the one timer fires (src/bot/clock.ts `OneTimer` on the system clock), idle process.
 * 2. The production bundle's resident size, idle, with `bot.timeZone` UTC (formatted by hand) and
 *    with an IANA zone (through Intl, which maps ICU's data), each in a fresh child process with the
 *    Dockerfile's ENV, after it has settled.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBundle } from '../../scripts/build.ts';
import { OneTimer, systemClock } from '../../src/bot/clock.ts';
import { startStack } from '../../src/dev/stack.ts';
import { procStatus, spawnBot } from './lib/bot-child.ts';
import { imageEnv } from './lib/image-env.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SETTLE_MS = Number(process.env['SETTLE_SECONDS'] ?? 20) * 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function timerLateness(delays: readonly number[]): Promise<number[]> {
  const late: number[] = [];
  for (const delay of delays) {
    const at = Date.now() + delay;
    await new Promise<void>((resolve) => {
      const timer = new OneTimer(systemClock, () => { late.push(Date.now() - at); resolve(); });
      timer.arm(at);
    });
  }
  return late;
}


const keepAlive = setInterval(() => undefined, 60_000); // the bot's timers are unref'd: its listener keeps it alive
const late = await timerLateness([200, 500, 1000, 2000, 5000, 1000, 1000, 1000, 1000, 1000]);
clearInterval(keepAlive);
const sorted = [...late].sort((a, b) => a - b);
console.log(`timer lateness over ${late.length} waits of 0.2-5 s: p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms`);

const dir = await mkdtemp(join(tmpdir(), 'openclaw-timed-bench-'));
const image = join(dir, 'image');
await buildBundle(join(image, 'dist'));
const stack = await startStack({ dir, harnessLogger: { info: () => undefined, warn: () => undefined } });
try {
  for (const zone of (process.env['ZONES'] ?? 'UTC,Europe/Berlin,UTC,Europe/Berlin').split(',')) {
    const env = stack.botEnv({ ...imageEnv(), LOG_LEVEL: 'warn', BOT_TIME_ZONE: zone, CRYPTO_STORE_PATH: join(dir, 'bot-data') });
    const child = await spawnBot({ repoRoot: REPO, cwd: image, script: 'dist/main.js', env, port: stack.botPort, logPath: join(dir, 'bot.log') });
    await sleep(SETTLE_MS);
    const rss: number[] = [];
    for (let i = 0; i < 5; i++) { rss.push(procStatus(child.pid)?.rssKiB ?? NaN); await sleep(500); }
    console.log(`bundle idle RSS, bot.timeZone ${zone}: ${(Math.min(...rss) / 1024).toFixed(1)}-${(Math.max(...rss) / 1024).toFixed(1)} MiB (ready in ${Math.round(child.readyMs)} ms)`);
    await child.stop();
  }
} finally {
  await stack.stop();
}
