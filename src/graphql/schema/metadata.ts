import type { FetchedMetadata } from '../../node/metadata/metadata-fetcher.ts';
import { MetadataNotFoundError } from '../../node/metadata/peer-metadata.ts';
import { PeerNotKnownError } from '../../node/peers/errors.ts';
import { builder } from '../builder.ts';
import { KnownPeer } from './known-peers.ts';
import { NodeType } from './node-info.ts';

const PeerMetadata = builder.objectRef<FetchedMetadata>('PeerMetadata').implement({
  description: "A peer's signed BEP 44 metadata, read from the DHT and verified.",
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', resolve: (m) => m.metadata.peerId }),
    publicIp: t.string({ nullable: true, resolve: (m) => m.metadata.publicIp }),
    privateIp: t.string({ nullable: true, resolve: (m) => m.metadata.privateIp }),
    publicPort: t.int({ nullable: true, resolve: (m) => m.metadata.publicPort }),
    privatePort: t.int({ nullable: true, resolve: (m) => m.metadata.privatePort }),
    nodeType: t.field({ type: NodeType, resolve: (m) => m.metadata.nodeType }),
    isRelay: t.boolean({ resolve: (m) => m.metadata.isRelay }),
    usingRelay: t.boolean({ resolve: (m) => m.metadata.usingRelay }),
    connectedRelay: t.field({ type: 'PeerId', nullable: true, resolve: (m) => m.metadata.connectedRelay }),
    relaySessionId: t.string({ nullable: true, resolve: (m) => m.metadata.relaySessionId }),
    relayAddress: t.string({ nullable: true, resolve: (m) => m.metadata.relayAddress }),
    protocols: t.stringList({ resolve: (m) => [...m.metadata.protocols] }),
    capabilities: t.stringList({ resolve: (m) => [...m.metadata.capabilities] }),
    timestamp: t.field({
      type: 'DateTime',
      description: 'When the peer built this content.',
      resolve: (m) => new Date(m.metadata.timestamp * 1000),
    }),
    version: t.int({ description: 'Metadata layout version.', resolve: (m) => m.metadata.version }),
    sequence: t.int({ description: 'BEP 44 sequence number.', resolve: (m) => m.sequence }),
    signature: t.string({ description: 'Ed25519 signature, 128 hex characters.', resolve: (m) => m.signature.toString('hex') }),
    fetchedAt: t.field({ type: 'DateTime', resolve: (m) => m.fetchedAt }),
    cached: t.boolean({ description: 'Served from the metadata cache.', resolve: (m) => m.cached }),
  }),
});

builder.queryField('peerMetadata', (t) =>
  t.field({
    type: PeerMetadata,
    description: "A known peer's metadata from the DHT. `fresh` bypasses the cache.",
    args: { peerId: t.arg({ type: 'PeerId', required: true }), fresh: t.arg.boolean({ required: false }) },
    resolve: async (_root, args, ctx) => {
      const { peerId } = args;
      const publicKey = peerId === ctx.node.peerId ? ctx.node.identity.publicKey : ctx.node.knownPeers.get(peerId)?.publicKey;
      if (!publicKey) throw new PeerNotKnownError(peerId);
      const fetched = await ctx.node.metadataFetcher.fetch(publicKey, { fresh: args.fresh ?? false });
      if (!fetched) throw new MetadataNotFoundError(peerId);
      return fetched;
    },
  }),
);

builder.objectField(KnownPeer, 'metadata', (t) =>
  t.loadable({
    type: PeerMetadata,
    nullable: true,
    description: 'Its metadata from the DHT (cached); null when it has published none.',
    // Keyed by public key: no database read, and one lookup per peer per request.
    load: (publicKeys: string[], ctx) =>
      Promise.all(
        publicKeys.map((key) => ctx.node.metadataFetcher.fetch(Buffer.from(key, 'hex')).catch((error: unknown) => error as Error)),
      ),
    resolve: (peer) => Buffer.from(peer.publicKey).toString('hex'),
  }),
);

export { PeerMetadata };
