/**
 * The streaming reader of transaction bodies: long message texts are cut while the bytes stream
 * in, wherever the chunks split them; everything else comes out exactly as JSON.parse reads it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { readTransactionBody, StringPruner } from '../../src/appservice/transaction-body.ts';
import { MAX_COMMAND_CHARS, OVERSIZED_MARK } from '../../src/matrix/events.ts';

/** Runs the pruner over `text` cut into chunks of `size` bytes and parses its output. */
function prune(text: string, size: number): { value: unknown; pruned: number } {
  const bytes = Buffer.from(text, 'utf8');
  const pruner = new StringPruner();
  for (let i = 0; i < bytes.length; i += size) pruner.push(bytes.subarray(i, i + size));
  return { value: JSON.parse(pruner.end().toString('utf8')) as unknown, pruned: pruner.pruned };
}

const CHUNKS = [1, 2, 3, 7, 64, 4096, 65_536, 10_000_000];

function message(content: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { event_id: '$e', room_id: '!r:x', sender: '@a:x', type: 'm.room.message', origin_server_ts: 1, content, ...extra };
}

describe('StringPruner', () => {
  test('a body with nothing long comes out as JSON.parse reads it, however it is cut', () => {
    const body = {
      events: [message({ msgtype: 'm.text', body: 'status "quoted" \\ back\nslash é 🦞 \u0000', formatted_body: '<b>status</b>' }), { nested: [[[{ body: 'x' }]]], n: -1.5e3, t: true, f: false, z: null }],
      'de.sorunome.msc2409.to_device': [{ type: 'm.room.encrypted', sender: '@a:x', content: { ciphertext: { key: { body: 'abc', type: 0 } } } }],
      '': { '\u0065vents': [] },
    };
    const text = JSON.stringify(body, null, 1);
    for (const size of CHUNKS) assert.deepEqual(prune(text, size), { value: body, pruned: 0 }, `chunks of ${size}`);
  });

  test('long body, formatted_body and ciphertext of events are replaced by the mark, whatever the chunking', () => {
    const long = 'x'.repeat(70_000);
    const body = {
      events: [
        message({ msgtype: 'm.text', body: long, formatted_body: long, other: 'kept' }),
        { ...message({ algorithm: 'm.megolm.v1.aes-sha2', ciphertext: long, session_id: 's' }), type: 'm.room.encrypted' },
        message({ msgtype: 'm.text', body: 'start' }),
      ],
    };
    for (const size of CHUNKS) {
      const { value, pruned } = prune(JSON.stringify(body), size);
      const events = (value as { events: Array<{ content: Record<string, unknown> }> }).events;
      assert.equal(pruned, 3, `chunks of ${size}`);
      assert.deepEqual(events[0]?.content, { msgtype: 'm.text', body: OVERSIZED_MARK, formatted_body: OVERSIZED_MARK, other: 'kept' });
      assert.deepEqual(events[1]?.content, { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: OVERSIZED_MARK, session_id: 's' });
      assert.deepEqual(events[2]?.content, { msgtype: 'm.text', body: 'start' });
    }
  });

  test('long strings anywhere else are kept: to-device, other content fields, deeper levels, other top-level keys', () => {
    const long = 'y'.repeat(10_000);
    const body = {
      events: [message({ msgtype: 'm.text', info: { body: long }, caption: long }, { unsigned: { body: long } })],
      'de.sorunome.msc2409.to_device': [{ type: 'm.room.encrypted', sender: '@a:x', content: { ciphertext: long, body: long } }],
      other: [{ content: { body: long } }],
    };
    for (const size of [1, 1000, 100_000]) assert.deepEqual(prune(JSON.stringify(body), size), { value: body, pruned: 0 });
  });

  test('the bound is in UTF-16 units, as String.length counts them: multi-byte characters and escapes included', () => {
    const cases: Array<[string, string]> = [
      ['ascii', 'a'],
      ['two-byte', 'é'],
      ['three-byte', '€'],
      ['escaped newline', '\n'],
      ['escaped quote', '"'],
      ['unicode escape', '\u0001'],
    ];
    for (const [name, unit] of cases) {
      for (const [length, cut] of [[MAX_COMMAND_CHARS, false], [MAX_COMMAND_CHARS + 1, true]] as const) {
        const text = unit.repeat(length);
        assert.equal(text.length, length);
        const { value } = prune(JSON.stringify({ events: [message({ body: text })] }), 5);
        const kept = (value as { events: Array<{ content: { body: string } }> }).events[0]?.content.body;
        assert.equal(kept, cut ? OVERSIZED_MARK : text, `${name} x ${length}`);
      }
    }
    // A 4-byte character is two units (a surrogate pair).
    const lobsters = '🦞'.repeat(MAX_COMMAND_CHARS / 2);
    assert.equal((prune(JSON.stringify({ events: [message({ body: lobsters })] }), 3).value as { events: Array<{ content: { body: string } }> }).events[0]?.content.body, lobsters);
    assert.equal((prune(JSON.stringify({ events: [message({ body: `${lobsters}a` })] }), 3).value as { events: Array<{ content: { body: string } }> }).events[0]?.content.body, OVERSIZED_MARK);
  });

  test('an escaped key is not recognised (the rule after parsing still sees the long text)', () => {
    const long = 'z'.repeat(5000);
    const text = `{"events":[{"content":{"bo\\u0064y":"${long}"}}]}`;
    assert.deepEqual(prune(text, 100), { value: { events: [{ content: { body: long } }] }, pruned: 0 });
  });

  test('deep nesting costs nothing to track (the route refuses it after parsing)', () => {
    const text = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const pruner = new StringPruner();
    pruner.push(Buffer.from(text));
    assert.equal(pruner.end().toString(), text);
  });
});

describe('readTransactionBody', () => {
  const request = (headers: Record<string, string> = {}): PassThrough & IncomingMessage => Object.assign(new PassThrough(), { headers }) as unknown as PassThrough & IncomingMessage;

  test('hashes the bytes as they came, and returns the pruned text', async () => {
    const raw = JSON.stringify({ events: [message({ body: 'q'.repeat(100_000) })] });
    const req = request();
    const reading = readTransactionBody(req, 10 * 2 ** 20);
    for (let i = 0; i < raw.length; i += 16_384) req.write(raw.slice(i, i + 16_384));
    req.end();
    const body = await reading;
    assert.equal(body.digest, createHash('sha256').update(raw).digest('base64url'));
    assert.equal(body.pruned, 1);
    assert.ok(body.text.length < 1000);
  });

  test('over the limit: 413, by Content-Length or while reading', async () => {
    await assert.rejects(readTransactionBody(request({ 'content-length': '2000' }), 1000), { status: 413 });
    const req = request();
    const reading = readTransactionBody(req, 1000);
    req.write(Buffer.alloc(1500, 0x20));
    await assert.rejects(reading, { status: 413 });
  });

  test('a compressed body is refused (Synapse sends none)', async () => {
    await assert.rejects(readTransactionBody(request({ 'content-encoding': 'gzip' }), 1000), { status: 415 });
  });
});
