import { RemoteNetworkError } from '../base/errors.ts';

/** The key file exists but cannot be used; the node refuses to start rather than replace it. */
export class KeyFileError extends RemoteNetworkError {
  readonly code = 'KEY_FILE_INVALID';

  constructor(
    readonly file: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`key file ${file}: ${reason}`, options);
  }
}
