import { lstatSync, readlinkSync } from 'node:fs';
import type { SandboxSpec } from './sandbox.ts';

/** Where the job finds its workspace (and its cwd). */
export const JOB_DIR = '/job';
/** System directories the job sees read-only (a merged-/usr system's /bin, /lib… are symlinks into /usr, kept as symlinks). */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/** The part of /etc programs need to run (users, libraries, time zone, Debian's alternatives); nothing else of /etc. */
const ETC_ENTRIES = [
  'passwd',
  'group',
  'nsswitch.conf',
  'hosts',
  'host.conf',
  'ld.so.cache',
  'ld.so.conf',
  'ld.so.conf.d',
  'localtime',
  'alternatives',
];
/** Added only with network: name resolution and TLS roots. */
const ETC_NETWORK_ENTRIES = ['resolv.conf', 'gai.conf', 'ssl', 'ca-certificates', 'ca-certificates.conf'];

/** bwrap options that show the host's system directories as they are: read-only directories, or the same symlinks. */
export function systemBinds(): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    const stat = lstatSync(dir, { throwIfNoEntry: false });
    if (!stat) continue;
    if (stat.isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir);
    else if (stat.isDirectory()) args.push('--ro-bind', dir, dir);
  }
  return args;
}

function isUnder(path: string, dirs: readonly string[]): boolean {
  return dirs.some((dir) => path === dir || path.startsWith(`${dir}/`));
}

/**
 * The bwrap command line of one job: new user, pid, ipc, uts, cgroup and (unless allowed) network
 * namespaces; a read-only root with only the system directories, the workspace read-write at /job,
 * a private /tmp; no capabilities, a new session, the job's environment only.
 * `workspaceSource` is where bwrap finds the workspace (the node may have bound it elsewhere first).
 */
export function bubblewrapArgs(spec: SandboxSpec, systemArgs: readonly string[], workspaceSource: string): string[] {
  const { limits } = spec;
  const args = ['--unshare-all', ...(limits.network ? ['--share-net'] : []), '--die-with-parent', '--new-session', '--cap-drop', 'ALL'];
  args.push('--clearenv');
  for (const [name, value] of Object.entries(spec.env)) args.push('--setenv', name, value);
  args.push(...systemArgs);
  for (const entry of [...ETC_ENTRIES, ...(limits.network ? ETC_NETWORK_ENTRIES : [])]) {
    args.push('--ro-bind-try', `/etc/${entry}`, `/etc/${entry}`);
  }
  // An operator's executable outside the system directories is shown read-only at its own path.
  if (!isUnder(spec.executable, SYSTEM_DIRS)) args.push('--ro-bind', spec.executable, spec.executable);
  args.push('--bind', workspaceSource, JOB_DIR, '--chdir', JOB_DIR);
  // tmpfs pages are charged to the job's memory cgroup; the size cap makes a full /tmp an ENOSPC, not an OOM.
  args.push('--size', String(limits.memoryBytes), '--tmpfs', '/tmp');
  args.push('--proc', '/proc', '--dev', '/dev');
  // Last: the sandbox's own root (where /etc, /job… were created) becomes read-only too.
  args.push('--remount-ro', '/');
  args.push('--', spec.executable, ...spec.args);
  return args;
}
