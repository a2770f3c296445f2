/** DHT limits and timings, declared once. */

/** BEP 44: the bencoded `v` of a stored item may be at most 1000 bytes. */
export const MAX_BEP44_VALUE_BYTES = 1000;
/** BEP 44: salt at most 64 bytes. */
export const MAX_BEP44_SALT_BYTES = 64;
/** Kademlia bucket size and the number of closest nodes a put is sent to. */
export const K = 20;
/** Upper bound on one DHT lookup (get, put, announce, topic lookup), whatever the network does. */
export const DHT_OPERATION_TIMEOUT_MS = 15_000;
/** Per-query UDP timeout inside a lookup. */
export const DHT_QUERY_TIMEOUT_MS = 2_000;
/** Topic peers remembered (most recent first). */
export const MAX_TOPIC_PEERS = 500;
/** Re-announce our topic at least this often (announce tokens and peer entries expire). */
export const ANNOUNCE_INTERVAL_MS = 10 * 60 * 1000;
/** BEP 44 error code for "sequence number less than current". */
export const BEP44_SEQ_TOO_LOW = 302;
