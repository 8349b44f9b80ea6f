/**
 * Messages too large to be commands (issue 10: big transactions). A transaction is read, parsed
 * and processed as the appservice route does it, with the real crypto engine and its store, a
 * fake homeserver for the engine, and fakes for the bot's rooms and Kubernetes. The large
 * messages are neither decrypted nor answered; everything else in the same transaction, room keys
 * and state events included, is handled as usual.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { readTransactionBody } from '../../src/appservice/transaction-body.ts';
import { parseTransaction } from '../../src/appservice/transaction.ts';
import { Bot, type RoomActions } from '../../src/bot/bot.ts';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { OlmCrypto } from '../../src/crypto/olm-crypto.ts';
import { EngineHomeserver, memoryDevice } from '../../src/dev/engine-homeserver.ts';
import type { Kube } from '../../src/kube/kube.ts';
import { silentLogger } from '../../src/log.ts';
import { isOversizedMessage, MAX_COMMAND_CHARS, withoutOversized, type RoomEvent } from '../../src/matrix/events.ts';
import { Metrics } from '../../src/metrics.ts';
import { Pipeline } from '../../src/pipeline.ts';
import { StateDb } from '../../src/store/state-db.ts';
import { legacyTarget } from '../../src/config/targets.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const ROOM = '!encrypted:example.org';
const OTHER = '!other:example.org';

let root: string;
let dirs = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'openclaw-oversized-'))));
after(() => rmSync(root, { recursive: true, force: true }));

const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };

function event(type: string, content: Record<string, unknown>, extra: Partial<RoomEvent> = {}): RoomEvent {
  return { event_id: `$${type}-${++dirs}`, room_id: ROOM, sender: ALICE, type, origin_server_ts: Date.now(), content, ...extra };
}

describe('isOversizedMessage', () => {
  test('messages and encrypted events over the bound; state events and other types never', () => {
    const long = 'x'.repeat(MAX_COMMAND_CHARS + 1);
    const fits = 'x'.repeat(MAX_COMMAND_CHARS);
    assert.equal(isOversizedMessage(event('m.room.message', { msgtype: 'm.text', body: long })), true);
    assert.equal(isOversizedMessage(event('m.room.message', { msgtype: 'm.text', body: 'status', formatted_body: long })), true);
    assert.equal(isOversizedMessage(event('m.room.encrypted', { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: long })), true);
    assert.equal(isOversizedMessage(event('m.room.message', { msgtype: 'm.text', body: fits, formatted_body: fits })), false);
    assert.equal(isOversizedMessage(event('m.room.encrypted', { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: fits })), false);
    assert.equal(isOversizedMessage(event('m.room.message', { msgtype: 'm.text', body: long }, { state_key: '' })), false);
    assert.equal(isOversizedMessage(event('m.room.topic', { topic: long, body: long }, { state_key: '' })), false);
    assert.equal(isOversizedMessage(event('m.sticker', { body: long })), false);
  });

  test('withoutOversized keeps the order of the rest and counts what it left out', () => {
    const events = [event('m.room.message', { body: 'a' }), event('m.room.message', { body: 'x'.repeat(10_000) }), event('m.room.member', { membership: 'join' }, { state_key: ALICE })];
    const { kept, oversized } = withoutOversized(events);
    assert.deepEqual(kept, [events[0], events[2]]);
    assert.equal(oversized, 1);
  });
});

describe('a transaction with large messages, read and processed as the appservice route does', () => {
  test('large messages are not decrypted nor answered; the command, the room key and the invite in the same transaction are handled', async () => {
    const dir = join(root, `bot-${++dirs}`);
    const hs = new EngineHomeserver();
    const alice = await memoryDevice(ALICE, 'ALICE1', hs);
    const { machine, store, deviceId } = await openDeviceCrypto({ userId: BOT, dir, passphrase: undefined, devices, freshDeviceId: 'BOTDEVICE', logger: silentLogger() });
    // What the engine is asked to decrypt (sizes of the events).
    const decrypted: number[] = [];
    const decrypt = machine.decryptRoomEvent.bind(machine);
    machine.decryptRoomEvent = (json, ...rest) => (decrypted.push(json.length), decrypt(json, ...rest));
    const state = StateDb.open(dir);
    const metrics = new Metrics({ defaultMetrics: false });
    const crypto = new OlmCrypto({ machine, store, client: hs.client(BOT, deviceId, ROOM, () => [ALICE]), userId: BOT, allowedUsers: [ALICE], trust: 'any', state, logger: silentLogger(), keyWaitMs: 0 });
    await crypto.setUp();
    const sent: Array<{ roomId: string; body: string }> = [];
    const joined: string[] = [];
    const scales: number[] = [];
    const rooms: RoomActions = {
      join: async (roomId) => void joined.push(roomId),
      leave: async () => undefined,
      send: async (roomId, content) => void sent.push({ roomId, body: String(content['body']) }),
    };
    const kube: Kube = {
      scale: async (_t, to) => (scales.push(to), { previous: 0, desired: to }),
      status: async () => ({ desired: 0, ready: 0, available: 0, updated: 0, state: 'off' }),
      ping: async () => undefined,
    };
    const bot = new Bot({ userId: BOT, allowedUsers: [ALICE], targets: [legacyTarget('agents', 'openclaw')], echo: false, commandPrefix: '', maxCommandAgeSeconds: 0, kube, rooms, state, metrics, logger: silentLogger() });
    const pipeline = new Pipeline({ crypto, bot, state, metrics, logger: silentLogger() });

    // Alice's first message starts a Megolm session: its room key waits in the bot's inbox, and
    // reaches the bot only inside this transaction. The command uses the same session.
    const bigEncrypted = await hs.send(alice, [BOT], ROOM, 'lorem ipsum '.repeat(4000), '$big-encrypted');
    const command = await hs.send(alice, [BOT], ROOM, 'start', '$command');
    const body = JSON.stringify({
      events: [
        bigEncrypted,
        event('m.room.message', { msgtype: 'm.text', body: 'pasted log line\n'.repeat(4000) }, { event_id: '$big-plain' }),
        event('m.room.message', { msgtype: 'm.text', body: 'hi', format: 'org.matrix.custom.html', formatted_body: '<p>hi</p>'.repeat(1000) }, { event_id: '$big-html' }),
        event('m.room.member', { membership: 'invite' }, { event_id: '$invite', room_id: OTHER, state_key: BOT }),
        command,
      ],
      'de.sorunome.msc2409.to_device': hs.takeToDevice(BOT, deviceId),
    });
    assert.ok(body.length > 100_000);

    const req = Object.assign(new PassThrough(), { headers: {} }) as unknown as PassThrough & IncomingMessage;
    const reading = readTransactionBody(req, 10 * 2 ** 20);
    for (let i = 0; i < body.length; i += 16_384) req.write(body.slice(i, i + 16_384));
    req.end();
    const { text, pruned } = await reading;
    assert.equal(pruned, 3, 'the three long strings never became strings');
    const batch = parseTransaction('1', JSON.parse(text), { userId: BOT, deviceId });
    assert.equal(batch.oversized, 3);
    assert.deepEqual(batch.roomEvents.map((e) => e.event_id), ['$invite', '$command']);
    assert.equal(batch.toDevice.length, 1, 'the room key is in the batch');

    await pipeline.process(batch, 'appservice');
    assert.deepEqual(scales, [1], 'the command ran: its room key, in the same transaction, was ingested');
    assert.deepEqual(joined, [OTHER], 'the invite, a state event in the same transaction, was handled');
    assert.equal(decrypted.length, 1, 'only the command was decrypted');
    assert.ok((decrypted[0] ?? Infinity) < 2 * MAX_COMMAND_CHARS);
    const inRoom = sent.filter((s) => s.roomId === ROOM).map((s) => s.body);
    assert.equal(inRoom.length, 1, `one reply in the room, the command's result: ${inRoom.join(' | ')}`);
    assert.match(inRoom[0] ?? '', /0 → 1/);
    assert.ok(!sent.some((s) => /Unknown command|could not decrypt/i.test(s.body)), sent.map((s) => s.body).join(' | '));
    assert.deepEqual(state.pendingDecryptions(), [], 'nothing kept for later decryption');
    assert.match(await metrics.registry.getSingleMetricAsString('openclaw_events_skipped_total'), /reason="oversized"} 3/);
    await crypto.close();
    state.close();
    alice.close();
  });
});
