import { type NodeIdentity, loadOrCreateIdentity } from '../../src/node/identity/key-store.ts';
import { createLogger } from '../../src/node/base/logger.ts';
import { QuicTransport, type QuicTransportOptions } from '../../src/node/quic/quic-transport.ts';
import type { PeerConnection } from '../../src/node/quic/types.ts';
import { MessageChannel } from '../../src/node/wire/channel.ts';
import { type KnownPeerEntry, type KnownPeersMessage, identityMessage, knownPeersMessage } from '../../src/node/wire/messages.ts';
import { tempDir } from './temp.ts';

type TestContext = { after(fn: () => unknown): void };

/** A bare QUIC transport with a fresh identity, on `host`: a peer (or an attacker) scripted by hand. */
export interface RawPeer {
  readonly identity: NodeIdentity;
  readonly transport: QuicTransport;
}

export async function startRawPeer(t: TestContext, host = '127.0.0.1', options: Partial<QuicTransportOptions> = {}): Promise<RawPeer> {
  const { identity } = loadOrCreateIdentity(tempDir(t));
  const transport = new QuicTransport({ identity, host, port: 0, logger: createLogger('silent'), idleTimeoutMs: 60_000, ...options });
  await transport.start();
  t.after(() => transport.stop());
  return { identity, transport };
}

/**
 * The dialer's half of the identity exchange with its own identity, sharing `peers` (none by
 * default); resolves with the list the node answered with.
 */
export async function exchangeAs(
  peer: RawPeer,
  connection: PeerConnection,
  peers: readonly KnownPeerEntry[] = [],
): Promise<KnownPeersMessage> {
  const channel = new MessageChannel(await connection.openStream());
  await channel.sendFinal(
    {
      type: 'identity',
      protocol_version: 1,
      peer_id: peer.identity.peerId,
      dht_node_id: 'ab'.repeat(20),
      public_key: Buffer.from(peer.identity.publicKey).toString('hex'),
      node_type: 'public',
      is_relay: false,
      topic: 'remote-network-mesh',
      dht_port: 0,
      listen_addresses: [],
      observed_address: null,
    },
    { type: 'known_peers', topic: 'remote-network-mesh', count: peers.length, peers: [...peers] },
  );
  await channel.receive(identityMessage, 'identity');
  const answer = await channel.receive(knownPeersMessage, 'known_peers');
  await channel.finish();
  return answer;
}
