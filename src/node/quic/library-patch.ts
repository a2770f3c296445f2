import { QUICConnection } from '@matrixai/quic';

/**
 * `patches/@matrixai+quic+2.0.9.patch` (applied by patch-package at install) takes the library's
 * per-packet lock and per-write flush out of its hot path. Without it everything still works,
 * only about twice as much CPU goes into each packet; the transport says so at start.
 */
export function quicLibraryPatched(): boolean {
  return typeof (QUICConnection.prototype as { withRecvLock?: unknown }).withRecvLock === 'function';
}
