import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, parseCommand, type CommandName } from '../../src/bot/commands.ts';
import { escapeHtml, help, status, statusLine, unknown } from '../../src/bot/replies.ts';
import type { DeploymentTarget } from '../../src/kube/kube.ts';

const target: DeploymentTarget = { namespace: 'agents', name: 'openclaw' };

function assertCommand(text: string, prefix: string, name: CommandName): void {
  const parsed = parseCommand(text, prefix);
  assert.equal(parsed.kind, 'command', `${JSON.stringify(text)} with prefix ${JSON.stringify(prefix)}: ${JSON.stringify(parsed)}`);
  if (parsed.kind === 'command') assert.equal(parsed.name, name, JSON.stringify(text));
}

describe('parseCommand without a prefix', () => {
  test('every alias, in any case', () => {
    const table: ReadonlyArray<readonly [string, CommandName]> = [
      ['start', 'start'], ['START', 'start'], ['Start', 'start'],
      ['on', 'start'], ['ON', 'start'], ['On', 'start'],
      ['stop', 'stop'], ['STOP', 'stop'], ['sToP', 'stop'],
      ['off', 'stop'], ['OFF', 'stop'],
      ['status', 'status'], ['Status', 'status'], ['STATUS', 'status'],
      ['help', 'help'], ['HELP', 'help'], ['Help', 'help'],
    ];
    for (const [text, name] of table) assertCommand(text, '', name);
  });

  test('the word is reported lower-cased', () => {
    assert.deepEqual(parseCommand('  STOP ', ''), { kind: 'command', name: 'stop', word: 'stop' });
    assert.deepEqual(parseCommand('On', ''), { kind: 'command', name: 'start', word: 'on' });
  });

  test('surrounding whitespace and newlines', () => {
    assertCommand('   start   ', '', 'start');
    assertCommand('\tstatus\n', '', 'status');
    assertCommand('\n\n off \n', '', 'stop');
  });

  test('trailing punctuation', () => {
    assertCommand('start.', '', 'start');
    assertCommand('stop!', '', 'stop');
    assertCommand('status?', '', 'status');
    assertCommand('help?!', '', 'help');
    assertCommand('On...', '', 'start');
  });

  test('a leading ! or / is tolerated', () => {
    assertCommand('!start', '', 'start');
    assertCommand('/stop', '', 'stop');
    assertCommand('!STATUS', '', 'status');
    assertCommand('  /help  ', '', 'help');
  });

  test('an unknown word is unknown, with the original text', () => {
    assert.deepEqual(parseCommand('restart', ''), { kind: 'unknown', word: 'restart' });
    assert.deepEqual(parseCommand('Hello there', ''), { kind: 'unknown', word: 'Hello there' });
    assert.deepEqual(parseCommand('restart now', ''), { kind: 'unknown', word: 'restart now' });
    assert.deepEqual(parseCommand('status please', ''), { kind: 'unknown', word: 'status please' });
    assert.equal(parseCommand('starting', '').kind, 'unknown');
  });

  test('an unknown word is cut to 80 characters', () => {
    const parsed = parseCommand('x'.repeat(500), '');
    assert.equal(parsed.kind, 'unknown');
    if (parsed.kind === 'unknown') assert.equal(parsed.word.length, 80);
  });

  test('empty or whitespace-only text is ignored', () => {
    assert.deepEqual(parseCommand('', ''), { kind: 'ignore' });
    assert.deepEqual(parseCommand('   \n\t ', ''), { kind: 'ignore' });
    assert.deepEqual(parseCommand('!', ''), { kind: 'ignore' });
  });
});

