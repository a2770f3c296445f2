/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: any line it
 * does not recognise fails the parse. Written here because the npm parser (parse-prometheus-text-
 * format) merges the series of a labelled histogram into one and drops their labels, sums and
 * counts, which is exactly what these tests read.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly samples: readonly Sample[];
}

/** One series of a histogram: its labels (without `le`), cumulative buckets, sum and count. */
export interface HistogramSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly buckets: ReadonlyMap<number, number>;
  readonly sum: number;
  readonly count: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

export class ExpositionError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
  }
}

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, { name: string; type: MetricType; help: string; samples: Sample[] }>();
  let current: { name: string; type: MetricType; help: string; samples: Sample[] } | undefined;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, index) => {
    const n = index + 1;
    if (line.trim() === '') return;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const [, keyword, name = '', rest = ''] = meta;
      if (!METRIC_NAME.test(name)) throw new ExpositionError(n, `bad metric name ${name}`);
      let family = families.get(name);
      if (family && family !== current) throw new ExpositionError(n, `${name} is declared again after other metrics`);
      if (!family) {
        family = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, family);
      }
      if (keyword === 'TYPE') {
        if (!TYPES.includes(rest as MetricType)) throw new ExpositionError(n, `unknown type ${rest}`);
        if (family.samples.length > 0) throw new ExpositionError(n, `TYPE of ${name} after its samples`);
        family.type = rest as MetricType;
      } else {
        family.help = rest.replace(/\\(\\|n)/g, (_m, c: string) => (c === 'n' ? '\n' : '\\'));
      }
      current = family;
      return;
    }
    if (line.startsWith('#')) return;
    const sample = parseSample(line, n);
    const family = current && belongsTo(sample.name, current) ? current : undefined;
    if (!family) throw new ExpositionError(n, `sample ${sample.name} outside its family (no TYPE line before it)`);
    family.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === 'histogram') histogramSeries(family);
  return families;
}

function belongsTo(sampleName: string, family: { name: string; type: MetricType }): boolean {
  if (sampleName === family.name) return family.type !== 'histogram';
  if (family.type === 'histogram') return [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`].includes(sampleName);
  if (family.type === 'summary') return [`${family.name}_sum`, `${family.name}_count`].includes(sampleName);
  return false;
}

function parseSample(line: string, n: number): Sample {
  const head = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{|\s)/.exec(line);
  if (!head?.[1]) throw new ExpositionError(n, `not a sample: ${line}`);
  const name = head[1];
  let at = name.length;
  const labels: Record<string, string> = {};
  if (line[at] === '{') {
    at += 1;
    while (line[at] !== '}') {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(at));
      if (!label?.[1] || !LABEL_NAME.test(label[1])) throw new ExpositionError(n, `bad label at column ${at + 1}`);
      at += label[0].length;
      let value = '';
      for (;;) {
        const c = line[at];
        if (c === undefined) throw new ExpositionError(n, 'unterminated label value');
        at += 1;
        if (c === '"') break;
        if (c === '\\') {
          const escaped = line[at];
          at += 1;
          if (escaped === 'n') value += '\n';
          else if (escaped === '\\' || escaped === '"') value += escaped;
          else throw new ExpositionError(n, `bad escape \\${escaped ?? ''}`);
        } else value += c;
      }
      if (Object.hasOwn(labels, label[1])) throw new ExpositionError(n, `label ${label[1]} twice`);
      labels[label[1]] = value;
      if (line[at] === ',') at += 1;
      else if (line[at] !== '}') throw new ExpositionError(n, `expected , or } at column ${at + 1}`);
    }
    at += 1;
  }
  const rest = line.slice(at).trim().split(/\s+/);
  if (rest.length < 1 || rest.length > 2) throw new ExpositionError(n, `expected a value and an optional timestamp: ${line}`);
  const value = parseValue(rest[0] ?? '', n);
  if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) throw new ExpositionError(n, `bad timestamp ${rest[1]}`);
  return { name, labels, value };
}

/** A float as Prometheus reads it (Go's ParseFloat: Inf and NaN in any case; prom-client writes `Nan`). */
function parseValue(text: string, n: number): number {
  const word = text.toLowerCase();
  if (word === '+inf' || word === 'inf') return Infinity;
  if (word === '-inf') return -Infinity;
  if (word === 'nan') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new ExpositionError(n, `bad value ${text}`);
  return Number(text);
}

const seriesKey = (labels: Readonly<Record<string, string>>) =>
  JSON.stringify(
    Object.entries(labels)
      .filter(([k]) => k !== 'le')
      .sort(([a], [b]) => a.localeCompare(b)),
  );

/** The series of a histogram family, checked: cumulative buckets ending in +Inf equal to the count. */
export function histogramSeries(family: MetricFamily): HistogramSeries[] {
  if (family.type !== 'histogram') throw new Error(`${family.name} is a ${family.type}, not a histogram`);
  const series = new Map<string, { labels: Record<string, string>; buckets: Map<number, number>; sum?: number; count?: number }>();
  for (const s of family.samples) {
    const key = seriesKey(s.labels);
    let entry = series.get(key);
    if (!entry) {
      const labels = Object.fromEntries(Object.entries(s.labels).filter(([k]) => k !== 'le'));
      entry = { labels, buckets: new Map() };
      series.set(key, entry);
    }
    if (s.name.endsWith('_bucket')) {
      const le = s.labels.le;
      if (le === undefined) throw new Error(`${family.name}: a bucket without le`);
      entry.buckets.set(parseValue(le, 0), s.value);
    } else if (s.name.endsWith('_sum')) entry.sum = s.value;
    else entry.count = s.value;
  }
  return [...series.values()].map((entry) => {
    if (entry.sum === undefined || entry.count === undefined) throw new Error(`${family.name}: a series without _sum or _count`);
    const bounds = [...entry.buckets.keys()].sort((a, b) => a - b);
    if (bounds.at(-1) !== Infinity) throw new Error(`${family.name}: no +Inf bucket`);
    let previous = 0;
    for (const bound of bounds) {
      const count = entry.buckets.get(bound) ?? 0;
      if (count < previous) throw new Error(`${family.name}: buckets are not cumulative`);
      previous = count;
    }
    if (entry.buckets.get(Infinity) !== entry.count) throw new Error(`${family.name}: the +Inf bucket is not the count`);
    return { labels: entry.labels, buckets: entry.buckets, sum: entry.sum, count: entry.count };
  });
}
