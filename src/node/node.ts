import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DATABASE_FILE, type OpenedDatabase, openDatabase } from '../db/client.ts';
import { KnownPeersRepository } from '../db/known-peers.ts';
import { NodeStateRepository } from '../db/node-state.ts';
import { type Config, type HostPort, parseHostPort } from './config/schema.ts';
import { chooseNodeId } from './dht/bep42.ts';
import { MainlineDht } from './dht/mainline-dht.ts';
import { TopicDiscovery } from './dht/topic-discovery.ts';
import { DiscoveryService } from './discovery/discovery-service.ts';
import { resolvePeerRoute } from './discovery/peer-address.ts';
import { HolePuncher } from './holepunch/hole-puncher.ts';
import { ReachabilityPolicy } from './nat/reachability-policy.ts';
import { ReachabilityService, publicAddressOf } from './nat/reachability.ts';
import { RelayClient } from './relay/relay-client.ts';
import { RelayServer } from './relay/relay-server.ts';
import { type RelayRoute, RelayedTransport } from './relay/relayed-transport.ts';
import { IdentityExchanger, formatAddress } from './exchange/identity-exchange.ts';
import { InboundLimiter } from './lifecycle/connection-limits.ts';
import { type ConnectionInfo, ConnectionManager } from './lifecycle/connection-manager.ts';
import { HistoryProtection } from './lifecycle/history-protection.ts';
import { LimitCounters } from './lifecycle/limit-counters.ts';
import { QuicTransport } from './quic/quic-transport.ts';
import { EventBus } from './events/bus.ts';
import type { NodeEventMap } from './events/types.ts';
import { type NodeIdentity, loadOrCreateIdentity } from './identity/key-store.ts';
import { type Logger, createLogger } from './logger.ts';
import { MetadataFetcher } from './metadata/metadata-fetcher.ts';
import type { Metrics } from './metrics/metrics.ts';
import { NoopMetrics } from './metrics/noop-metrics.ts';
import { PrometheusMetrics } from './metrics/prometheus-metrics.ts';
import { type MetadataContent, MetadataPublisher } from './metadata/metadata-publisher.ts';
import { HearsayVerifier } from './peers/hearsay-verifier.ts';
import { KnownPeersService } from './peers/known-peers-service.ts';
import { PeerTrust } from './peers/peer-trust.ts';
import { NodeHealth } from './health/node-health.ts';
import { StorageHealth } from './health/storage-health.ts';
import { LOCK_FILE, lockDataDir } from './storage/data-dir-lock.ts';
import { asStorageError, storageStep } from './storage/storage-failure.ts';
import { NODE_VERSION } from './version.ts';

export type NodeType = 'public' | 'private';

/** A part of the node with a lifecycle; the root starts them in order and stops them in reverse. */
export interface Component {
  readonly name: string;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
}

export interface StartNodeOptions {
  readonly logger?: Logger;
}

/**
 * The composition root: builds every component of the node from the configuration, starts them in
 * order and stops them in reverse. Components receive what they need from here and talk to each
 * other through the event bus.
 */
export class RemoteNode {
  readonly version = NODE_VERSION;
  readonly bus: EventBus<NodeEventMap>;
  readonly knownPeers: KnownPeersService;
  readonly nodeState: NodeStateRepository;
  readonly health: NodeHealth;
  readonly startedAt = new Date();
  readonly dht: MainlineDht;
  readonly topicDiscovery: TopicDiscovery;
  readonly metadataPublisher: MetadataPublisher;
  readonly metadataFetcher: MetadataFetcher;
  readonly transport: QuicTransport;
  readonly connectionLimits: InboundLimiter;
  readonly connections: ConnectionManager;
  readonly discovery: DiscoveryService;
  readonly reachability: ReachabilityService;
  readonly relayServer: RelayServer;
  readonly relayedTransport: RelayedTransport;
  readonly relayClient: RelayClient;
  readonly holePuncher: HolePuncher;
  readonly hearsay: HearsayVerifier;
  /** Where every component declares its metrics (exported at GET /metrics unless `[metrics] enabled` is false). */
  readonly metrics: Metrics;

