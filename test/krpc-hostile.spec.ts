import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import bencode from 'bencode';
import fc from 'fast-check';
import type { RemoteNode } from '../src/node/node.ts';
import { startTestDaemon, startTestNode } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { type Krpc, rawKrpc } from './helpers/krpc.ts';
import { startPrivateDht } from './helpers/private-dht.ts';
import { createRequire } from 'node:module';
import { MainlineDht } from '../src/node/dht/mainline-dht.ts';
import { KrpcDecodeError, decodeKrpc } from '../src/node/dht/krpc-decode.ts';
import { MAX_IDS_PER_IP } from '../src/node/dht/routing-table-policy.ts';
import { createLogger } from '../src/node/base/logger.ts';

/** The decoder inside k-rpc-socket, which sees every datagram the strict decoder lets through. */
const libraryDecode = createRequire(createRequire(import.meta.url).resolve('k-rpc-socket'))('bencode').decode as (b: Buffer) => unknown;

/** fast-check seed: fixed so CI runs are repeatable; FC_SEED=<n> replays another. */
const SEED = Number(process.env.FC_SEED ?? 20261202);

const id = () => randomBytes(20);

/** The node's DHT still serves: a genuine `get` from a well-behaved client is answered with its id. */
async function answersGet(client: Awaited<ReturnType<typeof rawKrpc>>, node: RemoteNode): Promise<void> {
  const answer = await client.query(node.dht.port, 'get', { id: id(), target: id() });
  const r = answer.r as Krpc | undefined;
  assert.ok(r, `expected a response, got ${JSON.stringify(answer)}`);
  assert.equal(Buffer.from(r.id as Uint8Array).toString('hex'), node.dhtNodeId);
  assert.ok(r.token, 'a get answer carries a write token');
}

