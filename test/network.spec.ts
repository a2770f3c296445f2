import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import { loadOrCreateIdentity } from '../src/node/identity/key-store.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { QuicTransport } from '../src/node/quic/quic-transport.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { encodeFrame } from '../src/node/wire/framing.ts';
import { MAX_FRAME_BYTES, READ_TIMEOUT_MS } from '../src/node/wire/constants.ts';
import { StreamEndedError } from '../src/node/wire/errors.ts';
import { identityMessage, knownPeersMessage } from '../src/node/wire/messages.ts';
import { RemoteNode } from '../src/node/node.ts';
import { startTestDaemon, startTestNode, subscriptionActive, testConfig, until } from './helpers/daemon.ts';
import { captureLogs } from './helpers/log-capture.ts';
import { gql } from './helpers/graphql.ts';
import { freeUdpPort, usePrivateNetwork } from './helpers/network.ts';
import { peerIdOf, randomPeer } from './helpers/peers.ts';
import { tempDir } from './helpers/temp.ts';

describe('QUIC network: exchange, cascade, lifecycle', { timeout: 300_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();

  /** A bare transport with its own identity: a peer we script by hand. */
  async function rawPeer(t: { after(fn: () => unknown): void }) {
    const { identity } = loadOrCreateIdentity(tempDir(t));
    const transport = new QuicTransport({ identity, host: '127.0.0.1', port: 0, logger: createLogger('silent'), idleTimeoutMs: 30_000 });
    await transport.start();
    t.after(() => transport.stop());
    return { identity, transport };
  }

  it('connects two nodes through GraphQL; both store each other from the exchange', async (t) => {
    // Topics of their own: otherwise b may find a on the shared topic and dial it at the same
    // moment, and the tie-break may keep b's connection (inbound at a).
    const a = await startTestDaemon(t, settings({ 'peer_discovery.topic': 'graphql-connect-a' }));
    const b = await startTestDaemon(t, settings({ 'relay.relay_mode': 'true', 'peer_discovery.topic': 'graphql-connect-b' }));
    const result = await gql(
      a.api.url,
      `mutation { connectPeer(address: "${quicAddress(b.node)}") { peerId state direction remoteAddress viaRelay } }`,
    );
    assert.equal(result.errors, undefined, JSON.stringify(result.errors));
    assert.equal(result.data?.connectPeer.peerId, b.node.peerId);
    assert.equal(result.data?.connectPeer.direction, 'OUTBOUND');
    assert.equal(result.data?.connectPeer.viaRelay, false);
    await until([b.node], () => b.node.knownPeers.get(a.node.peerId) !== undefined);

    const bAtA = a.node.knownPeers.get(b.node.peerId);
    assert.equal(bAtA?.source, 'identity_exchange');
    assert.equal(bAtA?.isRelay, true);
    assert.equal(bAtA?.dhtNodeId, b.node.dhtNodeId);
    assert.deepEqual(bAtA?.publicKey, new Uint8Array(b.node.identity.publicKey));
    const aAtB = b.node.knownPeers.get(a.node.peerId);
    assert.equal(aAtB?.isRelay, false);
    assert.equal(aAtB?.dhtNodeId, a.node.dhtNodeId);

    const view = await gql(a.api.url, `{ knownPeer(peerId: "${b.node.peerId}") { connection { state peerId } } connections { peerId } }`);
    assert.equal(view.data?.knownPeer.connection.peerId, b.node.peerId);
    assert.deepEqual(
      view.data?.connections.map((c: { peerId: string }) => c.peerId),
      [b.node.peerId],
    );

    const bye = await gql(a.api.url, `mutation { disconnectPeer(peerId: "${b.node.peerId}") }`);
    assert.equal(bye.data?.disconnectPeer, true);
  });

  /** The identity message a raw peer sends, claiming `claimed` (its own, or someone else's). */
  const identityClaim = (claimed: { readonly peerId: string; readonly publicKey: Uint8Array }) => ({
    type: 'identity' as const,
    protocol_version: 1,
    peer_id: claimed.peerId,
    dht_node_id: 'ab'.repeat(20),
    public_key: Buffer.from(claimed.publicKey).toString('hex'),
    node_type: 'public' as const,
    is_relay: false,
    topic: 'remote-network-mesh',
    dht_port: 0,
    listen_addresses: [],
    observed_address: null,
  });

  it('rejects a peer whose claimed identity differs from its certificate, storing nothing', async (t) => {
    const target = await startTestNode(t, settings());
    const impostor = await rawPeer(t);
    const victim = loadOrCreateIdentity(tempDir(t)).identity;
    const rejected = target.bus.once('connection.rejected');
    const connection = await impostor.transport.dial({ host: '127.0.0.1', port: target.quicPort });
    const channel = new MessageChannel(await connection.openStream());
    await channel.send(identityClaim(victim));
    const event = await rejected;
    assert.equal(event.payload.claimedPeerId, impostor.identity.peerId);
    assert.match(event.payload.reason, /differs from .* proven by the TLS certificate/);
    await connection.closed;
    assert.equal(target.knownPeers.get(victim.peerId), undefined);
    assert.equal(target.knownPeers.get(impostor.identity.peerId), undefined);
  });

  it('keeps what a dialer told it even when the dialer never ends its stream, and ends its own side with its answer', async (t) => {
    const target = await startTestNode(t, settings());
    const dialer = await rawPeer(t);
    const mentioned = loadOrCreateIdentity(tempDir(t)).identity;
    // Both sooner than the node's read deadline, which would end the conversation otherwise.
    const signal = AbortSignal.timeout(READ_TIMEOUT_MS / 2);
    const discovered = target.bus.once('peer.discovered', (e) => e.payload.peerId === mentioned.peerId, signal);
    const connection = await dialer.transport.dial({ host: '127.0.0.1', port: target.quicPort });
    const channel = new MessageChannel(await connection.openStream());
    // Identity and list, but no end of stream: the list must be kept all the same.
    await channel.send(identityClaim(dialer.identity), {
      type: 'known_peers',
      topic: 'remote-network-mesh',
      count: 1,
      peers: [
        {
          peer_id: mentioned.peerId,
          dht_node_id: 'cd'.repeat(20),
          public_key: Buffer.from(mentioned.publicKey).toString('hex'),
          is_relay: false,
        },
      ],
    });
    assert.equal((await channel.receive(identityMessage, 'identity')).peer_id, target.peerId);
    await channel.receive(knownPeersMessage, 'known_peers');
    // The node's end came with its list: it did not wait for ours.
    await assert.rejects(channel.receiveAny(READ_TIMEOUT_MS / 2), StreamEndedError);
    assert.equal((await discovered).payload.source, 'peer_exchange');
    assert.equal(target.knownPeers.get(dialer.identity.peerId)?.source, 'identity_exchange');
  });

  it('re-exchanges over one connection carry the peers not named on it yet, then nothing', async (t) => {
    // An allowance above the 60 peers: this is about what is named, not about the PEX rate.
    const quiet = settings({ 'peer_discovery.discovery_interval': '3600', 'peer_discovery.hearsay_per_minute': '1000' });
    const a = await startTestNode(t, quiet);
    const b = await startTestNode(t, quiet);
    // Peers b has met itself: hearsay would not be passed on.
    const many = Array.from({ length: 60 }, () => randomPeer({ source: 'identity_exchange' }));
    b.knownPeers.record(many);
    await a.connections.connect({ host: '127.0.0.1', port: b.quicPort }, b.peerId);
    const knownToA = () => many.filter((p) => a.knownPeers.get(peerIdOf(p.publicKey)) !== undefined).length;
    assert.equal(knownToA(), 50, 'the first exchange shares 50');
    await a.connections.reexchange(b.peerId);
    // Fifty of sixty drawn at random again would almost never hold the ten left out before.
    assert.equal(knownToA(), 60, 'the second shares the ten not named yet');
    assert.equal((await a.connections.reexchange(b.peerId)).peersReceived, 0, 'the third has nothing left to say');
  });

  it('names at most hearsay_per_minute peers a minute to one connection, so the other side refuses none', async (t) => {
    const quiet = settings({ 'peer_discovery.discovery_interval': '3600' });
    const a = await startTestNode(t, quiet);
    const b = await startTestNode(t, quiet);
    b.knownPeers.record(Array.from({ length: 60 }, () => randomPeer({ source: 'identity_exchange' })));
    const first = a.bus.once('peer.exchanged', (e) => e.payload.peerId === b.peerId);
    await a.connections.connect({ host: '127.0.0.1', port: b.quicPort }, b.peerId);
    assert.equal((await first).payload.peersReceived, 50);
    // b has ten more, but has used this minute's 50 on this connection: a hears of them later.
    const second = await a.connections.reexchange(b.peerId);
    assert.deepEqual([second.peersReceived, second.peersRefused], [0, 0]);
  });

  it('answers a malformed frame, an oversized frame and an unknown message with protocol errors, and keeps serving', async (t) => {
    const target = await startTestNode(t, settings());
    const rogue = await rawPeer(t);
    const connection = await rogue.transport.dial({ host: '127.0.0.1', port: target.quicPort });

    const answerTo = async (bytes: Buffer) => {
      const stream = await connection.openStream();
      const writer = stream.writable.getWriter();
      await writer.write(bytes);
      writer.releaseLock();
      return new MessageChannel(stream).receiveAny().then(
        () => 'no error',
        (error: Error & { remoteCode?: string }) => error.remoteCode ?? String(error),
      );
    };
    assert.equal(await answerTo(encodeFrame(Buffer.from('{not json'))), 'PROTOCOL_MALFORMED');
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(MAX_FRAME_BYTES + 1);
    assert.equal(await answerTo(huge), 'PROTOCOL_FRAME_TOO_LARGE');
    assert.equal(await answerTo(encodeFrame(Buffer.from('{"type":"gossip"}'))), 'PROTOCOL_UNEXPECTED_MESSAGE');
    // Three protocol errors: that peer is disconnected...
    assert.match(await connection.closed, /protocol errors/);
    // ...and the node still serves everyone else.
    const honest = await startTestNode(t, settings());
    const info = await honest.connections.connect({ host: '127.0.0.1', port: target.quicPort });
    assert.equal(info.peerId, target.peerId);
  });

  it('resets silent streams at the read deadline without disconnecting the peer', { timeout: 60_000 }, async (t) => {
    const target = await startTestNode(t, settings());
    const quiet = await rawPeer(t);
    const connection = await quiet.transport.dial({ host: '127.0.0.1', port: target.quicPort });
    // Three streams that never say anything: each is ended by the node after its 10 s deadline.
    const silent = await Promise.all([1, 2, 3].map(() => connection.openStream()));
    // A stream reaches the peer only with data: one byte each, three short of a frame header.
    for (const stream of silent) {
      const writer = stream.writable.getWriter();
      await writer.write(new Uint8Array([0]));
      writer.releaseLock();
    }
    const answers = silent.map((stream) =>
      // A longer deadline than the node's, which must be the one to give up.
      new MessageChannel(stream).receiveAny(20_000).then(
        () => 'no error',
        (error: Error & { remoteCode?: string }) => error.remoteCode ?? String(error),
      ),
    );
    assert.deepEqual(await Promise.all(answers), ['PROTOCOL_TIMEOUT', 'PROTOCOL_TIMEOUT', 'PROTOCOL_TIMEOUT']);
    // Unlike three malformed frames, that does not close the connection.
    const stream = await connection.openStream();
    const writer = stream.writable.getWriter();
    await writer.write(encodeFrame(Buffer.from('{"type":"gossip"}')));
    writer.releaseLock();
    const answer = await new MessageChannel(stream).receiveAny().then(
      () => 'no error',
      (error: Error & { remoteCode?: string }) => error.remoteCode ?? String(error),
    );
    assert.equal(answer, 'PROTOCOL_UNEXPECTED_MESSAGE');
  });

  it('re-exchanges over one connection far more times than its initial stream credit', async (t) => {
    const a = await startTestNode(t, settings());
    const b = await startTestNode(t, settings());
    await a.connections.connect({ host: '127.0.0.1', port: b.quicPort }, b.peerId);
    for (let i = 0; i < 150; i++) await a.connections.reexchange(b.peerId);
    assert.equal(a.connections.byPeer(b.peerId)?.activeStreams, 0);
  });

  it('reconnects at once after a disconnect (the newer connection replaces the closing one)', async (t) => {
    const a = await startTestNode(t, settings({ 'peer_discovery.discovery_interval': '3600' }));
    const b = await startTestNode(t, settings({ 'peer_discovery.discovery_interval': '3600' }));
    const address = { host: '127.0.0.1', port: b.quicPort };
    for (let i = 0; i < 10; i++) {
      const info = await a.connections.connect(address, b.peerId);
      assert.equal(info.peerId, b.peerId);
      await a.connections.disconnect(b.peerId);
    }
    const last = await a.connections.connect(address, b.peerId);
    assert.ok(['CONNECTED', 'IDLE'].includes(last.state));
  });

  it('cascades: A knows B, B knows C, and A ends up connected to C without being told', async (t) => {
    // A topic each: otherwise C may find A on the shared DHT topic and dial it first, and A would
    // know C from that exchange instead of from B.
    const c = await startTestNode(t, settings({ 'peer_discovery.topic': 'cascade-c' }));
    const b = await startTestNode(t, settings({ 'peer_discovery.topic': 'cascade-b', 'peer_discovery.bootstrap_peers': quicAddress(c) }));
    await until([b], () => b.knownPeers.get(c.peerId) !== undefined);
    const a = await startTestNode(t, settings({ 'peer_discovery.topic': 'cascade-a', 'peer_discovery.bootstrap_peers': quicAddress(b) }));
    // Connected and exchanged: a connection counts as connected while its exchange still runs.
    await until([a], () => a.connections.isConnected(c.peerId) && a.knownPeers.get(c.peerId) !== undefined);
    assert.equal(a.knownPeers.get(c.peerId)?.source, 'peer_exchange', 'A learned C from B');
  });

  it('skips its own address in a bootstrap list shared by every node, and dials the rest', async (t) => {
    const c = await startTestNode(t, settings());
    const port = await freeUdpPort();
    const own = `127.0.0.1:${port}`;
    const { logger, lines } = captureLogs('debug');
    const config = testConfig(
      tempDir(t),
      settings({ 'quic.quic_port': String(port), 'peer_discovery.bootstrap_peers': `${own},${quicAddress(c)}` }),
    );
    const a = await RemoteNode.start(config, { logger });
    t.after(() => a.stop('test finished'));
    await until([a], () => a.connections.isConnected(c.peerId));
    assert.ok(lines.some((l) => l.msg === 'a bootstrap address is this node: skipped' && l.address === own));
    assert.deepEqual(
      lines.filter((l) => l.msg === 'dial failed' || l.msg === 'peer certificate refused').map((l) => l.target ?? l.reason),
      [],
      'never dialled itself',
    );
  });

  it('closes a stale connection, and the GraphQL subscription shows every state', { timeout: 60_000 }, async (t) => {
    // No periodic rounds during the test.
    const quiet = { 'peer_discovery.discovery_interval': '3600' };
    const a = await startTestDaemon(t, settings({ 'quic.quic_idle_timeout': '5', ...quiet }));
    const b = await startTestNode(t, settings(quiet));
    const client = createWsClient({ url: a.api.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const states: string[] = [];
    const subscription = client.iterate<{ connectionStateChanged: { to: string; from: string | null } }>({
      query: `subscription { connectionStateChanged(peerId: "${b.peerId}") { from to connectionId } }`,
    });
    const before = a.node.bus.listenerCount();
    const collected = (async () => {
      for await (const { data } of subscription) {
        states.push(data?.connectionStateChanged.to ?? '?');
        if (data?.connectionStateChanged.to === 'CLOSED') break;
      }
    })();
    await subscriptionActive(a.node, before);
    await a.node.connections.connect({ host: '127.0.0.1', port: b.quicPort }, b.peerId);
    await collected;
    // Re-exchanges (quick at first, then further apart) may use the connection in between.
    assert.deepEqual(states.slice(0, 3), ['CONNECTING', 'CONNECTED', 'IDLE']);
    assert.deepEqual(states.slice(-2), ['STALE', 'CLOSED']);
    assert.deepEqual(
      states.slice(3, -2).filter((s) => s !== 'CONNECTED' && s !== 'IDLE'),
      [],
    );
  });
});
