import type { OpenedDatabase } from '../db/client.ts';
import { KnownPeersRepository } from '../db/known-peers.ts';
import { NodeStateRepository } from '../db/node-state.ts';
import { ServicesRepository } from '../db/services.ts';
import type { AddressBook } from './addresses/address-book.ts';
import type { Logger } from './base/logger.ts';
import type { Config } from './config/schema.ts';
import type { MainlineDht } from './dht/mainline-dht.ts';
import { EventBus } from './events/bus.ts';
import type { NodeEventMap } from './events/types.ts';
import { StorageHealth } from './health/storage-health.ts';
import type { NodeIdentity } from './identity/key-store.ts';
import type { ConnectionManager } from './lifecycle/connection-manager.ts';
import { ProtocolRegistry } from './lifecycle/protocol-registry.ts';
import type { MetadataFetcher } from './metadata/metadata-fetcher.ts';
import type { MetadataPublisher } from './metadata/metadata-publisher.ts';
import type { Metrics } from './metrics/metrics.ts';
import { NoopMetrics } from './metrics/noop-metrics.ts';
import { PrometheusMetrics } from './metrics/prometheus-metrics.ts';
import { KnownPeersService } from './peers/known-peers-service.ts';
import { PeerTrust } from './peers/peer-trust.ts';
import type { QuicTransport } from './quic/quic-transport.ts';
import type { ServiceRegistry } from './services/service-registry.ts';

/**
 * What the node's components share, built once by the composition root and handed to each (as
 * js-libp2p's components): a component takes the members it needs from it (its options type
 * names them) plus its own settings, and never reaches into another component for a third one.
 */
export interface NodeComponents {
  readonly config: Config;
  readonly logger: Logger;
  readonly identity: NodeIdentity;
  readonly bus: EventBus<NodeEventMap>;
  /** Where each component declares its metrics (a no-op unless `[metrics] enabled`). */
  readonly metrics: Metrics;
  /** Where failed writes are reported (the node's health reads it). */
  readonly storage: StorageHealth;
  readonly nodeState: NodeStateRepository;
  readonly knownPeers: KnownPeersService;
  /** The services table (the registry's persistence). */
  readonly serviceStore: ServicesRepository;
  /** Inbound streams by their first message; each component registers its protocols at start. */
  readonly protocols: ProtocolRegistry;
  readonly dht: MainlineDht;
  readonly transport: QuicTransport;
  readonly addresses: AddressBook;
  readonly fetcher: MetadataFetcher;
  readonly publisher: MetadataPublisher;
  readonly connections: ConnectionManager;
  /** The services this node offers (registered by the operator only). */
  readonly services: ServiceRegistry;
}

/** What exists before the network parts: the node's own state and the registry its protocols join. */
export type BaseComponents = Pick<
  NodeComponents,
  'config' | 'logger' | 'identity' | 'bus' | 'metrics' | 'storage' | 'knownPeers' | 'nodeState' | 'serviceStore' | 'protocols'
>;

/** The node's own state over its database: metrics, the bus, storage health, known peers, BEP 44 state, an empty protocol registry. */
export function createBaseComponents(config: Config, logger: Logger, identity: NodeIdentity, { db, file }: OpenedDatabase): BaseComponents {
  // One registry per node: tests run several nodes in one process.
  const metrics: Metrics = config.metrics.enabled ? new PrometheusMetrics() : new NoopMetrics();
  const bus = new EventBus<NodeEventMap>((error, type) => logger.error({ err: error, event: type }, 'event listener failed'), metrics);
  const storage = new StorageHealth({ path: file, bus, logger });
  const { max_known_peers, max_unverified_peers, hearsay_per_minute } = config.peer_discovery;
  const repository = new KnownPeersRepository(db, max_known_peers, max_unverified_peers);
  const trust = new PeerTrust(hearsay_per_minute);
  const knownPeers = new KnownPeersService(repository, bus, identity.publicKey, { storage, trust, metrics });
  const nodeState = new NodeStateRepository(db);
  const serviceStore = new ServicesRepository(db);
  return { config, logger, identity, bus, metrics, storage, knownPeers, nodeState, serviceStore, protocols: new ProtocolRegistry() };
}
