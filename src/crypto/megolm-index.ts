/**
 * Reads the message index out of a Megolm ciphertext without decrypting it, so that a test can
 * see, as an outsider would, whether a sender ever used one (session, index) pair twice, and the
 * crypto step how far its own session has advanced (room-key-sharing.ts).
 * Format (Olm spec, "Megolm message format"): version byte 0x03, then protobuf-style fields:
 * tag 0x08 with the message index as a varint, tag 0x12 with the ciphertext; then MAC and signature.
 */
export function megolmMessageIndex(ciphertext: string): number | undefined {
  let bytes: Buffer;
  try {
    bytes = Buffer.from(ciphertext, 'base64');
  } catch {
    return undefined;
  }
  if (bytes.length < 3 || bytes[0] !== 0x03 || bytes[1] !== 0x08) return undefined;
  let index = 0;
  for (let i = 2, shift = 0; i < bytes.length && shift < 35; i++, shift += 7) {
    const b = bytes[i] as number;
    index += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return index;
  }
  return undefined;
}

/** The Megolm session and message index of an `m.room.encrypted` content, if it is Megolm. */
export function megolmIdentity(content: Record<string, unknown>): { sessionId: string; index: number } | undefined {
  if (content['algorithm'] !== 'm.megolm.v1.aes-sha2') return undefined;
  const { session_id: sessionId, ciphertext } = content as { session_id?: unknown; ciphertext?: unknown };
  if (typeof sessionId !== 'string' || typeof ciphertext !== 'string') return undefined;
  const index = megolmMessageIndex(ciphertext);
  return index === undefined ? undefined : { sessionId, index };
}
