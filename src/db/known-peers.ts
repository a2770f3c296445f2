import { createHash } from 'node:crypto';
import { and, asc, count, desc, eq, gt, inArray, sql } from 'drizzle-orm';
import type { Db } from './client.ts';
import { RecentWindow } from './recent-window.ts';
import { knownPeers, topics } from './schema.ts';

/** How we first learned of a peer; stored as its index here, so the order is part of the file format. */
const SOURCE_NAMES = ['identity_exchange', 'peer_exchange'] as const;
export type KnownPeerSource = (typeof SOURCE_NAMES)[number];
const SOURCE_CODES: Record<KnownPeerSource, number> = { identity_exchange: 0, peer_exchange: 1 };

export interface KnownPeerRecord {
  /** hex(SHA1(publicKey)), derived from the stored key. */
  readonly peerId: string;
  readonly publicKey: Uint8Array;
  /** 40 hex characters, or null when the peer has not told us. */
  readonly dhtNodeId: string | null;
  readonly isRelay: boolean;
  readonly topic: string;
  readonly source: KnownPeerSource;
  /** Proven: we exchanged with it, or found its signed metadata in the DHT. False = hearsay. */
  readonly verified: boolean;
  readonly firstSeen: Date;
  readonly lastSeen: Date;
}

/** `identity_exchange` (the peer itself, over a connection TLS proved) verifies; `peer_exchange` is hearsay. */
export interface KnownPeerInput {
  readonly publicKey: Uint8Array;
  readonly dhtNodeId: string | null;
  readonly isRelay: boolean;
  readonly topic: string;
  readonly source: KnownPeerSource;
  /** Defaults to now. */
  readonly seenAt?: Date;
}

export interface UpsertOptions {
  /** New hearsay rows this batch may insert at most (the source's allowance); the rest are refused. */
  readonly maxNewHearsay?: number;
}

export interface UpsertResult {
  /** Peers that were not known before this call. */
  readonly inserted: KnownPeerRecord[];
  /** Hearsay peers known before that this batch verified (the peer itself exchanged with us). */
  readonly verified: KnownPeerRecord[];
  /** New hearsay not inserted: past `maxNewHearsay`. */
  readonly refused: number;
  /** Known peers whose last_seen (and, from the peer itself, dht_node_id / is_relay) were updated. */
  readonly updated: number;
  /** Refused: a different public key whose peer id shares an existing row's 64-bit key. */
  readonly collisions: number;
  /** Oldest peers removed to stay within the cap. */
  readonly evicted: number;
}

export interface KnownPeerFilter {
  readonly isRelay?: boolean | undefined;
  readonly topic?: string | undefined;
  readonly verified?: boolean | undefined;
}

export interface KnownPeerPage {
  readonly rows: KnownPeerRecord[];
  readonly hasNextPage: boolean;
}

type KnownPeerRow = typeof knownPeers.$inferSelect;
/** What a batch will leave in one row: its final state, and whether the row is new. */
interface PlannedRow {
  /** Derived again from the peer id: SQLite hands 64-bit keys to JavaScript as lossy numbers. */
  readonly key: bigint;
  readonly peerId: string;
  readonly original: KnownPeerRow | undefined;
  row: KnownPeerRow;
}

function sameRow(a: KnownPeerRow, b: KnownPeerRow): boolean {
  const sameNodeId = a.dhtNodeId === null || b.dhtNodeId === null ? a.dhtNodeId === b.dhtNodeId : a.dhtNodeId.equals(b.dhtNodeId);
  return a.lastSeen === b.lastSeen && a.isRelay === b.isRelay && a.verified === b.verified && sameNodeId;
}

const TOP_BIT = 1n << 63n;
/** Row key of a peer id: its first 64 bits, shifted into SQLite's signed range, order-preserving. */
export function peerKeyOf(peerId: string): bigint {
  return BigInt(`0x${peerId.slice(0, 16)}`) - TOP_BIT;
}

function derivePeerId(publicKey: Uint8Array): string {
  return createHash('sha1').update(publicKey).digest('hex');
}

