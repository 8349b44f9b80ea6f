/**
 * Trust on first use for users without cross-signing (src/crypto/device-pins.ts, trust.ts): the
 * decision alone, then the bot's crypto step with the real engine judging real devices (an
 * in-memory homeserver serves their keys), then the `approve` command through the bot.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import { Bot, type RoomActions } from '../../src/bot/bot.ts';
import type { TrustPolicy } from '../../src/config/config.ts';
import { passThroughCrypto } from '../../src/dev/fake-crypto-step.ts';
import { decide, decideApproval } from '../../src/crypto/device-pins.ts';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { OlmCrypto } from '../../src/crypto/olm-crypto.ts';
import { EngineHomeserver, memoryDevice } from '../../src/dev/engine-homeserver.ts';
import { silentLogger } from '../../src/log.ts';
import { emptyBatch, type SyncBatch } from '../../src/matrix/batch.ts';
import type { RoomEvent } from '../../src/matrix/events.ts';
import type { Approval, DeviceApprover, IncomingEvent } from '../../src/matrix/incoming.ts';
import { Metrics } from '../../src/metrics.ts';
import { Pipeline } from '../../src/pipeline.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { legacyTarget } from '../../src/config/targets.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const BOB = '@bob:example.org';
const ROOM = '!room:example.org';

let root: string;
let n = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'trust-tofu-'))));
after(() => rmSync(root, { recursive: true, force: true }));

describe('the decision for a user without cross-signing', () => {
  const seen = (deviceId: string, ed25519 = `key-${deviceId}`, operatorVerified = false) => ({ deviceId, ed25519, operatorVerified });

  test('the first device is pinned and obeyed; its key is then what it is judged by', () => {
    assert.deepEqual(decide({}, ALICE, seen('A1')), { trusted: true, why: `the first device of ${ALICE} I have seen: pinned`, pin: true });
    assert.deepEqual(decide({ A1: 'key-A1' }, ALICE, seen('A1')), { trusted: true, why: 'pinned', pin: false });
    const changed = decide({ A1: 'key-A1' }, ALICE, seen('A1', 'other'));
    assert.equal(changed.trusted, false);
    assert.match(changed.why, /presented a different key/);
  });

  test('a further device is refused, approvable from the pinned ones (not from itself)', () => {
    assert.deepEqual(decide({ A1: 'key-A1', A2: 'key-A2' }, ALICE, seen('A3')), {
      trusted: false, why: `device A3 is a new device of ${ALICE}, not approved yet`, approvers: ['A1', 'A2'],
    });
    assert.deepEqual((decide({ A1: 'key-A1', A2: 'key-A2' }, ALICE, seen('A2', 'other')) as { approvers: readonly string[] }).approvers, ['A1']);
  });

  test("the operator's trust verify approves it", () => {
    assert.deepEqual(decide({ A1: 'key-A1' }, ALICE, seen('A3', 'key-A3', true)), { trusted: true, why: 'approved by the operator', pin: true });
  });

  test('approve: not itself, only from a pinned device with its pinned key, only a device whose key is known', () => {
    const pins = { A1: 'key-A1' };
    assert.deepEqual(decideApproval(pins, { deviceId: 'A1', ed25519: 'key-A1' }, { deviceId: 'A2', ed25519: 'key-A2' }), { approved: true, already: false });
    assert.deepEqual(decideApproval({ ...pins, A2: 'key-A2' }, { deviceId: 'A1', ed25519: 'key-A1' }, { deviceId: 'A2', ed25519: 'key-A2' }), { approved: true, already: true });
    assert.deepEqual(decideApproval(pins, { deviceId: 'A2', ed25519: 'key-A2' }, { deviceId: 'A2', ed25519: 'key-A2' }), { approved: false, refusal: 'self' });
    assert.deepEqual(decideApproval(pins, { deviceId: 'A1', ed25519: 'key-A1' }, { deviceId: 'A1', ed25519: 'key-A1' }), { approved: false, refusal: 'self' });
    assert.deepEqual(decideApproval(pins, { deviceId: 'A3', ed25519: 'key-A3' }, { deviceId: 'A2', ed25519: 'key-A2' }), { approved: false, refusal: 'approver-not-pinned' });
    assert.deepEqual(decideApproval(pins, { deviceId: 'A1', ed25519: 'stolen' }, { deviceId: 'A2', ed25519: 'key-A2' }), { approved: false, refusal: 'approver-not-pinned' });
    assert.deepEqual(decideApproval(pins, { deviceId: 'A1', ed25519: 'key-A1' }, { deviceId: 'A9', ed25519: undefined }), { approved: false, refusal: 'unknown-device' });
  });
});

const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };

/** The bot's crypto step on a real engine, and a way to send it messages from real devices. */
async function startCrypto(dir: string, hs: EngineHomeserver, trust: TrustPolicy = 'tofu') {
  const { machine, store, deviceId } = await openDeviceCrypto({ userId: BOT, dir, passphrase: undefined, devices, freshDeviceId: 'BOTDEVICE', logger: silentLogger() });
  const state = StateDb.open(dir);
  const crypto = new OlmCrypto({ machine, store, client: hs.client(BOT, deviceId, ROOM, () => [ALICE, BOB]), userId: BOT, allowedUsers: [ALICE, BOB], trust, state, logger: silentLogger(), keyWaitMs: 0 });
  await crypto.setUp();
  let events = 0;
  /** How the bot judges a message from `from`. */
  const judge = async (from: OlmMachine): Promise<IncomingEvent['senderDevice']> => {
    const event = await hs.send(from, [BOT], ROOM, 'status', `$e${++events}`);
    const toDevice = hs.takeToDevice(BOT, deviceId) as unknown as SyncBatch['toDevice'];
    // As the homeserver says when a user's device list may have changed (a new device logged in).
    const deviceLists = { changed: [from.userId.toString()], left: [] };
    const { events: out } = await crypto.process({ ...emptyBatch('test'), toDevice, deviceLists, roomEvents: [event as unknown as RoomEvent] });
    assert.equal(out[0]?.decryptionFailure, undefined);
    return out[0]?.senderDevice;
  };
  return { crypto, state, judge, close: async () => (await crypto.close(), state.close()) };
}

