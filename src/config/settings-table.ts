import { SETTINGS } from './settings.ts';

/** The README's configuration table, generated from the settings table so the two cannot drift. */
export function settingsTable(): string {
  const rows = SETTINGS.map((s) => {
    const env = s.env.map((e) => `\`${e}\``).join(', ') + (s.secret ? `, \`${s.env[0]}_FILE\`` : '');
    const def = s.default === undefined ? '' : `\`${Array.isArray(s.default) ? s.default.join(',') : String(s.default)}\``;
    const values = s.values ? ` One of ${s.values.map((v) => `\`${v}\``).join(', ')}.` : '';
    return `| \`${s.key}\` | ${env} | ${def} | ${s.doc.replace(/\|/g, '\\|')}${values} |`;
  });
  return ['| key (YAML) | environment | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

if (import.meta.main) process.stdout.write(settingsTable() + '\n');
