import type { NodeComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import { networkInterfaces } from 'node:os';
import type { DecidedReachability, NodeTypeSetting, Reachability } from '../base/node-type.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { type HostPort, formatAddress } from '../base/address.ts';
import { connectionGroup } from '../lifecycle/connection-groups.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { ProtocolRegistry } from '../lifecycle/protocol-registry.ts';
import type { Logger } from '../base/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import type { PeerConnection } from '../quic/types.ts';
import { setBounded } from '../util/bounded-map.ts';
import { MessageChannel } from '../wire/channel.ts';
import { dialbackRequestMessage, dialbackResultMessage } from '../wire/messages.ts';
import type { NatType, ObservedAddresses } from './observed-addresses.ts';

const REACHABILITY_VERDICTS: readonly Reachability[] = ['UNKNOWN', 'PUBLIC', 'PRIVATE'];
/**
 * How sure the verdict is: NONE (no verdict), PROVISIONAL (one peer's word, or peers of one
 * network only when others were available), CONFIRMED (two distinct peers, from distinct networks
 * where there were some), CONFIGURED (node_type forced).
 */
export type ReachabilityConfidence = 'NONE' | 'PROVISIONAL' | 'CONFIRMED' | 'CONFIGURED';

/** Peers asked in one check (distinct networks first). */
export const DIALBACK_PEERS = 3;
/** Distinct peers that must agree for a CONFIRMED verdict. */
export const CONFIRMING_PEERS = 2;
/** How long a dial-back may take to arrive (the peer's handshake from a fresh socket). */
export const DIALBACK_TIMEOUT_MS = 4_000;
/**
 * Serving side: dial-backs per minute for everyone, and the pause between two for one peer. A
 * dial-back is one handshake from a fresh socket (a few ms of CPU); a relay is the one peer every
 * NAT client of a small network asks, each every unsettled_recheck_interval while it is unsure.
 */
export const DIALBACKS_PER_MINUTE = 60;
export const DIALBACK_PEER_PAUSE_MS = 10_000;
/** A confirmed verdict is overturned by a confirmed opposite check, or by this many opposite checks in a row. */
export const OPPOSITE_CHECKS_TO_FLIP = 2;
/** How often the local interfaces are compared with what they were (an address change triggers a check). */
const INTERFACE_POLL_MS = 10_000;
/** A check that concluded nothing (nobody answered) is retried after this at most. */
const INCONCLUSIVE_RETRY_MS = 15_000;
/**
 * Checks start at least this far apart (the API's excepted): a peer serves one dial-back per
 * DIALBACK_PEER_PAUSE_MS per requester, and a check sooner would turn its answer into a refusal.
 */
export const MIN_CHECK_GAP_MS = DIALBACK_PEER_PAUSE_MS + 1_000;

export class DialbackRateLimitedError extends RemoteNetworkError {
  readonly code = 'DIALBACK_RATE_LIMITED';
}

export interface ReachabilityOptions {
  readonly mode: NodeTypeSetting;
  readonly connections: ConnectionManager;
  readonly protocols: ProtocolRegistry;
  readonly probe: (address: HostPort, peerId: string, timeoutMs: number) => Promise<boolean>;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  /** Where the addresses peers observe for us are recorded (the address book's). */
  readonly observed: ObservedAddresses;
  /** Re-check period once CONFIRMED, and while PROVISIONAL or undecided. */
  readonly recheckIntervalMs: number;
  readonly unsettledRecheckIntervalMs: number;
  readonly metrics?: Metrics;
}

/** What a check found, and what the node believes now. */
export interface ReachabilityState {
  readonly reachability: Reachability;
  readonly confidence: ReachabilityConfidence;
  readonly checkedAt: Date | null;
  readonly nextCheckAt: Date | null;
}

type Outcome = 'reached' | 'unreached' | 'no answer';

/**
 * Is this node reachable from the internet? With `node_type = auto` it asks directly connected
 * peers (one is enough to start) to dial back the address they observe, from a fresh socket (an
 * AutoNAT-style check). A dial-back that arrives is our own observation: PUBLIC. Answers without
 * one: PRIVATE. One peer's word makes a PROVISIONAL verdict, two distinct peers (from distinct
 * /24 or /48 networks when there are such peers) a CONFIRMED one. The verdict is re-checked
 * periodically, at once when the address peers see or the local interfaces change, and when a
 * peer not asked yet connects while the verdict is provisional; a confirmed verdict
 * flips only on a confirmed opposite check or OPPOSITE_CHECKS_TO_FLIP opposite checks in a row (one
 * lost packet flips nothing). A forced node type is final. This node also serves dial-backs for
 * others, rate limited.
 */
export class ReachabilityService implements Component {
  readonly name = 'reachability';
  readonly observed: ObservedAddresses;
  private verdict: Reachability;
  private confidenceLevel: ReachabilityConfidence;
  private lastCheckAt: Date | null = null;
  private nextCheck: Date | null = null;
  private oppositeChecks = 0;
  /** Peers asked in the last check that concluded (a peer not among them re-tests a provisional verdict). */
  private askedPeers = new Set<string>();
  private lastCheckStartedAt = -Infinity;
  private checking: Promise<ReachabilityState> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private interfacePoll: NodeJS.Timeout | undefined;
  private interfaces = '';
  private primaryObserved: string | null = null;
  private running = false;
  /** Dial-backs we wait for, by the peer asked. */
  /** Dial-backs awaited, by peer id: the address we talk to that peer on, and what to call on arrival. */
  private readonly expected = new Map<string, { askedOver: string; arrived: () => void }>();
  private readonly served = new Map<string, number>();
  private servedThisMinute: number[] = [];
  private readonly offs: Array<() => void> = [];
  private readonly log: Logger;

  /** As the node runs it: `[nat]` intervals, dial-backs probed by the transport, observations kept in the address book. */
  static create(c: NodeComponents): ReachabilityService {
    const { config, connections, protocols, bus, logger, addresses, transport, metrics } = c;
    return new ReachabilityService({
      metrics,
      mode: config.node.node_type,
      connections,
      protocols,
      bus,
      logger,
      observed: addresses.observed,
      probe: (address, peerId, timeoutMs) => transport.probe(address, peerId, timeoutMs),
      recheckIntervalMs: config.nat.recheck_interval * 1000,
      unsettledRecheckIntervalMs: config.nat.unsettled_recheck_interval * 1000,
    });
  }

  constructor(private readonly options: ReachabilityOptions) {
    this.log = options.logger.child({ component: 'reachability' });
    this.observed = options.observed;
    this.verdict = options.mode === 'public' ? 'PUBLIC' : options.mode === 'private' ? 'PRIVATE' : 'UNKNOWN';
    this.confidenceLevel = options.mode === 'auto' ? 'NONE' : 'CONFIGURED';
    (options.metrics ?? new NoopMetrics()).observedGauge({
      name: 'remote_network_reachability',
      help: 'The reachability verdict: 1 for the current one (PUBLIC, PRIVATE or UNKNOWN), 0 for the others.',
      labelNames: ['verdict'],
      observe: (record) => {
        for (const verdict of REACHABILITY_VERDICTS) record({ verdict }, verdict === this.verdict ? 1 : 0);
      },
    });
  }

  get reachability(): Reachability {
    return this.verdict;
  }

  get confidence(): ReachabilityConfidence {
    return this.confidenceLevel;
  }

  get state(): ReachabilityState {
    return { reachability: this.verdict, confidence: this.confidenceLevel, checkedAt: this.lastCheckAt, nextCheckAt: this.nextCheck };
  }

  get natType(): NatType {
    return this.observed.natType();
  }

  start(): void {
    this.running = true;
    this.offs.push(
      this.options.connections.interceptInbound((connection) => this.interceptDialback(connection)),
      // A dial-back goes to the address a direct connection comes from: a relayed one has none of the peer's.
      this.options.protocols.handle(dialbackRequestMessage, (_request, connection, channel) => this.serve(connection, channel), {
        access: 'direct',
      }),
      this.options.bus.on('peer.exchanged', (e) => {
        const connection = this.options.connections.byPeer(e.payload.peerId);
        if (!connection || connection.viaRelay) return;
        this.observed.record(e.payload.peerId, e.payload.observedAddress, e.payload.remoteAddress);
        this.peerArrived(e.payload.peerId);
      }),
    );
    if (this.options.mode !== 'auto') return;
    this.interfaces = interfaceFingerprint();
    this.interfacePoll = setInterval(() => {
      const now = interfaceFingerprint();
      if (now === this.interfaces) return;
      this.interfaces = now;
      this.soon('the local interface addresses changed');
    }, INTERFACE_POLL_MS);
    this.interfacePoll.unref();
  }

  stop(): void {
    this.running = false;
    for (const off of this.offs.splice(0)) off();
    clearTimeout(this.timer);
    clearInterval(this.interfacePoll);
    this.nextCheck = null;
  }

  /** Resolves with the verdict once there is one (PUBLIC or PRIVATE), or UNKNOWN after `timeoutMs`. */
  waitForVerdict(timeoutMs: number): Promise<Reachability> {
    if (this.verdict !== 'UNKNOWN') return Promise.resolve(this.verdict);
    return new Promise((resolve) => {
      const off = this.options.bus.on('nat.reachability.changed', (e) => {
        off();
        clearTimeout(timer);
        resolve(e.payload.reachability);
      });
      const timer = setTimeout(() => {
        off();
        resolve(this.verdict);
      }, timeoutMs);
    });
  }

  /** Runs a check now (auto mode; a forced node type answers as it is); concurrent callers share it. */
  check(reason = 'requested'): Promise<ReachabilityState> {
    if (this.options.mode !== 'auto') return Promise.resolve(this.state);
    this.checking ??= this.runCheck(reason).finally(() => {
      this.checking = undefined;
      this.schedule();
    });
    return this.checking;
  }

  /** A direct peer finished an exchange: the first peer starts the first check; a new network re-tests a provisional verdict. */
  private peerArrived(peerId: string): void {
    if (this.options.mode !== 'auto' || !this.running) return;
    const primary = this.observed.primary ? formatAddress(this.observed.primary) : null;
    if (this.primaryObserved !== null && primary !== null && primary !== this.primaryObserved) {
      this.primaryObserved = primary;
      this.soon('peers see another address for us');
      return;
    }
    this.primaryObserved ??= primary;
    if (this.verdict === 'UNKNOWN' && !this.nextCheck) this.soon('a first direct peer');
    else if (this.confidenceLevel === 'PROVISIONAL' && !this.askedPeers.has(peerId)) this.soon('a peer not asked yet');
  }

  /** A check as soon as the peers asked last can answer again (MIN_CHECK_GAP_MS after the last one). */
  private soon(reason: string): void {
    clearTimeout(this.timer);
    const delay = Math.max(0, this.lastCheckStartedAt + MIN_CHECK_GAP_MS - Date.now());
    this.nextCheck = new Date(Date.now() + delay);
    this.timer = setTimeout(() => void this.check(reason), delay);
    this.timer.unref();
  }

  /** The next periodic check: sooner while unsettled. */
  private schedule(delayMs?: number): void {
    if (!this.running || this.options.mode !== 'auto') return;
    clearTimeout(this.timer);
    // Unsure, and a peer not asked yet to settle it: soon. Re-asking the same peers sooner would
    // tell nothing new (a new peer, address or interface starts a check of its own).
    const unasked = this.directPeers().some((p) => !this.askedPeers.has(p.peerId));
    const settled =
      this.oppositeChecks === 0 && (this.confidenceLevel === 'CONFIRMED' || (this.confidenceLevel === 'PROVISIONAL' && !unasked));
    const ms = Math.max(
      delayMs ?? (settled ? this.options.recheckIntervalMs : this.options.unsettledRecheckIntervalMs),
      this.lastCheckStartedAt + MIN_CHECK_GAP_MS - Date.now(),
    );
    this.nextCheck = new Date(Date.now() + ms);
    this.timer = setTimeout(() => void this.check('periodic re-check'), ms);
    this.timer.unref();
  }

  private directPeers(): Array<{ peerId: string; network: string }> {
    return this.options.connections
      .list()
      .filter((c) => c.peerId && !c.viaRelay && (c.state === 'IDLE' || c.state === 'CONNECTED'))
      .map((c) => ({ peerId: c.peerId as string, network: subnetOfAddress(c.remoteAddress) }));
  }

  /** Up to DIALBACK_PEERS peers, one per network first: one network's peers confirm little. */
  private choosePeers(): Array<{ peerId: string; network: string }> {
    const peers = shuffle(this.directPeers());
    const chosen: Array<{ peerId: string; network: string }> = [];
    const networks = new Set<string>();
    for (const peer of peers) {
      if (chosen.length < DIALBACK_PEERS && !networks.has(peer.network)) {
        chosen.push(peer);
        networks.add(peer.network);
      }
    }
    for (const peer of peers) if (chosen.length < DIALBACK_PEERS && !chosen.includes(peer)) chosen.push(peer);
    return chosen;
  }

  private async runCheck(reason: string): Promise<ReachabilityState> {
    const peers = this.choosePeers();
    this.lastCheckStartedAt = Date.now();
    if (peers.length === 0) {
      this.schedule(INCONCLUSIVE_RETRY_MS);
      return this.state;
    }
    const outcomes = await Promise.all(peers.map(async (p) => ({ ...p, outcome: await this.askDialback(p.peerId) })));
    this.lastCheckAt = new Date();
    const reached = outcomes.filter((o) => o.outcome === 'reached');
    const unreached = outcomes.filter((o) => o.outcome === 'unreached');
    this.log.info({ reason, asked: peers.length, reached: reached.length, unreached: unreached.length }, 'reachability check');
    // An arrival is our own observation; "nothing arrived" is the peers' word, and one liar must not outvote it.
    const support = reached.length > 0 ? reached : unreached;
    if (support.length === 0) return this.state;
    const found: Reachability = reached.length > 0 ? 'PUBLIC' : 'PRIVATE';
    const networksAvailable = new Set(peers.map((p) => p.network)).size;
    const supportingNetworks = new Set(support.map((p) => p.network)).size;
    const confirmed =
      support.length >= CONFIRMING_PEERS && (supportingNetworks >= CONFIRMING_PEERS || networksAvailable < CONFIRMING_PEERS);
    this.askedPeers = new Set(peers.map((p) => p.peerId));
    this.decide(found, confirmed ? 'CONFIRMED' : 'PROVISIONAL', reason);
    return this.state;
  }

  private decide(found: Reachability, confidence: 'PROVISIONAL' | 'CONFIRMED', reason: string): void {
    if (found === this.verdict) {
      this.oppositeChecks = 0;
      if (confidence === 'CONFIRMED' && this.confidenceLevel !== 'CONFIRMED') this.change(found, confidence, reason);
      return;
    }
    // Hysteresis: a confirmed verdict stands against one unconfirmed opposite check.
    if (this.confidenceLevel === 'CONFIRMED' && confidence !== 'CONFIRMED') {
      this.oppositeChecks += 1;
      if (this.oppositeChecks < OPPOSITE_CHECKS_TO_FLIP) {
        this.log.info({ verdict: this.verdict, found, reason }, 'an opposite reachability check: checking again soon');
        return;
      }
    }
    this.oppositeChecks = 0;
    this.change(found, confidence, reason);
  }

  private change(verdict: Reachability, confidence: ReachabilityConfidence, reason: string): void {
    const previous = this.verdict;
    this.verdict = verdict;
    this.confidenceLevel = confidence;
    this.log.info({ reachability: verdict, previous, confidence, natType: this.natType, reason }, 'reachability decided');
    this.options.bus.emit('nat.reachability.changed', {
      reachability: verdict as DecidedReachability,
      previous,
      confidence,
      natType: this.natType,
      observedAddresses: this.observed.addresses(),
    });
  }

  /** Asks one peer to dial us back; 'reached' only if its connection actually arrived. */
  private async askDialback(peerId: string): Promise<Outcome> {
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    this.expected.set(peerId, { askedOver: this.options.connections.byPeer(peerId)?.remoteAddress ?? '', arrived });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), DIALBACK_TIMEOUT_MS * 2);
    });
    try {
      const answer = this.options.connections
        .withPeerStream(peerId, async (stream) => {
          const channel = new MessageChannel(stream);
          await channel.sendFinal({ type: 'dialback_request' });
          const result = await channel.receive(dialbackResultMessage, 'dialback_result', DIALBACK_TIMEOUT_MS * 2);
          await channel.finish();
          return result;
        })
        .catch(() => null);
      const first = await Promise.race([arrival.then(() => 'arrived' as const), answer.then(() => 'answered' as const), timeout]);
      if (first === 'arrived') return 'reached';
      const result = first === 'answered' ? await answer : null;
      if (!result) return 'no answer';
      // The peer says it dialled; the connection may still be on its way (or was refused by a NAT).
      const late = await Promise.race([arrival.then(() => true), timeout.then(() => false)]);
      return late ? 'reached' : 'unreached';
    } finally {
      clearTimeout(timer);
      this.expected.delete(peerId);
    }
  }

  private interceptDialback(connection: PeerConnection): boolean {
    const expected = this.expected.get(connection.remotePeerId);
    if (!expected || connection.viaRelay || connection.direction !== 'inbound') return false;
    // From the address we already talk to, a connection passes any NAT or firewall (its mapping is
    // open): only one from another socket of the peer's (the fresh one it dials back from) proves
    // we can be reached unasked.
    const from = formatAddress(connection.remoteAddress);
    if (from === expected.askedOver) {
      this.log.debug({ peerId: connection.remotePeerId, from }, 'a connection from the address we talk to: not a dial-back');
      return false;
    }
    expected.arrived();
    void connection.close('dial-back received');
    return true;
  }

  private async serve(connection: PeerConnection, channel: MessageChannel): Promise<void> {
    this.admit(connection.remotePeerId);
    const address = connection.remoteAddress;
    const reached = await this.options.probe(address, connection.remotePeerId, DIALBACK_TIMEOUT_MS);
    await channel.sendFinal({
      type: 'dialback_result',
      address: formatAddress(address),
      reached,
      reason: reached ? null : 'no handshake from a fresh socket',
    });
    await channel.finish();
  }

  /** Dial-backs cost a handshake each: a global budget per minute and a pause per peer. */
  private admit(peerId: string): void {
    const now = Date.now();
    this.servedThisMinute = this.servedThisMinute.filter((t) => t > now - 60_000);
    const last = this.served.get(peerId) ?? Number.NEGATIVE_INFINITY;
    if (now - last < DIALBACK_PEER_PAUSE_MS) {
      throw new DialbackRateLimitedError(`one dial-back per ${DIALBACK_PEER_PAUSE_MS / 1000} s per peer`);
    }
    if (this.servedThisMinute.length >= DIALBACKS_PER_MINUTE) {
      throw new DialbackRateLimitedError(`at most ${DIALBACKS_PER_MINUTE} dial-backs per minute`);
    }
    this.servedThisMinute.push(now);
    setBounded(this.served, peerId, now, 4096);
  }
}

/** The /24 (IPv4) or /48 (IPv6) network of a direct peer's `host:port`. */
function subnetOfAddress(address: string): string {
  return connectionGroup(address, false);
}

/** The addresses of the local interfaces, as one comparable string. */
function interfaceFingerprint(): string {
  return Object.values(networkInterfaces())
    .flatMap((entries) => (entries ?? []).map((e) => e.address))
    .sort()
    .join(',');
}

function shuffle<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}