const toSeconds = (date: Date) => Math.floor(date.getTime() / 1000);
const SELECT_CHUNK = 500;
/** Rows the recency window keeps: two exchanges' worth (an exchange shares at most 50). */
const RECENT_WINDOW_ROWS = 128;

/**
 * The `known_peers` table, per the seed: a peer is inserted when new; on conflict only last_seen
 * moves forward, plus dht_node_id and is_relay when the peer itself told us (identity exchange).
 * first_seen, source and topic are never rewritten. The table is capped: past `maxKnownPeers` the
 * oldest last_seen go first.
 *
 * What other peers tell us is hearsay (`verified` false) until the peer proves itself (an exchange
 * with it, or its signed metadata found in the DHT: `markVerified`). Hearsay is never shared
 * (`recent` returns verified peers only), is capped at `maxHearsay` rows, and is evicted before
 * any verified peer, so a flood of invented peers can never push out peers we know.
 */
export class KnownPeersRepository {
  private readonly topicIds = new Map<string, number>();
  private readonly topicNames = new Map<number, string>();
  private rowCount: number;
  private hearsayCount: number;
  /** The most recent verified rows (what exchanges share). */
  private readonly window = new RecentWindow<KnownPeerRecord>(RECENT_WINDOW_ROWS);

  private readonly selectKey;
  private readonly insertRow;
  private readonly updateRow;
  private readonly selectRecent;

  constructor(
    private readonly db: Db,
    private readonly maxKnownPeers: number,
    private readonly maxHearsay: number = maxKnownPeers,
  ) {
    for (const row of db.select().from(topics).all()) this.rememberTopic(row.id, row.name);
    this.rowCount = db.select({ n: count() }).from(knownPeers).get()?.n ?? 0;
    this.hearsayCount = db.select({ n: count() }).from(knownPeers).where(eq(knownPeers.verified, false)).get()?.n ?? 0;

    const p = (name: string) => sql.placeholder(name);
    this.selectKey = db
      .select()
      .from(knownPeers)
      .where(eq(knownPeers.key, p('key')))
      .prepare();
    this.insertRow = db
      .insert(knownPeers)
      .values({
        key: p('key'),
        publicKey: p('publicKey'),
        dhtNodeId: p('dhtNodeId'),
        isRelay: p('isRelay'),
        topicId: p('topicId'),
        source: p('source'),
        verified: p('verified'),
        firstSeen: p('firstSeen'),
        lastSeen: p('lastSeen'),
      })
      .prepare();
    // Writes the state a batch planned (last_seen already the max, dht_node_id, is_relay and
    // verified already what the seed and the hearsay rules allow to change).
    this.updateRow = db
      .update(knownPeers)
      .set({
        lastSeen: sql`${p('lastSeen')}`,
        dhtNodeId: sql`${p('dhtNodeId')}`,
        isRelay: sql`${p('isRelay')}`,
        verified: sql`${p('verified')}`,
      })
      .where(eq(knownPeers.key, p('key')))
      .prepare();
    // Every exchange reads this: prepared once rather than built and compiled per call. last_seen
    // has one-second steps, so in a busy network most of the table ties on it; a fixed tie-break
    // would share the same peers (the smallest ids) in every exchange and never the others.
    this.selectRecent = db
      .select()
      .from(knownPeers)
      .where(eq(knownPeers.verified, true))
      .orderBy(sql`${knownPeers.lastSeen} desc`, sql`random()`)
      .limit(p('limit'))
      .prepare();
    this.loadWindow();
  }

