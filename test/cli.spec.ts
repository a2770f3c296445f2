import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { DATABASE_FILE, openDatabase } from '../src/db/client.ts';
import { KnownPeersRepository } from '../src/db/known-peers.ts';
import { LOCK_FILE } from '../src/node/storage/data-dir-lock.ts';
import { gql } from './helpers/graphql.ts';
import { CLI, type Finished, LOCAL_FLAGS, runCli } from './helpers/cli.ts';
import { tempDir } from './helpers/temp.ts';

const run = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> => runCli(args, { env });

/** Starts `remote-network start` and resolves with the GraphQL URL from its "node started" log line. */
function startNode(dataDir: string): Promise<{ child: ChildProcess; url: string; logs: string[]; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [...CLI, 'start', '--data-dir', dataDir, ...LOCAL_FLAGS]);
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      logs.push(line);
      const entry = JSON.parse(line) as { msg?: string; graphql?: string };
      if (entry.msg === 'node started' && entry.graphql) resolve({ child, url: entry.graphql, logs, exited });
    });
    void exited.then((code) => reject(new Error(`node exited early with ${code}: ${logs.join('\n')}`)));
  });
}

describe('remote-network CLI', () => {
  it('starts a node, serves GraphQL, refuses a second node on the same data dir, and stops cleanly on SIGTERM', async (t) => {
    const dataDir = tempDir(t);
    const node = await startNode(dataDir);
    t.after(() => node.child.kill('SIGKILL'));
    assert.match(node.url, /^http:\/\/127\.0\.0\.1:\d+\/graphql$/);
    const peerIdLog = node.logs.map((l) => JSON.parse(l) as { peerId?: string }).find((l) => l.peerId)?.peerId;
    const { data } = await gql(node.url, '{ node { peerId } }');
    assert.equal(data?.node.peerId, peerIdLog, 'the logged peer id is the served one');

    const second = await run(['start', '--data-dir', dataDir, ...LOCAL_FLAGS]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`data directory .* is in use by process ${node.child.pid}`));

    node.child.kill('SIGTERM');
    assert.equal(await node.exited, 0);
    assert.ok(node.logs.some((l) => (JSON.parse(l) as { msg?: string }).msg === 'node stopped'));
    assert.equal(existsSync(join(dataDir, LOCK_FILE)), false, 'lock released');
    const wal = join(dataDir, `${DATABASE_FILE}-wal`);
    assert.ok(!existsSync(wal) || statSync(wal).size === 0, 'WAL checkpointed into the database on stop');

    const info = await run(['key', 'info', '--json', '--data-dir', dataDir]);
    assert.equal(info.code, 0);
    assert.equal((JSON.parse(info.stdout) as { peerId: string }).peerId, peerIdLog, 'identity persisted');
  });

  it('stops cleanly on SIGINT (Ctrl-C) as well', async (t) => {
    const dataDir = tempDir(t);
    const node = await startNode(dataDir);
    t.after(() => node.child.kill('SIGKILL'));
    node.child.kill('SIGINT');
    assert.equal(await node.exited, 0);
    assert.ok(node.logs.some((l) => (JSON.parse(l) as { reason?: string }).reason === 'received SIGINT'));
    assert.equal(existsSync(join(dataDir, LOCK_FILE)), false);
  });

  it('lists known peers as a table and as JSON', async (t) => {
    const dataDir = tempDir(t);
    const database = openDatabase(join(dataDir, DATABASE_FILE));
    new KnownPeersRepository(database.db, 100).upsertMany(
      Array.from({ length: 3 }, (_, i) => ({
        publicKey: randomBytes(32),
        dhtNodeId: null,
        isRelay: i === 0,
        topic: 'remote-network-mesh',
        source: 'peer_exchange' as const,
      })),
    );
    database.close();
    const json = await run(['peers', '--json', '--data-dir', dataDir]);
    assert.equal(json.code, 0, json.stderr);
    const peers = JSON.parse(json.stdout) as Array<{ peerId: string; isRelay: boolean }>;
    assert.equal(peers.length, 3);
    assert.equal(peers.filter((p) => p.isRelay).length, 1);
    const table = await run(['peers', '--limit', '2', '--data-dir', dataDir]);
    assert.equal(table.code, 0);
    assert.ok(table.stdout.includes(peers[0]?.peerId ?? 'missing') || table.stdout.includes(peers[1]?.peerId ?? 'missing'));
    assert.match(table.stdout, /3 known peer\(s\)\n1 more \(use --limit\)/);
  });

  it('exits with code 2 and a precise message on a configuration error', async (t) => {
    const dataDir = tempDir(t);
    const result = await run(['start', '--data-dir', dataDir, '--api-port', 'eighty'], { REMOTE_NETWORK_QUIC_QUIC_PROT: '1' });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /flag --api-port: \[api\] port = "eighty": expected an integer port/);
    assert.match(result.stderr, /environment variable REMOTE_NETWORK_QUIC_QUIC_PROT: unknown setting \[quic\] quic_prot/);
    assert.equal(existsSync(join(dataDir, 'keys')), false, 'nothing was created');

    const exposed = await run(['start', '--data-dir', dataDir, '--api-host', '0.0.0.0']);
    assert.equal(exposed.code, 2, 'an API off loopback without a token never starts');
    assert.match(exposed.stderr, /flag --api-host: \[api\] host = 0.0.0.0 is not a loopback address, so \[api\] token must be set/);
  });

  it('explains a missing identity instead of creating one in key info', async (t) => {
    const dataDir = tempDir(t);
    const result = await run(['key', 'info', '--data-dir', dataDir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /has no identity yet/);
  });
});
