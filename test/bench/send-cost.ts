/**
 * What a reply costs the bot in an encrypted room of 100 recipient devices (issue "A crypto store
 * that ages well"): the first message (Olm sessions and the room key to every device) and later
 * ones (nothing new to share), split by step. The bot is the real crypto step (OlmCrypto) on the
 * real store, passphrase on; the homeserver and the 100 devices live in memory (src/dev/engine-homeserver.ts).
 *
 *   node test/bench/send-cost.ts [--devices 100] [--messages 50]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import { CryptoStore } from '../../src/crypto/crypto-store.ts';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { OlmCrypto } from '../../src/crypto/olm-crypto.ts';
import { decryptBody, EngineHomeserver, memoryDevice } from '../../src/dev/engine-homeserver.ts';
import { silentLogger } from '../../src/log.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { fmt, summarize, table } from './lib/stats.ts';

const BOT = '@bot:bench.example';
const ROOM = '!bench:bench.example';
/** Bytes this process has handed to write(2) so far. */
const writtenBytes = (): number => Number(/^wchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))?.[1]);
const STEPS = ['updateTrackedUsers', 'outgoingRequests', 'getMissingSessions', 'shareRoomKey', 'encryptRoomEvent'] as const;

export interface SendCost {
  devices: number;
  firstMs: number;
  laterMs: ReturnType<typeof summarize>;
  laterSteps: Record<string, number>;
  /** Bytes the process wrote (write(2), /proc/self/io) per later message: the store's commits. */
  laterWrittenBytes: number;
  decryptedByRecipients: boolean;
}

export async function measureSendCost(deviceCount: number, messages: number): Promise<SendCost> {
  const dir = mkdtempSync(join(tmpdir(), 'openclaw-send-cost-'));
  const hs = new EngineHomeserver();
  const users = Array.from({ length: Math.ceil(deviceCount / 4) }, (_, i) => `@user${i}:bench.example`);
  const recipients: OlmMachine[] = [];
  for (let i = 0; i < deviceCount; i++) recipients.push(await memoryDevice(users[i % users.length] as string, `DEVICE${i}`, hs));
  const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };
  const { machine, store, deviceId } = await openDeviceCrypto({ userId: BOT, dir, passphrase: 'bench', devices, freshDeviceId: 'BENCHBOT', logger: silentLogger() });
  const state = StateDb.open(dir);
  const crypto = new OlmCrypto({ machine, store, client: hs.client(BOT, deviceId, ROOM, () => users), userId: BOT, allowedUsers: [], trust: 'any', state, logger: silentLogger(), keyWaitMs: 0 });
  // Time spent in each engine step (and in flush) during the later messages.
  const spent = new Map<string, number>();
  const restore: Array<() => void> = [];
  const wrap = (proto: object, method: string): void => {
    const target = proto as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const original = target[method] as (...a: unknown[]) => Promise<unknown>;
    target[method] = async function (this: unknown, ...a: unknown[]) {
      const t0 = performance.now();
      try {
        return await original.apply(this, a);
      } finally {
        spent.set(method, (spent.get(method) ?? 0) + performance.now() - t0);
      }
    };
    restore.push(() => (target[method] = original));
  };
  try {
    await crypto.setUp();
    for (const step of STEPS) wrap(OlmMachine.prototype, step);
    wrap(CryptoStore.prototype, 'flush');
    let t0 = performance.now();
    const first = await crypto.prepareSend(ROOM, 'm.room.message', { msgtype: 'm.notice', body: 'first' });
    const firstMs = performance.now() - t0;
    spent.clear();
    const later: number[] = [];
    let last = first;
    const w0 = writtenBytes();
    for (let i = 0; i < messages; i++) {
      t0 = performance.now();
      last = await crypto.prepareSend(ROOM, 'm.room.message', { msgtype: 'm.notice', body: `later ${i}` });
      later.push(performance.now() - t0);
    }
    const laterWrittenBytes = (writtenBytes() - w0) / messages;
    // The recipients really can read them: the room key reached every device.
    let decrypted = true;
    for (const r of [recipients[0], recipients.at(-1)]) {
      if (!r) continue;
      await hs.deliver(r);
      const event = { type: 'm.room.encrypted', event_id: '$x', room_id: ROOM, sender: BOT, origin_server_ts: Date.now(), content: last.content };
      decrypted &&= (await decryptBody(r, event)) === `later ${messages - 1}`;
    }
    const laterSteps = Object.fromEntries([...STEPS, 'flush'].map((s) => [s, (spent.get(s) ?? 0) / messages]));
    return { devices: deviceCount, firstMs, laterMs: summarize(later), laterSteps, laterWrittenBytes, decryptedByRecipients: decrypted };
  } finally {
    for (const r of restore) r();
    await crypto.close();
    state.close();
    for (const r of recipients) r.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function sendCostReport(c: SendCost): string {
  const steps = table(['step (mean per later message)', 'ms'], Object.entries(c.laterSteps).map(([k, v]) => [k, fmt(v, 2)]));
  return [
    `encrypted reply into a room of ${c.devices} recipient devices: first ${fmt(c.firstMs, 0)} ms; later p50 ${fmt(c.laterMs.p50, 2)} ms, p95 ${fmt(c.laterMs.p95, 2)} ms (n=${c.laterMs.n}), ${fmt(c.laterWrittenBytes / 1024)} KiB written each; recipients decrypt: ${c.decryptedByRecipients ? 'yes' : 'NO'}`,
    steps,
    `${c.laterMs.p50 <= 10 ? 'met ' : 'MISSED'}  a later message costs ≤ 10 ms on the bot's side (p50 ${fmt(c.laterMs.p50, 2)} ms)`,
  ].join('\n');
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { devices: { type: 'string' }, messages: { type: 'string' }, quick: { type: 'boolean' } } });
  const result = await measureSendCost(Number(values.devices ?? 100), Number(values.messages ?? (values.quick ? 10 : 50)));
  console.log(sendCostReport(result));
}
