import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NETWORK_DURATION_BUCKETS } from '../src/node/metrics/metrics.ts';
import { NoopMetrics } from '../src/node/metrics/noop-metrics.ts';
import { PrometheusMetrics } from '../src/node/metrics/prometheus-metrics.ts';
import { startBenchNode } from './bench-node.ts';
import { type Figure, ms, percentile, ratio, timeOps } from './report.ts';

const OPS = 1_000_000;
const SCRAPES = 50;
const EXCHANGES = 300;
const EXCHANGE_WARM_UP = 1500;

const ns = (n: number) => `${n.toFixed(0)} ns`;

/** What one metric operation costs on a hot path: prom-client behind our interface, against the no-op default. */
function operationCosts(): Figure[] {
  const figures: Figure[] = [];
  for (const [name, target] of [
    ['counter inc (one label)', 200],
    ['histogram timer (start + stop, one label)', 2_000],
  ] as const) {
    const cost = (metrics: PrometheusMetrics | NoopMetrics) => {
      if (name.startsWith('counter')) {
        const counter = metrics.counter({ name: 'bench_total', help: 'bench', labelNames: ['outcome'] as const });
        const labels = { outcome: 'ok' };
        for (let i = 0; i < 100_000; i++) counter.inc(labels);
        return timeOps(OPS, () => counter.inc(labels));
      }
      const histogram = metrics.histogram({
        name: 'bench_seconds',
        help: 'bench',
        labelNames: ['outcome'] as const,
        buckets: NETWORK_DURATION_BUCKETS,
      });
      const labels = { outcome: 'ok' };
      for (let i = 0; i < 10_000; i++) histogram.startTimer()(labels);
      return timeOps(OPS / 10, () => histogram.startTimer()(labels));
    };
    const prom = cost(new PrometheusMetrics());
    const noop = cost(new NoopMetrics());
    figures.push({
      name,
      value: ns(prom),
      target: `≤ ${target} ns`,
      met: prom <= target,
      baseline: `no-op ${ns(noop)}, ${ratio(prom, noop)}`,
    });
  }
  return figures;
}

/** A scrape of a node that has connections and traffic, and the exchange latency with metrics on and off. */
async function nodeCosts(): Promise<Figure[]> {
  const dir = mkdtempSync(join(tmpdir(), 'rn-bench-metrics-'));
  const nodes = await Promise.all(
    ['on', 'off', 'peer'].map((name) =>
      startBenchNode(join(dir, name), { 'metrics.enabled': name === 'off' ? 'false' : 'true', 'peer_discovery.target_connections': '1' }),
    ),
  );
  const [on, off, peer] = nodes as [(typeof nodes)[number], (typeof nodes)[number], (typeof nodes)[number]];
  try {
    const exchangeP50 = async (node: typeof on) => {
      await node.connections.connect({ host: '127.0.0.1', port: peer.quicPort }, peer.peerId);
      const samples: number[] = [];
      for (let i = 0; i < EXCHANGE_WARM_UP + EXCHANGES; i++) {
        const start = performance.now();
        await node.connections.reexchange(peer.peerId);
        if (i >= EXCHANGE_WARM_UP) samples.push(performance.now() - start);
      }
      return percentile(samples, 50);
    };
    // One after the other against the same peer (its side costs the same in both).
    const withMetrics = await exchangeP50(on);
    const without = await exchangeP50(off);
    const exposition = on.metrics.exposition;
    if (!exposition) throw new Error('metrics are enabled on this node');
    const scrapes: number[] = [];
    let bytes = 0;
    for (let i = 0; i < SCRAPES; i++) {
      const start = performance.now();
      bytes = (await exposition.text()).length;
      scrapes.push(performance.now() - start);
    }
    const scrape = percentile(scrapes, 50);
    return [
      {
        name: 'identity re-exchange p50 with metrics',
        value: ms(withMetrics),
        target: '≤ 1.1x without',
        met: withMetrics <= without * 1.1,
        baseline: `without ${ms(without)}, ${ratio(withMetrics, without)}`,
      },
      { name: `GET /metrics text p50 (${(bytes / 1024).toFixed(0)} KiB)`, value: ms(scrape), target: '≤ 20 ms', met: scrape <= 20 },
    ];
  } finally {
    await Promise.all(nodes.map((node) => node.stop('bench finished')));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Metrics (prom-client behind the node's Metrics interface). */
export async function benchMetrics(): Promise<Figure[]> {
  return [...operationCosts(), ...(await nodeCosts())];
}
