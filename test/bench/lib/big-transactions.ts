/**
 * The core of the big-transactions memory check (issue 10, item 4): the largest transactions
 * Synapse legitimately sends (100 events of ~64 KiB: its caps per transaction and per event),
 * PUT straight to the bot, while the bot's VmRSS and VmHWM are sampled every 100 ms; then a
 * normal command, plaintext and encrypted, must still reach the Kubernetes API.
 *
 * Each transaction mixes four kinds of event, a quarter each: plaintext m.room.message and
 * m.room.encrypted, from an allowed and from a not-allowed sender. The encrypted ones come from
 * in-memory senders whose room keys travel in the same transactions (a new Megolm session every
 * 100 messages), so the final encrypted command decrypts only if those keys were ingested.
 */
import { cpuMs, ProcSampler, procStatus } from './bot-child.ts';
import type { RawSender } from './raw-sender.ts';

export interface BigTransactionsOptions {
  /** PUTs one transaction body to the bot's `/_matrix/app/v1/transactions/…`; rejects unless 200. */
  readonly put: (body: string) => Promise<void>;
  /** The bot's process, sampled every 100 ms. */
  readonly pid: number;
  /** Allowed and not-allowed senders, both in `encryptedRoom` (the bot too). */
  readonly allowed: RawSender;
  readonly notAllowed: RawSender;
  readonly encryptedRoom: string;
  /** A plaintext room the bot is in: the plaintext events go there. */
  readonly plainRoom: string;
  /** `start` or `stop`, whichever changes the Deployment now (with the bot's prefix, if any). */
  readonly nextCommand: () => string;
  /** Resolves when the simulated API next sees a scale PATCH; rejects after `timeoutMs`. */
  readonly nextScale: (timeoutMs: number) => Promise<unknown>;
  readonly transactions?: number;
  readonly eventsPerTransaction?: number;
  /** Size of each event's JSON, roughly (Synapse refuses events over 65,536 bytes). */
  readonly eventBytes?: number;
  /** Idle time after the last transaction before "RSS after" is read. */
  readonly settleMs?: number;
  readonly say?: (line: string) => void;
}

export interface BigTransactionsResult {
  readonly transactions: number;
  readonly events: number;
  /** Mean transaction body size. */
  readonly bodyMiB: number;
  /** Median RSS over the second before the first transaction. */
  readonly rssBeforeMiB: number;
  /** Highest RSS sampled during the transactions. */
  readonly peakSampledMiB: number;
  /** VmHWM at the end: the process's peak since it started (catches spikes between samples). */
  readonly hwmMiB: number;
  /** VmHWM before the first transaction (start-up's own peak). */
  readonly hwmBeforeMiB: number;
  /** Median RSS over the last second of the idle time after the transactions. */
  readonly rssAfterMiB: number;
  readonly wallMs: number;
  /** The bot's CPU time (user + system) per transaction. */
  readonly botCpuMsPerTransaction: number;
  /** PUT → 200, per transaction. */
  readonly perTransactionMs: { readonly p50: number; readonly max: number };
  /** PUT → scale PATCH of a normal command sent afterwards (NaN if it never came). */
  readonly commandMs: { readonly plaintext: number; readonly encrypted: number };
  /** True when the encrypted command's room key had come in a big transaction (not with the command). */
  readonly commandKeyFromBigTransaction: boolean;
}

type Json = Record<string, unknown>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mib = (kib: number): number => Math.round((kib / 1024) * 10) / 10;
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

/** Text of `chars` characters that varies per event (compressible or not, it is all the same to the bot). */
function filler(chars: number, seed: string): string {
  const unit = `${seed} lorem ipsum dolor sit amet, consectetur adipiscing elit; `;
  return unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars);
}

