import type { ConnectionState } from '../base/connection-state.ts';
import { type Counter, type Histogram, type Metrics, NETWORK_DURATION_BUCKETS } from '../metrics/metrics.ts';
import type { Direction } from '../quic/types.ts';

const STATES: readonly ConnectionState[] = ['CONNECTING', 'CONNECTED', 'IDLE', 'STALE'];
const DIRECTIONS: readonly Direction[] = ['inbound', 'outbound'];

export type DialOutcome = 'connected' | 'failed' | 'limited' | 'refused';

export interface ConnectionMetrics {
  readonly dials: Counter<'path' | 'outcome'>;
  readonly exchangeDuration: Histogram<'role' | 'outcome'>;
  readonly sentBytes: Counter<'protocol'>;
  readonly receivedBytes: Counter<'protocol'>;
}

/** The connection manager's metrics; the connection table is read at scrape time. */
export function connectionMetrics(
  metrics: Metrics,
  connections: () => Iterable<{ readonly state: ConnectionState; readonly direction: Direction }>,
): ConnectionMetrics {
  metrics.observedGauge({
    name: 'remote_network_connections',
    help: 'Connections tracked now, by lifecycle state (CONNECTING, CONNECTED, IDLE, STALE) and direction.',
    labelNames: ['state', 'direction'],
    observe: (record) => {
      const counts = new Map<string, number>();
      for (const c of connections()) counts.set(`${c.state} ${c.direction}`, (counts.get(`${c.state} ${c.direction}`) ?? 0) + 1);
      for (const state of STATES) {
        for (const direction of DIRECTIONS) record({ state, direction }, counts.get(`${state} ${direction}`) ?? 0);
      }
    },
  });
  return {
    dials: metrics.counter({
      name: 'remote_network_connection_dials_total',
      help: "Connections this node opened (direct or through a relay), by outcome: connected (the exchange done), failed, limited (our own connection cap), refused (the peer's limits).",
      labelNames: ['path', 'outcome'],
    }),
    exchangeDuration: metrics.histogram({
      name: 'remote_network_exchange_duration_seconds',
      help: 'Identity exchanges, by role (initiator: we dialled or re-exchanged) and outcome (ok, error).',
      labelNames: ['role', 'outcome'],
      buckets: NETWORK_DURATION_BUCKETS,
    }),
    sentBytes: metrics.counter({
      name: 'remote_network_protocol_sent_bytes_total',
      help: "Bytes of messages sent on streams, by protocol (the type of the stream's first message). Spliced relay circuits are counted by the relay metrics.",
      labelNames: ['protocol'],
    }),
    receivedBytes: metrics.counter({
      name: 'remote_network_protocol_received_bytes_total',
      help: "Bytes of messages received on streams, by protocol (the type of the stream's first message; other: no protocol of ours).",
      labelNames: ['protocol'],
    }),
  };
}
