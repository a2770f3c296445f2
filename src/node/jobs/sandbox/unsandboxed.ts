import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../../base/logger.ts';
import { SandboxUnavailableError } from './errors.ts';
import type { JobSandbox, RunningJob, SandboxOptions, SandboxSpec } from './sandbox.ts';
import { checkSpec } from './spec-check.ts';
import { type ProcessTree, SupervisedJob } from './supervised-job.ts';
import { findTool } from './tools.ts';

const POLL_MS = 5;
const KILL_ROUNDS = 400;

function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: no process is left in the group.
  }
}

/**
 * Whether a process of the group is still alive. kill(-pgid, 0) also counts zombies: an orphan the
 * node cannot reap waits for PID 1, and a dead process is not one left running.
 */
function groupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // After the parenthesised name: state, ppid, pgrp.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

/** The job's process group (the job leads it): a process that calls setsid() leaves it, which is why this is no sandbox. */
class ProcessGroupTree implements ProcessTree {
  constructor(private readonly pgid: number) {}

  signal(signal: NodeJS.Signals): void {
    signalGroup(this.pgid, signal);
  }

  isEmpty(): boolean {
    return !groupAlive(this.pgid);
  }

  async killAll(): Promise<boolean> {
    for (let round = 0; round < KILL_ROUNDS; round++) {
      signalGroup(this.pgid, 'SIGKILL');
      if (!groupAlive(this.pgid)) return true;
      await delay(POLL_MS);
    }
    return this.isEmpty();
  }

  oomKills(): number {
    return 0;
  }

  release(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * `[jobs] sandbox = none`, chosen explicitly by the operator: a plain spawn in its own process group,
 * as the job user when the node is root, with RLIMIT_FSIZE, the wall time and the output cap. No
 * memory, pids or CPU limit, no filesystem or network isolation.
 */
class Unsandboxed implements JobSandbox {
  readonly kind = 'none';
  readonly cgroups = null;

  constructor(
    readonly jobUser: { readonly uid: number; readonly gid: number },
    private readonly asRoot: boolean,
    private readonly prlimit: string,
    private readonly graceMs: number,
    private readonly logger: Logger,
  ) {}

  close(): Promise<void> {
    return Promise.resolve();
  }

  start(spec: SandboxSpec, onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void): RunningJob {
    checkSpec(spec);
    const child = spawn(this.prlimit, [`--fsize=${spec.limits.outputFileBytes}`, '--core=0', '--', spec.executable, ...spec.args], {
      cwd: spec.workspace,
      env: { ...spec.env },
      detached: true,
      stdio: [spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(this.asRoot ? this.jobUser : {}),
    });
    return new SupervisedJob({
      child,
      tree: new ProcessGroupTree(child.pid ?? 0),
      cgroupDir: null,
      stdin: spec.stdin,
      wallTimeMs: spec.limits.wallTimeMs,
      outputBytes: spec.limits.outputBytes,
      graceMs: this.graceMs,
      exitCodeCarriesSignal: false,
      onOutput,
      logger: this.logger.child({ jobId: spec.jobId }),
    });
  }
}

export function createUnsandboxed(options: SandboxOptions, logger: Logger): JobSandbox {
  const prlimit = findTool('prlimit');
  if (prlimit === null)
    throw new SandboxUnavailableError('prlimit (util-linux) is not installed: even `[jobs] sandbox = none` needs it for RLIMIT_FSIZE');
  const asRoot = process.getuid?.() === 0;
  const jobUser = asRoot ? { uid: options.uid, gid: options.gid } : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  logger.warn(
    { sandbox: 'none', uid: jobUser.uid },
    'jobs run WITHOUT a sandbox ([jobs] sandbox = none): no filesystem, network, memory, pids or CPU isolation; only the wall time, output cap and file size limit apply',
  );
  return new Unsandboxed(jobUser, asRoot, prlimit, options.graceMs, logger);
}
