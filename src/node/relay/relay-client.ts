import type { PeerDialer } from '../discovery/peer-dialer.ts';
import type { NodeComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import type { KnownPeersService } from '../peers/known-peers-service.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { ConnectionInfo, ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { Logger } from '../base/logger.ts';
import { settleWithin, withDeadline } from '../util/time-bounds.ts';
import { MessageChannel } from '../wire/channel.ts';
import { RemoteRefusedError } from '../wire/errors.ts';
import { READ_TIMEOUT_MS } from '../wire/constants.ts';
import { relayKeepaliveAckMessage, relayRegisteredMessage } from '../wire/messages.ts';
import { CircuitClosedError, NoRelayAvailableError } from './errors.ts';
import { MISSED_KEEPALIVES, UNKNOWN_ADDRESS } from './relay-server.ts';
import { formatAddress } from '../base/address.ts';

/** Relays tried at once when choosing one (the lowest RTT wins). */
const CANDIDATES_PER_SELECTION = 5;
const SELECTION_DIAL_TIMEOUT_MS = 5_000;
/** A relay that failed us is not chosen again for this long (unless it is the only one). */
const FAILED_RELAY_PAUSE_MS = 60_000;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

export interface RelaySession {
  readonly relayPeerId: string;
  readonly sessionId: string;
  /** The relay's address as it told us (what our metadata publishes). */
  readonly relayAddress: string;
  readonly since: Date;
}

export interface RelayClientOptions {
  readonly ownPeerId: string;
  readonly connections: ConnectionManager;
  readonly knownPeers: KnownPeersService;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  /** Connects to a known peer by id (address from its metadata). */
  readonly connectToPeer: (peerId: string) => Promise<ConnectionInfo>;
}

export class RelayUnavailableError extends RemoteNetworkError {
  readonly code = 'RELAY_UNAVAILABLE';
}

/**
 * The NAT node's side: picks a relay among known peers with `is_relay` by measured RTT, registers,
 * keeps the session alive, and on loss picks again (the lost relay is skipped for a while), so that
 * the node stays reachable and its metadata names a live relay.
 */
export class RelayClient implements Component {
  readonly name = 'relay-client';
  private running = false;
  private active: RelaySession | null = null;
  private endSession: ((reason: string) => void) | undefined;
  private readonly failed = new Map<string, number>();
  private preferred: string | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly offs: Array<() => void> = [];
  private readonly log: Logger;

  static create({ identity, connections, knownPeers, bus, logger }: NodeComponents, dialer: PeerDialer): RelayClient {
    return new RelayClient({
      ownPeerId: identity.peerId,
      connections,
      knownPeers,
      bus,
      logger,
      connectToPeer: (peerId) => dialer.connectToPeer(peerId),
    });
  }

  constructor(private readonly options: RelayClientOptions) {
    this.log = options.logger.child({ component: 'relay-client' });
  }

  get session(): RelaySession | null {
    return this.active;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts keeping a relay session (a node that is, or was found to be, private). */
  activate(): void {
    if (this.running) return;
    this.running = true;
    // A newly known relay ends a wait for one.
    this.offs.push(
      // Relay candidates are verified peers only: a claimed relay heard from another peer waits
      // for its proof (a flood of invented "relays" must not decide where we register).
      this.options.bus.on('peer.discovered', (e) => {
        if (e.payload.isRelay && e.payload.verified) this.wake?.();
      }),
      this.options.bus.on('peer.verified', (e) => {
        if (e.payload.isRelay) this.wake?.();
      }),
      // A peer we know may have become a relay (an `auto` relay's verdict): its re-exchange says so.
      this.options.bus.on('peer.exchanged', (e) => {
        if (!this.active && this.options.knownPeers.get(e.payload.peerId)?.isRelay) this.wake?.();
      }),
    );
    this.loop = this.run();
  }

  stop(): Promise<void> {
    return this.deactivate('node stopping');
  }

  /** Ends the session (if any) and stops keeping one, until activate() again (a node found public). */
  async deactivate(reason: string): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const off of this.offs.splice(0)) off();
    this.endSession?.(reason);
    this.wake?.();
    // A selection may be waiting on dials; they end on their own, this does not wait for them.
    await settleWithin(this.loop ?? Promise.resolve(), 1_000);
  }

  /** Moves to this relay now (the API's selectRelay). */
  async select(relayPeerId: string): Promise<RelaySession> {
    if (!this.running) throw new RelayUnavailableError('this node does not use a relay (it is not private)');
    const peer = this.options.knownPeers.get(relayPeerId);
    if (!peer?.isRelay || !peer.verified) throw new RelayUnavailableError(`peer ${relayPeerId} is not a known (verified) relay`);
    this.preferred = relayPeerId;
    this.failed.delete(relayPeerId);
    if (this.active?.relayPeerId === relayPeerId) return this.active;
    const registered = new Promise<RelaySession>((resolve, reject) => {
      const off = this.options.bus.on('relay.session.registered', (e) => {
        if (e.payload.role !== 'client') return;
        off();
        clearTimeout(timer);
        if (e.payload.peerId === relayPeerId && this.active) resolve(this.active);
        else reject(new RelayUnavailableError(`relay ${relayPeerId} did not accept; registered with ${e.payload.peerId}`));
      });
      const timer = setTimeout(() => {
        off();
        reject(new RelayUnavailableError(`no session with relay ${relayPeerId} within ${READ_TIMEOUT_MS * 2} ms`));
      }, READ_TIMEOUT_MS * 2);
    });
    this.endSession?.('another relay was selected');
    this.wake?.();
    return registered;
  }

  private async run(): Promise<void> {
    let retryMs = RETRY_MIN_MS;
    while (this.running) {
      try {
        const relay = await this.choose();
        const reason = await this.hold(relay);
        this.log.info({ relay: relay.peerId, reason }, 'relay session lost');
        // Lost without our asking: the connection may be to a relay that died (and restarts with
        // the same id); the next attempt must dial afresh, not talk to the dead connection.
        if (this.running && reason !== 'another relay was selected') {
          await this.options.connections.disconnect(relay.peerId ?? '', `relay session lost: ${reason}`);
        }
        retryMs = RETRY_MIN_MS;
      } catch (error) {
        if (!this.running) break;
        this.log.debug({ err: error, retryInMs: retryMs }, 'no relay session');
        await this.pause(retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    }
  }

  /** Waits `ms`, or less if something happens that may make a relay available. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  /** The preferred relay if any, else the candidate with the lowest RTT. */
  private async choose(): Promise<ConnectionInfo> {
    const now = Date.now();
    const relays = this.options.knownPeers
      .page({ isRelay: true, verified: true }, 100)
      .rows.map((r) => r.peerId)
      .filter((id) => id !== this.options.ownPeerId);
    const usable = relays.filter((id) => (this.failed.get(id) ?? 0) <= now);
    const preferred = this.preferred && relays.includes(this.preferred) ? [this.preferred] : [];
    const candidates = preferred.length > 0 ? preferred : (usable.length > 0 ? usable : relays).slice(0, CANDIDATES_PER_SELECTION);
    if (candidates.length === 0) throw new NoRelayAvailableError('no relay is known yet');
    const reached = await Promise.allSettled(
      candidates.map((id) =>
        withDeadline(
          this.options.connectToPeer(id),
          SELECTION_DIAL_TIMEOUT_MS,
          () => new RelayUnavailableError(`relay ${id} did not answer`),
        ),
      ),
    );
    const connected = reached
      .flatMap((r) => (r.status === 'fulfilled' && !r.value.viaRelay ? [r.value] : []))
      .sort((a, b) => (a.rttMs ?? Number.POSITIVE_INFINITY) - (b.rttMs ?? Number.POSITIVE_INFINITY));
    const best = connected[0];
    if (!best) {
      for (const id of candidates) this.failed.set(id, now + FAILED_RELAY_PAUSE_MS);
      throw new NoRelayAvailableError(`none of ${candidates.length} relays could be reached`);
    }
    return best;
  }

  /** Registers with the relay and keeps the session until it is lost; resolves with why. */
  private async hold(relay: ConnectionInfo): Promise<string> {
    const relayPeerId = relay.peerId ?? '';
    try {
      return await this.options.connections.withPeerStream(relayPeerId, async (stream, connection) => {
        if (connection.viaRelay) throw new CircuitClosedError('a relay must be reached directly');
        const channel = new MessageChannel(stream);
        try {
          await channel.send({ type: 'relay_register', peer_id: this.options.ownPeerId });
          const registered = await channel.receive(relayRegisteredMessage, 'relay_registered');
          const session: RelaySession = {
            relayPeerId,
            sessionId: registered.session_id,
            relayAddress: registered.relay_address === UNKNOWN_ADDRESS ? formatAddress(connection.remoteAddress) : registered.relay_address,
            since: new Date(),
          };
          this.started(session);
          const reason = await this.keepAlive(channel, session, registered.keepalive_interval * 1000);
          channel.detach().cancel(reason);
          return reason;
        } catch (error) {
          await channel.fail(error);
          throw error;
        }
      });
    } catch (error) {
      this.failed.set(relayPeerId, Date.now() + FAILED_RELAY_PAUSE_MS);
      // No answer at all (not a refusal): the connection itself may be dead.
      if (!(error instanceof RemoteRefusedError)) await this.options.connections.disconnect(relayPeerId, 'relay did not answer');
      throw error;
    } finally {
      this.ended(relayPeerId);
    }
  }

  /** The session is known to the node through `relay.session.registered` / `.closed` (role client) and `session`. */
  private started(session: RelaySession): void {
    this.active = session;
    this.log.info({ relay: session.relayPeerId, session: session.sessionId, address: session.relayAddress }, 'relay session registered');
    this.options.bus.emit('relay.session.registered', { sessionId: session.sessionId, peerId: session.relayPeerId, role: 'client' });
  }

  private ended(relayPeerId: string): void {
    const session = this.active;
    if (!session || session.relayPeerId !== relayPeerId) return;
    this.active = null;
    this.options.bus.emit('relay.session.closed', {
      sessionId: session.sessionId,
      peerId: relayPeerId,
      role: 'client',
      reason: 'session lost',
    });
    if (this.preferred === relayPeerId && !this.running) this.preferred = undefined;
  }

  /**
   * Sends a keepalive every interval and reads acks as they come; the session is lost when no ack
   * arrived for MISSED_KEEPALIVES intervals, when the stream ends, or when asked to end.
   */
  private keepAlive(channel: MessageChannel, session: RelaySession, intervalMs: number): Promise<string> {
    return new Promise((resolve) => {
      let lastAck = Date.now();
      let done = false;
      const finish = (reason: string) => {
        if (done) return;
        done = true;
        clearInterval(timer);
        this.endSession = undefined;
        // Ended on our side (another relay chosen, the node stopping or found public): no fault of the relay.
        if (this.running && reason !== 'another relay was selected') {
          this.failed.set(session.relayPeerId, Date.now() + FAILED_RELAY_PAUSE_MS);
        }
        resolve(reason);
      };
      this.endSession = finish;
      const timer = setInterval(() => {
        if (Date.now() - lastAck > intervalMs * MISSED_KEEPALIVES) {
          finish(`${MISSED_KEEPALIVES} keepalives unanswered`);
          return;
        }
        channel.send({ type: 'relay_keepalive', session_id: session.sessionId }).catch(() => finish('relay stream closed'));
      }, intervalMs);
      timer.unref();
      void (async () => {
        while (!done) {
          try {
            await channel.receive(relayKeepaliveAckMessage, 'relay_keepalive_ack', intervalMs * MISSED_KEEPALIVES * 2);
            lastAck = Date.now();
          } catch (error) {
            finish(error instanceof Error ? `relay stream: ${error.message}` : 'relay stream failed');
          }
        }
      })();
    });
  }
}
