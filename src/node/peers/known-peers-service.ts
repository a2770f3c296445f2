import type { KnownPeerInput, KnownPeersRepository, UpsertResult } from '../../db/known-peers.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { StorageWriteReporter } from '../health/storage-health.ts';

export interface RecordResult extends UpsertResult {
  /** Entries that could not be written (the storage failed); counted by the storage health. */
  readonly notStored: number;
}

/**
 * The node's door to `known_peers`: components record what they learn here (our own key is never
 * stored), and every newly known peer is announced on the bus as `peer.discovered` (evictions as
 * `peer.evicted`). A write the storage refuses (a full or read-only disk) is reported to
 * `storage` and recorded as not stored, so an exchange carries on; without `storage` it throws.
 */
export class KnownPeersService {
  private readonly ownPublicKey: Buffer;

  constructor(
    readonly repository: KnownPeersRepository,
    private readonly bus: EventBus<NodeEventMap>,
    ownPublicKey: Uint8Array,
    private readonly storage?: StorageWriteReporter,
  ) {
    this.ownPublicKey = Buffer.from(ownPublicKey);
  }

  record(inputs: readonly KnownPeerInput[]): RecordResult {
    const others = inputs.filter((i) => !this.ownPublicKey.equals(i.publicKey));
    let result: UpsertResult;
    try {
      result = this.repository.upsertMany(others);
    } catch (error) {
      if (!this.storage?.failed('known_peers', error, others.length)) throw error;
      return { inserted: [], updated: 0, collisions: 0, evicted: 0, notStored: others.length };
    }
    // Only a write that committed proves the storage works again (a batch with nothing new writes nothing).
    if (result.inserted.length > 0 || result.updated > 0) this.storage?.succeeded();
    for (const peer of result.inserted) {
      this.bus.emit('peer.discovered', {
        peerId: peer.peerId,
        topic: peer.topic,
        isRelay: peer.isRelay,
        source: peer.source,
      });
    }
    if (result.evicted > 0) this.bus.emit('peer.evicted', { count: result.evicted, reason: 'max_known_peers' });
    return { ...result, notStored: 0 };
  }
}
