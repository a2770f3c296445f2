import { randomBytes } from 'node:crypto';
import { type HostPort, formatAddress } from '../../src/node/base/address.ts';
import type { NodeIdentity } from '../../src/node/identity/key-store.ts';
import {
  ConnectionClosedError,
  DialFailedError,
  PeerIdMismatchError,
  StreamOpenError,
  StreamResetError,
} from '../../src/node/quic/errors.ts';
import type { DialOptions, Direction, PeerConnection, PeerStream, Transport } from '../../src/node/quic/types.ts';

/**
 * The node's `Transport` contract in one process, without sockets (like libp2p's
 * transport-memory): transports on one MemoryNetwork dial each other by address, a connection's
 * peer id is the dialled transport's (as TLS would prove it), and streams are web streams whose
 * reset and stop-sending reach the other end the way QUIC's do. For testing a component alone.
 */
export class MemoryNetwork {
  private readonly listeners = new Map<string, MemoryTransport>();
  private nextPort = 40_000;

  /** A transport for `identity` listening at `host` (a label: nothing is bound). */
  transport(identity: Pick<NodeIdentity, 'peerId' | 'publicKey'>, host = '192.0.2.1'): MemoryTransport {
    const transport = new MemoryTransport(this, identity, { host, port: this.nextPort++ });
    this.listeners.set(formatAddress(transport.address), transport);
    return transport;
  }

  /** The transport listening at `address`, if any. */
  at(address: HostPort): MemoryTransport | undefined {
    return this.listeners.get(formatAddress(address));
  }
}

export class MemoryTransport implements Transport {
  private handler: ((connection: PeerConnection) => void) | undefined;
  /** Raw datagrams sent (hole punching), for tests to look at. */
  readonly rawSent: Array<{ data: Uint8Array; address: HostPort }> = [];
  /** Every address dialled, answered or not, in order. */
  readonly dialled: HostPort[] = [];

  constructor(
    private readonly network: MemoryNetwork,
    readonly identity: Pick<NodeIdentity, 'peerId' | 'publicKey'>,
    readonly address: HostPort,
  ) {}

  get port(): number {
    return this.address.port;
  }

  onConnection(handler: (connection: PeerConnection) => void): void {
    this.handler = handler;
  }

  dial(address: HostPort, options: DialOptions = {}): Promise<PeerConnection> {
    this.dialled.push(address);
    const remote = this.network.at(address);
    if (!remote?.handler) return Promise.reject(new DialFailedError(formatAddress(address), 'nothing listens there'));
    if (options.expectedPeerId && options.expectedPeerId !== remote.identity.peerId) {
      return Promise.reject(new PeerIdMismatchError(options.expectedPeerId, remote.identity.peerId, formatAddress(address)));
    }
    const [ours, theirs] = connectionPair(this, remote, { viaRelay: false });
    remote.handler(theirs);
    return Promise.resolve(ours);
  }

  sendRaw(data: Uint8Array, address: HostPort): Promise<void> {
    this.rawSent.push({ data, address });
    return Promise.resolve();
  }
}

/**
 * Two ends of one connection from `dialer` to `listener`: [the dialer's, the listener's]. With
 * `viaRelay` it stands for a relayed connection (its identity proven end to end, not by TLS).
 */
export function connectionPair(
  dialer: Pick<MemoryTransport, 'identity' | 'address'>,
  listener: Pick<MemoryTransport, 'identity' | 'address'>,
  options: { viaRelay: boolean },
): [MemoryConnection, MemoryConnection] {
  const id = randomBytes(8).toString('hex');
  const outbound = new MemoryConnection(`${id}-out`, listener, listener.address, 'outbound', options.viaRelay);
  const inbound = new MemoryConnection(`${id}-in`, dialer, dialer.address, 'inbound', options.viaRelay);
  outbound.peer = inbound;
  inbound.peer = outbound;
  return [outbound, inbound];
}

export class MemoryConnection implements PeerConnection {
  readonly remotePeerId: string;
  readonly remotePublicKey: Uint8Array;
  readonly openedAt = new Date();
  readonly closed: Promise<string>;
  /** The other end; set by connectionPair. */
  peer!: MemoryConnection;
  private resolveClosed!: (reason: string) => void;
  private isClosed = false;
  private streamHandler: ((stream: PeerStream) => void) | undefined;
  private readonly pending: PeerStream[] = [];
  private readonly liveStreams = new Set<MemoryStreamEnd>();

