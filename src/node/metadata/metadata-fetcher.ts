import type { BaseComponents } from '../components.ts';
import type { MainlineDht, MutableItem } from '../dht/mainline-dht.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { peerIdFromPublicKey } from '../base/peer-id.ts';
import type { Logger } from '../base/logger.ts';
import type { Counter, Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import { setBounded } from '../util/bounded-map.ts';
import { MetadataInvalidError, type PeerMetadata, decodeMetadata } from './peer-metadata.ts';

/** Entries kept in the cache; the oldest inserted is dropped first. */
export const METADATA_CACHE_LIMIT = 10_000;
/** "Nothing found" is remembered for at most this long, so a peer that publishes is seen soon. */
export const NEGATIVE_CACHE_MS = 10_000;

export interface FetchedMetadata {
  readonly metadata: PeerMetadata;
  readonly sequence: number;
  readonly signature: Buffer;
  readonly fetchedAt: Date;
  /** True when served from the cache rather than a DHT lookup. */
  readonly cached: boolean;
}

interface CacheEntry {
  readonly value: FetchedMetadata | null;
  readonly expires: number;
}

export interface MetadataFetcherOptions {
  readonly dht: MainlineDht;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  /** 0 disables the cache. */
  readonly ttlMs: number;
  readonly metrics?: Metrics;
}

interface FetcherMetrics {
  readonly dhtLookups: Counter;
  readonly cache: Counter<'result'>;
}

function fetcherMetrics(metrics: Metrics): FetcherMetrics {
  return {
    dhtLookups: metrics.counter({
      name: 'remote_network_metadata_dht_lookups_total',
      help: 'DHT lookups made to read peer metadata (what the cache did not answer).',
    }),
    cache: metrics.counter({
      name: 'remote_network_metadata_cache_lookups_total',
      help: 'Reads of peer metadata that consulted the cache, by result (hit or miss); `fresh` reads skip it.',
      labelNames: ['result'],
    }),
  };
}

/**
 * Reads peers' metadata from the DHT. Each response is verified by the DHT adapter (signature,
 * key, size); here the content is validated and its peer_id must be SHA1 of the signing key.
 * A TTL cache answers repeated reads; concurrent reads of one peer share one lookup; `fresh`
 * always asks the DHT. Nothing here holds a lock: a slow lookup delays only its own callers.
 */
export class MetadataFetcher {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<FetchedMetadata | null>>();
  private readonly metrics: FetcherMetrics;
  private readonly log: Logger;

  static create({ config, bus, logger, metrics }: BaseComponents, dht: MainlineDht): MetadataFetcher {
    return new MetadataFetcher({ dht, bus, logger, metrics, ttlMs: config.dht.metadata_cache_ttl * 1000 });
  }

  constructor(private readonly options: MetadataFetcherOptions) {
    this.log = options.logger.child({ component: 'metadata-fetcher' });
    this.metrics = fetcherMetrics(options.metrics ?? new NoopMetrics());
  }

  /** DHT lookups made so far (cache misses). */
  get lookupCount(): number {
    return this.metrics.dhtLookups.value();
  }

  async fetch(publicKey: Uint8Array, options: { fresh?: boolean } = {}): Promise<FetchedMetadata | null> {
    const peerId = peerIdFromPublicKey(publicKey);
    if (!options.fresh) {
      const hit = this.cache.get(peerId);
      const fresh = hit !== undefined && hit.expires > Date.now();
      this.metrics.cache.inc({ result: fresh ? 'hit' : 'miss' });
      if (hit && fresh) {
        if (hit.value) {
          this.options.bus.emit('dht.metadata.fetched', { peerId, sequence: hit.value.sequence, cached: true });
          return { ...hit.value, cached: true };
        }
        return null;
      }
    }
    let pending = this.inFlight.get(peerId);
    if (!pending) {
      pending = this.lookup(peerId, publicKey).finally(() => this.inFlight.delete(peerId));
      this.inFlight.set(peerId, pending);
    }
    return pending;
  }

  /**
   * Some valid metadata of the peer: the cached one, or the first signed item a DHT lookup meets
   * (a few datagrams, where `fetch` asks every node near the key for the highest seq). Proves the
   * key's holder published. It is cached like a fetched one: a peer's seq rarely moves, and a dial
   * that fails on what it says invalidates it (discovery does), so the next read asks afresh.
   */
  async findAny(publicKey: Uint8Array): Promise<FetchedMetadata | null> {
    const peerId = peerIdFromPublicKey(publicKey);
    const hit = this.cache.get(peerId);
    const fresh = hit?.value && hit.expires > Date.now();
    this.metrics.cache.inc({ result: fresh ? 'hit' : 'miss' });
    if (hit?.value && fresh) return { ...hit.value, cached: true };
    this.metrics.dhtLookups.inc();
    const item = await this.options.dht.findMutable(publicKey);
    const result = item ? this.accepted(peerId, item) : null;
    if (result) this.remember(peerId, result);
    return result;
  }

  /** Forgets a peer's cached metadata (e.g. after it told us it changed). */
  invalidate(peerId: string): void {
    this.cache.delete(peerId);
  }

  private async lookup(peerId: string, publicKey: Uint8Array): Promise<FetchedMetadata | null> {
    this.metrics.dhtLookups.inc();
    const item = await this.options.dht.getMutable(publicKey, false);
    const result = item ? this.accepted(peerId, item) : null;
    this.remember(peerId, result);
    return result;
  }

  /** A verified item's content, if it is valid metadata of that peer (announced as fetched). */
  private accepted(peerId: string, item: MutableItem): FetchedMetadata | null {
    try {
      const metadata = decodeMetadata(item.value);
      if (metadata.peerId !== peerId) {
        throw new MetadataInvalidError(`metadata claims peer id ${metadata.peerId} but is signed by ${peerId}`);
      }
      this.options.bus.emit('dht.metadata.fetched', { peerId, sequence: item.seq, cached: false });
      return { metadata, sequence: item.seq, signature: item.signature, fetchedAt: new Date(), cached: false };
    } catch (error) {
      this.log.warn({ err: error, peerId }, 'rejected metadata from the DHT');
      return null;
    }
  }

  private remember(peerId: string, value: FetchedMetadata | null): void {
    const ttl = value ? this.options.ttlMs : Math.min(this.options.ttlMs, NEGATIVE_CACHE_MS);
    if (ttl <= 0) return;
    setBounded(this.cache, peerId, { value, expires: Date.now() + ttl }, METADATA_CACHE_LIMIT);
  }
}
