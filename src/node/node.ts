import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DATABASE_FILE, type OpenedDatabase, openDatabase } from '../db/client.ts';
import { AddressBook } from './addresses/address-book.ts';
import type { Component } from './base/component.ts';
import { type Logger, createLogger } from './base/logger.ts';
import type { NodeType } from './base/node-type.ts';
import { type NodeComponents, createBaseComponents } from './components.ts';
import type { Config } from './config/schema.ts';
import { DhtExchangeFeed } from './dht/exchange-feed.ts';
import { MainlineDht } from './dht/mainline-dht.ts';
import { TopicDiscovery } from './dht/topic-discovery.ts';
import { DiscoveryService } from './discovery/discovery-service.ts';
import { PeerDialer } from './discovery/peer-dialer.ts';
import { EventBus } from './events/bus.ts';
import type { NodeEventMap } from './events/types.ts';
import { IdentityExchanger } from './exchange/identity-exchange.ts';
import { NodeHealth } from './health/node-health.ts';
import { HolePuncher } from './holepunch/hole-puncher.ts';
import { type NodeIdentity, loadOrCreateIdentity } from './identity/key-store.ts';
import { startInOrder, stopInReverse } from './lifecycle/component-lifecycle.ts';
import { InboundLimiter } from './lifecycle/connection-limits.ts';
import { type ConnectionInfo, ConnectionManager } from './lifecycle/connection-manager.ts';
import { HistoryProtection } from './lifecycle/history-protection.ts';
import { LimitCounters } from './lifecycle/limit-counters.ts';
import { ProtocolRegistry } from './lifecycle/protocol-registry.ts';
import { MetadataFetcher } from './metadata/metadata-fetcher.ts';
import { MetadataPublisher } from './metadata/metadata-publisher.ts';
import type { Metrics } from './metrics/metrics.ts';
import { SelfMetadata, initialMetadata } from './metadata/self-metadata.ts';
import { ReachabilityService } from './nat/reachability.ts';
import { HearsayVerifier } from './peers/hearsay-verifier.ts';
import { KnownPeersService } from './peers/known-peers-service.ts';
import { QuicTransport } from './quic/quic-transport.ts';
import { RelayClient } from './relay/relay-client.ts';
import { RelayServer } from './relay/relay-server.ts';
import { RelayedTransport } from './relay/relayed-transport.ts';
import { DataTransfer } from './services/data-transfer.ts';
import { ServiceRegistry } from './services/service-registry.ts';
import { ServiceSearch } from './services/service-search.ts';
import { ServiceSearchResponder } from './services/service-search-responder.ts';
import { ServiceSummary, withServiceSummary } from './services/service-summary.ts';
import { LOCK_FILE, lockDataDir } from './storage/data-dir-lock.ts';
import { asStorageError, storageStep } from './storage/storage-failure.ts';
import { NODE_VERSION } from './version.ts';
import { JobStore } from '../db/jobs.ts';
import { BlobStore } from './jobs/blob-store.ts';
import { JobExecutor } from './jobs/job-executor.ts';
import { maximumLimits } from './jobs/job-limits.ts';
import { jobMetrics } from './jobs/job-metrics.ts';
import { JobOrderer } from './jobs/job-orderer.ts';

export interface StartNodeOptions {
  readonly logger?: Logger;
}

/**
 * The composition root: builds the shared components (NodeComponents) and every component of the
 * node from the configuration, starts them in order and stops them in reverse. Each component gets
 * what it needs from the components object plus its own settings; policy lives in the components.
 */
