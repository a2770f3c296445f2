import { RemoteNetworkError } from '../base/errors.ts';

/** A service definition that does not validate (the message names the field). */
export class ServiceInvalidError extends RemoteNetworkError {
  readonly code = 'SERVICE_INVALID';
}

export class ServiceNameTakenError extends RemoteNetworkError {
  readonly code = 'SERVICE_NAME_TAKEN';

  constructor(readonly serviceName: string) {
    super(`a service named ${serviceName} is already registered`);
  }
}

export class ServiceExecutableMissingError extends RemoteNetworkError {
  readonly code = 'SERVICE_EXECUTABLE_MISSING';

  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`executable ${path} ${reason}`);
  }
}

export class DataFileMissingError extends RemoteNetworkError {
  readonly code = 'DATA_FILE_MISSING';

  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`data file ${path} ${reason}`);
  }
}

/** A service's limit is above the node's maximum for it ([jobs] section). */
export class ServiceLimitExceededError extends RemoteNetworkError {
  readonly code = 'SERVICE_LIMIT_EXCEEDED';

  constructor(
    readonly limit: string,
    readonly value: number | boolean,
    readonly maximum: number | boolean,
  ) {
    super(`limits.${limit} is ${String(value)}, above this node's maximum of ${String(maximum)}`);
  }
}

/** Parameters (from a peer) that do not fit the service's declared schema; the message names the parameter. */
export class InvalidParametersError extends RemoteNetworkError {
  readonly code = 'INVALID_PARAMETERS';

  constructor(
    readonly parameter: string,
    reason: string,
  ) {
    super(`parameter ${parameter}: ${reason}`);
  }
}

/** The answering peer refuses a search: this peer asked too often. */
export class SearchRateLimitedError extends RemoteNetworkError {
  readonly code = 'SEARCH_RATE_LIMITED';

  constructor(readonly perMinute: number) {
    super(`at most ${perMinute} service searches per minute`);
  }
}

/** A search's arguments that cannot be used (too many peer ids, this node's own id). */
export class SearchInvalidError extends RemoteNetworkError {
  readonly code = 'SEARCH_INVALID';
}
