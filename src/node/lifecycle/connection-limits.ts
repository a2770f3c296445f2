import type { BaseComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import type { Config } from '../config/schema.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { Logger } from '../base/logger.ts';
import type { LimitReason } from '../quic/refusal.ts';
import type { InboundAdmission } from '../quic/types.ts';
import { setBounded } from '../util/bounded-map.ts';
import { type IpPrefix, prefixContains } from '../util/ip-prefix.ts';
import { TokenBuckets } from '../util/token-buckets.ts';
import { addressKey, networkKey } from './connection-groups.ts';
import type { LimitCounters } from './limit-counters.ts';

/** Addresses whose rate-limit state is kept at most (a flood of fresh addresses pushes out the oldest). */
export const MAX_RATE_LIMITED_ADDRESSES = 4096;
/**
 * A refusal is published as an event at most this often per address and reason (counted every
 * time): a flood must not flood the event stream, and API subscribers, with it.
 */
export const REFUSAL_EVENT_INTERVAL_MS = 1_000;

/** The `[connection_limits]` settings. */
export interface ConnectionLimitSettings {
  /** Inbound connections from one address (IPv4, or IPv6 /64) at once, handshakes included. */
  readonly maxInboundPerIp: number;
  /** The same per network (IPv4 /24, IPv6 /48). */
  readonly maxInboundPerSubnet: number;
  /** Inbound connections from one address not yet through TLS and the identity exchange. */
  readonly maxPendingPerIp: number;
  /** The same, all addresses together. */
  readonly maxPending: number;
  /** New inbound connections per minute from one address (token bucket refill)… */
  readonly inboundPerMinutePerIp: number;
  /** …and how many it may open at once. */
  readonly inboundBurstPerIp: number;
  /** Exempt from everything above (still subject to the node's max_connections). */
  readonly allowlist: readonly IpPrefix[];
}

/** The node's cap on connections, as the limits ask it (the connection manager answers). */
export interface ConnectionCapacity {
  /**
   * Whether one more inbound connection from network `group` fits, with `reserved` admitted ones
   * still on their way in; at capacity it may prune a connection of a more crowded network.
   */
  makeRoomFor(group: string, reserved: number): boolean;
}

/** The `[connection_limits]` section as the limiter reads it. */
export function connectionLimitSettings(section: Config['connection_limits']): ConnectionLimitSettings {
  return {
    maxInboundPerIp: section.max_inbound_per_ip,
    maxInboundPerSubnet: section.max_inbound_per_subnet,
    maxPendingPerIp: section.max_pending_per_ip,
    maxPending: section.max_pending,
    inboundPerMinutePerIp: section.inbound_rate_per_ip,
    inboundBurstPerIp: section.inbound_burst_per_ip,
    allowlist: section.allowlist,
  };
}

export interface InboundLimiterOptions {
  readonly settings: ConnectionLimitSettings;
  readonly capacity: ConnectionCapacity;
  /** Shared with the connection manager, which counts its own refusals and prunes there. */
  readonly counters: LimitCounters;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  readonly now?: () => number;
}

export interface ConnectionLimitStats {
  /** Refusals and prunes since start, by reason (every reason listed, zeros included). */
  readonly refusals: ReadonlyArray<{ readonly reason: LimitReason; readonly count: number }>;
  /** Admitted inbound connections not yet through TLS and the identity exchange. */
  readonly pending: number;
  /** Admitted inbound connections open now, pending ones included. */
  readonly inbound: number;
}

type Stage = 'handshake' | 'exchange' | 'established';

interface Admitted {
  readonly address: string;
  readonly network: string;
  readonly exempt: boolean;
  stage: Stage;
}

/**
 * The inbound connection limits (js-libp2p's inbound threshold and pending limit, go-libp2p's
 * per-IP and per-subnet limits): asked by the transport for each dialer whose address is proven,
 * before any TLS work. Refuses when too many connections come from one address or network, when
 * too many are still pending (handshake or identity exchange) from one address or overall, when
 * an address opens new ones faster than its token bucket allows, and when the node is at
 * capacity and nothing can be pruned for this one. Each refusal is counted by reason and
 * published as `connection.limited` (at most once a second per address and reason).
 */
export class InboundLimiter implements InboundAdmission, Component {
  readonly name = 'connection-limits';
  private readonly admitted = new Map<string, Admitted>();
  private readonly perAddress = new Map<string, { open: number; pending: number }>();
  private readonly perNetwork = new Map<string, number>();
  private pending = 0;
  /** Admitted but not yet handed to the connection manager (it cannot count them yet). */
  private inHandshake = 0;
  private readonly rate: TokenBuckets;
  /** When a refusal event was last published, by `address reason`. */
  private readonly lastEvent = new Map<string, number>();
  private readonly offs: Array<() => void> = [];
  private readonly log: Logger;

  /** As the node runs it: `[connection_limits]`; `capacity` is the connection manager's. */
  static create({ config, bus, logger }: BaseComponents, capacity: ConnectionCapacity, counters: LimitCounters): InboundLimiter {
    return new InboundLimiter({ settings: connectionLimitSettings(config.connection_limits), capacity, counters, bus, logger });
  }

  constructor(private readonly options: InboundLimiterOptions) {
    this.log = options.logger.child({ component: 'connection-limits' });
    const { settings } = options;
    this.rate = new TokenBuckets({
      burst: settings.inboundBurstPerIp,
      perSecond: settings.inboundPerMinutePerIp / 60,
      maxKeys: MAX_RATE_LIMITED_ADDRESSES,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  start(): void {
    this.offs.push(this.options.bus.on('peer.exchanged', (e) => this.exchanged(e.payload.connectionId)));
  }

  stop(): void {
    for (const off of this.offs.splice(0)) off();
  }

  admit(host: string, connectionId: string): LimitReason | undefined {
    const reason = this.check(host);
    if (reason !== undefined) {
      this.refused(host, reason);
      return reason;
    }
    const entry: Admitted = { address: addressKey(host), network: networkKey(host), exempt: this.isExempt(host), stage: 'handshake' };
    this.admitted.set(connectionId, entry);
    this.inHandshake += 1;
    if (!entry.exempt) {
      const counts = this.addressCounts(entry.address);
      counts.open += 1;
      counts.pending += 1;
      this.pending += 1;
      this.perNetwork.set(entry.network, (this.perNetwork.get(entry.network) ?? 0) + 1);
    }
    return undefined;
  }

  handshakeDone(connectionId: string): void {
    const entry = this.admitted.get(connectionId);
    if (entry?.stage !== 'handshake') return;
    entry.stage = 'exchange';
    this.inHandshake -= 1;
  }

  release(connectionId: string): void {
    const entry = this.admitted.get(connectionId);
    if (!entry) return;
    this.admitted.delete(connectionId);
    if (entry.stage === 'handshake') this.inHandshake -= 1;
    if (entry.exempt) return;
    if (entry.stage !== 'established') this.leavePending(entry);
    const counts = this.addressCounts(entry.address);
    counts.open -= 1;
    if (counts.open <= 0) this.perAddress.delete(entry.address);
    const network = (this.perNetwork.get(entry.network) ?? 1) - 1;
    if (network <= 0) this.perNetwork.delete(entry.network);
    else this.perNetwork.set(entry.network, network);
  }

  refused(host: string, reason: LimitReason): void {
    this.options.counters.count(reason);
    const key = `${addressKey(host)} ${reason}`;
    const now = this.now();
    const last = this.lastEvent.get(key);
    if (last !== undefined && now - last < REFUSAL_EVENT_INTERVAL_MS) return;
    setBounded(this.lastEvent, key, now, MAX_RATE_LIMITED_ADDRESSES);
    this.log.debug({ host, reason }, 'inbound connection refused');
    this.options.bus.emit('connection.limited', { remoteAddress: host, peerId: null, reason });
  }

  stats(): ConnectionLimitStats {
    return {
      refusals: this.options.counters.list(),
      pending: [...this.admitted.values()].filter((e) => e.stage !== 'established').length,
      inbound: this.admitted.size,
    };
  }

  private check(host: string): LimitReason | undefined {
    const { settings } = this.options;
    if (!this.isExempt(host)) {
      const address = this.perAddress.get(addressKey(host));
      if (this.pending >= settings.maxPending) return 'pending';
      if ((address?.pending ?? 0) >= settings.maxPendingPerIp) return 'pending_ip';
      if ((address?.open ?? 0) >= settings.maxInboundPerIp) return 'ip';
      if ((this.perNetwork.get(networkKey(host)) ?? 0) >= settings.maxInboundPerSubnet) return 'subnet';
      // Last of the address's own limits, so that only connections the others let through spend a token.
      if (!this.rate.take(addressKey(host))) return 'rate';
    }
    if (!this.options.capacity.makeRoomFor(networkKey(host), this.inHandshake)) return 'capacity';
    return undefined;
  }

  /** The identity exchange completed: the connection is no longer pending. */
  private exchanged(connectionId: string): void {
    const entry = this.admitted.get(connectionId);
    if (!entry || entry.stage === 'established') return;
    if (entry.stage === 'handshake') this.inHandshake -= 1;
    if (!entry.exempt) this.leavePending(entry);
    entry.stage = 'established';
  }

  private leavePending(entry: Admitted): void {
    this.pending -= 1;
    const counts = this.perAddress.get(entry.address);
    if (counts) counts.pending -= 1;
  }

  private addressCounts(address: string): { open: number; pending: number } {
    let counts = this.perAddress.get(address);
    if (!counts) {
      counts = { open: 0, pending: 0 };
      this.perAddress.set(address, counts);
    }
    return counts;
  }

  private now(): number {
    return this.options.now?.() ?? performance.now();
  }

  private isExempt(host: string): boolean {
    return this.options.settings.allowlist.some((prefix) => prefixContains(prefix, host));
  }
}