  /**
   * Upserts a batch in one transaction (one fsync for the lot). Rows are read first, outside the
   * transaction: a batch that changes nothing (peers seen again within the same second, nothing
   * new from the peer itself) costs reads only, no transaction and no write. That is sound because
   * this node is its file's only writer (node.lock) and nothing runs between the reads and the
   * writes (all synchronous).
   */
  upsertMany(inputs: readonly KnownPeerInput[], options: UpsertOptions = {}): UpsertResult {
    // By row key, not peer id: two keys in one batch that share a row key meet here as a
    // collision, as they would in the table (the second would otherwise fail the whole batch).
    const planned = new Map<bigint, PlannedRow>();
    const inserted: KnownPeerRecord[] = [];
    let updated = 0;
    let collisions = 0;
    let refused = 0;
    let newHearsay = 0;
    const maxNewHearsay = options.maxNewHearsay ?? Number.POSITIVE_INFINITY;
    for (const input of inputs) {
      const peerId = derivePeerId(input.publicKey);
      const key = peerKeyOf(peerId);
      const seen = toSeconds(input.seenAt ?? new Date());
      const dhtNodeId = input.dhtNodeId === null ? null : Buffer.from(input.dhtNodeId, 'hex');
      const fromPeer = input.source === 'identity_exchange';
      // A peer twice in one batch: the second sees what the first will have written.
      let plan = planned.get(key);
      if (plan === undefined) {
        const original = this.selectKey.get({ key });
        if (original !== undefined) {
          plan = { key, peerId, original, row: original };
          planned.set(key, plan);
        }
      }
      if (plan === undefined) {
        if (!fromPeer && newHearsay >= maxNewHearsay) {
          refused += 1;
          continue;
        }
        if (!fromPeer) newHearsay += 1;
        const row: KnownPeerRow = {
          key,
          publicKey: Buffer.from(input.publicKey),
          dhtNodeId,
          isRelay: input.isRelay,
          topicId: this.topicIdFor(input.topic),
          source: SOURCE_CODES[input.source],
          verified: fromPeer,
          firstSeen: seen,
          lastSeen: seen,
        };
        planned.set(key, { key, peerId, original: undefined, row });
        inserted.push(this.toRecord(row, peerId));
      } else if (!Buffer.from(plan.row.publicKey).equals(input.publicKey)) {
        collisions += 1;
      } else {
        const next: KnownPeerRow = {
          ...plan.row,
          lastSeen: Math.max(plan.row.lastSeen, seen),
          dhtNodeId: fromPeer ? (dhtNodeId ?? plan.row.dhtNodeId) : plan.row.dhtNodeId,
          isRelay: fromPeer ? input.isRelay : plan.row.isRelay,
          verified: plan.row.verified || fromPeer,
        };
        if (sameRow(next, plan.row)) continue;
        plan.row = next;
        updated += 1;
      }
    }
    const writes = [...planned.values()].filter((plan) => plan.original === undefined || !sameRow(plan.row, plan.original));
    const verified = writes
      .filter((plan) => plan.original && !plan.original.verified && plan.row.verified)
      .map((plan) => this.toRecord(plan.row, plan.peerId));
    if (writes.length === 0) return { inserted, verified, refused, updated, collisions, evicted: 0 };
    const newRows = writes.filter((plan) => plan.original === undefined);
    // What the table will hold once the writes are in (counted here, applied only on commit).
    const rows = this.rowCount + newRows.length;
    const hearsay = this.hearsayCount + newRows.filter((plan) => !plan.row.verified).length - verified.length;
    const evicted = this.db.transaction(() => {
      for (const plan of writes) this.write(plan);
      return this.evictOverflow(rows, hearsay);
    });
    // Only once committed: a failed transaction leaves the counts and the window as the table is.
    this.rowCount = rows - evicted.length;
    this.hearsayCount = hearsay - evicted.filter((e) => !e.verified).length;
    for (const plan of writes) if (plan.row.verified) this.window.put(plan.peerId, this.toRecord(plan.row, plan.peerId));
    if (evicted.length > 0) this.window.remove(evicted.map((e) => e.peerId));
    return { inserted, verified, refused, updated, collisions, evicted: evicted.length };
  }

  private write({ key, original, row }: PlannedRow): void {
    const flags = { isRelay: row.isRelay ? 1 : 0, verified: row.verified ? 1 : 0 };
    if (original === undefined) this.insertRow.run({ ...row, key, ...flags });
    else this.updateRow.run({ key, lastSeen: row.lastSeen, dhtNodeId: row.dhtNodeId, ...flags });
  }

