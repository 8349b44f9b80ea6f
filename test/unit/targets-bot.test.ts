/**
 * Several targets from one bot (issue 13), driven through the pipeline with fakes for the
 * homeserver, the crypto step and Kubernetes (two Deployments in two namespaces, and a third whose
 * RBAC is missing): which target a command is for, refusals with their reasons, the status of all,
 * per-target runs, buttons and metrics. The same on the real control plane: test/integration/targets-real.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bot, type RoomActions } from '../../src/bot/bot.ts';
import { parseTargets } from '../../src/config/targets.ts';
import { passThroughCrypto } from '../../src/dev/fake-crypto-step.ts';
import { KubeError, type DeploymentTarget, type Kube } from '../../src/kube/kube.ts';
import { silentLogger } from '../../src/log.ts';
import type { SyncBatch } from '../../src/matrix/batch.ts';
import type { RoomEvent } from '../../src/matrix/events.ts';
import { Metrics } from '../../src/metrics.ts';
import { Pipeline } from '../../src/pipeline.ts';
import { StateDb } from '../../src/store/state-db.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const BOB = '@bob:example.org';
const TEAM = '!team:example.org';
const DM = '!dm:example.org';
const TARGETS = [
  { name: 'openclaw', namespace: 'agents', deployment: 'openclaw', aliases: ['claw'] },
  { name: 'comfy', namespace: 'media', deployment: 'comfyui', replicas: 2, allowedUsers: [ALICE], rooms: [TEAM] },
  { name: 'ghost', namespace: 'norbac', deployment: 'ghost' },
];

let root: string;
let dirs = 0;
before(() => (root = mkdtempSync(join(tmpdir(), 'openclaw-targets-test-'))));
after(() => rmSync(root, { recursive: true, force: true }));

let ids = 0;
function message(body: string, options: { sender?: string; room?: string } = {}): RoomEvent {
  return { event_id: `$m${++ids}`, room_id: options.room ?? TEAM, sender: options.sender ?? ALICE, type: 'm.room.message', origin_server_ts: Date.now(), content: { msgtype: 'm.text', body } };
}
function reaction(target: string, key: string): RoomEvent {
  return { event_id: `$r${++ids}`, room_id: TEAM, sender: ALICE, type: 'm.reaction', origin_server_ts: Date.now(), content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key } } };
}
function batch(roomEvents: RoomEvent[]): SyncBatch {
  return { label: `txn ${++ids}`, roomEvents, toDevice: [], deviceLists: { changed: [], left: [] }, oneTimeKeyCounts: undefined, unusedFallbackKeyTypes: undefined };
}

/** Two Deployments the fake cluster has; `norbac/ghost` is refused as a missing RoleBinding is. */
function setUp(targets: unknown = TARGETS) {
  const state = StateDb.open(join(root, `state-${++dirs}`));
  const metrics = new Metrics({ defaultMetrics: false });
  const sent: Array<{ roomId: string; type: string; content: Record<string, unknown>; eventId: string; txnId: string }> = [];
  const replicas = new Map([['agents/openclaw', 0], ['media/comfyui', 0]]);
  const scales: string[] = [];
  const key = (t: DeploymentTarget): string => {
    assert.equal(t.label === undefined || typeof t.label === 'string', true);
    const k = `${t.namespace}/${t.name}`;
    if (!replicas.has(k)) throw new KubeError('forbidden', `forbidden: the bot's ServiceAccount may not get deployments in the namespace "${t.namespace}"`, 403);
    return k;
  };
  const kube: Kube = {
    scale: async (t, to) => {
      const k = key(t);
      scales.push(`${k}=${to}`);
      const previous = replicas.get(k)!;
      replicas.set(k, to);
      return { previous, desired: to };
    },
    status: async (t) => {
      const n = replicas.get(key(t))!;
      return { desired: n, ready: n, available: n, updated: n, state: n ? 'running' : 'off' };
    },
    ping: async () => undefined,
  };
  const rooms: RoomActions = {
    join: async () => undefined,
    leave: async () => undefined,
    send: async (roomId, content, txnId, type = 'm.room.message') => {
      const again = sent.find((s) => s.txnId === txnId);
      if (again) return again.eventId;
      const eventId = `$bot${sent.length + 1}`;
      sent.push({ roomId, type, content, eventId, txnId });
      return eventId;
    },
  };
  const bot = new Bot({
    userId: BOT, allowedUsers: [ALICE, BOB], targets: parseTargets(targets, [ALICE, BOB], 'test'), echo: false, commandPrefix: '',
    maxCommandAgeSeconds: 0, progress: { enabled: false, deadlineMs: undefined }, kube, rooms, state, metrics, logger: silentLogger(),
  });
  const pipeline = new Pipeline({ crypto: passThroughCrypto(), bot, state, metrics, logger: silentLogger() });
  const run = async (...events: RoomEvent[]): Promise<void> => {
    await pipeline.process(batch(events), 'appservice');
    await bot.settled();
  };
  const bodies = (): string[] => sent.filter((s) => s.type === 'm.room.message').map((s) => String(s.content['body']));
  const last = (): string => bodies().at(-1) ?? '';
  const replyId = (match: RegExp): string => {
    const found = sent.find((s) => s.type === 'm.room.message' && match.test(String(s.content['body'])));
    assert.ok(found, `no reply matching ${String(match)}`);
    return found.eventId;
  };
  return { state, metrics, bot, run, bodies, last, replicas, scales, replyId, sent };
}

