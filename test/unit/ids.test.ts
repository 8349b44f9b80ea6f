import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configUserIdProblem, isEventId, isRoomId, isServerName, isUserId, parseUserId } from '../../src/matrix/ids.ts';

describe('Matrix identifier grammar', () => {
  test('user ids of today and of older accounts', () => {
    assert.deepEqual(parseUserId('@alice:example.org'), { localpart: 'alice', serverName: 'example.org', historical: false });
    assert.deepEqual(parseUserId('@a.b_c=d-e/f+g:localhost:8448'), { localpart: 'a.b_c=d-e/f+g', serverName: 'localhost:8448', historical: false });
    assert.equal(parseUserId('@Alice:example.org')?.historical, true);
    assert.equal(isUserId('@bob:[::1]:8008'), true);
    assert.equal(isUserId('@bob:127.0.0.1'), true);
  });

  test('refuses what is not a user id', () => {
    for (const bad of ['alice:example.org', '@:example.org', '@alice', '@alice:', '@al ice:localhost', '@alice:exa mple.org', '@alice:example.org:port', '@é:example.org', `@${'a'.repeat(260)}:x.org`, 42, null]) {
      assert.equal(isUserId(bad), false, String(bad));
    }
  });

  test('room and event ids, with and without a server part', () => {
    assert.equal(isRoomId('!abc:example.org'), true);
    assert.equal(isRoomId('!abcDEF123'), true); // room version 12
    assert.equal(isEventId('$abc/+_-'), true);
    for (const bad of ['', '!', 'abc:example.org', '!a b:example.org', '!\n', `!${'a'.repeat(300)}`, {}]) assert.equal(isRoomId(bad), false, String(bad));
    for (const bad of ['$', 'abc', '$a b']) assert.equal(isEventId(bad), false, bad);
  });

  test('server names', () => {
    assert.equal(isServerName('matrix.org'), true);
    assert.equal(isServerName('[2001:db8::1]:443'), true);
    assert.equal(isServerName('bad_host!'), false);
    assert.equal(isServerName('host:99999999'), false);
  });

  test('user ids in the configuration: today\'s grammar and upper-case letters, nothing else', () => {
    for (const good of ['@alice:example.org', '@Alice:example.org', '@a.b_c=d-e/f+g:localhost:8448', '@bob:[::1]:8008']) {
      assert.equal(configUserIdProblem(good), undefined, good);
    }
    const refused: Array<[string, RegExp]> = [
      ['@al ice:localhost', /no spaces/],
      ['@al\tice:localhost', /no spaces/],
      ['@<script>:localhost', /"<" is not allowed/],
      ['@a&b:localhost', /"&" is not allowed/],
      ['@a\'b:localhost', /"'" is not allowed/],
      ['@a"b:localhost', /"\\"" is not allowed/],
      ['@a\u0000b:localhost', /control characters/],
      ['alice:localhost', /starts with "@"/],
      ['@alice', /":server" part is missing/],
      ['@:localhost', /before ":" is empty/],
      ['@alice:exa mple.org', /no spaces/],
      ['@alice:bad_host!', /"bad_host!" is not a server name/],
      [`@${'a'.repeat(260)}:x.org`, /longer than 255 bytes/],
    ];
    for (const [id, reason] of refused) assert.match(configUserIdProblem(id) ?? 'accepted', reason, id);
    // What the homeserver may send is wider: these stay valid input from it.
    assert.equal(isUserId('@<script>:localhost'), true);
  });
});
