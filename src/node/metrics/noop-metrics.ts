import { CounterValues } from './counter-values.ts';
import type { Counter, Gauge, Histogram, MetricDefinition, Metrics } from './metrics.ts';

const NOOP_GAUGE: Gauge<string> = { set: () => {} };
const NOOP_TIMER = () => {};
const NOOP_HISTOGRAM: Histogram<string> = { observe: () => {}, startTimer: () => NOOP_TIMER };

/**
 * The default: exports nothing, records no gauge or histogram and never calls an observation.
 * Counters still count (a number added in a map), because the API reads some of them back.
 */
export class NoopMetrics implements Metrics {
  readonly exposition = null;

  counter<L extends string = never>(definition: MetricDefinition<L>): Counter<L> {
    return new CounterValues<L>(definition.labelNames ?? []);
  }

  gauge<L extends string = never>(): Gauge<L> {
    return NOOP_GAUGE;
  }

  histogram<L extends string = never>(): Histogram<L> {
    return NOOP_HISTOGRAM as Histogram<L>;
  }

  observedGauge(): void {}

  observedCounter(): void {}
}
