import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AppserviceSource } from '../../src/appservice/appservice-source.ts';
import type { Registration } from '../../src/appservice/registration.ts';
import { Health } from '../../src/health.ts';
import { startHttpServer, type HttpServer } from '../../src/http-server.ts';
import { Writable } from 'node:stream';
import { createLogger, silentLogger } from '../../src/log.ts';
import type { SyncBatch } from '../../src/matrix/batch.ts';
import { MatrixClient } from '../../src/matrix/client.ts';
import { Metrics } from '../../src/metrics.ts';

const HS_TOKEN = 'hs_token_for_tests_0123456789abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKL';
const registration: Registration = {
  id: 'openclaw-toggle',
  url: 'http://127.0.0.1:9000',
  asToken: 'as_token_for_tests_0123456789abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKL',
  hsToken: HS_TOKEN,
  senderLocalpart: 'bot',
};

/** Records the batches the pipeline would get; can be told to fail or to take its time. */
class Recorder {
  batches: SyncBatch[] = [];
  failNext = 0;
  delayMs = 0;
  stopping = false;

  readonly process = async (batch: SyncBatch): Promise<void> => {
    this.batches.push(batch);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('pipeline failed (test)');
    }
  };

  reset(): void {
    this.batches = [];
    this.failNext = 0;
    this.delayMs = 0;
    this.stopping = false;
  }
}

interface Running {
  readonly server: HttpServer;
  readonly base: string;
  readonly recorder: Recorder;
  readonly health: Health;
}

/** What the main server logged, one JSON object per line. */
const logLines: string[] = [];
const capture = new Writable({
  write(chunk: Buffer, _encoding, done) {
    logLines.push(...chunk.toString().split('\n').filter(Boolean));
    done();
  },
});

async function startServer(allowQueryToken: boolean): Promise<Running> {
  const logger = allowQueryToken ? silentLogger() : createLogger({ level: 'info' }, capture);
  const recorder = new Recorder();
  const health = new Health(['homeserver', 'kubernetes']);
  const source = new AppserviceSource({
    registration,
    allowQueryToken,
    client: new MatrixClient({ baseUrl: 'http://127.0.0.1:1', accessToken: registration.asToken, logger }),
    isStopping: () => recorder.stopping,
    logger,
  });
  source.attach({ device: { userId: '@bot:example.org', deviceId: undefined }, process: recorder.process });
  const server = await startHttpServer({
    bind: '127.0.0.1',
    port: 0,
    health,
    metrics: new Metrics({ defaultMetrics: false }),
    appservice: source.router(),
    logger,
  });
  return { server, base: `http://127.0.0.1:${server.port}`, recorder, health };
}

let main: Running;
let withQueryToken: Running;
let txnCounter = 0;

before(async () => {
  [main, withQueryToken] = await Promise.all([startServer(false), startServer(true)]);
});

after(async () => {
  await Promise.all([main.server.close(), withQueryToken.server.close()]);
});

beforeEach(() => {
  main.recorder.reset();
  withQueryToken.recorder.reset();
});

const auth = { authorization: `Bearer ${HS_TOKEN}` };

function event(id: string): Record<string, unknown> {
  return { event_id: id, room_id: '!room:example.org', sender: '@alice:example.org', type: 'm.room.message', origin_server_ts: Date.now(), content: { msgtype: 'm.text', body: 'status' } };
}

function nextTxn(): string {
  return `txn-${++txnCounter}`;
}

