import type { KnownPeerInput, KnownPeersRepository, UpsertResult } from '../../db/known-peers.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';

/**
 * The node's door to `known_peers`: components record what they learn here (our own key is never
 * stored), and every newly known peer is announced on the bus as `peer.discovered` (evictions as
 * `peer.evicted`).
 */
export class KnownPeersService {
  private readonly ownPublicKey: Buffer;

  constructor(
    readonly repository: KnownPeersRepository,
    private readonly bus: EventBus<NodeEventMap>,
    ownPublicKey: Uint8Array,
  ) {
    this.ownPublicKey = Buffer.from(ownPublicKey);
  }

  record(inputs: readonly KnownPeerInput[]): UpsertResult {
    const result = this.repository.upsertMany(inputs.filter((i) => !this.ownPublicKey.equals(i.publicKey)));
    for (const peer of result.inserted) {
      this.bus.emit('peer.discovered', {
        peerId: peer.peerId,
        topic: peer.topic,
        isRelay: peer.isRelay,
        source: peer.source,
      });
    }
    if (result.evicted > 0) this.bus.emit('peer.evicted', { count: result.evicted, reason: 'max_known_peers' });
    return result;
  }
}
