/**
 * A pass-through HTTP proxy between the bot and Synapse that notes when each of the bot's
 * `PUT …/send/…` requests arrived and when Synapse answered it: the bot's side of "reply sent",
 * measured from outside the process, without reading (or being able to read) the encrypted content.
 */
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SendRecord {
  /** performance.now() when the request line arrived at the proxy, and when Synapse's answer came back. */
  readonly arrivedAt: number;
  answeredAt: number;
  readonly path: string;
  status: number;
}

export interface RecordingProxy {
  readonly url: string;
  readonly sends: SendRecord[];
  /** Every other request of the bot's (method, path, when it arrived): what went out between a PATCH and its reply. */
  readonly others: Array<{ readonly at: number; readonly what: string }>;
  close(): Promise<void>;
}

const SEND = /^\/_matrix\/client\/v3\/rooms\/[^/]+\/send\//;

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const upstream = new URL(target);
  const agent = new Agent({ keepAlive: true });
  const sends: SendRecord[] = [];
  const others: Array<{ at: number; what: string }> = [];
  const server: Server = createServer((req, res) => {
    const record: SendRecord | undefined = req.method === 'PUT' && SEND.test(req.url ?? '')
      ? { arrivedAt: performance.now(), answeredAt: NaN, path: req.url ?? '', status: 0 }
      : undefined;
    if (record) sends.push(record);
    else others.push({ at: performance.now(), what: `${req.method} ${(req.url ?? '').split('?')[0]}` });
    const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host }, agent }, (answer) => {
      if (record) {
        record.status = answer.statusCode ?? 0;
        answer.once('end', () => (record.answeredAt = performance.now()));
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sends,
    others,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
