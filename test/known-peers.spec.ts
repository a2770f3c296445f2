import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openDatabase } from '../src/db/client.ts';
import { type KnownPeerInput, KnownPeersRepository, peerKeyOf } from '../src/db/known-peers.ts';
import { NodeStateRepository } from '../src/db/node-state.ts';
import { EventBus } from '../src/node/events/bus.ts';
import type { NodeEventMap } from '../src/node/events/types.ts';
import { KnownPeersService } from '../src/node/peers/known-peers-service.ts';
import { TOPIC, peerIdOf, randomPeer } from './helpers/peers.ts';
import { tempDir } from './helpers/temp.ts';

function peer(overrides: Partial<KnownPeerInput> = {}): KnownPeerInput {
  return randomPeer({ seenAt: new Date('2026-01-01T00:00:00Z'), ...overrides });
}

/** A peer we exchanged with (verified), as opposed to one another peer told us about (hearsay). */
function met(overrides: Partial<KnownPeerInput> = {}): KnownPeerInput {
  return peer({ source: 'identity_exchange', ...overrides });
}

function openRepository(t: { after(fn: () => void): void }, cap = 10_000) {
  const file = join(tempDir(t), 'peers.db');
  const database = openDatabase(file);
  t.after(() => database.close());
  return { database, file, repository: new KnownPeersRepository(database.db, cap) };
}

