import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { EventBus } from '../src/node/events/bus.ts';
import type { NodeEventMap } from '../src/node/events/types.ts';
import { NodeHealth } from '../src/node/health/node-health.ts';
import { StorageHealth } from '../src/node/health/storage-health.ts';
import { KeyFileError } from '../src/node/identity/errors.ts';
import { StorageError, asStorageError, storageFailureCode } from '../src/node/storage/storage-failure.ts';
import { RemoteNode } from '../src/node/node.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import type { WireMessage } from '../src/node/wire/messages.ts';
import { startTestNode, testConfig, until } from './helpers/daemon.ts';
import { captureLogs } from './helpers/log-capture.ts';
import { tempDir } from './helpers/temp.ts';

const full = () => new Database.SqliteError('database or disk is full', 'SQLITE_FULL');
const ioerr = () => new Database.SqliteError('disk I/O error', 'SQLITE_IOERR_WRITE');
const errno = (code: string, message: string, path?: string) =>
  Object.assign(new Error(`${code}: ${message}, open '${path}'`), { code, errno: -1, syscall: 'open', path });

describe('storage failures', () => {
  it('classifies SQLite and file-system failures by kind, and leaves other errors alone', () => {
    assert.equal(storageFailureCode(full()), 'SQLITE_FULL');
    assert.equal(storageFailureCode(ioerr()), 'SQLITE_IOERR', 'extended codes fold into their primary code');
    assert.equal(
      storageFailureCode(new Database.SqliteError('attempt to write a readonly database', 'SQLITE_READONLY_DBMOVED')),
      'SQLITE_READONLY',
    );
    assert.equal(storageFailureCode(errno('EROFS', 'read-only file system', '/d/node.lock')), 'EROFS');
    assert.equal(
      storageFailureCode(
        new KeyFileError('/d/keys/ed25519.key', 'cannot be read (EACCES)', { cause: errno('EACCES', 'permission denied') }),
      ),
      'EACCES',
    );
    assert.equal(
      storageFailureCode(new Database.SqliteError('UNIQUE constraint failed', 'SQLITE_CONSTRAINT_PRIMARYKEY')),
      undefined,
      'a bug is not a storage failure',
    );
    assert.equal(storageFailureCode(new TypeError('x is undefined')), undefined);
  });

  it('names the step, the path and the cause in one line', () => {
    const error = asStorageError(errno('EROFS', 'read-only file system', '/d/node.lock'), 'take the lock', '/fallback');
    assert.ok(error instanceof StorageError);
    assert.equal(error.code, 'STORAGE_FAILURE');
    assert.equal(error.message, 'storage failure: cannot take the lock /d/node.lock: EROFS (read-only file system)');
    const sqlite = asStorageError(full(), 'open the database', '/d/remote-network.db');
    assert.equal(
      (sqlite as Error).message,
      'storage failure: cannot open the database /d/remote-network.db: SQLITE_FULL (database or disk is full)',
    );
    const extended = asStorageError(ioerr(), 'open the database', '/d/remote-network.db');
    assert.equal(
      (extended as Error).message,
      'storage failure: cannot open the database /d/remote-network.db: SQLITE_IOERR (disk I/O error, SQLITE_IOERR_WRITE)',
    );
    const other = new TypeError('a bug');
    assert.equal(asStorageError(other, 'open the database', '/d'), other, 'anything else is passed through unchanged');
  });
});

