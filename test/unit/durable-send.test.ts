/**
 * "Durable before it leaves the process", at the level of the crypto step: the real engine and the
 * real store on disk, a fake homeserver. After an encrypted message is handed over for sending,
 * a process that died at that moment (the store read back from disk, nothing flushed on the way
 * out) must encrypt the next message under a new Megolm message index, never the same one again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceId, KeysUploadRequest, OlmMachine, UserId } from '@matrix-org/matrix-sdk-crypto-wasm';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { OlmCrypto } from '../../src/crypto/olm-crypto.ts';
import { megolmIdentity } from '../../src/crypto/megolm-index.ts';
import { silentLogger } from '../../src/log.ts';
import type { MatrixClient } from '../../src/matrix/client.ts';
import { StateDb } from '../../src/store/state-db.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const ROOM = '!encrypted:example.org';

let root: string;
before(() => (root = mkdtempSync(join(tmpdir(), 'openclaw-durable-send-'))));
after(() => rmSync(root, { recursive: true, force: true }));

interface Keys {
  device_keys?: { user_id: string; device_id: string };
  one_time_keys?: Record<string, unknown>;
}

/** Alice's device, a real engine (in memory): her keys are on the fake homeserver for the bot to claim. */
async function aliceDevice(): Promise<Keys> {
  const machine = await OlmMachine.initialize(new UserId(ALICE), new DeviceId('ALICEDEVICE'));
  for (const request of await machine.outgoingRequests()) {
    if (request instanceof KeysUploadRequest) return JSON.parse(request.body) as Keys;
  }
  throw new Error('the engine uploaded no keys');
}

/** Answers what the crypto step asks of a homeserver, for a room of the bot and alice's one device. */
function fakeHomeserver(alice: Keys): MatrixClient {
  // Device keys as uploaded: a key query must find them, as on a real homeserver.
  const devices = new Map<string, Record<string, unknown>>([[ALICE, { ALICEDEVICE: alice.device_keys }]]);
  const otks = Object.entries(alice.one_time_keys ?? {});
  const fake = {
    async getState(_room: string, type: string) {
      return type === 'm.room.encryption' ? { algorithm: 'm.megolm.v1.aes-sha2' } : undefined;
    },
    async request(method: string, path: string, options: { body?: Keys } = {}) {
      if (path.endsWith('/members')) {
        const member = (user: string): Record<string, unknown> => ({ event_id: `$${user}`, room_id: ROOM, sender: user, type: 'm.room.member', state_key: user, origin_server_ts: 1, content: { membership: 'join' } });
        return { chunk: [member(BOT), member(ALICE)] };
      }
      if (path === '/v3/keys/upload') {
        const own = options.body?.device_keys;
        if (own) devices.set(BOT, { [own.device_id]: own });
        return { one_time_key_counts: { signed_curve25519: 50 } };
      }
      if (path === '/v3/keys/query') return { device_keys: Object.fromEntries(devices), failures: {} };
      if (path === '/v3/keys/claim') {
        const next = otks.shift();
        return { one_time_keys: next ? { [ALICE]: { ALICEDEVICE: Object.fromEntries([next]) } } : {}, failures: {} };
      }
      if (path.startsWith('/v3/sendToDevice/') || path === '/v3/keys/signatures/upload' || path === '/v3/keys/device_signing/upload') return {};
      throw new Error(`unexpected request ${method} ${path}`);
    },
  };
  return fake as unknown as MatrixClient;
}

const known = new Set<string>();
const devices: DeviceApi = {
  ensure: async (id) => (known.has(id) ? 'existed' : (known.add(id), 'created')),
  remove: async (id) => void known.delete(id),
  list: async () => [...known],
};

/** Flushes of the store (time and bytes written), when a test wants to see what they cost. */
let flushes: Array<{ ms: number; bytes: number }> = [];

async function open(dir: string, state: StateDb, homeserver: MatrixClient): Promise<OlmCrypto> {
  const device = await openDeviceCrypto({ userId: BOT, dir, passphrase: undefined, devices, logger: silentLogger() });
  const flush = device.store.flush.bind(device.store);
  device.store.flush = async () => {
    const started = performance.now();
    const stats = await flush();
    flushes.push({ ms: performance.now() - started, bytes: stats.written ? stats.bytes : 0 });
    return stats;
  };
  return new OlmCrypto({ machine: device.machine, store: device.store, client: homeserver, userId: BOT, allowedUsers: [], trust: 'any', state, logger: silentLogger(), keyWaitMs: 0 });
}

describe('the crypto step makes each encryption durable before the ciphertext is handed over', () => {
  test('a restart from what is on disk at the moment of sending never reuses a message index', async () => {
    const dir = join(root, 'bot');
    const state = StateDb.open(dir);
    try {
      const homeserver = fakeHomeserver(await aliceDevice());
      const first = await open(dir, state, homeserver);
      const used: string[] = [];
      for (const body of ['one', 'two']) {
        const out = await first.prepareSend(ROOM, 'm.room.message', { msgtype: 'm.notice', body });
        const id = megolmIdentity(out.content);
        used.push(`${id?.sessionId}#${id?.index}`);
      }
      // The process "dies" here: no close, no flush. A new process starts from the files on disk.
      const second = await open(dir, state, homeserver);
      const out = await second.prepareSend(ROOM, 'm.room.message', { msgtype: 'm.notice', body: 'three' });
      const next = megolmIdentity(out.content);
      assert.equal(new Set(used).size, 2);
      assert.ok(next && !used.includes(`${next.sessionId}#${next.index}`), `(session, index) ${next?.sessionId}#${next?.index} used again`);
      await second.close();
    } finally {
      state.close();
    }
  });

  test('what the flush before each send costs (figures, not a target)', async (t) => {
    const dir = join(root, 'cost');
    const state = StateDb.open(dir);
    try {
      const crypto = await open(dir, state, fakeHomeserver(await aliceDevice()));
      await crypto.prepareSend(ROOM, 'm.room.message', { msgtype: 'm.notice', body: 'first: shares the room key' });
      flushes = [];
      for (let i = 0; i < 50; i++) await crypto.prepareSend(ROOM, 'm.room.message', { msgtype: 'm.notice', body: `reply ${i}` });
      const ms = flushes.map((f) => f.ms).sort((a, b) => a - b);
      const bytes = flushes.map((f) => f.bytes).sort((a, b) => a - b);
      assert.equal(flushes.length, 50, 'one flush per encrypted send');
      assert.ok(bytes.every((b) => b > 0), 'each flush wrote the advanced session');
      t.diagnostic(`flush per encrypted reply: p50 ${ms[25]?.toFixed(2)} ms, max ${ms.at(-1)?.toFixed(2)} ms; ${bytes[25]} bytes written (p50)`);
      await crypto.close();
    } finally {
      state.close();
    }
  });
});
