/**
 * Several targets (issue 13): the `targets:` list (errors naming their key) and which target a
 * command is for (ambiguous, unknown and aliased names, per-target allowlists and rooms).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chooseTarget, choiceReply } from '../../src/bot/target-choice.ts';
import { ConfigError } from '../../src/config/config-error.ts';
import { legacyTarget, parseTargets, type Target } from '../../src/config/targets.ts';

const ALICE = '@alice:example.org';
const BOB = '@bob:example.org';
const TEAM = '!team:example.org';
const DM = '!dm:example.org';
const allowed = [ALICE, BOB];
const TWO = [
  { name: 'openclaw', namespace: 'agents', deployment: 'openclaw', aliases: ['agent', 'claw'] },
  { name: 'comfy', namespace: 'gpu', deployment: 'comfyui', replicas: 2, allowedUsers: [ALICE], rooms: [TEAM] },
];

const fails = (raw: unknown, key: string, message: RegExp): void => {
  assert.throws(() => parseTargets(raw, allowed, 'config.yaml'), (e: unknown) => e instanceof ConfigError && e.key === key && message.test(e.message), `${key}: ${message}`);
};

describe('the targets list', () => {
  test('two targets, with defaults: name from the Deployment, 1 replica, everyone allowed, any room', () => {
    const [a, b] = parseTargets([{ namespace: 'agents', deployment: 'openclaw-x' }, TWO[1]], allowed, 'config.yaml');
    assert.deepEqual(a, { name: 'openclaw-x', namespace: 'agents', deployment: 'openclaw-x', aliases: [], replicas: 1, allowedUsers: undefined, rooms: undefined });
    assert.deepEqual(b, { name: 'comfy', namespace: 'gpu', deployment: 'comfyui', aliases: [], replicas: 2, allowedUsers: [ALICE], rooms: [TEAM] });
  });

  test('room ids with and without a server part (room version 12 has none)', () => {
    const [t] = parseTargets([{ namespace: 'a', deployment: 'x', rooms: ['!abc:example.org', '!McY3L0YYnI72Y6FWAY41kf42uIUxX9zTDcu6gBMt6Ck'] }], allowed, 'config.yaml');
    assert.deepEqual(t?.rooms, ['!abc:example.org', '!McY3L0YYnI72Y6FWAY41kf42uIUxX9zTDcu6gBMt6Ck']);
  });

  test('the old single-target settings mean one target named after its Deployment', () => {
    assert.deepEqual(legacyTarget('agents', 'openclaw'), { name: 'openclaw', namespace: 'agents', deployment: 'openclaw', aliases: [], replicas: 1, allowedUsers: undefined, rooms: undefined });
  });

  test('each error names its key', () => {
    fails({}, 'targets', /non-empty list/);
    fails([], 'targets', /non-empty list/);
    fails(['openclaw'], 'targets[0]', /expected a mapping/);
    fails([TWO[0], { name: 'comfy', deployment: 'comfyui' }], 'targets[1].namespace', /required/);
    fails([TWO[0], { namespace: 'Bad_NS', deployment: 'x' }], 'targets[1].namespace', /not a valid namespace/);
    fails([{ namespace: 'a', deployment: 'x', replicas: 0 }], 'targets[0].replicas', /1 to 100/);
    fails([{ namespace: 'a', deployment: 'x', replicas: 1.5 }], 'targets[0].replicas', /whole number/);
    fails([{ namespace: 'a', deployment: 'x', colour: 'red' }], 'targets[0].colour', /unknown setting/);
    fails([{ namespace: 'a', deployment: 'x', name: 'two words' }], 'targets[0].name', /one word/);
    fails([{ namespace: 'a', deployment: 'x', name: 'status' }], 'targets[0].name', /command word/);
    fails([{ namespace: 'a', deployment: 'x', aliases: ['all'] }], 'targets[0].aliases[0]', /command word/);
    fails([{ namespace: 'a', deployment: 'x', aliases: ['2h'] }], 'targets[0].aliases[0]', /begins with a digit, as run times do/);
    fails([{ namespace: 'a', deployment: '1d' }], 'targets[0].name', /begins with a digit/);
    fails([{ namespace: 'a', deployment: 'x', allowedUsers: ['@mallory:example.org'] }], 'targets[0].allowedUsers[0]', /not in bot.allowedUsers/);
    fails([{ namespace: 'a', deployment: 'x', rooms: ['#team:example.org'] }], 'targets[0].rooms[0]', /room id/);
    fails([{ namespace: 'a', deployment: 'x', rooms: ['!has space:example.org'] }], 'targets[0].rooms[0]', /room id/);
  });

  test('a name or alias picks one target; one Deployment is one target', () => {
    fails([TWO[0], { namespace: 'gpu', deployment: 'comfyui', aliases: ['claw'] }], 'targets[1].aliases[0]', /"claw" already names targets\[0\]/);
    fails([TWO[0], { namespace: 'gpu', deployment: 'agent' }], 'targets[1].name', /"agent" already names targets\[0\]/);
    fails([TWO[0], { name: 'again', namespace: 'agents', deployment: 'openclaw' }], 'targets[1].deployment', /agents\/openclaw is already targets\[0\]/);
  });
});

describe('which target a command is for', () => {
  const targets: Target[] = parseTargets(TWO, allowed, 'config.yaml');
  const [openclaw, comfy] = targets as [Target, Target];

  test('with one target the name is optional, as today', () => {
    const one = [legacyTarget('agents', 'openclaw')];
    assert.deepEqual(chooseTarget(one, 'start', undefined, BOB, DM), { kind: 'one', target: one[0] });
    assert.deepEqual(chooseTarget(one, 'start', 'openclaw', BOB, DM), { kind: 'one', target: one[0] });
  });

  test('with several, a bare start asks (it never guesses); a bare status is all the caller may see', () => {
    assert.deepEqual(chooseTarget(targets, 'start', undefined, ALICE, TEAM), { kind: 'ask', targets });
    assert.equal(choiceReply({ kind: 'ask', targets }, 'start', targets).text, 'Which one? Say "start <name>"; the targets are: openclaw (agent, claw), comfy.');
    assert.deepEqual(chooseTarget(targets, 'status', undefined, ALICE, TEAM), { kind: 'all', targets });
    assert.deepEqual(chooseTarget(targets, 'status', undefined, BOB, TEAM), { kind: 'all', targets: [openclaw] });
  });

  test('a bare command means the only target the sender may control from this room; none is said so', () => {
    assert.deepEqual(chooseTarget(targets, 'start', undefined, BOB, TEAM), { kind: 'one', target: openclaw }, 'comfy is Alice\'s only');
    assert.deepEqual(chooseTarget(targets, 'stop', undefined, ALICE, DM), { kind: 'one', target: openclaw }, 'comfy is for the team room only');
    const narrow = parseTargets([{ ...TWO[0], rooms: [TEAM] }, TWO[1]], allowed, 'config.yaml');
    assert.deepEqual(chooseTarget(narrow, 'start', undefined, BOB, DM), { kind: 'none' });
    assert.deepEqual(chooseTarget(narrow, 'status', undefined, BOB, DM), { kind: 'none' });
    assert.match(choiceReply({ kind: 'none' }, 'start', narrow).text, /^⛔ None of the targets may be controlled by you from this room/);
  });

  test('names and aliases; an unknown name lists the targets', () => {
    assert.deepEqual(chooseTarget(targets, 'stop', 'claw', BOB, DM), { kind: 'one', target: openclaw });
    assert.deepEqual(chooseTarget(targets, 'start', 'comfy', ALICE, TEAM), { kind: 'one', target: comfy });
    const unknown = chooseTarget(targets, 'start', 'sd', ALICE, TEAM);
    assert.deepEqual(unknown, { kind: 'unknown', word: 'sd' });
    assert.equal(choiceReply(unknown as never, 'start', targets).text, 'There is no target "sd". The targets are: openclaw (agent, claw), comfy.');
  });

  test('a user allowed globally but not for this target, and a room that may not control it, are refused with the reason', () => {
    const user = chooseTarget(targets, 'start', 'comfy', BOB, TEAM);
    assert.deepEqual(user, { kind: 'refused', target: comfy, why: 'user' });
    assert.equal(choiceReply(user as never, 'start', targets).text, '⛔ You may not control comfy: the operator allows only @alice:example.org for it.');
    const room = chooseTarget(targets, 'start', 'comfy', ALICE, DM);
    assert.deepEqual(room, { kind: 'refused', target: comfy, why: 'room' });
    assert.equal(choiceReply(room as never, 'start', targets).text, '⛔ comfy cannot be controlled from this room (the operator set the rooms that may).');
  });
});
