import { errors as quicErrors } from '@matrixai/quic';

/**
 * Why a node refuses (or prunes) a connection for its connection limits, as both sides see it.
 * The refusing side closes with a reason phrase `connection-limit:<reason>`: before the TLS
 * handshake as a transport CONNECTION_REFUSED (0x02) in an Initial packet (initial-close.ts),
 * after it with the application code LIMIT_APP_CLOSE_CODE. The dialer turns either into a
 * PeerConnectionLimitError, so it can tell "full" apart from "unreachable" or "broken".
 */
export const LIMIT_REASONS = [
  /** Too many connections from the dialer's IP address. */
  'ip',
  /** Too many from its /24 (IPv4) or /48 (IPv6). */
  'subnet',
  /** Too many of its address's connections still in the handshake or the identity exchange. */
  'pending_ip',
  /** Too many connections in the handshake or the identity exchange, all addresses together. */
  'pending',
  /** New connections from its address arrive faster than the rate limit. */
  'rate',
  /** Every slot is taken and nothing could be pruned for it. */
  'capacity',
  /** An open connection closed to make room for a peer from a less crowded network. */
  'pruned',
] as const;
export type LimitReason = (typeof LIMIT_REASONS)[number];

export const REFUSAL_PHRASE_PREFIX = 'connection-limit:';
/** QUIC transport error CONNECTION_REFUSED (RFC 9000 §20.1). */
export const TRANSPORT_CONNECTION_REFUSED = 0x02;
/** Application close code of a connection closed for a limit once the handshake is done. */
export const LIMIT_APP_CLOSE_CODE = 0x4c;

export function refusalPhrase(reason: LimitReason): string {
  return `${REFUSAL_PHRASE_PREFIX}${reason}`;
}

/** The reason named by a close phrase, if it is a limit refusal. */
export function parseRefusalPhrase(phrase: string): LimitReason | undefined {
  if (!phrase.startsWith(REFUSAL_PHRASE_PREFIX)) return undefined;
  const reason = phrase.slice(REFUSAL_PHRASE_PREFIX.length);
  return (LIMIT_REASONS as readonly string[]).includes(reason) ? (reason as LimitReason) : undefined;
}

/** The limit a remote closed with, read from the library's peer-close error (or any error it caused). */
export function remoteLimitRefusal(error: unknown): LimitReason | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    if (!(e instanceof quicErrors.ErrorQUICConnectionPeer)) continue;
    const { isApp, errorCode, reason } = e.data;
    const expected = isApp ? errorCode === LIMIT_APP_CLOSE_CODE : errorCode === TRANSPORT_CONNECTION_REFUSED;
    return expected ? parseRefusalPhrase(Buffer.from(reason).toString('utf8')) : undefined;
  }
  return undefined;
}