function put(txnId: string, body: unknown, headers: Record<string, string> = auth, base = main.base): Promise<Response> {
  return fetch(`${base}/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function expectError(response: Response, status: number, errcode: string): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  const body = JSON.parse(text) as { errcode?: unknown; error?: unknown };
  assert.equal(body.errcode, errcode, text);
  assert.equal(typeof body.error, 'string', text);
}

async function expectEmptyOk(response: Response): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, 200, text);
  assert.equal(text, '{}');
  assert.match(response.headers.get('content-type') ?? '', /application\/json/);
}

describe('appservice HTTP API: authentication', () => {
  test('no Authorization header: 401 M_MISSING_TOKEN', async () => {
    await expectError(await put(nextTxn(), { events: [] }, {}), 401, 'M_MISSING_TOKEN');
    await expectError(await fetch(`${main.base}/_matrix/app/v1/users/%40bot%3Aexample.org`), 401, 'M_MISSING_TOKEN');
    assert.equal(main.recorder.batches.length, 0);
  });

  test('an Authorization header that is not Bearer: 401 M_MISSING_TOKEN', async () => {
    await expectError(await put(nextTxn(), { events: [] }, { authorization: `Basic ${HS_TOKEN}` }), 401, 'M_MISSING_TOKEN');
  });

  test('a wrong token: 403 M_FORBIDDEN', async () => {
    await expectError(await put(nextTxn(), { events: [] }, { authorization: 'Bearer wrong' }), 403, 'M_FORBIDDEN');
    await expectError(await put(nextTxn(), { events: [] }, { authorization: `Bearer ${HS_TOKEN}x` }), 403, 'M_FORBIDDEN');
    await expectError(await put(nextTxn(), { events: [] }, { authorization: `Bearer ${registration.asToken}` }), 403, 'M_FORBIDDEN');
    assert.equal(main.recorder.batches.length, 0);
  });

  test('the Bearer scheme is case-insensitive', async () => {
    await expectEmptyOk(await put(nextTxn(), { events: [] }, { authorization: `bearer ${HS_TOKEN}` }));
  });

  test('?access_token= is refused unless allowQueryToken is set', async () => {
    const query = `access_token=${encodeURIComponent(HS_TOKEN)}`;
    const refused = await fetch(`${main.base}/_matrix/app/v1/transactions/${nextTxn()}?${query}`, { method: 'PUT', body: JSON.stringify({ events: [event('$q1')] }) });
    await expectError(refused, 401, 'M_MISSING_TOKEN');
    assert.equal(main.recorder.batches.length, 0);

    const accepted = await fetch(`${withQueryToken.base}/_matrix/app/v1/transactions/${nextTxn()}?${query}`, { method: 'PUT', body: JSON.stringify({ events: [event('$q2')] }) });
    await expectEmptyOk(accepted);
    assert.equal(withQueryToken.recorder.batches.length, 1);

    const wrong = await fetch(`${withQueryToken.base}/_matrix/app/v1/transactions/${nextTxn()}?access_token=wrong`, { method: 'PUT', body: JSON.stringify({ events: [] }) });
    await expectError(wrong, 403, 'M_FORBIDDEN');
  });
});

describe('appservice HTTP API: transactions', () => {
  test('a body that is not JSON: 400 M_NOT_JSON', async () => {
    await expectError(await put(nextTxn(), '{"events": [', auth), 400, 'M_NOT_JSON');
    await expectError(await put(nextTxn(), 'hello', auth), 400, 'M_NOT_JSON');
    assert.equal(main.recorder.batches.length, 0);
  });

  test('JSON without an events array: 400 M_BAD_JSON', async () => {
    await expectError(await put(nextTxn(), { ephemeral: [] }), 400, 'M_BAD_JSON');
    await expectError(await put(nextTxn(), [1, 2]), 400, 'M_BAD_JSON');
    assert.equal(main.recorder.batches.length, 0);
  });

  test('JSON nested deeper than any Matrix event: 400 M_BAD_JSON and a log line, never a silent 500', async () => {
    for (const depth of [100, 5_000, 100_000]) {
      const txnId = nextTxn();
      const body = `{"events": [{"event_id": "$deep", "content": ${'['.repeat(depth)}${']'.repeat(depth)}}]}`;
      const before = logLines.length;
      await expectError(await put(txnId, body), 400, 'M_BAD_JSON');
      const logged = logLines.slice(before).map((l) => JSON.parse(l) as { txn_id?: string; msg?: string });
      assert.ok(logged.some((l) => l.txn_id === txnId && /nested deeper/.test(l.msg ?? '')), `depth ${depth} logged`);
    }
    // A shallow, legitimate transaction still goes through.
    await expectEmptyOk(await put(nextTxn(), { events: [event('$shallow')] }));
    assert.equal(main.recorder.batches.length, 1);
  });

  test('a failure the pipeline did not log itself is logged here, with the transaction id', async () => {
    main.recorder.failNext = 1;
    const txnId = nextTxn();
    const before = logLines.length;
    await expectError(await put(txnId, { events: [event('$logged')] }), 500, 'M_UNKNOWN');
    assert.ok(logLines.slice(before).some((l) => (JSON.parse(l) as { txn_id?: string }).txn_id === txnId));
  });

  test('a body over 10 MiB: 413 M_TOO_LARGE', async () => {
    const big = JSON.stringify({ events: [], padding: 'x'.repeat(10 * 1024 * 1024) });
    await expectError(await put(nextTxn(), big), 413, 'M_TOO_LARGE');
    assert.equal(main.recorder.batches.length, 0);
  });

  test('a valid transaction: 200 with exactly {} and one batch processed', async () => {
    const txnId = nextTxn();
    await expectEmptyOk(await put(txnId, { events: [event('$one'), { junk: true }] }));
    assert.equal(main.recorder.batches.length, 1);
    const [batch] = main.recorder.batches;
    assert.equal(batch?.label, `txn ${txnId}`);
    assert.deepEqual(batch?.roomEvents.map((e) => e.event_id), ['$one']);
  });

  test('the largest legitimate transaction (100 events of 64 KiB): the long messages never reach the pipeline, the command does', async () => {
    const big = (id: string): Record<string, unknown> => ({ ...event(id), content: { msgtype: 'm.text', body: 'x'.repeat(64_000) } });
    const events = [...Array.from({ length: 99 }, (_, i) => big(`$big${i}`)), event('$command')];
    const txnId = nextTxn();
    await expectEmptyOk(await put(txnId, { events }));
    const [batch] = main.recorder.batches;
    assert.deepEqual(batch?.roomEvents.map((e) => e.event_id), ['$command']);
    assert.equal(batch?.oversized, 99);
    // A resend is still recognised by the hash of the bytes as they came.
    await expectEmptyOk(await put(txnId, { events }));
    assert.equal(main.recorder.batches.length, 1);
  });

  test('the same txnId with the same body is acknowledged again but not processed again', async () => {
    const txnId = nextTxn();
    const body = { events: [event('$same')] };
    await expectEmptyOk(await put(txnId, body));
    await expectEmptyOk(await put(txnId, body));
    assert.equal(main.recorder.batches.length, 1);
  });

  test('the same txnId with a different body is processed (Synapse restarts txn ids)', async () => {
    const txnId = nextTxn();
    await expectEmptyOk(await put(txnId, { events: [event('$before-restart')] }));
    await expectEmptyOk(await put(txnId, { events: [event('$after-restart')] }));
    assert.deepEqual(main.recorder.batches.map((b) => b.roomEvents[0]?.event_id), ['$before-restart', '$after-restart']);
  });

  test('two concurrent identical PUTs are processed once', async () => {
    main.recorder.delayMs = 150;
    const txnId = nextTxn();
    const body = { events: [event('$concurrent')] };
    const [a, b] = await Promise.all([put(txnId, body), put(txnId, body)]);
    await expectEmptyOk(a);
    await expectEmptyOk(b);
    assert.equal(main.recorder.batches.length, 1);
  });

  test('a failing pipeline answers 500, and the retry is processed', async () => {
    main.recorder.failNext = 1;
    const txnId = nextTxn();
    const body = { events: [event('$retry')] };
    await expectError(await put(txnId, body), 500, 'M_UNKNOWN');
    assert.equal(main.recorder.batches.length, 1);
    await expectEmptyOk(await put(txnId, body));
    assert.equal(main.recorder.batches.length, 2, 'the retry reached the pipeline');
    await expectEmptyOk(await put(txnId, body));
    assert.equal(main.recorder.batches.length, 2, 'and once acknowledged it is not processed again');
  });

  test('while stopping: 503, nothing processed', async () => {
    main.recorder.stopping = true;
    const txnId = nextTxn();
    await expectError(await put(txnId, { events: [event('$late')] }), 503, 'M_UNAVAILABLE');
    assert.equal(main.recorder.batches.length, 0);
    main.recorder.stopping = false;
    await expectEmptyOk(await put(txnId, { events: [event('$late')] }));
    assert.equal(main.recorder.batches.length, 1);
  });
});

describe('appservice HTTP API: start-up', () => {
  test('a transaction arriving while the bot is still starting is held, then processed', async () => {
    const logger = silentLogger();
    const recorder = new Recorder();
    const source = new AppserviceSource({
      registration,
      allowQueryToken: false,
      client: new MatrixClient({ baseUrl: 'http://127.0.0.1:1', accessToken: registration.asToken, logger }),
      isStopping: () => false,
      logger,
    });
    const server = await startHttpServer({ bind: '127.0.0.1', port: 0, health: new Health([]), metrics: new Metrics({ defaultMetrics: false }), appservice: source.router(), logger });
    try {
      let answered = false;
      const response = put('early', { events: [event('$early')] }, auth, `http://127.0.0.1:${server.port}`).then((r) => {
        answered = true;
        return r;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(answered, false, 'held until the bot is attached');
      assert.equal(recorder.batches.length, 0);
      source.attach({ device: { userId: '@bot:example.org', deviceId: 'DEV' }, process: recorder.process });
      await expectEmptyOk(await response);
      assert.equal(recorder.batches.length, 1);
      assert.equal(recorder.batches[0]?.roomEvents[0]?.event_id, '$early');
    } finally {
      await server.close();
    }
  });
});