export class RemoteNode {
  readonly version = NODE_VERSION;
  readonly startedAt = new Date();
  readonly components: NodeComponents;
  // The shared components the API, the CLI and tests read most.
  readonly bus: EventBus<NodeEventMap>;
  readonly knownPeers: KnownPeersService;
  readonly connections: ConnectionManager;
  readonly protocols: ProtocolRegistry;
  readonly dht: MainlineDht;
  readonly transport: QuicTransport;
  readonly addresses: AddressBook;
  readonly metadataPublisher: MetadataPublisher;
  readonly metadataFetcher: MetadataFetcher;
  /** Where every component declares its metrics (exported at GET /metrics unless `[metrics] enabled` is false). */
  readonly metrics: Metrics;
  readonly health: NodeHealth;
  readonly topicDiscovery: TopicDiscovery;
  readonly connectionLimits: InboundLimiter;
  readonly discovery: DiscoveryService;
  readonly dialer: PeerDialer;
  readonly reachability: ReachabilityService;
  readonly relayServer: RelayServer;
  readonly relayClient: RelayClient;
  readonly holePuncher: HolePuncher;
  readonly hearsay: HearsayVerifier;
  readonly services: ServiceRegistry;
  readonly serviceSearch: ServiceSearch;
  /** Jobs this node orders on peers (runJob, cancelJob). */
  readonly jobs: JobOrderer;
  /** DATA services by content: served to allowed peers, fetched from others. */
  readonly dataTransfer: DataTransfer;
  /** Jobs this node runs for peers. */
  readonly jobExecutor: JobExecutor;
  /** Both roles' job records and logs (the API reads them). */
  readonly jobStore: JobStore;