  /**
   * The peer proved itself (its signed metadata was found in the DHT): its row stops being
   * hearsay; its relay flag becomes what that metadata says. Undefined when the peer is unknown;
   * `wasHearsay` tells whether this made it verified.
   */
  markVerified(peerId: string, isRelay: boolean): { record: KnownPeerRecord; wasHearsay: boolean } | undefined {
    const key = peerKeyOf(peerId);
    const row = this.selectKey.get({ key });
    if (row === undefined || derivePeerId(row.publicKey) !== peerId) return undefined;
    const next: KnownPeerRow = { ...row, isRelay, verified: true };
    if (sameRow(next, row)) return { record: this.toRecord(row, peerId), wasHearsay: false };
    this.write({ key, peerId, original: row, row: next });
    if (!row.verified) this.hearsayCount -= 1;
    const record = this.toRecord(next, peerId);
    this.window.put(peerId, record);
    return { record, wasHearsay: !row.verified };
  }

  /** The most recently seen rows, verified or not (`hearsayOnly`: what to verify after a restart). */
  latest(limit: number, options: { hearsayOnly?: boolean } = {}): KnownPeerRecord[] {
    const query = this.db.select().from(knownPeers);
    return (options.hearsayOnly ? query.where(eq(knownPeers.verified, false)) : query)
      .orderBy(desc(knownPeers.lastSeen), asc(knownPeers.key))
      .limit(limit)
      .all()
      .map((row) => this.toRecord(row));
  }

  get(peerId: string): KnownPeerRecord | undefined {
    // The prepared statement: building a query per call cost more than the read itself.
    const row = this.selectKey.get({ key: peerKeyOf(peerId) });
    // A row found by key prefix belongs to the asked id only if the full ids match.
    return row !== undefined && derivePeerId(row.publicKey) === peerId ? this.toRecord(row, peerId) : undefined;
  }

  /** One query per 500 ids; the result is aligned with `peerIds` (DataLoader's contract). */
  getMany(peerIds: readonly string[]): Array<KnownPeerRecord | undefined> {
    const found = new Map<string, KnownPeerRecord>();
    for (let i = 0; i < peerIds.length; i += SELECT_CHUNK) {
      const keys = peerIds.slice(i, i + SELECT_CHUNK).map(peerKeyOf);
      for (const row of this.db.select().from(knownPeers).where(inArray(knownPeers.key, keys)).all()) {
        const record = this.toRecord(row);
        found.set(record.peerId, record);
      }
    }
    // A row found by key prefix belongs to the asked id only if the full ids match.
    return peerIds.map((id) => found.get(id));
  }

  /** Forward keyset pagination in peer id order: stable while peers are added or seen. */
  page(filter: KnownPeerFilter, first: number, afterPeerId?: string): KnownPeerPage {
    const conditions = this.filterConditions(filter);
    if (conditions === undefined) return { rows: [], hasNextPage: false };
    if (afterPeerId !== undefined) conditions.push(gt(knownPeers.key, peerKeyOf(afterPeerId)));
    const rows = this.db
      .select()
      .from(knownPeers)
      .where(and(...conditions))
      .orderBy(asc(knownPeers.key))
      .limit(first + 1)
      .all();
    return { rows: rows.slice(0, first).map((r) => this.toRecord(r)), hasNextPage: rows.length > first };
  }

  count(filter: KnownPeerFilter = {}): number {
    if (filter.isRelay === undefined && filter.topic === undefined) {
      if (filter.verified === undefined) return this.rowCount;
      return filter.verified ? this.rowCount - this.hearsayCount : this.hearsayCount;
    }
    const conditions = this.filterConditions(filter);
    if (conditions === undefined) return 0;
    return (
      this.db
        .select({ n: count() })
        .from(knownPeers)
        .where(and(...conditions))
        .get()?.n ?? 0
    );
  }

