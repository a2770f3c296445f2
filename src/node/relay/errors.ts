import { RemoteNetworkError } from '../base/errors.ts';

/** Why a relay refused (sent to the peer as the error frame's code). */
export type RelayRefusalCode =
  | 'RELAY_NOT_OFFERED'
  | 'RELAY_IDENTITY_MISMATCH'
  | 'RELAY_SESSION_LIMIT'
  | 'RELAY_CIRCUIT_LIMIT'
  | 'RELAY_TARGET_UNKNOWN'
  | 'RELAY_TARGET_UNREACHABLE';

export class RelayRefusedError extends RemoteNetworkError {
  constructor(
    readonly code: RelayRefusalCode,
    message: string,
  ) {
    super(message);
  }
}

/** A NAT node has no relay to register with (none known, or none answered). */
export class NoRelayAvailableError extends RemoteNetworkError {
  readonly code = 'NO_RELAY_AVAILABLE';
}

/** A relayed connection or circuit ended. */
export class CircuitClosedError extends RemoteNetworkError {
  readonly code = 'CIRCUIT_CLOSED';
}