describe('run times', () => {
  const H = 3_600_000;
  const M = 60_000;

  test('start, on and extend take a run time; start and on also go without one', () => {
    assert.deepEqual(parseCommand('start 2h', ''), { kind: 'command', name: 'start', word: 'start 2h', duration: 2 * H });
    assert.deepEqual(parseCommand('On 30m', ''), { kind: 'command', name: 'start', word: 'on 30m', duration: 30 * M });
    assert.deepEqual(parseCommand('start 90m', ''), { kind: 'command', name: 'start', word: 'start 90m', duration: 90 * M });
    assert.deepEqual(parseCommand('start 1h30m', ''), { kind: 'command', name: 'start', word: 'start 1h30m', duration: 90 * M });
    assert.deepEqual(parseCommand('extend 1h', ''), { kind: 'command', name: 'extend', word: 'extend 1h', duration: H });
    assert.deepEqual(parseCommand('!toggle extend 45m', '!toggle'), { kind: 'command', name: 'extend', word: 'extend 45m', duration: 45 * M });
    assert.deepEqual(parseCommand('start', ''), { kind: 'command', name: 'start', word: 'start' });
  });

  test('spaces, "for"/"by", upper case, 1d and "min" are understood', () => {
    for (const [text, ms] of [['start 1h 30m', 90 * M], ['start for 2h', 2 * H], ['extend by 30m', 30 * M], ['START 2H', 2 * H], ['start 1d', 24 * H], ['start 45min', 45 * M], ['start 2 h', 2 * H]] as const) {
      const parsed = parseCommand(text, '');
      assert.equal(parsed.kind, 'command', text);
      if (parsed.kind === 'command') assert.equal(parsed.duration, ms, text);
    }
  });

  test('what is not a run time is explained, never guessed', () => {
    for (const text of ['start now', 'start 2', 'start 30s', 'start 0m', 'start 2h 2h', 'start 30m1h', 'start -1h', 'start 1.5h', 'start 400d', 'extend soon']) {
      const parsed = parseCommand(text, '');
      assert.equal(parsed.kind, 'invalid', `${text}: ${JSON.stringify(parsed)}`);
    }
    assert.deepEqual(parseCommand('extend', ''), { kind: 'invalid', name: 'extend', word: 'extend', argument: '' });
    assert.deepEqual(parseCommand('stop 5m', ''), { kind: 'invalid', name: 'stop', word: 'stop 5m', argument: '5m' });
  });
});

describe('parseCommand with the prefix !toggle', () => {
  const prefix = '!toggle';

  test('prefixed commands, any case, any spacing', () => {
    assertCommand('!toggle start', prefix, 'start');
    assertCommand('!TOGGLE  on', prefix, 'start');
    assertCommand('  !Toggle stop.  ', prefix, 'stop');
    assertCommand('!toggle OFF', prefix, 'stop');
    assertCommand('!toggle status?', prefix, 'status');
    assertCommand('!toggle help', prefix, 'help');
  });

  test('the prefix alone asks for help', () => {
    assert.deepEqual(parseCommand('!toggle', prefix), { kind: 'command', name: 'help', word: 'help' });
    assert.deepEqual(parseCommand('  !TOGGLE  ', prefix), { kind: 'command', name: 'help', word: 'help' });
  });

  test('messages without the prefix are ignored', () => {
    assert.deepEqual(parseCommand('start', prefix), { kind: 'ignore' });
    assert.deepEqual(parseCommand('!start', prefix), { kind: 'ignore' });
    assert.deepEqual(parseCommand('please !toggle start', prefix), { kind: 'ignore' });
    assert.deepEqual(parseCommand('', prefix), { kind: 'ignore' });
  });

  test('a longer word starting with the prefix is not the prefix', () => {
    assert.deepEqual(parseCommand('!togglex start', prefix), { kind: 'ignore' });
    assert.deepEqual(parseCommand('!toggles', prefix), { kind: 'ignore' });
  });

  test('an unknown word after the prefix is unknown', () => {
    assert.deepEqual(parseCommand('!toggle reboot', prefix), { kind: 'unknown', word: 'reboot' });
  });
});

