import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostPort } from '../src/node/base/address.ts';
import { peerIdFromPublicKey } from '../src/node/base/peer-id.ts';
import {
  BOOTSTRAP_MAX_BACKOFF_MS,
  DiscoveryService,
  type DiscoveryServiceOptions,
  NEWS_DELAY_MS,
  NEWS_FANOUT,
} from '../src/node/discovery/discovery-service.ts';
import type { EventBus } from '../src/node/events/bus.ts';
import type { NodeEventMap } from '../src/node/events/types.ts';
import type { FetchedMetadata, MetadataFetcher } from '../src/node/metadata/metadata-fetcher.ts';
import { type ManagerUnderTest, connectionManagerUnderTest } from './helpers/components.ts';
import { MemoryNetwork } from './helpers/memory-transport.ts';
import { TOPIC, testMetadata } from './helpers/peers.ts';

type TestContext = Parameters<typeof connectionManagerUnderTest>[0];

const at = (address: HostPort) => `${address.host}:${address.port}`;

/**
 * The DHT as discovery reads it: the metadata of the peers `publish` was told about (public nodes
 * at their memory address), and which peers were looked up or invalidated.
 */
class FakeMetadataFetcher implements Pick<MetadataFetcher, 'fetch' | 'invalidate'> {
  private readonly published = new Map<string, HostPort>();
  readonly lookedUp: string[] = [];
  readonly invalidated: string[] = [];

  publish(peer: ManagerUnderTest): void {
    this.published.set(peer.identity.peerId, peer.transport.address);
  }

  fetch(publicKey: Uint8Array): Promise<FetchedMetadata | null> {
    const peerId = peerIdFromPublicKey(publicKey);
    this.lookedUp.push(peerId);
    const address = this.published.get(peerId);
    if (!address) return Promise.resolve(null);
    const metadata = testMetadata(peerId, { publicIp: address.host, publicPort: address.port, timestamp: Math.floor(Date.now() / 1000) });
    return Promise.resolve({ metadata, sequence: 1, signature: Buffer.alloc(64), fetchedAt: new Date(), cached: false });
  }

  invalidate(peerId: string): void {
    this.invalidated.push(peerId);
  }
}

interface DiscoveryUnderTest extends ManagerUnderTest {
  readonly discovery: DiscoveryService;
  readonly fetcher: FakeMetadataFetcher;
  /** `host:port` of every dial, in order. */
  readonly dials: readonly string[];
}

/** A DiscoveryService alone over a connection manager on `network`, with a fake DHT; started, stopped after the test. */
function discoveryUnderTest(
  t: TestContext,
  network: MemoryNetwork,
  options: { host: string } & Partial<Pick<DiscoveryServiceOptions, 'bootstrap' | 'targetConnections' | 'isOwnAddress' | 'intervalMs'>>,
): DiscoveryUnderTest {
  const manager = connectionManagerUnderTest(t, network, { host: options.host });
  const fetcher = new FakeMetadataFetcher();
  const discovery = new DiscoveryService({
    connections: manager.connections,
    fetcher,
    knownPeers: manager.knownPeers,
    bus: manager.bus,
    logger: manager.logger,
    ownPeerId: manager.identity.peerId,
    bootstrap: options.bootstrap ?? [],
    // Periodic rounds only when a test runs one.
    intervalMs: options.intervalMs ?? 3_600_000,
    maxConnections: 16,
    targetConnections: options.targetConnections ?? 8,
    isOwnAddress: options.isOwnAddress ?? (() => false),
    connectRelayed: () => Promise.reject(new Error('no relays in these tests')),
  });
  discovery.start();
  t.after(() => discovery.stop());
  return {
    ...manager,
    discovery,
    fetcher,
    get dials() {
      return manager.transport.dialled.map(at);
    },
  };
}

