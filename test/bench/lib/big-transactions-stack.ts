/**
 * Sets up runBigTransactions on a running stack (src/dev/stack.ts) and a running bot: an allowed
 * and a not-allowed sender, a plaintext and an encrypted room with the bot in both, transactions
 * PUT with the registration's hs_token, and the simulated API's PATCHes as the sign of a command.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { Human } from '../../../src/dev/human.ts';
import { DEPLOYMENT, NAMESPACE, type Stack } from '../../../src/dev/stack.ts';
import { runBigTransactions, type BigTransactionsResult } from './big-transactions.ts';
import { RawSender } from './raw-sender.ts';

export interface Login { readonly userId: string; readonly accessToken: string; readonly deviceId: string }

export interface OnStackOptions {
  readonly pid: number;
  /** Must be in the bot's ALLOWED_USERS; `notAllowed` must not. */
  readonly allowed: Login;
  readonly notAllowed: Login;
  readonly transactions: number;
  readonly say?: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runBigTransactionsOnStack(stack: Stack, o: OnStackOptions): Promise<BigTransactionsResult> {
  const s = stack;
  const hsToken = (parseYaml(readFileSync(s.registrationPath, 'utf8')) as { hs_token: string }).hs_token;
  // A rotation that does not divide the 25 encrypted messages per transaction: the command's room key then comes in a big transaction.
  const allowed = await RawSender.create(s.synapse.baseUrl, o.allowed, { recipient: s.botUserId, rotationMessages: 70 });
  const notAllowed = await RawSender.create(s.synapse.baseUrl, o.notAllowed, { recipient: s.botUserId });
  try {
    const allowedApi = new Human(s.synapse.baseUrl, o.allowed.userId, o.allowed.accessToken);
    const notAllowedApi = new Human(s.synapse.baseUrl, o.notAllowed.userId, o.notAllowed.accessToken);
    const plainRoom = await allowedApi.createRoom({ name: 'big plaintext', invite: [s.botUserId, o.notAllowed.userId] });
    const encryptedRoom = await allowedApi.createRoom({ name: 'big e2ee', invite: [s.botUserId, o.notAllowed.userId], encrypted: true });
    for (const room of [plainRoom, encryptedRoom]) {
      await notAllowedApi.join(room);
      for (let i = 0; (await allowedApi.membership(room, s.botUserId)) !== 'join'; i++) {
        if (i > 300) throw new Error('the bot did not join the rooms');
        await sleep(100);
      }
    }
    await s.waitForAppserviceUp(30_000);
    await sleep(2000); // the bot's hello replies come back from Synapse; let them pass
    let txn = 0;
    const put = async (body: string): Promise<void> => {
      const id = `big-${process.pid}-${++txn}`;
      const response = await fetch(`http://127.0.0.1:${s.botPort}/_matrix/app/v1/transactions/${id}`, {
        method: 'PUT', headers: { authorization: `Bearer ${hsToken}`, 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(120_000),
      });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`PUT transaction ${id}: ${response.status} ${text}`);
    };
    const nextScale = (timeoutMs: number): Promise<void> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => { off(); reject(new Error(`no scale PATCH within ${timeoutMs} ms`)); }, timeoutMs);
      const off = s.sim.onChange((c) => {
        if (c.type !== 'scaled') return;
        clearTimeout(timer);
        off();
        resolve();
      });
    });
    return await runBigTransactions({
      put, pid: o.pid, allowed, notAllowed, plainRoom, encryptedRoom, transactions: o.transactions, nextScale,
      nextCommand: () => (s.sim.replicas(NAMESPACE, DEPLOYMENT) === 0 ? 'start' : 'stop'),
      ...(o.say ? { say: o.say } : {}),
    });
  } finally {
    allowed.close();
    notAllowed.close();
  }
}
