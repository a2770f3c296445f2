import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DATABASE_FILE, openDatabase } from '../src/db/client.ts';
import { KnownPeersRepository } from '../src/db/known-peers.ts';
import { peerIdOf, randomPeer } from './helpers/peers.ts';
import { fillDisk, freeDisk, mountTmpfs } from './helpers/tmpfs.ts';

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
    const added = Array.from({ length: 200 }, () => randomPeer());
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
    assert.throws(() => database.close(), (error: Error & { code?: string }) => error.code === 'SQLITE_FULL');
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
    assert.throws(() => openDatabase(join(dir, DATABASE_FILE)), (error: Error & { code?: string }) => error.code === 'SQLITE_FULL');
    assert.equal(openHandles(dir), 0, 'no descriptor left open on the data directory');
  });
});
