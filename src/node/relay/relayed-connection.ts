import type { HostPort } from '../base/address.ts';
import type { Logger } from '../base/logger.ts';
import type { Direction, PeerConnection, PeerStream } from '../quic/types.ts';
import { MAX_PENDING_INBOUND_STREAMS } from '../quic/constants.ts';
import { ConnectionClosedError } from '../quic/errors.ts';

/** A spliced stream through a relay, and when it ends. */
export interface Circuit {
  readonly stream: PeerStream;
  readonly ended: Promise<void>;
}

export interface RelayedConnectionInit {
  /** Chosen by the dialer, shared by both ends: later circuits name it. */
  readonly connectionId: string;
  readonly remotePeerId: string;
  readonly remotePublicKey: Uint8Array;
  readonly relayPeerId: string;
  readonly relayAddress: HostPort;
  readonly direction: Direction;
  /** The authenticated control circuit: the connection lives as long as it does. */
  readonly control: PeerStream;
  readonly controlEnded: Promise<void>;
  readonly rttMs: number | null;
  /** Opens and authenticates a new circuit for one stream of this connection. */
  readonly openCircuit: () => Promise<Circuit>;
  readonly logger: Logger;
}

/**
 * A connection to a peer carried by a relay: every stream is its own circuit through the relay,
 * authenticated end to end (see circuit-auth.ts), and the connection lasts as long as its control
 * circuit. The rest of the node uses it like a QUIC connection (`viaRelay` tells them apart).
 */
export class RelayedConnection implements PeerConnection {
  readonly id: string;
  readonly remotePeerId: string;
  readonly remotePublicKey: Uint8Array;
  /** The relay's address: where the bytes actually go. */
  readonly remoteAddress: HostPort;
  readonly direction: Direction;
  readonly openedAt = new Date();
  readonly viaRelay = true;
  readonly relayPeerId: string;
  readonly connectionId: string;
  readonly closed: Promise<string>;

  private reason: string | undefined;
  private resolveClosed: (reason: string) => void = () => {};
  private streamHandler: ((stream: PeerStream) => void) | undefined;
  private readonly pending: PeerStream[] = [];
  private readonly open = new Set<PeerStream>();

  constructor(private readonly init: RelayedConnectionInit) {
    this.connectionId = init.connectionId;
    this.id = `relayed-${init.connectionId}`;
    this.remotePeerId = init.remotePeerId;
    this.remotePublicKey = init.remotePublicKey;
    this.remoteAddress = init.relayAddress;
    this.direction = init.direction;
    this.relayPeerId = init.relayPeerId;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    void init.controlEnded.then(() => this.finish('relay circuit closed'));
  }

  async openStream(): Promise<PeerStream> {
    if (this.reason !== undefined) throw new ConnectionClosedError(this.reason);
    const circuit = await this.init.openCircuit();
    if (this.reason !== undefined) {
      circuit.stream.cancel(this.reason);
      throw new ConnectionClosedError(this.reason);
    }
    return this.remember(circuit);
  }

  onStream(handler: (stream: PeerStream) => void): void {
    this.streamHandler = handler;
    for (const stream of this.pending.splice(0)) handler(stream);
  }

  /** An authenticated `stream` circuit for this connection arrived. */
  deliver(circuit: Circuit): void {
    if (this.reason !== undefined) {
      circuit.stream.cancel(this.reason);
      return;
    }
    const remembered = this.remember(circuit);
    if (this.streamHandler) this.streamHandler(remembered);
    else if (this.pending.length < MAX_PENDING_INBOUND_STREAMS) this.pending.push(remembered);
    else remembered.cancel('no stream handler');
  }

  rttMs(): number | null {
    return this.init.rttMs;
  }

  async close(reason = 'closed locally'): Promise<void> {
    this.finish(reason);
    await this.closed;
  }

  /** Tracked until it ends, so that closing the connection resets whatever is still open. */
  private remember({ stream, ended }: Circuit): PeerStream {
    this.open.add(stream);
    void ended.then(() => this.open.delete(stream));
    return stream;
  }

  private finish(reason: string): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    // Ending the control circuit tells the other end; the stream circuits go with the connection.
    this.init.control.cancel(reason);
    for (const stream of this.open) stream.cancel(reason);
    this.open.clear();
    for (const stream of this.pending.splice(0)) stream.cancel(reason);
    this.init.logger.debug({ peer: this.remotePeerId, relay: this.relayPeerId, reason }, 'relayed connection closed');
    this.resolveClosed(reason);
  }
}
