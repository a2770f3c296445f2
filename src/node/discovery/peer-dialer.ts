import { formatAddress } from '../base/address.ts';
import type { ConnectionInfo, ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { MetadataFetcher } from '../metadata/metadata-fetcher.ts';
import type { KnownPeersService } from '../peers/known-peers-service.ts';
import type { RelayRoute, RelayedTransport } from '../relay/relayed-transport.ts';
import { resolvePeerRoute } from './peer-address.ts';

export interface PeerDialerOptions {
  readonly connections: ConnectionManager;
  readonly knownPeers: KnownPeersService;
  readonly fetcher: MetadataFetcher;
  readonly relayedTransport: RelayedTransport;
}

/**
 * Connects to a known peer the way its DHT metadata says (the seed's connection flow): directly
 * when it is public, through its relay when it is behind NAT. Used by discovery, the relay client
 * and the API's `connectPeer`.
 */
export class PeerDialer {
  constructor(private readonly options: PeerDialerOptions) {}

  async connectToPeer(peerId: string): Promise<ConnectionInfo> {
    const { connections, knownPeers, fetcher } = this.options;
    const existing = connections.byPeer(peerId);
    if (existing) return existing;
    const route = await resolvePeerRoute(peerId, knownPeers, fetcher);
    if (route.kind === 'direct') return connections.connect(route.address, peerId);
    return this.connectRelayed(route);
  }

  connectRelayed(route: RelayRoute): Promise<ConnectionInfo> {
    const { connections, relayedTransport } = this.options;
    return connections.connectVia(route.targetPeerId, formatAddress(route.relayAddress), () => relayedTransport.dial(route));
  }
}
