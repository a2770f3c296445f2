import { availableParallelism } from 'node:os';
import { InvalidJobSpecError } from './errors.ts';

/** What one job may use. The job manager fills it from the service's limits, bounded by the node's maxima. */
export interface JobLimits {
  /** cgroup memory limit, swap included (v1 memory.limit_in_bytes and memory.memsw.limit_in_bytes; v2 memory.max, memory.swap.max 0). */
  memoryBytes: number;
  /** cgroup pids.max: processes and threads of the job at once. */
  pids: number;
  /** CPU quota in percent of one core, 1..100 × cores (v1 cpu.cfs_quota_us / cpu.cfs_period_us; v2 cpu.max). */
  cpuPercent: number;
  /** The whole tree is stopped after this. */
  wallTimeMs: number;
  /** stdout + stderr bytes captured in total; past it the job is stopped with reason OUTPUT_LIMIT. */
  outputBytes: number;
  /** Largest file the job may write (RLIMIT_FSIZE: a bigger write fails with SIGXFSZ / EFBIG). */
  outputFileBytes: number;
  /** false: the job gets its own network namespace with only `lo`. */
  network: boolean;
}

/** Below these a job cannot even start a shell; above them a typo would disable the limit. */
export const MIN_MEMORY_BYTES = 4 * 1024 * 1024;
export const MAX_PIDS = 1 << 22;
export const MAX_WALL_TIME_MS = 7 * 24 * 3600 * 1000;
/** CFS period of a job's CPU quota (the kernel default). */
export const CPU_PERIOD_US = 100_000;

function checkInteger(value: number, what: string, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidJobSpecError(`${what} must be an integer in ${min}..${max}, got ${value}`);
  }
}

/** Refuses limits a cgroup could not express (so a bad number never means "no limit"). */
export function checkLimits(limits: JobLimits): void {
  checkInteger(limits.memoryBytes, 'limits.memoryBytes', MIN_MEMORY_BYTES, Number.MAX_SAFE_INTEGER);
  checkInteger(limits.pids, 'limits.pids', 1, MAX_PIDS);
  checkInteger(limits.cpuPercent, 'limits.cpuPercent', 1, 100 * availableParallelism());
  checkInteger(limits.wallTimeMs, 'limits.wallTimeMs', 1, MAX_WALL_TIME_MS);
  checkInteger(limits.outputBytes, 'limits.outputBytes', 0, Number.MAX_SAFE_INTEGER);
  checkInteger(limits.outputFileBytes, 'limits.outputFileBytes', 0, Number.MAX_SAFE_INTEGER);
  if (typeof limits.network !== 'boolean') throw new InvalidJobSpecError('limits.network must be a boolean');
}
