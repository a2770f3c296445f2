import { blob, customType, index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';

/**
 * A known peer's row key: the first 64 bits of its peer id (SHA1 of its public key) as a signed
 * integer with the top bit flipped, so that keys sort like the hex peer ids. As `INTEGER PRIMARY
 * KEY` it is SQLite's rowid: the table is its own index and the full peer id, derivable from the
 * stored public key, is never stored twice. That keeps a peer at ~92 bytes on disk (`npm run bench`).
 * A different public key whose peer id shares the 64-bit prefix is refused, never overwrites
 * (see known-peers.ts); finding such a key for a given peer costs ~2^64 hashes.
 */
const peerKey = customType<{ data: bigint; driverData: bigint }>({
  dataType: () => 'integer',
});

/** Topics are few and long; rows refer to them by a small integer. */
export const topics = sqliteTable('topics', {
  id: integer('id').primaryKey(),
  name: text('name').notNull().unique(),
});

export const knownPeers = sqliteTable('known_peers', {
  key: peerKey('key').primaryKey(),
  publicKey: blob('public_key', { mode: 'buffer' }).notNull(),
  /** 20-byte DHT node id, when the peer told us. */
  dhtNodeId: blob('dht_node_id', { mode: 'buffer' }),
  isRelay: integer('is_relay', { mode: 'boolean' }).notNull(),
  topicId: integer('topic_id')
    .notNull()
    .references(() => topics.id),
  /** 0 = identity_exchange (the peer itself), 1 = peer_exchange (told by another peer). */
  source: integer('source').notNull(),
  /**
   * 1 once the peer proved itself: we completed an exchange with it (TLS proved its key), or found
   * its signed metadata in the DHT. 0 = hearsay: learned from another peer only, never shared
   * onward, never a relay candidate, evicted first. (0 and 1 cost no payload byte in SQLite.)
   */
  verified: integer('verified', { mode: 'boolean' }).notNull().default(false),
  /** Unix seconds. */
  firstSeen: integer('first_seen').notNull(),
  /** Unix seconds. */
  lastSeen: integer('last_seen').notNull(),
});

/** The node's own persistent state (e.g. the BEP 44 sequence number), as JSON text values. */
export const nodeState = sqliteTable('node_state', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
  updatedAt: integer('updated_at').notNull(),
});

/**
 * Services this node offers (src/node/services). The definition is JSON text (its shape is the
 * service kind's, validated by the registry before it is stored); name and kind are columns for
 * uniqueness and lookups.
 */
export const services = sqliteTable(
  'services',
  {
    /** Random 128-bit, 32 hex characters. */
    id: text('id').primaryKey(),
    name: text('name').notNull().unique(),
    kind: text('kind').notNull(),
    /** 'api' or 'file' (the services directory). */
    source: text('source').notNull(),
    definition: text('definition').notNull(),
    /** Unix milliseconds. */
    createdAt: integer('created_at').notNull(),
  },
  (table) => [index('services_kind').on(table.kind)],
);
