import type { BaseComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import { type HostPort, formatAddress } from '../base/address.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { ConnectionState } from '../base/connection-state.ts';
import type { ExchangeResult, IdentityExchanger } from '../exchange/identity-exchange.ts';
import type { StorageWriteReporter } from '../health/storage-health.ts';
import type { Logger } from '../base/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import { settleWithin } from '../util/time-bounds.ts';
import { PeerConnectionLimitError } from '../quic/errors.ts';
import { type LimitReason, refusalPhrase } from '../quic/refusal.ts';
import type { Direction, PeerConnection, PeerStream, StreamTraffic, Transport } from '../quic/types.ts';
import { MessageChannel, isProtocolError } from '../wire/channel.ts';
import { MAX_PROTOCOL_ERRORS, READ_TIMEOUT_MS } from '../wire/constants.ts';
import { ReadTimeoutError } from '../wire/errors.ts';
import { identityMessage } from '../wire/messages.ts';
import { connectionGroup } from './connection-groups.ts';
import { type ConnectionMetrics, type DialOutcome, connectionMetrics } from './connection-metrics.ts';
import { PeerProtection, type PruneCandidate, choosePruneVictim } from './connection-pruner.ts';
import type { LimitCounters } from './limit-counters.ts';
import { type ProtocolRegistry, UNBOUNDED } from './protocol-registry.ts';

/** How long stop() waits for connections to close gracefully. */
export const CLOSE_GRACE_MS = 1_000;
/**
 * An inbound connection whose identity exchange has not completed by then is closed: until then
 * it holds one of the pending slots of the connection limits. Two read deadlines, since the
 * exchange has two reads and a loaded node may be slow at both.
 */
export const EXCHANGE_DEADLINE_MS = 2 * READ_TIMEOUT_MS;

export class ConnectionLimitError extends RemoteNetworkError {
  readonly code = 'CONNECTION_LIMIT';
}

/** What the node and the API see of a connection. */
export interface ConnectionInfo {
  readonly id: string;
  readonly peerId: string | null;
  readonly remoteAddress: string;
  readonly direction: Direction;
  readonly state: ConnectionState;
  readonly activeStreams: number;
  readonly lastActivity: Date;
  readonly openedAt: Date;
  readonly rttMs: number | null;
  readonly viaRelay: boolean;
}

interface Tracked {
  /** 'pending-N' while dialling, then the connection's id. */
  id: string;
  connection: PeerConnection | null;
  peerId: string | null;
  readonly remoteAddress: string;
  readonly direction: Direction;
  state: ConnectionState;
  activeStreams: number;
  lastActivity: Date;
  readonly openedAt: Date;
  readonly viaRelay: boolean;
  protocolErrors: number;
  /** An identity exchange completed on it. */
  exchanged: boolean;
}

/** Consumes an inbound connection before it is adopted (true = taken, e.g. a reachability dial-back). */
export type InboundInterceptor = (connection: PeerConnection) => boolean;

export interface ConnectionManagerOptions {
  readonly transport: Transport;
  /** The exchange every connection starts with (dialer: initiate; listener: respond to its `identity`). */
  readonly exchanger: Pick<IdentityExchanger, 'initiate' | 'respond'>;
  /** Where inbound streams go, by their first message (the exchange registers there at start). */
  readonly protocols: ProtocolRegistry;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  readonly idleTimeoutMs: number;
  readonly cleanupIntervalMs: number;
  readonly maxConnections: number;
  readonly ownPeerId: string;
  /** Told about storage failures a stream handler meets (counted and logged there, once per kind). */
  readonly storage?: StorageWriteReporter;
  /** Where refusals for capacity and prunes are counted (shared with the inbound limits). */
  readonly limitCounters?: LimitCounters;
  readonly metrics?: Metrics;
}

let pendingIds = 0;

/**
 * Every connection's lifecycle: CONNECTING while dialling or until the identity exchange is done,
 * then CONNECTED while streams are open and IDLE when none are, STALE when idle past the timeout
 * (then closed), CLOSED at the end. Each transition is a `connection.state.changed` event.
 * Inbound streams are dispatched by the type of their first message; a peer that keeps breaking
 * the protocol is disconnected.
 */
export class ConnectionManager implements Component {
  readonly name = 'connections';
  private readonly tracked = new Map<string, Tracked>();
  private readonly interceptors: InboundInterceptor[] = [];
  /** Direct dials in flight, by `addr:host:port` and by `peer:id` (see connect). */
  private readonly dialsInFlight = new Map<string, Promise<ConnectionInfo>>();
  /** Classes of untyped handler errors already logged at warn (error names: a bounded set). */
  private readonly loggedFaults = new Set<string>();
  private cleanupTimer: NodeJS.Timeout | undefined;
  private unhandleIdentity: (() => void) | undefined;
  private readonly log: Logger;
  private readonly metrics: ConnectionMetrics;
  /** Counts the message bytes of every stream handed out or dispatched here, by protocol. */
  private readonly traffic: StreamTraffic;
  /** Peers never pruned (see connection-pruner.ts): relays, bootstrap peers, and whatever tags later code sets. */
  readonly protection = new PeerProtection();

  /** As the node runs it: `[quic]` idle timeout and connection cap. */
  static create(c: BaseComponents, transport: Transport, exchanger: IdentityExchanger, limitCounters: LimitCounters): ConnectionManager {
    const { config, protocols, bus, logger, identity, storage, metrics } = c;
    const idleTimeoutMs = config.quic.quic_idle_timeout * 1000;
    return new ConnectionManager({
      transport,
      exchanger,
      protocols,
      bus,
      logger,
      storage,
      limitCounters,
      idleTimeoutMs,
      cleanupIntervalMs: Math.min(60_000, Math.max(1_000, idleTimeoutMs / 4)),
      maxConnections: config.quic.max_connections,
      ownPeerId: identity.peerId,
      metrics,
    });
  }

  constructor(private readonly options: ConnectionManagerOptions) {
    this.log = options.logger.child({ component: 'connections' });
    this.metrics = connectionMetrics(options.metrics ?? new NoopMetrics(), () => this.tracked.values());
    // A label from a bounded set: a peer's first message may name any type.
    const protocolOf = (type: string) => (options.protocols.has(type) ? type : 'other');
    this.traffic = {
      sent: (protocol, bytes) => this.metrics.sentBytes.inc({ protocol: protocolOf(protocol) }, bytes),
      received: (protocol, bytes) => this.metrics.receivedBytes.inc({ protocol: protocolOf(protocol) }, bytes),
    };
  }

  /** Sees each inbound connection before it is tracked (true: taken); returns its removal. */
  interceptInbound(interceptor: InboundInterceptor): () => void {
    this.interceptors.push(interceptor);
    return () => {
      const at = this.interceptors.indexOf(interceptor);
      if (at >= 0) this.interceptors.splice(at, 1);
    };
  }

  start(): void {
    // Relayed connections run the exchange too; the connection limits bound how many run at once.
    this.unhandleIdentity = this.options.protocols.handle(
      identityMessage,
      async (remote, connection, channel) => {
        const timer = this.metrics.exchangeDuration.startTimer();
        let outcome = 'error';
        try {
          const result = await this.options.exchanger.respond(connection, channel, remote);
          outcome = 'ok';
          this.exchanged(connection, result);
        } finally {
          timer({ role: 'responder', outcome });
        }
      },
      { maxStreams: UNBOUNDED },
    );
    this.options.transport.onConnection((connection) => this.accept(connection));
    this.cleanupTimer = setInterval(() => this.closeStale(), this.options.cleanupIntervalMs);
    this.cleanupTimer.unref();
  }

  /**
   * Asks every connection to close and gives them CLOSE_GRACE_MS to do it: a QUIC close waits
   * for the peer (and its closing period), and a stopping node must not wait on the network. The
   * transport, stopped next, ends whatever is left.
   */
  async stop(): Promise<void> {
    clearInterval(this.cleanupTimer);
    this.unhandleIdentity?.();
    const closing = [...this.tracked.values()].flatMap((t) => (t.connection ? [t.connection.close('node stopping')] : []));
    await settleWithin(Promise.all(closing), CLOSE_GRACE_MS);
  }

  list(state?: ConnectionState): ConnectionInfo[] {
    return [...this.tracked.values()].filter((t) => !state || t.state === state).map((t) => this.info(t));
  }

  /** The live connection to a peer (the exchange done), if any. */
  byPeer(peerId: string): ConnectionInfo | undefined {
    const t = this.livePeer(peerId);
    return t ? this.info(t) : undefined;
  }

  isConnected(peerId: string): boolean {
    return this.livePeer(peerId) !== undefined;
  }

  get size(): number {
    return this.tracked.size;
  }

  /**
   * Dials directly, runs the exchange, and returns the connection. An existing direct connection
   * to the peer is reused; a relayed one is not (a direct connection replaces it).
   */
  async connect(address: HostPort, expectedPeerId?: string): Promise<ConnectionInfo> {
    // Peers dial from their listening socket, so an inbound connection's source is that peer's
    // address too: an address we are already connected to needs no second connection.
    const existing = expectedPeerId ? this.livePeer(expectedPeerId, { directOnly: true }) : this.liveAddress(formatAddress(address));
    if (existing) return this.info(existing);
    // Two callers dialling one peer at once (the API and discovery, say) share one dial: two
    // dials from this node would both handshake, and the newer would close the older under the
    // first caller's exchange. A shared dial that fails, or reaches another peer than this caller
    // expects, is not the answer: this caller then dials for itself.
    const keys = [`addr:${formatAddress(address)}`, ...(expectedPeerId ? [`peer:${expectedPeerId}`] : [])];
    const shared = keys.map((key) => this.dialsInFlight.get(key)).find((p) => p !== undefined);
    if (shared) {
      const info = await shared.catch(() => undefined);
      if (info && (!expectedPeerId || info.peerId === expectedPeerId)) return info;
    }
    const dialling = this.establish({ peerId: expectedPeerId ?? null, remoteAddress: formatAddress(address), viaRelay: false }, () =>
      this.options.transport.dial(address, expectedPeerId ? { expectedPeerId } : {}),
    );
    for (const key of keys) this.dialsInFlight.set(key, dialling);
    try {
      return await dialling;
    } finally {
      for (const key of keys) if (this.dialsInFlight.get(key) === dialling) this.dialsInFlight.delete(key);
    }
  }

  /** Opens a connection through `dial` (a relay circuit) unless any connection to the peer exists. */
  async connectVia(peerId: string, remoteAddress: string, dial: () => Promise<PeerConnection>): Promise<ConnectionInfo> {
    const existing = this.livePeer(peerId);
    if (existing) return this.info(existing);
    return this.establish({ peerId, remoteAddress, viaRelay: true }, dial);
  }

  private async establish(
    target: Pick<Tracked, 'peerId' | 'remoteAddress' | 'viaRelay'>,
    dial: () => Promise<PeerConnection>,
  ): Promise<ConnectionInfo> {
    if (this.tracked.size >= this.options.maxConnections) {
      this.countDial(target.viaRelay, 'limited');
      throw new ConnectionLimitError(`already ${this.tracked.size} connections (limit ${this.options.maxConnections})`);
    }
    const record = this.track({ id: `pending-${++pendingIds}`, connection: null, direction: 'outbound', ...target });
    try {
      const connection = await dial();
      this.tracked.delete(record.id);
      const live = this.adopt(connection, record);
      if (!live) throw new DuplicateConnectionError();
      const result = await this.withStream(live, () => this.initiateExchange(connection));
      this.exchanged(connection, result);
      this.countDial(target.viaRelay, 'connected');
      return this.info(live);
    } catch (error) {
      this.countDial(target.viaRelay, record.connection?.remoteRefusal !== undefined ? 'refused' : 'failed');
      if (record.connection === null) {
        this.transition(record, 'CLOSED');
        this.tracked.delete(record.id);
      }
      // Lost a simultaneous-dial tie-break (ours or the peer's): the surviving connection is the answer.
      const winner = record.peerId ? await this.survivor(record.peerId) : undefined;
      if (winner && winner !== record) return this.info(winner);
      // Refused by the peer's limits once the handshake was done (it had no room after all, or pruned us).
      const refusal = record.connection?.remoteRefusal;
      if (refusal !== undefined) throw new PeerConnectionLimitError(record.remoteAddress, refusal, { cause: error });
      throw error;
    }
  }

  async disconnect(peerId: string, reason = 'disconnect requested'): Promise<boolean> {
    const matching = [...this.tracked.values()].filter((t) => t.peerId === peerId && t.connection);
    await Promise.all(matching.map((t) => t.connection?.close(reason) ?? Promise.resolve()));
    return matching.length > 0;
  }

  /** Runs `work` on a stream of the connection to `peerId`, counted as active meanwhile. */
  async withPeerStream<T>(peerId: string, work: (stream: PeerStream, connection: PeerConnection) => Promise<T>): Promise<T> {
    const t = this.livePeer(peerId);
    if (!t?.connection) throw new NotConnectedError(peerId);
    const connection = t.connection;
    return this.withStream(t, async () => work(this.metered(await connection.openStream()), connection));
  }

  /** Runs `work` on a new stream of one given connection, counted as active meanwhile. */
  async withConnectionStream<T>(connection: PeerConnection, work: (stream: PeerStream) => Promise<T>): Promise<T> {
    const t = this.tracked.get(connection.id);
    if (!t || t.connection !== connection || !isLive(t)) throw new NotConnectedError(connection.remotePeerId);
    return this.withStream(t, async () => work(this.metered(await connection.openStream())));
  }

  /** Re-runs the exchange over an open connection (periodic discovery). */
  async reexchange(peerId: string): Promise<ExchangeResult> {
    const t = this.livePeer(peerId);
    if (!t?.connection) throw new NotConnectedError(peerId);
    const connection = t.connection;
    const result = await this.withStream(t, () => this.initiateExchange(connection));
    this.exchanged(connection, result);
    return result;
  }

  private async initiateExchange(connection: PeerConnection): Promise<ExchangeResult> {
    const timer = this.metrics.exchangeDuration.startTimer();
    let outcome = 'error';
    try {
      const result = await this.options.exchanger.initiate(connection, async () => this.metered(await connection.openStream()));
      outcome = 'ok';
      return result;
    } finally {
      timer({ role: 'initiator', outcome });
    }
  }

  private countDial(viaRelay: boolean, outcome: DialOutcome): void {
    this.metrics.dials.inc({ path: viaRelay ? 'relayed' : 'direct', outcome });
  }

  /** The stream, its message bytes counted (see MessageChannel). */
  private metered(stream: PeerStream): PeerStream {
    return { readable: stream.readable, writable: stream.writable, cancel: (reason) => stream.cancel(reason), traffic: this.traffic };
  }

  /** Adopts a connection the peer opened (QUIC, or a relay circuit's control stream). */
  accept(connection: PeerConnection): void {
    for (const intercept of this.interceptors) if (intercept(connection)) return;
    const remoteAddress = formatAddress(connection.remoteAddress);
    // The QUIC limits made room before the handshake; this catches what arrived meanwhile and
    // relayed connections, which do not pass them.
    if (!this.makeRoomFor(connectionGroup(remoteAddress, connection.viaRelay), 0)) {
      this.limited(remoteAddress, connection.remotePeerId, 'capacity');
      void connection.close(refusalPhrase('capacity'));
      return;
    }
    const record = this.adopt(connection, null);
    if (!record) return;
    // The dialer must complete the exchange promptly; a connection that does not is dropped.
    const deadline = setTimeout(() => {
      if (!record.exchanged && record.state !== 'CLOSED') void connection.close('no identity exchange');
    }, EXCHANGE_DEADLINE_MS);
    deadline.unref();
  }

  /**
   * Whether one more inbound connection from network `group` fits, `reserved` more being on
   * their way in (admitted by the limits, still in their handshake). At capacity, an unprotected
   * connection from a more crowded network is pruned for it (connection-pruner.ts).
   */
  makeRoomFor(group: string, reserved: number): boolean {
    if (this.tracked.size + reserved < this.options.maxConnections) return true;
    const victim = choosePruneVictim(this.pruneCandidates(), group);
    const record = victim ? this.tracked.get(victim.id) : undefined;
    if (!record?.connection) return false;
    this.limited(record.remoteAddress, record.peerId, 'pruned');
    // Its slot is free at once: the close itself waits for the peer.
    this.transition(record, 'CLOSED', 'pruned');
    this.tracked.delete(record.id);
    void record.connection.close(refusalPhrase('pruned'));
    return true;
  }

  protect(peerId: string, tag: string): void {
    this.protection.protect(peerId, tag);
  }

  unprotect(peerId: string, tag: string): void {
    this.protection.unprotect(peerId, tag);
  }

  private pruneCandidates(): PruneCandidate[] {
    return [...this.tracked.values()].map((t) => ({
      id: t.id,
      group: connectionGroup(t.remoteAddress, t.viaRelay),
      inbound: t.direction === 'inbound',
      protected: this.protection.isProtected(t.peerId),
      activeStreams: t.activeStreams,
      openedAt: t.openedAt,
    }));
  }

  private limited(remoteAddress: string, peerId: string | null, reason: LimitReason): void {
    this.options.limitCounters?.count(reason);
    this.log.debug({ peerId, remoteAddress, reason }, 'connection limited');
    this.options.bus.emit('connection.limited', { remoteAddress, peerId, reason });
  }

  /**
   * Starts tracking a connection whose peer is proven. With two connections to one peer: a direct
   * one always wins over a relayed one (that is what a hole punch is for); otherwise, if one side
   * dialled both, the newer replaces the older (it reconnected); if both sides dialled at once,
   * both keep the one dialled by the smaller peer id. Null if this one lost.
   */
  private adopt(connection: PeerConnection, pending: Tracked | null): Tracked | null {
    const other = this.livePeer(connection.remotePeerId, { includeConnecting: true });
    if (other?.connection) {
      if (!this.supersedes(connection, other.connection)) {
        void connection.close('duplicate connection');
        return null;
      }
      void other.connection.close('duplicate connection');
      this.transition(other, 'CLOSED', 'duplicate connection');
      this.tracked.delete(other.id);
    }
    const record =
      pending ??
      this.track({
        id: connection.id,
        connection,
        peerId: connection.remotePeerId,
        remoteAddress: formatAddress(connection.remoteAddress),
        direction: connection.direction,
        viaRelay: connection.viaRelay,
      });
    if (pending) {
      pending.id = connection.id;
      pending.connection = connection;
      pending.peerId = connection.remotePeerId;
      this.tracked.set(connection.id, pending);
    }
    connection.onStream((stream) => void this.dispatch(record, connection, stream));
    void connection.closed.then((reason) => {
      this.transition(record, 'CLOSED', reason);
      this.tracked.delete(record.id);
    });
    return record;
  }

  private supersedes(newer: PeerConnection, older: PeerConnection): boolean {
    if (newer.viaRelay !== older.viaRelay) return !newer.viaRelay;
    const dialerOf = (c: PeerConnection) => (c.direction === 'outbound' ? this.options.ownPeerId : c.remotePeerId);
    if (dialerOf(older) === dialerOf(newer)) return true;
    return dialerOf(newer) < dialerOf(older);
  }

  private track(init: Pick<Tracked, 'id' | 'connection' | 'peerId' | 'remoteAddress' | 'direction' | 'viaRelay'>): Tracked {
    const now = new Date();
    const record: Tracked = {
      ...init,
      state: 'CONNECTING',
      activeStreams: 0,
      lastActivity: now,
      openedAt: now,
      protocolErrors: 0,
      exchanged: false,
    };
    this.tracked.set(record.id, record);
    this.options.bus.emit('connection.state.changed', {
      peerId: record.peerId,
      connectionId: record.id,
      remoteAddress: record.remoteAddress,
      from: null,
      to: 'CONNECTING',
      viaRelay: record.viaRelay,
    });
    return record;
  }

  private async dispatch(record: Tracked, connection: PeerConnection, stream: PeerStream): Promise<void> {
    await this.withStream(record, async () => {
      const outcome = await this.options.protocols.accept(connection, new MessageChannel(this.metered(stream)));
      if (!outcome.ok) this.onStreamError(record, connection, outcome.error, outcome.protocol);
    }).catch(() => {});
  }

  private onStreamError(record: Tracked, connection: PeerConnection, error: unknown, protocol: string): void {
    if (error instanceof RemoteNetworkError && error.code === 'IDENTITY_MISMATCH') {
      this.reject(connection, error.message);
      return;
    }
    if (!isProtocolError(error)) {
      // Our side failed, not the peer. A storage failure goes to the storage health, which logs
      // once per kind (a flood of streams on a full disk is one line); a typed error (a reset,
      // a closed connection) is routine; anything else is a fault of ours, said once per error
      // class (a peer that can trigger it per stream must not flood the log).
      if (this.options.storage?.failed('stream_handler', error)) return;
      const fault = error instanceof Error ? error.name : typeof error;
      const firstOfItsKind = !(error instanceof RemoteNetworkError) && !this.loggedFaults.has(fault);
      if (firstOfItsKind) this.loggedFaults.add(fault);
      this.log[firstOfItsKind ? 'warn' : 'debug']({ peerId: record.peerId, protocol, err: error }, 'stream handler failed');
      return;
    }
    this.log.debug({ peerId: record.peerId, protocol, err: error }, 'protocol error');
    // A stream that stays silent past the read deadline is reset, but it is not bad input: a
    // relay forwards other peers' circuits and a peer may be slow under load, and counting those
    // disconnected relays from the NAT nodes they were serving.
    if (error instanceof ReadTimeoutError) return;
    record.protocolErrors += 1;
    if (record.protocolErrors >= MAX_PROTOCOL_ERRORS) void connection.close(`${record.protocolErrors} protocol errors`);
  }

  private reject(connection: PeerConnection, reason: string): void {
    this.options.bus.emit('connection.rejected', {
      remoteAddress: formatAddress(connection.remoteAddress),
      claimedPeerId: connection.remotePeerId,
      reason,
    });
    void connection.close(reason);
  }

  private exchanged(connection: PeerConnection, result: ExchangeResult): void {
    const record = this.tracked.get(connection.id);
    if (record) record.exchanged = true;
    this.options.bus.emit('peer.exchanged', {
      peerId: connection.remotePeerId,
      connectionId: connection.id,
      remoteAddress: formatAddress(connection.remoteAddress),
      observedAddress: result.remote.observed_address,
      dhtPort: result.remote.dht_port,
      peersReceived: result.peersReceived,
      peersDiscovered: result.peersDiscovered,
      peersDropped: result.peersDropped,
      peersRefused: result.peersRefused,
    });
  }

  private async withStream<T>(record: Tracked, work: () => Promise<T>): Promise<T> {
    record.activeStreams += 1;
    record.lastActivity = new Date();
    this.settle(record);
    try {
      return await work();
    } catch (error) {
      if (error instanceof RemoteNetworkError && error.code === 'IDENTITY_MISMATCH' && record.connection) {
        this.reject(record.connection, error.message);
      }
      throw error;
    } finally {
      record.activeStreams -= 1;
      record.lastActivity = new Date();
      this.settle(record);
    }
  }

  /** CONNECTED with streams open, IDLE without; never revives a closed connection. */
  private settle(record: Tracked): void {
    if (record.state === 'CLOSED' || !record.connection) return;
    this.transition(record, record.activeStreams > 0 ? 'CONNECTED' : 'IDLE');
  }

  private closeStale(): void {
    const now = Date.now();
    for (const record of this.tracked.values()) {
      if (record.state !== 'IDLE' || record.activeStreams > 0) continue;
      if (now - record.lastActivity.getTime() < this.options.idleTimeoutMs) continue;
      this.transition(record, 'STALE');
      this.log.debug({ peerId: record.peerId }, 'closing stale connection');
      void record.connection?.close('idle timeout');
    }
  }

  private transition(record: Tracked, to: ConnectionState, reason?: string): void {
    if (record.state === to || record.state === 'CLOSED') return;
    const from = record.state;
    record.state = to;
    this.options.bus.emit('connection.state.changed', {
      peerId: record.peerId,
      connectionId: record.id,
      remoteAddress: record.remoteAddress,
      from,
      to,
      viaRelay: record.viaRelay,
    });
    if (reason) this.log.debug({ peerId: record.peerId, reason }, `connection ${to.toLowerCase()}`);
  }

  private livePeer(peerId: string, options: { includeConnecting?: boolean; directOnly?: boolean } = {}): Tracked | undefined {
    for (const t of this.tracked.values()) {
      if (t.peerId !== peerId || !isLive(t)) continue;
      if (!options.includeConnecting && t.state === 'CONNECTING') continue;
      if (options.directOnly && t.viaRelay) continue;
      return t;
    }
    return undefined;
  }

  /**
   * The peer's live connection once its exchange is done: the winner of a tie-break may still be
   * in its exchange when the loser learns it lost (waits at most READ_TIMEOUT_MS).
   */
  private async survivor(peerId: string): Promise<Tracked | undefined> {
    const live = this.livePeer(peerId);
    if (live) return live;
    const connecting = this.livePeer(peerId, { includeConnecting: true });
    if (!connecting) return undefined;
    await new Promise<void>((resolve) => {
      const done = () => {
        off();
        clearTimeout(timer);
        resolve();
      };
      const off = this.options.bus.on('connection.state.changed', (e) => {
        if (e.payload.connectionId === connecting.id && e.payload.to !== 'CONNECTING') done();
      });
      const timer = setTimeout(done, READ_TIMEOUT_MS);
    });
    return this.livePeer(peerId);
  }

  /** A relayed connection's address is its relay's: only direct connections match an address. */
  private liveAddress(remoteAddress: string): Tracked | undefined {
    for (const t of this.tracked.values()) {
      if (t.remoteAddress === remoteAddress && isLive(t) && !t.viaRelay) return t;
    }
    return undefined;
  }

  private info(t: Tracked): ConnectionInfo {
    return {
      id: t.id,
      peerId: t.peerId,
      remoteAddress: t.remoteAddress,
      direction: t.direction,
      state: t.state,
      activeStreams: t.activeStreams,
      lastActivity: t.lastActivity,
      openedAt: t.openedAt,
      rttMs: t.connection?.rttMs() ?? null,
      viaRelay: t.viaRelay,
    };
  }
}

/** Has a connection that is neither closed nor being closed. */
function isLive(t: Tracked): boolean {
  return t.connection !== null && t.state !== 'CLOSED' && t.state !== 'STALE';
}

class DuplicateConnectionError extends RemoteNetworkError {
  readonly code = 'DUPLICATE_CONNECTION';

  constructor() {
    super('a connection to this peer already exists');
  }
}

export class NotConnectedError extends RemoteNetworkError {
  readonly code = 'NOT_CONNECTED';

  constructor(readonly peerId: string) {
    super(`not connected to peer ${peerId}`);
  }
}
