import { setBounded } from '../util/bounded-map.ts';
import { TokenBuckets } from '../util/token-buckets.ts';

/**
 * New hearsay entries one source may add per minute by default (a token bucket of this size): the
 * BitTorrent PEX norm (BEP 11: at most 50 added peers per message, one message a minute). Entries
 * the source names that we already know cost nothing. `[peer_discovery] hearsay_per_minute`.
 */
export const HEARSAY_PER_MINUTE = 50;
/** A source that has lost trust gets a tenth of that. */
const RATE_LIMITED_SHARE = 0.1;
/** Hearsay from one source waiting for verification at most, in minutes of its allowance. */
const PENDING_MINUTES = 2;
/** A source loses trust (rate-limited) after this many unverifiable entries, if they outnumber its verified ones 2:1. */
export const RATE_LIMIT_AFTER_UNVERIFIABLE = 10;
/** …and is disconnected after this many, at 4:1; its hearsay is refused for DISTRUST_MS. */
export const DISCONNECT_AFTER_UNVERIFIABLE = 30;
export const DISTRUST_MS = 60 * 60_000;
/** Sources remembered (the oldest forgotten first). */
const MAX_SOURCES = 4096;

export type TrustLevel = 'trusted' | 'rate_limited' | 'distrusted';

interface SourceRecord {
  pending: number;
  verified: number;
  unverifiable: number;
  level: TrustLevel;
  distrustedUntil: number;
}

export interface TrustChange {
  readonly level: TrustLevel;
  readonly verified: number;
  readonly unverifiable: number;
}

/**
 * How far the node believes what each peer tells it about other peers. Every source starts
 * trusted and may add HEARSAY_PER_MINUTE unknown peers a minute; the verification of each entry
 * (HearsayVerifier) reports back here, and a source whose entries mostly cannot be verified is
 * rate-limited, then distrusted (the caller disconnects it). Keyed by the TLS-proven peer id of
 * the connection the entries came over.
 */
export class PeerTrust {
  private readonly sources = new Map<string, SourceRecord>();
  /** The allowance: one bucket per source, at the trusted rate or (once it lost trust) a tenth of it. */
  private readonly buckets: Record<'trusted' | 'rate_limited', TokenBuckets>;

  constructor(
    private readonly perMinute: number = HEARSAY_PER_MINUTE,
    private readonly now: () => number = Date.now,
  ) {
    const bucket = (perMinute: number) => new TokenBuckets({ burst: perMinute, perSecond: perMinute / 60, maxKeys: MAX_SOURCES, now });
    this.buckets = { trusted: bucket(perMinute), rate_limited: bucket(Math.ceil(perMinute * RATE_LIMITED_SHARE)) };
  }

  /** New hearsay entries `source` may add right now. */
  allowance(source: string): number {
    const record = this.refreshed(source);
    if (record.level === 'distrusted') return 0;
    return Math.max(0, Math.min(this.buckets[record.level].available(source), PENDING_MINUTES * this.perMinute - record.pending));
  }

  /** `count` new entries from `source` were stored and wait for verification. */
  took(source: string, count: number): void {
    if (count <= 0) return;
    const record = this.refreshed(source);
    if (record.level !== 'distrusted') this.buckets[record.level].takeUpTo(source, count);
    record.pending += count;
  }

  /** An entry from `source` was verified (or could not be); returns the new level when it changed. */
  outcome(source: string, verified: boolean): TrustChange | undefined {
    const record = this.refreshed(source);
    record.pending = Math.max(0, record.pending - 1);
    if (verified) record.verified += 1;
    else record.unverifiable += 1;
    const level = this.levelFor(record);
    if (level === record.level || (record.level === 'distrusted' && this.now() < record.distrustedUntil)) return undefined;
    record.level = level;
    if (level === 'distrusted') record.distrustedUntil = this.now() + DISTRUST_MS;
    return { level, verified: record.verified, unverifiable: record.unverifiable };
  }

  level(source: string): TrustLevel {
    return this.sources.get(source) ? this.refreshed(source).level : 'trusted';
  }

  private levelFor(record: SourceRecord): TrustLevel {
    const { verified, unverifiable } = record;
    if (unverifiable >= DISCONNECT_AFTER_UNVERIFIABLE && unverifiable >= 4 * verified) return 'distrusted';
    if (unverifiable >= RATE_LIMIT_AFTER_UNVERIFIABLE && unverifiable >= 2 * verified) return 'rate_limited';
    return 'trusted';
  }

  private refreshed(source: string): SourceRecord {
    const now = this.now();
    let record = this.sources.get(source);
    if (!record) {
      record = { pending: 0, verified: 0, unverifiable: 0, level: 'trusted', distrustedUntil: 0 };
      setBounded(this.sources, source, record, MAX_SOURCES);
      return record;
    }
    if (record.level === 'distrusted' && now >= record.distrustedUntil) {
      // Served its time: a fresh start, on probation (rate-limited) with what it did forgotten.
      Object.assign(record, { level: 'rate_limited', verified: 0, unverifiable: 0 });
    }
    return record;
  }
}