describe('the crypto step judges devices of users without cross-signing (real engine)', () => {
  test('first device silent; further ones refused until approved from a pinned one; self and unapproved approvals refused; kept across a restart', async () => {
    const hs = new EngineHomeserver();
    const dir = join(root, `bot-${++n}`);
    const a1 = await memoryDevice(ALICE, 'ALICE1', hs);
    let bot = await startCrypto(dir, hs);
    assert.deepEqual(await bot.judge(a1), { deviceId: 'ALICE1', trusted: true, why: `the first device of ${ALICE} I have seen: pinned` });
    assert.equal((await bot.judge(a1))?.trusted, true);

    const a2 = await memoryDevice(ALICE, 'ALICE2', hs);
    const a3 = await memoryDevice(ALICE, 'ALICE3', hs);
    assert.deepEqual(await bot.judge(a2), { deviceId: 'ALICE2', trusted: false, why: `device ALICE2 is a new device of ${ALICE}, not approved yet`, approvers: ['ALICE1'] });
    assert.equal((await bot.judge(a3))?.trusted, false);

    assert.deepEqual(await bot.crypto.approve(ALICE, 'ALICE2', 'ALICE2'), { kind: 'refused', reason: 'self' });
    assert.deepEqual(await bot.crypto.approve(ALICE, 'ALICE3', 'ALICE2'), { kind: 'refused', reason: 'approver-not-pinned' });
    assert.deepEqual(await bot.crypto.approve(ALICE, 'ALICE1', 'NOSUCH'), { kind: 'refused', reason: 'unknown-device' });
    // Bob's approve acts on Bob's devices only: Alice's device id is no device of his.
    const b1 = await memoryDevice(BOB, 'BOB1', hs);
    assert.equal((await bot.judge(b1))?.trusted, true);
    assert.deepEqual(await bot.crypto.approve(BOB, 'BOB1', 'ALICE2'), { kind: 'refused', reason: 'unknown-device' });
    assert.equal((await bot.judge(a2))?.trusted, false);

    assert.deepEqual(await bot.crypto.approve(ALICE, 'ALICE1', 'ALICE2'), { kind: 'approved', already: false });
    assert.deepEqual(await bot.crypto.approve(ALICE, 'ALICE1', 'ALICE2'), { kind: 'approved', already: true });
    assert.deepEqual(await bot.judge(a2), { deviceId: 'ALICE2', trusted: true, why: 'pinned' });
    // An approved device may approve in turn.
    assert.deepEqual((await bot.judge(a3))?.approvers, ['ALICE1', 'ALICE2']);

    await bot.close();
    bot = await startCrypto(dir, hs);
    assert.equal((await bot.judge(a2))?.trusted, true, 'the approval is on the volume');
    assert.equal((await bot.judge(a3))?.trusted, false);
    // The operator's `trust verify`, as the CLI queues it: applied before the next batch.
    bot.state.addOperatorRequest('verify', ALICE, 'ALICE3');
    assert.deepEqual(await bot.judge(a3), { deviceId: 'ALICE3', trusted: true, why: 'approved by the operator' });
    assert.deepEqual(await bot.judge(a3), { deviceId: 'ALICE3', trusted: true, why: 'pinned' });
    // `trust repin` for a user without cross-signing forgets the pins: the next device is a first device again.
    bot.state.addOperatorRequest('repin', ALICE);
    const a4 = await memoryDevice(ALICE, 'ALICE4', hs);
    assert.equal((await bot.judge(a4))?.trusted, true);
    assert.equal((await bot.judge(a1))?.trusted, false);
    await bot.close();
  });

  test('policy "any": every device is obeyed and approve has nothing to do', async () => {
    const hs = new EngineHomeserver();
    const bot = await startCrypto(join(root, `bot-${++n}`), hs, 'any');
    await bot.judge(await memoryDevice(ALICE, 'ALICE1', hs));
    assert.equal((await bot.judge(await memoryDevice(ALICE, 'ALICE2', hs)))?.trusted, true);
    const answer = await bot.crypto.approve(ALICE, 'ALICE1', 'ALICE2');
    assert.equal(answer.kind, 'not-applicable');
    await bot.close();
  });
});

