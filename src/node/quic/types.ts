import type { HostPort } from '../base/address.ts';
import type { LimitReason } from './refusal.ts';

/**
 * The transport contract the rest of the node codes against (exchange, lifecycle, discovery).
 * `QuicTransport` implements it over @matrixai/quic; the peer id of every connection is proven by
 * mutual TLS (SHA1 of the Ed25519 key in the remote certificate), never claimed.
 */

export type Direction = 'inbound' | 'outbound';

/** One bidirectional QUIC stream. */
export interface PeerStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /** Aborts both directions (a reset stream), e.g. after a protocol error. */
  cancel(reason?: unknown): void;
  /** Told the bytes of the messages a MessageChannel sends and receives on it (set by the connection manager). */
  readonly traffic?: StreamTraffic;
}

/** Where a stream's message bytes are counted, per protocol (the type of the stream's first message). */
export interface StreamTraffic {
  sent(protocol: string, bytes: number): void;
  received(protocol: string, bytes: number): void;
}

export interface PeerConnection {
  /** Unique per connection (two connections to one peer have different ids). */
  readonly id: string;
  /** SHA1 of the Ed25519 public key in the remote's TLS certificate, 40 lowercase hex. */
  readonly remotePeerId: string;
  /** That key, raw 32 bytes. */
  readonly remotePublicKey: Uint8Array;
  readonly remoteAddress: HostPort;
  readonly direction: Direction;
  readonly openedAt: Date;
  /** Carried through a relay circuit (its identity proven end to end, not by TLS). */
  readonly viaRelay: boolean;
  openStream(): Promise<PeerStream>;
  /** Streams the remote opens; set once, before any stream can arrive (at 'connection' time). */
  onStream(handler: (stream: PeerStream) => void): void;
  /** Smoothed RTT from the QUIC library, in ms, when known. */
  rttMs(): number | null;
  close(reason?: string): Promise<void>;
  /** Resolves once the connection is closed, for any reason (with that reason). */
  readonly closed: Promise<string>;
  /** Set when the remote closed it for one of its connection limits (see refusal.ts). */
  readonly remoteRefusal?: LimitReason | undefined;
}

export interface DialOptions {
  /** When set, a connection whose proven peer id differs is closed at once (PeerIdMismatchError). */
  readonly expectedPeerId?: string;
  readonly timeoutMs?: number;
}

export interface Transport {
  /** Bound UDP port (after start). */
  readonly port: number;
  dial(address: HostPort, options?: DialOptions): Promise<PeerConnection>;
  /** Every new inbound connection (after TLS, with the peer id proven). */
  onConnection(handler: (connection: PeerConnection) => void): void;
  /** Raw UDP from the listening socket (hole punching). */
  sendRaw(data: Uint8Array, address: HostPort): Promise<void>;
}

/**
 * The connection limits, as the transport asks them: once a dialer's address is proven (its
 * Initial carries our valid retry token) and before any TLS work, then as the connection passes
 * TLS, and when it is gone. Every admitted connection is released exactly once.
 */
export interface InboundAdmission {
  /** Undefined admits the connection (counted from now on under `connectionId`); a reason refuses it. */
  admit(host: string, connectionId: string): LimitReason | undefined;
  /** The admitted connection passed TLS and goes to the node. */
  handshakeDone(connectionId: string): void;
  /** The admitted connection is gone (handshake failed, refused after it, or closed). */
  release(connectionId: string): void;
  /** A refusal the transport made itself after the handshake (its own connection cap). */
  refused(host: string, reason: LimitReason): void;
}
