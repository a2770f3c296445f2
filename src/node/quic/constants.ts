/** QUIC transport limits, timings and wire constants, declared once. */

/** ALPN protocol id: both sides must offer it or the TLS handshake fails (no_application_protocol). */
export const ALPN_PROTOCOL = 'remote-network/1';

/** Upper bound on a dial (handshake included) when the caller gives no timeout. */
export const DEFAULT_DIAL_TIMEOUT_MS = 5_000;
/**
 * Upper bound on an inbound handshake. Without it quiche keeps a half-open connection for the
 * whole idle timeout (minutes), which a peer could use to pin server state.
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Open connections (both directions) when the node configures no limit. */
export const DEFAULT_MAX_CONNECTIONS = 512;

/**
 * Keep-alive ping period. Consumer NATs drop idle UDP mappings after ~30 s (some sooner), far
 * below the default idle timeout, so a quiet connection through a NAT would die silently. The
 * pings also make QUIC's idle timeout a pure dead-peer detector; closing connections that carry
 * no streams is the lifecycle's policy, not the transport's.
 */
export const KEEPALIVE_INTERVAL_MS = 15_000;
/**
 * With keep-alives on, a connection that hears nothing for this many ping periods is dead (its
 * peer crashed or moved): QUIC's idle timeout is set to it, so that a restarted peer (a relay
 * killed and started again) is dialled afresh within a minute instead of after the lifecycle's
 * idle period (minutes) of talking to nobody.
 */
export const DEAD_AFTER_KEEPALIVES = 4;

/** Inbound streams held for a connection whose stream handler is not set yet; beyond it they are reset. */
export const MAX_PENDING_INBOUND_STREAMS = 32;
/** Concurrent bidirectional streams a peer may open on one connection (QUIC flow control). */
export const MAX_INBOUND_STREAMS = 100;
/** Read buffer per stream pull; the library default (4 KiB) costs one JS round trip per 4 KiB. */
export const READABLE_CHUNK_BYTES = 64 * 1024;

/** Reason phrases are sent in one CONNECTION_CLOSE frame; longer ones are cut. */
export const MAX_CLOSE_REASON_BYTES = 256;
/** Application error code sent with every close we initiate (the reason phrase says why). */
export const APP_CLOSE_CODE = 0;

/** Certificate validity: starts in the past so that peers whose clock runs behind accept it. */
export const CERT_BACKDATE_MS = 60 * 60 * 1000;
export const CERT_VALIDITY_MS = 30 * 24 * 60 * 60 * 1000;
/** A certificate with less than this left is replaced (at start, and by the periodic check). */
export const CERT_RENEW_BEFORE_MS = 7 * 24 * 60 * 60 * 1000;
export const CERT_RENEW_CHECK_INTERVAL_MS = 60 * 60 * 1000;

/** stop(): how long connections get to close gracefully before the socket is stopped by force. */
export const STOP_GRACE_MS = 1_000;

/** How long a connection's RTT estimate is reused before quiche is asked again. */
export const RTT_CACHE_MS = 1000;
