import type { Config } from '../config/schema.ts';
import type { ServiceLimits } from '../services/service.ts';
import type { JobLimits } from './sandbox/limits.ts';

type JobsConfig = Config['jobs'];

/** The most any service may give a job ([jobs] max_*): registration refuses more. */
export function maximumLimits(jobs: JobsConfig): Required<ServiceLimits> {
  return {
    memoryBytes: jobs.max_memory,
    pids: jobs.max_pids,
    cpuPercent: jobs.max_cpu_percent,
    wallTimeMs: jobs.max_wall_time * 1000,
    outputBytes: jobs.max_output_bytes,
    outputFileBytes: jobs.max_output_file_bytes,
    network: true,
  };
}

/**
 * A job's limits: the service's own, else the node's defaults, never above the node's maxima (a
 * service registered under higher maxima than today's config gets today's).
 */
export function jobLimits(service: ServiceLimits, jobs: JobsConfig): JobLimits {
  const max = maximumLimits(jobs);
  return {
    memoryBytes: Math.min(service.memoryBytes ?? jobs.default_memory, max.memoryBytes),
    pids: Math.min(service.pids ?? jobs.default_pids, max.pids),
    cpuPercent: Math.min(service.cpuPercent ?? jobs.default_cpu_percent, max.cpuPercent),
    wallTimeMs: Math.min(service.wallTimeMs ?? jobs.default_wall_time * 1000, max.wallTimeMs),
    outputBytes: Math.min(service.outputBytes ?? jobs.default_output_bytes, max.outputBytes),
    outputFileBytes: Math.min(service.outputFileBytes ?? jobs.default_output_file_bytes, max.outputFileBytes),
    network: service.network ?? false,
  };
}
