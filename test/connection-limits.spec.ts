import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventBus } from '../src/node/events/bus.ts';
import type { NodeEventMap } from '../src/node/events/types.ts';
import { addressKey, networkKey } from '../src/node/lifecycle/connection-groups.ts';
import { type ConnectionLimitSettings, InboundLimiter } from '../src/node/lifecycle/connection-limits.ts';
import { type PruneCandidate, choosePruneVictim } from '../src/node/lifecycle/connection-pruner.ts';
import { LimitCounters } from '../src/node/lifecycle/limit-counters.ts';
import { createLogger } from '../src/node/base/logger.ts';
import type { RemoteNode } from '../src/node/node.ts';
import { PeerConnectionLimitError } from '../src/node/quic/errors.ts';
import { initialKeys, sealInitialPacket } from '../src/node/quic/initial-close.ts';
import type { LimitReason } from '../src/node/quic/refusal.ts';
import type { PeerConnection } from '../src/node/quic/types.ts';
import { parseIpPrefix, prefixContains } from '../src/node/util/ip-prefix.ts';
import { TokenBuckets } from '../src/node/util/token-buckets.ts';
import { startTestDaemon, startTestNode, until } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { type RawPeer, exchangeAs, startRawPeer } from './helpers/raw-peer.ts';

type TestContext = { after(fn: () => unknown): void };

/**
 * The inbound connection limits against real nodes on loopback. Linux answers on all of
 * 127.0.0.0/8, so attackers and honest peers sit on different addresses and /24s (127.0.0.2 and
 * 127.0.1.1 are different networks); the allow-list, loopback by default, is cleared so that the
 * limits apply.
 */