describe('known_peers', () => {
  it('inserts a new peer with every field, and derives its peer id from the key', (t) => {
    const { repository } = openRepository(t);
    const input = peer({ isRelay: true, source: 'identity_exchange' });
    const result = repository.upsertMany([input]);
    assert.equal(result.inserted.length, 1);
    const stored = repository.get(peerIdOf(input.publicKey));
    assert.ok(stored);
    assert.equal(stored.peerId, peerIdOf(input.publicKey));
    assert.deepEqual(stored.publicKey, new Uint8Array(input.publicKey));
    assert.equal(stored.dhtNodeId, input.dhtNodeId);
    assert.equal(stored.isRelay, true);
    assert.equal(stored.topic, TOPIC);
    assert.equal(stored.source, 'identity_exchange');
    assert.deepEqual(stored.firstSeen, input.seenAt);
    assert.deepEqual(stored.lastSeen, input.seenAt);
  });

  it('on conflict moves only last_seen forward and keeps first_seen, source and topic', (t) => {
    const { repository } = openRepository(t);
    const original = peer({ source: 'peer_exchange' });
    repository.upsertMany([original]);
    const later = new Date('2026-01-02T00:00:00Z');
    const result = repository.upsertMany([
      { ...original, dhtNodeId: 'ff'.repeat(20), isRelay: true, topic: 'other', source: 'peer_exchange', seenAt: later },
    ]);
    assert.deepEqual([result.inserted.length, result.updated], [0, 1]);
    const stored = repository.get(peerIdOf(original.publicKey));
    assert.ok(stored);
    assert.deepEqual(stored.lastSeen, later);
    assert.deepEqual(stored.firstSeen, original.seenAt, 'first_seen is never lost');
    assert.equal(stored.dhtNodeId, original.dhtNodeId, 'a third party cannot change dht_node_id');
    assert.equal(stored.isRelay, false, 'a third party cannot change is_relay');
    assert.equal(stored.topic, TOPIC);
    assert.equal(stored.source, 'peer_exchange');

    // An older sighting never moves last_seen back.
    repository.upsertMany([{ ...original, seenAt: new Date('2025-06-01T00:00:00Z') }]);
    assert.deepEqual(repository.get(peerIdOf(original.publicKey))?.lastSeen, later);
  });

  it('lets the peer itself update dht_node_id and is_relay', (t) => {
    const { repository } = openRepository(t);
    const original = peer();
    repository.upsertMany([original]);
    const newNodeId = 'ab'.repeat(20);
    repository.upsertMany([{ ...original, dhtNodeId: newNodeId, isRelay: true, source: 'identity_exchange' }]);
    const stored = repository.get(peerIdOf(original.publicKey));
    assert.equal(stored?.dhtNodeId, newNodeId);
    assert.equal(stored?.isRelay, true);
    assert.equal(stored?.source, 'peer_exchange', 'source records how we first learned of it');
  });

  it('refuses a different key whose peer id shares the 64-bit row key', (t) => {
    const { repository, database } = openRepository(t);
    const victim = peer();
    const impostorKey = randomBytes(32);
    // Plant a row whose key is the victim's prefix but whose public key is another: what a
    // (2^64-work) prefix collision would look like.
    database.sqlite.prepare('INSERT INTO topics (id, name) VALUES (1, ?) ON CONFLICT DO NOTHING').run(TOPIC);
    database.sqlite
      .prepare(
        'INSERT INTO known_peers (key, public_key, dht_node_id, is_relay, topic_id, source, first_seen, last_seen) VALUES (?, ?, NULL, 0, 1, 1, 1, 1)',
      )
      .run(peerKeyOf(peerIdOf(victim.publicKey)), impostorKey);
    const result = repository.upsertMany([victim]);
    assert.deepEqual([result.inserted.length, result.updated, result.collisions], [0, 0, 1]);
    assert.equal(repository.get(peerIdOf(victim.publicKey)), undefined, 'the victim id does not resolve to the impostor');
    const row = database.sqlite.prepare('SELECT public_key FROM known_peers WHERE key = ?').get(peerKeyOf(peerIdOf(victim.publicKey))) as {
      public_key: Buffer;
    };
    assert.deepEqual(row.public_key, impostorKey, 'the existing row was not overwritten');
  });

  it('keeps at most max_known_peers, evicting the oldest last_seen first', (t) => {
    const { repository } = openRepository(t, 10);
    const peers = Array.from({ length: 12 }, (_, i) => peer({ seenAt: new Date(Date.UTC(2026, 0, 1, 0, i)) }));
    repository.upsertMany(peers.slice(0, 10));
    // Refresh the two oldest: they must survive, the next two oldest go.
    repository.upsertMany([
      { ...peers[0]!, seenAt: new Date('2026-02-01T00:00:00Z') },
      { ...peers[1]!, seenAt: new Date('2026-02-01T00:00:00Z') },
    ]);
    const result = repository.upsertMany(peers.slice(10));
    assert.equal(result.evicted, 2);
    assert.equal(repository.count(), 10);
    assert.ok(repository.get(peerIdOf(peers[0]!.publicKey)));
    assert.ok(repository.get(peerIdOf(peers[1]!.publicKey)));
    assert.equal(repository.get(peerIdOf(peers[2]!.publicKey)), undefined);
    assert.equal(repository.get(peerIdOf(peers[3]!.publicKey)), undefined);
    assert.ok(repository.get(peerIdOf(peers[11]!.publicKey)));
  });

  it('pages in stable peer id order with filters and counts', (t) => {
    const { repository } = openRepository(t);
    const inputs = Array.from({ length: 25 }, (_, i) => peer({ isRelay: i % 5 === 0, topic: i < 20 ? TOPIC : 'other' }));
    repository.upsertMany(inputs);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = repository.page({}, 7, after);
      seen.push(...page.rows.map((r) => r.peerId));
      if (!page.hasNextPage) break;
      after = page.rows.at(-1)?.peerId;
      // A peer added mid-way sorts into its place without shifting the pages already read.
      if (seen.length === 7) repository.upsertMany([peer()]);
    }
    assert.equal(new Set(seen).size, seen.length, 'no duplicates across pages');
    assert.deepEqual(seen, [...seen].sort(), 'peer id order');
    assert.equal(repository.count(), 26);
    assert.equal(repository.count({ isRelay: true }), 5);
    assert.equal(repository.count({ topic: 'other' }), 5);
    assert.equal(repository.count({ topic: 'missing' }), 0);
    assert.equal(repository.page({ isRelay: true, topic: TOPIC }, 100).rows.length, 4);
  });

  it('lists the most recently seen first, excluding given peers', (t) => {
    const { repository } = openRepository(t);
    const inputs = Array.from({ length: 5 }, (_, i) => met({ seenAt: new Date(Date.UTC(2026, 0, 1, i)) }));
    repository.upsertMany(inputs);
    const newest = peerIdOf(inputs[4]!.publicKey);
    assert.deepEqual(
      repository.recent(2, [newest]).map((p) => p.peerId),
      [peerIdOf(inputs[3]!.publicKey), peerIdOf(inputs[2]!.publicKey)],
    );
  });

  it('shares peers seen in the same second in random order, so every one of them gets shared', (t) => {
    const { repository } = openRepository(t);
    const sameSecond = new Date(Date.UTC(2026, 0, 1));
    repository.upsertMany(Array.from({ length: 100 }, () => met({ seenAt: sameSecond })));
    const shared = new Set<string>();
    for (let i = 0; i < 30; i++) for (const p of repository.recent(10)) shared.add(p.peerId);
    // A fixed tie-break would give the same 10 every time.
    assert.ok(shared.size > 50, `${shared.size} distinct peers in 30 lists of 10`);
  });

  it('answers recent() from memory exactly as the table orders it, past the window, after updates and evictions', (t) => {
    const { repository, database } = openRepository(t, 400);
    const base = Date.UTC(2026, 0, 1);
    const at = (i: number) => new Date(base + i * 1000);
    // Distinct seconds: the order is fully determined, so memory and table must agree exactly.
    const inputs = Array.from({ length: 300 }, (_, i) => met({ seenAt: at(i) }));
    repository.upsertMany(inputs);
    let clock = 300;
    const fromTable = (limit: number, exclude: string[] = []) =>
      database.sqlite
        .prepare('select public_key from known_peers order by last_seen desc limit ?')
        .all(limit + exclude.length)
        .map((row) => peerIdOf((row as { public_key: Buffer }).public_key))
        .filter((id) => !exclude.includes(id))
        .slice(0, limit);
    const check = (what: string) => {
      const exclude = [peerIdOf(inputs[clock % 300]!.publicKey)];
      assert.deepEqual(
        repository.recent(50, exclude).map((p) => p.peerId),
        fromTable(50, exclude),
        what,
      );
    };
    check('after the first load');
    for (let round = 0; round < 200; round++) {
      // Touch a random old peer (it jumps to the front), a peer in the middle with an older time
      // (nothing moves), or add a new one (the oldest are evicted past 400).
      const pick = inputs[Math.floor(Math.random() * inputs.length)]!;
      if (round % 3 === 0) repository.upsertMany([{ ...pick, seenAt: at(clock++) }]);
      else if (round % 3 === 1) repository.upsertMany([{ ...pick, seenAt: at(0) }]);
      else {
        const fresh = met({ seenAt: at(clock++) });
        inputs.push(fresh);
        repository.upsertMany([fresh]);
      }
      check(`after round ${round}`);
    }
    // Larger than the window, or past it once the exclusions are skipped: answered by the table.
    assert.deepEqual(
      repository.recent(200).map((p) => p.peerId),
      fromTable(200),
    );
    const newest100 = fromTable(100);
    assert.deepEqual(
      repository.recent(50, newest100).map((p) => p.peerId),
      fromTable(50, newest100),
    );
    // Reopened: the window is rebuilt from the file.
    assert.deepEqual(
      new KnownPeersRepository(database.db, 400).recent(50).map((p) => p.peerId),
      fromTable(50),
    );
  });

  it('keeps recent() right when eviction takes rows out of a small table', (t) => {
    const { repository } = openRepository(t, 10);
    const inputs = Array.from({ length: 10 }, (_, i) => met({ seenAt: new Date(Date.UTC(2026, 0, 1, 0, i)) }));
    repository.upsertMany(inputs);
    const newer = Array.from({ length: 3 }, (_, i) => met({ seenAt: new Date(Date.UTC(2026, 0, 2, 0, i)) }));
    repository.upsertMany(newer);
    const expected = [...newer.reverse(), ...inputs.slice(3).reverse()].map((p) => peerIdOf(p.publicKey));
    assert.deepEqual(
      repository.recent(50).map((p) => p.peerId),
      expected,
    );
  });

  it('takes a peer listed twice in one batch (new, then seen later) as one row', (t) => {
    const { repository } = openRepository(t);
    const input = met({ seenAt: new Date('2026-01-01T00:00:00Z') });
    const later = new Date('2026-01-01T00:05:00Z');
    const result = repository.upsertMany([input, { ...input, seenAt: later }]);
    assert.deepEqual([result.inserted.length, result.updated], [1, 1]);
    assert.equal(repository.count(), 1);
    assert.deepEqual(repository.get(peerIdOf(input.publicKey))?.lastSeen, later);
    assert.deepEqual(
      repository.recent(5).map((p) => p.lastSeen),
      [later],
    );
  });

  it('does not write a known peer seen again in the same second with nothing new', (t) => {
    const { repository, database } = openRepository(t);
    const input = peer({ source: 'identity_exchange' });
    repository.upsertMany([input]);
    const before = database.sqlite.prepare('select total_changes() as n').get() as { n: number };
    const again = repository.upsertMany([input, { ...input, source: 'peer_exchange' }]);
    const after = database.sqlite.prepare('select total_changes() as n').get() as { n: number };
    assert.equal(again.updated, 0);
    assert.equal(after.n, before.n, 'no row written');
    // Something new from the peer itself is written, in the same second too.
    const changed = repository.upsertMany([{ ...input, isRelay: true }]);
    assert.equal(changed.updated, 1);
    assert.equal(repository.get(peerIdOf(input.publicKey))?.isRelay, true);
    assert.equal(repository.recent(1)[0]?.isRelay, true, 'the in-memory list sees it too');
  });

  it('keeps hearsay apart: never shared, verified by the peer itself or by markVerified', (t) => {
    const { repository } = openRepository(t);
    const known = met({ seenAt: new Date(Date.UTC(2026, 0, 1)) });
    const heard = peer({ seenAt: new Date(Date.UTC(2026, 0, 2)), isRelay: true });
    const later = peer({ seenAt: new Date(Date.UTC(2026, 0, 3)) });
    repository.upsertMany([known, heard, later]);
    assert.equal(repository.get(peerIdOf(heard.publicKey))?.verified, false);
    assert.deepEqual(
      repository.recent(10).map((p) => p.peerId),
      [peerIdOf(known.publicKey)],
      'hearsay is not shared',
    );
    assert.deepEqual([repository.count(), repository.count({ verified: true }), repository.count({ verified: false })], [3, 1, 2]);
    assert.equal(repository.page({ verified: false }, 10).rows.length, 2);
    // The peer itself exchanged with us: verified, and the result says so.
    const result = repository.upsertMany([
      { ...heard, source: 'identity_exchange', isRelay: false, seenAt: new Date(Date.UTC(2026, 0, 4)) },
    ]);
    assert.deepEqual(
      result.verified.map((p) => p.peerId),
      [peerIdOf(heard.publicKey)],
    );
    assert.equal(repository.get(peerIdOf(heard.publicKey))?.source, 'peer_exchange', 'how we first heard of it stays');
    // Its signed metadata was found in the DHT: verified, with the relay flag that metadata gives.
    assert.deepEqual(repository.markVerified(peerIdOf(later.publicKey), true)?.wasHearsay, true);
    assert.equal(repository.get(peerIdOf(later.publicKey))?.verified, true);
    assert.equal(repository.get(peerIdOf(later.publicKey))?.isRelay, true);
    assert.equal(repository.markVerified(peerIdOf(randomBytes(32)), true), undefined, 'unknown peer');
    assert.deepEqual(new Set(repository.recent(10).map((p) => p.peerId)), new Set([known, heard, later].map((p) => peerIdOf(p.publicKey))));
    assert.deepEqual([repository.count({ verified: true }), repository.count({ verified: false })], [3, 0]);
  });

  it('takes at most maxNewHearsay new hearsay per batch (known peers and the peer itself are not counted)', (t) => {
    const { repository } = openRepository(t);
    const known = peer();
    repository.upsertMany([known]);
    const batch = [met(), { ...known, seenAt: new Date(Date.UTC(2026, 1, 1)) }, ...Array.from({ length: 10 }, () => peer())];
    const result = repository.upsertMany(batch, { maxNewHearsay: 3 });
    assert.deepEqual([result.inserted.length, result.updated, result.refused], [4, 1, 7]);
    assert.equal(repository.count(), 5);
  });

  it('evicts hearsay before any verified peer, and caps hearsay on its own', (t) => {
    const { database } = openRepository(t);
    const repository = new KnownPeersRepository(database.db, 10, 4);
    // Five verified peers, all older than any hearsay.
    const friends = Array.from({ length: 5 }, (_, i) => met({ seenAt: new Date(Date.UTC(2025, 0, 1, i)) }));
    repository.upsertMany(friends);
    const flood = Array.from({ length: 40 }, (_, i) => peer({ seenAt: new Date(Date.UTC(2026, 0, 1, 0, i)) }));
    for (let i = 0; i < flood.length; i += 8) repository.upsertMany(flood.slice(i, i + 8));
    for (const friend of friends) assert.ok(repository.get(peerIdOf(friend.publicKey)), 'no verified peer was pushed out');
    assert.deepEqual([repository.count({ verified: true }), repository.count({ verified: false })], [5, 4]);
    assert.ok(
      flood.slice(-4).every((p) => repository.get(peerIdOf(p.publicKey))),
      'the newest hearsay stays',
    );
    // Past the whole cap, hearsay still goes first: 7 more verified peers leave only verified rows.
    repository.upsertMany(Array.from({ length: 7 }, (_, i) => met({ seenAt: new Date(Date.UTC(2024, 0, 1, i)) })));
    assert.deepEqual([repository.count(), repository.count({ verified: false })], [10, 0]);
    assert.equal(
      (database.sqlite.prepare('select count(*) as n from known_peers').get() as { n: number }).n,
      repository.count(),
      'the counter is what the file holds',
    );
  });

  it('survives reopening the database (WAL checkpointed on close)', (t) => {
    const { repository, database, file } = openRepository(t);
    const input = peer();
    repository.upsertMany([input]);
    database.close();
    const reopened = openDatabase(file);
    t.after(() => reopened.close());
    assert.equal(reopened.sqlite.pragma('journal_mode', { simple: true }), 'wal');
    assert.ok(new KnownPeersRepository(reopened.db, 10).get(peerIdOf(input.publicKey)));
  });

  it('announces newly known peers on the bus and never stores our own key', (t) => {
    const { repository } = openRepository(t);
    const bus = new EventBus<NodeEventMap>();
    const own = randomBytes(32);
    const service = new KnownPeersService(repository, bus, own);
    const discovered: string[] = [];
    bus.on('peer.discovered', (e) => discovered.push(e.payload.peerId));
    const a = peer();
    service.record([a, peer({ publicKey: own })]);
    service.record([a]);
    assert.deepEqual(discovered, [peerIdOf(a.publicKey)], 'once, and not for ourselves');
    assert.equal(repository.get(peerIdOf(own)), undefined);
  });
});

describe('node_state', () => {
  it('stores JSON values and updates atomically', (t) => {
    const database = openDatabase(join(tempDir(t), 'state.db'));
    t.after(() => database.close());
    const state = new NodeStateRepository(database.db);
    assert.equal(state.get('dht.sequence'), undefined);
    assert.equal(
      state.update<number>('dht.sequence', (n) => (n ?? 0) + 1),
      1,
    );
    assert.equal(
      state.update<number>('dht.sequence', (n) => (n ?? 0) + 1),
      2,
    );
    state.set('x', { a: [1, 2] });
    assert.deepEqual(state.get('x'), { a: [1, 2] });
  });
});
