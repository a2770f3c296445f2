import type { Logger } from '../../base/logger.ts';
import { createBubblewrapSandbox } from './bubblewrap-sandbox.ts';
import { InvalidJobSpecError } from './errors.ts';
import type { JobLimits } from './limits.ts';
import { createUnsandboxed } from './unsandboxed.ts';

export type SandboxKind = 'bubblewrap' | 'none';
export type ExitReason = 'EXITED' | 'SIGNALED' | 'OOM' | 'TIMEOUT' | 'OUTPUT_LIMIT' | 'CANCELLED';

export interface SandboxSpec {
  /** 32 hex chars (128-bit random); names the cgroup. */
  jobId: string;
  /** Absolute host path, from the operator's service definition. */
  executable: string;
  args: readonly string[];
  /** Host directory made by prepareWorkspace; the job sees it read-write as its cwd (`/job` in bubblewrap). */
  workspace: string;
  stdin: Buffer | null;
  /** The whole environment of the job (nothing of the node's is passed on). */
  env: Readonly<Record<string, string>>;
  limits: JobLimits;
}

export interface SandboxResult {
  reason: ExitReason;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  /** Bytes the job wrote, captured up to the cap. */
  stdoutBytes: number;
  stderrBytes: number;
  /** Output cut at limits.outputBytes. */
  truncated: boolean;
}

export interface RunningJob {
  readonly pid: number;
  /** The cgroup whose `cgroup.procs` lists every process of the job (v1: its pids hierarchy directory); null with kind 'none'. Removed when `done` resolves. */
  readonly cgroupDir: string | null;
  /** Never rejects for job failures; `reason` says why it ended. Rejects (SANDBOX_FAILED) only if the sandbox itself could not run. */
  readonly done: Promise<SandboxResult>;
  /** SIGTERM to every process of the job, `graceMs`, then SIGKILL to every pid left in its cgroup; resolves when none is left. */
  cancel(): Promise<SandboxResult>;
}

export interface JobSandbox {
  readonly kind: SandboxKind;
  /** null only with kind 'none'. */
  readonly cgroups: 'v1' | 'v2' | null;
  /** Who the job runs as: the configured uid/gid when the node is root, else the node's own (pass it to prepareWorkspace). */
  readonly jobUser: { readonly uid: number; readonly gid: number };
  /** Throws InvalidJobSpecError for a bad spec, before anything runs. */
  start(spec: SandboxSpec, onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void): RunningJob;
  /** Tidies up at node stop (this process's empty cgroup directories); call it after the last job's `done`. Starting again afterwards still works. */
  close(): Promise<void>;
}

export interface SandboxOptions {
  /** Config `[jobs] sandbox`. 'auto' takes the best sandbox the machine offers (today bubblewrap) and refuses to run without one. */
  mode: 'auto' | 'bubblewrap' | 'none';
  /** Unprivileged ids jobs run as when the node is root (default 65534); never 0. */
  uid: number;
  gid: number;
  /** SIGTERM → SIGKILL. */
  graceMs: number;
  /** Default /sys/fs/cgroup; jobs get <controller>/remote-network/<owner>/<jobId>. */
  cgroupRoot?: string;
  /** Default: `bwrap` on PATH. */
  bwrapPath?: string;
}

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';
/** Longest grace a stop may take: past it SIGKILL follows anyway. */
const MAX_GRACE_MS = 60_000;

function checkOptions(options: SandboxOptions): void {
  for (const [name, id] of [
    ['uid', options.uid],
    ['gid', options.gid],
  ] as const) {
    if (!Number.isSafeInteger(id) || id <= 0 || id >= 2 ** 32 - 1) {
      throw new InvalidJobSpecError(`sandbox ${name} must be a non-root id (1..4294967294), got ${id}`);
    }
  }
  if (!Number.isSafeInteger(options.graceMs) || options.graceMs < 0 || options.graceMs > MAX_GRACE_MS) {
    throw new InvalidJobSpecError(`sandbox graceMs must be an integer in 0..${MAX_GRACE_MS}, got ${options.graceMs}`);
  }
}

/**
 * Detects what the machine offers (bwrap runs as the job user? cgroup v2 controllers or v1
 * hierarchies writable?) and returns the sandbox jobs run in. Throws SandboxUnavailableError, saying
 * what is missing, when mode is auto/bubblewrap and no sandbox can be made. Mode 'none' runs jobs
 * unsandboxed (a warning is logged).
 */
export async function createSandbox(options: SandboxOptions, logger: Logger): Promise<JobSandbox> {
  checkOptions(options);
  if (options.mode === 'none') return createUnsandboxed(options, logger);
  return createBubblewrapSandbox(options, options.cgroupRoot ?? DEFAULT_CGROUP_ROOT, logger);
}
