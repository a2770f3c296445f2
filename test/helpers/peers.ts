import { createHash, randomBytes } from 'node:crypto';
import type { KnownPeerInput } from '../../src/db/known-peers.ts';
import type { PeerMetadata } from '../../src/node/metadata/peer-metadata.ts';

export const TOPIC = 'remote-network-mesh';

export const peerIdOf = (publicKey: Uint8Array): string => createHash('sha1').update(publicKey).digest('hex');

/** A random peer as an exchange would report it. */
export function randomPeer(overrides: Partial<KnownPeerInput> = {}): KnownPeerInput {
  return {
    publicKey: randomBytes(32),
    dhtNodeId: randomBytes(20).toString('hex'),
    isRelay: false,
    topic: TOPIC,
    source: 'peer_exchange',
    ...overrides,
  };
}

/** Peer metadata for `peerId`: a public node with no address and nothing offered, unless `overrides` say otherwise. */
export function testMetadata(peerId: string, overrides: Partial<PeerMetadata> = {}): PeerMetadata {
  return {
    peerId,
    publicIp: null,
    privateIp: null,
    publicPort: null,
    privatePort: null,
    nodeType: 'public',
    isRelay: false,
    usingRelay: false,
    connectedRelay: null,
    relaySessionId: null,
    relayAddress: null,
    protocols: [],
    capabilities: [],
    timestamp: 1,
    version: 1,
    ...overrides,
  };
}