  private readonly specificHost: string | null;
  private readonly components: Component[];
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: Config,
    readonly logger: Logger,
    readonly identity: NodeIdentity,
    readonly dataDir: string,
    private readonly database: OpenedDatabase,
    private readonly releaseLock: () => void,
  ) {
    // One registry per node: tests run several nodes in one process.
    const metrics: Metrics = config.metrics.enabled ? new PrometheusMetrics() : new NoopMetrics();
    this.metrics = metrics;
    this.bus = new EventBus<NodeEventMap>((error, type) => logger.error({ err: error, event: type }, 'event listener failed'), metrics);
    this.nodeState = new NodeStateRepository(database.db);
    const storage = new StorageHealth({ path: database.file, bus: this.bus, logger });
    this.health = new NodeHealth(storage);
    this.knownPeers = new KnownPeersService(
      new KnownPeersRepository(database.db, config.peer_discovery.max_known_peers, config.peer_discovery.max_unverified_peers),
      this.bus,
      identity.publicKey,
      { storage, trust: new PeerTrust(config.peer_discovery.hearsay_per_minute), metrics },
    );

    const specificHost = config.node.listen_host === '0.0.0.0' ? null : config.node.listen_host;
    this.specificHost = specificHost;
    this.dht = new MainlineDht({
      // Chosen before reachability is known: BEP 42 only for a node configured public.
      nodeId: chooseNodeId(config.node.node_type === 'public' ? 'public' : 'private', specificHost),
      bootstrap: config.dht.bootstrap_nodes,
      host: config.node.listen_host,
      port: config.dht.dht_port,
      logger,
      metrics,
    });
    this.topicDiscovery = new TopicDiscovery({
      dht: this.dht,
      topic: config.peer_discovery.topic,
      intervalMs: config.peer_discovery.discovery_interval * 1000,
      announcePort: () => this.quicPort || this.dht.port,
      announce: () => this.nodeType === 'public',
      ownAddress: () => (specificHost ? { host: specificHost, port: this.quicPort || this.dht.port } : null),
      bus: this.bus,
      logger,
    });
    this.metadataPublisher = new MetadataPublisher({
      dht: this.dht,
      identity,
      nodeState: this.nodeState,
      bus: this.bus,
      logger,
      republishIntervalMs: config.dht.metadata_republish_interval * 1000,
      content: () => this.initialMetadata(specificHost),
      // The seed: a NAT node publishes only once it has a relay session (and `auto` waits for its
      // reachability verdict: an unreachable address must never be published).
      held: config.node.node_type !== 'public',
      storage,
    });
    this.metadataFetcher = new MetadataFetcher({
      dht: this.dht,
      bus: this.bus,
      logger,
      ttlMs: config.dht.metadata_cache_ttl * 1000,
      metrics,
    });
    const idleTimeoutMs = config.quic.quic_idle_timeout * 1000;
    const limits = config.connection_limits;
    const limitCounters = new LimitCounters(metrics);
    this.connectionLimits = new InboundLimiter({
      settings: {
        maxInboundPerIp: limits.max_inbound_per_ip,
        maxInboundPerSubnet: limits.max_inbound_per_subnet,
        maxPendingPerIp: limits.max_pending_per_ip,
        maxPending: limits.max_pending,
        inboundPerMinutePerIp: limits.inbound_rate_per_ip,
        inboundBurstPerIp: limits.inbound_burst_per_ip,
        allowlist: limits.allowlist,
      },
      // The connection manager, built below, owns the slots and decides what to prune.
      capacity: { makeRoomFor: (group, reserved) => this.connections.makeRoomFor(group, reserved) },
      counters: limitCounters,
      bus: this.bus,
      logger,
    });
    this.transport = new QuicTransport({
      identity,
      host: config.node.listen_host,
      port: config.quic.quic_port,
      logger,
      // Above our own idle timeout, so that the lifecycle marks a connection STALE and closes it
      // itself (and says so) before QUIC would drop it silently.
      idleTimeoutMs: idleTimeoutMs * 2,
      maxConnections: config.quic.max_connections,
      admission: this.connectionLimits,
    });
    const exchanger = new IdentityExchanger({
      local: {
        identity,
        dhtNodeId: () => this.dhtNodeId,
        nodeType: () => this.nodeType,
        isRelay: () => this.isRelay,
        topic: () => config.peer_discovery.topic,
        dhtPort: () => this.dht.port,
        listenAddresses: () => this.listenAddresses(),
      },
      knownPeers: this.knownPeers,
      maxPeersToShare: config.peer_discovery.max_known_peers_to_share,
      sharePerMinute: config.peer_discovery.hearsay_per_minute,
    });
    this.connections = new ConnectionManager({
      transport: this.transport,
      exchanger,
      bus: this.bus,
      logger,
      idleTimeoutMs,
      cleanupIntervalMs: Math.min(60_000, Math.max(1_000, idleTimeoutMs / 4)),
      maxConnections: config.quic.max_connections,
      ownPeerId: identity.peerId,
      storage,
      limitCounters,
      metrics,
    });
    this.discovery = new DiscoveryService({
      connections: this.connections,
      fetcher: this.metadataFetcher,
      knownPeers: this.knownPeers.repository,
      bus: this.bus,
      logger,
      ownPeerId: identity.peerId,
      bootstrap: config.peer_discovery.bootstrap_peers,
      intervalMs: config.peer_discovery.discovery_interval * 1000,
      maxConnections: config.quic.max_connections,
      targetConnections: config.peer_discovery.target_connections,
      connectRelayed: (route) => this.connectRelayed(route),
    });
    this.reachability = new ReachabilityService({
      mode: config.node.node_type,
      connections: this.connections,
      probe: (address, peerId, timeoutMs) => this.transport.probe(address, peerId, timeoutMs),
      bus: this.bus,
      logger,
      quicPort: () => this.quicPort,
      recheckIntervalMs: config.nat.recheck_interval * 1000,
      unsettledRecheckIntervalMs: config.nat.unsettled_recheck_interval * 1000,
      metrics,
    });
    this.relayServer = new RelayServer({
      enabled: () => this.isRelay,
      connections: this.connections,
      bus: this.bus,
      logger,
      limits: {
        maxSessions: config.relay.relay_max_sessions,
        maxCircuitsPerPeer: config.relay.relay_max_circuits_per_peer,
        maxCircuitBytes: config.relay.relay_max_circuit_bytes,
        maxCircuitDurationMs: config.relay.relay_max_circuit_duration * 1000,
      },
      keepaliveIntervalMs: config.relay.relay_keepalive_interval * 1000,
      ownAddress: () => this.publicAddress,
      metrics,
    });
    this.relayedTransport = new RelayedTransport({ identity, connections: this.connections, logger });
    this.relayClient = new RelayClient({
      ownPeerId: identity.peerId,
      connections: this.connections,
      knownPeers: this.knownPeers.repository,
      bus: this.bus,
      logger,
      connectToPeer: (peerId) => this.connectToPeer(peerId),
    });
    this.holePuncher = new HolePuncher({
      connections: this.connections,
      sendRaw: (data, address) => this.transport.sendRaw(data, address),
      bus: this.bus,
      logger,
      ownAddresses: () => [...this.reachability.observed.addresses(), ...this.listenAddresses()],
      metrics,
    });
    this.hearsay = new HearsayVerifier({
      knownPeers: this.knownPeers,
      fetcher: this.metadataFetcher,
      bus: this.bus,
      logger,
      disconnect: (peerId, reason) => this.connections.disconnect(peerId, reason),
    });
    const reachabilityPolicy = new ReachabilityPolicy({
      mode: config.node.node_type,
      reachability: this.reachability,
      relayClient: this.relayClient,
      publisher: this.metadataPublisher,
      connections: this.connections,
      bus: this.bus,
      logger,
      relayGraceMs: config.nat.relay_grace_period * 1000,
      isRelay: () => this.isRelay,
      publicAddress: () => this.publicAddress,
      listensOnSpecificHost: specificHost !== null,
    });
    // A peer's DHT node joins our routing table once the exchange told us its port.
    this.bus.on('peer.exchanged', (e) => {
      const remote = parseHostPort(e.payload.remoteAddress);
      if (remote && e.payload.dhtPort > 0 && this.dht.running) this.dht.addNode({ host: remote.host, port: e.payload.dhtPort });
    });
    const historyProtection = new HistoryProtection({
      bus: this.bus,
      connections: this.connections,
      bootstrap: config.peer_discovery.bootstrap_peers,
    });
    this.components = [
      this.dht,
      this.connectionLimits,
      historyProtection,
      this.transport,
      this.connections,
      this.reachability,
      this.relayServer,
      this.relayedTransport,
      this.holePuncher,
      this.topicDiscovery,
      this.metadataPublisher,
      this.relayClient,
      reachabilityPolicy,
      this.hearsay,
      this.discovery,
    ];
  }

  /**
   * Connects to a known peer the way its DHT metadata says (the seed's connection flow): directly
   * when it is public, through its relay when it is behind NAT.
   */
  async connectToPeer(peerId: string): Promise<ConnectionInfo> {
    const existing = this.connections.byPeer(peerId);
    if (existing) return existing;
    const route = await resolvePeerRoute(peerId, this.knownPeers.repository, this.metadataFetcher);
    if (route.kind === 'direct') return this.connections.connect(route.address, peerId);
    return this.connectRelayed(route);
  }

  private connectRelayed(route: RelayRoute): Promise<ConnectionInfo> {
    return this.connections.connectVia(route.targetPeerId, formatAddress(route.relayAddress), () => this.relayedTransport.dial(route));
  }

  /** Our address as the internet reaches it, when known (the listen address, or what peers observe). */
  get publicAddress(): string | null {
    if (this.nodeType !== 'public') return null;
    return publicAddressOf(this.reachability.observed, this.specificHost, this.quicPort);
  }

  private listenAddresses(): string[] {
    return this.specificHost ? [formatAddress({ host: this.specificHost, port: this.quicPort })] : [];
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
      await node.startComponents();
    } catch (error) {
      if (database) closeAfterFailedStart(database, logger);
      releaseLock();
      // Components write to the database at start (the BEP 44 sequence number).
      throw asStorageError(error, 'write to the database', databaseFile);
    }
    return node;
  }

  get peerId(): string {
    return this.identity.peerId;
  }

  get dhtNodeId(): string {
    return this.dht.nodeId.toString('hex');
  }

  /** The QUIC port peers dial (the bound one once the transport started). */
  get quicPort(): number {
    return this.transport.running ? this.transport.port : this.config.quic.quic_port;
  }

  get dhtAddress(): HostPort {
    return { host: this.config.node.listen_host, port: this.dht.port };
  }

  private initialMetadata(specificHost: string | null): MetadataContent {
    const port = this.quicPort || null;
    return {
      publicIp: this.nodeType === 'public' ? specificHost : null,
      privateIp: specificHost,
      publicPort: this.nodeType === 'public' ? port : null,
      privatePort: port,
      nodeType: this.nodeType,
      isRelay: this.isRelay,
      usingRelay: false,
      connectedRelay: null,
      relaySessionId: null,
      relayAddress: null,
      protocols: ['remote-network/1'],
      capabilities: this.isRelay ? ['relay'] : [],
    };
  }

  /** Forced by the config, or as reachability detection found (`auto` is private until then). */
  get nodeType(): NodeType {
    return this.reachability.reachability === 'PUBLIC' ? 'public' : 'private';
  }

  /** A relay serves only once it is known to be public. */
  get isRelay(): boolean {
    return this.config.relay.relay_mode && this.nodeType === 'public';
  }

  private async startComponents(): Promise<void> {
    const started: Component[] = [];
    try {
      for (const component of this.components) {
        await component.start?.();
        started.push(component);
      }
    } catch (error) {
      await this.stopComponents(started.reverse());
      throw error;
    }
  }

  /**
   * Stops every component (in reverse), then closes the database and releases the lock. Idempotent.
   * A database that cannot be checkpointed (a full disk) is still closed and the lock released;
   * the failure is logged once and rejects the stop with a StorageError (the WAL keeps the data).
   */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopping ??= (async () => {
      this.bus.emit('node.stopping', { peerId: this.peerId, reason });
      await this.stopComponents([...this.components].reverse());
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

  private async stopComponents(components: Component[]): Promise<void> {
    for (const component of components) {
      const started = performance.now();
      try {
        await component.stop?.();
        this.logger.debug({ component: component.name, ms: Math.round(performance.now() - started) }, 'component stopped');
      } catch (error) {
        // Keep stopping the rest: one failing component must not leave sockets or the database open.
        this.logger.error({ err: error, component: component.name }, 'component failed to stop');
      }
    }
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
