import { type QUICConnection, type QUICStream, errors as quicErrors, events as quicEvents } from '@matrixai/quic';
import type { HostPort } from '../base/address.ts';
import type { Logger } from '../base/logger.ts';
import { MAX_CLOSE_REASON_BYTES, MAX_PENDING_INBOUND_STREAMS, RTT_CACHE_MS } from './constants.ts';
import { ConnectionClosedError, StreamOpenError } from './errors.ts';
import type { ProvenPeer } from './peer-certificate.ts';
import { LIMIT_APP_CLOSE_CODE, type LimitReason, parseRefusalPhrase, remoteLimitRefusal } from './refusal.ts';
import type { Direction, PeerConnection, PeerStream } from './types.ts';

/** Reasons `closed` resolves with when no caller gave one. */
export const CLOSE_REASON_LOCAL = 'closed locally';
export const CLOSE_REASON_IDLE_TIMEOUT = 'idle timeout';

export interface QuicPeerConnectionInit {
  readonly connection: QUICConnection;
  readonly peer: ProvenPeer;
  readonly direction: Direction;
  readonly logger: Logger;
  /** Closes through the connection's owner: an outbound one must be destroyed via its QUICClient. */
  readonly stop: (reason: Uint8Array, errorCode?: number) => Promise<void>;
}

/**
 * The few internals of the library's QUICConnection this adapter reads (2.0.9): the native quiche
 * connection, for the RTT estimate and the peer's remaining stream credit, neither of which the
 * public API exposes.
 */
interface NativeConnectionView {
  readonly conn?: {
    pathStats(): Array<{ readonly active: boolean; readonly rtt: number }>;
    peerStreamsLeftBidi(): number;
  };
}

/**
 * A PeerConnection over one library connection. Inbound streams are buffered (up to
 * MAX_PENDING_INBOUND_STREAMS, beyond that reset) until `onStream` sets a handler, so a stream
 * that arrives before the owner has wired the connection is never lost.
 */
export class QuicPeerConnection implements PeerConnection {
  readonly id: string;
  readonly remotePeerId: string;
  readonly remotePublicKey: Uint8Array;
  readonly remoteAddress: HostPort;
  readonly direction: Direction;
  readonly openedAt = new Date();
  readonly viaRelay = false;
  readonly closed: Promise<string>;
  /** The remote closed this connection for one of its connection limits. */
  remoteRefusal: LimitReason | undefined;

  private resolveClosed: (reason: string) => void = () => {};
  /** The first known cause of the close (ours or the library's); later ones do not replace it. */
  private reason: string | undefined;
  private finished = false;
  private stopping: Promise<void> | undefined;
  private streamHandler: ((stream: PeerStream) => void) | undefined;
  private readonly pending: PeerStream[] = [];
  private readonly log: Logger;
  private rtt: { readonly value: number | null; readonly at: number } | undefined;

  constructor(private readonly init: QuicPeerConnectionInit) {
    const { connection, peer } = init;
    this.id = connection.connectionId.toString();
    this.remotePeerId = peer.peerId;
    this.remotePublicKey = peer.publicKey;
    this.remoteAddress = { host: unmapIPv4(connection.remoteHost), port: connection.remotePort };
    this.direction = init.direction;
    this.log = init.logger.child({ connection: this.id, peer: peer.peerId, direction: init.direction });
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    connection.addEventListener(quicEvents.EventQUICConnectionStream.name, this.handleStream);
    connection.addEventListener(quicEvents.EventQUICConnectionError.name, this.handleError);
    connection.addEventListener(quicEvents.EventQUICConnectionStopped.name, this.handleStopped, { once: true });
    if (connection.closed) this.finish();
  }

  async openStream(): Promise<PeerStream> {
    if (this.finished || this.stopping) throw new ConnectionClosedError(this.reason ?? CLOSE_REASON_LOCAL);
    // The library marks a stream id as used before it learns the peer's limit is reached, and
    // then refuses every later stream on the connection; asking quiche first avoids that.
    const native = (this.init.connection as unknown as NativeConnectionView).conn;
    if (native && native.peerStreamsLeftBidi() <= 0) {
      throw new StreamOpenError('the peer allows no more concurrent streams');
    }
    try {
      return toPeerStream(this.init.connection.newStream('bidi'));
    } catch (error) {
      if (error instanceof quicErrors.ErrorQUICConnectionNotRunning) {
        throw new ConnectionClosedError(this.reason ?? CLOSE_REASON_LOCAL);
      }
      throw new StreamOpenError(error instanceof Error ? error.message : String(error), { cause: error });
    }
  }

  onStream(handler: (stream: PeerStream) => void): void {
    this.streamHandler = handler;
    for (const stream of this.pending.splice(0)) this.deliver(stream);
  }

  /** quiche's smoothed RTT, read at most once per RTT_CACHE_MS (every state change reports it). */
  rttMs(): number | null {
    const now = performance.now();
    if (this.rtt !== undefined && now - this.rtt.at < RTT_CACHE_MS) return this.rtt.value;
    let value: number | null;
    try {
      const paths = (this.init.connection as unknown as NativeConnectionView).conn?.pathStats() ?? [];
      const path = paths.find((p) => p.active) ?? paths[0];
      value = path === undefined ? null : path.rtt;
    } catch {
      value = null; // quiche refuses stats once the connection is freed
    }
    this.rtt = { value, at: now };
    return value;
  }