  /**
   * Verified peers, most recently seen first (ties in random order), excluding some peers: what an
   * exchange shares, and what discovery retries. Hearsay is never among them.
   */
  recent(limit: number, excludePeerIds: readonly string[] = []): KnownPeerRecord[] {
    const exclude = new Set(excludePeerIds);
    if (this.window.needsReload) this.loadWindow();
    const fromWindow = this.window.recent(limit, exclude, this.rowCount - this.hearsayCount);
    if (fromWindow !== undefined) return fromWindow;
    const rows = this.selectRecent.all({ limit: limit + exclude.size });
    return rows
      .map((r) => this.toRecord(r))
      .filter((r) => !exclude.has(r.peerId))
      .slice(0, limit);
  }

  private loadWindow(): void {
    const records = this.selectRecent.all({ limit: RECENT_WINDOW_ROWS }).map((row) => this.toRecord(row));
    this.window.load(records.map((record) => ({ key: record.peerId, record })));
  }

  /**
   * Deletes rows past the caps, given what the table holds with this batch's writes: hearsay past
   * `maxHearsay` (oldest first), then rows past `maxKnownPeers`, hearsay before any verified peer
   * and the oldest last_seen first within each. Keys are derived from the stored keys again:
   * SQLite hands 64-bit integers to JavaScript as lossy numbers.
   */
  private evictOverflow(rows: number, hearsay: number): Array<{ peerId: string; verified: boolean }> {
    const victims: Array<{ peerId: string; verified: boolean }> = [];
    const pick = (limit: number, hearsayOnly: boolean) => {
      if (limit <= 0) return;
      const query = this.db.select({ publicKey: knownPeers.publicKey, verified: knownPeers.verified }).from(knownPeers);
      const chosen = (hearsayOnly ? query.where(eq(knownPeers.verified, false)) : query)
        .orderBy(asc(knownPeers.verified), asc(knownPeers.lastSeen), asc(knownPeers.key))
        .limit(limit)
        .all();
      for (const row of chosen) victims.push({ peerId: derivePeerId(row.publicKey), verified: row.verified });
      this.deleteRows(victims.slice(-chosen.length).map((v) => v.peerId));
    };
    pick(hearsay - this.maxHearsay, true);
    pick(rows - victims.length - this.maxKnownPeers, false);
    return victims;
  }

  private deleteRows(peerIds: readonly string[]): void {
    for (let i = 0; i < peerIds.length; i += SELECT_CHUNK) {
      this.db
        .delete(knownPeers)
        .where(inArray(knownPeers.key, peerIds.slice(i, i + SELECT_CHUNK).map(peerKeyOf)))
        .run();
    }
  }

  private filterConditions(filter: KnownPeerFilter) {
    const conditions = [];
    if (filter.isRelay !== undefined) conditions.push(eq(knownPeers.isRelay, filter.isRelay));
    if (filter.verified !== undefined) conditions.push(eq(knownPeers.verified, filter.verified));
    if (filter.topic !== undefined) {
      const topicId = this.topicIds.get(filter.topic);
      if (topicId === undefined) return undefined;
      conditions.push(eq(knownPeers.topicId, topicId));
    }
    return conditions;
  }

  private topicIdFor(name: string): number {
    const known = this.topicIds.get(name);
    if (known !== undefined) return known;
    const row = this.db.insert(topics).values({ name }).returning({ id: topics.id }).get();
    this.rememberTopic(row.id, name);
    return row.id;
  }

  private rememberTopic(id: number, name: string): void {
    this.topicIds.set(name, id);
    this.topicNames.set(id, name);
  }

  private toRecord(row: KnownPeerRow, peerId?: string): KnownPeerRecord {
    const publicKey = new Uint8Array(row.publicKey);
    return {
      peerId: peerId ?? derivePeerId(publicKey),
      publicKey,
      dhtNodeId: row.dhtNodeId === null ? null : Buffer.from(row.dhtNodeId).toString('hex'),
      isRelay: row.isRelay,
      topic: this.topicNames.get(row.topicId) ?? '',
      source: SOURCE_NAMES[row.source] ?? 'peer_exchange',
      verified: row.verified,
      firstSeen: new Date(row.firstSeen * 1000),
      lastSeen: new Date(row.lastSeen * 1000),
    };
  }
}