/** Resolves once `condition` holds, re-checked on every event of `bus`; fails after `ms` (the bound also keeps the loop alive). */
function until(bus: EventBus<NodeEventMap>, condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (condition()) return resolve();
    const finish = (error?: Error) => {
      clearTimeout(timer);
      off();
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`${what}: not within ${ms} ms`)), ms);
    const off = bus.onAny(() => {
      if (condition()) finish();
    });
  });
}

/** One turn of the event loop: every in-memory step (promises only, no timers) started before has run. */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Stores `peers` in `d`'s known peers: exchanged with (verified), or only heard of (hearsay, from `via`). */
function know(d: ManagerUnderTest, peers: readonly ManagerUnderTest[], as: 'verified' | 'hearsay', via?: ManagerUnderTest): void {
  d.knownPeers.record(
    peers.map((p) => ({
      publicKey: p.identity.publicKey,
      dhtNodeId: null,
      isRelay: false,
      topic: TOPIC,
      source: as === 'verified' ? ('identity_exchange' as const) : ('peer_exchange' as const),
    })),
    via?.identity.peerId,
  );
}

/** The retry delays discovery logged for `target` (`host:port`), in order. */
function retries(d: ManagerUnderTest, target: string): unknown[] {
  return d.logs.filter((l) => l.msg === 'dial failed' && l['target'] === `addr:${target}`).map((l) => l['retryInMs']);
}

