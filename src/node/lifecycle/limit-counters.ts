import { LIMIT_REASONS, type LimitReason } from '../quic/refusal.ts';

/**
 * Refusals and prunes since start, by reason, counted by whoever refuses or prunes (the inbound
 * limits before TLS, the connection manager after it), so the counts stay exact even where the
 * events are thinned out.
 */
export class LimitCounters {
  private readonly counts = new Map<LimitReason, number>(LIMIT_REASONS.map((reason) => [reason, 0]));

  count(reason: LimitReason): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
  }

  /** Every reason, zeros included, in LIMIT_REASONS order. */
  list(): Array<{ reason: LimitReason; count: number }> {
    return LIMIT_REASONS.map((reason) => ({ reason, count: this.counts.get(reason) ?? 0 }));
  }
}
