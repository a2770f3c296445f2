import type { Counter, LabelValues, WithLabels } from './metrics.ts';

/**
 * A counter kept in memory, one number per label set. Both implementations count with it: the
 * no-op one because the API reads some counts back, the Prometheus one copies it into prom-client
 * at scrape time (so the exported value and the one the API shows are the same number).
 */
export class CounterValues<L extends string = never> implements Counter<L> {
  private readonly values = new Map<string, { readonly labels: LabelValues<L>; value: number }>();

  constructor(private readonly labelNames: readonly L[]) {}

  inc(...args: WithLabels<L, [amount?: number]>): void {
    const [labels, amount] = this.split(args);
    if (!Number.isFinite(amount) || amount < 0) throw new RangeError(`a counter only goes up (got ${amount})`);
    const key = this.keyOf(labels);
    const entry = this.values.get(key);
    if (entry) entry.value += amount;
    else this.values.set(key, { labels, value: amount });
  }

  value(...args: WithLabels<L, []>): number {
    const labels = (this.labelNames.length > 0 ? args[0] : {}) as LabelValues<L>;
    return this.values.get(this.keyOf(labels))?.value ?? 0;
  }

  entries(): Iterable<{ readonly labels: LabelValues<L>; readonly value: number }> {
    return this.values.values();
  }

  private split(args: readonly unknown[]): [LabelValues<L>, number] {
    if (this.labelNames.length === 0) return [{} as LabelValues<L>, (args[0] as number | undefined) ?? 1];
    return [args[0] as LabelValues<L>, (args[1] as number | undefined) ?? 1];
  }

  private keyOf(labels: LabelValues<L>): string {
    const [only] = this.labelNames;
    // Most counters have one label: no array to build per increment.
    if (this.labelNames.length === 1 && only !== undefined) return labels[only];
    return this.labelNames.map((name) => labels[name]).join('\u0000');
  }
}
