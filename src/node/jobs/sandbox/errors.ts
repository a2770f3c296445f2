import { RemoteNetworkError } from '../../base/errors.ts';

/** No sandbox can be made on this machine (or the configured one is missing); the message says what is missing. */
export class SandboxUnavailableError extends RemoteNetworkError {
  readonly code = 'SANDBOX_UNAVAILABLE';
}

/** A job spec the sandbox refuses before starting anything (bad id, path, argument, variable or limit). */
export class InvalidJobSpecError extends RemoteNetworkError {
  readonly code = 'INVALID_JOB_SPEC';
}

/** The sandbox itself failed (not the job): its process could not be spawned. */
export class SandboxFailedError extends RemoteNetworkError {
  readonly code = 'SANDBOX_FAILED';
}
