import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import bencode from 'bencode';
import type { Daemon } from '../src/daemon.ts';
import { startDaemon } from '../src/daemon.ts';
import { noblePublicKey } from '../src/node/identity/noble.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { encodeMetadata } from '../src/node/metadata/peer-metadata.ts';
import { testConfig } from './helpers/daemon.ts';
import { freeUdpPort } from './helpers/network.ts';
import { type PrivateDht, startPrivateDht } from './helpers/private-dht.ts';
import { tempDir } from './helpers/temp.ts';

/** Debian's python3-libtorrent works with the system interpreter only (see test/fixtures/libtorrent). */
const PYTHON = '/usr/bin/python3';
const DRIVER = new URL('./fixtures/libtorrent/lt_dht.py', import.meta.url).pathname;

function libtorrentAvailable(): boolean {
  return spawnSync(PYTHON, ['-c', 'import libtorrent'], { stdio: 'ignore' }).status === 0;
}

// CI installs libtorrent (.ci/run); there a missing library is a failure, not a reason to skip.
const skip =
  !libtorrentAvailable() && process.env.CI !== 'true'
    ? 'python3-libtorrent is not installed (apt-get install python3-libtorrent python3-cryptography)'
    : false;

interface DriverReply {
  id?: number;
  ok?: boolean;
  ready?: boolean;
  error?: string;
  seq?: number;
  v?: string;
  sig?: string;
  public_key?: string;
}

/** The libtorrent node, driven one JSON line at a time. */
class LibtorrentNode {
  private nextId = 1;
  private readonly replies: Array<(reply: DriverReply) => void> = [];
  private readonly stderr: string[] = [];

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => this.replies.shift()?.(JSON.parse(line) as DriverReply));
    child.stderr.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
  }

  static async start(bootstrap: string): Promise<LibtorrentNode> {
    const node = new LibtorrentNode(
      spawn(PYTHON, [DRIVER, '--port', String(await freeUdpPort()), '--bootstrap', bootstrap], { stdio: 'pipe' }),
    );
    const ready = await node.next();
    if (!ready.ready) throw new Error(`libtorrent did not start: ${ready.error ?? ''}\n${node.stderr.join('')}`);
    return node;
  }

  request(command: Record<string, unknown>): Promise<DriverReply> {
    const reply = this.next();
    this.child.stdin.write(`${JSON.stringify({ id: this.nextId++, ...command })}\n`);
    return reply;
  }

  stop(): void {
    this.child.stdin.end();
    this.child.kill('SIGTERM');
  }

  private next(): Promise<DriverReply> {
    return new Promise((resolve, reject) => {
      this.replies.push(resolve);
      this.child.once('exit', (code) => reject(new Error(`libtorrent driver exited (${code}): ${this.stderr.join('')}`)));
    });
  }
}

describe('BEP 44 interoperability with libtorrent', { skip }, () => {
  let dht: PrivateDht;
  let ours: Daemon;
  let libtorrent: LibtorrentNode;

  before(async () => {
    dht = await startPrivateDht(8);
    const dataDir = tempDir({ after });
    ours = await startDaemon(testConfig(dataDir, { 'dht.bootstrap_nodes': dht.bootstrapSetting, 'node.node_type': 'public' }), {
      logger: createLogger('silent'),
    });
    const all = [...dht.nodes.map((n) => n.port), ours.node.dht.port];
    libtorrent = await LibtorrentNode.start(all.map((port) => `127.0.0.1:${port}`).join(','));
  });

  after(async () => {
    libtorrent?.stop();
    await ours?.stop('test finished');
    await dht?.stop();
  });

  it("reads our node's metadata with the same seq, signature and value", async () => {
    const record = ours.node.metadataPublisher.lastPublish?.nodesAccepted
      ? ours.node.metadataPublisher.lastPublish
      : await ours.node.metadataPublisher.publish('interop test');
    assert.ok(record.nodesAccepted > 0);
    const ownItem = await dht.nodes[0]!.getMutable(ours.node.identity.publicKey);
    assert.ok(ownItem, 'our item is in the DHT');

    const reply = await libtorrent.request({ cmd: 'get', public_key: Buffer.from(ours.node.identity.publicKey).toString('hex') });
    assert.equal(reply.ok, true, reply.error);
    assert.equal(reply.seq, record.sequence);
    assert.equal(reply.sig, ownItem.signature.toString('hex'));
    const expectedValue = Buffer.from(bencode.encode(encodeMetadata(ours.node.metadataPublisher.current)));
    assert.equal(reply.v, expectedValue.toString('hex'), 'byte-identical bencoded metadata');
  });

  it('lets our getter read and verify an item that libtorrent put', async () => {
    const seed = randomBytes(32);
    const value = Buffer.from(bencode.encode('stored by libtorrent'));
    const put = await libtorrent.request({ cmd: 'put', seed: seed.toString('hex'), v: value.toString('hex'), seq: 1 });
    assert.equal(put.ok, true, put.error);
    const publicKey = noblePublicKey(seed);
    assert.equal(put.public_key, Buffer.from(publicKey).toString('hex'));

    const item = await ours.node.dht.getMutable(publicKey);
    assert.ok(item, 'found and verified (getMutable returns only items whose signature verifies)');
    assert.equal(item.seq, put.seq);
    assert.equal(item.signature.toString('hex'), put.sig);
    assert.deepEqual(item.encodedValue, value);
  });
});
