import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DATABASE_FILE, type OpenedDatabase, openDatabase } from '../db/client.ts';
import { KnownPeersRepository } from '../db/known-peers.ts';
import { NodeStateRepository } from '../db/node-state.ts';
import { AddressBook } from './addresses/address-book.ts';
import type { Component } from './base/component.ts';
import { type Logger, createLogger } from './base/logger.ts';
import type { NodeType } from './base/node-type.ts';
import type { NodeComponents } from './components.ts';
import type { Config } from './config/schema.ts';
import { chooseNodeId } from './dht/bep42.ts';
import { DhtExchangeFeed } from './dht/exchange-feed.ts';
import { MainlineDht } from './dht/mainline-dht.ts';
import { TopicDiscovery } from './dht/topic-discovery.ts';
import { DiscoveryService } from './discovery/discovery-service.ts';
import { PeerDialer } from './discovery/peer-dialer.ts';
import { EventBus } from './events/bus.ts';
import type { NodeEventMap } from './events/types.ts';
import { IdentityExchanger } from './exchange/identity-exchange.ts';
import { NodeHealth } from './health/node-health.ts';
import { StorageHealth } from './health/storage-health.ts';
import { HolePuncher } from './holepunch/hole-puncher.ts';
import { type NodeIdentity, loadOrCreateIdentity } from './identity/key-store.ts';
import { startInOrder, stopInReverse } from './lifecycle/component-lifecycle.ts';
import { InboundLimiter, connectionLimitSettings } from './lifecycle/connection-limits.ts';
import { type ConnectionInfo, ConnectionManager } from './lifecycle/connection-manager.ts';
import { HistoryProtection } from './lifecycle/history-protection.ts';
import { LimitCounters } from './lifecycle/limit-counters.ts';
import { ProtocolRegistry } from './lifecycle/protocol-registry.ts';
import { MetadataFetcher } from './metadata/metadata-fetcher.ts';
import { MetadataPublisher } from './metadata/metadata-publisher.ts';
import { SelfMetadata, initialMetadata } from './metadata/self-metadata.ts';
import { ReachabilityService } from './nat/reachability.ts';
import { HearsayVerifier } from './peers/hearsay-verifier.ts';
import { KnownPeersService } from './peers/known-peers-service.ts';
import { PeerTrust } from './peers/peer-trust.ts';
import { QuicTransport } from './quic/quic-transport.ts';
import { RelayClient } from './relay/relay-client.ts';
import { RelayServer, relayLimits } from './relay/relay-server.ts';
import { RelayedTransport } from './relay/relayed-transport.ts';
import { LOCK_FILE, lockDataDir } from './storage/data-dir-lock.ts';
import { asStorageError, storageStep } from './storage/storage-failure.ts';
import { NODE_VERSION } from './version.ts';

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
  readonly health: NodeHealth;
  readonly topicDiscovery: TopicDiscovery;
  readonly connectionLimits: InboundLimiter;
  readonly discovery: DiscoveryService;
  readonly dialer: PeerDialer;
  readonly reachability: ReachabilityService;
  readonly relayServer: RelayServer;
  readonly relayedTransport: RelayedTransport;
  readonly relayClient: RelayClient;
  readonly holePuncher: HolePuncher;
  readonly hearsay: HearsayVerifier;

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
    const { node: nodeConfig, peer_discovery: discoveryConfig } = config;
    const bus = new EventBus<NodeEventMap>((error, type) => logger.error({ err: error, event: type }, 'event listener failed'));
    const storage = new StorageHealth({ path: database.file, bus, logger });
    this.health = new NodeHealth(storage);
    const repository = new KnownPeersRepository(database.db, discoveryConfig.max_known_peers, discoveryConfig.max_unverified_peers);
    const knownPeers = new KnownPeersService(repository, bus, identity.publicKey, {
      storage,
      trust: new PeerTrust(discoveryConfig.hearsay_per_minute),
    });
    const base = { config, logger, identity, bus, storage, knownPeers, nodeState: new NodeStateRepository(database.db) };
    const specificHost = nodeConfig.listen_host === '0.0.0.0' ? null : nodeConfig.listen_host;
    // Chosen before reachability is known: BEP 42 only for a node configured public.
    const nodeId = chooseNodeId(nodeConfig.node_type === 'public' ? 'public' : 'private', specificHost);
    const dht = new MainlineDht({
      ...base,
      nodeId,
      bootstrap: config.dht.bootstrap_nodes,
      host: nodeConfig.listen_host,
      port: config.dht.dht_port,
    });
    const limitCounters = new LimitCounters();
    this.connectionLimits = new InboundLimiter({
      ...base,
      settings: connectionLimitSettings(config.connection_limits),
      // The connection manager, built below, owns the slots and decides what to prune.
      capacity: { makeRoomFor: (group, reserved) => this.components.connections.makeRoomFor(group, reserved) },
      counters: limitCounters,
    });
    const idleTimeoutMs = config.quic.quic_idle_timeout * 1000;
    const transport = new QuicTransport({
      ...base,
      host: nodeConfig.listen_host,
      port: config.quic.quic_port,
      // Above our own idle timeout, so that the lifecycle marks a connection STALE and closes it
      // itself (and says so) before QUIC would drop it silently.
      idleTimeoutMs: idleTimeoutMs * 2,
      maxConnections: config.quic.max_connections,
      admission: this.connectionLimits,
    });
    const addresses = new AddressBook({
      ...base,
      mode: nodeConfig.node_type,
      listenHost: nodeConfig.listen_host,
      relayMode: config.relay.relay_mode,
      configuredQuicPort: config.quic.quic_port,
      transport,
      dht,
    });
    const publisher = new MetadataPublisher({
      ...base,
      dht,
      republishIntervalMs: config.dht.metadata_republish_interval * 1000,
      content: () => initialMetadata(addresses),
      // The seed: a NAT node publishes only once it has a relay session (and `auto` waits for its
      // reachability verdict: an unreachable address must never be published).
      held: nodeConfig.node_type !== 'public',
    });
    const fetcher = new MetadataFetcher({ ...base, dht, ttlMs: config.dht.metadata_cache_ttl * 1000 });
    const exchanger = new IdentityExchanger({
      local: {
        identity,
        dhtNodeId: () => dht.nodeId.toString('hex'),
        nodeType: () => addresses.nodeType,
        isRelay: () => addresses.isRelay,
        topic: () => discoveryConfig.topic,
        dhtPort: () => dht.port,
        listenAddresses: () => addresses.listenAddresses(),
      },
      knownPeers,
      maxPeersToShare: discoveryConfig.max_known_peers_to_share,
      sharePerMinute: discoveryConfig.hearsay_per_minute,
    });
    const protocols = new ProtocolRegistry();
    const connections = new ConnectionManager({
      ...base,
      transport,
      exchanger,
      protocols,
      idleTimeoutMs,
      cleanupIntervalMs: Math.min(60_000, Math.max(1_000, idleTimeoutMs / 4)),
      maxConnections: config.quic.max_connections,
      ownPeerId: identity.peerId,
      limitCounters,
    });
    const c: NodeComponents = { ...base, protocols, dht, transport, addresses, fetcher, publisher, connections };
    this.components = c;

    this.topicDiscovery = new TopicDiscovery({
      ...c,
      topic: discoveryConfig.topic,
      intervalMs: discoveryConfig.discovery_interval * 1000,
      announcePort: () => addresses.quicPort || dht.port,
      announce: () => addresses.nodeType === 'public',
      ownAddress: () => (specificHost ? { host: specificHost, port: addresses.quicPort || dht.port } : null),
    });
    this.reachability = new ReachabilityService({
      ...c,
      mode: nodeConfig.node_type,
      observed: addresses.observed,
      probe: (address, peerId, timeoutMs) => transport.probe(address, peerId, timeoutMs),
      recheckIntervalMs: config.nat.recheck_interval * 1000,
      unsettledRecheckIntervalMs: config.nat.unsettled_recheck_interval * 1000,
    });
    this.relayServer = new RelayServer({
      ...c,
      enabled: () => addresses.isRelay,
      limits: relayLimits(config.relay),
      keepaliveIntervalMs: config.relay.relay_keepalive_interval * 1000,
      ownAddress: () => addresses.publicAddress,
    });
    this.relayedTransport = new RelayedTransport(c);
    this.dialer = new PeerDialer({ ...c, relayedTransport: this.relayedTransport });
    this.relayClient = new RelayClient({ ...c, ownPeerId: identity.peerId, connectToPeer: (peerId) => this.dialer.connectToPeer(peerId) });
    this.discovery = new DiscoveryService({
      ...c,
      ownPeerId: identity.peerId,
      bootstrap: discoveryConfig.bootstrap_peers,
      intervalMs: discoveryConfig.discovery_interval * 1000,
      maxConnections: config.quic.max_connections,
      targetConnections: discoveryConfig.target_connections,
      isOwnAddress: (address) => addresses.isOwnAddress(address),
      connectRelayed: (route) => this.dialer.connectRelayed(route),
    });
    this.holePuncher = new HolePuncher({
      ...c,
      sendRaw: (data, address) => transport.sendRaw(data, address),
      ownAddresses: () => addresses.ownAddresses(),
    });
    this.hearsay = new HearsayVerifier({ ...c, disconnect: (peerId, reason) => connections.disconnect(peerId, reason) });
    const selfMetadata = new SelfMetadata({
      ...c,
      mode: nodeConfig.node_type,
      reachability: this.reachability,
      relayClient: this.relayClient,
      relayGraceMs: config.nat.relay_grace_period * 1000,
    });
    // Started in this order, stopped in reverse. The address book goes first: its view of the
    // verdict must be current when any other listener of a verdict runs.
    this.lifecycle = [
      addresses,
      dht,
      this.connectionLimits,
      new HistoryProtection({ ...c, bootstrap: discoveryConfig.bootstrap_peers }),
      transport,
      connections,
      new DhtExchangeFeed(c),
      this.reachability,
      this.relayServer,
      this.relayedTransport,
      this.holePuncher,
      this.topicDiscovery,
      publisher,
      this.relayClient,
      selfMetadata,
      this.hearsay,
      this.discovery,
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

  // Shorthands for the shared components (the API, the CLI and tests read them).
  get bus(): EventBus<NodeEventMap> {
    return this.components.bus;
  }
  get knownPeers(): KnownPeersService {
    return this.components.knownPeers;
  }
  get connections(): ConnectionManager {
    return this.components.connections;
  }
  get protocols(): ProtocolRegistry {
    return this.components.protocols;
  }
  get dht(): MainlineDht {
    return this.components.dht;
  }
  get transport(): QuicTransport {
    return this.components.transport;
  }
  get addresses(): AddressBook {
    return this.components.addresses;
  }
  get metadataPublisher(): MetadataPublisher {
    return this.components.publisher;
  }
  get metadataFetcher(): MetadataFetcher {
    return this.components.fetcher;
  }
  get nodeState(): NodeStateRepository {
    return this.components.nodeState;
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
