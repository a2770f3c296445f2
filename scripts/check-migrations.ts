import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Fails when src/db/schema.ts and the migrations in drizzle/ disagree: drizzle-kit generates into
 * a copy of drizzle/, and any new migration file means someone forgot `npm run db:generate`.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
// drizzle-kit prefixes --out with "./", so the copy must live under the project (in .tmp/, ignored).
mkdirSync(join(root, '.tmp'), { recursive: true });
const copy = mkdtempSync(join(root, '.tmp', 'migrations-'));
try {
  cpSync(join(root, 'drizzle'), copy, { recursive: true });
  const before = new Set(readdirSync(copy));
  // drizzle-kit exits 0 even when it fails, so its output must name one of the two outcomes.
  const output = execFileSync(
    join(root, 'node_modules', '.bin', 'drizzle-kit'),
    ['generate', '--dialect=sqlite', '--schema=./src/db/schema.ts', `--out=${relative(root, copy)}`],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' },
  );
  const added = readdirSync(copy).filter((f) => !before.has(f));
  if (added.length === 0 && !/No schema changes/.test(output)) {
    console.error(`drizzle-kit generate did not run cleanly:\n${output}`);
    process.exitCode = 1;
  } else if (added.length > 0) {
    console.error(`drizzle/ is behind src/db/schema.ts (would add ${added.join(', ')}): run npm run db:generate and commit`);
    process.exitCode = 1;
  } else {
    console.log('drizzle/ migrations match src/db/schema.ts');
  }
} finally {
  rmSync(copy, { recursive: true, force: true });
}