  constructor(
    readonly id: string,
    remote: Pick<MemoryTransport, 'identity'>,
    readonly remoteAddress: HostPort,
    readonly direction: Direction,
    readonly viaRelay: boolean,
  ) {
    this.remotePeerId = remote.identity.peerId;
    this.remotePublicKey = remote.identity.publicKey;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  openStream(): Promise<PeerStream> {
    if (this.isClosed) return Promise.reject(new StreamOpenError('the connection is closed'));
    const [ours, theirs] = streamPair();
    this.track(ours);
    this.peer.track(theirs);
    this.peer.receive(theirs);
    return Promise.resolve(ours);
  }

  onStream(handler: (stream: PeerStream) => void): void {
    this.streamHandler = handler;
    for (const stream of this.pending.splice(0)) handler(stream);
  }

  rttMs(): number | null {
    return 1;
  }

  /** Closes both ends (the peer sees the same reason), resetting their open streams. */
  close(reason = 'closed'): Promise<void> {
    this.end(reason);
    this.peer.end(reason);
    return Promise.resolve();
  }

  private end(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const stream of this.liveStreams) stream.reset(new ConnectionClosedError(reason));
    this.liveStreams.clear();
    this.resolveClosed(reason);
  }

  private track(stream: MemoryStreamEnd): void {
    this.liveStreams.add(stream);
    stream.done.then(
      () => this.liveStreams.delete(stream),
      () => this.liveStreams.delete(stream),
    );
  }

  private receive(stream: PeerStream): void {
    if (this.isClosed) return;
    if (this.streamHandler) this.streamHandler(stream);
    else this.pending.push(stream);
  }
}

/** One end of an in-memory bidirectional stream. */
interface MemoryStreamEnd extends PeerStream {
  /** Ends this end at once (its connection closed). */
  reset(reason: unknown): void;
  /** Settles once both directions of this end are finished. */
  readonly done: Promise<void>;
}

/**
 * A bidirectional stream as QUIC has it: each end writes into the other's readable; closing the
 * writable is a FIN (what was written is still read), `cancel` resets our unfinished sending side
 * (the peer's reads fail) and stops the peer's sending (its writes fail).
 */
function streamPair(): [MemoryStreamEnd, MemoryStreamEnd] {
  const a = new StreamHalf();
  const b = new StreamHalf();
  return [a.end(b), b.end(a)];
}

class StreamHalf {
  readCtl!: ReadableStreamDefaultController<Uint8Array>;
  writeCtl!: WritableStreamDefaultController;
  readDone = false;
  writeDone = false;
  private resolveDone!: () => void;
  readonly done = new Promise<void>((resolve) => {
    this.resolveDone = resolve;
  });
  readonly readable: ReadableStream<Uint8Array>;
  private other!: StreamHalf;

  constructor() {
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.readCtl = controller;
      },
      cancel: () => this.stopReading(new StreamResetError('write', 0)),
    });
  }

  end(other: StreamHalf): MemoryStreamEnd {
    this.other = other;
    const writable = new WritableStream<Uint8Array>({
      start: (controller) => {
        this.writeCtl = controller;
      },
      write: (chunk) => {
        if (this.writeDone) throw new StreamResetError('write', 0);
        if (!other.readDone) other.readCtl.enqueue(new Uint8Array(chunk));
      },
      close: () => {
        this.finishWriting();
        if (!other.readDone) {
          other.readCtl.close();
          other.readDone = true;
          other.settle();
        }
      },
      abort: (reason) => this.resetWriting(reason),
    });
    return {
      readable: this.readable,
      writable,
      cancel: (reason?: unknown) => {
        this.resetWriting(reason);
        this.stopReading(reason);
      },
      reset: (reason: unknown) => {
        this.resetWriting(reason);
        this.stopReading(reason);
      },
      done: this.done,
    };
  }

  /** RESET_STREAM: our sending side ends unfinished; the other end's reads fail. */
  private resetWriting(reason: unknown): void {
    if (this.writeDone) return;
    this.finishWriting();
    this.writeCtl.error(reason);
    if (!this.other.readDone) {
      this.other.readDone = true;
      this.other.readCtl.error(new StreamResetError('read', 0));
      this.other.settle();
    }
  }

  /** STOP_SENDING: we read no more; the other end's writes fail. */
  private stopReading(reason: unknown): void {
    if (!this.readDone) {
      this.readDone = true;
      this.readCtl.error(reason);
    }
    this.settle();
    if (!this.other.writeDone) {
      this.other.finishWriting();
      this.other.writeCtl.error(new StreamResetError('write', 0));
    }
  }

  private finishWriting(): void {
    this.writeDone = true;
    this.settle();
  }

  settle(): void {
    if (this.readDone && this.writeDone) this.resolveDone();
  }
}
