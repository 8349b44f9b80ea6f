import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { classify } from '../../src/failure.ts';
import { MatrixError } from '../../src/matrix/client.ts';

const matrix = (status: number, errcode = 'M_X'): MatrixError => new MatrixError({ errcode, status, method: 'POST', path: '/x', message: 'x' });
const errno = (code: string): Error => Object.assign(new Error(code), { code });

describe('classify: retry the batch, or skip the event', () => {
  test('the homeserver unavailable, rate limiting or an unknown token: transient', () => {
    for (const status of [0, 429, 500, 502, 503, 504, 401]) assert.equal(classify(matrix(status)).transient, true, String(status));
  });

  test('any other 4xx from the homeserver: permanent, with the status as reason', () => {
    assert.deepEqual(classify(matrix(403, 'M_FORBIDDEN')), { transient: false, reason: 'homeserver-403' });
    for (const status of [400, 404, 413]) assert.equal(classify(matrix(status)).transient, false, String(status));
  });

  test('a full or read-only disk, and SQLite errors: transient', () => {
    for (const code of ['ENOSPC', 'EROFS', 'EIO', 'EDQUOT']) assert.deepEqual(classify(errno(code)), { transient: true, reason: 'storage' });
    assert.equal(classify(errno('ERR_SQLITE_ERROR')).reason, 'storage');
    // As the crypto engine reports it: its own error, the disk's underneath.
    assert.deepEqual(classify(new Error('the store could not commit', { cause: errno('ENOSPC') })), { transient: true, reason: 'storage' });
  });

  test('anything unknown is retried (the backstop bounds how long)', () => {
    assert.deepEqual(classify(new Error('surprise')), { transient: true, reason: 'unexpected' });
    assert.deepEqual(classify('a string'), { transient: true, reason: 'unexpected' });
  });
});
