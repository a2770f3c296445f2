import { RemoteNetworkError } from '../base/errors.ts';

export class DhtNotRunningError extends RemoteNetworkError {
  readonly code = 'DHT_NOT_RUNNING';

  constructor() {
    super('the DHT node is not running');
  }
}

export class DhtTimeoutError extends RemoteNetworkError {
  readonly code = 'DHT_TIMEOUT';

  constructor(
    readonly operation: string,
    readonly timeoutMs: number,
  ) {
    super(`DHT ${operation} did not finish within ${timeoutMs} ms`);
  }
}
