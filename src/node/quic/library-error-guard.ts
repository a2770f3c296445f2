import { errors as quicErrors } from '@matrixai/quic';
import type { Logger } from '../logger.ts';

let installed = false;

/**
 * @matrixai/quic throws an error event that has no listener as an uncaught exception. A peer's
 * close that lands in the same packet burst as the end of our handshake is dispatched before our
 * code can attach a listener, so without this guard a remote peer could end the process. Only the
 * library's connection errors are absorbed (logged); any other uncaught exception still ends the
 * process, as Node would.
 */
export function installQuicErrorGuard(logger: Logger): void {
  if (installed) return;
  installed = true;
  process.on('uncaughtException', (error) => {
    if (error instanceof quicErrors.ErrorQUICConnection) {
      logger.debug({ err: error }, 'QUIC connection error with no listener (absorbed)');
      return;
    }
    logger.fatal({ err: error }, 'uncaught exception');
    console.error(error);
    process.exit(1);
  });
}