export async function runBigTransactions(o: BigTransactionsOptions): Promise<BigTransactionsResult> {
  const txns = o.transactions ?? 60;
  const perTxn = o.eventsPerTransaction ?? 100;
  const eventBytes = o.eventBytes ?? 63 * 1024;
  const say = o.say ?? (() => undefined);
  const runId = `${process.pid}-${Date.now()}`;
  let seq = 0;
  const roomEvent = (roomId: string, sender: string, type: string, content: Json): Json => ({
    event_id: `$big-${runId}-${++seq}`, room_id: roomId, sender, type, origin_server_ts: Date.now(), content, unsigned: { age: 0 },
  });
  // Sizes: the plaintext body fills the event; the encrypted plaintext is sized so that its
  // base64 ciphertext (4/3 of it, plus the Megolm framing) fills the event.
  const plainChars = eventBytes - 400;
  const encryptedChars = Math.floor((eventBytes - 600) * 0.75) - 300;

  const build = async (t: number): Promise<string> => {
    const events: Json[] = [];
    for (let i = 0; i < perTxn; i++) {
      const kind = i % 4;
      const text = filler(kind < 2 ? plainChars : encryptedChars, `${t}.${i}`);
      if (kind === 0) events.push(roomEvent(o.plainRoom, o.allowed.userId, 'm.room.message', { msgtype: 'm.text', body: text }));
      else if (kind === 1) events.push(roomEvent(o.plainRoom, o.notAllowed.userId, 'm.room.message', { msgtype: 'm.text', body: text }));
      else {
        const sender = kind === 2 ? o.allowed : o.notAllowed;
        events.push(roomEvent(o.encryptedRoom, sender.userId, 'm.room.encrypted', await sender.encryptText(o.encryptedRoom, text)));
      }
    }
    const toDevice = [...o.allowed.takeToDevice(), ...o.notAllowed.takeToDevice()];
    return JSON.stringify({ events, ...(toDevice.length > 0 ? { 'de.sorunome.msc2409.to_device': toDevice } : {}) });
  };

  const sampler = new ProcSampler(o.pid);
  sampler.phase = 'before';
  await sleep(1000);
  const hwmBefore = procStatus(o.pid)?.hwmKiB ?? NaN;
  sampler.phase = 'big';
  const per: number[] = [];
  let bytes = 0;
  const started = performance.now();
  const cpu0 = cpuMs(o.pid);
  // The next body is built while the bot works on the current one: the bot, not the sender, is measured.
  let next = build(0);
  for (let t = 0; t < txns; t++) {
    const body = await next;
    next = t + 1 < txns ? build(t + 1) : Promise.resolve('');
    bytes += body.length;
    const t0 = performance.now();
    await o.put(body);
    per.push(performance.now() - t0);
    if ((t + 1) % 10 === 0) say(`${t + 1}/${txns} transactions; RSS ${mib(sampler.samples.at(-1)?.rssKiB ?? NaN)} MiB`);
  }
  await next;
  const wallMs = performance.now() - started;
  const botCpuMs = cpuMs(o.pid) - cpu0;

  sampler.phase = 'settle';
  await sleep(o.settleMs ?? 5000);
  sampler.phase = 'after';
  await sleep(1000);
  sampler.phase = 'command';

  const command = async (kind: 'plaintext' | 'encrypted'): Promise<{ ms: number; keyInline: boolean }> => {
    const word = o.nextCommand();
    let body: Json;
    let keyInline = false;
    if (kind === 'plaintext') {
      body = { events: [roomEvent(o.plainRoom, o.allowed.userId, 'm.room.message', { msgtype: 'm.text', body: word })] };
    } else {
      const content = await o.allowed.encryptText(o.encryptedRoom, word);
      const toDevice = o.allowed.takeToDevice();
      keyInline = toDevice.length > 0;
      body = { events: [roomEvent(o.encryptedRoom, o.allowed.userId, 'm.room.encrypted', content)], ...(keyInline ? { 'de.sorunome.msc2409.to_device': toDevice } : {}) };
    }
    const scaled = o.nextScale(20_000);
    const t0 = performance.now();
    await o.put(JSON.stringify(body));
    const ok = await scaled.then(() => true, (error: unknown) => {
      say(`${kind} command after the big transactions: ${String(error)}`);
      return false;
    });
    return { ms: ok ? Math.round(performance.now() - t0) : NaN, keyInline };
  };
  const plain = await command('plaintext');
  const encrypted = await command('encrypted');
  sampler.stop();

  const of = (phase: string): number[] => sampler.samples.filter((s) => s.phase === phase).map((s) => s.rssKiB);
  const sortedPer = [...per].sort((a, b) => a - b);
  return {
    transactions: txns,
    events: txns * perTxn,
    bodyMiB: Math.round((bytes / txns / 2 ** 20) * 100) / 100,
    rssBeforeMiB: mib(median(of('before'))),
    peakSampledMiB: mib(Math.max(...of('big'), ...of('settle'))),
    hwmMiB: mib(procStatus(o.pid)?.hwmKiB ?? Math.max(...sampler.samples.map((s) => s.hwmKiB))),
    hwmBeforeMiB: mib(hwmBefore),
    rssAfterMiB: mib(median(of('after'))),
    wallMs: Math.round(wallMs),
    botCpuMsPerTransaction: Math.round(botCpuMs / txns),
    perTransactionMs: { p50: Math.round(median(per)), max: Math.round(sortedPer.at(-1) ?? NaN) },
    commandMs: { plaintext: plain.ms, encrypted: encrypted.ms },
    commandKeyFromBigTransaction: !encrypted.keyInline,
  };
}
