/**
 * The E2EE human (matrix-js-sdk + Rust crypto) against a real Synapse: two people in an encrypted
 * room, cross-signing as others see it, an unsigned second device, and an undecryptable event.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSynapse, type Synapse } from '../../src/dev/synapse.ts';
import { startE2eeHuman, type E2eeHuman } from '../../src/dev/e2ee-human.ts';

describe('E2EE human (matrix-js-sdk, Rust crypto)', { timeout: 5 * 60_000 }, () => {
  let dir: string;
  let synapse: Synapse;
  const humans: E2eeHuman[] = [];
  let alice: E2eeHuman;
  let bob: E2eeHuman;
  let roomId: string;

  const start = async (login: { userId: string; accessToken: string; deviceId: string }, password: string, crossSign = true): Promise<E2eeHuman> => {
    const h = await startE2eeHuman({ baseUrl: synapse.baseUrl, ...login, password, crossSign });
    humans.push(h);
    return h;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'e2ee-human-'));
    synapse = await startSynapse({ dir });
    const [a, b] = await Promise.all([synapse.registerUser('alice', 'alice-pw'), synapse.registerUser('bob', 'bob-pw')]);
    [alice, bob] = await Promise.all([start(a, 'alice-pw'), start(b, 'bob-pw')]);
  });

  after(async () => {
    for (const h of humans) await h.stop().catch(() => undefined);
    await synapse?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exchanges an encrypted message in a new encrypted DM', async () => {
    roomId = await alice.createEncryptedRoom([bob.userId], { name: 'e2ee test' });
    await bob.join(roomId);
    await alice.waitForMembership(roomId, bob.userId);
    const eventId = await alice.send(roomId, 'hello');
    const [m] = await bob.waitForMessages(roomId, (x) => x.eventId === eventId && x.body === 'hello');
    assert.equal(m?.encrypted, true);
    assert.equal(m?.decryptionFailed, false);
    assert.equal(m?.sender, alice.userId);
    assert.equal(m?.msgtype, 'm.text');
    assert.equal(m?.senderDeviceId, alice.deviceId);
    // and back
    const reply = await bob.send(roomId, 'hi alice');
    const [r] = await alice.waitForMessages(roomId, (x) => x.eventId === reply);
    assert.equal(r?.body, 'hi alice');
    assert.equal(r?.encrypted, true);
  });

  it("sees the other user's device as signed by its owner", async () => {
    const trust = await bob.deviceTrust(alice.userId, alice.deviceId);
    assert.equal(trust.known, true);
    assert.equal(trust.signedByOwner, true);
    assert.equal(trust.crossSigningVerified, false); // bob has not verified alice's identity
    assert.match(trust.ed25519 ?? '', /^[A-Za-z0-9+/]{43}$/);
  });

  it('sees a second, unsigned device of the same user as known but not signed by its owner', async () => {
    const login = await synapse.login('alice', 'alice-pw');
    assert.notEqual(login.deviceId, alice.deviceId);
    const alice2 = await start(login, 'alice-pw', false);
    const trust = await bob.deviceTrust(alice.userId, alice2.deviceId);
    assert.deepEqual({ known: trust.known, signedByOwner: trust.signedByOwner }, { known: true, signedByOwner: false });
    // The identity was left alone: the first device is still signed by it.
    assert.equal((await bob.deviceTrust(alice.userId, alice.deviceId)).signedByOwner, true);
    // alice2 joined the room as the same user; messages from it still decrypt for bob.
    const eventId = await alice2.send(roomId, 'from the second device');
    const [m] = await bob.waitForMessages(roomId, (x) => x.eventId === eventId && x.body === 'from the second device');
    assert.equal(m?.encrypted, true);
    assert.equal(m?.senderDeviceId, alice2.deviceId);
  });

  it('unknown devices that are not cross-signed are unknown to deviceTrust', async () => {
    const trust = await bob.deviceTrust(alice.userId, 'NOSUCHDEVICE');
    assert.deepEqual(trust, { known: false, signedByOwner: false, crossSigningVerified: false, ed25519: undefined });
  });

  it('replaces the identity only when asked to', async () => {
    const login = await synapse.login('alice', 'alice-pw');
    await assert.rejects(
      startE2eeHuman({ baseUrl: synapse.baseUrl, ...login, password: 'alice-pw' }),
      /already has a cross-signing identity/,
    );
    // A device's keys live only in the in-memory store of the human that uploaded them: a device
    // cannot be taken over by a new human (the rejected attempt above already uploaded keys).
    await assert.rejects(
      startE2eeHuman({ baseUrl: synapse.baseUrl, ...login, password: 'alice-pw', replaceIdentity: true }),
      /already has keys on the server/,
    );
    const login3 = await synapse.login('alice', 'alice-pw');
    const alice3 = await startE2eeHuman({ baseUrl: synapse.baseUrl, ...login3, password: 'alice-pw', replaceIdentity: true });
    humans.push(alice3);
    assert.equal((await bob.deviceTrust(alice.userId, alice3.deviceId)).signedByOwner, true);
    // The old identity's signature no longer counts: alice's first device is now unsigned.
    assert.equal((await bob.deviceTrust(alice.userId, alice.deviceId)).signedByOwner, false);
  });

  it('sends an event nobody can decrypt', async () => {
    const eventId = await alice.sendUndecryptable(roomId);
    const [m] = await bob.waitForMessages(roomId, (x) => x.eventId === eventId && x.decryptionFailed);
    assert.equal(m?.encrypted, true);
    assert.equal(m?.sender, alice.userId);
    // It comes from a throwaway device of alice's whose room key nobody ever got.
    assert.match(m?.senderDeviceId ?? '', /^GHOST/);
    assert.equal(m?.decryptionFailureReason, 'MEGOLM_UNKNOWN_INBOUND_SESSION_ID');
  });
});