/** Waits (per event-loop turn, bounded) until the node has received `count` datagrams. */
async function received(node: RemoteNode, count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (node.dht.inbound.received < count) {
    if (Date.now() > deadline) throw new Error(`node received ${node.dht.inbound.received} of ${count} datagrams`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const dropped = (node: RemoteNode) => Object.values(node.dht.inbound.dropped).reduce((a, b) => a + b, 0);

const q = (query: string, a: string) => `d1:ad${a}e1:q${query.length}:${query}1:t2:aa1:y1:qe`;
const ID = '2:id20:AAAAAAAAAAAAAAAAAAAA';

/** Datagrams that ended (or hung) the process before the KRPC checks, with the reason they are dropped for. */
const PACKET_MATRIX: ReadonlyArray<readonly [string, string, string]> = [
  ['get with an integer target', q('get', `${ID}6:targeti5e`), 'query'],
  ['get with a list target', q('get', `${ID}6:targetli1ee`), 'query'],
  ['get_peers with an integer info_hash', q('get_peers', `${ID}9:info_hashi5e`), 'query'],
  ['find_node with an integer target', q('find_node', `${ID}6:targeti5e`), 'query'],
  ['put with an integer token', q('put', `${ID}5:tokeni5e1:v3:abc`), 'query'],
  ['put with an integer k', q('put', `${ID}1:ki5e3:seqi1e3:sig64:${'S'.repeat(64)}5:token2:tt1:v3:abc`), 'query'],
  ['put with an integer salt', q('put', `${ID}4:salti5e5:token2:tt1:v3:abc`), 'query'],
  ['put with sig but no k', q('put', `${ID}3:seqi1e3:sig64:${'S'.repeat(64)}5:token2:tt1:v3:abc`), 'query'],
  ['announce_peer with an integer info_hash', q('announce_peer', `${ID}9:info_hashi5e4:porti80e5:token2:tt`), 'query'],
  ['ping with an integer id', q('ping', '2:idi5e'), 'query'],
  ['a negative string length (spun the decoder forever)', 'd-3:e', 'malformed'],
  ['4000 nested lists (overflowed the stack)', `${'l'.repeat(4000)}${'e'.repeat(4000)}`, 'malformed'],
  ['a __proto__ key (set the message prototype)', `d9:__proto__d1:y1:qe1:t2:aae`, 'malformed'],
  ['a response nobody asked for (with an integer id)', 'd1:rd2:idi5ee1:t2:aa1:y1:re', 'unsolicited'],
  ['a response nobody asked for (a fresh id: the response flood)', 'd1:rd2:id20:BBBBBBBBBBBBBBBBBBBBe1:t2:ab1:y1:re', 'unsolicited'],
  ['an error nobody asked for', 'd1:ei5e1:t2:aa1:y1:ee', 'unsolicited'],
  ['an integer transaction id', 'd1:ad2:id20:AAAAAAAAAAAAAAAAAAAAe1:q4:ping1:ti5e1:y1:qe', 'envelope'],
];

describe('DHT: hostile datagrams (KRPC checks before bittorrent-dht)', () => {
  it('survives every datagram that ended the process, drops each for its reason, and keeps answering', async (t) => {
    const daemon = await startTestDaemon(t, { 'node.node_type': 'public' });
    const node = daemon.node;
    const client = await rawKrpc(t);
    await answersGet(client, node);
    for (const [name, packet, reason] of PACKET_MATRIX) {
      const before = node.dht.inbound.dropped[reason as keyof RemoteNode['dht']['inbound']['dropped']];
      await client.send(node.dht.port, packet);
      await answersGet(client, node);
      assert.equal(node.dht.inbound.dropped[reason as 'query'], before + 1, `${name}: dropped as ${reason}`);
    }
    assert.equal(node.dht.inbound.handlerFailures, 0);
    const { data } = await gql(daemon.api.url, '{ dht { inbound { received dropped droppedByReason { reason count } handlerFailures } } }');
    assert.equal(data?.dht.inbound.dropped, PACKET_MATRIX.length);
    assert.equal(data?.dht.inbound.received, PACKET_MATRIX.length * 2 + 1, 'each packet, each genuine get, the first get');
    assert.deepEqual(
      Object.fromEntries(data?.dht.inbound.droppedByReason.map((d: { reason: string; count: number }) => [d.reason, d.count])),
      { MALFORMED: 3, ENVELOPE: 1, QUERY: 10, RESPONSE: 0, UNSOLICITED: 3, ERROR: 0 },
    );
  });

  it('drops 12 000 generated queries of every type with fields of every wrong type, and still answers a genuine get', async (t) => {
    const node = await startTestNode(t, { 'node.node_type': 'public' });
    const client = await rawKrpc(t);
    const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
    const scalar = fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), bytes(0, 70), fc.constant(0));
    const anything = fc.oneof(
      scalar,
      fc.array(scalar, { maxLength: 3 }),
      fc.dictionary(fc.string({ maxLength: 6 }), scalar, { maxKeys: 3 }),
    );
    // Each field: its right type, a wrong one, or absent.
    const field = (right: fc.Arbitrary<unknown>) => fc.oneof(right, anything, fc.constant(undefined));
    const templates: Record<string, Record<string, fc.Arbitrary<unknown>>> = {
      ping: { id: bytes(20, 20) },
      find_node: { id: bytes(20, 20), target: bytes(20, 20), want: fc.constant([Buffer.from('n4')]) },
      get_peers: { id: bytes(20, 20), info_hash: bytes(20, 20), noseed: fc.integer({ min: 0, max: 1 }) },
      announce_peer: {
        id: bytes(20, 20),
        info_hash: bytes(20, 20),
        port: fc.integer({ min: 0, max: 70000 }),
        token: bytes(0, 20),
        implied_port: fc.integer({ min: 0, max: 1 }),
      },
      get: { id: bytes(20, 20), target: bytes(20, 20), seq: fc.integer({ min: -5, max: 2 ** 40 }) },
      put: {
        id: bytes(20, 20),
        token: bytes(0, 20),
        v: fc.oneof(bytes(0, 1100), fc.dictionary(fc.string({ maxLength: 4 }), scalar, { maxKeys: 4 })),
        k: bytes(32, 32),
        sig: bytes(64, 64),
        seq: fc.integer({ min: -5, max: 2 ** 40 }),
        cas: fc.integer(),
        salt: bytes(0, 80),
      },
      vote: { id: bytes(20, 20), target: bytes(20, 20) },
    };
    const query = fc.constantFrom(...Object.keys(templates)).chain((method) =>
      fc.record({
        t: field(bytes(1, 4)),
        y: fc.oneof(fc.constant('q'), anything),
        q: fc.oneof(fc.constant(method), anything),
        a: fc.oneof(
          { weight: 9, arbitrary: fc.record(Object.fromEntries(Object.entries(templates[method]!).map(([k, v]) => [k, field(v)]))) },
          anything,
        ),
      }),
    );
    const structured = fc.sample(query, { numRuns: 10_000, seed: SEED }).map((m) => bencode.encode(strip(m)));
    // Damaged datagrams: valid ones with bytes flipped, cut short, or digits turned negative.
    const damaged = fc
      .sample(
        fc.record({
          index: fc.nat(9_999),
          at: fc.nat(400),
          byte: fc.constantFrom(0x2d, 0x30, 0x3a, 0x64, 0x65, 0x69, 0x6c, 0xff),
          cut: fc.boolean(),
        }),
        { numRuns: 2_000, seed: SEED + 1 },
      )
      .map(({ index, at, byte, cut }) => {
        const copy = Buffer.from(structured[index]!);
        const i = at % copy.length;
        if (cut) return copy.subarray(0, i);
        copy[i] = byte;
        return copy;
      });
    const datagrams = [...structured, ...damaged];
    const start = node.dht.inbound.received;
    for (let i = 0; i < datagrams.length; i += 200) {
      await Promise.all(datagrams.slice(i, i + 200).map((d) => client.send(node.dht.port, d)));
      await received(node, start + Math.min(i + 200, datagrams.length));
    }
    await answersGet(client, node);
    assert.equal(node.dht.inbound.received - start - 1, datagrams.length);
    assert.equal(node.dht.inbound.handlerFailures, 0, 'every datagram the library saw was one it can handle');
    assert.ok(dropped(node) > datagrams.length / 2, `dropped ${dropped(node)} of ${datagrams.length}`);
  });

  it('drops hostile responses to its own lookups and keeps working', async (t) => {
    const hostile = await rawKrpc(t);
    const node = await startTestNode(t, { 'node.node_type': 'public', 'dht.bootstrap_nodes': `127.0.0.1:${hostile.port}` });
    // Compact node info that points back at the hostile node only (nothing beyond loopback).
    const selfNode = (nodeId: Uint8Array) => Buffer.concat([Buffer.from(nodeId), Buffer.from([127, 0, 0, 1]), portBytes(hostile.port)]);
    const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
    const scalar = fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), bytes(0, 25), fc.constant(0));
    const wrong = fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), scalar, { maxKeys: 3 }));
    const field = (right: fc.Arbitrary<unknown>) => fc.oneof(right, wrong, fc.constant(undefined));
    const r = fc.record({
      id: field(bytes(20, 20)),
      nodes: field(fc.array(bytes(20, 20), { minLength: 1, maxLength: 3 }).map((ids) => Buffer.concat(ids.map(selfNode)))),
      values: field(fc.array(fc.constant(Buffer.concat([Buffer.from([127, 0, 0, 1]), portBytes(hostile.port)])), { maxLength: 2 })),
      token: field(bytes(1, 20)),
      v: field(fc.dictionary(fc.string({ maxLength: 4 }), scalar, { maxKeys: 3 })),
      k: field(bytes(32, 32)),
      sig: field(bytes(64, 64)),
      seq: field(fc.integer({ min: -3, max: 2 ** 40 })),
    });
    const reply = fc.oneof(
      { weight: 8, arbitrary: fc.record({ y: fc.oneof(fc.constant('r'), wrong), r: fc.oneof({ weight: 9, arbitrary: r }, wrong) }) },
      { weight: 1, arbitrary: fc.record({ y: fc.constant('e'), e: fc.oneof(fc.tuple(fc.integer(), fc.string()), wrong) }) },
    );
    const replies = fc.sample(reply, { numRuns: 3_000, seed: SEED + 2 });
    let answered = 0;
    const honestId = id();
    hostile.answerQueries((message) => {
      const next = replies[answered];
      if (!next) return [];
      answered += 1;
      // The hostile answer, then a well-formed one for the same transaction: when the first is
      // dropped the query still completes at once instead of waiting for its timeout.
      const wellFormed = { t: message.t, y: 'r', r: { id: honestId, token: Buffer.from('tk'), nodes: selfNode(id()) } };
      return [bencode.encode(strip({ t: message.t, ...next })), bencode.encode(wellFormed)];
    });
    const deadline = Date.now() + 60_000;
    while (answered < replies.length && Date.now() < deadline) {
      await Promise.all(
        Array.from({ length: 8 }, () => [
          node.dht.getMutable(randomBytes(32)).catch(() => null),
          node.dht.lookup(randomBytes(20)).catch(() => []),
        ]).flat(),
      );
    }
    assert.equal(answered, replies.length, 'the node kept querying the hostile node');
    assert.ok(node.dht.inbound.dropped.response > 0, 'hostile responses were dropped');
    assert.equal(node.dht.inbound.handlerFailures, 0, 'every response the library saw was one it can handle');
    const client = await rawKrpc(t);
    await answersGet(client, node);
  });
});