describe('approve through the bot', () => {
  const refusedVerdict = { deviceId: 'NEW', trusted: false, why: `device NEW is a new device of ${ALICE}, not approved yet`, approvers: ['OLD'] };

  function setUp(options: { prefix?: string; verdict?: (e: RoomEvent) => IncomingEvent['senderDevice'] } = {}) {
    const state = StateDb.open(join(root, `state-${++n}`));
    const metrics = new Metrics({ defaultMetrics: false });
    const sent: string[] = [];
    const rooms: RoomActions = { join: async () => undefined, leave: async () => undefined, send: async (_r, content) => void sent.push(String(content['body'])) };
    const calls: Array<[string, string, string]> = [];
    const approver: DeviceApprover = { approve: async (user, by, id): Promise<Approval> => (calls.push([user, by, id]), { kind: 'approved', already: false }) };
    const crypto = passThroughCrypto(options.verdict);
    const scales: number[] = [];
    const bot = new Bot({
      userId: BOT, allowedUsers: [ALICE, BOB], targets: [legacyTarget('agents', 'openclaw')], echo: true, commandPrefix: options.prefix ?? '', maxCommandAgeSeconds: 0,
      kube: { scale: async (_t, to) => (scales.push(to), { previous: 0, desired: to }), status: async () => ({ desired: 0, ready: 0, available: 0, updated: 0, state: 'off' }), ping: async () => undefined },
      rooms, devices: approver, state, metrics, logger: silentLogger(),
    });
    const pipeline = new Pipeline({ crypto, bot, state, metrics, logger: silentLogger() });
    let ids = 0;
    const message = (body: string, sender = ALICE): RoomEvent => ({ event_id: `$m${++ids}`, room_id: ROOM, sender, type: 'm.room.message', origin_server_ts: Date.now(), content: { msgtype: 'm.text', body } });
    const run = (events: RoomEvent[]): Promise<void> => pipeline.process({ ...emptyBatch(`b${++ids}`), roomEvents: events }, 'appservice');
    return { sent, calls, scales, message, run };
  }

  test("an unapproved device's command is refused with both ways to approve it, with the prefix; nothing runs", async () => {
    const t = setUp({ prefix: '!toggle', verdict: () => refusedVerdict });
    await t.run([t.message('!toggle start')]);
    assert.deepEqual(t.sent, [
      `🔒 Not running this: device NEW is a new device of ${ALICE}, not approved yet. I obey a further device of yours only once it is approved. ` +
      `To approve NEW, send "!toggle approve NEW" from a device of yours I already obey (OLD), or ask the operator to run "openclaw-k8s-toggle-operator trust verify ${ALICE} NEW".`,
    ]);
    assert.deepEqual(t.scales, []);
  });

  test('with no approving device still logged in, the refusal names the operator only', async () => {
    const t = setUp({ verdict: () => ({ ...refusedVerdict, approvers: [] }) });
    await t.run([t.message('status')]);
    assert.deepEqual(t.sent, [
      `🔒 Not running this: device NEW is a new device of ${ALICE}, not approved yet. I obey a further device of yours only once it is approved. ` +
      `No device of yours that I obey is still logged in, so only the operator can approve NEW: ask them to run "openclaw-k8s-toggle-operator trust verify ${ALICE} NEW".`,
    ]);
  });

  test('an unapproved device cannot approve itself or another; the approver is never asked', async () => {
    const t = setUp({ verdict: () => refusedVerdict });
    await t.run([t.message('approve NEW'), t.message('approve OTHER')]);
    assert.match(t.sent[0] ?? '', /^🔒 Not approving NEW: a device cannot approve itself\. To approve NEW, send "approve NEW" from a device of yours I already obey \(OLD\), or ask the operator to run/);
    assert.match(t.sent[1] ?? '', /^🔒 Not approving OTHER: this device \(NEW\) is not approved itself, so it cannot approve others\. To approve NEW/);
    assert.deepEqual(t.calls, []);
  });

  test('from an obeyed device: carried out once per event (a redelivery re-sends the answer), for the sender only, the id as typed', async () => {
    const t = setUp({ verdict: (e) => ({ deviceId: e.sender === BOB ? 'BOB1' : 'OLD', trusted: true, why: 'pinned' }) });
    const approve = t.message('Approve NewDev.');
    await t.run([approve]);
    await t.run([approve]);
    await t.run([t.message('approve NewDev', BOB)]);
    assert.deepEqual(t.calls, [[ALICE, 'OLD', 'NewDev'], [BOB, 'BOB1', 'NewDev']]);
    assert.deepEqual(t.sent.slice(0, 1), [`✅ Approved device NewDev of ${ALICE}: I obey its commands from now on.`]);
  });

  test('in a plaintext room, or without a device id, nothing is approved and the answer says why', async () => {
    const t = setUp();
    await t.run([t.message('approve NEW'), t.message('approve')]);
    assert.deepEqual(t.sent, ['"approve" works only in an encrypted room: there I know which of your devices sent it.', 'Say which device: "approve DEVICEID", with the id from my refusal or from your client\'s list of sessions.']);
    assert.deepEqual(t.calls, []);
  });
});
