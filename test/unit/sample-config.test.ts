import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { loadConfig, ConfigError } from '../../src/config/config.ts';
import { SETTINGS } from '../../src/config/settings.ts';
import { settingsTable } from '../../src/config/settings-table.ts';

const SAMPLE = 'config/config.sample.yaml';

test('the sample config names every setting, as a key or a commented-out key', () => {
  const text = readFileSync(SAMPLE, 'utf8');
  for (const setting of SETTINGS) {
    const leaf = setting.key.split('.').at(-1) as string;
    const forms = setting.secret ? [leaf, `${leaf}File`] : [leaf];
    assert.ok(forms.some((f) => new RegExp(`^\\s*#?\\s*${f}:`, 'm').test(text)), `${setting.key} is missing from ${SAMPLE}`);
    for (const env of setting.env) assert.ok(text.includes(env.replace(/_FILE$/, '')), `${env} is not mentioned in ${SAMPLE}`);
  }
  assert.equal(parseDocument(text).errors.length, 0);
});

test('the sample config is refused until its placeholder is replaced', () => {
  assert.throws(
    () => loadConfig({ file: SAMPLE, env: {} }),
    (error: unknown) => error instanceof ConfigError && error.key === 'bot.allowedUsers' && /CHANGE-ME/.test(error.message),
  );
});

test('the README carries the current configuration table', () => {
  const readme = readFileSync('README.md', 'utf8');
  assert.ok(readme.includes(settingsTable()), 'README.md configuration table is stale: paste the output of `node src/config/settings-table.ts`');
});
