import { ObservedAddresses } from '../src/node/nat/observed-addresses.ts';
import assert from 'node:assert/strict';
import { type TestContext, describe, it } from 'node:test';
import type { HostPort } from '../src/node/base/address.ts';
import type { NodeTypeSetting } from '../src/node/base/node-type.ts';
import {
  DIALBACKS_PER_MINUTE,
  DIALBACK_PEER_PAUSE_MS,
  DIALBACK_TIMEOUT_MS,
  MIN_CHECK_GAP_MS,
  ReachabilityService,
  type ReachabilityState,
} from '../src/node/nat/reachability.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { RemoteRefusedError } from '../src/node/wire/errors.ts';
import { dialbackResultMessage } from '../src/node/wire/messages.ts';
import { type ManagerUnderTest, connectionManagerUnderTest } from './helpers/components.ts';
import { MemoryNetwork } from './helpers/memory-transport.ts';

/**
 * What a serving peer's probe does when asked to dial back: open a connection from a fresh socket
 * (a new MemoryTransport of its own), from the socket we already talk to it on, answer that
 * nothing arrived, claim it dialled without doing it, or fail (the asker gets no answer).
 */
type ProbeBehaviour = 'dial back' | 'dial back from the same socket' | 'nothing arrives' | 'lie' | 'fail';

interface ReachabilityUnderTest extends ManagerUnderTest {
  readonly reachability: ReachabilityService;
  /** What this node's probe does next time a peer asks it for a dial-back. */
  behaviour: ProbeBehaviour;
  /** While set, the probe waits for it (an answer the test holds back). */
  hold: Promise<void> | undefined;
}

/** No idle connection is closed within the mocked hours of a test. */
const NO_IDLE_CLEANUP = { idleTimeoutMs: 24 * 3_600_000, cleanupIntervalMs: 3_600_000 };
const RECHECK_MS = 600_000;
const UNSETTLED_RECHECK_MS = 60_000;

/** A ReachabilityService alone over a connection manager on `network`, its probe a fake; started, stopped after the test. */
function reachabilityUnderTest(t: TestContext, network: MemoryNetwork, host: string, mode: NodeTypeSetting): ReachabilityUnderTest {
  const manager = connectionManagerUnderTest(t, network, {
    host,
    manager: { ...NO_IDLE_CLEANUP, maxConnections: 128 },
  });
  const self: { behaviour: ProbeBehaviour; hold: Promise<void> | undefined } = { behaviour: 'dial back', hold: undefined };
  const probe = async (address: HostPort, peerId: string): Promise<boolean> => {
    await self.hold;
    switch (self.behaviour) {
      case 'dial back':
        await network.transport(manager.identity, host).dial(address, { expectedPeerId: peerId });
        return true;
      case 'dial back from the same socket':
        await manager.transport.dial(address, { expectedPeerId: peerId });
        return true;
      case 'nothing arrives':
        return false;
      case 'lie':
        return true;
      case 'fail':
        throw new Error('probe failed');
    }
  };
  const reachability = new ReachabilityService({
    mode,
    connections: manager.connections,
    protocols: manager.protocols,
    probe,
    bus: manager.bus,
    logger: manager.logger,
    observed: new ObservedAddresses(() => manager.transport.port),
    recheckIntervalMs: RECHECK_MS,
    unsettledRecheckIntervalMs: UNSETTLED_RECHECK_MS,
  });
  reachability.start();
  t.after(() => reachability.stop());
  return Object.assign(self, manager, { reachability });
}

/**
 * Lets every in-memory step already started run to its end: they are promises only (no sockets,
 * and every timer is mocked), so a few turns of the event loop drain them; nothing waits on time.
 */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** An asker (auto) and serving peers (public) on distinct /24 networks (or at `hosts`), mock timers on. */