  private readonly lifecycle: Component[];
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: Config,
    readonly logger: Logger,
    readonly identity: NodeIdentity,
    readonly dataDir: string,
    private readonly database: OpenedDatabase,
    private readonly releaseLock: () => void,
  ) {
    const base = createBaseComponents(config, logger, identity, database);
    const { bus, knownPeers, metrics } = base;
    this.health = new NodeHealth(base.storage);

    // The network parts every component shares (the connection manager, built last, owns the slots
    // the inbound limiter asks it to make room in).
    const dht = MainlineDht.create(base);
    const limitCounters = new LimitCounters(metrics);
    const capacity = { makeRoomFor: (group: string, reserved: number) => connections.makeRoomFor(group, reserved) };
    this.connectionLimits = InboundLimiter.create(base, capacity, limitCounters);
    const transport = QuicTransport.create(base, this.connectionLimits);
    const addresses = AddressBook.create(base, transport, dht);
    // A service may not give its jobs more than the node's [jobs] maxima.
    const services = ServiceRegistry.create(base, { maxLimits: () => maximumLimits(config.jobs) });
    const publisher = MetadataPublisher.create(base, dht, () => withServiceSummary(initialMetadata(addresses), services.list()));
    const fetcher = MetadataFetcher.create(base, dht);
    const connections = ConnectionManager.create(base, transport, IdentityExchanger.create(base, dht, addresses), limitCounters);
    const c: NodeComponents = { ...base, dht, transport, addresses, fetcher, publisher, connections, services };
    this.components = c;
    this.metrics = metrics;
    [this.bus, this.knownPeers, this.connections, this.protocols, this.dht] = [bus, knownPeers, connections, base.protocols, dht];
    [this.transport, this.addresses, this.metadataPublisher, this.metadataFetcher] = [transport, addresses, publisher, fetcher];
    this.services = services;

    // The components on top: one line each.
    this.topicDiscovery = TopicDiscovery.create(c);
    this.reachability = ReachabilityService.create(c);
    this.relayServer = RelayServer.create(c);
    const relayedTransport = new RelayedTransport(c);
    this.dialer = new PeerDialer({ ...c, relayedTransport });
    this.relayClient = RelayClient.create(c, this.dialer);
    this.discovery = DiscoveryService.create(c, this.dialer);
    this.holePuncher = HolePuncher.create(c);
    this.hearsay = HearsayVerifier.create(c);
    const selfMetadata = SelfMetadata.create(c, this.reachability, this.relayClient);
    this.serviceSearch = ServiceSearch.create(c, this.dialer);
    this.jobStore = new JobStore(database.db);
    const blobs = new BlobStore(join(dataDir, 'blobs'));
    const counters = jobMetrics(metrics);
    this.jobExecutor = JobExecutor.create(c, { jobStore: this.jobStore, blobs, dataDir, jobMetrics: counters });
    this.dataTransfer = DataTransfer.create(c, { blobs, dialer: this.dialer });
    this.jobs = JobOrderer.create(c, { jobStore: this.jobStore, blobs, dialer: this.dialer, jobMetrics: counters });
    // Started in this order, stopped in reverse. The address book goes first: its view of the
    // verdict must be current when any other listener of a verdict runs.
    // The service registry loads before the publisher starts: the first publication carries the summary.
    this.lifecycle = [
      addresses,
      services,
      dht,
      this.connectionLimits,
      new HistoryProtection({ ...c, bootstrap: config.peer_discovery.bootstrap_peers }),
      transport,
      connections,
      new DhtExchangeFeed(c),
      this.reachability,
      this.relayServer,
      relayedTransport,
      this.holePuncher,
      this.topicDiscovery,
      publisher,
      ServiceSummary.create(c),
      ServiceSearchResponder.create(c),
      this.relayClient,
      selfMetadata,
      this.hearsay,
      this.discovery,
      blobs,
      this.jobExecutor,
      this.jobs,
      this.dataTransfer,
    ];
  }

  static async start(config: Config, options: StartNodeOptions = {}): Promise<RemoteNode> {
    const logger = options.logger ?? createLogger(config.node.log_level);
    const dataDir = resolve(config.node.data_dir);
    storageStep('create the data directory', dataDir, () => mkdirSync(dataDir, { recursive: true, mode: 0o700 }));
    const releaseLock = storageStep('take the lock', join(dataDir, LOCK_FILE), () => lockDataDir(dataDir));
    const databaseFile = join(dataDir, DATABASE_FILE);
    let database: OpenedDatabase | undefined;
    let node: RemoteNode;
    try {
      const { identity, created, privateKeyFile } = storageStep('load or create the key in', dataDir, () => loadOrCreateIdentity(dataDir));
      logger.info({ peerId: identity.peerId, keyFile: privateKeyFile, created }, created ? 'identity created' : 'identity loaded');
      database = storageStep('open the database', databaseFile, () => openDatabase(databaseFile));
      node = new RemoteNode(config, logger, identity, dataDir, database, releaseLock);
      await startInOrder(node.lifecycle, logger);
    } catch (error) {
      if (database) closeAfterFailedStart(database, logger);
      releaseLock();
      // Components write to the database at start (the BEP 44 sequence number).
      throw asStorageError(error, 'write to the database', databaseFile);
    }
    return node;
  }

  /**
   * Stops every component (in reverse), then closes the database and releases the lock. Idempotent.
   * A database that cannot be checkpointed (a full disk) is still closed and the lock released;
   * the failure is logged once and rejects the stop with a StorageError (the WAL keeps the data).
   */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopping ??= (async () => {
      this.bus.emit('node.stopping', { peerId: this.peerId, reason });
      await stopInReverse(this.lifecycle, this.logger);
      let failure: { error: unknown } | undefined;
      try {
        storageStep('checkpoint and close the database', this.database.file, () => this.database.close());
      } catch (error) {
        failure = { error };
        this.logger.error({ err: error, path: this.database.file }, error instanceof Error ? error.message : 'closing the database failed');
      }
      this.releaseLock();
      this.logger.info({ reason, clean: failure === undefined }, 'node stopped');
      if (failure !== undefined) throw failure.error;
    })();
    return this.stopping;
  }

  get peerId(): string {
    return this.identity.peerId;
  }
  get dhtNodeId(): string {
    return this.dht.nodeId.toString('hex');
  }
  get quicPort(): number {
    return this.addresses.quicPort;
  }
  get nodeType(): NodeType {
    return this.addresses.nodeType;
  }
  get isRelay(): boolean {
    return this.addresses.isRelay;
  }

  connectToPeer(peerId: string): Promise<ConnectionInfo> {
    return this.dialer.connectToPeer(peerId);
  }
}

/** Closes the database after a failed start; a failure here is logged, never thrown over the first. */
function closeAfterFailedStart(database: OpenedDatabase, logger: Logger): void {
  try {
    database.close();
  } catch (error) {
    logger.warn({ err: error, path: database.file }, 'closing the database after a failed start also failed');
  }
}
