import type { KnownPeersRepository } from '../../db/known-peers.ts';
import type { HostPort } from '../config/schema.ts';
import type { MetadataFetcher } from '../metadata/metadata-fetcher.ts';
import { MetadataNotFoundError } from '../metadata/peer-metadata.ts';
import { PeerNotDialableError, PeerNotKnownError } from '../peers/errors.ts';

/**
 * Where to dial a known peer, per the seed: its address comes from its DHT metadata; a public peer
 * is dialled directly; a NAT peer is reached through its relay (not available yet) or not at all.
 */
export async function resolvePeerAddress(
  peerId: string,
  knownPeers: KnownPeersRepository,
  fetcher: MetadataFetcher,
): Promise<HostPort> {
  const peer = knownPeers.get(peerId);
  if (!peer) throw new PeerNotKnownError(peerId);
  const fetched = await fetcher.fetch(peer.publicKey);
  if (!fetched) throw new MetadataNotFoundError(peerId);
  const m = fetched.metadata;
  if (m.nodeType === 'public' && m.publicIp && m.publicPort) return { host: m.publicIp, port: m.publicPort };
  throw new PeerNotDialableError(peerId, m.usingRelay ? 'it is behind NAT (relayed dialling is not available yet)' : 'it is behind NAT without a relay');
}