function setup(t: TestContext, servers: number | readonly string[]) {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: Date.now() });
  const network = new MemoryNetwork();
  const asker = reachabilityUnderTest(t, network, '192.0.2.1', 'auto');
  const hosts = typeof servers === 'number' ? [...Array(servers).keys()].map((i) => `198.51.${100 + i}.1`) : servers;
  const peers = hosts.map((host) => reachabilityUnderTest(t, network, host, 'public'));
  return { network, asker, peers };
}

async function connect(asker: ReachabilityUnderTest, peer: ReachabilityUnderTest): Promise<void> {
  await asker.connections.connect(peer.transport.address, peer.identity.peerId);
  await settle();
}

/** A check on request: the answers, then the wait for dial-backs that were said to be on their way. */
async function checkNow(t: TestContext, asker: ReachabilityUnderTest): Promise<ReachabilityState> {
  const checking = asker.reachability.check('test');
  await settle();
  t.mock.timers.tick(DIALBACK_TIMEOUT_MS * 2);
  await settle();
  return checking;
}

/** Fires the timers due in the next `ms`, the in-memory work they start run out. */
async function wait(t: TestContext, ms: number): Promise<void> {
  t.mock.timers.tick(ms);
  await settle();
  t.mock.timers.tick(DIALBACK_TIMEOUT_MS * 2);
  await settle();
}

/** What `from` gets when it asks `to` for a dial-back itself: the answer, or the refusal's code. */
function askDialback(from: ManagerUnderTest, to: ManagerUnderTest): Promise<string> {
  return from.connections.withPeerStream(to.identity.peerId, async (stream) => {
    const channel = new MessageChannel(stream);
    await channel.sendFinal({ type: 'dialback_request' });
    return channel.receive(dialbackResultMessage, 'dialback_result').then(
      (result) => `reached ${result.reached}`,
      (error: unknown) => (error instanceof RemoteRefusedError ? error.remoteCode : String(error)),
    );
  });
}

const verdict = (r: ReachabilityUnderTest) => `${r.reachability.reachability} ${r.reachability.confidence}`;

