import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase } from '../src/db/client.ts';
import { type KnownPeerInput, KnownPeersRepository } from '../src/db/known-peers.ts';
import type { Figure } from './report.ts';

const PEERS = 10_000;
const BATCH = 500;
const TOPIC = 'remote-network-mesh';

function inputs(n: number): KnownPeerInput[] {
  const base = Date.UTC(2026, 0, 1);
  return Array.from({ length: n }, (_, i) => ({
    publicKey: randomBytes(32),
    dhtNodeId: randomBytes(20).toString('hex'),
    isRelay: i % 20 === 0,
    topic: TOPIC,
    source: i % 3 === 0 ? 'identity_exchange' : 'peer_exchange',
    seenAt: new Date(base + i * 1000),
  }));
}

const perSecond = (count: number, ns: number) => Math.round(count / (ns / 1e9));

/**
 * known_peers write rate (batched vs one transaction per upsert) and the file size per peer at
 * 10 000 peers, against the straightforward layout (hex text ids, text topic and source, ms
 * timestamps) measured on the same peers in the same run.
 */
export function benchKnownPeers(): Figure[] {
  const dir = mkdtempSync(join(tmpdir(), 'rn-bench-'));
  try {
    const peers = inputs(PEERS);
    const database = openDatabase(join(dir, 'ours.db'));
    const repository = new KnownPeersRepository(database.db, 1_000_000);

    let start = process.hrtime.bigint();
    for (let i = 0; i < PEERS; i += BATCH) repository.upsertMany(peers.slice(i, i + BATCH));
    const insertNs = Number(process.hrtime.bigint() - start);

    const seenAgain = peers.map((p) => ({ ...p, seenAt: new Date(Date.UTC(2026, 1, 1)) }));
    start = process.hrtime.bigint();
    for (let i = 0; i < PEERS; i += BATCH) repository.upsertMany(seenAgain.slice(i, i + BATCH));
    const updateNs = Number(process.hrtime.bigint() - start);

    const single = inputs(2000);
    start = process.hrtime.bigint();
    for (const p of single) repository.upsertMany([p]);
    const singleNs = Number(process.hrtime.bigint() - start);

    database.close();
    const ours = bytesPerPeer(join(dir, 'ours-size.db'), peers, (file) => {
      const db = openDatabase(file);
      const repo = new KnownPeersRepository(db.db, 1_000_000);
      for (let i = 0; i < PEERS; i += BATCH) repo.upsertMany(peers.slice(i, i + BATCH));
      db.close();
    });
    const naive = bytesPerPeer(join(dir, 'naive.db'), peers, (file) => writeNaiveLayout(file, peers));

    const batched = perSecond(PEERS, insertNs);
    return [
      {
        name: `upserts/s, new peers, batches of ${BATCH}`,
        value: `${batched}`,
        target: '≥ 20 000',
        met: batched >= 20_000,
        baseline: `one transaction per upsert: ${perSecond(single.length, singleNs)}/s, batching ${(batched / perSecond(single.length, singleNs)).toFixed(1)}x`,
      },
      { name: `upserts/s, known peers seen again, batches of ${BATCH}`, value: `${perSecond(PEERS, updateNs)}` },
      {
        name: `SQLite bytes per known peer at ${PEERS} peers`,
        value: `${ours.toFixed(1)} B`,
        target: '≤ 100 B (seed: ~100 B)',
        met: ours <= 100,
        baseline: `straightforward text layout ${naive.toFixed(1)} B, ${(naive / ours).toFixed(1)}x larger`,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function bytesPerPeer(file: string, peers: readonly KnownPeerInput[], write: (file: string) => void): number {
  write(file);
  return statSync(file).size / peers.length;
}

function writeNaiveLayout(file: string, peers: readonly KnownPeerInput[]): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE known_peers (peer_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, dht_node_id TEXT,
    is_relay INTEGER NOT NULL, topic TEXT NOT NULL, source TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL)`);
  const insert = db.prepare('INSERT INTO known_peers VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  db.transaction(() => {
    for (const p of peers) {
      const ms = (p.seenAt ?? new Date()).getTime();
      insert.run(
        createHash('sha1').update(p.publicKey).digest('hex'),
        p.publicKey,
        p.dhtNodeId,
        p.isRelay ? 1 : 0,
        p.topic,
        p.source,
        ms,
        ms,
      );
    }
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}
