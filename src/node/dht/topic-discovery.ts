import type { NodeComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import { createHash } from 'node:crypto';
import type { HostPort } from '../base/address.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { Logger } from '../base/logger.ts';
import { setBounded } from '../util/bounded-map.ts';
import { ANNOUNCE_INTERVAL_MS, MAX_TOPIC_PEERS } from './constants.ts';
import type { MainlineDht } from './mainline-dht.ts';

export interface TopicPeer extends HostPort {
  readonly lastSeen: Date;
}

export interface TopicDiscoveryOptions {
  readonly dht: MainlineDht;
  readonly topic: string;
  readonly intervalMs: number;
  /** The port peers should dial us on (our QUIC port), read at each announce. */
  readonly announcePort: () => number;
  /** Whether to announce ourselves (a node behind NAT is not dialable at the address a DHT records). */
  readonly announce: () => boolean;
  /** Our own announced address, left out of what we report. */
  readonly ownAddress: () => HostPort | null;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
}

/**
 * BEP 5 discovery: announces info_hash = SHA1(topic) with our QUIC port and looks the topic up
 * every `intervalMs`. Addresses found are kept (most recent first, bounded) and announced on the
 * bus as `dht.topic.peer` for the connection layer.
 */
export class TopicDiscovery implements Component {
  readonly name = 'topic-discovery';
  readonly infoHash: Buffer;
  private readonly peers = new Map<string, TopicPeer>();
  private timer: NodeJS.Timeout | undefined;
  private lastAnnounce = 0;
  private cycle: Promise<void> | undefined;
  private running = false;
  private readonly log: Logger;

  /** As the node runs it: `[peer_discovery] topic`, announced while we are public. */
  static create({ config, dht, addresses, bus, logger }: NodeComponents): TopicDiscovery {
    const port = () => addresses.quicPort || dht.port;
    return new TopicDiscovery({
      dht,
      bus,
      logger,
      topic: config.peer_discovery.topic,
      intervalMs: config.peer_discovery.discovery_interval * 1000,
      announcePort: port,
      announce: () => addresses.nodeType === 'public',
      ownAddress: () => (addresses.specificHost ? { host: addresses.specificHost, port: port() } : null),
    });
  }

  constructor(private readonly options: TopicDiscoveryOptions) {
    this.infoHash = createHash('sha1').update(options.topic).digest();
    this.log = options.logger.child({ component: 'topic-discovery' });
  }

  start(): void {
    this.running = true;
    this.timer = setInterval(() => void this.runCycle(), this.options.intervalMs);
    this.timer.unref();
    void this.runCycle();
  }

  /** A cycle in flight is abandoned (its results ignored), not awaited: stopping never waits on the network. */
  stop(): void {
    this.running = false;
    clearInterval(this.timer);
  }

  /** Topic peers, most recently seen first. */
  list(): TopicPeer[] {
    return [...this.peers.values()].sort((a, b) => b.lastSeen.getTime() - a.lastSeen.getTime());
  }

  /** One announce (when due) and one lookup; concurrent calls share the cycle in progress. */
  runCycle(): Promise<void> {
    this.cycle ??= this.announceAndLookup().finally(() => {
      this.cycle = undefined;
    });
    return this.cycle;
  }

  private async announceAndLookup(): Promise<void> {
    if (!this.running) return;
    const { dht } = this.options;
    try {
      if (Date.now() - this.lastAnnounce >= Math.min(ANNOUNCE_INTERVAL_MS, this.options.intervalMs * 10)) {
        if (dht.routingTableSize > 0 && this.options.announce()) {
          await dht.announce(this.infoHash, this.options.announcePort());
          this.lastAnnounce = Date.now();
        }
      }
      const found = await dht.lookup(this.infoHash);
      if (this.running) this.record(found);
    } catch (error) {
      this.log.debug({ err: error }, 'topic discovery cycle failed');
    }
  }

  private record(found: readonly HostPort[]): void {
    const own = this.options.ownAddress();
    const now = new Date();
    for (const peer of found) {
      if (own && peer.host === own.host && peer.port === own.port) continue;
      const key = `${peer.host}:${peer.port}`;
      const isNew = !this.peers.has(key);
      setBounded(this.peers, key, { host: peer.host, port: peer.port, lastSeen: now }, MAX_TOPIC_PEERS);
      if (isNew) this.options.bus.emit('dht.topic.peer', { address: key, topic: this.options.topic });
    }
  }
}
