import { RemoteNetworkError } from '../base/errors.ts';

export class PeerNotKnownError extends RemoteNetworkError {
  readonly code = 'PEER_NOT_FOUND';

  constructor(readonly peerId: string) {
    super(`peer ${peerId} is not a known peer`);
  }
}

/** The peer cannot be dialled directly (behind NAT) and relayed dialling is not available. */
export class PeerNotDialableError extends RemoteNetworkError {
  readonly code = 'PEER_NOT_DIALABLE';

  constructor(
    readonly peerId: string,
    reason: string,
  ) {
    super(`peer ${peerId} cannot be dialled: ${reason}`);
  }
}