describe('connection limits: per address and network, pending, rate, pruning', { timeout: 300_000 }, () => {
  // No DHT: nothing here needs one, and topic discovery would add dials of its own.
  const settings = (extra: Record<string, string> = {}) => ({ 'node.node_type': 'public', ...extra });
  const limited = (extra: Record<string, string> = {}) => settings({ 'connection_limits.allowlist': '', ...extra });

  const addressOf = (node: RemoteNode) => ({ host: '127.0.0.1', port: node.quicPort });

  /** Dials `node` from a fresh raw peer on `host` and completes the identity exchange. */
  async function connectRaw(t: TestContext, node: RemoteNode, host: string): Promise<{ peer: RawPeer; connection: PeerConnection }> {
    const peer = await startRawPeer(t, host);
    const connection = await peer.transport.dial(addressOf(node));
    await exchangeAs(peer, connection);
    return { peer, connection };
  }

  /** The dial from a fresh raw peer on `host` is refused, for `reason`. */
  async function assertRefused(t: TestContext, node: RemoteNode, host: string, reason: LimitReason): Promise<void> {
    const peer = await startRawPeer(t, host);
    await assert.rejects(peer.transport.dial(addressOf(node)), (error: unknown) => {
      assert.ok(error instanceof PeerConnectionLimitError, `expected a PeerConnectionLimitError, got ${String(error)}`);
      assert.equal(error.code, 'PEER_CONNECTION_LIMIT');
      assert.equal(error.reason, reason);
      return true;
    });
  }

  const refusals = (node: RemoteNode, reason: LimitReason) =>
    node.connectionLimits.stats().refusals.find((r) => r.reason === reason)?.count ?? 0;

  const inboundFrom = (node: RemoteNode, host: string) =>
    node.connections.list().filter((c) => c.direction === 'inbound' && c.remoteAddress.startsWith(`${host}:`) && c.state !== 'CLOSED');

  it('a Sybil flood of 200 identities from one IP gets at most the per-IP limit; a peer from another /24 still connects', async (t) => {
    const target = await startTestNode(t, limited());
    const flood = await Promise.all(Array.from({ length: 200 }, () => startRawPeer(t, '127.0.0.2')));
    const outcomes = await Promise.allSettled(
      flood.map(async (peer) => {
        const connection = await peer.transport.dial(addressOf(target));
        await exchangeAs(peer, connection);
        return connection;
      }),
    );
    const admitted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
    const maxPerIp = 8; // the default of [connection_limits] max_inbound_per_ip
    assert.ok(admitted.length >= 1 && admitted.length <= maxPerIp, `${admitted.length} flood connections got in (limit ${maxPerIp})`);
    assert.equal(admitted.length + refused.length, 200);
    for (const error of refused) assert.ok(error instanceof PeerConnectionLimitError, `a flood dial failed untyped: ${String(error)}`);
    const reasons = new Set(refused.map((e) => (e as PeerConnectionLimitError).reason));
    for (const reason of reasons) assert.ok(['ip', 'pending_ip', 'rate'].includes(reason), `refused for ${reason}`);
    assert.ok(inboundFrom(target, '127.0.0.2').length <= maxPerIp);
    // The refusing side counted every refusal.
    const counted = target.connectionLimits.stats().refusals.reduce((sum, r) => sum + r.count, 0);
    assert.equal(counted, refused.length);

    const honest = await startTestNode(t, settings({ 'node.listen_host': '127.0.1.1' }));
    const connection = await honest.connections.connect(addressOf(target), target.peerId);
    assert.equal(connection.peerId, target.peerId);
    await until([target], () => target.connections.isConnected(honest.peerId));
  });

  it('refuses a new connection from an address while too many of its own are pending, and again once one completes', async (t) => {
    const target = await startTestNode(t, limited({ 'connection_limits.max_pending_per_ip': '2' }));
    // Through TLS but no identity exchange: both stay pending.
    const first = await startRawPeer(t, '127.0.0.2');
    const firstConnection = await first.transport.dial(addressOf(target));
    const second = await startRawPeer(t, '127.0.0.2');
    await second.transport.dial(addressOf(target));
    await assertRefused(t, target, '127.0.0.2', 'pending_ip');
    assert.equal(refusals(target, 'pending_ip'), 1);
    // Another address is not affected…
    await connectRaw(t, target, '127.0.0.3');
    // …and once one exchange completes, the address has a pending slot again.
    await exchangeAs(first, firstConnection);
    await connectRaw(t, target, '127.0.0.2');
    assert.equal(target.connectionLimits.stats().pending, 1, 'the second raw peer is still pending');
  });

  it('refuses new connections while too many are pending overall', async (t) => {
    const target = await startTestNode(t, limited({ 'connection_limits.max_pending': '2' }));
    for (const host of ['127.0.0.2', '127.0.0.3']) await (await startRawPeer(t, host)).transport.dial(addressOf(target));
    await assertRefused(t, target, '127.0.1.1', 'pending');
    assert.equal(refusals(target, 'pending'), 1);
    assert.equal(target.connectionLimits.stats().pending, 2);
  });

  it('rate-limits new connections per address with a token bucket', async (t) => {
    const target = await startTestNode(
      t,
      limited({ 'connection_limits.inbound_burst_per_ip': '3', 'connection_limits.inbound_rate_per_ip': '1' }),
    );
    // Each closes before the next: only the rate can refuse the fourth.
    for (let i = 0; i < 3; i += 1) {
      const { connection } = await connectRaw(t, target, '127.0.0.2');
      await connection.close('done');
      await until([target], () => inboundFrom(target, '127.0.0.2').length === 0);
    }
    await assertRefused(t, target, '127.0.0.2', 'rate');
    assert.equal(refusals(target, 'rate'), 1);
    await connectRaw(t, target, '127.0.0.3');
  });

  it('limits connections per IP and per /24, and frees the slots as connections close', async (t) => {
    const target = await startTestNode(
      t,
      limited({ 'connection_limits.max_inbound_per_ip': '2', 'connection_limits.max_inbound_per_subnet': '3' }),
    );
    const { connection: a } = await connectRaw(t, target, '127.0.0.2');
    await connectRaw(t, target, '127.0.0.2');
    await assertRefused(t, target, '127.0.0.2', 'ip');
    await connectRaw(t, target, '127.0.0.3');
    await assertRefused(t, target, '127.0.0.4', 'subnet');
    await connectRaw(t, target, '127.0.1.1');
    assert.equal(refusals(target, 'ip'), 1);
    assert.equal(refusals(target, 'subnet'), 1);
    await a.close('done');
    await until([target], () => target.connectionLimits.stats().inbound === 3);
    await connectRaw(t, target, '127.0.0.2');
  });

  it('at capacity prunes the flood from the most crowded /24 for newcomers, never the peers it relays for', async (t) => {
    const capacity = 6;
    const relay = await startTestNode(
      t,
      limited({
        'relay.relay_mode': 'true',
        'relay.relay_keepalive_interval': '1',
        'quic.max_connections': String(capacity),
        // Only the node's capacity limits this test.
        'connection_limits.max_inbound_per_ip': '100',
        'connection_limits.max_inbound_per_subnet': '100',
        'connection_limits.inbound_burst_per_ip': '100',
      }),
    );
    // Two NAT nodes on the flood's /24 register with the relay: peers with history.
    const nats = await Promise.all(
      ['127.0.0.2', '127.0.0.3'].map((host) =>
        startTestNode(
          t,
          settings({
            'node.node_type': 'private',
            'node.listen_host': host,
            'peer_discovery.bootstrap_peers': `127.0.0.1:${relay.quicPort}`,
          }),
        ),
      ),
    );
    const served = () => nats.every((nat) => relay.relayServer.list().some((s) => s.peerId === nat.peerId));
    await until([relay, ...nats], served);
    for (const nat of nats) nat.discovery.stop();
    const flood: PeerConnection[] = [];
    while (relay.connections.size < capacity) flood.push((await connectRaw(t, relay, '127.0.0.2')).connection);
    await assertRefused(t, relay, '127.0.0.2', 'capacity');

    // Each newcomer from its own /24 takes the place of a flood connection, until only the two
    // protected NAT nodes are left of that /24. That /24 is still the most crowded, but the next
    // newcomer finds nothing there to prune.
    const newcomers = ['127.0.1.1', '127.0.2.1', '127.0.3.1', '127.0.4.1'];
    assert.equal(flood.length, newcomers.length);
    for (const host of newcomers) await connectRaw(t, relay, host);
    const reasons = await Promise.all(flood.map(async (c) => (await c.closed, c.remoteRefusal)));
    assert.deepEqual(
      reasons,
      flood.map(() => 'pruned'),
    );
    assert.equal(refusals(relay, 'pruned'), flood.length);
    await assertRefused(t, relay, '127.0.5.1', 'capacity');
    for (const nat of nats) {
      assert.ok(relay.connections.isConnected(nat.peerId), 'a peer the relay serves kept its connection');
      assert.deepEqual(relay.connections.protection.list().find((p) => p.peerId === nat.peerId)?.tags, ['relayed-peer']);
    }
    assert.ok(served());
    for (const host of newcomers) assert.equal(inboundFrom(relay, host).length, 1);
  });

  it('a transport full after the handshake closes with the limit code, and the dialer tells it apart', async (t) => {
    // No limits before TLS here: the transport's own cap after the handshake is what refuses.
    const full = await startRawPeer(t, '127.0.0.1', { maxConnections: 1 });
    full.transport.onConnection(() => {});
    const address = { host: '127.0.0.1', port: full.transport.port };
    await (await startRawPeer(t)).transport.dial(address);
    const second = await (await startRawPeer(t)).transport.dial(address);
    await second.closed;
    assert.equal(second.remoteRefusal, 'capacity');
    const node = await startTestNode(t, settings());
    await assert.rejects(node.connections.connect(address), (error: unknown) => {
      assert.ok(error instanceof PeerConnectionLimitError, String(error));
      assert.equal(error.reason, 'capacity');
      return true;
    });
  });

  it('connectPeer through GraphQL to a node at capacity answers PEER_CONNECTION_LIMIT, and the node counts it', async (t) => {
    const full = await startTestDaemon(t, settings({ 'quic.max_connections': '1' }));
    const first = await startTestNode(t, settings());
    await first.connections.connect({ host: '127.0.0.1', port: full.node.quicPort }, full.node.peerId);
    const dialer = await startTestDaemon(t, settings());
    const result = await gql(dialer.api.url, `mutation { connectPeer(address: "127.0.0.1:${full.node.quicPort}") { peerId } }`);
    assert.equal(result.data?.connectPeer ?? null, null);
    assert.equal(result.errors?.[0]?.extensions?.code, 'PEER_CONNECTION_LIMIT', JSON.stringify(result.errors));
    assert.equal(result.errors?.[0]?.extensions?.limit, 'CAPACITY');
    const stats = await gql(full.api.url, '{ connectionLimits { refusals { reason count } pending inbound } }');
    assert.equal(stats.errors, undefined, JSON.stringify(stats.errors));
    const capacityCount = stats.data?.connectionLimits.refusals.find((r: { reason: string }) => r.reason === 'CAPACITY')?.count;
    assert.equal(capacityCount, 1);
  });
});