describe('reachability alone, over connection managers on an in-memory network (mock timers)', () => {
  it('one peer makes a provisional verdict; a peer from another /24 is asked MIN_CHECK_GAP_MS later and confirms it', async (t) => {
    const { asker, peers } = setup(t, 2);
    const [one, two] = peers as [ReachabilityUnderTest, ReachabilityUnderTest];
    assert.equal(verdict(asker), 'UNKNOWN NONE');
    const started = Date.now();
    await connect(asker, one);
    assert.equal(asker.reachability.state.nextCheckAt?.getTime(), started, 'the first direct peer starts a check at once');
    await wait(t, 0);
    assert.equal(verdict(asker), 'PUBLIC PROVISIONAL');
    assert.ok(asker.logs.some((l) => l.msg === 'reachability decided' && l['reason'] === 'a first direct peer'));

    const changed = asker.bus.once('nat.reachability.changed', (e) => e.payload.confidence === 'CONFIRMED');
    await connect(asker, two);
    assert.equal(
      asker.reachability.state.nextCheckAt?.getTime(),
      started + MIN_CHECK_GAP_MS,
      'a peer not asked yet: as soon as the gap allows',
    );
    await wait(t, MIN_CHECK_GAP_MS);
    assert.equal(verdict(asker), 'PUBLIC CONFIRMED');
    assert.equal((await changed).payload.previous, 'PUBLIC');
    const state = asker.reachability.state;
    assert.equal(state.nextCheckAt?.getTime(), (state.checkedAt?.getTime() ?? 0) + RECHECK_MS, 'confirmed: the settled interval');
  });

  it('a dial-back that arrives outweighs peers that say nothing arrived: PUBLIC', async (t) => {
    const { asker, peers } = setup(t, 3);
    for (const p of peers.slice(1)) p.behaviour = 'nothing arrives';
    // All three connect before the first check's timer fires: it asks all three.
    for (const p of peers) await connect(asker, p);
    await wait(t, 0);
    assert.ok(asker.logs.some((l) => l.msg === 'reachability check' && l['asked'] === 3 && l['reached'] === 1 && l['unreached'] === 2));
    assert.equal(verdict(asker), 'PUBLIC PROVISIONAL', 'one arrival, against two "nothing arrived"');
  });

  it('two peers of two networks whose dial-backs did not arrive confirm PRIVATE, one of them claiming it dialled', async (t) => {
    const { asker, peers } = setup(t, 2);
    const [liar, honest] = peers as [ReachabilityUnderTest, ReachabilityUnderTest];
    liar.behaviour = 'lie';
    honest.behaviour = 'nothing arrives';
    for (const p of peers) await connect(asker, p);
    await wait(t, 0);
    assert.equal(verdict(asker), 'PRIVATE CONFIRMED', 'the liar said it dialled, but nothing arrived');
  });

  it('a connection from the socket we already talk to the peer on is not its dial-back', async (t) => {
    const { asker, peers } = setup(t, 1);
    const [peer] = peers as [ReachabilityUnderTest];
    peer.behaviour = 'dial back from the same socket';
    await connect(asker, peer);
    await wait(t, 0);
    assert.ok(asker.logs.some((l) => l.msg === 'a connection from the address we talk to: not a dial-back'));
    // PRIVATE, or no verdict when the second connection replaced the one the answer came on
    // (the duplicate tie-break goes by peer id): never PUBLIC.
    assert.ok(['PRIVATE PROVISIONAL', 'UNKNOWN NONE'].includes(verdict(asker)), verdict(asker));
  });

  it('two peers of one /24 confirm nothing while a peer of another network was asked', async (t) => {
    const { asker, peers } = setup(t, ['198.51.100.1', '198.51.100.2', '203.0.113.1']);
    (peers[2] as ReachabilityUnderTest).behaviour = 'fail';
    for (const p of peers) await connect(asker, p);
    await wait(t, 0);
    assert.ok(asker.logs.some((l) => l.msg === 'reachability check' && l['asked'] === 3 && l['reached'] === 2));
    assert.equal(verdict(asker), 'PUBLIC PROVISIONAL');
  });

  it('two peers of one /24 confirm a verdict when no other network is there to ask', async (t) => {
    const { asker, peers } = setup(t, ['198.51.100.1', '198.51.100.2']);
    for (const p of peers) await connect(asker, p);
    await wait(t, 0);
    assert.equal(verdict(asker), 'PUBLIC CONFIRMED');
  });

  it('hysteresis: a confirmed verdict stands against one unconfirmed opposite check and flips on the second in a row', async (t) => {
    const { asker, peers } = setup(t, 2);
    for (const p of peers) await connect(asker, p);
    await wait(t, 0);
    assert.equal(verdict(asker), 'PUBLIC CONFIRMED');

    const [one, two] = peers as [ReachabilityUnderTest, ReachabilityUnderTest];
    one.behaviour = 'nothing arrives';
    two.behaviour = 'fail'; // no answer: PRIVATE on one peer's word, unconfirmed
    t.mock.timers.tick(DIALBACK_PEER_PAUSE_MS);
    assert.equal(`${(await checkNow(t, asker)).reachability}`, 'PUBLIC', 'one unconfirmed opposite check flips nothing');
    assert.equal(verdict(asker), 'PUBLIC CONFIRMED');
    assert.ok(asker.logs.some((l) => l.msg === 'an opposite reachability check: checking again soon'));
    const state = asker.reachability.state;
    assert.equal(state.nextCheckAt?.getTime(), (state.checkedAt?.getTime() ?? 0) + UNSETTLED_RECHECK_MS, 'unsure again: re-checked sooner');

    t.mock.timers.tick(DIALBACK_PEER_PAUSE_MS);
    const flipped = await checkNow(t, asker);
    assert.equal(`${flipped.reachability} ${flipped.confidence}`, 'PRIVATE PROVISIONAL', 'the second in a row flips it');
  });

  it('a confirmed opposite check flips a confirmed verdict at once', async (t) => {
    const { asker, peers } = setup(t, 2);
    for (const p of peers) await connect(asker, p);
    await wait(t, 0);
    assert.equal(verdict(asker), 'PUBLIC CONFIRMED');
    for (const p of peers) p.behaviour = 'nothing arrives';
    t.mock.timers.tick(DIALBACK_PEER_PAUSE_MS);
    await checkNow(t, asker);
    assert.equal(verdict(asker), 'PRIVATE CONFIRMED');
  });

  it('re-checks a provisional verdict at the settled interval once all its peers were asked, sooner while one was not', async (t) => {
    const { asker, peers } = setup(t, 2);
    const [first, second] = peers as [ReachabilityUnderTest, ReachabilityUnderTest];
    await connect(asker, first);
    await wait(t, 0);
    assert.equal(verdict(asker), 'PUBLIC PROVISIONAL');
    let state = asker.reachability.state;
    assert.equal(state.nextCheckAt?.getTime(), (state.checkedAt?.getTime() ?? 0) + RECHECK_MS, 'its one peer was asked');

    // A check whose answer waits while a second peer connects: that peer was not asked.
    t.mock.timers.tick(DIALBACK_PEER_PAUSE_MS);
    let release!: () => void;
    first.hold = new Promise((resolve) => {
      release = resolve;
    });
    const checking = asker.reachability.check('test');
    await settle();
    await connect(asker, second);
    release();
    await settle();
    await checking;
    state = asker.reachability.state;
    assert.equal(`${state.reachability} ${state.confidence}`, 'PUBLIC PROVISIONAL');
    assert.equal(state.nextCheckAt?.getTime(), (state.checkedAt?.getTime() ?? 0) + UNSETTLED_RECHECK_MS, 'a peer not asked yet');
  });

  it('serves one dial-back per peer per DIALBACK_PEER_PAUSE_MS, the next answered DIALBACK_RATE_LIMITED', async (t) => {
    const { asker, peers } = setup(t, 1);
    const [peer] = peers as [ReachabilityUnderTest];
    peer.behaviour = 'nothing arrives';
    asker.reachability.stop(); // the asker asks only what this test asks
    await connect(asker, peer);
    const ask = () => askDialback(asker, peer);
    assert.equal(await ask(), 'reached false');
    t.mock.timers.tick(DIALBACK_PEER_PAUSE_MS - 1);
    assert.equal(await ask(), 'DIALBACK_RATE_LIMITED');
    t.mock.timers.tick(1);
    assert.equal(await ask(), 'reached false', 'answered again after the pause');
  });

  it(`serves DIALBACKS_PER_MINUTE dial-backs a minute to all peers, the next answered DIALBACK_RATE_LIMITED`, async (t) => {
    const { network, peers } = setup(t, 1);
    const [server] = peers as [ReachabilityUnderTest];
    server.behaviour = 'nothing arrives';
    const askers = [...Array(DIALBACKS_PER_MINUTE + 1).keys()].map((i) =>
      connectionManagerUnderTest(t, network, { host: `198.18.${i}.1`, manager: NO_IDLE_CLEANUP }),
    );
    const answers: string[] = [];
    for (const asker of askers) {
      await asker.connections.connect(server.transport.address, server.identity.peerId);
      answers.push(await askDialback(asker, server));
    }
    assert.deepEqual(answers.slice(0, -1), Array<string>(DIALBACKS_PER_MINUTE).fill('reached false'));
    assert.equal(answers.at(-1), 'DIALBACK_RATE_LIMITED');
    t.mock.timers.tick(60_000);
    assert.equal(await askDialback(askers.at(-1) as ManagerUnderTest, server), 'reached false', 'a minute later');
  });

  it('check() with a forced node type answers the configured verdict without asking anyone', async (t) => {
    const { peers } = setup(t, 1);
    const [forced] = peers as [ReachabilityUnderTest];
    const state = await forced.reachability.check();
    assert.deepEqual(state, { reachability: 'PUBLIC', confidence: 'CONFIGURED', checkedAt: null, nextCheckAt: null });
  });
});