describe('parseCommand with targets', () => {
  const several = { names: new Set(['openclaw', 'claw', 'comfy']), several: true };
  const one = { names: new Set(['openclaw']), several: false };

  test('the name comes after the command, or last; aliases are names too', () => {
    assert.deepEqual(parseCommand('start comfy', '', several), { kind: 'command', name: 'start', word: 'start comfy', target: 'comfy' });
    assert.deepEqual(parseCommand('Start Comfy 2h', '', several), { kind: 'command', name: 'start', word: 'start comfy 2h', duration: 2 * 3600_000, target: 'comfy' });
    assert.deepEqual(parseCommand('start for 2h claw', '', several), { kind: 'command', name: 'start', word: 'start for 2h claw', duration: 2 * 3600_000, target: 'claw' });
    assert.deepEqual(parseCommand('extend comfy by 30m', '', several), { kind: 'command', name: 'extend', word: 'extend comfy by 30m', duration: 30 * 60_000, target: 'comfy' });
    assert.deepEqual(parseCommand('status comfy', '', several), { kind: 'command', name: 'status', word: 'status comfy', target: 'comfy' });
    assert.deepEqual(parseCommand('!toggle stop openclaw', '!toggle', several), { kind: 'command', name: 'stop', word: 'stop openclaw', target: 'openclaw' });
  });

  test('with several targets, an unknown first word is taken as a name (answered as such); a run time is not', () => {
    assert.deepEqual(parseCommand('start sd', '', several), { kind: 'command', name: 'start', word: 'start sd', target: 'sd' });
    assert.deepEqual(parseCommand('status please', '', several), { kind: 'command', name: 'status', word: 'status please', target: 'please' });
    assert.deepEqual(parseCommand('start 2h', '', several), { kind: 'command', name: 'start', word: 'start 2h', duration: 2 * 3600_000 });
    assert.deepEqual(parseCommand('stop comfy 5m', '', several), { kind: 'invalid', name: 'stop', word: 'stop comfy 5m', argument: '5m', target: 'comfy' });
    assert.deepEqual(parseCommand('extend comfy', '', several), { kind: 'invalid', name: 'extend', word: 'extend comfy', argument: '', target: 'comfy' });
    assert.deepEqual(parseCommand('help comfy', '', several), { kind: 'unknown', word: 'help comfy' }, 'help takes nothing, as before');
  });

  test('with one target, the name may be given, and anything else reads as before', () => {
    assert.deepEqual(parseCommand('start openclaw', '', one), { kind: 'command', name: 'start', word: 'start openclaw', target: 'openclaw' });
    assert.deepEqual(parseCommand('start', '', one), { kind: 'command', name: 'start', word: 'start' });
    assert.deepEqual(parseCommand('start soon', '', one), parseCommand('start soon', ''));
    assert.deepEqual(parseCommand('status please', '', one), { kind: 'unknown', word: 'status please' });
  });
});

