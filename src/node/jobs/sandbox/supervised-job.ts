import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../../base/logger.ts';
import { SandboxFailedError } from './errors.ts';
import type { ExitReason, RunningJob, SandboxResult } from './sandbox.ts';

/** How often a dying tree is checked during the grace period. */
const GRACE_POLL_MS = 10;

/** The processes of one job, however the sandbox groups them (a cgroup, or a process group). */
export interface ProcessTree {
  /** Sends `signal` to every process of the job except `except` (a supervisor that must outlive its child). */
  signal(signal: NodeJS.Signals, except?: number): void;
  isEmpty(): boolean;
  /** SIGKILLs what is left until nothing is (`spare` last); false if processes survived. */
  killAll(spare?: number): Promise<boolean>;
  /** Processes the kernel OOM-killed (0 without a memory cgroup). */
  oomKills(): number;
  /** Releases what the tree holds (removes the cgroup). */
  release(): Promise<void>;
}

export interface SupervisionOptions {
  readonly child: ChildProcess;
  readonly tree: ProcessTree;
  readonly cgroupDir: string | null;
  readonly stdin: Buffer | null;
  readonly wallTimeMs: number;
  readonly outputBytes: number;
  readonly graceMs: number;
  /** The pid that gets no SIGTERM and the last SIGKILL (bubblewrap's monitor: killed first it would SIGKILL the job without grace and orphan its init). */
  readonly spareOnTerm?: number;
  /** bubblewrap reports a signalled job as exit 128 + signal number: turn that back into the signal. */
  readonly exitCodeCarriesSignal: boolean;
  readonly onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  readonly logger: Logger;
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]),
);

/** Watches one started job: output cap, wall time, cancel, and the result once no process is left. */
export class SupervisedJob implements RunningJob {
  readonly pid: number;
  readonly cgroupDir: string | null;
  readonly done: Promise<SandboxResult>;
  private readonly startedAt = performance.now();
  private stopReason: ExitReason | null = null;
  private stopping: Promise<void> | null = null;
  private finished = false;
  private captured = 0;
  private stdoutBytes = 0;
  private stderrBytes = 0;
  private truncated = false;
  private exit: { code: number | null; signal: NodeJS.Signals | null; at: number } | null = null;
  private readonly wallTimer: NodeJS.Timeout;

  constructor(private readonly options: SupervisionOptions) {
    const { child } = options;
    if (child.pid === undefined) throw new SandboxFailedError('the sandbox process did not start');
    this.pid = child.pid;
    this.cgroupDir = options.cgroupDir;
    this.wallTimer = setTimeout(() => void this.stop('TIMEOUT'), options.wallTimeMs);
    child.stdout?.on('data', (chunk: Buffer) => this.output('stdout', chunk));
    child.stderr?.on('data', (chunk: Buffer) => this.output('stderr', chunk));
    if (child.stdin) {
      // A job that does not read its stdin closes the pipe early (EPIPE): that is its business.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.stdin ?? undefined);
    }
    this.done = new Promise<SandboxResult>((resolve, reject) => {
      child.once('error', (error) => {
        clearTimeout(this.wallTimer);
        reject(new SandboxFailedError(`the sandbox process failed: ${error.message}`, { cause: error }));
      });
      child.once('exit', (code, signal) => {
        this.exit = { code, signal, at: performance.now() };
        // The first process is gone; whatever it left behind goes too (zero processes left).
        void options.tree.killAll();
      });
      child.once('close', () => {
        this.finish().then(resolve, reject);
      });
    });
  }

  cancel(): Promise<SandboxResult> {
    void this.stop('CANCELLED');
    return this.done;
  }

  private output(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.truncated) return;
    const room = this.options.outputBytes - this.captured;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.captured += kept.length;
    if (stream === 'stdout') this.stdoutBytes += kept.length;
    else this.stderrBytes += kept.length;
    if (kept.length > 0) {
      try {
        this.options.onOutput(stream, kept);
      } catch (error) {
        this.options.logger.error({ err: error }, 'job output handler failed');
      }
    }
    if (kept.length < chunk.length) {
      this.truncated = true;
      void this.stop('OUTPUT_LIMIT');
    }
  }

  /** SIGTERM to every process, the grace period, then SIGKILL to what is left. The first reason wins. */
  private stop(reason: ExitReason): Promise<void> {
    if (this.finished || this.exit !== null) return this.stopping ?? Promise.resolve();
    if (this.stopping) return this.stopping;
    this.stopReason = reason;
    const { tree, graceMs, spareOnTerm } = this.options;
    this.stopping = (async () => {
      tree.signal('SIGTERM', spareOnTerm);
      const deadline = performance.now() + graceMs;
      while (this.exit === null && !tree.isEmpty() && performance.now() < deadline) await delay(GRACE_POLL_MS);
      const clean = await tree.killAll(spareOnTerm);
      if (!clean) this.options.logger.error({ pid: this.pid }, 'job processes survived SIGKILL');
      // A stop right after the start can come before the first process joined its cgroup (the
      // cgroup was empty, so nothing above reached it): that process is killed itself, or it
      // would join and run its full course.
      if (this.exit === null) {
        this.options.child.kill('SIGKILL');
        await new Promise<void>((resolve) => (this.exit !== null ? resolve() : this.options.child.once('exit', () => resolve())));
        await tree.killAll();
      }
    })();
    return this.stopping;
  }

  private async finish(): Promise<SandboxResult> {
    clearTimeout(this.wallTimer);
    const { tree } = this.options;
    await this.stopping;
    const clean = await tree.killAll();
    if (!clean) this.options.logger.error({ pid: this.pid }, 'job processes survived SIGKILL');
    const oomKills = tree.oomKills();
    await tree.release();
    this.finished = true;
    const exit = this.exit ?? { code: null, signal: null, at: performance.now() };
    let { code: exitCode, signal } = exit;
    if (this.options.exitCodeCarriesSignal && exitCode !== null && exitCode > 128 && SIGNAL_NAMES.has(exitCode - 128)) {
      signal = SIGNAL_NAMES.get(exitCode - 128) ?? null;
      exitCode = null;
    }
    const reason: ExitReason = this.stopReason ?? (oomKills > 0 ? 'OOM' : signal !== null ? 'SIGNALED' : 'EXITED');
    return {
      reason,
      exitCode,
      signal,
      durationMs: exit.at - this.startedAt,
      stdoutBytes: this.stdoutBytes,
      stderrBytes: this.stderrBytes,
      truncated: this.truncated,
    };
  }
}