describe('storage health', () => {
  it('logs once per kind per outage, counts every failure, and recovers on the next committed write', () => {
    const { logger, lines } = captureLogs();
    const bus = new EventBus<NodeEventMap>();
    const changes: Array<NodeEventMap['health.changed']> = [];
    bus.on('health.changed', (e) => changes.push(e.payload));
    const storage = new StorageHealth({ path: '/d/remote-network.db', bus, logger });
    const health = new NodeHealth(storage);
    const failureLines = () => lines.filter((l) => l.msg.startsWith('storage write failed')).map((l) => l.code);

    storage.succeeded();
    assert.deepEqual([health.status, storage.recoveredAt, lines.length], ['OK', null, 0], 'a write that works while OK says nothing');

    for (let i = 0; i < 1000; i++) assert.equal(storage.failed('known_peers', full(), 50), true);
    assert.deepEqual(failureLines(), ['SQLITE_FULL'], 'a thousand failed exchanges are one line');
    assert.deepEqual([health.status, storage.status, storage.writeFailures, storage.unstoredPeers], ['FAILING', 'FAILING', 1000, 50_000]);
    const since = storage.failingSince;
    assert.ok(since);

    storage.failed('node_state', ioerr());
    assert.equal(storage.lastFailure?.message, 'disk I/O error, SQLITE_IOERR_WRITE');
    storage.failed('known_peers', full(), 1);
    assert.deepEqual(failureLines(), ['SQLITE_FULL', 'SQLITE_IOERR'], 'a new kind is logged, a kind already logged is not');
    assert.deepEqual(storage.lastFailure && [storage.lastFailure.code, storage.lastFailure.operation, storage.lastFailure.message], [
      'SQLITE_FULL',
      'known_peers',
      'database or disk is full',
    ]);
    assert.equal(storage.failingSince, since, 'the outage began with its first failure');

    assert.equal(storage.failed('known_peers', new TypeError('a bug')), false, 'not a storage failure: the caller rethrows');
    assert.equal(storage.writeFailures, 1002);

    storage.succeeded();
    const recovery = lines.filter((l) => l.msg === 'storage writes succeed again');
    assert.equal(recovery.length, 1);
    assert.deepEqual([recovery[0]?.failures, recovery[0]?.unstoredPeers], [1002, 50_001]);
    assert.deepEqual([health.status, storage.failingSince], ['OK', null]);
    assert.ok(storage.recoveredAt && storage.recoveredAt >= since);
    storage.succeeded();
    assert.equal(lines.filter((l) => l.msg === 'storage writes succeed again').length, 1, 'recovery is said once');

    storage.failed('known_peers', full());
    assert.deepEqual(failureLines(), ['SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_FULL'], 'after a recovery the same kind is news again');
    assert.deepEqual(
      changes.map((c) => [c.status, c.code]),
      [
        ['FAILING', 'SQLITE_FULL'],
        ['FAILING', 'SQLITE_IOERR'],
        ['OK', null],
        ['FAILING', 'SQLITE_FULL'],
      ],
    );
  });
});

describe('stream handlers that fail on our side', () => {
  it('report a storage failure to the storage health and say an untyped fault once, not per stream', async (t) => {
    const { logger, lines } = captureLogs('warn');
    const a = await RemoteNode.start(testConfig(tempDir(t)), { logger });
    t.after(() => a.stop('test finished'));
    const b = await startTestNode(t);
    a.protocols.handle(z.object({ type: z.literal('test_store') }), () => {
      throw new Database.SqliteError('database or disk is full', 'SQLITE_FULL');
    });
    a.protocols.handle(z.object({ type: z.literal('test_bug') }), () => {
      throw new TypeError('a bug of ours');
    });
    await b.connections.connect({ host: '127.0.0.1', port: a.quicPort }, a.peerId);
    await until([a], () => a.connections.byPeer(b.peerId) !== undefined, 10_000);
    const openedAt = a.connections.byPeer(b.peerId)?.openedAt;
    /** Opens a stream from b whose first message has `type`, and waits for a to end it. */
    const converse = (type: string) =>
      b.connections.withPeerStream(a.peerId, async (stream) => {
        const channel = new MessageChannel(stream);
        await channel.send({ type } as unknown as WireMessage);
        await assert.rejects(channel.receiveAny(), 'a ends the stream without an answer');
      });

    for (let i = 0; i < 5; i++) await converse('test_bug');
    assert.equal(lines.filter((l) => l.msg === 'stream handler failed').length, 1, 'five faults of one class are one warn line');
    for (let i = 0; i < 5; i++) await converse('test_store');
    await until([a], () => a.health.storage.writeFailures === 5, 10_000);
    assert.equal(a.health.storage.lastFailure?.code, 'SQLITE_FULL');
    assert.deepEqual(
      [a.health.storage.status, a.health.storage.writeFailures, a.health.storage.lastFailure?.operation],
      ['FAILING', 5, 'stream_handler'],
    );
    assert.equal(lines.filter((l) => l.msg.startsWith('storage write failed')).length, 1);
    // The same connection, still open (a re-exchange after a reachability verdict may be running on it).
    const connection = a.connections.byPeer(b.peerId);
    assert.ok(connection && ['IDLE', 'CONNECTED'].includes(connection.state), `the connection stays: ${connection?.state}`);
    assert.equal(connection.openedAt, openedAt, 'the peer did nothing wrong: not closed and reopened');
  });
});
