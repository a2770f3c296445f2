import { createHash, randomBytes } from 'node:crypto';
import type { KnownPeerInput } from '../../src/db/known-peers.ts';

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
