import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compactDuration, formatDuration, parseDuration } from '../../src/bot/durations.ts';
import { TimeText, utcStamp } from '../../src/bot/time-text.ts';

const M = 60_000;
const H = 60 * M;

describe('run times', () => {
  test('typed forms', () => {
    const table: Array<[string, number | undefined]> = [
      ['30m', 30 * M], ['2h', 2 * H], ['1h30m', 90 * M], ['90m', 90 * M], ['1d', 24 * H], ['1d2h', 26 * H], ['2 h 5 m', 125 * M], ['45min', 45 * M],
      ['1M', M], ['0m', undefined], ['30s', undefined], ['2', undefined], ['h', undefined], ['1.5h', undefined], ['30m1h', undefined], ['', undefined], ['367d', undefined],
    ];
    for (const [text, ms] of table) assert.equal(parseDuration(text), ms, text);
  });

  test('as the bot writes them', () => {
    assert.equal(formatDuration(72 * M), '1 h 12 min');
    assert.equal(formatDuration(45 * M), '45 min');
    assert.equal(formatDuration(2 * H), '2 h');
    assert.equal(formatDuration(27 * H + 5 * M), '1 d 3 h');
    assert.equal(formatDuration(20_000), 'less than a minute');
    assert.equal(compactDuration(90 * M), '1h30m');
    assert.equal(compactDuration(26 * H), '1d2h');
  });
});

describe('clock times in chat', () => {
  const now = Date.UTC(2025, 5, 14, 14, 2);
  test('UTC by hand: today, tomorrow, another day, named', () => {
    const t = new TimeText('UTC');
    assert.equal(t.time(now + 2 * H, now), '16:02');
    assert.equal(t.timeWithZone(now + 2 * H, now), '16:02 UTC');
    assert.equal(t.time(now + 12 * H, now), '02:02 tomorrow');
    assert.equal(t.time(now + 72 * H, now), '14:02 on 17 Jun');
    assert.equal(t.time(now - 15 * H, now), '23:02 yesterday');
    assert.equal(t.time(Date.UTC(2026, 0, 2, 9, 5), now), '09:05 on 2 Jan 2026');
    assert.equal(utcStamp(now), '2025-06-14T14:02Z');
  });

  test('an IANA zone: its local time and its short name, summer and winter', () => {
    const t = new TimeText('Europe/Berlin');
    assert.equal(t.timeWithZone(now, now), '16:02 CEST');
    const winter = Date.UTC(2025, 0, 14, 14, 2);
    assert.equal(t.timeWithZone(winter, winter), '15:02 CET');
    assert.throws(() => new TimeText('Mars/Olympus'), RangeError);
  });
});
