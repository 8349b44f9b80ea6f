import type { SyncBatch } from '../matrix/batch.ts';
import type { IncomingEvent } from '../matrix/incoming.ts';

/** An event ready to send: the plaintext one, or its `m.room.encrypted` wrapping. */
export interface Outgoing {
  readonly type: string;
  readonly content: Record<string, unknown>;
}

/**
 * The crypto step of the pipeline. Per batch, in this order: feed the key material (to-device,
 * device lists, key counts) to the engine, then decrypt the room events; the order matters
 * because a batch's room keys usually arrive in the same batch as the messages they unlock.
 */
export interface CryptoStep {
  process(batch: SyncBatch): Promise<IncomingEvent[]>;
  /** Encrypts for the room when the room is encrypted. */
  prepareSend(roomId: string, type: string, content: Record<string, unknown>): Promise<Outgoing>;
  /** Makes every change so far durable; called before a batch is acknowledged. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** No encryption: room events pass through; encrypted ones are reported as undecryptable. */
export class PlaintextOnly implements CryptoStep {
  async process(batch: SyncBatch): Promise<IncomingEvent[]> {
    return batch.roomEvents.map((event) =>
      event.type === 'm.room.encrypted'
        ? { event, encrypted: true, decryptionFailure: { reason: 'other' as const, message: 'encryption is not enabled in this bot' } }
        : { event, encrypted: false },
    );
  }

  async prepareSend(_roomId: string, type: string, content: Record<string, unknown>): Promise<Outgoing> {
    return { type, content };
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}
