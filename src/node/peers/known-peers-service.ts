import type {
  KnownPeerFilter,
  KnownPeerInput,
  KnownPeerPage,
  KnownPeerRecord,
  KnownPeersRepository,
  UpsertResult,
} from '../../db/known-peers.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { StorageWriteReporter } from '../health/storage-health.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import { PeerTrust } from './peer-trust.ts';

export interface RecordResult extends UpsertResult {
  /** Entries that could not be written (the storage failed); counted by the storage health. */
  readonly notStored: number;
}

export interface KnownPeersServiceOptions {
  /** Where refused writes are reported; without it a failed write throws. */
  readonly storage?: StorageWriteReporter | undefined;
  readonly trust?: PeerTrust | undefined;
  readonly metrics?: Metrics | undefined;
}

/**
 * The node's door to `known_peers`: components record what they learn here (our own key is never
 * stored), and every newly known peer is announced on the bus as `peer.discovered` (evictions as
 * `peer.evicted`, hearsay that proved itself as `peer.verified`). What a peer tells us about
 * others goes through its `PeerTrust` allowance. A write the storage refuses (a full or
 * read-only disk) is reported to `storage` and recorded as not stored, so an exchange carries on.
 * Components and the API read through it too: the repository itself stays private to it.
 */
export class KnownPeersService {
  private readonly ownPublicKey: Buffer;
  readonly trust: PeerTrust;
  private readonly storage: StorageWriteReporter | undefined;

  constructor(
    private readonly repository: KnownPeersRepository,
    private readonly bus: EventBus<NodeEventMap>,
    ownPublicKey: Uint8Array,
    options: KnownPeersServiceOptions = {},
  ) {
    this.ownPublicKey = Buffer.from(ownPublicKey);
    this.trust = options.trust ?? new PeerTrust();
    this.storage = options.storage;
    (options.metrics ?? new NoopMetrics()).observedGauge({
      name: 'remote_network_known_peers',
      help: 'Peers in the known-peers table, by status (verified: met in an exchange or proven through the DHT; unverified: hearsay).',
      labelNames: ['status'],
      observe: (record) => {
        record({ status: 'verified' }, repository.count({ verified: true }));
        record({ status: 'unverified' }, repository.count({ verified: false }));
      },
    });
  }

  /**
   * Stores what a peer told us. `via` is the peer the list came from (the TLS-proven peer id of
   * the connection): the hearsay it may add is limited by its trust, and the rest is refused.
   * Without `via` (the node's own knowledge) nothing is limited.
   */
  record(inputs: readonly KnownPeerInput[], via?: string): RecordResult {
    const others = inputs.filter((i) => !this.ownPublicKey.equals(i.publicKey));
    let result: UpsertResult;
    try {
      result = this.repository.upsertMany(others, via === undefined ? {} : { maxNewHearsay: this.trust.allowance(via) });
    } catch (error) {
      if (!this.storage?.failed('known_peers', error, others.length)) throw error;
      return { inserted: [], verified: [], refused: 0, updated: 0, collisions: 0, evicted: 0, notStored: others.length };
    }
    // Only a write that committed proves the storage works again (a batch with nothing new writes nothing).
    if (result.inserted.length > 0 || result.updated > 0) this.storage?.succeeded();
    if (via !== undefined) this.trust.took(via, result.inserted.filter((p) => !p.verified).length);
    for (const peer of result.inserted) {
      this.bus.emit('peer.discovered', {
        peerId: peer.peerId,
        topic: peer.topic,
        isRelay: peer.isRelay,
        source: peer.source,
        verified: peer.verified,
        via: peer.verified ? null : (via ?? null),
      });
    }
    for (const peer of result.verified) this.announceVerified(peer, 'exchange', null);
    if (result.evicted > 0) this.bus.emit('peer.evicted', { count: result.evicted, reason: 'max_known_peers' });
    return { ...result, notStored: 0 };
  }

  /** Hearsay whose signed metadata was found in the DHT (`via`: who told us of it). */
  markVerified(peerId: string, isRelay: boolean, via: string | null): KnownPeerRecord | undefined {
    let marked: ReturnType<KnownPeersRepository['markVerified']>;
    try {
      marked = this.repository.markVerified(peerId, isRelay);
    } catch (error) {
      if (!this.storage?.failed('known_peers', error, 1)) throw error;
      return undefined;
    }
    this.storage?.succeeded();
    if (marked?.wasHearsay) this.announceVerified(marked.record, 'dht', via);
    return marked?.record;
  }

  get(peerId: string): KnownPeerRecord | undefined {
    return this.repository.get(peerId);
  }

  /** In the order asked, `undefined` where a peer is not known (a DataLoader batch). */
  getMany(peerIds: readonly string[]): Array<KnownPeerRecord | undefined> {
    return this.repository.getMany(peerIds);
  }

  /** Verified peers seen most recently, without `excludePeerIds`: what is worth sharing or dialling. */
  recent(limit: number, excludePeerIds: readonly string[] = []): KnownPeerRecord[] {
    return this.repository.recent(limit, excludePeerIds);
  }

  /** The newest entries (`hearsayOnly`: the unverified ones, for the verifier). */
  latest(limit: number, options: { hearsayOnly?: boolean } = {}): KnownPeerRecord[] {
    return this.repository.latest(limit, options);
  }

  page(filter: KnownPeerFilter, first: number, afterPeerId?: string): KnownPeerPage {
    return this.repository.page(filter, first, afterPeerId);
  }

  count(filter: KnownPeerFilter = {}): number {
    return this.repository.count(filter);
  }

  private announceVerified(peer: KnownPeerRecord, by: 'exchange' | 'dht', via: string | null): void {
    this.bus.emit('peer.verified', { peerId: peer.peerId, isRelay: peer.isRelay, by, via });
  }
}