describe('appservice HTTP API: queries and ping', () => {
  test('user query: the bot exists, nobody else', async () => {
    await expectEmptyOk(await fetch(`${main.base}/_matrix/app/v1/users/%40bot%3Aexample.org`, { headers: auth }));
    await expectEmptyOk(await fetch(`${main.base}/_matrix/app/v1/users/@bot:example.org`, { headers: auth }));
    await expectError(await fetch(`${main.base}/_matrix/app/v1/users/%40alice%3Aexample.org`, { headers: auth }), 404, 'M_NOT_FOUND');
    await expectError(await fetch(`${main.base}/_matrix/app/v1/users/%40bot%3Aother.org`, { headers: auth }), 404, 'M_NOT_FOUND');
  });

  test('room alias query: 404', async () => {
    await expectError(await fetch(`${main.base}/_matrix/app/v1/rooms/%23room%3Aexample.org`, { headers: auth }), 404, 'M_NOT_FOUND');
  });

  test('ping: 200 {}', async () => {
    await expectEmptyOk(await fetch(`${main.base}/_matrix/app/v1/ping`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ transaction_id: 'abc' }) }));
    await expectEmptyOk(await fetch(`${main.base}/_matrix/app/v1/ping`, { method: 'POST', headers: auth }));
    await expectError(await fetch(`${main.base}/_matrix/app/v1/ping`, { method: 'POST' }), 401, 'M_MISSING_TOKEN');
  });

  test('unknown paths under /_matrix: 404 M_UNRECOGNIZED', async () => {
    await expectError(await fetch(`${main.base}/_matrix/client/v3/sync`), 404, 'M_UNRECOGNIZED');
    await expectError(await fetch(`${main.base}/_matrix/app/v1/thirdparty/protocol/irc`, { headers: auth }), 404, 'M_UNRECOGNIZED');
    await expectError(await fetch(`${main.base}/_matrix/app/v1/transactions/1`, { headers: auth }), 404, 'M_UNRECOGNIZED');
  });
});

