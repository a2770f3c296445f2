import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { CPU_PERIOD_US, type JobLimits } from './limits.ts';

export type CgroupVersion = 'v1' | 'v2';

/** Every job cgroup lives under `<hierarchy>/remote-network/<owner>/<jobId>`. */
const CGROUP_DIR = 'remote-network';
/** v1 hierarchies a job joins; on v2 the one unified directory carries all three controllers. */
const V1_CONTROLLERS = ['memory', 'pids', 'cpu'] as const;
const V2_CONTROLLERS = ['memory', 'pids', 'cpu'] as const;
/** How often an emptying cgroup is read while its processes die (v1 has no "empty" event to wait on). */
const POLL_MS = 5;
/** SIGKILL rounds before giving up on a cgroup (each round kills what forked since the last one; pids.max bounds it). */
const KILL_ROUNDS = 400;
/** Rounds bubblewrap's monitor gets to exit after its child before it is killed too. */
const SPARE_ROUNDS = 40;

/**
 * The owner of a cgroup subtree: this process, named by pid and start time so a reused pid is not
 * mistaken for it. Several nodes in one process (tests) share it; the janitor only removes subtrees
 * whose owner is gone, so a starting node never kills another live node's jobs.
 */
export function ownerTag(pid = process.pid): string | null {
  const start = processStartTime(pid);
  return start === null ? null : `${pid}-${start}`;
}

function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime), counted after the parenthesised command name, which may hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function errnoCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

function readNumberField(file: string, field: string): number {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [key, value] = line.split(' ');
      if (key === field) return Number(value);
    }
  } catch {
    // A missing file (an older kernel without the counter) reads as zero.
  }
  return 0;
}

function readPids(procsFile: string): number[] {
  try {
    return readFileSync(procsFile, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map(Number);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    throw error;
  }
}

function signalPids(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone (ESRCH): that is what we want.
    }
  }
}

/**
 * SIGKILL every process in `procsFile` until none is left; false if some survived every round.
 * `spare` (bubblewrap's monitor, the node's child) is killed last: it reaps the sandbox's init, so
 * nothing is orphaned to PID 1 as a zombie, and it exits by itself once its child is gone.
 */
async function killUntilEmpty(procsFile: string, spare?: number): Promise<boolean> {
  let spareRounds = 0;
  for (let round = 0; round < KILL_ROUNDS; round++) {
    const pids = readPids(procsFile);
    if (pids.length === 0) return true;
    const others = pids.filter((pid) => pid !== spare);
    if (others.length > 0) signalPids(others, 'SIGKILL');
    else if (++spareRounds > SPARE_ROUNDS) signalPids(pids, 'SIGKILL');
    await delay(POLL_MS);
  }
  return readPids(procsFile).length === 0;
}

async function removeDir(dir: string): Promise<void> {
  // A cgroup whose last process just died can refuse rmdir (EBUSY) for a moment.
  for (let attempt = 0; attempt < KILL_ROUNDS; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') throw error;
      await delay(POLL_MS);
    }
  }
  rmdirSync(dir);
}

/** One job's cgroup (a directory per v1 hierarchy, or one v2 directory). */
export class JobCgroup {
  constructor(
    readonly version: CgroupVersion,
    /** Directories the job's first process writes its pid into (`cgroup.procs` of each). */
    readonly dirs: readonly string[],
    /** The directory whose `cgroup.procs` lists every process of the job (v1: the pids hierarchy). */
    readonly listDir: string,
    private readonly memoryDir: string,
  ) {}

  get procsFiles(): string[] {
    return this.dirs.map((dir) => join(dir, 'cgroup.procs'));
  }

  get procsFile(): string {
    return join(this.listDir, 'cgroup.procs');
  }

  pids(): number[] {
    return readPids(this.procsFile);
  }

  signal(signal: NodeJS.Signals, except?: number): void {
    signalPids(
      this.pids().filter((pid) => pid !== except),
      signal,
    );
  }

  killAll(spare?: number): Promise<boolean> {
    return killUntilEmpty(this.procsFile, spare);
  }

  /** Processes the kernel's OOM killer ended in this cgroup (v1 memory.oom_control, v2 memory.events). */
  oomKills(): number {
    return this.version === 'v1'
      ? readNumberField(join(this.memoryDir, 'memory.oom_control'), 'oom_kill')
      : readNumberField(join(this.memoryDir, 'memory.events'), 'oom_kill');
  }

  async remove(): Promise<void> {
    await this.killAll();
    for (const dir of this.dirs) await removeDir(dir);
  }
}

/** Where this process may create job cgroups, found by `detectCgroups`. */
export class CgroupHierarchy {
  constructor(
    readonly version: CgroupVersion,
    /** `<hierarchy>/remote-network` for each hierarchy used (one on v2). */
    private readonly bases: readonly string[],
    private readonly owner: string,
  ) {}