describe('discovery alone, over connection managers on an in-memory network', () => {
  it('redials a bootstrap address with backoff until it answers, then converges', async (t) => {
    const network = new MemoryNetwork();
    // The bootstrap node exists (its address is known) but is not up yet: dials to it fail.
    const bootstrap = connectionManagerUnderTest(t, network, { host: '198.51.100.1', start: false });
    const d = discoveryUnderTest(t, network, { host: '192.0.2.1', bootstrap: [bootstrap.transport.address] });
    const target = at(bootstrap.transport.address);
    let failedDials = 0;
    d.bus.on('connection.state.changed', (e) => {
      if (e.payload.to === 'CLOSED' && e.payload.remoteAddress === target) failedDials += 1;
    });
    await until(d.bus, () => failedDials === 2, 'two failed dials');
    await settled();
    assert.deepEqual(retries(d, target), [1_000, 2_000], 'exponential backoff from the first failure');

    bootstrap.connections.start();
    await until(d.bus, () => d.connections.isConnected(bootstrap.identity.peerId), 'connected once the bootstrap node is up');
    assert.equal(retries(d, target).length, 2, 'the third dial answered');
    assert.equal(d.dials.filter((a) => a === target).length, 3, 'dialled at start, redialled twice');
    assert.ok(bootstrap.connections.isConnected(d.identity.peerId));
  });

  it('caps the backoff for bootstrap peers and retries them for ever; other addresses back off further and give up', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: Date.now() });
    const network = new MemoryNetwork();
    const bootstrap: HostPort = { host: '198.51.100.1', port: 1 };
    const topicPeer: HostPort = { host: '203.0.113.1', port: 1 };
    const d = discoveryUnderTest(t, network, { host: '192.0.2.1', bootstrap: [bootstrap] });
    d.bus.emit('dht.topic.peer', { address: at(topicPeer), topic: TOPIC });
    // Nothing listens at either: each dial fails at once (in memory); only the backoff timers wait.
    for (let second = 0; second < 300; second++) {
      await settled();
      t.mock.timers.tick(1_000);
    }
    await settled();
    const capped = retries(d, at(bootstrap));
    assert.deepEqual(capped.slice(0, 6), [1_000, 2_000, 4_000, 8_000, BOOTSTRAP_MAX_BACKOFF_MS, BOOTSTRAP_MAX_BACKOFF_MS]);
    assert.ok(capped.length > 20, `a bootstrap peer is retried every ${BOOTSTRAP_MAX_BACKOFF_MS} ms: ${capped.length} dials in 300 s`);
    assert.ok(
      capped.every((ms) => typeof ms === 'number' && ms <= BOOTSTRAP_MAX_BACKOFF_MS),
      'never further apart than the cap',
    );
    // 0, 1, 3, 7, 15, 31, 63, 127 s: eight failures, then no retry.
    assert.deepEqual(retries(d, at(topicPeer)), [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000]);
    assert.equal(d.dials.filter((a) => a === at(topicPeer)).length, 8);
  });

  it('redials a bootstrap peer when its retry fires before the wall clock reaches the backoff (a clock stepped back)', async (t) => {
    // Timers and the wall clock apart: a timer may fire a millisecond before Date.now() reaches its
    // time (they are different clocks), and NTP may step the wall clock back.
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    let wallClock = Date.now();
    t.mock.method(Date, 'now', () => wallClock);
    const network = new MemoryNetwork();
    const bootstrap: HostPort = { host: '198.51.100.1', port: 1 };
    const d = discoveryUnderTest(t, network, { host: '192.0.2.1', bootstrap: [bootstrap] });
    await settled();
    assert.deepEqual(retries(d, at(bootstrap)), [1_000]);
    wallClock += 995;
    t.mock.timers.tick(1_000);
    await settled();
    assert.equal(d.dials.filter((a) => a === at(bootstrap)).length, 2, 'the retry dialled');
    assert.deepEqual(retries(d, at(bootstrap)), [1_000, 2_000], 'and the next one is scheduled');
  });

  it('stop() ends the retries: no dial after it', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: Date.now() });
    const network = new MemoryNetwork();
    const bootstrap: HostPort = { host: '198.51.100.1', port: 1 };
    const d = discoveryUnderTest(t, network, { host: '192.0.2.1', bootstrap: [bootstrap] });
    await settled();
    t.mock.timers.tick(1_000);
    await settled();
    assert.equal(d.dials.length, 2, 'dialled at start and retried once');
    d.discovery.stop();
    d.bus.emit('dht.topic.peer', { address: '203.0.113.1:1', topic: TOPIC });
    for (let second = 0; second < 60; second++) {
      t.mock.timers.tick(1_000);
      await settled();
    }
    assert.equal(d.dials.length, 2, 'nothing dialled after stop');
  });

  it('skips its own address in the bootstrap list and on the DHT topic', async (t) => {
    const network = new MemoryNetwork();
    const peer = connectionManagerUnderTest(t, network, { host: '198.51.100.1' });
    // Our transport is the next one on the network: its address is known before it exists.
    const own: HostPort = { host: '192.0.2.1', port: peer.transport.port + 1 };
    const d = discoveryUnderTest(t, network, {
      host: own.host,
      bootstrap: [own, peer.transport.address],
      isOwnAddress: (a) => at(a) === at(own),
    });
    assert.equal(at(d.transport.address), at(own));
    d.bus.emit('dht.topic.peer', { address: at(own), topic: TOPIC });
    await until(d.bus, () => d.connections.isConnected(peer.identity.peerId), 'connected to the other bootstrap peer');
    await settled();
    assert.deepEqual(d.dials, [at(peer.transport.address)], 'never dialled itself');
    assert.ok(d.logs.some((l) => l.msg === 'a bootstrap address is this node: skipped'));
  });

  it('dials verified peers but not hearsay until its metadata verifies it', async (t) => {
    const network = new MemoryNetwork();
    const d = discoveryUnderTest(t, network, { host: '192.0.2.1' });
    const teller = connectionManagerUnderTest(t, network, { host: '198.51.100.1' });
    const verified = connectionManagerUnderTest(t, network, { host: '198.51.100.2' });
    const hearsay = connectionManagerUnderTest(t, network, { host: '203.0.113.1' });
    for (const p of [verified, hearsay]) d.fetcher.publish(p);
    know(d, [verified], 'verified');
    know(d, [hearsay], 'hearsay', teller);
    d.discovery.periodic();
    await until(d.bus, () => d.connections.isConnected(verified.identity.peerId), 'the verified peer dialled');
    await settled();
    assert.deepEqual(d.discovery.pending, { queued: 0, inFlight: 0, window: d.discovery.pending.window });
    assert.equal(d.fetcher.lookedUp.includes(hearsay.identity.peerId), false, 'hearsay not even looked up');
    assert.equal(hearsay.connections.size, 0);

    // Its signed metadata found in the DHT makes it verified: now it is dialled.
    d.knownPeers.markVerified(hearsay.identity.peerId, false, teller.identity.peerId);
    await until(d.bus, () => d.connections.isConnected(hearsay.identity.peerId), 'the verified hearsay dialled');
  });

  it('dials no more peers than targetConnections, from known peers, the DHT topic or DHT verification', async (t) => {
    const network = new MemoryNetwork();
    const d = discoveryUnderTest(t, network, { host: '192.0.2.1', targetConnections: 2 });
    const peers = [1, 2, 3, 4].map((i) => connectionManagerUnderTest(t, network, { host: `198.51.100.${i}` }));
    for (const p of peers) d.fetcher.publish(p);
    know(d, peers, 'verified');
    d.discovery.periodic();
    await until(d.bus, () => peers.filter((p) => d.connections.isConnected(p.identity.peerId)).length === 2, 'two connections');
    await settled();
    const more = connectionManagerUnderTest(t, network, { host: '203.0.113.1' });
    const verifiedLater = connectionManagerUnderTest(t, network, { host: '203.0.113.2' });
    d.fetcher.publish(verifiedLater);
    know(d, [verifiedLater], 'hearsay', peers[0]);
    d.bus.emit('dht.topic.peer', { address: at(more.transport.address), topic: TOPIC });
    d.knownPeers.markVerified(verifiedLater.identity.peerId, false, null);
    d.discovery.periodic();
    await settled();
    assert.equal(d.connections.size, 2);
    assert.deepEqual(d.discovery.pending, { queued: 0, inFlight: 0, window: d.discovery.pending.window });
    assert.equal(d.dials.length, 2, `dialled only two: ${d.dials.join(', ')}`);
    assert.equal(more.connections.size + verifiedLater.connections.size, 0);
    assert.equal(peers.filter((p) => p.connections.size === 0).length, 2);
  });

  it(`passes news of a peer on to NEWS_FANOUT connected peers NEWS_DELAY_MS after learning it`, async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: Date.now() });
    const network = new MemoryNetwork();
    const d = discoveryUnderTest(t, network, { host: '192.0.2.1' });
    const peers = [1, 2, 3, 4].map((i) => connectionManagerUnderTest(t, network, { host: `198.51.100.${i}` }));
    const exchanges = new Map<string, number>();
    for (const p of peers) {
      d.fetcher.publish(p);
      p.bus.on('peer.exchanged', (e) => {
        if (e.payload.peerId === d.identity.peerId) exchanges.set(p.identity.peerId, (exchanges.get(p.identity.peerId) ?? 0) + 1);
      });
    }
    know(d, peers, 'verified');
    // What it learned so far is news too: let that round pass before counting.
    d.discovery.periodic();
    await settled();
    t.mock.timers.tick(NEWS_DELAY_MS);
    await settled();
    assert.equal(
      peers.filter((p) => d.connections.isConnected(p.identity.peerId)).length,
      4,
      'connected to all four (before the first re-exchange timer)',
    );
    const before = new Map(exchanges);

    const newcomer = connectionManagerUnderTest(t, network, { host: '203.0.113.1' });
    know(d, [newcomer], 'verified');
    t.mock.timers.tick(NEWS_DELAY_MS - 1);
    await settled();
    assert.deepEqual(exchanges, before, 'not before NEWS_DELAY_MS');
    t.mock.timers.tick(1);
    await settled();
    const told = peers.filter((p) => (exchanges.get(p.identity.peerId) ?? 0) > (before.get(p.identity.peerId) ?? 0));
    assert.equal(told.length, NEWS_FANOUT, 'told NEWS_FANOUT peers, not all');
  });
});
