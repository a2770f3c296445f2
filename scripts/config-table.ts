import { SECTION_NAMES, settingsOf } from '../src/node/config/schema.ts';

/** README.md with its table of settings (the rows after the `| section | key |` header) regenerated. */
export function withConfigTable(text: string): string {
  const header = '| section | key | default | expected | meaning |\n|---|---|---|---|---|\n';
  const start = text.indexOf(header);
  if (start === -1) throw new Error('README.md has no configuration table header');
  const rowsStart = start + header.length;
  let rowsEnd = rowsStart;
  while (text.startsWith('| `[', rowsEnd)) rowsEnd = text.indexOf('\n', rowsEnd) + 1;
  const rows = SECTION_NAMES.flatMap((section) =>
    settingsOf(section).map(
      ([key, s]) => `| \`[${section}]\` | \`${key}\` | \`${s.default === '' ? '(empty)' : s.default}\` | ${s.form} | ${s.doc} |\n`,
    ),
  );
  return text.slice(0, rowsStart) + rows.join('') + text.slice(rowsEnd);
}
