import type { Counter, Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import { LIMIT_REASONS, type LimitReason } from '../quic/refusal.ts';

/**
 * Refusals and prunes since start, by reason, counted by whoever refuses or prunes (the inbound
 * limits before TLS, the connection manager after it), so the counts stay exact even where the
 * events are thinned out. The count is a metric (`remote_network_connection_limited_total`),
 * which the API reads back.
 */
export class LimitCounters {
  private readonly counts: Counter<'reason'>;

  constructor(metrics: Metrics = new NoopMetrics()) {
    this.counts = metrics.counter({
      name: 'remote_network_connection_limited_total',
      help: 'Connections refused or pruned by the connection limits, by reason (ip, subnet, pending_ip, pending, rate, capacity, pruned).',
      labelNames: ['reason'],
    });
  }

  count(reason: LimitReason): void {
    this.counts.inc({ reason });
  }

  /** Every reason, zeros included, in LIMIT_REASONS order. */
  list(): Array<{ reason: LimitReason; count: number }> {
    return LIMIT_REASONS.map((reason) => ({ reason, count: this.counts.value({ reason }) }));
  }
}
