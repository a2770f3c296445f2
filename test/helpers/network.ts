import { createSocket } from 'node:dgram';
import { after, before } from 'node:test';
import type { RemoteNode } from '../../src/node/node.ts';
import { type PrivateDht, startPrivateDht } from './private-dht.ts';

/**
 * For a describe block: a fresh 10-node private DHT for its tests, and the settings that put a
 * test node on it (public, on 127.0.0.1, discovery every second).
 */
export function usePrivateNetwork() {
  let dht: PrivateDht | undefined;
  before(async () => {
    dht = await startPrivateDht(10);
  });
  after(() => dht?.stop());
  return {
    settings: (extra: Record<string, string> = {}): Record<string, string> => ({
      'dht.bootstrap_nodes': dht?.bootstrapSetting ?? '',
      'node.node_type': 'public',
      'peer_discovery.discovery_interval': '1',
      ...extra,
    }),
    quicAddress: (node: RemoteNode) => `127.0.0.1:${node.quicPort}`,
  };
}

/** A UDP port free right now on 127.0.0.1 (for a test that must name its port in advance). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}
