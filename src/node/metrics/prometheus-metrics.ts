import { Counter as PromCounter, Gauge as PromGauge, Histogram as PromHistogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CounterValues } from './counter-values.ts';
import type {
  Counter,
  Gauge,
  Histogram,
  HistogramDefinition,
  LabelValues,
  MetricDefinition,
  Metrics,
  MetricsExposition,
  ObservedDefinition,
  WithLabels,
} from './metrics.ts';

/** Prefix of the Node.js process metrics prom-client collects (CPU, memory, event loop, GC). */
const PROCESS_METRICS_PREFIX = 'remote_network_';

let processRegistry: Registry | undefined;

/**
 * The process's own metrics, collected once per process: they describe the process, not a node,
 * and prom-client's collector installs a GC observer and an event-loop monitor that it never
 * removes, so one per node would pile up in a process that starts many (the tests).
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: PROCESS_METRICS_PREFIX });
  }
  return processRegistry;
}

/**
 * Metrics exported in the Prometheus text format through prom-client. Each node has its own
 * Registry, never prom-client's global one: tests run several nodes in one process, and two
 * nodes registering one name in a shared registry would throw (or mix their values). The scrape
 * adds the process metrics (CPU, memory, event loop, GC), shared by the nodes of one process.
 */
export class PrometheusMetrics implements Metrics {
  readonly registry = new Registry();
  readonly exposition: MetricsExposition;

  constructor() {
    const registry = this.registry;
    const process = processMetrics();
    this.exposition = { contentType: registry.contentType, text: () => Registry.merge([registry, process]).metrics() };
  }

  counter<L extends string = never>(definition: MetricDefinition<L>): Counter<L> {
    const values = new CounterValues<L>(definition.labelNames ?? []);
    new PromCounter<L>({
      ...this.common(definition),
      collect() {
        this.reset();
        for (const entry of values.entries()) this.inc(entry.labels, entry.value);
      },
    });
    return values;
  }

  gauge<L extends string = never>(definition: MetricDefinition<L>): Gauge<L> {
    const gauge = new PromGauge<L>(this.common(definition));
    return { set: (...args: WithLabels<L, [value: number]>) => applyWithLabels(definition, args, (l, v) => gauge.set(l, v)) };
  }

  histogram<L extends string = never>(definition: HistogramDefinition<L>): Histogram<L> {
    const histogram = new PromHistogram<L>({ ...this.common(definition), buckets: [...definition.buckets] });
    const observe = (...args: WithLabels<L, [value: number]>) => applyWithLabels(definition, args, (l, v) => histogram.observe(l, v));
    return {
      observe,
      startTimer: () => {
        const started = performance.now();
        return (...labels: WithLabels<L, []>) => {
          const seconds = (performance.now() - started) / 1000;
          histogram.observe((labels[0] ?? {}) as LabelValues<L>, seconds);
        };
      },
    };
  }

  observedGauge<L extends string = never>(definition: ObservedDefinition<L>): void {
    new PromGauge<L>({
      ...this.common(definition),
      collect() {
        this.reset();
        definition.observe((...args) => applyWithLabels(definition, args, (l, v) => this.set(l, v)));
      },
    });
  }

  observedCounter<L extends string = never>(definition: ObservedDefinition<L>): void {
    new PromCounter<L>({
      ...this.common(definition),
      collect() {
        this.reset();
        definition.observe((...args) => applyWithLabels(definition, args, (l, v) => this.inc(l, v)));
      },
    });
  }

  private common<L extends string>(definition: MetricDefinition<L>) {
    return { name: definition.name, help: definition.help, labelNames: definition.labelNames ?? [], registers: [this.registry] };
  }
}

/** Splits `(labels, value)` or `(value)` as the definition has labels or not. */
function applyWithLabels<L extends string>(
  definition: MetricDefinition<L>,
  args: readonly unknown[],
  apply: (labels: LabelValues<L>, value: number) => void,
): void {
  if ((definition.labelNames ?? []).length === 0) apply({} as LabelValues<L>, args[0] as number);
  else apply(args[0] as LabelValues<L>, args[1] as number);
}
