/**
 * Named points where something leaves the process (an encrypted message, room keys, a PATCH, an
 * acknowledgement). For crash tests only: `OPENCLAW_FAULT_POINT=<name>` (or `<name>:<n>` for the
 * n-th time it is reached) makes the process die there at once, as a kill -9 would, with no
 * chance to flush or clean up. Unset, each call is one comparison.
 */
export type FaultPoint =
  /** An event was claimed (durably), nothing done for it yet. */
  | 'after-claim'
  /** A room event was encrypted and the engine's state flushed; the ciphertext has not been sent. */
  | 'after-encrypt'
  /** A reply reached the homeserver; the event is not yet marked finished. */
  | 'after-send'
  /** To-device messages (room keys, Olm) reached the homeserver; the engine was not told yet. */
  | 'after-to-device'
  /** The scale PATCH was answered; its result is not recorded yet. */
  | 'after-patch'
  /** A batch in which the bot acted on an event is durable; the homeserver has not been answered (or the sync token saved) yet. */
  | 'before-ack'
  /** An edit of a start/stop reply (its progress) reached the homeserver; the message is still recorded as followed. */
  | 'after-edit';

const armed = parse(process.env['OPENCLAW_FAULT_POINT']);
let hits = 0;

function parse(value: string | undefined): { name: string; at: number } | undefined {
  if (!value) return undefined;
  const [name, at] = value.split(':');
  return { name: name ?? '', at: at ? Math.max(1, Number(at)) : 1 };
}

export function faultPoint(name: FaultPoint): void {
  if (armed?.name !== name) return;
  if (++hits < armed.at) return;
  process.stderr.write(`fault point ${name} reached: dying now (OPENCLAW_FAULT_POINT)\n`);
  process.kill(process.pid, 'SIGKILL');
}
