import type { SyncBatch } from '../matrix/batch.ts';
import type { IncomingEvent, Notice } from '../matrix/incoming.ts';

export type { Notice };

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
export interface ProcessedBatch {
  readonly events: IncomingEvent[];
  readonly notices: Notice[];
}

export interface CryptoStep {
  process(batch: SyncBatch): Promise<ProcessedBatch>;
  /** True while events wait for something (room keys) that a later run may bring, even an empty one. */
  hasPending(): boolean;
  /** Encrypts for the room when the room is encrypted. */
  prepareSend(roomId: string, type: string, content: Record<string, unknown>): Promise<Outgoing>;
  /** Makes every change so far durable; called before a batch is acknowledged. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
