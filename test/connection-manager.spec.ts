import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { ConnectionLimitError } from '../src/node/lifecycle/connection-manager.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { MAX_PROTOCOL_ERRORS } from '../src/node/wire/constants.ts';
import { RemoteRefusedError } from '../src/node/wire/errors.ts';
import type { WireMessage } from '../src/node/wire/messages.ts';
import { type ManagerUnderTest, connectionManagerUnderTest, testParts } from './helpers/components.ts';
import { MemoryNetwork } from './helpers/memory-transport.ts';

/**
 * `promise`, or a failure after `ms`. The bound also keeps the event loop alive: nothing in memory
 * does (the manager's timers are unref'd, as a node's sockets would hold the loop).
 */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Two managers on one in-memory network, `a` connected to `b` (the exchange done on both sides). */
async function connectedPair(t: Parameters<typeof connectionManagerUnderTest>[0]) {
  const network = new MemoryNetwork();
  const a = connectionManagerUnderTest(t, network, { host: '192.0.2.1' });
  const b = connectionManagerUnderTest(t, network, { host: '198.51.100.1' });
  const exchangedOnB = b.bus.once('peer.exchanged', (e) => e.payload.peerId === a.identity.peerId);
  const info = await a.connections.connect(b.transport.address, b.identity.peerId);
  await within(exchangedOnB, 5_000, 'the exchange on the listener');
  return { network, a, b, info };
}

/** What `from` gets back on a stream to `to` whose first message is `first`: an error code, or 'answered'. */
function converse(from: ManagerUnderTest, to: ManagerUnderTest, first: { type: string }): Promise<string> {
  return from.connections.withPeerStream(to.identity.peerId, async (stream) => {
    const channel = new MessageChannel(stream);
    await channel.send(first as WireMessage);
    return channel.receiveAny().then(
      () => 'answered',
      (error: unknown) => (error instanceof RemoteRefusedError ? error.remoteCode : String(error)),
    );
  });
}

