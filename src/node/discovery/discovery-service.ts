import type { PeerDialer } from './peer-dialer.ts';
import type { NodeComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import type { KnownPeersService } from '../peers/known-peers-service.ts';
import { type HostPort, parseHostPort } from '../base/address.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { Logger } from '../base/logger.ts';
import type { MetadataFetcher } from '../metadata/metadata-fetcher.ts';
import { PeerNotDialableError } from '../peers/errors.ts';
import { DialTimeoutError } from '../quic/errors.ts';
import { setBounded } from '../util/bounded-map.ts';
import { type PeerRoute, resolvePeerRoute } from './peer-address.ts';

/**
 * Dials in flight at once, at most. The actual window adapts (AIMD, like TCP's congestion window):
 * a dial that times out halves it, each completed dial widens it by one. A handshake that times
 * out has cost both ends most of its work for nothing, and it times out because this node (or the
 * path) is already slower than the dial timeout; starting more at once only makes all of them
 * slower. (100 nodes in one process collapsed without this: three dials in four timed out.)
 */
export const MAX_CONCURRENT_DIALS = 8;
/** Queued dials beyond which new targets wait for the next periodic round. */
export const MAX_QUEUED_DIALS = 1000;
const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 5 * 60_000;
/**
 * A bootstrap peer is redialled until it answers, at most this far apart: nodes of a small
 * network often start together (after a power cut, a `docker compose up`), and one started before
 * its bootstrap peer or relay must find it once it is up.
 */
export const BOOTSTRAP_MAX_BACKOFF_MS = 10_000;
/**
 * Re-exchanges with one random connected peer follow Trickle (RFC 6206): the gap starts at this,
 * doubles after each re-exchange that brought no new peer, up to MAX_REEXCHANGE_GAP_ROUNDS
 * discovery intervals, and drops back here as soon as this node learns a new peer from any
 * source. A network that has converged costs almost nothing, while a node that is still learning
 * keeps asking. Pushing news (below) spreads a new peer fast but leaves a residue: an exchange
 * shares 50 peers, so a node can miss one that each of its exchanges happened to leave out; these
 * quick pulls fill that in. (Three peers every interval, an earlier policy, kept 30 nodes in one
 * process CPU-bound long after they had all met.)
 */
export const REEXCHANGE_MIN_GAP_MS = 1_000;
export const MAX_REEXCHANGE_GAP_ROUNDS = 16;
/** Known-but-unconnected peers retried in each periodic round. */
const RETRIES_PER_ROUND = 50;
/**
 * Wait between learning a peer and passing the news on (what is learned meanwhile goes along).
 * News is passed on by re-exchanges with NEWS_FANOUT random connected peers; whoever learns
 * something from them does the same, so a new peer becomes known to all like an epidemic, a few
 * hops of a few milliseconds each, while nobody has to connect to everyone.
 */
export const NEWS_DELAY_MS = 200;
/**
 * Peers told each time. Passing news on only while it is news leaves a few nodes that never hear
 * it (rumour mongering's residue, e^-fanout per hop); the Trickle pulls fill that in.
 */
export const NEWS_FANOUT = 2;

type Target = { kind: 'peer'; peerId: string } | { kind: 'address'; address: HostPort };

export interface DiscoveryServiceOptions {
  readonly connections: ConnectionManager;
  /** What discovery reads of peers' metadata (a fake in a unit test). */
  readonly fetcher: Pick<MetadataFetcher, 'fetch' | 'invalidate'>;
  readonly knownPeers: KnownPeersService;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  readonly ownPeerId: string;
  readonly bootstrap: readonly HostPort[];
  readonly intervalMs: number;
  readonly maxConnections: number;
  /**
   * Newly found peers are dialled only while fewer connections are open; beyond, they are only
   * known (and shared). A full mesh costs every node a handshake per peer, which at a few
   * hundred peers is most of the CPU for nothing: knowing a peer does not need a connection.
   */
  readonly targetConnections: number;
  /**
   * Whether an address is this node's own (our port on a local interface). Such an address (in a
   * bootstrap list shared by every node, or our own entry on the DHT topic) is never dialled: the
   * handshake would only end in "the peer is ourselves", again after every backoff.
   */
  readonly isOwnAddress: (address: HostPort) => boolean;
  /** Connects to a NAT peer through the relay its metadata names. */
  readonly connectRelayed: (route: Extract<PeerRoute, { kind: 'relay' }>) => Promise<unknown>;
}

/**
 * Finds and dials peers: the bootstrap addresses at start, newly known peers (the discovery
 * cascade: each connection's exchange teaches more peers, each of which is dialled in turn) and
 * addresses found on the DHT topic while fewer than `targetConnections` are open, and passes
 * what it learns on by re-exchanging (news), so that every node comes to know every other
 * without a full mesh. A peer's address comes from its DHT metadata: public nodes
 * are dialled directly, NAT nodes through their relay (a NAT node without one is skipped). Dials
 * go through a bounded queue with exponential backoff per target and respect the connection cap.
 */
export class DiscoveryService implements Component {
  readonly name = 'discovery';
  private readonly queue: Target[] = [];
  private readonly queued = new Set<string>();
  /** Keys of the bootstrap targets (retried until they answer). */
  private readonly bootstrapKeys: Set<string>;
  private readonly backoff = new Map<string, { failures: number; until: number }>();
  /** Dials in flight by address: a peer found both on the DHT topic and by exchange is dialled once. */
  private readonly dialling = new Map<string, Promise<unknown>>();
  private inFlight = 0;
  /** Dials allowed in flight now (1 … MAX_CONCURRENT_DIALS). */
  private dialWindow = MAX_CONCURRENT_DIALS;
  private running = false;
  /** Current gap between re-exchanges (REEXCHANGE_MIN_GAP_MS … MAX_REEXCHANGE_GAP_ROUNDS intervals). */
  private reexchangeGapMs = REEXCHANGE_MIN_GAP_MS;
  private reexchangeTimer: NodeJS.Timeout | undefined;
  private reexchangeInFlight = false;
  private timer: NodeJS.Timeout | undefined;
  /** Peers that taught us something shareable not passed on yet (they need not hear it back). */
  private readonly newsSources = new Set<string>();
  private newsTimer: NodeJS.Timeout | undefined;
  private newsInFlight = false;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly log: Logger;

  /** As the node runs it: `[peer_discovery]` bootstrap peers, interval and connection target. */
  static create(c: NodeComponents, dialer: PeerDialer): DiscoveryService {
    const { config, connections, fetcher, knownPeers, bus, logger, identity, addresses } = c;
    return new DiscoveryService({
      connections,
      fetcher,
      knownPeers,
      bus,
      logger,
      ownPeerId: identity.peerId,
      bootstrap: config.peer_discovery.bootstrap_peers,
      intervalMs: config.peer_discovery.discovery_interval * 1000,
      maxConnections: config.quic.max_connections,
      targetConnections: config.peer_discovery.target_connections,
      isOwnAddress: (address) => addresses.isOwnAddress(address),
      connectRelayed: (route) => dialer.connectRelayed(route),
    });
  }

  constructor(private readonly options: DiscoveryServiceOptions) {
    this.log = options.logger.child({ component: 'discovery' });
    this.bootstrapKeys = new Set(options.bootstrap.map((address) => keyOf({ kind: 'address', address })));
  }

  start(): void {
    this.running = true;
    const { bus } = this.options;
    this.unsubscribe.push(
      // Hearsay is neither dialled nor news: only a peer that proved itself (an exchange with it,
      // or its signed metadata in the DHT) is worth a dial and worth telling others about.
      bus.on('peer.discovered', (e) => {
        if (!e.payload.verified) return;
        this.learned();
        this.news(e.payload.peerId);
      }),
      bus.on('peer.verified', (e) => {
        this.learned();
        if (e.payload.by === 'dht') this.enqueue({ kind: 'peer', peerId: e.payload.peerId });
        this.news(e.payload.via ?? e.payload.peerId);
      }),
      bus.on('dht.topic.peer', (e) => {
        const address = parseHostPort(e.payload.address);
        if (address && this.wantsMoreConnections()) this.enqueue({ kind: 'address', address });
      }),
    );
    for (const address of this.options.bootstrap) {
      if (this.options.isOwnAddress(address))
        this.log.info({ address: `${address.host}:${address.port}` }, 'a bootstrap address is this node: skipped');
      else this.enqueue({ kind: 'address', address });
    }
    this.timer = setInterval(() => this.periodic(), this.options.intervalMs);
    this.timer.unref();
    this.scheduleReexchange();
  }

  stop(): void {
    this.running = false;
    clearInterval(this.timer);
    clearTimeout(this.newsTimer);
    this.newsTimer = undefined;
    clearTimeout(this.reexchangeTimer);
    this.newsSources.clear();
    for (const off of this.unsubscribe.splice(0)) off();
    this.queue.length = 0;
    this.queued.clear();
  }

  /** Queue length, dials in flight and the current dial window (diagnostics). */
  get pending(): { queued: number; inFlight: number; window: number } {
    return { queued: this.queue.length, inFlight: this.inFlight, window: this.dialWindow };
  }

  /** `backedOff`: the retry after a failure, whose wait is over (its own timer said so). */
  enqueue(target: Target, backedOff = false): void {
    if (!this.running) return;
    const key = keyOf(target);
    if (target.kind === 'peer' && (target.peerId === this.options.ownPeerId || this.options.connections.isConnected(target.peerId))) {
      return;
    }
    if (target.kind === 'peer' && !this.wantsMoreConnections()) return;
    if (target.kind === 'address' && this.options.isOwnAddress(target.address)) return;
    // The backoff's own retry skips the wall-clock test: a timer may fire a millisecond before
    // Date.now() reaches `until`, and the clock may be stepped back; either would drop the retry,
    // and a bootstrap peer with it, for good.
    const wait = backedOff ? undefined : this.backoff.get(key);
    if (this.queued.has(key) || (wait && wait.until > Date.now()) || this.queue.length >= MAX_QUEUED_DIALS) return;
    this.queued.add(key);
    this.queue.push(target);
    this.pump();
  }

  /** One periodic round: retry known peers we are not connected to, up to the target. */
  periodic(): void {
    if (!this.running) return;
    const connections = this.options.connections.list().filter((c) => c.peerId && c.state !== 'CLOSED' && c.state !== 'STALE');
    // The most recently seen known peers we have no connection to (connected ones are left out
    // of the query, so that they cannot crowd the unconnected out of the round).
    const skip = [this.options.ownPeerId, ...connections.map((c) => c.peerId ?? '')];
    const room = Math.min(RETRIES_PER_ROUND, this.options.targetConnections - connections.length);
    if (room > 0) {
      for (const peer of this.options.knownPeers.recent(room, skip)) this.enqueue({ kind: 'peer', peerId: peer.peerId });
    }
  }

  /** This node learned a peer it can share: what it knows changed, so re-exchanges come quickly again. */
  private learned(): void {
    if (this.reexchangeGapMs === REEXCHANGE_MIN_GAP_MS) return;
    this.reexchangeGapMs = REEXCHANGE_MIN_GAP_MS;
    if (!this.reexchangeInFlight) this.scheduleReexchange();
  }

  private scheduleReexchange(): void {
    clearTimeout(this.reexchangeTimer);
    if (!this.running) return;
    // Trickle fires at a random point of the interval's second half: nodes reset by the same news
    // do not all ask at once.
    this.reexchangeTimer = setTimeout(() => void this.reexchangeRound(), this.reexchangeGapMs * (0.5 + Math.random() / 2));
    this.reexchangeTimer.unref();
  }

  private async reexchangeRound(): Promise<void> {
    const [peer] = this.randomConnectedPeers(1);
    let taught = false;
    this.reexchangeInFlight = true;
    try {
      if (peer) taught = (await this.options.connections.reexchange(peer)).peersDiscovered > 0;
    } catch (error) {
      this.log.debug({ err: error, peerId: peer }, 're-exchange failed');
    } finally {
      this.reexchangeInFlight = false;
    }
    // What it taught has already reset the gap (peer.discovered); nothing new widens it.
    if (!taught) this.reexchangeGapMs = Math.min(this.reexchangeGapMs * 2, this.options.intervalMs * MAX_REEXCHANGE_GAP_ROUNDS);
    this.scheduleReexchange();
  }

  /** Something shareable was learned; `source` knows it already and need not hear it back. */
  private news(source: string): void {
    this.newsSources.add(source);
    this.scheduleNews();
  }

  private scheduleNews(): void {
    if (!this.running || this.newsSources.size === 0 || this.newsTimer || this.newsInFlight) return;
    this.newsTimer = setTimeout(() => {
      this.newsTimer = undefined;
      void this.spreadNews();
    }, NEWS_DELAY_MS);
    this.newsTimer.unref();
  }

  /**
   * Re-exchanges with NEWS_FANOUT random connected peers that did not bring the news themselves;
   * news learned meanwhile goes in the next round.
   */
  private async spreadNews(): Promise<void> {
    const peers = this.randomConnectedPeers(NEWS_FANOUT, this.newsSources);
    this.newsSources.clear();
    if (!this.running || peers.length === 0) return;
    this.newsInFlight = true;
    try {
      await Promise.all(
        peers.map((peer) =>
          this.options.connections.reexchange(peer).catch((error: unknown) => {
            this.log.debug({ err: error, peerId: peer }, 'news re-exchange failed');
          }),
        ),
      );
    } finally {
      this.newsInFlight = false;
      this.scheduleNews();
    }
  }

  /** Up to `count` peers with a usable connection (not being set up or closed), in random order. */
  private randomConnectedPeers(count: number, exclude: ReadonlySet<string> = new Set()): string[] {
    const peers = this.options.connections
      .list()
      .filter((c) => c.state === 'IDLE' || c.state === 'CONNECTED')
      .flatMap((c) => (c.peerId && !exclude.has(c.peerId) ? [c.peerId] : []));
    return shuffle(peers).slice(0, count);
  }

  /** Dials in flight count as connections already (a dial is tracked only once its lookup is done). */
  private wantsMoreConnections(): boolean {
    return this.options.connections.size + this.inFlight < Math.min(this.options.targetConnections, this.options.maxConnections);
  }

  private pump(): void {
    while (this.running && this.inFlight < this.dialWindow && this.queue.length > 0) {
      if (!this.wantsMoreConnections()) {
        // Full: what is queued waits for a periodic round that finds room again.
        for (const target of this.queue.splice(0)) this.queued.delete(keyOf(target));
        return;
      }
      const target = this.queue.shift();
      if (!target) return;
      this.queued.delete(keyOf(target));
      this.inFlight += 1;
      this.dial(target)
        .then((dialled) => {
          this.backoff.delete(keyOf(target));
          if (dialled) this.dialWindow = Math.min(this.dialWindow + 1, MAX_CONCURRENT_DIALS);
        })
        .catch((error: unknown) => this.failed(target, error))
        .finally(() => {
          this.inFlight -= 1;
          this.pump();
        });
    }
  }

  /** True when a handshake completed (not when the peer was connected already). */
  private async dial(target: Target): Promise<boolean> {
    if (target.kind === 'address') return this.connectOnce(target.address);
    if (this.options.connections.isConnected(target.peerId)) return false;
    const route = await resolvePeerRoute(target.peerId, this.options.knownPeers, this.options.fetcher);
    if (route.kind === 'relay') {
      await this.options.connectRelayed(route);
      return true;
    }
    return this.connectOnce(route.address, target.peerId);
  }

  /**
   * One dial per address at a time. The same peer usually turns up twice at once (its address on
   * the DHT topic, its id in an exchange); two dials from one node would both complete the
   * handshake and the newer would replace the older, doubling the most expensive step. A later
   * caller waits for the dial in flight (its failure is the caller's too) and then reuses the
   * connection it made.
   */
  private async connectOnce(address: HostPort, peerId?: string): Promise<boolean> {
    const key = `${address.host}:${address.port}`;
    for (let current = this.dialling.get(key); current; current = this.dialling.get(key)) await current;
    const started = Date.now();
    const dialling = this.options.connections.connect(address, peerId);
    this.dialling.set(key, dialling);
    try {
      // An existing connection (to that peer, or at that address) is returned as it is.
      return (await dialling).openedAt.getTime() >= started;
    } finally {
      this.dialling.delete(key);
    }
  }

  private failed(target: Target, error: unknown): void {
    const key = keyOf(target);
    // The cached address may be stale (the peer restarted elsewhere): look it up again next time.
    if (target.kind === 'peer') this.options.fetcher.invalidate(target.peerId);
    if (error instanceof DialTimeoutError) this.dialWindow = Math.max(1, Math.floor(this.dialWindow / 2));
    const failures = (this.backoff.get(key)?.failures ?? 0) + 1;
    const bootstrap = this.bootstrapKeys.has(key);
    const delay = Math.min(FIRST_BACKOFF_MS * 2 ** (failures - 1), bootstrap ? BOOTSTRAP_MAX_BACKOFF_MS : MAX_BACKOFF_MS);
    setBounded(this.backoff, key, { failures, until: Date.now() + delay }, MAX_QUEUED_DIALS * 10);
    this.log.debug({ target: key, failures, retryInMs: delay, err: error }, 'dial failed');
    // A NAT peer without a relay waits for the next periodic round (it may register by then);
    // anything else (metadata not published yet, a peer still starting) is worth another try once
    // the backoff ends.
    if (error instanceof PeerNotDialableError) return;
    if (this.running && (failures < 8 || bootstrap)) {
      const retry = setTimeout(() => this.enqueue(target, true), delay);
      retry.unref();
    }
  }
}

function keyOf(target: Target): string {
  return target.kind === 'peer' ? `peer:${target.peerId}` : `addr:${target.address.host}:${target.address.port}`;
}

function shuffle<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}
