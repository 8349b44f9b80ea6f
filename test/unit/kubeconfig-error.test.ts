import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/config-error.ts';
import { createKube } from '../../src/kube/lean-kube.ts';
import { kubeconfigError } from '../../src/kube/kubeconfig-error.ts';
import { lines, startBotProcess, unreachableBotEnv } from './bot-process.ts';

let dir: string;
let counter = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'openclaw-kubeconfig-test-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function kubeconfig(text: string): string {
  const path = join(dir, `kubeconfig-${++counter}`);
  writeFileSync(path, text);
  return path;
}

/** What the bot reports for this kubeconfig path. */
function refusal(path: string): ConfigError {
  try {
    createKube({ kubeconfigPath: path, requestTimeoutMs: 1000 });
  } catch (error) {
    return kubeconfigError(error, path);
  }
  assert.fail(`${path} was accepted`);
}

const MALFORMED = 'apiVersion: v1\nclusters:\n  - name: c\n   cluster: {server: "https://127.0.0.1:9"}\n';

describe('a kubeconfig that cannot be used: one line naming the setting and the file', () => {
  test('malformed YAML: the parser\'s first line, without the excerpt', () => {
    const path = kubeconfig(MALFORMED);
    const error = refusal(path);
    assert.equal(error.key, 'kubernetes.kubeconfig');
    assert.equal(error.message, `kubernetes.kubeconfig: ${path} is not a usable kubeconfig: Sequence item without - indicator at line 4, column 1`);
  });

  test('a null byte, a scalar, no current cluster', () => {
    for (const text of ['\u0000\u0001binary', 'just a string\n', 'apiVersion: v1\nkind: Config\n', 'apiVersion: v1\nkind: Config\nclusters: 5\n']) {
      const path = kubeconfig(text);
      const error = refusal(path);
      assert.equal(lines(error.message).length, 1, error.message);
      assert.ok(error.message.startsWith(`kubernetes.kubeconfig: ${path} is not a usable kubeconfig: `), error.message);
    }
    assert.match(refusal(kubeconfig('apiVersion: v1\nkind: Config\n')).message, /no current cluster/);
  });

  test('missing file, or a directory', () => {
    const missing = join(dir, 'nope');
    assert.equal(refusal(missing).message, `kubernetes.kubeconfig: cannot read ${missing} (ENOENT)`);
    const folder = join(dir, 'folder');
    mkdirSync(folder);
    assert.equal(refusal(folder).message, `kubernetes.kubeconfig: cannot read ${folder} (EISDIR)`);
  });

  test('the bot process: exit 2 and that one line', { timeout: 60_000 }, async () => {
    const path = kubeconfig(MALFORMED);
    const bot = startBotProcess(unreachableBotEnv(dir, join(dir, 'data'), { KUBECONFIG: path }));
    const { code } = await bot.exited;
    assert.equal(code, 2, bot.stderr());
    assert.deepEqual(lines(bot.stderr()), [`config error: kubernetes.kubeconfig: ${path} is not a usable kubeconfig: Sequence item without - indicator at line 4, column 1`]);
  });
});
