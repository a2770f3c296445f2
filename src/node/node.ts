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
import { resolvePeerAddress } from './discovery/peer-address.ts';
import { IdentityExchanger, formatAddress } from './exchange/identity-exchange.ts';
import { type ConnectionInfo, ConnectionManager } from './lifecycle/connection-manager.ts';
import { QuicTransport } from './quic/quic-transport.ts';
import { EventBus } from './events/bus.ts';
import type { NodeEventMap } from './events/types.ts';
import { type NodeIdentity, loadOrCreateIdentity } from './identity/key-store.ts';
import { type Logger, createLogger } from './logger.ts';
import { MetadataFetcher } from './metadata/metadata-fetcher.ts';
import { type MetadataContent, MetadataPublisher } from './metadata/metadata-publisher.ts';
import { KnownPeersService } from './peers/known-peers-service.ts';
import { lockDataDir } from './storage/data-dir-lock.ts';
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
  readonly startedAt = new Date();
  readonly dht: MainlineDht;
  readonly topicDiscovery: TopicDiscovery;
  readonly metadataPublisher: MetadataPublisher;
  readonly metadataFetcher: MetadataFetcher;
  readonly transport: QuicTransport;
  readonly connections: ConnectionManager;
  readonly discovery: DiscoveryService;

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
    this.bus = new EventBus<NodeEventMap>((error, type) =>
      logger.error({ err: error, event: type }, 'event listener failed'),
    );
    this.nodeState = new NodeStateRepository(database.db);
    this.knownPeers = new KnownPeersService(
      new KnownPeersRepository(database.db, config.peer_discovery.max_known_peers),
      this.bus,
      identity.publicKey,
    );

    const specificHost = config.node.listen_host === '0.0.0.0' ? null : config.node.listen_host;
    this.dht = new MainlineDht({
      nodeId: chooseNodeId(this.nodeType, specificHost),
      bootstrap: config.dht.bootstrap_nodes,
      host: config.node.listen_host,
      port: config.dht.dht_port,
      logger,
    });
    this.topicDiscovery = new TopicDiscovery({
      dht: this.dht,
      topic: config.peer_discovery.topic,
      intervalMs: config.peer_discovery.discovery_interval * 1000,
      announcePort: () => this.quicPort || this.dht.port,
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
      // The seed: a NAT node publishes only once it has a relay session.
      held: this.nodeType === 'private',
    });
    this.metadataFetcher = new MetadataFetcher({
      dht: this.dht,
      bus: this.bus,
      logger,
      ttlMs: config.dht.metadata_cache_ttl * 1000,
    });
    const idleTimeoutMs = config.quic.quic_idle_timeout * 1000;
    this.transport = new QuicTransport({
      identity,
      host: config.node.listen_host,
      port: config.quic.quic_port,
      logger,
      // Above our own idle timeout, so that the lifecycle marks a connection STALE and closes it
      // itself (and says so) before QUIC would drop it silently.
      idleTimeoutMs: idleTimeoutMs * 2,
      maxConnections: config.quic.max_connections,
    });
    const exchanger = new IdentityExchanger({
      local: {
        identity,
        dhtNodeId: () => this.dhtNodeId,
        nodeType: () => this.nodeType,
        isRelay: () => this.isRelay,
        topic: () => config.peer_discovery.topic,
        dhtPort: () => this.dht.port,
        listenAddresses: () => (specificHost ? [formatAddress({ host: specificHost, port: this.quicPort })] : []),
      },
      knownPeers: this.knownPeers,
      maxPeersToShare: config.peer_discovery.max_known_peers_to_share,
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
    });
    // A peer's DHT node joins our routing table once the exchange told us its port.
    this.bus.on('peer.exchanged', (e) => {
      const remote = parseHostPort(e.payload.remoteAddress);
      if (remote && e.payload.dhtPort > 0 && this.dht.running) this.dht.addNode({ host: remote.host, port: e.payload.dhtPort });
    });
    this.components = [
      this.dht,
      this.transport,
      this.connections,
      this.topicDiscovery,
      this.metadataPublisher,
      this.discovery,
    ];
  }

  /** Connects to a known peer at the address its DHT metadata gives (the seed's connection flow). */
  async connectToPeer(peerId: string): Promise<ConnectionInfo> {
    const existing = this.connections.byPeer(peerId);
    if (existing) return existing;
    const address = await resolvePeerAddress(peerId, this.knownPeers.repository, this.metadataFetcher);
    return this.connections.connect(address, peerId);
  }

  static async start(config: Config, options: StartNodeOptions = {}): Promise<RemoteNode> {
    const logger = options.logger ?? createLogger(config.node.log_level);
    const dataDir = resolve(config.node.data_dir);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const releaseLock = lockDataDir(dataDir);
    let database: OpenedDatabase | undefined;
    try {
      const { identity, created, privateKeyFile } = loadOrCreateIdentity(dataDir);
      logger.info({ peerId: identity.peerId, keyFile: privateKeyFile, created }, created ? 'identity created' : 'identity loaded');
      database = openDatabase(join(dataDir, DATABASE_FILE));
      const node = new RemoteNode(config, logger, identity, dataDir, database, releaseLock);
      await node.startComponents();
      return node;
    } catch (error) {
      database?.close();
      releaseLock();
      throw error;
    }
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

  /** Until reachability detection runs, `auto` counts as private (never publish an unreachable address). */
  get nodeType(): NodeType {
    return this.config.node.node_type === 'public' ? 'public' : 'private';
  }

  get isRelay(): boolean {
    return this.config.relay.relay_mode;
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

  /** Stops every component (in reverse), then closes the database. Idempotent. */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopping ??= (async () => {
      this.bus.emit('node.stopping', { peerId: this.peerId, reason });
      await this.stopComponents([...this.components].reverse());
      this.database.close();
      this.releaseLock();
      this.logger.info({ reason }, 'node stopped');
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
