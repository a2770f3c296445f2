import type { NodeTypeSetting } from '../config/schema.ts';
import { RemoteNetworkError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { formatAddress } from '../exchange/identity-exchange.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { Logger } from '../logger.ts';
import type { PeerConnection } from '../quic/types.ts';
import { setBounded } from '../util/bounded-map.ts';
import { MessageChannel, parse } from '../wire/channel.ts';
import { dialbackRequestMessage, dialbackResultMessage } from '../wire/messages.ts';
import { type NatType, ObservedAddresses } from './observed-addresses.ts';

export type Reachability = 'UNKNOWN' | 'PUBLIC' | 'PRIVATE';

/** Peers asked in one check; PUBLIC needs this many confirmations (or all asked, if fewer). */
export const DIALBACK_PEERS = 3;
export const DIALBACK_CONFIRMATIONS = 2;
/** How long a dial-back may take to arrive (the peer's handshake from a fresh socket). */
export const DIALBACK_TIMEOUT_MS = 4_000;
/** Serving side: dial-backs per minute for everyone, and the pause between two for one peer. */
export const DIALBACKS_PER_MINUTE = 20;
export const DIALBACK_PEER_PAUSE_MS = 10_000;
/** A check that could not conclude (too few peers answered) is tried again after this. */
const RECHECK_MS = 30_000;

export class DialbackRateLimitedError extends RemoteNetworkError {
  readonly code = 'DIALBACK_RATE_LIMITED';
}

export interface ReachabilityOptions {
  readonly mode: NodeTypeSetting;
  readonly connections: ConnectionManager;
  readonly probe: (address: { host: string; port: number }, peerId: string, timeoutMs: number) => Promise<boolean>;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  readonly quicPort: () => number;
}

/**
 * Is this node reachable from the internet? With `node_type = auto`, once it has direct
 * connections it asks a few peers to dial back the address they observe from a fresh socket (an
 * AutoNAT-style check): PUBLIC when enough dial-backs arrive, PRIVATE when the peers answered and
 * too few did. The NAT type comes from the addresses peers observe. A forced node type is final.
 * This node also serves dial-backs for others, rate limited.
 */
export class ReachabilityService {
  readonly name = 'reachability';
  readonly observed: ObservedAddresses;
  private verdict: Reachability;
  private checking: Promise<Reachability> | undefined;
  private nextCheckAt = 0;
  private recheckTimer: NodeJS.Timeout | undefined;
  /** Dial-backs we wait for, by the peer asked. */
  private readonly expected = new Map<string, () => void>();
  private readonly served = new Map<string, number>();
  private servedThisMinute: number[] = [];
  private readonly offs: Array<() => void> = [];
  private readonly log: Logger;

  constructor(private readonly options: ReachabilityOptions) {
    this.log = options.logger.child({ component: 'reachability' });
    this.observed = new ObservedAddresses(options.quicPort);
    this.verdict = options.mode === 'public' ? 'PUBLIC' : options.mode === 'private' ? 'PRIVATE' : 'UNKNOWN';
    options.connections.handle('dialback_request', (connection, channel, first) => this.serve(connection, channel, first));
    options.connections.interceptInbound((connection) => this.interceptDialback(connection));
  }

  get reachability(): Reachability {
    return this.verdict;
  }

  get natType(): NatType {
    return this.observed.natType();
  }

  start(): void {
    this.offs.push(
      this.options.bus.on('peer.exchanged', (e) => {
        const connection = this.options.connections.byPeer(e.payload.peerId);
        if (!connection || connection.viaRelay) return;
        this.observed.record(e.payload.peerId, e.payload.observedAddress, e.payload.remoteAddress);
        this.maybeCheck();
      }),
    );
  }

  stop(): void {
    for (const off of this.offs.splice(0)) off();
    clearTimeout(this.recheckTimer);
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

  /** Runs a check now (auto mode); concurrent callers share it. */
  check(): Promise<Reachability> {
    if (this.options.mode !== 'auto') return Promise.resolve(this.verdict);
    this.checking ??= this.runCheck().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private maybeCheck(): void {
    if (this.options.mode !== 'auto' || this.verdict !== 'UNKNOWN' || this.checking) return;
    if (Date.now() < this.nextCheckAt || this.directPeers().length < DIALBACK_CONFIRMATIONS) return;
    void this.check();
  }

  private directPeers(): string[] {
    return this.options.connections
      .list()
      .filter((c) => c.peerId && !c.viaRelay && (c.state === 'IDLE' || c.state === 'CONNECTED'))
      .map((c) => c.peerId as string);
  }

  private async runCheck(): Promise<Reachability> {
    const peers = this.directPeers().slice(0, DIALBACK_PEERS);
    const outcomes = await Promise.all(peers.map((peerId) => this.askDialback(peerId)));
    const answered = outcomes.filter((o) => o !== 'no answer').length;
    const confirmed = outcomes.filter((o) => o === 'reached').length;
    this.log.info({ asked: peers.length, answered, confirmed }, 'reachability check');
    let verdict: Reachability = 'UNKNOWN';
    if (confirmed >= DIALBACK_CONFIRMATIONS) verdict = 'PUBLIC';
    else if (answered >= DIALBACK_CONFIRMATIONS) verdict = 'PRIVATE';
    if (verdict === 'UNKNOWN') {
      this.nextCheckAt = Date.now() + RECHECK_MS;
      clearTimeout(this.recheckTimer);
      this.recheckTimer = setTimeout(() => this.maybeCheck(), RECHECK_MS);
      this.recheckTimer.unref();
      return verdict;
    }
    this.conclude(verdict);
    return verdict;
  }

  private conclude(verdict: Reachability): void {
    if (verdict === this.verdict || verdict === 'UNKNOWN') return;
    this.verdict = verdict;
    this.log.info({ reachability: verdict, natType: this.natType }, 'reachability decided');
    this.options.bus.emit('nat.reachability.changed', {
      reachability: verdict,
      natType: this.natType,
      observedAddresses: this.observed.addresses(),
    });
  }

  /** Asks one peer to dial us back; 'reached' only if its connection actually arrived. */
  private async askDialback(peerId: string): Promise<'reached' | 'unreached' | 'no answer'> {
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    this.expected.set(peerId, arrived);
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
    const arrived = this.expected.get(connection.remotePeerId);
    if (!arrived || connection.viaRelay || connection.direction !== 'inbound') return false;
    arrived();
    void connection.close('dial-back received');
    return true;
  }

  private async serve(connection: PeerConnection, channel: MessageChannel, first: Record<string, unknown>): Promise<void> {
    parse(dialbackRequestMessage, first, 'dialback_request');
    if (connection.viaRelay) throw new DialbackRateLimitedError('dial-backs are served over direct connections only');
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
    const last = this.served.get(peerId) ?? 0;
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

/** The observed address to publish for a node found public (its listen address if it has one). */
export function publicAddressOf(observed: ObservedAddresses, specificHost: string | null, port: number): string | null {
  if (specificHost) return formatAddress({ host: specificHost, port });
  const primary = observed.primary;
  return primary ? formatAddress(primary) : null;
}

