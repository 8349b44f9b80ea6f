/**
 * One step of the store curve (test/bench/store-curve.ts), in a process of its own so that its
 * memory and start-up are its own. Opens the crypto store exactly as the bot does
 * (`openDeviceCrypto`, passphrase on) and prints one JSON line on stdout.
 *
 *   build <dir> <n>  a fresh store holding n inbound Megolm sessions, then `reps` times: one new
 *                    session and a flush (time, and bytes the process wrote for it)
 *   start <dir>      open the existing store (start-up time: store open and engine initialise,
 *                    after the WebAssembly module is compiled), then 10 new sessions; RSS
 */
import { readFileSync } from 'node:fs';
import { initAsync, RequestType, type OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import { openDeviceCrypto, type DeviceApi } from '../../../src/crypto/device-store.ts';
import { exportedRoomKeys } from '../../../src/dev/engine-homeserver.ts';
import { silentLogger } from '../../../src/log.ts';

const USER = '@bot:bench.example';
const PASSPHRASE = 'bench passphrase';
/** Bytes this process has handed to write(2) so far (/proc/self/io `wchar`). */
function writtenBytes(): number {
  const m = /^wchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function importKeys(machine: OlmMachine, count: number, tag: string): Promise<void> {
  const result = await machine.importExportedRoomKeys(exportedRoomKeys(count, tag), () => undefined);
  if (result.importedCount !== count) throw new Error(`imported ${result.importedCount} of ${count} room keys`);
}

/** Answers the engine's start-up requests (key upload and query) as a homeserver would. */
async function drain(machine: OlmMachine): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const requests = await machine.outgoingRequests();
    if (requests.length === 0) return;
    for (const req of requests) {
      const response = req.type === RequestType.KeysUpload ? { one_time_key_counts: { signed_curve25519: 50 } } : req.type === RequestType.KeysQuery ? { device_keys: {}, failures: {} } : {};
      if (req.id !== undefined) await machine.markRequestAsSent(req.id, req.type, JSON.stringify(response));
    }
  }
}

const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };
const open = (dir: string): ReturnType<typeof openDeviceCrypto> =>
  openDeviceCrypto({ userId: USER, dir, passphrase: PASSPHRASE, devices, freshDeviceId: 'BENCHDEVICE', logger: silentLogger() });

async function build(dir: string, n: number, reps: number): Promise<unknown> {
  const { machine, store } = await open(dir);
  await drain(machine);
  const chunk = 2000;
  for (let done = 0; done < n; done += chunk) await importKeys(machine, Math.min(chunk, n - done), `base${done}`);
  await store.flush();
  const flushMs: number[] = [];
  const totalMs: number[] = [];
  const bytes: number[] = [];
  for (let r = 0; r < reps; r++) {
    const w0 = writtenBytes();
    const t0 = performance.now();
    await importKeys(machine, 1, `new${r}`);
    const t1 = performance.now();
    await store.flush();
    const t2 = performance.now();
    bytes.push(writtenBytes() - w0);
    flushMs.push(t2 - t1);
    totalMs.push(t2 - t0);
  }
  machine.close();
  return { flushMs, totalMs, bytes };
}

async function start(dir: string): Promise<unknown> {
  await initAsync();
  const t0 = performance.now();
  const { machine, store } = await open(dir);
  const startMs = performance.now() - t0;
  await importKeys(machine, 10, `start${Date.now()}`);
  await store.flush();
  const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  machine.close();
  return { startMs, rssKiB };
}

if (import.meta.main) {
  const [mode, dir, n] = process.argv.slice(2);
  if (!dir || (mode !== 'build' && mode !== 'start')) throw new Error('usage: store-curve-child.ts build <dir> <n> | start <dir>');
  const result = mode === 'build' ? await build(dir, Number(n ?? 0), Number(process.env['CURVE_REPS'] ?? 10)) : await start(dir);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}
