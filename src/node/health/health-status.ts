/**
 * How well one part of the node works. A part reports OK or what is wrong; the node's status is
 * its worst part's, so a new subsystem adds a part without changing what a status means.
 */
export type HealthStatus = 'OK' | 'DEGRADED' | 'FAILING';

const RANK: Record<HealthStatus, number> = { OK: 0, DEGRADED: 1, FAILING: 2 };

/** One part of the node's health (storage today; others add theirs). */
export interface HealthPart {
  readonly status: HealthStatus;
}

export function worstStatus(statuses: Iterable<HealthStatus>): HealthStatus {
  let worst: HealthStatus = 'OK';
  for (const status of statuses) if (RANK[status] > RANK[worst]) worst = status;
  return worst;
}