describe('connection limits: the parts', () => {
  it('seals a server Initial exactly as RFC 9001 appendix A.3 does', () => {
    const keys = initialKeys(Buffer.from('8394c8f03e515708', 'hex'), 'server');
    assert.equal(keys.key.toString('hex'), 'cf3a5331653c364c88f0f379b6067e37');
    assert.equal(keys.iv.toString('hex'), '0ac1493ca1905853b0bba03e');
    assert.equal(keys.hp.toString('hex'), 'c206b8d9b9f0f37644430b490eeaa314');
    const payload = Buffer.from(
      '02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf73988cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c940d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00020304',
      'hex',
    );
    const packet = sealInitialPacket(
      { version: 1, dcid: Buffer.alloc(0), scid: Buffer.from('f067a5502a4262b5', 'hex'), packetNumber: 1, packetNumberLength: 2, payload },
      keys,
    );
    assert.equal(
      packet.toString('hex'),
      'cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc42158407dd074ee',
    );
  });

  it('groups addresses by IPv4 /24 and IPv6 /48 (an IPv6 host is its /64), and matches allow-list prefixes', () => {
    assert.equal(networkKey('10.1.2.3'), '10.1.2.0/24');
    assert.equal(networkKey('::ffff:10.1.2.3'), '10.1.2.0/24');
    assert.equal(addressKey('10.1.2.3'), '10.1.2.3/32');
    assert.equal(networkKey('2001:db8:aa:bb::1'), '2001:db8:aa:0:0:0:0:0/48');
    assert.equal(addressKey('2001:db8:aa:bb::1'), addressKey('2001:db8:aa:bb:ffff::2'));
    const loopback = parseIpPrefix('127.0.0.0/8');
    assert.ok(loopback && prefixContains(loopback, '127.1.2.3') && !prefixContains(loopback, '128.0.0.1'));
    const v6 = parseIpPrefix('::1/128');
    assert.ok(v6 && prefixContains(v6, '::1') && !prefixContains(v6, '::2') && !prefixContains(v6, '127.0.0.1'));
    for (const bad of ['10.0.0.0/33', '10.0.0', 'x::y', '10.0.0.0/8/1', '::1/129']) assert.equal(parseIpPrefix(bad), undefined, bad);
  });

  it('token buckets allow a burst, refill at their rate, and forget refilled addresses', () => {
    let now = 0;
    const buckets = new TokenBuckets({ burst: 2, perSecond: 1, maxKeys: 3, now: () => now });
    assert.ok(buckets.take('a') && buckets.take('a'));
    assert.equal(buckets.take('a'), false, 'burst spent');
    now = 999;
    assert.equal(buckets.take('a'), false, 'a refused take does not count, and no token yet');
    now = 1000;
    assert.ok(buckets.take('a'));
    for (const key of ['b', 'c', 'd', 'e']) buckets.take(key);
    assert.ok(buckets.size <= 3, 'bounded');
    now = 10_000;
    buckets.take('f');
    assert.equal(buckets.size, 1, 'refilled buckets are forgotten');
  });

  it('prunes an unprotected inbound connection from the most crowded network, newest first, never protected or outbound ones', () => {
    let id = 0;
    const at = (s: number) => new Date(s * 1000);
    const c = (group: string, extra: Partial<PruneCandidate> = {}): PruneCandidate => ({
      id: String(++id),
      group,
      inbound: true,
      protected: false,
      activeStreams: 0,
      openedAt: at(id),
      ...extra,
    });
    const crowd = [c('A', { protected: true }), c('A'), c('A'), c('A', { activeStreams: 2 }), c('B'), c('C', { inbound: false })];
    assert.equal(choosePruneVictim(crowd, 'D')?.id, '3', 'newest idle one of A');
    assert.equal(choosePruneVictim(crowd, 'B')?.id, '3', 'A has 4, B 1: still two more');
    assert.equal(choosePruneVictim([c('A'), c('A'), c('B')], 'B'), undefined, 'no turn-taking: 2 is not 2 more than 1');
    assert.equal(choosePruneVictim([c('A', { protected: true }), c('A', { protected: true })], 'D'), undefined);
    assert.equal(choosePruneVictim([c('A', { inbound: false }), c('A', { inbound: false })], 'D'), undefined);
  });

  it('the limiter counts each admitted connection until released, and pending until its exchange', () => {
    const bus = new EventBus<NodeEventMap>(() => {});
    let room = true;
    const settings: ConnectionLimitSettings = {
      maxInboundPerIp: 2,
      maxInboundPerSubnet: 3,
      maxPendingPerIp: 1,
      maxPending: 10,
      inboundPerMinutePerIp: 60_000,
      inboundBurstPerIp: 100,
      allowlist: [parseIpPrefix('10.9.0.0/16')!],
    };
    const limiter = new InboundLimiter({
      settings,
      bus,
      counters: new LimitCounters(),
      logger: createLogger('silent'),
      capacity: { makeRoomFor: () => room },
    });
    const events: string[] = [];
    bus.on('connection.limited', (e) => events.push(`${e.payload.remoteAddress} ${e.payload.reason}`));
    limiter.start();
    assert.equal(limiter.admit('10.0.0.1', 'a'), undefined);
    assert.equal(limiter.admit('10.0.0.1', 'b'), 'pending_ip');
    /** The exchange on connection `connectionId` from `remoteAddress` is done (what frees its pending slot). */
    const exchanged = (peerId: string, connectionId: string, remoteAddress: string) =>
      bus.emit('peer.exchanged', {
        peerId,
        connectionId,
        remoteAddress,
        observedAddress: null,
        dhtPort: 0,
        peersReceived: 0,
        peersDiscovered: 0,
        peersDropped: 0,
        peersRefused: 0,
      });
    limiter.handshakeDone('a');
    assert.equal(limiter.admit('10.0.0.1', 'b'), 'pending_ip', 'still in the exchange');
    exchanged('p', 'a', '10.0.0.1:1');
    assert.equal(limiter.admit('10.0.0.1', 'b'), undefined);
    exchanged('q', 'b', '10.0.0.1:2');
    assert.equal(limiter.admit('10.0.0.1', 'c'), 'ip');
    assert.equal(limiter.admit('10.0.0.2', 'c'), undefined);
    assert.equal(limiter.admit('10.0.0.3', 'd'), 'subnet');
    assert.equal(limiter.admit('10.9.1.1', 'x'), undefined, 'allow-listed');
    assert.equal(limiter.admit('10.9.1.1', 'y'), undefined, 'allow-listed: no per-address limit');
    room = false;
    assert.equal(limiter.admit('10.9.1.1', 'z'), 'capacity', 'allow-listed addresses still need a slot');
    room = true;
    limiter.release('a');
    limiter.release('a');
    assert.equal(limiter.stats().inbound, 4);
    assert.equal(limiter.admit('10.0.0.1', 'e'), undefined, 'a released slot is free again (released once only)');
    const counts = Object.fromEntries(limiter.stats().refusals.map((r) => [r.reason, r.count]));
    assert.deepEqual(counts, { ip: 1, subnet: 1, pending_ip: 2, pending: 0, rate: 0, capacity: 1, pruned: 0 });
    // Both pending_ip refusals counted, one event: a flood does not flood the event stream.
    assert.deepEqual(events, ['10.0.0.1 pending_ip', '10.0.0.1 ip', '10.0.0.3 subnet', '10.9.1.1 capacity']);
  });
});