  /** Makes the job's cgroup with its limits. Synchronous: the job's pid must be known when `start` returns. */
  create(jobId: string, limits: JobLimits): JobCgroup {
    const dirs = this.bases.map((base) => join(base, this.owner, jobId));
    for (const dir of dirs) {
      // The owner directory again: another sandbox of this process may have closed and removed it.
      mkdirSync(join(dir, '..'), { recursive: true });
      mkdirSync(dir);
    }
    try {
      const quota = String(Math.round((limits.cpuPercent / 100) * CPU_PERIOD_US));
      if (this.version === 'v1') {
        const [memory, pids, cpu] = dirs as [string, string, string];
        writeFileSync(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        // memsw (memory + swap) exists only with swap accounting; equal to the limit means no swap.
        if (existsSync(join(memory, 'memory.memsw.limit_in_bytes'))) {
          writeFileSync(join(memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
        }
        writeFileSync(join(pids, 'pids.max'), String(limits.pids));
        writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
        writeFileSync(join(cpu, 'cpu.cfs_quota_us'), quota);
        return new JobCgroup('v1', dirs, pids, memory);
      }
      const [dir] = dirs as [string];
      writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
      if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
      writeFileSync(join(dir, 'pids.max'), String(limits.pids));
      writeFileSync(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
      return new JobCgroup('v2', dirs, dir, dir);
    } catch (error) {
      for (const dir of dirs) rmdirSync(dir);
      throw error;
    }
  }

  /** Removes this process's owner directories when no job of it is left (a job still running keeps them). */
  close(): void {
    for (const base of this.bases) {
      try {
        rmdirSync(join(base, this.owner));
      } catch {
        // Not empty (another sandbox of this process runs a job) or already gone.
      }
    }
  }

  /** Kills and removes job cgroups left by owners that are gone (a node killed mid-job); returns how many jobs. */
  async removeStale(): Promise<number> {
    const jobs = new Set<string>();
    // Each hierarchy on its own: a node killed while creating a job's directories leaves some, not all.
    for (const base of this.bases) {
      for (const owner of subdirectories(base)) {
        if (owner === this.owner || isOwnerAlive(owner)) continue;
        for (const jobId of subdirectories(join(base, owner))) {
          await killUntilEmpty(join(base, owner, jobId, 'cgroup.procs'));
          await removeDir(join(base, owner, jobId));
          jobs.add(`${owner}/${jobId}`);
        }
        await removeDir(join(base, owner));
      }
    }
    return jobs.size;
  }
}

function subdirectories(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name);
}

function isOwnerAlive(owner: string): boolean {
  const match = /^(\d+)-(\d+)$/.exec(owner);
  if (!match) return false;
  return processStartTime(Number(match[1])) === match[2];
}

export type CgroupDetection = { hierarchy: CgroupHierarchy } | { missing: string };

function canCreate(dir: string, what: string): string | null {
  try {
    mkdirSync(dir, { recursive: true });
    return null;
  } catch (error) {
    const uid = process.getuid?.() ?? -1;
    return `cannot create the ${what} cgroup ${dir} (${errnoCode(error) ?? String(error)}): run the node as root or delegate that directory to uid ${uid}`;
  }
}

/** v2 needs the controllers enabled for the children of each directory on the way down. */
function enableV2Controllers(dir: string): string | null {
  const file = join(dir, 'cgroup.subtree_control');
  const enabled = new Set(readFileSync(file, 'utf8').trim().split(' '));
  const wanted = V2_CONTROLLERS.filter((c) => !enabled.has(c));
  if (wanted.length === 0) return null;
  try {
    writeFileSync(file, wanted.map((c) => `+${c}`).join(' '));
    return null;
  } catch (error) {
    return `cannot enable ${wanted.join(', ')} in ${file} (${errnoCode(error) ?? String(error)}): delegate a cgroup v2 subtree with these controllers`;
  }
}

/**
 * Finds a cgroup hierarchy this process can create job cgroups in: v2 when `root` is a cgroup2 mount
 * offering memory, pids and cpu; else the v1 memory, pids and cpu hierarchies (a hybrid machine's
 * `unified` mount without those controllers does not count). Says exactly what is missing otherwise.
 */
export function detectCgroups(root: string): CgroupDetection {
  const owner = ownerTag();
  if (owner === null) return { missing: 'cannot read /proc/self/stat (is /proc mounted?)' };
  const controllersFile = join(root, 'cgroup.controllers');
  if (existsSync(controllersFile)) {
    const offered = new Set(readFileSync(controllersFile, 'utf8').trim().split(' '));
    const absent = V2_CONTROLLERS.filter((c) => !offered.has(c));
    if (absent.length > 0) return { missing: `cgroup v2 at ${root} offers no ${absent.join(', ')} controller` };
    const base = join(root, CGROUP_DIR);
    const problem =
      enableV2Controllers(root) ??
      canCreate(join(base, owner), 'v2') ??
      enableV2Controllers(base) ??
      enableV2Controllers(join(base, owner));
    return problem === null ? { hierarchy: new CgroupHierarchy('v2', [base], owner) } : { missing: problem };
  }
  const absent = V1_CONTROLLERS.filter((c) => !existsSync(join(root, c, 'cgroup.procs')));
  if (absent.length > 0) {
    return { missing: `no cgroup v2 at ${root} and no cgroup v1 hierarchy for ${absent.join(', ')} under it` };
  }
  // In the order `create` expects: memory, pids, cpu.
  const bases = V1_CONTROLLERS.map((c) => join(root, c, CGROUP_DIR));
  for (const base of bases) {
    const problem = canCreate(join(base, owner), 'v1');
    if (problem !== null) return { missing: problem };
  }
  return { hierarchy: new CgroupHierarchy('v1', bases, owner) };
}