describe('health, readiness and metrics', () => {
  test('/health answers 200 at once', async () => {
    const response = await fetch(`${main.base}/health`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ok' });
  });

  test('/ready is 503 until every component is up, then 200', async () => {
    const health = main.health;
    const notReady = await fetch(`${main.base}/ready`);
    assert.equal(notReady.status, 503);
    const report = (await notReady.json()) as { ready: boolean; components: Record<string, { ok: boolean }> };
    assert.equal(report.ready, false);
    assert.deepEqual(Object.keys(report.components).sort(), ['homeserver', 'kubernetes']);

    health.set('homeserver', true, 'whoami ok');
    const half = await fetch(`${main.base}/ready`);
    await half.arrayBuffer();
    assert.equal(half.status, 503, 'one component is not enough');
    health.set('kubernetes', true, 'deployment found');
    const ready = await fetch(`${main.base}/ready`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as { ready: boolean }).ready, true);

    health.set('kubernetes', false, 'forbidden');
    const lost = await fetch(`${main.base}/ready`);
    await lost.arrayBuffer();
    assert.equal(lost.status, 503);
  });

  test('/metrics is Prometheus text with the bot counters', async () => {
    const response = await fetch(`${main.base}/metrics`);
    const text = await response.text();
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
    assert.ok(text.includes('openclaw_commands_total'), text);
    assert.ok(text.includes('# TYPE openclaw_commands_total counter'), text);
    assert.ok(!text.includes('process_cpu'), 'default metrics are off');
  });

  test('anything else: 404', async () => {
    const response = await fetch(`${main.base}/nope`);
    await response.arrayBuffer();
    assert.equal(response.status, 404);
  });
});

describe('appservice ping: a failure the evidence contradicts is not reported', () => {
  test("Synapse's ping fails (M_CONNECTION_FAILED) while its transactions arrive: no diagnosis; without a transaction: the diagnosis", async () => {
    const { createServer } = await import('node:http');
    // A homeserver whose ping endpoint says it could not reach the appservice, as Synapse does.
    const homeserver = createServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errcode: 'M_CONNECTION_FAILED', error: 'Could not connect to the appservice' }));
    });
    await new Promise<void>((resolve) => homeserver.listen(0, '127.0.0.1', resolve));
    const port = (homeserver.address() as { port: number }).port;
    const logger = silentLogger();
    const source = new AppserviceSource({
      registration,
      allowQueryToken: false,
      client: new MatrixClient({ baseUrl: `http://127.0.0.1:${port}`, accessToken: registration.asToken, logger }),
      isStopping: () => false,
      logger,
    });
    source.attach({ device: { userId: '@bot:example.org', deviceId: undefined }, process: async () => undefined });
    const server = await startHttpServer({ bind: '127.0.0.1', port: 0, health: new Health([]), metrics: new Metrics({ defaultMetrics: false }), appservice: source.router(), logger });
    try {
      assert.match((await source.ping()) ?? '', /Synapse cannot reach the bot .*M_CONNECTION_FAILED/);
      await expectEmptyOk(await put('delivered', { events: [event('$delivered')] }, auth, `http://127.0.0.1:${server.port}`));
      assert.equal(await source.ping(), undefined, 'Synapse has just delivered a transaction to this process');
    } finally {
      await server.close();
      await new Promise((resolve) => homeserver.close(resolve));
    }
  });
});
