import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DATABASE_FILE, openDatabase } from '../src/db/client.ts';
import { KnownPeersRepository } from '../src/db/known-peers.ts';
import { NodeStateRepository } from '../src/db/node-state.ts';
import { EXIT_STORAGE } from '../src/cli/exit-codes.ts';
import { type Daemon, startDaemon } from '../src/daemon.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { SEQUENCE_STATE_KEY } from '../src/node/metadata/metadata-publisher.ts';
import { RemoteNode } from '../src/node/node.ts';
import { LOCK_FILE } from '../src/node/storage/data-dir-lock.ts';
import { startTestNode, testConfig } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { captureLogs } from './helpers/log-capture.ts';
import { peerIdOf, randomPeer } from './helpers/peers.ts';
import { startPrivateDht } from './helpers/private-dht.ts';
import { fillDisk, freeDisk, mountTmpfs, remountReadOnly } from './helpers/tmpfs.ts';
import { LOCAL_FLAGS, runCli } from './helpers/cli.ts';

/** Rows in the file, read by a connection of its own (what is on disk, not what the node believes). */
function rowsInFile(reader: Database.Database): Set<string> {
  const rows = reader.prepare('select public_key as k from known_peers').all() as Array<{ k: Buffer }>;
  return new Set(rows.map((row) => peerIdOf(row.k)));
}

