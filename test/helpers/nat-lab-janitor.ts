/**
 * Removes one NAT lab (test/helpers/nat-lab.ts) when the test process that built it dies without
 * doing so: killed, crashed, or interrupted with Ctrl-C, when no `t.after` hook runs.
 *
 * The lab starts this detached (its own session, so a terminal's Ctrl-C does not reach it) and
 * announces on stdin each resource before creating it: `ns <name>` for a network namespace,
 * `link <name>` for an interface in the root namespace, `dir <path>` for a directory (a node's
 * data), then `done` once it has removed them all
 * itself. stdin closing without `done` (the kernel closes the pipe however the test process ends)
 * means the lab was left behind: kill whatever runs inside its namespaces, then delete exactly the
 * announced resources. Nothing else is ever touched: names must carry a lab prefix.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname } from 'node:path';
import { createInterface } from 'node:readline';

/** The shapes nat-lab.ts gives its names: `rn<6 hex>-<rest>` namespaces, `rn<6 hex>m<n>` links. */
const LAB_NAMESPACE = /^rn[0-9a-f]{6}-[a-z0-9-]+$/;
const LAB_LINK = /^rn[0-9a-f]{6}m\d{1,2}$/;
/** Lab.tempDir(): `<tmpdir>/rn<6 hex>-<label>-<mkdtemp suffix>`. */
const LAB_DIR = /^rn[0-9a-f]{6}-[A-Za-z0-9-]+$/;

const namespaces: string[] = [];
const links: string[] = [];
const directories: string[] = [];
let released = false;

createInterface({ input: process.stdin })
  .on('line', (line) => {
    // Split at the first space only: a directory path may contain spaces.
    const space = line.indexOf(' ');
    const kind = space === -1 ? line.trim() : line.slice(0, space);
    const name = space === -1 ? '' : line.slice(space + 1);
    if (kind === 'ns' && LAB_NAMESPACE.test(name)) namespaces.push(name);
    else if (kind === 'link' && LAB_LINK.test(name)) links.push(name);
    else if (kind === 'dir' && dirname(name) === tmpdir() && LAB_DIR.test(basename(name))) directories.push(name);
    else if (kind === 'done') released = true;
  })
  .on('close', () => {
    if (!released) removeLab();
    process.exit(0);
  });

function removeLab(): void {
  // Processes first: a namespace with a process inside outlives `ip netns del` (only unmounted).
  for (const ns of namespaces) killInside(ns);
  // Deleting the root end of a veth removes both ends at once; namespace teardown is asynchronous.
  for (const link of links) quietly('ip', ['link', 'del', link]);
  for (const ns of [...namespaces].reverse()) quietly('ip', ['netns', 'del', ns]);
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
}

function killInside(ns: string): void {
  const pids = quietly('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Runs a command, ignoring failure (the resource may never have been created or already be gone). */
function quietly(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
  } catch {
    return '';
  }
}