describe('several targets in chat', () => {
  test('a bare start asks which target, listing those the sender may control here; it scales nothing', async () => {
    const t = setUp();
    await t.run(message('start'));
    assert.equal(t.last(), 'Which one? Say "start <name>"; the targets are: openclaw (claw), comfy, ghost.');
    assert.deepEqual(t.scales, []);
  });

  test('start NAME scales that target to its replicas; an alias and a run time work in either order', async () => {
    const t = setUp();
    await t.run(message('start comfy'));
    assert.deepEqual(t.scales, ['media/comfyui=2']);
    assert.match(t.last(), /^▶️ Starting comfy: replicas 0 → 2\./);
    await t.run(message('start claw 2h'), message('stop 2h comfy'));
    assert.deepEqual(t.scales, ['media/comfyui=2', 'agents/openclaw=1']);
    assert.match(t.last(), /^"stop comfy" takes no time: it stops at once\. For a run that stops by itself, start it with a time, e\.g\. "start comfy 2h"\.$/, 'stop 2h is explained, as with one target');
    await t.run(message('stop comfy'));
    assert.deepEqual(t.scales, ['media/comfyui=2', 'agents/openclaw=1', 'media/comfyui=0']);
  });

  test('status alone is one line per target the sender may see, with a missing RBAC on its own line; status NAME is the full one', async () => {
    const t = setUp();
    await t.run(message('start claw 1h'));
    await t.run(message('status'));
    const lines = t.last().split('\n');
    assert.equal(lines[0], 'Status of 3 targets:');
    assert.match(lines[1] ?? '', /^🟢 openclaw: running, 1 of 1 ready; stops at \d\d:\d\d UTC, in (59 min|1 h)\.$/);
    assert.equal(lines[2], '⚪ comfy: off.');
    assert.equal(lines[3], '⚠️ ghost: could not get its status: forbidden: the bot\'s ServiceAccount may not get deployments in the namespace "norbac"');
    await t.run(message('status comfy'));
    assert.equal(t.last(), 'comfy is ⚪ off: desired 0, ready 0, available 0, updated 0.');
    await t.run(message('status', { sender: BOB }));
    assert.deepEqual(t.last().split('\n').map((l) => l.split(':')[0]), ['Status of 2 targets', '🟢 openclaw', '⚠️ ghost'], 'comfy is Alice\'s only');
  });

  test('a user allowed globally but not for a target is refused with the reason; so is a room that may not control it', async () => {
    const t = setUp();
    await t.run(message('start comfy', { sender: BOB }));
    assert.equal(t.last(), '⛔ You may not control comfy: the operator allows only @alice:example.org for it.');
    await t.run(message('stop comfy', { room: DM }));
    assert.equal(t.last(), '⛔ comfy cannot be controlled from this room (the operator set the rooms that may).');
    assert.deepEqual(t.scales, []);
    // In a DM, a bare start is not refused: Bob's and that room's targets are openclaw and ghost.
    await t.run(message('start', { sender: BOB, room: DM }));
    assert.equal(t.last(), 'Which one? Say "start <name>"; the targets are: openclaw (claw), ghost.');
    const text = await t.metrics.registry.metrics();
    assert.match(text, /openclaw_commands_total\{command="start",outcome="refused",target="comfy"\} 1/);
    assert.match(text, /openclaw_commands_total\{command="stop",outcome="refused",target="comfy"\} 1/);
  });

  test('an unknown name lists the targets; a target whose RBAC is missing answers in one line and the others work on', async () => {
    const t = setUp();
    await t.run(message('start sd'));
    assert.equal(t.last(), 'There is no target "sd". The targets are: openclaw (claw), comfy, ghost.');
    await t.run(message('start ghost'), message('start openclaw'));
    assert.match(t.bodies().at(-2) ?? '', /^⚠️ Could not start ghost: forbidden: /);
    assert.match(t.last(), /^▶️ Starting openclaw: replicas 0 → 1\./);
    const text = await t.metrics.registry.metrics();
    assert.match(text, /openclaw_commands_total\{command="start",outcome="error",target="ghost"\} 1/);
    assert.match(text, /openclaw_commands_total\{command="start",outcome="ok",target="openclaw"\} 1/);
  });

  test('each target has its own timed run: stopping one leaves the other\'s stop time alone', async () => {
    const t = setUp();
    await t.run(message('start openclaw 2h'), message('start comfy 1h'));
    assert.ok(t.state.runs.get('agents/openclaw')?.stopsAt);
    assert.ok(t.state.runs.get('media/comfyui')?.stopsAt);
    await t.run(message('stop openclaw'));
    assert.equal(t.state.runs.get('agents/openclaw'), undefined);
    assert.ok(t.state.runs.get('media/comfyui')?.stopsAt, 'comfy still stops on time');
    await t.run(message('extend 30m'));
    assert.equal(t.last(), 'Which one? Say "extend <name>"; the targets are: openclaw (claw), comfy, ghost.');
    await t.run(message('extend comfy 30m'));
    assert.match(t.last(), /^⏲ Extended by 30 min: comfy now stops at /);
    await t.run(message('extend openclaw 30m'));
    assert.match(t.last(), /^openclaw is off: there is no run to extend\. Say "start openclaw 1h" to start it for an hour\.$/, 'suggestions name the target');
  });

  test('a button acts on the target of the reply it is under', async () => {
    const t = setUp();
    await t.run(message('status comfy'));
    await t.run(reaction(t.replyId(/^comfy is ⚪ off/), '▶️'));
    assert.deepEqual(t.scales, ['media/comfyui=2']);
    await t.run(message('status'));
    assert.equal(t.sent.filter((s) => s.type === 'm.reaction').length, 6, 'three under the status of comfy and three under its start; none under the status of all');
  });

  test('help lists the commands with NAME and the targets the sender may control here', async () => {
    const t = setUp();
    await t.run(message('help', { sender: BOB }));
    const text = t.last();
    assert.match(text, /^Commands \(NAME: one of the targets below\):\n• start NAME \/ on NAME: /);
    assert.match(text, /• status \[NAME\]: /);
    assert.match(text, /\nTargets: openclaw \(namespace agents\); ghost \(namespace norbac\)\./);
    assert.doesNotMatch(text, /comfy/);
  });
});

describe('one target, as before there were targets', () => {
  test('the name is optional, and may be given; help and status read as before', async () => {
    const t = setUp([{ namespace: 'agents', deployment: 'openclaw' }]);
    await t.run(message('start'), message('stop openclaw'), message('status'));
    assert.deepEqual(t.scales, ['agents/openclaw=1', 'agents/openclaw=0']);
    assert.equal(t.last(), 'openclaw is ⚪ off: desired 0, ready 0, available 0, updated 0.');
    await t.run(message('start soon'), message('help'));
    assert.equal(t.bodies().at(-2), 'I did not understand "soon" as a run time. Say for example "start 2h", "start 30m" or "start 1h30m" (at least one minute).');
    assert.match(t.last(), /^Commands for openclaw \(namespace agents\):\n• start \/ on: /);
  });
});
