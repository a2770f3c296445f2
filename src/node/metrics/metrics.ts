/**
 * The node's metrics contract. Components declare their metrics next to their code through this
 * interface (never through prom-client directly), so a component built alone gets the no-op
 * implementation and the node decides once whether anything is exported.
 *
 * Names follow the Prometheus conventions: `remote_network_<subsystem>_<what>_<unit>`, `_total` on
 * counters, base units (seconds, bytes). Label values must come from a bounded set (a protocol
 * name, an outcome), never from a peer id or an address.
 */

export type LabelValues<L extends string> = Readonly<Record<L, string>>;

/** The arguments of a metric operation: the label values first when the metric has labels. */
export type WithLabels<L extends string, Rest extends unknown[]> = [L] extends [never] ? Rest : [labels: LabelValues<L>, ...Rest];

export interface MetricDefinition<L extends string = never> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

export interface HistogramDefinition<L extends string = never> extends MetricDefinition<L> {
  /** Upper bounds of the buckets, in the metric's unit (seconds for durations). */
  readonly buckets: readonly number[];
}

/** Reports one value per label set; called at scrape time only. */
export type Observation<L extends string> = (record: (...args: WithLabels<L, [value: number]>) => void) => void;

export interface ObservedDefinition<L extends string = never> extends MetricDefinition<L> {
  /** Reads the current values from state the component keeps anyway (a map's size, a counter of its own). */
  readonly observe: Observation<L>;
}

/**
 * A monotonic count. Its value can be read back: a count the API also shows (hole punch
 * attempts, DHT lookups) has this one source, whatever implementation is in use.
 */
export interface Counter<L extends string = never> {
  inc(...args: WithLabels<L, [amount?: number]>): void;
  value(...args: WithLabels<L, []>): number;
}

export interface Gauge<L extends string = never> {
  set(...args: WithLabels<L, [value: number]>): void;
}

export interface Histogram<L extends string = never> {
  observe(...args: WithLabels<L, [value: number]>): void;
  /** Starts a timer; calling the result records the seconds elapsed (with the labels known by then). */
  startTimer(): (...args: WithLabels<L, []>) => void;
}

/** What `GET /metrics` serves. */
export interface MetricsExposition {
  readonly contentType: string;
  text(): Promise<string>;
}

export interface Metrics {
  counter<L extends string = never>(definition: MetricDefinition<L>): Counter<L>;
  gauge<L extends string = never>(definition: MetricDefinition<L>): Gauge<L>;
  histogram<L extends string = never>(definition: HistogramDefinition<L>): Histogram<L>;
  /** A gauge computed at scrape time (connections by state, known peers…). */
  observedGauge<L extends string = never>(definition: ObservedDefinition<L>): void;
  /** A counter another part already keeps (read at scrape time, so never counted twice). */
  observedCounter<L extends string = never>(definition: ObservedDefinition<L>): void;
  /** Null when nothing is exported. */
  readonly exposition: MetricsExposition | null;
}

/** Bucket bounds (seconds) for operations that take milliseconds to a few seconds over the network. */
export const NETWORK_DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
