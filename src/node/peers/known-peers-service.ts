import type { KnownPeerInput, KnownPeerRecord, KnownPeersRepository, UpsertResult } from '../../db/known-peers.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { PeerTrust } from './peer-trust.ts';

/**
 * The node's door to `known_peers`: components record what they learn here (our own key is never
 * stored), and every newly known peer is announced on the bus as `peer.discovered` (evictions as
 * `peer.evicted`, hearsay that proved itself as `peer.verified`). What a peer tells us about
 * others goes through its `PeerTrust` allowance.
 */
export class KnownPeersService {
  private readonly ownPublicKey: Buffer;

  constructor(
    readonly repository: KnownPeersRepository,
    private readonly bus: EventBus<NodeEventMap>,
    ownPublicKey: Uint8Array,
    readonly trust: PeerTrust = new PeerTrust(),
  ) {
    this.ownPublicKey = Buffer.from(ownPublicKey);
  }

  /**
   * Stores what a peer told us. `via` is the peer the list came from (the TLS-proven peer id of
   * the connection): the hearsay it may add is limited by its trust, and the rest is refused.
   * Without `via` (the node's own knowledge) nothing is limited.
   */
  record(inputs: readonly KnownPeerInput[], via?: string): UpsertResult {
    const own = inputs.filter((i) => !this.ownPublicKey.equals(i.publicKey));
    const result = this.repository.upsertMany(own, via === undefined ? {} : { maxNewHearsay: this.trust.allowance(via) });
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
    return result;
  }

  /** Hearsay whose signed metadata was found in the DHT (`via`: who told us of it). */
  markVerified(peerId: string, isRelay: boolean, via: string | null): KnownPeerRecord | undefined {
    const before = this.repository.get(peerId);
    const record = this.repository.markVerified(peerId, isRelay);
    if (record && before && !before.verified) this.announceVerified(record, 'dht', via);
    return record;
  }

  private announceVerified(peer: KnownPeerRecord, by: 'exchange' | 'dht', via: string | null): void {
    this.bus.emit('peer.verified', { peerId: peer.peerId, isRelay: peer.isRelay, by, via });
  }
}
