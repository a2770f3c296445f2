import type { QUICSocket } from '@matrixai/quic';
import type { Logger } from '../base/logger.ts';

/** The logger type the QUIC library's constructors take (@matrixai/logger, not a dependency of ours). */
export type QuicLibraryLogger = NonNullable<ConstructorParameters<typeof QUICSocket>[0]['logger']>;

type Message = { toString(): string } | undefined;

/**
 * Routes the library's logs into our pino logger. Without a logger the library prints every
 * connection's and stream's life to stderr. Its `info` narrates routine events (a stream created,
 * a connection stopped), so it maps to our `debug`, and its `debug` to `trace`. The library only
 * calls getChild/debug/info (checked against 2.0.9), which is all this implements.
 */
class PinoBridge {
  constructor(
    private readonly pino: Logger,
    private readonly key: string,
  ) {}

  getChild(key: string): PinoBridge {
    // Keys name a connection or stream id; a pino child per stream would cost more than it helps.
    return new PinoBridge(this.pino, `${this.key}.${key}`);
  }

  debug(message?: Message): void {
    if (this.pino.isLevelEnabled('trace')) this.pino.trace({ quic: this.key }, String(message ?? ''));
  }

  info(message?: Message): void {
    if (this.pino.isLevelEnabled('debug')) this.pino.debug({ quic: this.key }, String(message ?? ''));
  }

  warn(message?: Message): void {
    this.pino.warn({ quic: this.key }, String(message ?? ''));
  }

  error(message?: Message): void {
    this.pino.error({ quic: this.key }, String(message ?? ''));
  }
}

export function libraryLogger(logger: Logger, key = 'quic'): QuicLibraryLogger {
  // Structural stand-in for @matrixai/logger's class: see PinoBridge for the methods it relies on.
  return new PinoBridge(logger, key) as unknown as QuicLibraryLogger;
}
