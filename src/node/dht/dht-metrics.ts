import { type Counter, type Histogram, type Metrics, NETWORK_DURATION_BUCKETS } from '../metrics/metrics.ts';
import type { InboundQueryCounter, KrpcGuardStats } from './krpc-guard.ts';

/** Our own DHT operations, as the adapter offers them. */
export type DhtOperation = 'get' | 'find' | 'put' | 'announce' | 'lookup';

export interface DhtMetrics {
  readonly bep42Violations: Counter;
  readonly inboundQueries: InboundQueryCounter;
  readonly operations: Counter<'operation' | 'outcome'>;
  readonly bep44Duration: Histogram<'operation' | 'outcome'>;
}

/** The DHT adapter's metrics; the guard's drop counts and the routing table are read at scrape time. */
export function dhtMetrics(
  metrics: Metrics,
  read: { readonly routingTableSize: () => number; readonly inbound: () => KrpcGuardStats },
): DhtMetrics {
  metrics.observedGauge({
    name: 'remote_network_dht_routing_table_nodes',
    help: 'Nodes in the DHT routing table.',
    observe: (record) => record(read.routingTableSize()),
  });
  metrics.observedCounter({
    name: 'remote_network_dht_inbound_datagrams_dropped_total',
    help: 'Inbound KRPC datagrams dropped by the strict checks before the DHT library saw them, by reason (since the DHT started).',
    labelNames: ['reason'],
    observe: (record) => {
      for (const [reason, count] of Object.entries(read.inbound().dropped)) record({ reason }, count);
    },
  });
  return {
    bep42Violations: metrics.counter({
      name: 'remote_network_dht_bep42_violations_total',
      help: 'Nodes seen whose id does not match their IP per BEP 42.',
    }),
    inboundQueries: metrics.counter({
      name: 'remote_network_dht_inbound_queries_total',
      help: 'Inbound KRPC queries that passed the checks, by method (other: not a BEP 5 or BEP 44 method) and outcome (answered, or failed inside the DHT library).',
      labelNames: ['method', 'outcome'],
    }),
    operations: metrics.counter({
      name: 'remote_network_dht_operations_total',
      help: 'DHT operations of this node (get, find, put: BEP 44; announce, lookup: BEP 5), by outcome (ok, timeout, error).',
      labelNames: ['operation', 'outcome'],
    }),
    bep44Duration: metrics.histogram({
      name: 'remote_network_dht_bep44_duration_seconds',
      help: 'Duration of BEP 44 mutable gets and puts (a put includes its get of the closest nodes).',
      labelNames: ['operation', 'outcome'],
      buckets: NETWORK_DURATION_BUCKETS,
    }),
  };
}
