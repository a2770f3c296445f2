import type { Component } from '../base/component.ts';
import { randomBytes } from 'node:crypto';
import { type HostPort, parseHostPort, formatAddress } from '../base/address.ts';
import type { NodeIdentity } from '../identity/key-store.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import { type ProtocolRegistry, UNBOUNDED } from '../lifecycle/protocol-registry.ts';
import type { Logger } from '../base/logger.ts';
import type { PeerConnection } from '../quic/types.ts';
import { observeEnd } from '../util/stream-splice.ts';
import { MessageChannel } from '../wire/channel.ts';
import { relayConnectedMessage, relayIncomingMessage } from '../wire/messages.ts';
import { type CircuitPurpose, authenticateAsInitiator, authenticateAsResponder } from './circuit-auth.ts';
import { CircuitClosedError, RelayRefusedError } from './errors.ts';
import { type Circuit, RelayedConnection } from './relayed-connection.ts';

/** Where a NAT peer can be reached: its relay (from the peer's DHT metadata). */
export interface RelayRoute {
  readonly targetPeerId: string;
  readonly relayPeerId: string;
  readonly relayAddress: HostPort;
}

/** Relayed connections at once (both directions); each holds one control circuit. */
export const MAX_RELAYED_CONNECTIONS = 64;

export interface RelayedTransportOptions {
  readonly identity: NodeIdentity;
  readonly connections: ConnectionManager;
  readonly protocols: ProtocolRegistry;
  readonly logger: Logger;
}

/**
 * Connections through relays, both ways. Dialling: a direct connection to the target's relay, a
 * `relay_connect` circuit, the end-to-end handshake, and the circuit becomes the control stream of
 * a RelayedConnection. Answering: the relay opens a stream to us with `relay_incoming`; after the
 * handshake proves the caller, a `control` circuit is a new connection (handed to the connection
 * manager like an inbound QUIC one) and a `stream` circuit is delivered to its connection.
 */
export class RelayedTransport implements Component {
  readonly name = 'relayed-transport';
  private readonly byId = new Map<string, RelayedConnection>();
  private readonly log: Logger;
  private unhandle: (() => void) | undefined;

  constructor(private readonly options: RelayedTransportOptions) {
    this.log = options.logger.child({ component: 'relayed' });
  }

  start(): void {
    // Every circuit (each relayed connection's control and streams) is a stream held open over a
    // direct connection to the relay: MAX_RELAYED_CONNECTIONS bounds them, not a stream count.
    this.unhandle = this.options.protocols.handle(
      relayIncomingMessage,
      (incoming, relay, channel) => this.answer(relay, channel, incoming.source_peer_id),
      { access: 'direct', maxStreamsPerPeer: UNBOUNDED, maxStreams: UNBOUNDED },
    );
  }

  async dial(route: RelayRoute): Promise<PeerConnection> {
    const { connections } = this.options;
    if (this.byId.size >= MAX_RELAYED_CONNECTIONS) {
      throw new RelayRefusedError('RELAY_CIRCUIT_LIMIT', `already ${this.byId.size} relayed connections`);
    }
    const relay = await connections.connect(route.relayAddress, route.relayPeerId);
    const relayAddress = parseHostPort(relay.remoteAddress) ?? route.relayAddress;
    const connectionId = randomBytes(8).toString('hex');
    const { circuit, rttMs, remotePublicKey } = await this.openCircuit(route, 'control', connectionId);
    const connection = new RelayedConnection({
      connectionId,
      remotePeerId: route.targetPeerId,
      remotePublicKey,
      relayPeerId: route.relayPeerId,
      relayAddress,
      direction: 'outbound',
      control: circuit.stream,
      controlEnded: circuit.ended,
      rttMs,
      openCircuit: async () => (await this.openCircuit(route, 'stream', connectionId)).circuit,
      logger: this.log,
    });
    this.remember(connection);
    return connection;
  }

  stop(): void {
    this.unhandle?.();
    for (const connection of this.byId.values()) void connection.close('node stopping');
  }

  private remember(connection: RelayedConnection): void {
    this.byId.set(connection.connectionId, connection);
    void connection.closed.then(() => this.byId.delete(connection.connectionId));
  }

  /**
   * A circuit to `route.targetPeerId`: a stream to the relay, held open (and counted active on the
   * relay connection) until the circuit ends.
   */
  private openCircuit(
    route: RelayRoute,
    purpose: CircuitPurpose,
    connectionId: string,
  ): Promise<{ circuit: Circuit; rttMs: number | null; remotePublicKey: Uint8Array }> {
    const { connections, identity } = this.options;
    return new Promise((resolve, reject) => {
      connections
        .withPeerStream(route.relayPeerId, async (stream, relayConnection) => {
          if (relayConnection.viaRelay) throw new CircuitClosedError('a relay must be reached directly');
          const channel = new MessageChannel(stream);
          let auth;
          try {
            await channel.send({ type: 'relay_connect', target_peer_id: route.targetPeerId });
            await channel.receive(relayConnectedMessage, 'relay_connected');
            auth = await authenticateAsInitiator(channel, identity, route.targetPeerId, purpose, connectionId);
          } catch (error) {
            await channel.fail(error);
            throw error;
          }
          const circuit = observeEnd(channel.detach());
          resolve({ circuit, rttMs: auth.rttMs, remotePublicKey: auth.remote.publicKey });
          await circuit.ended;
        })
        .catch(reject);
    });
  }

  private async answer(relay: PeerConnection, channel: MessageChannel, sourcePeerId: string): Promise<void> {
    if (this.byId.size >= MAX_RELAYED_CONNECTIONS) {
      throw new RelayRefusedError('RELAY_CIRCUIT_LIMIT', `already ${this.byId.size} relayed connections`);
    }
    await channel.send({ type: 'relay_accept' });
    const auth = await authenticateAsResponder(channel, this.options.identity, sourcePeerId);
    const circuit = observeEnd(channel.detach());
    if (auth.purpose === 'control') {
      const connection = new RelayedConnection({
        connectionId: auth.connectionId,
        remotePeerId: auth.remote.peerId,
        remotePublicKey: auth.remote.publicKey,
        relayPeerId: relay.remotePeerId,
        relayAddress: relay.remoteAddress,
        direction: 'inbound',
        control: circuit.stream,
        controlEnded: circuit.ended,
        // Two hops through the relay, each about the relay connection's RTT.
        rttMs: doubled(relay.rttMs()),
        openCircuit: async () =>
          (
            await this.openCircuit(
              { targetPeerId: auth.remote.peerId, relayPeerId: relay.remotePeerId, relayAddress: relay.remoteAddress },
              'stream',
              auth.connectionId,
            )
          ).circuit,
        logger: this.log,
      });
      this.remember(connection);
      this.log.debug({ peer: auth.remote.peerId, relay: formatAddress(relay.remoteAddress) }, 'relayed connection in');
      this.options.connections.accept(connection);
    } else {
      const connection = this.byId.get(auth.connectionId);
      if (!connection || connection.remotePeerId !== auth.remote.peerId) {
        circuit.stream.cancel('unknown relayed connection');
        return;
      }
      connection.deliver(circuit);
    }
    // The relay connection stays busy (never idle-closed) while the circuit is open.
    await circuit.ended;
  }
}

function doubled(ms: number | null): number | null {
  return ms === null ? null : ms * 2;
}
