import type { KnownPeersService } from '../peers/known-peers-service.ts';
import { type HostPort, parseHostPort } from '../base/address.ts';
import type { MetadataFetcher } from '../metadata/metadata-fetcher.ts';
import { MetadataNotFoundError } from '../metadata/peer-metadata.ts';
import { PeerNotDialableError, PeerNotKnownError } from '../peers/errors.ts';
import type { RelayRoute } from '../relay/relayed-transport.ts';

/** How to reach a known peer: directly, or through the relay its metadata names. */
export type PeerRoute = { readonly kind: 'direct'; readonly address: HostPort } | ({ readonly kind: 'relay' } & RelayRoute);

/**
 * Where to dial a known peer, per the seed: its address comes from its DHT metadata; a public peer
 * is dialled directly; a NAT peer through its relay; a NAT peer without a relay not at all.
 */
export async function resolvePeerRoute(
  peerId: string,
  knownPeers: KnownPeersService,
  fetcher: Pick<MetadataFetcher, 'fetch'>,
): Promise<PeerRoute> {
  const peer = knownPeers.get(peerId);
  if (!peer) throw new PeerNotKnownError(peerId);
  const fetched = await fetcher.fetch(peer.publicKey);
  if (!fetched) throw new MetadataNotFoundError(peerId);
  const m = fetched.metadata;
  if (m.nodeType === 'public' && m.publicIp && m.publicPort) return { kind: 'direct', address: { host: m.publicIp, port: m.publicPort } };
  const relayAddress = m.relayAddress ? parseHostPort(m.relayAddress) : undefined;
  if (m.usingRelay && m.connectedRelay && relayAddress) {
    return { kind: 'relay', targetPeerId: peerId, relayPeerId: m.connectedRelay, relayAddress };
  }
  throw new PeerNotDialableError(peerId, 'it is behind NAT without a relay');
}
