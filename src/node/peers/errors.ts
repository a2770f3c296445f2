import { RemoteNetworkError } from '../errors.ts';

export class PeerNotKnownError extends RemoteNetworkError {
  readonly code = 'PEER_NOT_FOUND';

  constructor(readonly peerId: string) {
    super(`peer ${peerId} is not a known peer`);
  }
}