describe('connection manager over an in-memory transport', () => {
  it('connects two managers and runs the identity exchange on both sides', async (t) => {
    const { a, b, info } = await connectedPair(t);
    assert.equal(info.peerId, b.identity.peerId);
    assert.equal(info.direction, 'outbound');
    assert.equal(info.viaRelay, false);
    const inbound = b.connections.byPeer(a.identity.peerId);
    assert.equal(inbound?.direction, 'inbound');
    assert.ok(inbound && ['IDLE', 'CONNECTED'].includes(inbound.state), `the listener adopted it: ${inbound?.state}`);
    // Each side stored the other from the exchange (the real exchanger over a real SQLite file).
    assert.equal(a.knownPeers.get(b.identity.peerId)?.source, 'identity_exchange');
    assert.equal(b.knownPeers.get(a.identity.peerId)?.source, 'identity_exchange');
    // A second connect reuses the connection.
    assert.equal((await a.connections.connect(b.transport.address, b.identity.peerId)).id, info.id);
    assert.equal(a.connections.size, 1);
  });

  it('dispatches inbound streams through the protocol registry; an unknown protocol is answered', async (t) => {
    const { a, b } = await connectedPair(t);
    const seen: string[] = [];
    b.protocols.handle(z.object({ type: z.literal('test_echo'), text: z.string() }), async (message, connection, channel) => {
      seen.push(`${connection.remotePeerId}:${message.text}`);
      await channel.sendFinal({ type: 'holepunch_sync' });
      await channel.finish();
    });
    assert.equal(await converse(a, b, { type: 'test_echo', text: 'hi' } as { type: string }), 'answered');
    assert.deepEqual(seen, [`${a.identity.peerId}:hi`]);
    assert.equal(await converse(a, b, { type: 'test_nobody' }), 'PROTOCOL_UNEXPECTED_MESSAGE');
    assert.equal(await converse(a, b, { type: 'test_echo' }), 'PROTOCOL_MALFORMED', 'validated before the handler');
    assert.deepEqual(seen.length, 1);
  });

  it('closes a connection after repeated protocol errors, but not for refusals by protocol limits', async (t) => {
    const { a, b } = await connectedPair(t);
    b.protocols.handle(z.object({ type: z.literal('test_relayed_only') }), () => {}, { access: 'relayed' });
    for (let i = 0; i < MAX_PROTOCOL_ERRORS + 1; i++) {
      assert.equal(await converse(a, b, { type: 'test_relayed_only' }), 'PROTOCOL_ACCESS_DENIED');
    }
    assert.ok(b.connections.isConnected(a.identity.peerId), 'refused streams are not the peer breaking the protocol');
    const closed = b.bus.once('connection.state.changed', (e) => e.payload.peerId === a.identity.peerId && e.payload.to === 'CLOSED');
    for (let i = 0; i < MAX_PROTOCOL_ERRORS; i++) {
      assert.equal(await converse(a, b, { type: 'test_nobody' }), 'PROTOCOL_UNEXPECTED_MESSAGE');
    }
    await within(closed, 5_000, 'the connection closed');
    assert.equal(b.connections.isConnected(a.identity.peerId), false);
  });

  it('rejects a peer whose exchange claims another identity than the transport proved', async (t) => {
    const network = new MemoryNetwork();
    const b = connectionManagerUnderTest(t, network, { host: '198.51.100.1' });
    const someoneElse = testParts(t).identity;
    const impostor = connectionManagerUnderTest(t, network, { host: '192.0.2.66', transportIdentity: someoneElse });
    const rejected = b.bus.once('connection.rejected');
    await assert.rejects(impostor.connections.connect(b.transport.address, b.identity.peerId));
    const event = await within(rejected, 5_000, 'the impostor rejected');
    assert.equal(event.payload.claimedPeerId, someoneElse.peerId);
    assert.match(event.payload.reason, /differs from/);
    assert.equal(b.connections.size, 0);
  });

  it('refuses a dial past max_connections with a typed error', async (t) => {
    const network = new MemoryNetwork();
    const a = connectionManagerUnderTest(t, network, { host: '192.0.2.1', manager: { maxConnections: 1 } });
    const b = connectionManagerUnderTest(t, network, { host: '198.51.100.1' });
    const c = connectionManagerUnderTest(t, network, { host: '203.0.113.1' });
    await a.connections.connect(b.transport.address, b.identity.peerId);
    await assert.rejects(a.connections.connect(c.transport.address, c.identity.peerId), ConnectionLimitError);
    assert.equal(c.connections.size, 0, 'nothing was dialled');
  });

  it('disconnect closes both sides; an idle connection is closed once stale; stop removes the exchange', async (t) => {
    const network = new MemoryNetwork();
    const a = connectionManagerUnderTest(t, network, { host: '192.0.2.1' });
    const b = connectionManagerUnderTest(t, network, { host: '198.51.100.1', manager: { idleTimeoutMs: 50, cleanupIntervalMs: 20 } });
    await a.connections.connect(b.transport.address, b.identity.peerId);
    const closed = [a, b].map((side) => side.bus.once('connection.state.changed', (e) => e.payload.to === 'CLOSED'));
    assert.equal(await a.connections.disconnect(b.identity.peerId, 'test'), true);
    await within(Promise.all(closed), 5_000, 'closed on both sides');
    assert.deepEqual([a.connections.size, b.connections.size], [0, 0]);

    // b closes idle connections after 50 ms: STALE, then CLOSED.
    const states: string[] = [];
    b.bus.on('connection.state.changed', (e) => states.push(e.payload.to));
    const closedOnB = b.bus.once('connection.state.changed', (e) => e.payload.to === 'CLOSED');
    await a.connections.connect(b.transport.address, b.identity.peerId);
    await within(closedOnB, 5_000, 'the idle connection closed');
    assert.deepEqual(states.slice(-2), ['STALE', 'CLOSED']);
    assert.ok(b.logs.some((l) => l.msg === 'closing stale connection'));

    assert.ok(b.protocols.registered.includes('identity'));
    await b.connections.stop();
    assert.equal(b.protocols.registered.includes('identity'), false);
  });
});
