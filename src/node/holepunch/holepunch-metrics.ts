import { type Counter, type Histogram, type Metrics, NETWORK_DURATION_BUCKETS } from '../metrics/metrics.ts';

export interface HolePunchMetrics {
  readonly started: Counter;
  readonly attempts: Counter<'outcome'>;
  readonly duration: Histogram;
}

/** The hole puncher's metrics (the source of the API's holePunchStats too). */
export function holePunchMetrics(metrics: Metrics): HolePunchMetrics {
  return {
    started: metrics.counter({
      name: 'remote_network_holepunch_attempts_started_total',
      help: 'Hole punch attempts started (each ends as one of remote_network_holepunch_attempts_total).',
    }),
    attempts: metrics.counter({
      name: 'remote_network_holepunch_attempts_total',
      help: 'Hole punch attempts that ended, by outcome (succeeded: a direct connection replaced the relayed one).',
      labelNames: ['outcome'],
    }),
    duration: metrics.histogram({
      name: 'remote_network_holepunch_duration_seconds',
      help: 'Time from the start of a successful hole punch to the direct connection.',
      buckets: NETWORK_DURATION_BUCKETS,
    }),
  };
}
