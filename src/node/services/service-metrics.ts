import type { Counter, Metrics } from '../metrics/metrics.ts';

/**
 * The services' metrics, one function per side of service search (each side registers its own
 * names once per node).
 */

/** Searches other peers sent us: answered, or refused for the rate limit (rate_limited). */
export function searchesServedCounter(metrics: Metrics): Counter<'outcome'> {
  return metrics.counter({
    name: 'remote_network_service_searches_served_total',
    help: 'Service searches from other peers: answered, or refused for the rate limit (rate_limited).',
    labelNames: ['outcome'],
  });
}

/** Peers our own searches asked, by how each ended. */
export function searchPeersCounter(metrics: Metrics): Counter<'outcome'> {
  return metrics.counter({
    name: 'remote_network_service_search_peers_total',
    help: "Peers this node's service searches asked, by outcome (answered, failed, timed_out: no answer by the deadline).",
    labelNames: ['outcome'],
  });
}
