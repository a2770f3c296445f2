import type { NodeApi } from '../context.ts';
import type { PublishRecord } from '../../node/metadata/metadata-publisher.ts';
import { PublicationHeldError } from '../../node/metadata/peer-metadata.ts';
import type { KrpcDropReason as DropReason } from '../../node/dht/krpc-schemas.ts';
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

const KrpcDropReason = builder.enumType('KrpcDropReason', {
  description: 'Why an inbound DHT datagram was dropped before the DHT library saw it.',
  values: {
    MALFORMED: { description: 'Not strict bencode (bad lengths or integers, trailing bytes, too deep, duplicate keys).' },
    ENVELOPE: { description: 'Transaction id, type or version of the wrong type or size.' },
    QUERY: { description: 'A query whose arguments do not match its method (BEP 5, BEP 44).' },
    RESPONSE: { description: 'A response to one of our queries with fields of the wrong type or size.' },
    UNSOLICITED: { description: 'A response or error no query of ours was waiting for (from that address).' },
    ERROR: { description: 'An error message that is not [code, message].' },
  } as const,
});

const DhtDropCount = builder.objectRef<{ reason: DropReason; count: number }>('DhtDropCount').implement({
  fields: (t) => ({
    reason: t.field({ type: KrpcDropReason, resolve: (d) => d.reason.toUpperCase() as Uppercase<DropReason> }),
    count: t.float({ description: 'Datagrams (a JSON number, exact to 2^53).', resolve: (d) => d.count }),
  }),
});

const DhtInbound = builder.objectRef<NodeApi>('DhtInbound').implement({
  description: 'Datagrams on the DHT socket since the node started; every one is checked before the DHT library sees it.',
  fields: (t) => ({
    received: t.float({ resolve: (n) => n.dht.inbound.received }),
    dropped: t.float({ description: 'All drops, whatever the reason.', resolve: (n) => sum(Object.values(n.dht.inbound.dropped)) }),
    droppedByReason: t.field({
      type: [DhtDropCount],
      resolve: (n) => Object.entries(n.dht.inbound.dropped).map(([reason, count]) => ({ reason: reason as DropReason, count })),
    }),
    handlerFailures: t.float({
      description: 'Exceptions the DHT library threw on a datagram that passed the checks: contained (logged), the node kept serving.',
      resolve: (n) => n.dht.inbound.handlerFailures,
    }),
    routingTableRefused: t.float({
      description: 'Node ids kept out of the routing table: their address already holds another id, or their public IP holds 8.',
      resolve: (n) => n.dht.routingTableAdmission.refused,
    }),
    routingTableVerifications: t.float({
      description: 'Query senders pinged before entering the routing table (at most once per address per 10 minutes).',
      resolve: (n) => n.dht.routingTableAdmission.verifications,
    }),
  }),
});

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

const DhtInfo = builder.objectRef<NodeApi>('DhtInfo').implement({
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
    currentSequence: t.int({
      description: 'BEP 44 sequence of our current metadata.',
      resolve: (n) => n.metadataPublisher.currentSequence,
    }),
    publicationHeld: t.boolean({
      description: 'True while a private node waits for a relay session before publishing.',
      resolve: (n) => n.metadataPublisher.isHeld,
    }),
    lastPublish: t.field({ type: MetadataPublication, nullable: true, resolve: (n) => n.metadataPublisher.lastPublish }),
    bep42Violations: t.int({
      description: 'Nodes seen whose id does not match their IP per BEP 42.',
      resolve: (n) => n.dht.bep42Violations,
    }),
    inbound: t.field({ type: DhtInbound, resolve: (n) => n }),
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
