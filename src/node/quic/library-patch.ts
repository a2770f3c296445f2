import { QUICConnection } from '@matrixai/quic';

/**
 * `patches/` (applied by patch-package at install) takes the QUIC library's per-packet and
 * per-stream overheads out of its hot paths: @matrixai/quic (a promise chain instead of a lock per
 * packet received, one flush per event-loop turn, streams asked about one by one instead of
 * quiche's iterators, packets handed to the socket without an event each), @matrixai/events (no
 * catch-all events nobody listens for) and @matrixai/async-init (a light lock for stream
 * teardown). Without them everything still works, with several times the CPU per packet and per
 * stream; the transport says so at start.
 */
export function quicLibraryPatched(): boolean {
  const prototype = QUICConnection.prototype as { withRecvLock?: unknown; processReadable?: unknown };
  return typeof prototype.withRecvLock === 'function' && typeof prototype.processReadable === 'function';
}
