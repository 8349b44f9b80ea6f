import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { HomeserverHttp } from '../../src/matrix/http.ts';

/**
 * A raw server that answers the first request on each connection and resets the connection when
 * a second request arrives on it: a kept-alive connection closed by the far side as a request goes out.
 */
async function resettingServer(): Promise<{ url: string; requests: string[]; close: () => void }> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    let served = 0;
    socket.on('data', (chunk) => {
      requests.push(chunk.toString().split('\r\n')[0] ?? '');
      if (served++ === 0) socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n{}');
      else socket.resetAndDestroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, close: () => { for (const s of sockets) s.destroy(); server.close(); } };
}

const http = new HomeserverHttp();
after(() => http.close());

test('an idempotent request reset on a reused connection goes once more on a new one', async () => {
  const server = await resettingServer();
  try {
    const call = { method: 'GET', url: new URL(`${server.url}/x`), headers: {}, timeoutMs: 5_000 };
    assert.equal((await http.send(call)).status, 200);
    assert.equal((await http.send(call)).status, 200);
    assert.deepEqual(server.requests, ['GET /x HTTP/1.1', 'GET /x HTTP/1.1', 'GET /x HTTP/1.1']);
  } finally {
    server.close();
  }
});

test('a POST reset on a reused connection is not sent again: the error reaches the caller', async () => {
  const server = await resettingServer();
  try {
    const call = { method: 'POST', url: new URL(`${server.url}/y`), headers: {}, body: '{}', timeoutMs: 5_000 };
    assert.equal((await http.send(call)).status, 200);
    await assert.rejects(http.send(call), (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET');
    assert.deepEqual(server.requests.map((r) => r.split(' ')[0]), ['POST', 'POST']);
  } finally {
    server.close();
  }
});

test('no answer within the deadline: a TimeoutError; an abort ends the request with its reason', async () => {
  const silent = createServer(() => undefined);
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/z`);
  try {
    await assert.rejects(http.send({ method: 'GET', url, headers: {}, timeoutMs: 100 }), (e: Error) => e.name === 'TimeoutError');
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error('stopping')), 50);
    await assert.rejects(http.send({ method: 'GET', url, headers: {}, timeoutMs: 5_000, signal: abort.signal }), /stopping/);
  } finally {
    silent.close();
  }
});
