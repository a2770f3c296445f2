import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import bencode from 'bencode';
import DHT from 'bittorrent-dht';
import type { Daemon } from '../src/daemon.ts';
import { startDaemon } from '../src/daemon.ts';
import { bep42NodeId, isValidBep42NodeId } from '../src/node/dht/bep42.ts';
import { mutableTarget, signableBuffer } from '../src/node/dht/bep44.ts';
import { peerIdFromPublicKey } from '../src/node/base/peer-id.ts';
import { signMessage } from '../src/node/identity/signatures.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { MetadataInvalidError, MetadataTooLargeError, decodeMetadata, encodeMetadata } from '../src/node/metadata/peer-metadata.ts';
import { testConfig, until } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { testMetadata } from './helpers/peers.ts';
import { type PrivateDht, startPrivateDht } from './helpers/private-dht.ts';
import { tempDir } from './helpers/temp.ts';

function newKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
  return { raw, sign: (m: Uint8Array) => signMessage(privateKey, m), peerId: peerIdFromPublicKey(raw) };
}

/** Waits until the node's metadata is held by at least one DHT node. */
async function published(daemon: Daemon): Promise<number> {
  const last = daemon.node.metadataPublisher.lastPublish;
  if (last && last.nodesAccepted > 0 && last.sequence === daemon.node.metadataPublisher.currentSequence) return last.sequence;
  const event = await daemon.node.bus.once('dht.metadata.published', (e) => e.payload.nodesAccepted > 0);
  return event.payload.sequence;
}

/**
 * A raw bittorrent-dht node that joins the private DHT and serves whatever item it is given,
 * without checks: a malicious or broken peer.
 */
async function startRogue(dht: PrivateDht, t: { after(fn: () => unknown): void }) {
  const rogue = new DHT({ bootstrap: dht.bootstrap.map((b) => `${b.host}:${b.port}`), host: false });
  await new Promise<void>((resolve) => {
    rogue.once('ready', () => resolve());
    rogue.listen(0, '127.0.0.1');
  });
  t.after(() => new Promise<void>((resolve) => rogue.destroy(() => resolve())));
  for (const node of dht.nodes) node.addNode({ host: '127.0.0.1', port: rogue.address().port });
  return {
    serve(publicKey: Buffer, item: { v: unknown; seq: number; sig: Buffer }) {
      rogue._values.set(mutableTarget(publicKey).toString('hex'), { ...item, k: publicKey, id: rogue.nodeId });
    },
  };
}

