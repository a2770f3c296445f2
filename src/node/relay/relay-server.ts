import type { NodeComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/schema.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import { type ProtocolRegistry, UNBOUNDED } from '../lifecycle/protocol-registry.ts';
import type { Logger } from '../base/logger.ts';
import type { Counter, Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import type { PeerConnection } from '../quic/types.ts';
import { splice } from '../util/stream-splice.ts';
import { MessageChannel } from '../wire/channel.ts';
import { ReadTimeoutError } from '../wire/errors.ts';
import {
  type RelayConnectMessage,
  type RelayRegisterMessage,
  relayAcceptMessage,
  relayConnectMessage,
  relayKeepaliveMessage,
  relayRegisterMessage,
} from '../wire/messages.ts';
import { RelayRefusedError } from './errors.ts';

/** Sent as `relay_address` when the relay does not know its public address yet. */
export const UNKNOWN_ADDRESS = '0.0.0.0:0';

/** Keepalives a session may miss before it expires. */
export const MISSED_KEEPALIVES = 3;

export interface RelayLimits {
  readonly maxSessions: number;
  /** Circuits open at once per peer (as caller or as target). */
  readonly maxCircuitsPerPeer: number;
  /** Bytes per circuit, both directions together. */
  readonly maxCircuitBytes: number;
  readonly maxCircuitDurationMs: number;
}

/** The `[relay]` section's limits as the relay server reads them. */
export function relayLimits(section: Config['relay']): RelayLimits {
  return {
    maxSessions: section.relay_max_sessions,
    maxCircuitsPerPeer: section.relay_max_circuits_per_peer,
    maxCircuitBytes: section.relay_max_circuit_bytes,
    maxCircuitDurationMs: section.relay_max_circuit_duration * 1000,
  };
}

export interface RelaySessionInfo {
  readonly sessionId: string;
  readonly peerId: string;
  readonly since: Date;
  readonly lastKeepalive: Date;
  /** Bytes the relay received from this client (its registration stream and circuits). */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Circuits open now with this client at either end. */
  readonly circuits: number;
  readonly totalCircuits: number;
}

interface Session {
  readonly sessionId: string;
  readonly peerId: string;
  readonly connection: PeerConnection;
  readonly since: Date;
  lastKeepalive: Date;
  bytesIn: number;
  bytesOut: number;
  totalCircuits: number;
  ended: boolean;
}

export interface RelayServerOptions {
  readonly enabled: () => boolean;
  readonly connections: ConnectionManager;
  readonly protocols: ProtocolRegistry;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  readonly limits: RelayLimits;
  readonly keepaliveIntervalMs: number;
  /** Our dialable address, as clients should publish it. */
  readonly ownAddress: () => string | null;
  readonly metrics?: Metrics;
}

/**
 * The relay side. A NAT client registers over its own QUIC connection: the session is bound to the
 * peer id TLS proved on that connection, so nobody registers for someone else, and it lives while
 * keepalives arrive. A caller asks for a circuit to a registered peer; the relay opens a stream to
 * it over its session's connection and splices the two streams, counting the bytes itself and
 * cutting circuits past the limits. Refusals are typed (RelayRefusalCode).
 */
export class RelayServer implements Component {
  readonly name = 'relay-server';
  private readonly sessions = new Map<string, Session>();
  /** Open circuits per peer id, callers and targets alike. */
  private readonly circuits = new Map<string, number>();
  private readonly log: Logger;
  private readonly unhandle: Array<() => void> = [];
  private readonly metrics: RelayServerMetrics;

  /** As the node runs it: `[relay]` limits, serving while the node is a relay (relay_mode and public). */
  static create({ config, connections, protocols, bus, logger, addresses, metrics }: NodeComponents): RelayServer {
    return new RelayServer({
      metrics,
      connections,
      protocols,
      bus,
      logger,
      enabled: () => addresses.isRelay,
      limits: relayLimits(config.relay),
      keepaliveIntervalMs: config.relay.relay_keepalive_interval * 1000,
      ownAddress: () => addresses.publicAddress,
    });
  }

  constructor(private readonly options: RelayServerOptions) {
    this.log = options.logger.child({ component: 'relay-server' });
    this.metrics = relayServerMetrics(options.metrics ?? new NoopMetrics(), {
      sessions: () => this.sessions.size,
      // Each circuit is counted at both of its ends.
      circuits: () => [...this.circuits.values()].reduce((sum, n) => sum + n, 0) / 2,
    });
  }

  /**
   * Registered whether or not this node is a relay (it may become one; until then it refuses with
   * RELAY_NOT_OFFERED). relay_max_sessions bounds the sessions and relay_max_circuits_per_peer the
   * circuits (counting both ends), not a stream count; a circuit may cross a relayed connection.
   */
  start(): void {
    this.unhandle.push(
      this.options.protocols.handle(relayRegisterMessage, (request, connection, channel) => this.register(request, connection, channel), {
        access: 'direct',
        maxStreams: UNBOUNDED,
      }),
      this.options.protocols.handle(relayConnectMessage, (request, caller, channel) => this.connect(request, caller, channel), {
        maxStreamsPerPeer: UNBOUNDED,
        maxStreams: UNBOUNDED,
      }),
    );
  }

  list(): RelaySessionInfo[] {
    return [...this.sessions.values()].map((s) => ({
      sessionId: s.sessionId,
      peerId: s.peerId,
      since: s.since,
      lastKeepalive: s.lastKeepalive,
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      circuits: this.circuits.get(s.peerId) ?? 0,
      totalCircuits: s.totalCircuits,
    }));
  }

  stop(): void {
    for (const off of this.unhandle.splice(0)) off();
    for (const session of this.sessions.values()) this.end(session, 'closed', 'relay stopping');
  }

  private refuseUnlessRelay(): void {
    if (!this.options.enabled()) throw new RelayRefusedError('RELAY_NOT_OFFERED', 'this node is not a relay');
  }

  private async register(request: RelayRegisterMessage, connection: PeerConnection, channel: MessageChannel): Promise<void> {
    this.refuseUnlessRelay();
    if (request.peer_id !== connection.remotePeerId) {
      this.log.warn({ claimed: request.peer_id, proven: connection.remotePeerId }, 'relay registration for another peer refused');
      throw new RelayRefusedError(
        'RELAY_IDENTITY_MISMATCH',
        `a session can only be registered for the peer this connection proves (${connection.remotePeerId})`,
      );
    }
    const previous = this.sessions.get(connection.remotePeerId);
    if (!previous && this.sessions.size >= this.options.limits.maxSessions) {
      throw new RelayRefusedError('RELAY_SESSION_LIMIT', `the relay holds its maximum of ${this.options.limits.maxSessions} sessions`);
    }
    if (previous) this.end(previous, 'closed', 'replaced by a new registration');
    const keepaliveSeconds = Math.max(1, Math.round(this.options.keepaliveIntervalMs / 1000));
    const session: Session = {
      sessionId: randomBytes(8).toString('hex'),
      peerId: connection.remotePeerId,
      connection,
      since: new Date(),
      lastKeepalive: new Date(),
      bytesIn: 0,
      bytesOut: 0,
      totalCircuits: 0,
      ended: false,
    };
    await channel.send({
      type: 'relay_registered',
      session_id: session.sessionId,
      // Unknown until peers have told us how they see us: the client then uses the address it dialled.
      relay_address: this.options.ownAddress() ?? UNKNOWN_ADDRESS,
      keepalive_interval: keepaliveSeconds,
    });
    this.sessions.set(session.peerId, session);
    this.options.bus.emit('relay.session.registered', { sessionId: session.sessionId, peerId: session.peerId, role: 'server' });
    this.log.info({ peer: session.peerId, session: session.sessionId }, 'relay session registered');
    void connection.closed.then((reason) => this.end(session, 'closed', `connection closed: ${reason}`));
    await this.keepAlive(session, channel, keepaliveSeconds * 1000);
  }

  /** Answers keepalives on the registration stream until one is missed too long or the stream ends. */
  private async keepAlive(session: Session, channel: MessageChannel, intervalMs: number): Promise<void> {
    try {
      while (!session.ended) {
        const message = await channel.receive(relayKeepaliveMessage, 'relay_keepalive', intervalMs * MISSED_KEEPALIVES);
        if (message.session_id !== session.sessionId) continue;
        session.lastKeepalive = new Date();
        await channel.send({ type: 'relay_keepalive_ack', session_id: session.sessionId });
      }
    } catch (error) {
      if (error instanceof ReadTimeoutError) this.end(session, 'expired', `${MISSED_KEEPALIVES} keepalives missed`);
      // A stream cancelled under us (its connection lost a tie-break or closed) rejects with whatever
      // reason it was cancelled with, often none: say what ended rather than log "null".
      else this.end(session, 'closed', error instanceof Error ? error.message : 'the registration stream was closed');
    }
    channel.detach().cancel('relay session ended');
  }

  private end(session: Session, how: 'expired' | 'closed', reason: string): void {
    if (session.ended) return;
    session.ended = true;
    if (this.sessions.get(session.peerId) === session) this.sessions.delete(session.peerId);
    const payload = { sessionId: session.sessionId, peerId: session.peerId, role: 'server' as const };
    if (how === 'expired') this.options.bus.emit('relay.session.expired', payload);
    else this.options.bus.emit('relay.session.closed', { ...payload, reason });
    this.log.info({ peer: session.peerId, session: session.sessionId, how, reason }, 'relay session ended');
  }

  private async connect(request: RelayConnectMessage, caller: PeerConnection, channel: MessageChannel): Promise<void> {
    this.refuseUnlessRelay();
    const target = request.target_peer_id === caller.remotePeerId ? undefined : this.sessions.get(request.target_peer_id);
    if (!target) throw new RelayRefusedError('RELAY_TARGET_UNKNOWN', `peer ${request.target_peer_id} has no session here`);
    const source = caller.remotePeerId;
    const limit = this.options.limits.maxCircuitsPerPeer;
    for (const peerId of [source, target.peerId]) {
      if ((this.circuits.get(peerId) ?? 0) >= limit) {
        throw new RelayRefusedError('RELAY_CIRCUIT_LIMIT', `peer ${peerId} already has ${limit} circuits open (the limit)`);
      }
    }
    this.count(source, 1);
    this.count(target.peerId, 1);
    try {
      await this.options.connections.withConnectionStream(target.connection, async (targetStream) => {
        const toTarget = new MessageChannel(targetStream);
        try {
          await toTarget.send({ type: 'relay_incoming', source_peer_id: source });
          await toTarget.receive(relayAcceptMessage, 'relay_accept');
        } catch (error) {
          await toTarget.fail(error);
          throw new RelayRefusedError('RELAY_TARGET_UNREACHABLE', `peer ${target.peerId} did not accept the circuit`);
        }
        await channel.send({ type: 'relay_connected' });
        target.totalCircuits += 1;
        this.metrics.circuits.inc();
        const callerSession = this.sessions.get(source);
        const ended = await splice(channel.detach(), toTarget.detach(), this.limits(), {
          aToB: (bytes) => {
            this.metrics.relayedBytes.inc(bytes);
            target.bytesOut += bytes;
            if (callerSession) callerSession.bytesIn += bytes;
          },
          bToA: (bytes) => {
            this.metrics.relayedBytes.inc(bytes);
            target.bytesIn += bytes;
            if (callerSession) callerSession.bytesOut += bytes;
          },
        });
        this.log.debug({ source, target: target.peerId, ended }, 'circuit ended');
      });
    } finally {
      this.count(source, -1);
      this.count(target.peerId, -1);
    }
  }

  private limits() {
    return { maxBytes: this.options.limits.maxCircuitBytes, maxDurationMs: this.options.limits.maxCircuitDurationMs };
  }

  private count(peerId: string, delta: number): void {
    const next = (this.circuits.get(peerId) ?? 0) + delta;
    if (next <= 0) this.circuits.delete(peerId);
    else this.circuits.set(peerId, next);
  }
}

interface RelayServerMetrics {
  readonly circuits: Counter;
  readonly relayedBytes: Counter;
}

/** The relay's metrics: sessions and open circuits are read at scrape time. */
function relayServerMetrics(
  metrics: Metrics,
  read: { readonly sessions: () => number; readonly circuits: () => number },
): RelayServerMetrics {
  metrics.observedGauge({
    name: 'remote_network_relay_sessions',
    help: 'NAT clients registered at this relay now.',
    observe: (record) => record(read.sessions()),
  });
  metrics.observedGauge({
    name: 'remote_network_relay_circuits',
    help: 'Circuits this relay is splicing now.',
    observe: (record) => record(read.circuits()),
  });
  return {
    circuits: metrics.counter({
      name: 'remote_network_relay_circuits_opened_total',
      help: 'Circuits this relay opened between a caller and a registered client.',
    }),
    relayedBytes: metrics.counter({
      name: 'remote_network_relay_circuit_bytes_total',
      help: 'Bytes this relay forwarded through its circuits, both directions.',
    }),
  };
}
