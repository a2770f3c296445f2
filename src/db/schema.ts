import { blob, customType, index, integer, primaryKey, sqliteTable, text } from 'drizzle-orm/sqlite-core';

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

/**
 * Jobs, on both sides: the orderer's record of a job it runs on a peer and the executor's record
 * of a job it runs for one. A node may be both for one job id (it ordered a job on itself), hence
 * the role in the key. Times are Unix milliseconds.
 */
export const jobs = sqliteTable(
  'jobs',
  {
    id: text('id').notNull(),
    role: text('role', { enum: ['orderer', 'executor'] }).notNull(),
    /** The other party: the executor for an orderer's record, the orderer for an executor's. */
    peerId: text('peer_id').notNull(),
    serviceId: text('service_id').notNull(),
    serviceName: text('service_name').notNull(),
    /** JSON object, as the orderer sent it. */
    parameters: text('parameters').notNull(),
    state: text('state').notNull(),
    reason: text('reason'),
    message: text('message'),
    exitCode: integer('exit_code'),
    signal: text('signal'),
    /** JSON array of { name, size, sha256 }. */
    outputs: text('outputs').notNull().default('[]'),
    stdoutBytes: integer('stdout_bytes').notNull().default(0),
    stderrBytes: integer('stderr_bytes').notNull().default(0),
    truncated: integer('truncated', { mode: 'boolean' }).notNull().default(false),
    /** Seq of the last log chunk stored. */
    logSeq: integer('log_seq').notNull().default(0),
    workflowId: text('workflow_id'),
    createdAt: integer('created_at').notNull(),
    startedAt: integer('started_at'),
    finishedAt: integer('finished_at'),
  },
  (t) => [primaryKey({ columns: [t.id, t.role] }), index('jobs_created').on(t.createdAt), index('jobs_state').on(t.state)],
);

/** A job's stdout and stderr in the chunks the job wrote them, numbered from 1 per job and role. */
export const jobLogs = sqliteTable(
  'job_logs',
  {
    jobId: text('job_id').notNull(),
    role: text('role', { enum: ['orderer', 'executor'] }).notNull(),
    seq: integer('seq').notNull(),
    /** 1 = stdout, 2 = stderr (the file descriptors). */
    stream: integer('stream').notNull(),
    data: blob('data', { mode: 'buffer' }).notNull(),
    at: integer('at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.role, t.seq] })],
);
