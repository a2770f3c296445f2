/** Timing helpers and one printed line per figure: value, target, and ratio against a baseline. */

export function timeOps(iterations: number, fn: (i: number) => void): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn(i);
  return Number(process.hrtime.bigint() - start) / iterations; // ns per op
}

export interface Figure {
  readonly name: string;
  readonly value: string;
  readonly target?: string;
  readonly met?: boolean;
  readonly baseline?: string;
}

export function printSection(title: string, figures: readonly Figure[]): void {
  console.log(`\n## ${title}`);
  for (const f of figures) {
    const target = f.target ? `  target ${f.target} ${f.met === false ? 'MISSED' : 'met'}` : '';
    const baseline = f.baseline ? `  (${f.baseline})` : '';
    console.log(`- ${f.name}: ${f.value}${target}${baseline}`);
  }
}

export const us = (ns: number) => `${(ns / 1000).toFixed(1)} µs`;
export const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
export const ms = (n: number) => `${n.toFixed(2)} ms`;

export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}
