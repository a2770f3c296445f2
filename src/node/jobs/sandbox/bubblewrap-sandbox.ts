import { spawn, spawnSync } from 'node:child_process';
import type { Logger } from '../../base/logger.ts';
import { bubblewrapArgs, systemBinds } from './bubblewrap-args.ts';
import { type CgroupHierarchy, type CgroupVersion, type JobCgroup, detectCgroups } from './cgroups.ts';
import { InvalidJobSpecError, SandboxFailedError, SandboxUnavailableError } from './errors.ts';
import type { JobSandbox, RunningJob, SandboxOptions, SandboxSpec } from './sandbox.ts';
import { checkSpec } from './spec-check.ts';
import { type ProcessTree, SupervisedJob } from './supervised-job.ts';
import { findTool } from './tools.ts';

const OPT_OUT = 'set `[jobs] sandbox = none` to run jobs without a sandbox (explicit opt-out)';
/** The trial run at start: far longer than bwrap needs (~20 ms), short enough not to stall a start. */
const TRIAL_TIMEOUT_MS = 10_000;
/**
 * Where the root wrapper binds the workspace in its private mount namespace: bwrap runs as the job
 * user and must reach its source, and the real workspace may sit under directories only root can
 * enter (a 0700 data dir). /tmp exists everywhere and is world-searchable; the job never sees it
 * (bwrap gives the job its own /tmp).
 */
const WORKSPACE_ALIAS = '/tmp';
/** Exit status of the wrapper when it could not put the job in its cgroup or bind its workspace. */
const WRAPPER_FAILED = 125;

/**
 * The wrapper the node spawns (as root or as itself): joins the job's cgroups before anything else
 * runs (so no fork escapes them), binds the workspace when root, then execs the rest of the chain
 * (prlimit → setpriv → bwrap → job) in the same process.
 * Arguments: <count> <cgroup.procs files…> [--bind <workspace>] <command…>
 */
const WRAPPER_SCRIPT = [
  'n=$1; shift',
  `while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "remote-network sandbox: cannot join cgroup $1" >&2; exit ${WRAPPER_FAILED}; }; shift; n=$((n-1)); done`,
  `if [ "$1" = --bind ]; then "$2" --bind -- "$3" ${WORKSPACE_ALIAS} || { echo "remote-network sandbox: cannot bind the workspace" >&2; exit ${WRAPPER_FAILED}; }; shift 3; fi`,
  'exec "$@"',
].join('\n');
/** The helpers' PATH (the job's own environment is set by bwrap --clearenv/--setenv). */
const WRAPPER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

interface Tools {
  sh: string;
  bwrap: string;
  setpriv: string;
  prlimit: string;
  /** Only when the node is root. */
  unshare: string | null;
  mount: string | null;
}

class CgroupTree implements ProcessTree {
  constructor(private readonly cgroup: JobCgroup) {}
  signal(signal: NodeJS.Signals, except?: number): void {
    this.cgroup.signal(signal, except);
  }
  isEmpty(): boolean {
    return this.cgroup.pids().length === 0;
  }
  killAll(spare?: number): Promise<boolean> {
    return this.cgroup.killAll(spare);
  }
  oomKills(): number {
    return this.cgroup.oomKills();
  }
  release(): Promise<void> {
    return this.cgroup.remove();
  }
}

class BubblewrapSandbox implements JobSandbox {
  readonly kind = 'bubblewrap';
  private readonly systemArgs = systemBinds();

  constructor(
    readonly cgroups: CgroupVersion,
    readonly jobUser: { readonly uid: number; readonly gid: number },
    private readonly asRoot: boolean,
    private readonly tools: Tools,
    private readonly hierarchy: CgroupHierarchy,
    private readonly graceMs: number,
    private readonly logger: Logger,
  ) {}

  private createCgroup(spec: SandboxSpec): JobCgroup {
    try {
      return this.hierarchy.create(spec.jobId, spec.limits);
    } catch (error) {
      if (error instanceof Error && 'code' in error && error.code === 'EEXIST') {
        throw new InvalidJobSpecError(`job ${spec.jobId} is already running in this sandbox`);
      }
      throw new SandboxFailedError(`cannot create the cgroup of job ${spec.jobId}: ${String(error)}`, { cause: error });
    }
  }

  close(): Promise<void> {
    this.hierarchy.close();
    return Promise.resolve();
  }

