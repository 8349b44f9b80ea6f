// Moved to src/crypto (the crypto step reads its own message indexes); kept here for the tests and tools that import it.
export { megolmIdentity, megolmMessageIndex } from '../crypto/megolm-index.ts';