describe('DHT: strict KRPC decoding', () => {
  it('decodes what it accepts exactly as the library does, and refuses what would hang or crash it', () => {
    const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        fc.integer(),
        fc.uint8Array({ maxLength: 20 }),
        fc.array(tie('v'), { maxLength: 3 }),
        fc.dictionary(fc.string({ maxLength: 5 }), tie('v'), { maxKeys: 3 }),
      ),
    })).v;
    let accepted = 0;
    fc.assert(
      fc.property(value, fc.nat(), fc.integer({ min: 0, max: 255 }), (v, at, byte) => {
        const encoded = Buffer.from(bencode.encode(v));
        const damaged = Buffer.from(encoded);
        if (damaged.length > 0) damaged[at % damaged.length] = byte;
        for (const datagram of [encoded, damaged]) {
          let ours: unknown;
          try {
            ours = decodeKrpc(datagram);
          } catch (error) {
            assert.ok(error instanceof KrpcDecodeError);
            continue;
          }
          accepted += 1;
          assert.deepEqual(normalise(ours), normalise(libraryDecode(datagram)));
        }
      }),
      { numRuns: 3000, seed: SEED },
    );
    assert.ok(accepted > 3000, `${accepted} datagrams accepted`);
    for (const hostile of [
      'd-3:e',
      'l-1:e',
      `${'l'.repeat(20)}${'e'.repeat(20)}`,
      'i01e',
      '01:a',
      'i1ejunk',
      'd1:ai1e1:ai2ee',
      'd9:__proto__i1ee',
      '5:ab',
    ]) {
      assert.throws(() => decodeKrpc(Buffer.from(hostile)), KrpcDecodeError, hostile);
    }
  });
});