describe('replies', () => {
  test('help lists every alias and every summary', () => {
    const reply = help([target], '');
    const aliases = COMMANDS.flatMap((c) => c.aliases);
    assert.deepEqual([...aliases].sort(), ['approve DEVICEID', 'extend 1h', 'help', 'off', 'on', 'on 30m', 'start', 'start 2h', 'status', 'stop']);
    for (const alias of aliases) {
      assert.match(reply.text, new RegExp(`\\b${alias}\\b`), `text lists ${alias}`);
      assert.ok(reply.html.includes(`<code>${alias}</code>`), `html lists ${alias}`);
    }
    for (const command of COMMANDS) {
      assert.ok(reply.text.includes(command.summary), command.summary);
      assert.ok(reply.html.includes(escapeHtml(command.summary)), command.summary);
    }
    assert.ok(reply.text.includes('openclaw') && reply.text.includes('agents'), reply.text);
  });

  test('help with a prefix shows the prefixed words', () => {
    const reply = help([target], '!toggle');
    for (const alias of COMMANDS.flatMap((c) => c.aliases)) {
      assert.ok(reply.text.includes(`!toggle ${alias}`), `text lists !toggle ${alias}`);
      assert.ok(reply.html.includes(`<code>!toggle ${alias}</code>`), `html lists !toggle ${alias}`);
    }
  });

  test('status names all four counts and the state', () => {
    const reply = status(target, { desired: 3, ready: 2, available: 1, updated: 4, state: 'starting' });
    for (const part of ['desired 3', 'ready 2', 'available 1', 'updated 4', 'starting', 'openclaw']) {
      assert.ok(reply.text.includes(part), `text has ${part}: ${reply.text}`);
      assert.ok(reply.html.includes(part), `html has ${part}: ${reply.html}`);
    }
    const words = { off: 'off', running: 'running', stopping: 'stopping' } as const;
    for (const [state, word] of Object.entries(words)) {
      const r = status(target, { desired: 0, ready: 0, available: 0, updated: 0, state: state as keyof typeof words });
      assert.ok(r.text.includes(word), r.text);
    }
  });

  test('status says why a Deployment is not getting ready, on its own line (escaped in the html)', () => {
    const problem = 'the cluster refused to create the pod: pods "openclaw-1" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0';
    const reply = status(target, { desired: 1, ready: 0, available: 0, updated: 0, state: 'starting', problem });
    assert.equal(reply.text, `openclaw is 🟡 starting: desired 1, ready 0, available 0, updated 0.\n⚠️ It is not getting ready: ${problem}.`);
    assert.ok(reply.html.endsWith('<br>⚠️ It is not getting ready: the cluster refused to create the pod: pods &quot;openclaw-1&quot; is forbidden: exceeded quota: pods, requested: pods=1, used: pods=0, limited: pods=0.'), reply.html);
  });

  test('a target\'s line in the status of all: off, starting, running, stopping, and why not ready', () => {
    const comfy = { namespace: 'media', name: 'comfyui', label: 'comfy' };
    assert.equal(statusLine(comfy, { desired: 0, ready: 0, available: 0, updated: 0, state: 'off' }).text, '⚪ comfy: off.');
    assert.equal(statusLine(comfy, { desired: 2, ready: 1, available: 1, updated: 2, state: 'starting' }).text, '🟡 comfy: starting, 1 of 2 ready.');
    assert.equal(statusLine(comfy, { desired: 2, ready: 2, available: 2, updated: 2, state: 'running' }, 'stops at 16:02 UTC, in 1 h').text, '🟢 comfy: running, 2 of 2 ready; stops at 16:02 UTC, in 1 h.');
    assert.equal(statusLine(comfy, { desired: 0, ready: 1, available: 1, updated: 0, state: 'stopping' }).text, '🟠 comfy: stopping, 1 pod still ready.');
    const stuck = statusLine(comfy, { desired: 1, ready: 0, available: 0, updated: 1, state: 'starting', problem: 'exceeded quota <pods>' });
    assert.equal(stuck.text, '🟡 comfy: starting, 0 of 1 ready; ⚠️ not getting ready: exceeded quota <pods>.');
    assert.ok(stuck.html.includes('&lt;pods&gt;') && stuck.html.includes('<b>comfy</b>'), stuck.html);
  });

  test('escapeHtml escapes markup', () => {
    assert.equal(escapeHtml('<script>alert("x")</script>'), '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    assert.equal(escapeHtml('a & b'), 'a &amp; b');
    assert.equal(escapeHtml('&lt;'), '&amp;lt;', 'ampersands first, so nothing is double-decoded');
    assert.equal(escapeHtml('plain'), 'plain');
  });

  test('user text in replies is escaped in the html', () => {
    const reply = unknown('<img src=x onerror=alert(1)>', help([target], ''));
    assert.ok(!reply.html.includes('<img'), reply.html);
    assert.ok(reply.html.includes('&lt;img src=x onerror=alert(1)&gt;'), reply.html);
    const evil = help([{ namespace: 'ns', name: '<b>x</b>' }], '');
    assert.ok(!evil.html.includes('<b>x</b>'), evil.html);
  });
});