  /** Being closed or closed: it no longer takes one of the transport's slots. */
  get closing(): boolean {
    return this.finished || this.stopping !== undefined;
  }

  /** A reason naming a connection limit (refusal.ts) is sent with the limit close code, so the peer can tell. */
  async close(reason: string = CLOSE_REASON_LOCAL): Promise<void> {
    this.reason ??= reason;
    if (!this.finished) {
      const code = parseRefusalPhrase(reason) !== undefined ? LIMIT_APP_CLOSE_CODE : undefined;
      this.stopping ??= this.init.stop(encodeReason(reason), code).catch((error: unknown) => {
        this.log.warn({ err: error }, 'QUIC connection did not stop cleanly');
        this.finish();
      });
      await this.stopping;
    }
    await this.closed;
  }

  private readonly handleStream = (event: Event): void => {
    if (!(event instanceof quicEvents.EventQUICConnectionStream)) return;
    const stream = toPeerStream(event.detail);
    if (this.streamHandler) {
      this.deliver(stream);
    } else if (this.pending.length < MAX_PENDING_INBOUND_STREAMS) {
      this.pending.push(stream);
    } else {
      this.log.warn({ limit: MAX_PENDING_INBOUND_STREAMS }, 'inbound stream reset: no handler yet and the buffer is full');
      stream.cancel(new StreamOpenError('no stream handler'));
    }
  };

  private deliver(stream: PeerStream): void {
    try {
      this.streamHandler?.(stream);
    } catch (error) {
      // A throw would escape into the library's event dispatch and end the process.
      this.log.error({ err: error }, 'stream handler threw; stream reset');
      stream.cancel(error);
    }
  }

  private readonly handleError = (event: Event): void => {
    if (!(event instanceof quicEvents.EventQUICConnectionError)) return;
    this.reason ??= describeClose(event.detail);
    this.remoteRefusal ??= remoteLimitRefusal(event.detail);
  };

  private readonly handleStopped = (): void => {
    this.finish();
  };

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const { connection } = this.init;
    connection.removeEventListener(quicEvents.EventQUICConnectionStream.name, this.handleStream);
    connection.removeEventListener(quicEvents.EventQUICConnectionStopped.name, this.handleStopped);
    // The error listener stays: the library throws an error event nobody listens to as an uncaught
    // exception, and a peer's close can still arrive after ours (seen: "Peer closed with application code 0").
    // The library has already reset these along with the connection.
    this.pending.length = 0;
    const reason = this.reason ?? CLOSE_REASON_LOCAL;
    this.log.debug({ reason }, 'QUIC connection closed');
    this.resolveClosed(reason);
  }
}

function toPeerStream(stream: QUICStream): PeerStream {
  return {
    // Node's global web streams are the 'stream/web' classes at runtime; @types/node types the two
    // declarations differently (BYOB reader options), hence the cast.
    readable: stream.readable as unknown as ReadableStream<Uint8Array>,
    writable: stream.writable,
    cancel: (reason?: unknown) => stream.cancel(reason),
  };
}

type ConnectionCloseError =
  | quicErrors.ErrorQUICConnectionLocal<unknown>
  | quicErrors.ErrorQUICConnectionPeer<unknown>
  | quicErrors.ErrorQUICConnectionIdleTimeout<unknown>
  | quicErrors.ErrorQUICConnectionInternal<unknown>;

function describeClose(error: ConnectionCloseError): string {
  if (error instanceof quicErrors.ErrorQUICConnectionIdleTimeout) return CLOSE_REASON_IDLE_TIMEOUT;
  // PeerTLS derives from the Local class in the library, so it is tested first.
  if (error instanceof quicErrors.ErrorQUICConnectionPeerTLS) {
    return `remote refused TLS (code ${error.data.errorCode})`;
  }
  if (error instanceof quicErrors.ErrorQUICConnectionPeer) {
    const text = Buffer.from(error.data.reason).toString('utf8');
    if (text.length > 0) return `remote closed: ${text}`;
    return `remote closed (${error.data.isApp ? 'application' : 'transport'} code ${error.data.errorCode})`;
  }
  if (error instanceof quicErrors.ErrorQUICConnectionLocalTLS) return `TLS refused (code ${error.data.errorCode})`;
  if (error instanceof quicErrors.ErrorQUICConnectionLocal) return CLOSE_REASON_LOCAL;
  return `internal error: ${error.message}`;
}

/** A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the rest of the node keys on a.b.c.d. */
function unmapIPv4(host: string): string {
  const match = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(host);
  return match?.[1] ?? host;
}

function encodeReason(reason: string): Uint8Array {
  const bytes = Buffer.from(reason, 'utf8');
  // Cutting may split a multi-byte character; the peer decodes leniently.
  return bytes.length <= MAX_CLOSE_REASON_BYTES ? bytes : bytes.subarray(0, MAX_CLOSE_REASON_BYTES);
}
