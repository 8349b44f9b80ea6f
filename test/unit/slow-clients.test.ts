import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { AppserviceSource } from '../../src/appservice/appservice-source.ts';
import type { Registration } from '../../src/appservice/registration.ts';
import { Health } from '../../src/health.ts';
import { startHttpServer, type HttpServer } from '../../src/http-server.ts';
import { silentLogger } from '../../src/log.ts';
import type { SyncBatch } from '../../src/matrix/batch.ts';
import { MatrixClient } from '../../src/matrix/client.ts';
import { Metrics } from '../../src/metrics.ts';
import { SLOW_CLIENT_LIMITS } from '../../src/slow-clients.ts';

const HS_TOKEN = 'hs_token_for_slow_client_tests_0123456789abcdefghijklmnopqrstuvwxyz';
const registration: Registration = {
  id: 'openclaw-toggle',
  url: 'http://127.0.0.1:9000',
  asToken: 'as_token_for_slow_client_tests_0123456789abcdefghijklmnopqrstuvwxyz',
  hsToken: HS_TOKEN,
  senderLocalpart: 'bot',
};

/** Limits short enough for a test; production uses SLOW_CLIENT_LIMITS. */
const LIMIT_MS = 400;

let server: HttpServer;
let batches: SyncBatch[] = [];
let processMs = 0;

before(async () => {
  const logger = silentLogger();
  const source = new AppserviceSource({
    registration,
    allowQueryToken: false,
    client: new MatrixClient({ baseUrl: 'http://127.0.0.1:1', accessToken: registration.asToken, logger }),
    isStopping: () => false,
    logger,
  });
  source.attach({
    device: { userId: '@bot:example.org', deviceId: undefined },
    process: async (batch) => {
      batches.push(batch);
      await new Promise((resolve) => setTimeout(resolve, processMs));
    },
  });
  server = await startHttpServer({
    bind: '127.0.0.1',
    port: 0,
    health: new Health(['homeserver', 'kubernetes']),
    metrics: new Metrics({ defaultMetrics: false }),
    appservice: source.router(),
    logger,
    slowClients: { headersMs: LIMIT_MS, bodyMs: LIMIT_MS },
  });
});

after(async () => {
  await server.close();
});

interface RawConnection {
  readonly socket: Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves with the time from connecting to the server closing the connection. */
  readonly closed: Promise<number>;
}

function open(): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let text = '';
    const socket = connect(server.port, '127.0.0.1');
    const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now() - started)));
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.once('error', reject);
    socket.once('connect', () => resolve({ socket, received: () => text, closed }));
  });
}

function transactionHead(txnId: string, length: number, auth = true): string {
  return `PUT /_matrix/app/v1/transactions/${txnId} HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n${auth ? `Authorization: Bearer ${HS_TOKEN}\r\n` : ''}Content-Length: ${length}\r\n\r\n`;
}

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The connection must be dropped soon after the limit, not kept for minutes. */
function assertDroppedInTime(ms: number): void {
  assert.ok(ms >= LIMIT_MS - 50, `dropped after ${ms} ms, before the limit`);
  assert.ok(ms < LIMIT_MS + 1500, `dropped after ${ms} ms`);
}

describe('slow and stalled HTTP clients are dropped within the limits', () => {
  test('a transaction that announces 1000 bytes and sends 10', async () => {
    batches = [];
    const conn = await open();
    conn.socket.write(transactionHead('stall-1', 1000) + '{"events":');
    assertDroppedInTime(await conn.closed);
    assert.equal(batches.length, 0);
  });

  test('the same without a token: answered 401 at once, and the connection still dropped', async () => {
    const conn = await open();
    conn.socket.write(transactionHead('stall-2', 1000, false) + '0123456789');
    assertDroppedInTime(await conn.closed);
    assert.match(conn.received(), /^HTTP\/1\.1 401 /);
  });

  test('headers that never end', async () => {
    const conn = await open();
    conn.socket.write('GET /ready HTTP/1.1\r\nHost: bot\r\n');
    assertDroppedInTime(await conn.closed);
  });

  test('a connection that sends nothing', async () => {
    const conn = await open();
    assertDroppedInTime(await conn.closed);
  });

  test('a body trickled a byte at a time is dropped at the limit, not when it goes quiet', async () => {
    const conn = await open();
    conn.socket.write(transactionHead('stall-3', 1000));
    const trickle = setInterval(() => conn.socket.writable && conn.socket.write(' '), LIMIT_MS / 8);
    try {
      assertDroppedInTime(await conn.closed);
    } finally {
      clearInterval(trickle);
    }
  });
});

describe('what must keep working', () => {
  test('keep-alive: a connection idle for longer than the limits serves the next request', async () => {
    batches = [];
    const conn = await open();
    const body = JSON.stringify({ events: [] });
    conn.socket.write(transactionHead('keep-1', Buffer.byteLength(body)) + body);
    await wait(LIMIT_MS * 3);
    conn.socket.write(transactionHead('keep-2', Buffer.byteLength(body)) + body);
    await wait(300);
    assert.equal(conn.received().match(/HTTP\/1\.1 200 /g)?.length, 2, conn.received());
    assert.equal(conn.socket.destroyed, false, 'still open');
    assert.equal(batches.length, 2);
    conn.socket.destroy();
  });

  test('a transaction whose processing takes longer than the limits is answered', async () => {
    processMs = LIMIT_MS * 3;
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/_matrix/app/v1/transactions/slow-1`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${HS_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ events: [] }),
      });
      assert.equal(response.status, 200);
      assert.equal(await response.text(), '{}');
    } finally {
      processMs = 0;
    }
  });

  test('production limits: seconds, and Node\'s own limits set as a backstop; keep-alive 65 s', async () => {
    assert.ok(SLOW_CLIENT_LIMITS.headersMs <= 10_000 && SLOW_CLIENT_LIMITS.bodyMs <= 10_000, JSON.stringify(SLOW_CLIENT_LIMITS));
    const plain = await startHttpServer({ bind: '127.0.0.1', port: 0, health: new Health([]), metrics: new Metrics({ defaultMetrics: false }), logger: silentLogger() });
    try {
      assert.equal(plain.server.keepAliveTimeout, 65_000);
      assert.ok(plain.server.headersTimeout > 0 && plain.server.headersTimeout <= 30_000, String(plain.server.headersTimeout));
      assert.ok(plain.server.requestTimeout > 0 && plain.server.requestTimeout <= 60_000, String(plain.server.requestTimeout));
      assert.ok(plain.server.keepAliveTimeout > SLOW_CLIENT_LIMITS.headersMs, 'idle keep-alive is not cut by the header limit');
    } finally {
      await plain.close();
    }
  });
});
