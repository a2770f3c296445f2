import type { NodeComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import { setTimeout as delay } from 'node:timers/promises';
import { type HostPort, parseHostPort } from '../base/address.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { NotConnectedError, type ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { ProtocolRegistry } from '../lifecycle/protocol-registry.ts';
import type { Logger } from '../base/logger.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { PeerConnection } from '../quic/types.ts';
import { setBounded } from '../util/bounded-map.ts';
import { MessageChannel } from '../wire/channel.ts';
import { holePunchConnectMessage, holePunchSyncMessage } from '../wire/messages.ts';
import { type HolePunchMetrics, holePunchMetrics } from './holepunch-metrics.ts';

/** Automatic attempts per peer (the API may ask for more). */
export const AUTO_ATTEMPTS_PER_PEER = 2;
/** How long the simultaneous dials get before the attempt counts as failed. */
export const PUNCH_TIMEOUT_MS = 5_000;
/** Raw packets sent to each of the peer's addresses to open our NAT's mapping before the dial. */
const PUNCH_PACKETS = 3;
/**
 * A punch packet is not a QUIC packet (too short for a header), so the peer's QUIC socket drops it;
 * it exists only to make our NAT map (and let in) the peer's address.
 */
const PUNCH_PAYLOAD = Buffer.from('RNPUNCH1');
const MAX_ADDRESSES = 4;
/** Answering side: a peer can make us send packets and dial addresses it names, so one at a time per peer, few overall. */
export const MAX_CONCURRENT_ANSWERS = 8;

export class HolePunchFailedError extends RemoteNetworkError {
  readonly code = 'HOLE_PUNCH_FAILED';
}

export interface HolePunchStats {
  readonly attempts: number;
  readonly successes: number;
  readonly failures: number;
  readonly lastDurationMs: number | null;
  readonly lastError: string | null;
}

export interface HolePunchResult {
  readonly peerId: string;
  readonly direct: boolean;
  readonly durationMs: number;
  readonly attempt: number;
}

export interface HolePuncherOptions {
  readonly connections: ConnectionManager;
  readonly protocols: ProtocolRegistry;
  readonly sendRaw: (data: Uint8Array, address: HostPort) => Promise<void>;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  /** Our addresses as peers can reach them: observed external ones first, then local ones. */
  readonly ownAddresses: () => string[];
  readonly metrics?: Metrics;
}

/**
 * Relay-coordinated hole punching, per the seed: over a relayed connection A sends CONNECT with its
 * addresses, B answers with its own (A measures the RTT), A sends SYNC; A waits RTT/2, B waits
 * RTT/2 from SYNC's arrival, then both send raw UDP from their listening QUIC socket (opening their
 * NAT's mapping towards the other) and dial each other. The first direct connection replaces the
 * relayed one in the connection manager; if none comes, the relay stays.
 */
export class HolePuncher implements Component {
  readonly name = 'holepunch';
  private readonly metrics: HolePunchMetrics;
  private lastDurationMs: number | null = null;
  private lastError: string | null = null;
  private readonly perPeer = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<HolePunchResult>>();
  private readonly offs: Array<() => void> = [];
  private readonly log: Logger;

  /** As the node runs it: punches from the transport's socket, never towards one of our own addresses. */
  static create({ connections, protocols, bus, logger, transport, addresses, metrics }: NodeComponents): HolePuncher {
    return new HolePuncher({
      metrics,
      connections,
      protocols,
      bus,
      logger,
      sendRaw: (data, address) => transport.sendRaw(data, address),
      ownAddresses: () => addresses.ownAddresses(),
    });
  }

  constructor(private readonly options: HolePuncherOptions) {
    this.log = options.logger.child({ component: 'holepunch' });
    this.metrics = holePunchMetrics(options.metrics ?? new NoopMetrics());
  }

  get stats(): HolePunchStats {
    return {
      attempts: this.metrics.started.value(),
      successes: this.metrics.attempts.value({ outcome: 'succeeded' }),
      failures: this.metrics.attempts.value({ outcome: 'failed' }),
      lastDurationMs: this.lastDurationMs,
      lastError: this.lastError,
    };
  }

  start(): void {
    this.offs.push(
      // Coordinated over the relayed connection it upgrades. A peer can make us send packets and
      // dial addresses it names: one answer at a time per peer, few overall.
      this.options.protocols.handle(
        holePunchConnectMessage,
        (request, connection, channel) => this.answer(connection, channel, request.addresses),
        {
          access: 'relayed',
          maxStreamsPerPeer: 1,
          maxStreams: MAX_CONCURRENT_ANSWERS,
        },
      ),
      // The dialer of a relayed connection tries to upgrade it once the exchange is done.
      this.options.bus.on('peer.exchanged', (e) => {
        const info = this.options.connections.byPeer(e.payload.peerId);
        if (!info?.viaRelay || info.direction !== 'outbound') return;
        if ((this.perPeer.get(e.payload.peerId) ?? 0) >= AUTO_ATTEMPTS_PER_PEER) return;
        this.punch(e.payload.peerId).catch((error: unknown) => this.log.debug({ err: error }, 'automatic hole punch failed'));
      }),
    );
  }

  stop(): void {
    for (const off of this.offs.splice(0)) off();
  }

  /** One attempt to replace the relayed connection to `peerId` with a direct one. */
  punch(peerId: string): Promise<HolePunchResult> {
    let running = this.inFlight.get(peerId);
    if (!running) {
      running = this.attempt(peerId).finally(() => this.inFlight.delete(peerId));
      this.inFlight.set(peerId, running);
    }
    return running;
  }

  private async attempt(peerId: string): Promise<HolePunchResult> {
    const info = this.options.connections.byPeer(peerId);
    if (!info) throw new NotConnectedError(peerId);
    if (!info.viaRelay) return { peerId, direct: true, durationMs: 0, attempt: 0 };
    const attempt = (this.perPeer.get(peerId) ?? 0) + 1;
    setBounded(this.perPeer, peerId, attempt, 4096);
    this.metrics.started.inc();
    this.options.bus.emit('holepunch.started', { peerId, attempt });
    const started = performance.now();
    const direct = this.waitForDirect(peerId, PUNCH_TIMEOUT_MS * 2);
    let failure: Error | undefined;
    try {
      const theirs = await this.coordinate(peerId);
      await Promise.any([direct.promise, this.fire(peerId, theirs)]).catch(() => {
        throw new HolePunchFailedError(
          `no direct connection within ${PUNCH_TIMEOUT_MS} ms (peer addresses: ${theirs.join(', ') || 'none'})`,
        );
      });
    } catch (error) {
      failure = error instanceof Error ? error : new HolePunchFailedError(String(error));
    } finally {
      direct.cancel();
    }
    // The conversation over the relay may break because the direct connection replaced it: success.
    const now = this.options.connections.byPeer(peerId);
    if (now && !now.viaRelay) {
      const durationMs = Math.round(performance.now() - started);
      this.metrics.attempts.inc({ outcome: 'succeeded' });
      this.metrics.duration.observe(durationMs / 1000);
      this.lastDurationMs = durationMs;
      this.options.bus.emit('holepunch.succeeded', { peerId, attempt, durationMs });
      this.log.info({ peer: peerId, durationMs, address: now.remoteAddress, direction: now.direction }, 'hole punch succeeded');
      return { peerId, direct: true, durationMs, attempt };
    }
    const reason = failure?.message ?? 'no direct connection';
    this.metrics.attempts.inc({ outcome: 'failed' });
    this.lastError = reason;
    this.options.bus.emit('holepunch.failed', { peerId, attempt, reason });
    this.log.info({ peer: peerId, reason }, 'hole punch failed; staying on the relay');
    throw failure instanceof RemoteNetworkError ? failure : new HolePunchFailedError(reason);
  }

  /** A's side of the exchange over the relay: CONNECT, its answer (the RTT), SYNC, then RTT/2. */
  private coordinate(peerId: string): Promise<string[]> {
    return this.options.connections.withPeerStream(peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      try {
        const sent = performance.now();
        await channel.send({ type: 'holepunch_connect', addresses: this.ownAddresses() });
        const reply = await channel.receive(holePunchConnectMessage, 'holepunch_connect');
        const rttMs = performance.now() - sent;
        await channel.sendFinal({ type: 'holepunch_sync' });
        await channel.finish();
        await delay(rttMs / 2);
        return reply.addresses;
      } catch (error) {
        await channel.fail(error);
        throw error;
      }
    });
  }

  /** The far side (B): answer CONNECT, wait for SYNC, wait RTT/2, fire. */
  private async answer(connection: PeerConnection, channel: MessageChannel, theirs: readonly string[]): Promise<void> {
    const sent = performance.now();
    await channel.sendFinal({ type: 'holepunch_connect', addresses: this.ownAddresses() });
    await channel.receive(holePunchSyncMessage, 'holepunch_sync');
    const rttMs = performance.now() - sent;
    await channel.finish();
    await delay(rttMs / 2);
    await this.fire(connection.remotePeerId, theirs).catch((error: unknown) =>
      this.log.debug({ err: error, peer: connection.remotePeerId }, 'hole punch dial (answering side) failed'),
    );
  }

  /** Raw packets to every address of the peer from our listening socket, then a dial to each. */
  private async fire(peerId: string, addresses: readonly string[]): Promise<void> {
    const targets = addresses
      .map((a) => parseHostPort(a))
      .filter((a): a is HostPort => a !== undefined)
      .slice(0, MAX_ADDRESSES);
    if (targets.length === 0) throw new HolePunchFailedError('the peer gave no address');
    for (let i = 0; i < PUNCH_PACKETS; i++) {
      await Promise.all(targets.map((t) => this.options.sendRaw(PUNCH_PAYLOAD, t).catch(() => {})));
    }
    await Promise.any(targets.map((t) => this.options.connections.connect(t, peerId)));
  }

  private ownAddresses(): string[] {
    return [...new Set(this.options.ownAddresses())].slice(0, 8);
  }

  /** Resolves once a direct connection to the peer has completed its exchange (whoever dialled). */
  private waitForDirect(peerId: string, timeoutMs: number): { promise: Promise<void>; cancel: () => void } {
    let off = () => {};
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<void>((resolve, reject) => {
      off = this.options.bus.on('peer.exchanged', (e) => {
        if (e.payload.peerId !== peerId || this.options.connections.byPeer(peerId)?.viaRelay !== false) return;
        resolve();
      });
      timer = setTimeout(() => reject(new HolePunchFailedError('timed out')), timeoutMs);
    });
    promise.catch(() => {});
    return {
      promise,
      cancel: () => {
        off();
        clearTimeout(timer);
      },
    };
  }
}