/** File descriptors of this process open on something under `dir`. */
function openHandles(dir: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${dir}/`);
    } catch {
      return false;
    }
  }).length;
}

describe('known_peers on a full disk', () => {
  it('keeps its row count equal to the rows in the file while writes fail, and deletes nothing once space returns', (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    const file = join(dir, DATABASE_FILE);
    const database = openDatabase(file);
    t.after(() => database.close());
    const reader = new Database(file, { readonly: true });
    t.after(() => reader.close());
    const cap = 2000;
    const repository = new KnownPeersRepository(database.db, cap);
    const ballast = fillDisk(dir, 300 * 1024);

    // Fill the rest through the repository: the WAL grows until SQLite answers SQLITE_FULL.
    const failures = new Map<string, number>();
    const BATCHES = 200;
    for (let i = 0; i < BATCHES && (failures.get('SQLITE_FULL') ?? 0) < 60; i++) {
      try {
        repository.upsertMany(Array.from({ length: 50 }, () => randomPeer()));
      } catch (error) {
        const code = (error as { code?: string }).code ?? String(error);
        failures.set(code, (failures.get(code) ?? 0) + 1);
      }
      assert.equal(repository.count(), rowsInFile(reader).size, `count() is the rows in the file after batch ${i}`);
    }
    assert.ok((failures.get('SQLITE_FULL') ?? 0) >= 60, `the disk filled up: ${JSON.stringify([...failures])}`);
    const before = rowsInFile(reader);
    assert.ok(before.size > 0 && before.size < cap, `${before.size} rows, below the cap of ${cap}`);

    freeDisk(ballast);
    // Peers met in person (verified): recent() lists only those.
    const added = Array.from({ length: 200 }, () => randomPeer({ source: 'identity_exchange' }));
    for (let i = 0; i < added.length; i += 50) {
      const result = repository.upsertMany(added.slice(i, i + 50));
      assert.equal(result.evicted, 0, 'nothing is evicted below the cap');
    }
    const after = rowsInFile(reader);
    const lost = [...before].filter((peerId) => !after.has(peerId));
    assert.deepEqual(lost, [], 'every row stored before the disk filled is still there');
    assert.equal(after.size, before.size + added.length);
    assert.equal(repository.count(), after.size);
    assert.equal(repository.recent(1).length, 1);
    assert.ok(added.every((p) => repository.get(peerIdOf(p.publicKey)) !== undefined));
  });
});

describe('the database file on a full disk', () => {
  it('closes even when the WAL cannot be checkpointed, and the WAL keeps every committed row', (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    const file = join(dir, DATABASE_FILE);
    const database = openDatabase(file);
    const repository = new KnownPeersRepository(database.db, 10_000);
    const peers = Array.from({ length: 500 }, () => randomPeer());
    for (let i = 0; i < peers.length; i += 50) repository.upsertMany(peers.slice(i, i + 50));
    const ballast = fillDisk(dir);

    // The checkpoint must grow the main file with the WAL's pages: no space for that.
    assert.throws(
      () => database.close(),
      (error: Error & { code?: string }) => error.code === 'SQLITE_FULL',
    );
    assert.equal(database.sqlite.open, false, 'the file is closed all the same');
    assert.equal(openHandles(dir), 0);
    assert.doesNotThrow(() => database.close(), 'a second close is a no-op');

    freeDisk(ballast);
    const reopened = openDatabase(file);
    t.after(() => reopened.close());
    assert.equal(new KnownPeersRepository(reopened.db, 10_000).count(), peers.length, 'nothing committed was lost');
  });

  it('does not leave the file open when opening fails on a full disk', (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    fillDisk(dir);
    assert.throws(
      () => openDatabase(join(dir, DATABASE_FILE)),
      (error: Error & { code?: string }) => error.code === 'SQLITE_FULL',
    );
    assert.equal(openHandles(dir), 0, 'no descriptor left open on the data directory');
  });
});

const HEALTH_QUERY = `{
  knownPeers(first: 0) { totalCount }
  node { health { status storage { status path writeFailures unstoredPeers lastFailure { code message operation at } failingSince recoveredAt } } }
}`;

interface HealthAnswer {
  knownPeers: { totalCount: number };
  node: {
    health: {
      status: string;
      storage: {
        status: string;
        path: string;
        writeFailures: number;
        unstoredPeers: number;
        lastFailure: { code: string; message: string; operation: string; at: string } | null;
        failingSince: string | null;
        recoveredAt: string | null;
      };
    };
  };
}

/** A peer node (on an ordinary disk) that knows `count` random peers (verified: hearsay is not shared) to hand out in exchanges. */
async function peerWithPeers(t: { after(fn: () => unknown): void }, count: number): Promise<RemoteNode> {
  // Named without the PEX rate (50 a minute to one connection): this test fills a disk.
  // Configured public: a reachability verdict would re-exchange with the node on its own, and the test
  // counts what each of its own exchanges could not store.
  const node = await startTestNode(t, { 'peer_discovery.hearsay_per_minute': '100000', 'node.node_type': 'public' });
  node.knownPeers.record(Array.from({ length: count }, () => randomPeer({ source: 'identity_exchange' })));
  return node;
}

describe('a node on a full disk', () => {
  it('keeps exchanging over QUIC, counts what it could not store, logs once per kind, recovers, and deletes nothing', async (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    const { logger, lines } = captureLogs();
    // The node shares nothing itself, so each exchange is the peer's 50 newest peers it has not named yet.
    // What the peers tell it is hearsay: taken without the PEX rate limit, and not verified (the
    // verifier is stopped below), so that this test is about the disk alone.
    const config = testConfig(join(dir, 'node'), {
      'peer_discovery.max_known_peers': '1000',
      'peer_discovery.max_unverified_peers': '1000',
      'peer_discovery.max_known_peers_to_share': '0',
      'peer_discovery.hearsay_per_minute': '100000',
      'node.node_type': 'public',
    });
    const daemon: Daemon = await startDaemon(config, { logger });
    let stopped = false;
    t.after(() => (stopped ? undefined : daemon.stop('test finished').catch(() => {})));
    const reader = new Database(join(dir, 'node', DATABASE_FILE), { readonly: true });
    t.after(() => reader.close());
    const [filler, refiller] = await Promise.all([peerWithPeers(t, 1000), peerWithPeers(t, 400)]);
    // Only the test's own exchanges run (no pushes or pulls from discovery), so the count the API
    // answers and the rows in the file can be compared between them.
    for (const node of [daemon.node, filler, refiller]) node.discovery.stop();
    daemon.node.hearsay.stop();

    const health = async () => {
      const { data, errors } = await gql<HealthAnswer>(daemon.api.url, HEALTH_QUERY);
      assert.equal(errors, undefined);
      assert.ok(data);
      assert.equal(data.knownPeers.totalCount, rowsInFile(reader).size, 'totalCount is the rows in the file');
      return data.node.health;
    };
    const exchangeWith = async (peer: RemoteNode) => {
      await daemon.node.connections.connect({ host: '127.0.0.1', port: peer.quicPort }, peer.peerId);
      return daemon.node.connections.reexchange(peer.peerId);
    };
    const ok = await health();
    assert.deepEqual([ok.status, ok.storage.status, ok.storage.writeFailures, ok.storage.lastFailure], ['OK', 'OK', 0, null]);

    const ballast = fillDisk(dir, 200 * 1024);
    let unstored = 0;
    const FILL_ROUNDS = 19; // the filler names 50 new peers per exchange, 1000 in all
    for (let round = 0; round < FILL_ROUNDS; round++) {
      const result = await exchangeWith(filler);
      unstored += result.peersNotStored;
      await health();
    }
    const full = await health();
    assert.equal(full.status, 'FAILING');
    assert.equal(full.storage.status, 'FAILING');
    assert.equal(full.storage.lastFailure?.code, 'SQLITE_FULL');
    assert.equal(full.storage.lastFailure?.operation, 'known_peers');
    assert.match(full.storage.lastFailure?.message ?? '', /disk is full/);
    assert.ok(full.storage.writeFailures >= 5, `${full.storage.writeFailures} exchanges could not store their peers`);
    assert.equal(full.storage.unstoredPeers, unstored, 'what could not be stored is counted');
    assert.ok(full.storage.failingSince);
    assert.equal(daemon.node.connections.byPeer(filler.peerId)?.state, 'IDLE', 'the connection lived through it');
    const failureLines = lines.filter((l) => l.msg.startsWith('storage write failed'));
    assert.deepEqual(
      failureLines.map((l) => l.code),
      [...new Set(failureLines.map((l) => l.code))],
      'one log line per kind of failure, not one per exchange',
    );
    assert.ok(failureLines.some((l) => l.code === 'SQLITE_FULL' && String(l.msg).includes(full.storage.path)));
    const beforeFreeing = rowsInFile(reader);

    freeDisk(ballast);
    for (let round = 0; round < 5; round++) await exchangeWith(refiller);
    const recovered = await health();
    assert.deepEqual([recovered.status, recovered.storage.status, recovered.storage.failingSince], ['OK', 'OK', null]);
    assert.ok(recovered.storage.recoveredAt && recovered.storage.recoveredAt >= (full.storage.failingSince ?? ''));
    assert.equal(recovered.storage.writeFailures, full.storage.writeFailures, 'no write failed after the space returned');
    assert.equal(lines.filter((l) => l.msg === 'storage writes succeed again').length, 1);
    const afterFreeing = rowsInFile(reader);
    assert.deepEqual(
      [...beforeFreeing].filter((peerId) => !afterFreeing.has(peerId)),
      [],
      'no real row was deleted',
    );
    assert.ok(
      afterFreeing.size >= beforeFreeing.size + 200,
      `${afterFreeing.size - beforeFreeing.size} peers added after the space returned`,
    );

    await daemon.stop('test finished');
    stopped = true;
  });
});

describe('BEP 44 sequence numbers on a full disk', () => {
  it('never publishes new content under an old seq: a change waits for a stored seq, then goes out with a new one', async (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    const dht = await startPrivateDht(3);
    t.after(() => dht.stop());
    const config = testConfig(join(dir, 'node'), { 'dht.bootstrap_nodes': dht.bootstrapSetting, 'node.node_type': 'public' });
    const daemon = await startDaemon(config, { logger: createLogger('silent') });
    let stopped = false;
    t.after(() => (stopped ? undefined : daemon.stop('test finished').catch(() => {})));
    const publisher = daemon.node.metadataPublisher;
    const first = await daemon.node.bus.once('dht.metadata.published', (e) => e.payload.nodesAccepted > 0);
    const seq = first.payload.sequence;
    const reader = new Database(join(dir, 'node', DATABASE_FILE), { readonly: true });
    t.after(() => reader.close());
    const storedSeq = () =>
      JSON.parse(
        (reader.prepare('select value from node_state where key = ?').get(SEQUENCE_STATE_KEY) as { value: string }).value,
      ) as number;
    assert.equal(storedSeq(), seq);

    const ballast = fillDisk(dir);
    assert.equal(await publisher.update({ capabilities: ['workflow'] }), null, 'the change cannot be published yet');
    assert.equal(publisher.currentSequence, seq);
    assert.deepEqual(publisher.current.capabilities, [], 'the published content stays what it was under that seq');
    assert.equal(storedSeq(), seq);
    const failing = await gql(daemon.api.url, '{ node { health { storage { status lastFailure { code operation } } } } }');
    assert.deepEqual(failing.data?.node.health.storage, {
      status: 'FAILING',
      lastFailure: { code: 'SQLITE_FULL', operation: 'node_state' },
    });

    const republished = await gql(daemon.api.url, 'mutation { republishMetadata { sequence nodesAccepted } }');
    assert.equal(republished.errors, undefined, 'republishing what is stored still works');
    assert.equal(republished.data?.republishMetadata.sequence, seq);
    assert.equal((await dht.nodes[1]!.getMutable(daemon.node.identity.publicKey))?.seq, seq);

    freeDisk(ballast);
    const released = await gql(daemon.api.url, 'mutation { republishMetadata { sequence nodesAccepted } }');
    assert.equal(released.data?.republishMetadata.sequence, seq + 1, 'the change goes out with a new seq');
    assert.deepEqual(publisher.current.capabilities, ['workflow']);
    assert.equal(storedSeq(), seq + 1, 'stored before it was used');
    assert.equal((await dht.nodes[1]!.getMutable(daemon.node.identity.publicKey))?.seq, seq + 1);
    const ok = await gql(daemon.api.url, '{ node { health { status } } }');
    assert.equal(ok.data?.node.health.status, 'OK');

    await daemon.stop('test finished');
    stopped = true;
  });
});

/** A data directory that has held a node (key, database) and is stopped now. */
async function usedDataDir(dataDir: string): Promise<void> {
  const node = await RemoteNode.start(testConfig(dataDir), { logger: createLogger('silent') });
  await node.stop('prepared');
}

describe('the CLI on a full or read-only data directory', () => {
  it('refuses to start on a read-only data directory: exit code 3 and one line naming the path and the cause', async (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    const dataDir = join(dir, 'node');
    await usedDataDir(dataDir);
    remountReadOnly(dir);
    const result = await runCli(['start', '--data-dir', dataDir, ...LOCAL_FLAGS]);
    assert.equal(result.code, EXIT_STORAGE, result.stderr);
    assert.deepEqual(result.stderr.trimEnd().split('\n'), [
      `remote-network: storage failure: cannot take the lock ${join(dataDir, LOCK_FILE)}: EROFS (read-only file system)`,
    ]);
  });

  it('refuses to start on a full data directory, whichever step meets the full disk', async (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    const fresh = join(dir, 'fresh');
    const used = join(dir, 'used');
    await usedDataDir(used);
    mkdirSync(fresh);
    const ballast = fillDisk(dir);
    const first = await runCli(['start', '--data-dir', fresh, ...LOCAL_FLAGS]);
    assert.equal(first.code, EXIT_STORAGE, first.stderr);
    assert.deepEqual(first.stderr.trimEnd().split('\n'), [
      `remote-network: storage failure: cannot take the lock ${join(fresh, LOCK_FILE)}: ENOSPC (no space left on device)`,
    ]);

    // Room for the lock, not for the database's WAL index: the open fails, and the lock is let go.
    freeDisk(ballast);
    fillDisk(dir, 4096);
    const second = await runCli(['start', '--data-dir', used, ...LOCAL_FLAGS]);
    assert.equal(second.code, EXIT_STORAGE, second.stderr);
    const lines = second.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, second.stderr);
    assert.match(
      lines[0] ?? '',
      new RegExp(`^remote-network: storage failure: cannot open the database ${join(used, DATABASE_FILE)}: SQLITE_\\w+ \\(.+\\)$`),
    );
    assert.equal(existsSync(join(used, LOCK_FILE)), false, 'the lock was released');
  });

  it('stops on SIGTERM when the WAL cannot be checkpointed: exit code 3, one line, the lock released, nothing lost', async (t) => {
    const dir = mountTmpfs(t);
    if (!dir) return;
    const dataDir = join(dir, 'node');
    let ballast = '';
    const result = await runCli(['start', '--data-dir', dataDir, ...LOCAL_FLAGS], {
      onLine: (line, child) => {
        if ((JSON.parse(line) as { msg?: string }).msg !== 'node started') return;
        ballast = fillDisk(dir);
        child.kill('SIGTERM');
      },
    });
    assert.equal(result.code, EXIT_STORAGE, result.stderr);
    assert.deepEqual(result.stderr.trimEnd().split('\n'), [
      `remote-network: stopped, but storage failure: cannot checkpoint and close the database ${join(dataDir, DATABASE_FILE)}: SQLITE_FULL (database or disk is full); the WAL file keeps the data for the next start`,
    ]);
    const logs = result.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; clean?: boolean; level: number });
    assert.equal(logs.find((l) => l.msg === 'node stopped')?.clean, false);
    assert.equal(existsSync(join(dataDir, LOCK_FILE)), false, 'the lock was released');

    freeDisk(ballast);
    const database = openDatabase(join(dataDir, DATABASE_FILE));
    t.after(() => database.close());
    assert.equal(new NodeStateRepository(database.db).get<number>(SEQUENCE_STATE_KEY), 1, 'what the node wrote is in the WAL, and reopens');
  });
});
