import type { RemoteNode } from '../../node/node.ts';
import type { PublishRecord } from '../../node/metadata/metadata-publisher.ts';
import { PublicationHeldError } from '../../node/metadata/peer-metadata.ts';
import { builder } from '../builder.ts';

const MetadataPublication = builder.objectRef<PublishRecord>('MetadataPublication').implement({
  fields: (t) => ({
    sequence: t.int({ resolve: (p) => p.sequence }),
    at: t.field({ type: 'DateTime', resolve: (p) => p.at }),
    nodesAccepted: t.int({
      description: 'DHT nodes holding this sequence after the put (stored it, or already had it).',
      resolve: (p) => p.nodesAccepted,
    }),
  }),
});

const DhtInfo = builder.objectRef<RemoteNode>('DhtInfo').implement({
  description: 'This node in the BitTorrent mainline DHT.',
  fields: (t) => ({
    nodeId: t.string({ description: 'DHT node id, 40 hex (BEP 42 when public).', resolve: (n) => n.dhtNodeId }),
    port: t.int({ description: 'UDP port of the DHT socket.', resolve: (n) => n.dht.port }),
    routingTableSize: t.int({ resolve: (n) => n.dht.routingTableSize }),
    announcedTopic: t.string({ resolve: (n) => n.config.peer_discovery.topic }),
    infoHash: t.string({ description: 'SHA1(topic), announced per BEP 5.', resolve: (n) => n.topicDiscovery.infoHash.toString('hex') }),
    topicPeers: t.stringList({
      description: 'host:port addresses found for the topic, most recent first.',
      resolve: (n) => n.topicDiscovery.list().map((p) => `${p.host}:${p.port}`),
    }),
    currentSequence: t.int({ description: 'BEP 44 sequence of our current metadata.', resolve: (n) => n.metadataPublisher.currentSequence }),
    publicationHeld: t.boolean({
      description: 'True while a private node waits for a relay session before publishing.',
      resolve: (n) => n.metadataPublisher.isHeld,
    }),
    lastPublish: t.field({ type: MetadataPublication, nullable: true, resolve: (n) => n.metadataPublisher.lastPublish }),
    bep42Violations: t.int({
      description: 'Nodes seen whose id does not match their IP per BEP 42.',
      resolve: (n) => n.dht.bep42Violations,
    }),
  }),
});

builder.queryField('dht', (t) => t.field({ type: DhtInfo, resolve: (_root, _args, ctx) => ctx.node }));

builder.mutationField('republishMetadata', (t) =>
  t.field({
    type: MetadataPublication,
    description: 'Publishes our metadata to the DHT now (same sequence when unchanged).',
    resolve: (_root, _args, ctx) => {
      if (ctx.node.metadataPublisher.isHeld) throw new PublicationHeldError();
      return ctx.node.metadataPublisher.publish('requested through the API');
    },
  }),
);
