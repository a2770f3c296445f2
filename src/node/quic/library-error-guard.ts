import { errors as quicErrors } from '@matrixai/quic';
import type { Logger } from '../base/logger.ts';
import { absorbUncaught, installProcessGuard } from '../base/process-guard.ts';

/**
 * @matrixai/quic throws an error event that has no listener as an uncaught exception. A peer's
 * close that lands in the same packet burst as the end of our handshake is dispatched before our
 * code can attach a listener, so without this a remote peer could end the process. Only the
 * library's connection errors are absorbed; any other uncaught exception still ends the process.
 */
export function installQuicErrorGuard(logger: Logger): void {
  absorbUncaught((error) => error instanceof quicErrors.ErrorQUICConnection);
  installProcessGuard(logger);
}
