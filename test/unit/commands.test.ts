import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, parseCommand, type CommandName } from '../../src/bot/commands.ts';
import { escapeHtml, help, status, unknown } from '../../src/bot/replies.ts';
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
    assert.deepEqual(parseCommand('start now', ''), { kind: 'unknown', word: 'start now' });
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

describe('replies', () => {
  test('help lists every alias and every summary', () => {
    const reply = help(target, '');
    const aliases = COMMANDS.flatMap((c) => c.aliases);
    assert.deepEqual([...aliases].sort(), ['help', 'off', 'on', 'start', 'status', 'stop']);
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
    const reply = help(target, '!toggle');
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

  test('escapeHtml escapes markup', () => {
    assert.equal(escapeHtml('<script>alert("x")</script>'), '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    assert.equal(escapeHtml('a & b'), 'a &amp; b');
    assert.equal(escapeHtml('&lt;'), '&amp;lt;', 'ampersands first, so nothing is double-decoded');
    assert.equal(escapeHtml('plain'), 'plain');
  });

  test('user text in replies is escaped in the html', () => {
    const reply = unknown('<img src=x onerror=alert(1)>', target, '');
    assert.ok(!reply.html.includes('<img'), reply.html);
    assert.ok(reply.html.includes('&lt;img src=x onerror=alert(1)&gt;'), reply.html);
    const evil = help({ namespace: 'ns', name: '<b>x</b>' }, '');
    assert.ok(!evil.html.includes('<b>x</b>'), evil.html);
  });
});