  start(spec: SandboxSpec, onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void): RunningJob {
    checkSpec(spec);
    const cgroup = this.createCgroup(spec);
    const { tools, jobUser } = this;
    const bind = this.asRoot && tools.mount ? ['--bind', tools.mount, spec.workspace] : [];
    const chain = [
      tools.prlimit,
      `--fsize=${spec.limits.outputFileBytes}`,
      '--core=0',
      '--',
      tools.setpriv,
      ...(this.asRoot ? ['--reuid', String(jobUser.uid), '--regid', String(jobUser.gid), '--clear-groups'] : []),
      '--no-new-privs',
      '--',
      tools.bwrap,
      ...bubblewrapArgs(spec, this.systemArgs, this.asRoot ? WORKSPACE_ALIAS : spec.workspace),
    ];
    const wrapper = ['-c', WRAPPER_SCRIPT, 'sh', String(cgroup.procsFiles.length), ...cgroup.procsFiles, ...bind, ...chain];
    const [command, args] =
      this.asRoot && tools.unshare
        ? [tools.unshare, ['--mount', '--propagation', 'private', '--', tools.sh, ...wrapper]]
        : [tools.sh, wrapper];
    let child;
    try {
      child = spawn(command, args, { env: WRAPPER_ENV, stdio: [spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    } catch (error) {
      void cgroup.remove();
      throw error;
    }
    return new SupervisedJob({
      child,
      tree: new CgroupTree(cgroup),
      cgroupDir: cgroup.listDir,
      stdin: spec.stdin,
      wallTimeMs: spec.limits.wallTimeMs,
      outputBytes: spec.limits.outputBytes,
      graceMs: this.graceMs,
      spareOnTerm: child.pid,
      exitCodeCarriesSignal: true,
      onOutput,
      logger: this.logger.child({ jobId: spec.jobId }),
    });
  }
}

function findTools(options: SandboxOptions, asRoot: boolean): { tools: Tools } | { missing: string[] } {
  const found = {
    sh: findTool('/bin/sh'),
    bwrap: findTool(options.bwrapPath ?? 'bwrap'),
    setpriv: findTool('setpriv'),
    prlimit: findTool('prlimit'),
    unshare: asRoot ? findTool('unshare') : null,
    mount: asRoot ? findTool('mount') : null,
  };
  const missing: string[] = [];
  if (!found.bwrap) missing.push(`bubblewrap (${options.bwrapPath ?? '`bwrap` on PATH'} not found; Debian package bubblewrap)`);
  if (!found.sh) missing.push('/bin/sh');
  const needed: Array<'setpriv' | 'prlimit' | 'unshare' | 'mount'> = [
    'setpriv',
    'prlimit',
    ...(asRoot ? (['unshare', 'mount'] as const) : []),
  ];
  for (const name of needed) {
    if (!found[name]) missing.push(`${name} (util-linux)`);
  }
  if (missing.length > 0 || !found.sh || !found.bwrap || !found.setpriv || !found.prlimit) return { missing };
  return {
    tools: { sh: found.sh, bwrap: found.bwrap, setpriv: found.setpriv, prlimit: found.prlimit, unshare: found.unshare, mount: found.mount },
  };
}

/** Runs bwrap once as the job user: unprivileged user namespaces may be disabled (sysctl, AppArmor). */
function trialRun(tools: Tools, asRoot: boolean, user: { uid: number; gid: number }): string | null {
  const drop = asRoot ? ['--reuid', String(user.uid), '--regid', String(user.gid), '--clear-groups'] : [];
  const result = spawnSync(
    tools.setpriv,
    [...drop, '--no-new-privs', '--', tools.bwrap, '--unshare-all', '--die-with-parent', '--ro-bind', '/', '/', '--', '/bin/true'],
    { env: WRAPPER_ENV, timeout: TRIAL_TIMEOUT_MS, encoding: 'utf8' },
  );
  if (result.status === 0) return null;
  const detail = result.error?.message ?? (result.stderr.trim() || `exit ${result.status ?? result.signal}`);
  return `bubblewrap cannot make a sandbox as uid ${user.uid} (${detail}); unprivileged user namespaces may be disabled (kernel.unprivileged_userns_clone, AppArmor)`;
}

export async function createBubblewrapSandbox(options: SandboxOptions, cgroupRoot: string, logger: Logger): Promise<JobSandbox> {
  const asRoot = process.getuid?.() === 0;
  const jobUser = asRoot ? { uid: options.uid, gid: options.gid } : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const found = findTools(options, asRoot);
  if ('missing' in found) throw new SandboxUnavailableError(`no job sandbox: missing ${found.missing.join(', ')}; ${OPT_OUT}`);
  const trial = trialRun(found.tools, asRoot, jobUser);
  if (trial !== null) throw new SandboxUnavailableError(`no job sandbox: ${trial}; ${OPT_OUT}`);
  const cgroups = detectCgroups(cgroupRoot);
  if ('missing' in cgroups) throw new SandboxUnavailableError(`no job sandbox: no usable cgroups (${cgroups.missing}); ${OPT_OUT}`);
  const { hierarchy } = cgroups;
  const stale = await hierarchy.removeStale();
  if (stale > 0) logger.warn({ cgroups: stale }, 'removed job cgroups left by a node that stopped mid-job (their processes were killed)');
  logger.info({ sandbox: 'bubblewrap', cgroups: hierarchy.version, uid: jobUser.uid, asRoot }, 'job sandbox ready');
  return new BubblewrapSandbox(hierarchy.version, jobUser, asRoot, found.tools, hierarchy, options.graceMs, logger);
}
