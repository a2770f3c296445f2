/**
 * One token bucket per key (an address): `burst` tokens at most, refilled at `perSecond`. Keys
 * whose bucket has refilled completely carry no information and are forgotten, so the map holds
 * only keys that were active recently, and never more than `maxKeys` (the oldest go first: a
 * flood of fresh keys cannot grow it without bound).
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly options: {
      readonly burst: number;
      readonly perSecond: number;
      readonly maxKeys: number;
      readonly now?: () => number;
    },
  ) {}

  /** Takes one token for `key`; false (and nothing taken) when its bucket is empty. */
  take(key: string): boolean {
    return this.takeUpTo(key, 1) === 1;
  }

  /** Takes as many of `count` tokens as `key` has (whole ones); returns how many it took. */
  takeUpTo(key: string, count: number): number {
    const now = this.now();
    const bucket = this.buckets.get(key);
    const tokens = bucket ? this.refilled(bucket, now) : this.options.burst;
    const taken = Math.max(0, Math.min(count, Math.floor(tokens)));
    // A refused take changes nothing: retrying does not delay the refill, and costs no memory.
    if (taken === 0) return 0;
    this.buckets.delete(key);
    this.buckets.set(key, { tokens: tokens - taken, at: now });
    this.prune(now);
    return taken;
  }

  /** Whole tokens `key` has now (nothing taken). */
  available(key: string): number {
    const bucket = this.buckets.get(key);
    return Math.floor(bucket ? this.refilled(bucket, this.now()) : this.options.burst);
  }

  /** Keys currently tracked (for tests and stats). */
  get size(): number {
    return this.buckets.size;
  }

  private refilled(bucket: { tokens: number; at: number }, now: number): number {
    return Math.min(this.options.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.options.perSecond);
  }

  private prune(now: number): void {
    while (this.buckets.size > this.options.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done) break;
      this.buckets.delete(oldest.value);
    }
    // Forget the oldest entries that have refilled (insertion order = last use, oldest first).
    for (const [key, bucket] of this.buckets) {
      if (this.refilled(bucket, now) < this.options.burst) break;
      this.buckets.delete(key);
    }
  }

  private now(): number {
    return this.options.now?.() ?? performance.now();
  }
}
