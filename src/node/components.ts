import type { NodeStateRepository } from '../db/node-state.ts';
import type { AddressBook } from './addresses/address-book.ts';
import type { Logger } from './base/logger.ts';
import type { Config } from './config/schema.ts';
import type { MainlineDht } from './dht/mainline-dht.ts';
import type { EventBus } from './events/bus.ts';
import type { NodeEventMap } from './events/types.ts';
import type { StorageHealth } from './health/storage-health.ts';
import type { NodeIdentity } from './identity/key-store.ts';
import type { ConnectionManager } from './lifecycle/connection-manager.ts';
import type { ProtocolRegistry } from './lifecycle/protocol-registry.ts';
import type { MetadataFetcher } from './metadata/metadata-fetcher.ts';
import type { MetadataPublisher } from './metadata/metadata-publisher.ts';
import type { Metrics } from './metrics/metrics.ts';
import type { KnownPeersService } from './peers/known-peers-service.ts';
import type { QuicTransport } from './quic/quic-transport.ts';

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
  /** Inbound streams by their first message; each component registers its protocols at start. */
  readonly protocols: ProtocolRegistry;
  readonly dht: MainlineDht;
  readonly transport: QuicTransport;
  readonly addresses: AddressBook;
  readonly fetcher: MetadataFetcher;
  readonly publisher: MetadataPublisher;
  readonly connections: ConnectionManager;
}

/** What exists before the network parts: the node's own state and the registry its protocols join. */
export type BaseComponents = Pick<
  NodeComponents,
  'config' | 'logger' | 'identity' | 'bus' | 'metrics' | 'storage' | 'knownPeers' | 'nodeState' | 'protocols'
>;
