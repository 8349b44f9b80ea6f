import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTransaction, TransactionFormatError, type BotDevice } from '../../src/appservice/transaction.ts';
import { MAX_COMMAND_CHARS, OVERSIZED_MARK } from '../../src/matrix/events.ts';

const BOT = '@bot:example.org';
const DEVICE = 'BOTDEVICE';
const bot: BotDevice = { userId: BOT, deviceId: DEVICE };
const noDevice: BotDevice = { userId: BOT, deviceId: undefined };

function message(id: string, body = 'status'): Record<string, unknown> {
  return { event_id: id, room_id: '!room:example.org', sender: '@alice:example.org', type: 'm.room.message', origin_server_ts: 1_700_000_000_000, content: { msgtype: 'm.text', body } };
}

function toDevice(extra: Record<string, unknown>): Record<string, unknown> {
  return { type: 'm.room.encrypted', sender: '@alice:example.org', content: { algorithm: 'm.olm.v1.curve25519-aes-sha2', ciphertext: {} }, ...extra };
}

describe('parseTransaction', () => {
  test('keeps room events and labels the batch', () => {
    const batch = parseTransaction('42', { events: [message('$a'), message('$b')] }, bot);
    assert.equal(batch.label, 'txn 42');
    assert.deepEqual(batch.roomEvents.map((e) => e.event_id), ['$a', '$b']);
    assert.deepEqual(batch.roomEvents[0], message('$a'));
  });

  test('drops malformed events and keeps the rest', () => {
    const { content: _c, ...noContent } = message('$nocontent');
    const events = [
      message('$good1'),
      null,
      'text',
      42,
      [],
      { ...message('$x'), event_id: 7 },
      { ...message('$y'), room_id: undefined },
      { ...message('$z'), sender: null },
      { ...message('$w'), type: undefined },
      { ...message('$v'), content: null },
      noContent,
      message('$good2'),
    ];
    const batch = parseTransaction('1', { events }, bot);
    assert.deepEqual(batch.roomEvents.map((e) => e.event_id), ['$good1', '$good2']);
  });

  test('an empty events array is a valid, empty batch', () => {
    const batch = parseTransaction('1', { events: [] }, bot);
    assert.deepEqual(batch.roomEvents, []);
    assert.deepEqual(batch.toDevice, []);
    assert.deepEqual(batch.deviceLists, { changed: [], left: [] });
    assert.equal(batch.oneTimeKeyCounts, undefined);
    assert.equal(batch.unusedFallbackKeyTypes, undefined);
  });

  test('a body that is not an object, or has no events array, is a format error', () => {
    for (const body of [null, undefined, 'events', 42, [], [message('$a')], {}, { events: 'nope' }, { events: { 0: message('$a') } }, { ephemeral: [] }]) {
      assert.throws(() => parseTransaction('1', body, bot), TransactionFormatError, JSON.stringify(body));
    }
  });

  test('messages too large to be commands are left out and counted; the rest of the transaction is kept', () => {
    const long = 'x'.repeat(MAX_COMMAND_CHARS + 1);
    const encrypted = { ...message('$enc'), type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: long } };
    const member = { ...message('$member'), type: 'm.room.member', state_key: '@alice:example.org', content: { membership: 'join', displayname: long } };
    const body = {
      events: [message('$big', long), encrypted, { ...message('$marked'), content: { msgtype: 'm.text', body: OVERSIZED_MARK } }, member, message('$command')],
      'de.sorunome.msc2409.to_device': [toDevice({ to_user_id: BOT, to_device_id: DEVICE })],
    };
    const batch = parseTransaction('1', body, bot);
    assert.deepEqual(batch.roomEvents.map((e) => e.event_id), ['$member', '$command']);
    assert.equal(batch.oversized, 3);
    assert.equal(batch.toDevice.length, 1);
    assert.deepEqual(batch.dropped, []);
  });

  test('to-device events: only those for the bot user and device', () => {
    const body = {
      events: [],
      'de.sorunome.msc2409.to_device': [
        toDevice({ to_user_id: BOT, to_device_id: DEVICE, n: 1 }),
        toDevice({ to_user_id: BOT, to_device_id: 'OTHERDEVICE', n: 2 }),
        toDevice({ to_user_id: '@someone:example.org', to_device_id: DEVICE, n: 3 }),
        toDevice({ to_user_id: BOT, to_device_id: '*', n: 4 }),
        toDevice({ n: 5 }), // no recipient named (the /sync shape): kept
        { type: 'm.room.encrypted', sender: '@alice:example.org', to_user_id: BOT, to_device_id: DEVICE, n: 6 }, // no content
        { sender: '@alice:example.org', content: {}, to_user_id: BOT, to_device_id: DEVICE, n: 7 }, // no type
        toDevice({ sender: 5, to_user_id: BOT, to_device_id: DEVICE, n: 8 }),
        null,
      ],
    };
    const batch = parseTransaction('1', body, bot);
    assert.deepEqual(batch.toDevice.map((e) => (e as unknown as { n: number }).n), [1, 4, 5]);
  });

  test('to-device events are dropped entirely while the bot has no device', () => {
    const body = { events: [], 'de.sorunome.msc2409.to_device': [toDevice({ to_user_id: BOT, to_device_id: DEVICE }), toDevice({})] };
    assert.deepEqual(parseTransaction('1', body, noDevice).toDevice, []);
  });

  test('to-device under the stable name is read too', () => {
    const body = { events: [], to_device: [toDevice({ to_user_id: BOT, to_device_id: DEVICE })] };
    assert.equal(parseTransaction('1', body, bot).toDevice.length, 1);
  });

  test('device lists from org.matrix.msc3202.device_lists', () => {
    const body = { events: [], 'org.matrix.msc3202.device_lists': { changed: ['@alice:example.org', 5, '@bob:example.org'], left: ['@carol:example.org'] } };
    assert.deepEqual(parseTransaction('1', body, bot).deviceLists, { changed: ['@alice:example.org', '@bob:example.org'], left: ['@carol:example.org'] });
    // Without a device they are still reported: they concern users, not the bot's device.
    assert.deepEqual(parseTransaction('1', body, noDevice).deviceLists.changed, ['@alice:example.org', '@bob:example.org']);
    assert.deepEqual(parseTransaction('1', { events: [], 'org.matrix.msc3202.device_lists': { changed: ['@a:x.org'] } }, bot).deviceLists, { changed: ['@a:x.org'], left: [] });
    assert.deepEqual(parseTransaction('1', { events: [], 'org.matrix.msc3202.device_lists': 'junk' }, bot).deviceLists, { changed: [], left: [] });
  });

  for (const name of ['org.matrix.msc3202.device_one_time_keys_count', 'org.matrix.msc3202.device_one_time_key_counts']) {
    test(`one-time key counts from ${name}, for the bot's user and device only`, () => {
      const counts = {
        [BOT]: { [DEVICE]: { signed_curve25519: 17, bogus: 'x' }, OTHERDEVICE: { signed_curve25519: 99 } },
        '@someone:example.org': { [DEVICE]: { signed_curve25519: 3 } },
      };
      assert.deepEqual(parseTransaction('1', { events: [], [name]: counts }, bot).oneTimeKeyCounts, { signed_curve25519: 17 });
      assert.equal(parseTransaction('1', { events: [], [name]: counts }, noDevice).oneTimeKeyCounts, undefined);
      assert.equal(parseTransaction('1', { events: [], [name]: { '@someone:example.org': counts['@someone:example.org'] } }, bot).oneTimeKeyCounts, undefined);
      assert.equal(parseTransaction('1', { events: [], [name]: { [BOT]: { OTHERDEVICE: { signed_curve25519: 1 } } } }, bot).oneTimeKeyCounts, undefined);
    });
  }

  test('a zero one-time key count is reported, not dropped', () => {
    const body = { events: [], 'org.matrix.msc3202.device_one_time_keys_count': { [BOT]: { [DEVICE]: { signed_curve25519: 0 } } } };
    assert.deepEqual(parseTransaction('1', body, bot).oneTimeKeyCounts, { signed_curve25519: 0 });
  });

  test('unused fallback key types for the bot device', () => {
    const body = {
      events: [],
      'org.matrix.msc3202.device_unused_fallback_key_types': {
        [BOT]: { [DEVICE]: ['signed_curve25519', 3], OTHERDEVICE: ['other'] },
        '@someone:example.org': { [DEVICE]: ['nope'] },
      },
    };
    assert.deepEqual(parseTransaction('1', body, bot).unusedFallbackKeyTypes, ['signed_curve25519']);
    assert.equal(parseTransaction('1', body, noDevice).unusedFallbackKeyTypes, undefined);
    // An empty list is meaningful (the fallback key was used) and must not read as "not reported".
    const used = { events: [], 'org.matrix.msc3202.device_unused_fallback_key_types': { [BOT]: { [DEVICE]: [] } } };
    assert.deepEqual(parseTransaction('1', used, bot).unusedFallbackKeyTypes, []);
  });

  test('key counts and fallback key types are undefined when absent', () => {
    const batch = parseTransaction('1', { events: [message('$a')] }, bot);
    assert.equal(batch.oneTimeKeyCounts, undefined);
    assert.equal(batch.unusedFallbackKeyTypes, undefined);
    assert.deepEqual(batch.toDevice, []);
  });
});

