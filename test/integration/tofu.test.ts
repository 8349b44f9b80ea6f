/**
 * Trust on first use against a real Synapse, with real E2EE clients (matrix-js-sdk + Rust crypto):
 * for a user without cross-signing, the first device is obeyed at once and silently; a further one
 * is refused with both ways to approve it, until `approve ID` from the first device (or the
 * operator's `trust verify`); a device cannot approve itself; approvals survive a restart. A
 * cross-signed user's second device, signed by their identity, is obeyed as before.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { App } from '../../src/app.ts';
import { startE2eeHuman, type E2eeHuman, type Message } from '../../src/dev/e2ee-human.ts';
import { DEPLOYMENT, NAMESPACE, startStack, type Stack } from '../../src/dev/stack.ts';
import { StateDb } from '../../src/store/state-db.ts';

const PASSWORD = 'tofu-password-1';
const ALLOWED = { ALLOWED_USERS: '@alice:localhost,@carol:localhost' };

describe('trust on first use for users without cross-signing, against a real Synapse', { timeout: 600_000 }, () => {
  let stack: Stack;
  let app: App | undefined;
  let bot: string;
  let room: string;
  /** alice's devices, none cross-signed: the first, the second (to be approved), the third (never approved by her). */
  let first: E2eeHuman;
  let second: E2eeHuman;
  let third: E2eeHuman;
  const people: E2eeHuman[] = [];

  const patches = (): number => stack.sim.requests.filter((r) => r.method === 'PATCH').length;
  const fromBot = (m: Message): boolean => m.sender === bot && m.relatesTo?.['rel_type'] !== 'm.replace'; // edits (progress) aside

  /** Sends `text` from `who` into `inRoom` and returns the bodies of the bot's next `replies` messages, as `reader` sees them. */
  async function command(who: E2eeHuman, text: string, replies: number, inRoom = room, reader = first): Promise<string[]> {
    const before = reader.messages(inRoom).filter(fromBot).length;
    await who.send(inRoom, text);
    const seen = await reader.waitForMessages(inRoom, fromBot, { count: before + replies, timeoutMs: 30_000 });
    return seen.slice(before).map((m) => m.body ?? '');
  }

  async function device(localpart: string, crossSign: boolean, register = false): Promise<E2eeHuman> {
    const login = register ? await stack.synapse.registerUser(localpart, PASSWORD) : await stack.synapse.login(localpart, PASSWORD);
    const person = await startE2eeHuman({ baseUrl: stack.synapse.baseUrl, ...login, password: PASSWORD, crossSign });
    people.push(person);
    return person;
  }

  /** A further device of alice's, in the room (it is her room already: it only has to see the members to send the key to the bot). */
  async function another(): Promise<E2eeHuman> {
    const d = await device('alice', false);
    await d.waitForMembership(room, bot);
    return d;
  }

  before(async () => {
    stack = await startStack({ dir: await mkdtemp(join(tmpdir(), 'openclaw-tofu-')) });
    ({ app } = await stack.startBot({ env: ALLOWED }));
    bot = app.userId;
    first = await device('alice', false, true);
  });

  after(async () => {
    for (const person of people) await person.stop().catch(() => undefined);
    await app?.stop().catch(() => undefined);
    await stack?.stop();
  });

  it("obeys the only device of a user without cross-signing at once, with no notice about it", async () => {
    room = await first.createEncryptedRoom([bot], { name: 'tofu', isDirect: true });
    await first.waitForMessages(room, fromBot, { timeoutMs: 30_000 }); // hello
    assert.deepEqual(await command(first, 'status', 2), ['🦞 status', 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.']);
    assert.deepEqual(first.messages(room).filter((m) => fromBot(m) && /New device|pinned/.test(m.body ?? '')), []);
  });

  it('refuses a second device, saying how to approve it both ways; it cannot approve itself', async () => {
    second = await another();
    const before = patches();
    const [refusal] = await command(second, 'start', 1);
    assert.equal(refusal,
      `🔒 Not running this: device ${second.deviceId} is a new device of @alice:localhost, not approved yet. I obey a further device of yours only once it is approved. ` +
      `To approve ${second.deviceId}, send "approve ${second.deviceId}" from a device of yours I already obey (${first.deviceId}), ` +
      `or ask the operator to run "openclaw-k8s-toggle-operator trust verify @alice:localhost ${second.deviceId}".`);
    const [self] = await command(second, `approve ${second.deviceId}`, 1);
    assert.match(self ?? '', new RegExp(`^🔒 Not approving ${second.deviceId}: a device cannot approve itself\\. To approve ${second.deviceId}, send "approve ${second.deviceId}" from`));
    assert.equal(patches(), before);
  });

  it('approve ID from the first device approves the second, which is then obeyed', async () => {
    assert.deepEqual(await command(first, `approve ${second.deviceId}`, 1), [`✅ Approved device ${second.deviceId} of @alice:localhost: I obey its commands from now on.`]);
    const before = patches();
    const started = await command(second, 'start', 2);
    assert.equal(started[0], '🦞 start');
    assert.match(started[1] ?? '', /Starting openclaw: replicas 0 → 1/);
    assert.equal(patches(), before + 1);
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
  });

  it('a third device cannot approve itself, nor another device; the operator can approve it (trust verify)', async () => {
    third = await another();
    const [self] = await command(third, `approve ${third.deviceId}`, 1);
    assert.match(self ?? '', new RegExp(`^🔒 Not approving ${third.deviceId}: a device cannot approve itself\\.`));
    const [other] = await command(third, `approve ${second.deviceId}`, 1);
    assert.match(other ?? '', new RegExp(`^🔒 Not approving ${second.deviceId}: this device \\(${third.deviceId}\\) is not approved itself`));
    const [refused] = await command(third, 'stop', 1);
    assert.match(refused ?? '', /^🔒 Not running this: device \S+ is a new device of @alice:localhost, not approved yet\./);
    assert.match(refused ?? '', new RegExp(`from a device of yours I already obey \\((${first.deviceId} or ${second.deviceId}|${second.deviceId} or ${first.deviceId})\\)`));
    assert.equal(stack.sim.replicas(NAMESPACE, DEPLOYMENT), 1);
    // As `openclaw-k8s-toggle-operator trust verify` queues it.
    const state = StateDb.open(join(stack.dir, 'bot-data'));
    state.addOperatorRequest('verify', '@alice:localhost', third.deviceId);
    state.close();
    const stopped = await command(third, 'stop', 2);
    assert.match(stopped[1] ?? '', /Stopping openclaw: replicas 1 → 0/);
  });

  it('keeps the approvals across a restart; a new device after it is refused', async () => {
    assert.ok(app);
    await app.stop();
    ({ app } = await stack.startBot({ env: ALLOWED }));
    await stack.waitForAppserviceUp();
    assert.match((await command(second, 'status', 2))[1] ?? '', /openclaw is/);
    const fourth = await another();
    assert.match((await command(fourth, 'status', 1))[0] ?? '', /^🔒 Not running this: device \S+ is a new device of @alice:localhost, not approved yet\./);
  });

  it('when no device the bot obeys is logged in any more, the refusal says only the operator can approve', async (t) => {
    const fifth = await another();
    // Logged out, not merely stopped: the homeserver deletes them and tells the bot alice's device list changed.
    for (const d of [first, second, third]) {
      await d.client.logout(true);
      await d.stop();
    }
    // The device-list change reaches the bot in its own transaction, which may come after the next message.
    let refusal = '';
    let attempts = 0;
    while (attempts < 5 && !/only the operator can approve/.test(refusal)) {
      attempts++;
      refusal = (await command(fifth, 'status', 1, room, fifth))[0] ?? '';
    }
    t.diagnostic(`refusals until the bot knew the devices were gone: ${attempts}`);
    assert.equal(refusal,
      `🔒 Not running this: device ${fifth.deviceId} is a new device of @alice:localhost, not approved yet. I obey a further device of yours only once it is approved. ` +
      `No device of yours that I obey is still logged in, so only the operator can approve ${fifth.deviceId}: ask them to run "openclaw-k8s-toggle-operator trust verify @alice:localhost ${fifth.deviceId}".`);
  });

  it("obeys a cross-signed user's second device signed by their identity, as before (no approval)", async () => {
    const carol = await device('carol', true, true);
    const carolRoom = await carol.createEncryptedRoom([bot], { name: 'carol', isDirect: true });
    await carol.waitForMessages(carolRoom, fromBot, { timeoutMs: 30_000 });
    assert.match((await command(carol, 'status', 2, carolRoom, carol))[1] ?? '', /openclaw is/);
    const phone = await device('carol', false);
    // Signed from the first session (which holds the identity's keys), as a person verifying a new session does.
    await carol.client.getCrypto()?.getUserDeviceInfo([carol.userId], true);
    await carol.client.getCrypto()?.crossSignDevice(phone.deviceId);
    for (let i = 0; i < 100 && !(await carol.deviceTrust(carol.userId, phone.deviceId)).signedByOwner; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await carol.deviceTrust(carol.userId, phone.deviceId)).signedByOwner, true);
    await phone.waitForMembership(carolRoom, bot);
    const answer = await command(phone, 'status', 2, carolRoom, carol);
    assert.equal(answer[0], '🦞 status');
    assert.match(answer[1] ?? '', /openclaw is/);
  });
});
