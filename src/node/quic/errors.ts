import { RemoteNetworkError } from '../base/errors.ts';
import type { LimitReason } from './refusal.ts';

/** The remote proved (by TLS) a different peer id than the one the dialer expected. */
export class PeerIdMismatchError extends RemoteNetworkError {
  readonly code = 'PEER_ID_MISMATCH';

  constructor(
    readonly expectedPeerId: string,
    readonly actualPeerId: string,
    readonly address: string,
  ) {
    super(`peer at ${address} is ${actualPeerId}, expected ${expectedPeerId}`);
  }
}

export class DialTimeoutError extends RemoteNetworkError {
  readonly code = 'QUIC_DIAL_TIMEOUT';

  constructor(
    readonly address: string,
    readonly timeoutMs: number,
  ) {
    super(`QUIC dial to ${address} did not complete within ${timeoutMs} ms`);
  }
}

/** The handshake failed for another reason (TLS rejected, ALPN mismatch, unreachable, dialing ourselves). */
export class DialFailedError extends RemoteNetworkError {
  readonly code = 'QUIC_DIAL_FAILED';

  constructor(
    readonly address: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`QUIC dial to ${address} failed: ${reason}`, options);
  }
}

export class TransportNotRunningError extends RemoteNetworkError {
  readonly code = 'QUIC_NOT_RUNNING';

  constructor() {
    super('the QUIC transport is not running');
  }
}

export class TooManyConnectionsError extends RemoteNetworkError {
  readonly code = 'QUIC_TOO_MANY_CONNECTIONS';

  constructor(readonly limit: number) {
    super(`the QUIC transport already has its maximum of ${limit} connections`);
  }
}

export class ConnectionClosedError extends RemoteNetworkError {
  readonly code = 'QUIC_CONNECTION_CLOSED';

  constructor(readonly reason: string) {
    super(`the QUIC connection is closed (${reason})`);
  }
}

export class StreamOpenError extends RemoteNetworkError {
  readonly code = 'QUIC_STREAM_OPEN_FAILED';

  constructor(reason: string, options?: ErrorOptions) {
    super(`cannot open a QUIC stream: ${reason}`, options);
  }
}

export class RawSendError extends RemoteNetworkError {
  readonly code = 'QUIC_RAW_SEND_FAILED';

  constructor(
    readonly address: string,
    options?: ErrorOptions,
  ) {
    super(`raw UDP send to ${address} failed`, options);
  }
}

/** A certificate that cannot carry a peer identity: unparsable, or its key is not Ed25519. */
export class CertificateKeyError extends RemoteNetworkError {
  readonly code = 'QUIC_CERTIFICATE_KEY';

  constructor(reason: string, options?: ErrorOptions) {
    super(`certificate rejected: ${reason}`, options);
  }
}

/** The remote aborted its side of a stream (QUIC RESET_STREAM or STOP_SENDING) with `streamCode`. */
export class StreamResetError extends RemoteNetworkError {
  readonly code = 'QUIC_STREAM_RESET';

  constructor(
    readonly direction: 'read' | 'write',
    readonly streamCode: number,
  ) {
    super(
      direction === 'read' ? `the peer reset the stream (code ${streamCode})` : `the peer stopped reading the stream (code ${streamCode})`,
    );
  }
}

/** The UDP socket could not be bound (address in use, or not an address of this host). */
export class BindError extends RemoteNetworkError {
  readonly code = 'QUIC_BIND_FAILED';

  constructor(
    readonly address: string,
    options?: ErrorOptions,
  ) {
    super(`cannot bind the QUIC socket to ${address}`, options);
  }
}

/**
 * The remote refused (or pruned) our connection for one of its connection limits: it is full for
 * us, not unreachable. Distinct from CONNECTION_LIMIT, which is this node's own cap.
 */
export class PeerConnectionLimitError extends RemoteNetworkError {
  readonly code = 'PEER_CONNECTION_LIMIT';

  constructor(
    readonly address: string,
    readonly reason: LimitReason,
    options?: ErrorOptions,
  ) {
    super(`peer at ${address} refused the connection: connection limit (${reason})`, options);
  }
}
