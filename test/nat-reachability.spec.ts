import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type LabEventStream,
  type LabHost,
  type LabNode,
  type NatLab,
  createNatLab,
  eventually,
  labSkip,
  natLabSupport,
  payloadOf,
  openEventStream,
  startLabNode,
  suiteCleanups,
} from './helpers/nat-lab.ts';

/**
 * Reachability in the most common small deployment, behind real Linux NAT: one relay, one public
 * node and machines at home, every node `auto`, started in any order (issue: "reachability that
 * decides in any network and any start order, and keeps deciding").
 */

const support = natLabSupport();
const skip = labSkip(support);

/** How long a verdict may take: the lab's re-checks run every 5–10 s, a few rounds of them. */
const VERDICT_TIMEOUT_MS = 90_000;

const EVENTS = [
  'nat.reachability.changed',
  'relay.session.registered',
  'relay.session.closed',
  'dht.metadata.published',
  'holepunch.succeeded',
  'holepunch.failed',
  'connection.state.changed',
];

interface NodeView {
  nodeType: string;
  nat: { reachability: string; confidence: string; type: string };
  relay: { peerId: string; address: string } | null;
}

async function view(node: LabNode): Promise<NodeView> {
  const result = await node.query<{ node: NodeView }>(
    '{ node { nodeType nat { reachability confidence type } relay { peerId address } } }',
  );
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  assert.ok(result.data);
  return result.data.node;
}

