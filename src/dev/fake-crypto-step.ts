import type { CryptoStep } from '../crypto/crypto-step.ts';
import type { IncomingEvent } from '../matrix/incoming.ts';
import type { RoomEvent } from '../matrix/events.ts';

/**
 * A crypto step without crypto, for tests of what comes after it: events pass through as they are,
 * plaintext, or as if decrypted from the device `verdict` names (the trust policy's judgement).
 */
export function passThroughCrypto(verdict?: (event: RoomEvent) => IncomingEvent['senderDevice']): CryptoStep {
  return {
    process: async (b) => ({
      events: b.roomEvents.map((event) => {
        const device = verdict?.(event);
        return device ? { event, encrypted: true, senderDevice: device } : { event, encrypted: false };
      }),
      notices: [],
    }),
    hasPending: () => false,
    prepareSend: async (_room, type, content) => ({ type, content }),
    flush: async () => undefined,
    close: async () => undefined,
  };
}
