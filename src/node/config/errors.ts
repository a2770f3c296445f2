import { RemoteNetworkError } from '../base/errors.ts';

/** One or more settings are unknown or malformed; each problem names its source, section and key. */
export class ConfigError extends RemoteNetworkError {
  readonly code = 'CONFIG_INVALID';

  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}