describe('DHT: routing-table flood from one socket', () => {
  it('holds one id per address and at most MAX_IDS_PER_IP per public IP', async (t) => {
    // A lone DHT node whose table is filled by hand (TEST-NET-3 addresses, never dialled: the
    // node is stopped before any lookup or refresh could run).
    const dht = new MainlineDht({ nodeId: id(), bootstrap: [], host: '127.0.0.1', port: 0, logger: createLogger('silent') });
    await dht.start();
    t.after(() => dht.stop());
    const rpc = (dht as unknown as { dht: { _rpc: { _addNode(n: object): void } } }).dht._rpc;
    for (let port = 1; port <= MAX_IDS_PER_IP + 4; port++) rpc._addNode({ id: id(), host: '203.0.113.7', port });
    rpc._addNode({ id: id(), host: '203.0.113.8', port: 1 });
    rpc._addNode({ id: id(), host: '203.0.113.8', port: 1 });
    for (let i = 0; i < 3; i++) rpc._addNode({ id: id(), host: '127.0.0.1', port: 40_000 + i });
    const hosts = dht.contacts().map((c) => c.host);
    assert.equal(hosts.filter((h) => h === '203.0.113.7').length, MAX_IDS_PER_IP);
    assert.equal(hosts.filter((h) => h === '203.0.113.8').length, 1, 'a second id for one address is refused');
    assert.equal(hosts.filter((h) => h === '127.0.0.1').length, 3, 'loopback (BEP 42 exempt) keeps the per-address rule only');
    assert.equal(dht.routingTableAdmission.refused, 5);
  });

  it('admits no id from a get_peers/announce flood with random ids, and publishing reaches honest nodes during and after it', async (t) => {
    const dht = await startPrivateDht(10);
    t.after(() => dht.stop());
    const node = await startTestNode(t, { 'node.node_type': 'public', 'dht.bootstrap_nodes': dht.bootstrapSetting });
    await node.dht.whenReady();
    const honest = new Set(dht.nodes.map((n) => n.nodeId.toString('hex')));
    const sizeBefore = node.dht.routingTableSize;
    assert.ok(sizeBefore >= 5, `routing table ${sizeBefore} before the flood`);

    const attacker = await rawKrpc(t);
    const floodIds = new Set<string>();
    const flood = async (count: number) => {
      const start = node.dht.inbound.received;
      for (let i = 0; i < count; i += 200) {
        const batch = Array.from({ length: Math.min(200, count - i) }, (_, j) => {
          const sender = id();
          floodIds.add(sender.toString('hex'));
          const a =
            (i + j) % 2 === 0 ? { id: sender, info_hash: id() } : { id: sender, info_hash: id(), port: 6881, token: randomBytes(20) };
          return bencode.encode({ t: randomBytes(2), y: 'q', q: (i + j) % 2 === 0 ? 'get_peers' : 'announce_peer', a });
        });
        await Promise.all(batch.map((d) => attacker.send(node.dht.port, d)));
        await received(node, start + i + batch.length);
      }
    };
    const [during] = await Promise.all([node.metadataPublisher.publish('during the flood'), flood(4000)]);
    await flood(2000);
    const after = await node.metadataPublisher.publish('after the flood');

    const table = node.dht.contacts().map((c) => c.id?.toString('hex') ?? '');
    assert.equal(table.filter((i) => floodIds.has(i)).length, 0, 'no flood id in the routing table');
    assert.ok(
      table.every((i) => honest.has(i)),
      'only honest nodes in the routing table',
    );
    const pings = attacker.queries.filter((q) => Buffer.from(q.message.q as Uint8Array).toString() === 'ping').length;
    assert.equal(pings, 1, 'the flooding socket was pinged once to verify it, not once per datagram');
    assert.ok(during.nodesAccepted >= 5, `during the flood ${during.nodesAccepted} nodes took our metadata`);
    assert.ok(after.nodesAccepted >= 5, `after the flood ${after.nodesAccepted} nodes took our metadata`);
  });
});

function portBytes(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

/** Byte strings as plain arrays and dicts as plain objects, to compare two decoders' results. */
function normalise(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(normalise);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
  return value;
}

/** Drops undefined fields (absent in the datagram). */
function strip(value: unknown): unknown {
  if (value instanceof Uint8Array || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(strip);
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, strip(v)]),
  );
}