describe('DHT: private network on loopback', () => {
  let dht: PrivateDht;
  before(async () => {
    dht = await startPrivateDht(10);
  });
  after(() => dht.stop());

  async function daemon(t: { after(fn: () => unknown): void }, settings: Record<string, string> = {}, dataDir = tempDir(t)) {
    const config = testConfig(dataDir, {
      'dht.bootstrap_nodes': dht.bootstrapSetting,
      'node.node_type': 'public',
      'peer_discovery.discovery_interval': '1',
      ...settings,
    });
    const d = await startDaemon(config, { logger: createLogger('silent') });
    t.after(() => d.stop('test finished'));
    return d;
  }

  it('forms a routing table across all nodes', () => {
    for (const node of dht.nodes) assert.ok(node.routingTableSize >= 5, `routing table ${node.routingTableSize}`);
  });

  it('puts a mutable item on one node and gets it, verified, from another', async () => {
    const key = newKey();
    const put = await dht.nodes[0]!.putMutable({ publicKey: key.raw, seq: 7, value: { hello: 'world' }, sign: key.sign });
    assert.ok(put.stored >= 5, `stored at ${put.stored} nodes`);
    assert.equal(put.previousSeq, null);
    const item = await dht.nodes[9]!.getMutable(key.raw);
    assert.equal(item?.seq, 7);
    assert.equal(Buffer.from((item?.value as { hello: Uint8Array }).hello).toString(), 'world');
    assert.deepEqual(item?.encodedValue, Buffer.from(bencode.encode({ hello: 'world' })));
  });

  it('refuses a lower sequence number and keeps serving the higher one', async () => {
    const key = newKey();
    await dht.nodes[1]!.putMutable({ publicKey: key.raw, seq: 5, value: 'five', sign: key.sign });
    // From the same node: it never stores its own puts, so every node it reaches holds seq 5.
    const lower = await dht.nodes[1]!.putMutable({ publicKey: key.raw, seq: 3, value: 'three', sign: key.sign });
    assert.equal(lower.stored, 0, 'no node accepts a lower seq');
    assert.ok(lower.alreadyHeld > 0, 'nodes answer 302');
    assert.equal(lower.previousSeq, 5);
    const item = await dht.nodes[8]!.getMutable(key.raw);
    assert.equal(item?.seq, 5);
    assert.equal(Buffer.from(item?.value as Uint8Array).toString(), 'five');
  });

  it('ignores tampered values, wrong signatures and oversize values served by rogue nodes', async (t) => {
    const rogue = await startRogue(dht, t);
    const key = newKey();
    await dht.nodes[3]!.putMutable({ publicKey: key.raw, seq: 1, value: 'genuine', sign: key.sign });
    const genuineSig = Buffer.from(key.sign(signableBuffer(2, bencode.encode('genuine2'))));

    // Seq 2 with a value the signature does not cover.
    rogue.serve(key.raw, { v: Buffer.from('tampered'), seq: 2, sig: genuineSig });
    let item = await dht.nodes[4]!.getMutable(key.raw);
    assert.equal(item?.seq, 1, 'the tampered seq 2 is ignored');
    assert.equal(Buffer.from(item?.value as Uint8Array).toString(), 'genuine');

    // A signature by another key.
    const other = newKey();
    rogue.serve(key.raw, { v: Buffer.from('forged'), seq: 9, sig: Buffer.from(other.sign(signableBuffer(9, bencode.encode('forged')))) });
    item = await dht.nodes[5]!.getMutable(key.raw);
    assert.equal(item?.seq, 1, 'the forged seq 9 is ignored');

    // Validly signed, but over the 1000-byte BEP 44 limit.
    const big = { blob: randomBytes(1100) };
    rogue.serve(key.raw, { v: big, seq: 10, sig: Buffer.from(key.sign(signableBuffer(10, bencode.encode(big)))) });
    item = await dht.nodes[6]!.getMutable(key.raw);
    assert.equal(item?.seq, 1, 'the oversize seq 10 is ignored');

    // Nothing valid at all: null, not the rogue's item.
    const lonely = newKey();
    rogue.serve(lonely.raw, { v: Buffer.from('x'), seq: 1, sig: randomBytes(64) });
    assert.equal(await dht.nodes[7]!.getMutable(lonely.raw), null);
  });

  it('refuses oversize values before sending, saying by how much', async () => {
    const key = newKey();
    await assert.rejects(
      dht.nodes[0]!.putMutable({ publicKey: key.raw, seq: 1, value: { blob: randomBytes(1000) }, sign: key.sign }),
      /value is 1013 bencoded bytes, over the BEP 44 limit of 1000/,
    );
    const metadata = testMetadata(key.peerId, { protocols: Array.from({ length: 16 }, () => 'p'.repeat(64)) });
    const size = bencode.encode(encodeMetadata(metadata)).length;
    assert.throws(
      () => {
        throw new MetadataTooLargeError(size);
      },
      new RegExp(`metadata is ${size} bencoded bytes, ${size - 1000} over the BEP 44 limit of 1000`),
    );
  });

  it('publishes a public node at start; another node reads, verifies and caches it through GraphQL', async (t) => {
    const a = await daemon(t);
    const b = await daemon(t);
    const sequence = await published(a);
    b.node.knownPeers.record([
      {
        publicKey: a.node.identity.publicKey,
        dhtNodeId: a.node.dhtNodeId,
        isRelay: false,
        topic: 'remote-network-mesh',
        source: 'identity_exchange',
      },
    ]);
    // Knowing A, B's discovery reads A's metadata and dials the address in it.
    await until([b.node], () => b.node.connections.isConnected(a.node.peerId));
    const query = `query($id: PeerId!, $fresh: Boolean) { peerMetadata(peerId: $id, fresh: $fresh) {
      peerId nodeType isRelay usingRelay publicIp publicPort sequence signature cached protocols version } }`;
    const lookupsBefore = b.node.metadataFetcher.lookupCount;
    const first = await gql(b.api.url, query, { id: a.node.peerId, fresh: true });
    assert.equal(first.errors, undefined, JSON.stringify(first.errors));
    const m = first.data?.peerMetadata;
    assert.equal(m.peerId, a.node.peerId);
    assert.equal(m.nodeType, 'PUBLIC');
    assert.equal(m.publicIp, '127.0.0.1');
    assert.equal(m.publicPort, a.node.quicPort);
    assert.equal(m.sequence, sequence);
    assert.equal(m.cached, false);
    assert.match(m.signature, /^[0-9a-f]{128}$/);
    assert.deepEqual(m.protocols, ['remote-network/1']);
    assert.equal(b.node.metadataFetcher.lookupCount, lookupsBefore + 1, 'fresh asks the DHT');

    const second = await gql(b.api.url, query, { id: a.node.peerId });
    assert.equal(second.data?.peerMetadata.cached, true, 'served from cache');
    assert.equal(b.node.metadataFetcher.lookupCount, lookupsBefore + 1, 'no DHT lookup for a cache hit');

    const fresh = await gql(b.api.url, query, { id: a.node.peerId, fresh: true });
    assert.equal(fresh.data?.peerMetadata.cached, false);
    assert.equal(b.node.metadataFetcher.lookupCount, lookupsBefore + 2, 'fresh asks the DHT again');

    const listed = await gql(b.api.url, '{ knownPeers { edges { node { peerId metadata { sequence cached } } } } }');
    assert.equal(listed.data?.knownPeers.edges[0].node.metadata.sequence, sequence, 'KnownPeer.metadata');
  });

  it('shares one lookup between concurrent reads of the same peer', async (t) => {
    const a = await daemon(t);
    await published(a);
    const reader = await daemon(t);
    const before = reader.node.metadataFetcher.lookupCount;
    const results = await Promise.all(
      Array.from({ length: 5 }, () => reader.node.metadataFetcher.fetch(a.node.identity.publicKey, { fresh: true })),
    );
    assert.ok(results.every((r) => r?.sequence === results[0]?.sequence && r !== null));
    assert.equal(reader.node.metadataFetcher.lookupCount, before + 1);
  });

  it('rejects metadata whose peer_id is not SHA1 of the signing key', async (t) => {
    const reader = await daemon(t);
    const key = newKey();
    const claimed = newKey();
    const value = encodeMetadata(testMetadata(claimed.peerId, { publicIp: '127.0.0.1', publicPort: 1 }));
    await dht.nodes[0]!.putMutable({ publicKey: key.raw, seq: 1, value, sign: key.sign });
    assert.ok(await reader.node.dht.getMutable(key.raw), 'the item itself is validly signed');
    assert.equal(await reader.node.metadataFetcher.fetch(key.raw, { fresh: true }), null, 'but its content lies');
  });

  it('refuses metadata whose connected_relay is not a peer id (the API returns it as a PeerId)', () => {
    const key = newKey();
    const relay = newKey().peerId;
    const metadata = testMetadata(key.peerId, {
      privateIp: '10.0.0.2',
      privatePort: 1,
      nodeType: 'private',
      usingRelay: true,
      connectedRelay: relay,
      relaySessionId: 's',
      relayAddress: '127.0.0.1:1',
    });
    const roundTrip = (m: typeof metadata) => decodeMetadata(bencode.decode(bencode.encode(encodeMetadata(m))));
    assert.equal(roundTrip(metadata).connectedRelay, metadata.connectedRelay);
    for (const connectedRelay of ['z'.repeat(40), relay.toUpperCase()]) {
      assert.throws(
        () => roundTrip({ ...metadata, connectedRelay }),
        (e) => e instanceof MetadataInvalidError && /connected_relay: not a peer id/.test(e.message),
      );
    }
  });

  it('never reuses or lowers the sequence number across restarts', async (t) => {
    const dataDir = tempDir(t);
    const first = await daemon(t, {}, dataDir);
    const firstSeq = await published(first);
    await first.stop();
    const second = await daemon(t, {}, dataDir);
    const secondSeq = await published(second);
    assert.ok(secondSeq > firstSeq, `${secondSeq} > ${firstSeq}`);
    const item = await dht.nodes[2]!.getMutable(second.node.identity.publicKey);
    assert.equal(item?.seq, secondSeq);
  });

  it('publishes a change at once with seq + 1; republish keeps the seq and counts 302 as held', async (t) => {
    const a = await daemon(t);
    const seq = await published(a);
    const changed = await a.node.metadataPublisher.update({ capabilities: ['workflow'] });
    assert.equal(changed?.sequence, seq + 1);
    const unchanged = await a.node.metadataPublisher.update({ capabilities: ['workflow'] });
    assert.equal(unchanged, null, 'no new sequence without a change');
    const republished = await gql(a.api.url, 'mutation { republishMetadata { sequence nodesAccepted at } }');
    assert.equal(republished.errors, undefined);
    assert.equal(republished.data?.republishMetadata.sequence, seq + 1);
    assert.ok(republished.data?.republishMetadata.nodesAccepted > 0, 'nodes that already hold it count');
    const item = await dht.nodes[5]!.getMutable(a.node.identity.publicKey);
    assert.equal(item?.seq, seq + 1);
  });

  it('tries a put that failed again soon, instead of at the next republish', async (t) => {
    const d = await daemon(t);
    await published(d);
    const { dht } = d.node;
    const realPut = dht.putMutable.bind(dht);
    let failures = 0;
    // One put fails (as a lookup past its deadline on a loaded node would), the next goes through.
    dht.putMutable = (put) => (failures++ === 0 ? Promise.reject(new Error('lookup past its deadline')) : realPut(put));
    const retried = d.node.bus.once('dht.metadata.published', (e) => e.payload.nodesAccepted > 0, AbortSignal.timeout(10_000));
    await assert.rejects(d.node.metadataPublisher.publish('test'), /deadline/);
    assert.ok((await retried).payload.nodesAccepted > 0, 'published by the retry');
    assert.equal(failures, 2);
  });

  it('finds a stored item with a narrow walk of a few queries, and nothing for a key nobody published', async () => {
    const key = newKey();
    await dht.nodes[0]!.putMutable({ publicKey: key.raw, seq: 3, value: { walk: 'narrow' }, sign: key.sign });
    const reader = dht.nodes[7]!;
    const before = reader.inbound.received;
    const item = await reader.findMutable(key.raw);
    assert.deepEqual(item?.value, { walk: Buffer.from('narrow') });
    assert.ok(reader.inbound.received - before <= 6, `${reader.inbound.received - before} answers for the walk`);
    assert.equal(await reader.findMutable(newKey().raw), null);
  });

  it('holds a private node until released, and says so through GraphQL', async (t) => {
    const p = await daemon(t, { 'node.node_type': 'private' });
    const status = await gql(p.api.url, '{ dht { publicationHeld lastPublish { sequence } } }');
    assert.equal(status.data?.dht.publicationHeld, true);
    assert.equal(status.data?.dht.lastPublish, null);
    const refused = await gql(p.api.url, 'mutation { republishMetadata { sequence } }');
    assert.equal(refused.errors?.[0]?.extensions?.code, 'PUBLICATION_HELD');
    assert.equal(await dht.nodes[0]!.getMutable(p.node.identity.publicKey), null, 'nothing in the DHT');
    const record = await p.node.metadataPublisher.release();
    assert.ok(record.nodesAccepted > 0);
  });

  it('announces the topic (BEP 5) and finds the other nodes on it', async (t) => {
    // Free ports (a fixed one may be taken by any ephemeral socket on the machine).
    const a = await daemon(t);
    const own = `127.0.0.1:${a.node.quicPort}`;
    // Earlier tests' nodes announced on this DHT too: wait for b's own address.
    const seen = new Set<string>();
    const off = a.node.bus.on('dht.topic.peer', (e) => seen.add(e.payload.address));
    t.after(off);
    const b = await daemon(t);
    const other = `127.0.0.1:${b.node.quicPort}`;
    if (!seen.has(other)) await a.node.bus.once('dht.topic.peer', (e) => e.payload.address === other);
    const status = await gql(
      a.api.url,
      '{ dht { nodeId port routingTableSize announcedTopic infoHash topicPeers bep42Violations currentSequence } }',
    );
    const info = status.data?.dht;
    assert.ok(info.topicPeers.includes(other));
    assert.ok(!info.topicPeers.includes(own), 'not ourselves');
    assert.equal(info.announcedTopic, 'remote-network-mesh');
    assert.equal(info.infoHash, a.node.topicDiscovery.infoHash.toString('hex'));
    assert.ok(info.routingTableSize > 0);
    assert.equal(info.nodeId, a.node.dhtNodeId);
    assert.ok(isValidBep42NodeId(Buffer.from(info.nodeId, 'hex'), '127.0.0.1'));
  });

  it('answers unknown peers and missing metadata with typed errors', async (t) => {
    const a = await daemon(t);
    const unknown = await gql(a.api.url, `{ peerMetadata(peerId: "${'a'.repeat(40)}") { sequence } }`);
    assert.equal(unknown.errors?.[0]?.extensions?.code, 'PEER_NOT_FOUND');
    const silent = newKey();
    a.node.knownPeers.record([
      { publicKey: silent.raw, dhtNodeId: null, isRelay: false, topic: 'remote-network-mesh', source: 'peer_exchange' },
    ]);
    const missing = await gql(a.api.url, `{ peerMetadata(peerId: "${silent.peerId}") { sequence } }`);
    assert.equal(missing.errors?.[0]?.extensions?.code, 'METADATA_NOT_FOUND');
  });

  it('counts nodes whose ids violate BEP 42', () => {
    const node = dht.nodes[0]!;
    const before = node.bep42Violations;
    node.checkNode({ id: bep42NodeId('198.51.100.7'), host: '198.51.100.7' });
    node.checkNode({ id: randomBytes(20), host: '127.0.0.1' });
    assert.equal(node.bep42Violations, before, 'valid and exempt nodes are fine');
    node.checkNode({ id: bep42NodeId('198.51.100.7'), host: '203.0.113.9' });
    assert.equal(node.bep42Violations, before + 1);
  });
});
