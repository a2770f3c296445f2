import type { Counter, Histogram, Metrics } from '../metrics/metrics.ts';

export interface JobMetrics {
  /** Jobs that reached a final state, by role, state and reason (all from bounded enums). */
  readonly finished: Counter<'role' | 'state' | 'reason'>;
  /** Requests the executor refused before a job existed, by code. */
  readonly refused: Counter<'code'>;
  readonly duration: Histogram<'state'>;
}

const JOB_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

export function jobMetrics(metrics: Metrics): JobMetrics {
  return {
    finished: metrics.counter({
      name: 'remote_network_jobs_finished_total',
      help: 'Jobs that reached a final state, by role (orderer: we ordered it; executor: we ran it), state and reason.',
      labelNames: ['role', 'state', 'reason'],
    }),
    refused: metrics.counter({
      name: 'remote_network_job_requests_refused_total',
      help: 'Job requests this node refused as executor, by error code.',
      labelNames: ['code'],
    }),
    duration: metrics.histogram({
      name: 'remote_network_job_run_duration_seconds',
      help: 'Wall time of the jobs this node ran for peers, from start to end, by final state.',
      labelNames: ['state'],
      buckets: JOB_DURATION_BUCKETS,
    }),
  };
}