describe('reachability behind real NAT, every node auto, any start order', { skip, timeout: 600_000 }, () => {
  let lab: NatLab;
  let hosts: { relay: LabHost; pub: LabHost; homeA: LabHost; homeB: LabHost };
  const { suite, runAll } = suiteCleanups();
  after(() => runAll());

  before(async () => {
    if (!support.ok) assert.fail(`CI is set, so the NAT lab must work here, but: ${support.reason}`);
    lab = await createNatLab(suite);
    const [relay, pub, homeA, homeB] = await Promise.all([
      lab.addPublicHost('relay'),
      lab.addPublicHost('pub'),
      lab.addPrivateHost('home-a', { nat: 'cone' }),
      lab.addPrivateHost('home-b', { nat: 'cone' }),
    ]);
    hosts = { relay, pub, homeA, homeB };
  });

  /** Every node's settings: all `auto`, bootstrapped from the relay (QUIC and DHT), quick re-checks. */
  function settings(extra: Record<string, string> = {}): Record<string, string> {
    return {
      'node.node_type': 'auto',
      'dht.bootstrap_nodes': `${hosts.relay.address}:6881`,
      'peer_discovery.bootstrap_peers': `${hosts.relay.address}:30906`,
      'peer_discovery.discovery_interval': '3600',
      'relay.relay_keepalive_interval': '1',
      'nat.recheck_interval': '10',
      'nat.unsettled_recheck_interval': '5',
      'nat.relay_grace_period': '2',
      ...extra,
    };
  }
  const relaySettings = (extra: Record<string, string> = {}) => settings({ 'relay.relay_mode': 'true', ...extra });

  interface Running {
    node: LabNode;
    events: LabEventStream;
  }
  const running = new Set<LabNode>();
  async function start(host: LabHost, extra: Record<string, string>): Promise<Running> {
    const node = await startLabNode(suite, lab, host, extra);
    running.add(node);
    void node.exited.then(() => running.delete(node));
    return { node, events: await openEventStream(suite, node, EVENTS) };
  }
  /** Each scenario starts on an empty lab (fixed ports per host): whatever an earlier one left runs no more. */
  async function stopAll(): Promise<void> {
    await Promise.all([...running].map((node) => node.stop()));
  }

  /** PUBLIC for the relay and the public node, PRIVATE and registered with the relay for the home nodes. */
  async function decided(relay: Running, others: { pub?: Running; homes: Running[] }): Promise<void> {
    const all = [relay, ...(others.pub ? [others.pub] : []), ...others.homes];
    const streams = all.map((r) => r.events);
    await eventually(
      async () => (await view(relay.node)).nat.reachability === 'PUBLIC',
      streams,
      'the relay found public',
      VERDICT_TIMEOUT_MS,
    );
    if (others.pub)
      await eventually(
        async () => (await view(others.pub!.node)).nat.reachability === 'PUBLIC',
        streams,
        'the public node found public',
        VERDICT_TIMEOUT_MS,
      );
    for (const home of others.homes) {
      await eventually(
        async () => {
          const v = await view(home.node);
          return v.nat.reachability === 'PRIVATE' && v.relay?.peerId === relay.node.peerId;
        },
        streams,
        `${home.node.host.name} private and registered with the relay`,
        VERDICT_TIMEOUT_MS,
      );
    }
  }

  let relay: Running;
  let pub: Running;
  let homeA: Running;
  let homeB: Running;
  let relayDataDir: string;

  it('decides in a network started all at once: relay and public node PUBLIC, home nodes PRIVATE and registered; relayed, then punched', async () => {
    relayDataDir = lab.tempDir('relay-data');
    [relay, pub, homeA, homeB] = await Promise.all([
      start(hosts.relay, relaySettings({ 'node.data_dir': relayDataDir })),
      start(hosts.pub, settings()),
      start(hosts.homeA, settings()),
      start(hosts.homeB, settings()),
    ]);
    await decided(relay, { pub, homes: [homeA, homeB] });
    // The public node reaches a home node through the relay, by peer id (its relay from the DHT).
    await eventually(
      async () => {
        const m = await pub.node.query<{ peerMetadata: { usingRelay: boolean } }>(
          `{ peerMetadata(peerId: "${homeA.node.peerId}", fresh: true) { usingRelay } }`,
        );
        return m.data?.peerMetadata.usingRelay === true;
      },
      [homeA.events],
      "home-a's relay in the DHT",
      VERDICT_TIMEOUT_MS,
    );
    const reached = await pub.node.query<{ connectPeer: { viaRelay: boolean } }>(
      `mutation { connectPeer(peerId: "${homeA.node.peerId}") { viaRelay } }`,
    );
    assert.equal(reached.errors, undefined, JSON.stringify(reached.errors));
    // The two home nodes punch to a direct connection.
    const toB = await homeB.node.query(`mutation { connectPeer(peerId: "${homeA.node.peerId}") { viaRelay } }`);
    assert.equal(toB.errors, undefined, JSON.stringify(toB.errors));
    await eventually(
      async () => {
        const c = await homeB.node.query<{ connections: Array<{ peerId: string; viaRelay: boolean }> }>(
          '{ connections { peerId viaRelay } }',
        );
        return c.data?.connections.some((x) => x.peerId === homeA.node.peerId && !x.viaRelay) === true;
      },
      [homeA.events, homeB.events],
      'a direct connection between the home nodes',
      VERDICT_TIMEOUT_MS,
    );
  });

  it('brings the home nodes back after the relay is killed (SIGKILL) and restarted on its data dir; meanwhile their metadata says no relay', async () => {
    const lastSeq = new Map<LabNode, number>();
    for (const home of [homeA, homeB]) {
      const published = [...home.events.received].reverse().find((e) => e.type === 'dht.metadata.published');
      lastSeq.set(home.node, Number(payloadOf(published ?? { payload: { sequence: 0 } }).sequence));
    }
    const killedAfter = new Map([homeA, homeB].map((h) => [h, h.events.received.at(-1)?.seq ?? -1]));
    relay.node.kill('SIGKILL');
    await relay.node.exited;
    // The loss is published: using_relay false, no relay address.
    for (const home of [homeA, homeB]) {
      await home.events.waitFor((e) => e.seq > (killedAfter.get(home) ?? -1) && e.type === 'relay.session.closed', {
        timeoutMs: 60_000,
        what: 'session lost',
      });
      await eventually(
        async () => {
          const m = await pub.node.query<{ peerMetadata: { usingRelay: boolean; relayAddress: string | null } }>(
            `{ peerMetadata(peerId: "${home.node.peerId}", fresh: true) { usingRelay relayAddress } }`,
          );
          return m.data?.peerMetadata.usingRelay === false && m.data.peerMetadata.relayAddress === null;
        },
        [home.events],
        `${home.node.host.name} publishes that it has no relay`,
        VERDICT_TIMEOUT_MS,
      );
    }
    const restartedAt = Date.now();
    relay = await start(hosts.relay, relaySettings({ 'node.data_dir': relayDataDir }));
    for (const home of [homeA, homeB]) {
      const registered = await home.events.waitFor(
        (e) => e.seq > (killedAfter.get(home) ?? -1) && e.type === 'relay.session.registered' && payloadOf(e).peerId === relay.node.peerId,
        { timeoutMs: 60_000, what: `${home.node.host.name} registered again` },
      );
      const republished = await home.events.waitFor((e) => e.type === 'dht.metadata.published' && e.seq > registered.seq, {
        timeoutMs: 30_000,
        what: 'republished with the relay',
      });
      assert.ok(Number(payloadOf(republished).sequence) > (lastSeq.get(home.node) ?? 0), 'a higher seq');
    }
    assert.ok(Date.now() - restartedAt < 60_000, 'both back within a minute of the restart');
  });

  it('turns PRIVATE, registers with the relay and republishes when a public node ends up behind a NAT', async (t) => {
    assert.equal((await view(pub.node)).nat.reachability, 'PUBLIC');
    const before = pub.events.received.at(-1)?.seq ?? -1;
    await lab.blockUnsolicited(hosts.pub);
    // Also when this test fails: the next scenarios use the same host.
    t.after(() => lab.allowUnsolicited(hosts.pub));
    const changed = await pub.events.waitFor(
      (e) => e.seq > before && e.type === 'nat.reachability.changed' && payloadOf(e).reachability === 'PRIVATE',
      { timeoutMs: 90_000, what: 'the verdict turning private' },
    );
    assert.equal(payloadOf(changed).previous, 'PUBLIC');
    const registered = await pub.events.waitFor((e) => e.seq > changed.seq && e.type === 'relay.session.registered', {
      timeoutMs: 60_000,
      what: 'registration with the relay',
    });
    await pub.events.waitFor((e) => e.type === 'dht.metadata.published' && e.seq > registered.seq, {
      timeoutMs: 30_000,
      what: 'republication',
    });
    const v = await view(pub.node);
    assert.deepEqual([v.nodeType, v.relay?.peerId], ['PRIVATE', relay.node.peerId]);
  });

  it('decides the same when the relay starts last, 20 s after the others', async () => {
    await stopAll();
    const [p, a, b] = await Promise.all([start(hosts.pub, settings()), start(hosts.homeA, settings()), start(hosts.homeB, settings())]);
    // The scenario itself: the others run alone (their bootstrap peer down) for 20 s.
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    for (const n of [p, a, b]) assert.equal((await view(n.node)).nat.reachability, 'UNKNOWN', 'nobody to ask yet');
    const r = await start(hosts.relay, relaySettings());
    await decided(r, { pub: p, homes: [a, b] });
  });

  it('decides in a network of exactly one relay and one home node, both auto: the home node registers', async () => {
    await stopAll();
    const [r, a] = await Promise.all([start(hosts.relay, relaySettings()), start(hosts.homeA, settings())]);
    await decided(r, { homes: [a] });
    const v = await view(a.node);
    assert.equal(v.nat.confidence, 'PROVISIONAL', 'one peer: provisional, and enough to register');
  });
});