describe('parseTransaction: crafted shapes a homeserver could send', () => {
  const base = (extra: Record<string, unknown>): Record<string, unknown> => ({ ...message('$x'), ...extra });

  test('events with malformed ids or fields are dropped, each with its reason; the rest is kept', () => {
    const events = [
      base({ event_id: '$bad-room', type: 'm.room.encrypted', room_id: 'not a room id' }),
      base({ event_id: '$bad-sender', sender: 'alice' }),
      base({ event_id: 'no-dollar' }),
      base({ event_id: '$bad-state', type: 'm.room.member', state_key: '@<no>:x y', content: { membership: 'join' } }),
      base({ event_id: '$state-not-string', state_key: 42 }),
      base({ event_id: '$no-ts', origin_server_ts: 'yesterday' }),
      base({ event_id: '$content-array', content: [] }),
      message('$good'),
    ];
    const batch = parseTransaction('1', { events }, bot);
    assert.deepEqual(batch.roomEvents.map((e) => e.event_id), ['$good']);
    assert.deepEqual(batch.dropped, [
      { eventId: '$bad-room', reason: 'malformed room_id' },
      { eventId: '$bad-sender', reason: 'malformed sender' },
      { eventId: 'no-dollar', reason: 'malformed event_id' },
      { eventId: '$bad-state', reason: 'member event with a malformed state_key' },
      { eventId: '$state-not-string', reason: 'malformed state_key' },
      { eventId: '$no-ts', reason: 'malformed origin_server_ts' },
      { eventId: '$content-array', reason: 'malformed content' },
    ]);
  });

  test('room ids of room version 12 (no server part) are accepted', () => {
    const batch = parseTransaction('1', { events: [{ ...message('$v12'), room_id: '!abcdefABCDEF0123456789' }] }, bot);
    assert.equal(batch.roomEvents.length, 1);
  });

  test('malformed user ids in device lists are passed as strings (the crypto step drops them), never thrown on', () => {
    const batch = parseTransaction('1', { events: [], 'org.matrix.msc3202.device_lists': { changed: ['@ok:example.org', 'not-a-user', 42, '@bad id:x'], left: [null] } }, bot);
    assert.deepEqual(batch.deviceLists, { changed: ['@ok:example.org', 'not-a-user', '@bad id:x'], left: [] });
  });
});
