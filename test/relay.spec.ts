import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { RemoteNode } from '../src/node/node.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { RemoteRefusedError } from '../src/node/wire/errors.ts';
import { circuitProofMessage, relayAcceptMessage, relayConnectedMessage, relayRegisteredMessage } from '../src/node/wire/messages.ts';
import { startTestDaemon, startTestNode, subscriptionActive, until } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { usePrivateNetwork } from './helpers/network.ts';

/**
 * Relay logic on loopback (the same code paths the NAT tests drive behind real NAT): registration
 * bound to the TLS identity, publication after registration, relayed connections with end-to-end
 * authentication, limits, failover. A "NAT" node here is one forced private.
 */
describe('relay: sessions, circuits, limits, failover', { timeout: 300_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();
  const relaySettings = (extra: Record<string, string> = {}) =>
    settings({ 'relay.relay_mode': 'true', 'relay.relay_keepalive_interval': '1', ...extra });
  const natSettings = (relays: RemoteNode[]) =>
    settings({ 'node.node_type': 'private', 'peer_discovery.bootstrap_peers': relays.map(quicAddress).join(',') });

  /** Resolves with the client-side session once `node` registered with a relay. */
  function registered(node: RemoteNode, exceptRelay?: string): Promise<string> {
    return new Promise((resolve) => {
      const off = node.bus.on('relay.session.registered', (e) => {
        if (e.payload.role !== 'client' || e.payload.peerId === exceptRelay) return;
        off();
        resolve(e.payload.peerId);
      });
    });
  }

  it('registers a NAT node, publishes its relay only after that, and carries a relayed connection', async (t) => {
    const relay = await startTestNode(t, relaySettings());
    const nat = await startTestNode(t, natSettings([relay]));
    assert.equal(nat.metadataPublisher.isHeld, true, 'a NAT node holds its metadata until it has a relay');
    assert.equal(nat.metadataPublisher.lastPublish, null);
    const published = new Promise<number>((resolve) => {
      const off = nat.bus.on('dht.metadata.published', (e) => {
        off();
        resolve(e.payload.sequence);
      });
    });
    assert.equal(await registered(nat), relay.peerId);
    await published;
    // On loopback a "NAT" node could still dial the caller below directly; behind real NAT it may
    // too (outbound works), and that is the NAT tests' business. Here the relayed path is under test.
    nat.discovery.stop();
    const metadata = nat.metadataPublisher.current;
    assert.equal(metadata.usingRelay, true);
    assert.equal(metadata.connectedRelay, relay.peerId);
    assert.equal(metadata.relayAddress, quicAddress(relay));
    const [session] = relay.relayServer.list();
    assert.equal(session?.peerId, nat.peerId);
    assert.equal(metadata.relaySessionId, session?.sessionId);

    // A public node reaches the NAT node through the relay, by peer id (address from the DHT metadata).
    const caller = await startTestDaemon(t, settings({ 'peer_discovery.bootstrap_peers': quicAddress(relay) }));
    await until([caller.node], () => caller.node.knownPeers.get(nat.peerId) !== undefined);
    caller.node.holePuncher.stop(); // keep the relayed connection for this test (punching has its own)
    // The NAT node may have heard of the caller second-hand already (the relay passes news on),
    // so the exchange itself is what to wait for, not the caller's row.
    const exchanged = nat.bus.once('peer.exchanged', (e) => e.payload.peerId === caller.node.peerId);
    const result = await gql(caller.api.url, `mutation { connectPeer(peerId: "${nat.peerId}") { peerId viaRelay state } }`);
    assert.equal(result.errors, undefined, JSON.stringify(result.errors));
    assert.equal(result.data?.connectPeer.viaRelay, true);
    assert.equal(result.data?.connectPeer.peerId, nat.peerId);
    // Both ends hold a relayed connection whose identity was proven end to end, and the exchange ran.
    await exchanged;
    assert.equal(nat.connections.byPeer(caller.node.peerId)?.viaRelay, true);
    assert.ok(nat.knownPeers.get(caller.node.peerId), 'the exchange stored the caller');
    const view = await gql(caller.api.url, `{ connections { peerId viaRelay } }`);
    const relayed = view.data?.connections.find((c: { peerId: string }) => c.peerId === nat.peerId);
    assert.equal(relayed?.viaRelay, true);
    // More streams over the relayed connection: each is its own authenticated circuit.
    for (let i = 0; i < 3; i++) await caller.node.connections.reexchange(nat.peerId);
    assert.ok((relay.relayServer.list()[0]?.totalCircuits ?? 0) >= 5, 'control + exchange + 3 re-exchange circuits');
    assert.ok((relay.relayServer.list()[0]?.bytesOut ?? 0) > 0, 'the relay counted the bytes');
  });

  it('refuses a registration for another peer id (hijack) and keeps the real session', async (t) => {
    const relay = await startTestNode(t, relaySettings());
    const nat = await startTestNode(t, natSettings([relay]));
    await registered(nat);
    const before = relay.relayServer.list()[0];
    const thief = await startTestNode(t, settings());
    await thief.connections.connect({ host: '127.0.0.1', port: relay.quicPort }, relay.peerId);
    const attempt = thief.connections.withPeerStream(relay.peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      await channel.send({ type: 'relay_register', peer_id: nat.peerId });
      return channel.receive(relayRegisteredMessage, 'relay_registered');
    });
    await assert.rejects(
      attempt,
      (error: unknown) => error instanceof RemoteRefusedError && error.remoteCode === 'RELAY_IDENTITY_MISMATCH',
    );
    assert.deepEqual(
      relay.relayServer.list().map((s) => [s.peerId, s.sessionId]),
      [[nat.peerId, before?.sessionId]],
    );
  });

  it('expires a session whose client stops sending keepalives', async (t) => {
    const relay = await startTestNode(t, relaySettings());
    // Discovery would dial the other node (found on the DHT topic) while the test connects: the
    // tie-break between the two connections may close the one the session is registered on.
    relay.discovery.stop();
    const client = await startTestNode(t, settings());
    client.discovery.stop();
    await client.connections.connect({ host: '127.0.0.1', port: relay.quicPort }, relay.peerId);
    const expired = new Promise<string>((resolve, reject) => {
      const offs = [
        relay.bus.on('relay.session.expired', (e) => {
          for (const off of offs) off();
          resolve(e.payload.peerId);
        }),
        relay.bus.on('relay.session.closed', (e) => {
          for (const off of offs) off();
          reject(new Error(`the session was closed (${e.payload.reason}), not expired`));
        }),
      ];
    });
    const sessionId = await client.connections.withPeerStream(relay.peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      await channel.send({ type: 'relay_register', peer_id: client.peerId });
      const registered = await channel.receive(relayRegisteredMessage, 'relay_registered');
      assert.equal(relay.relayServer.list()[0]?.peerId, client.peerId);
      // Silence: no keepalive. Three intervals (1 s each here) later the relay gives the session up.
      assert.equal(await expired, client.peerId);
      return registered.session_id;
    });
    assert.match(sessionId, /^[0-9a-f]{16}$/);
    assert.deepEqual(relay.relayServer.list(), []);
  });

  it('refuses a circuit whose caller cannot prove the key the relay claims for it (no impersonation by the relay)', async (t) => {
    const relay = await startTestNode(t, relaySettings());
    const nat = await startTestNode(t, natSettings([relay]));
    await registered(nat);
    const victim = await startTestNode(t, settings());
    // A rogue relay (any peer with a direct connection) forwards a "circuit" it claims comes from the victim.
    const rogue = await startTestNode(t, settings());
    await rogue.connections.connect({ host: '127.0.0.1', port: nat.quicPort }, nat.peerId);
    const forged = rogue.connections.withPeerStream(nat.peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      await channel.send({ type: 'relay_incoming', source_peer_id: victim.peerId });
      await channel.receive(relayAcceptMessage, 'relay_accept');
      await channel.send({
        type: 'circuit_hello',
        peer_id: victim.peerId,
        public_key: Buffer.from(victim.identity.publicKey).toString('hex'),
        nonce: 'ab'.repeat(32),
        purpose: 'control',
        connection_id: '01'.repeat(8),
      });
      await channel.receive(circuitProofMessage, 'circuit_proof');
      // Without the victim's private key, the rogue can only send a signature that does not verify.
      await channel.send({ type: 'circuit_finish', signature: '00'.repeat(64) });
      return channel.receive(relayConnectedMessage, 'relay_connected');
    });
    await assert.rejects(forged, (error: unknown) => error instanceof RemoteRefusedError && error.remoteCode === 'CIRCUIT_AUTH_FAILED');
    assert.equal(nat.connections.byPeer(victim.peerId), undefined, 'no connection was made to the claimed peer');
  });

  it('enforces circuits per peer and bytes per circuit, refusing with typed reasons', async (t) => {
    const relay = await startTestNode(
      t,
      relaySettings({ 'relay.relay_max_circuits_per_peer': '1', 'relay.relay_max_circuit_bytes': '4096' }),
    );
    const nat = await startTestNode(t, natSettings([relay]));
    await registered(nat);
    const caller = await startTestNode(t, settings());
    await caller.connections.connect({ host: '127.0.0.1', port: relay.quicPort }, relay.peerId);
    let openCircuit!: () => void;
    const firstOpen = new Promise<void>((resolve) => {
      openCircuit = resolve;
    });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Circuit 1: accepted, then held open while circuit 2 is asked for.
    const first = caller.connections.withPeerStream(relay.peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      await channel.send({ type: 'relay_connect', target_peer_id: nat.peerId });
      await channel.receive(relayConnectedMessage, 'relay_connected');
      openCircuit();
      await held;
      // Past the byte limit the relay cuts the circuit: the stream ends or resets.
      const raw = channel.detach();
      const writer = raw.writable.getWriter();
      await writer.write(new Uint8Array(16 * 1024)).catch(() => {});
      const reader = raw.readable.getReader();
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) return 'ended';
      }
    });
    await firstOpen;
    const second = caller.connections.withPeerStream(relay.peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      await channel.send({ type: 'relay_connect', target_peer_id: nat.peerId });
      return channel.receive(relayConnectedMessage, 'relay_connected');
    });
    await assert.rejects(second, (error: unknown) => error instanceof RemoteRefusedError && error.remoteCode === 'RELAY_CIRCUIT_LIMIT');
    const unknownTarget = caller.connections.withPeerStream(relay.peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      await channel.send({ type: 'relay_connect', target_peer_id: 'f'.repeat(40) });
      return channel.receive(relayConnectedMessage, 'relay_connected');
    });
    await assert.rejects(
      unknownTarget,
      (error: unknown) => error instanceof RemoteRefusedError && error.remoteCode === 'RELAY_TARGET_UNKNOWN',
    );
    release();
    await first.catch(() => 'reset');
    await until([relay, nat], () => (relay.relayServer.list()[0]?.circuits ?? -1) === 0);
    const session = relay.relayServer.list()[0];
    assert.ok((session?.bytesOut ?? 0) <= 4096 + 64 * 1024, `the relay stopped forwarding near the limit (${session?.bytesOut})`);
    // The NAT node keeps its session and can be asked again.
    assert.equal(session?.peerId, nat.peerId);
  });

  it('moves to another relay when its relay goes away, and republishes with a higher seq', async (t) => {
    const relayA = await startTestNode(t, relaySettings());
    const relayB = await startTestNode(t, relaySettings());
    const nat = await startTestNode(t, natSettings([relayA, relayB]));
    const first = await registered(nat);
    const firstSeq = await until([nat], () => nat.metadataPublisher.lastPublish !== null).then(() => nat.metadataPublisher.currentSequence);
    const [lost, other] = first === relayA.peerId ? [relayA, relayB] : [relayB, relayA];
    const moved = registered(nat, lost.peerId);
    await lost.stop('relay killed');
    assert.equal(await moved, other.peerId);
    await until([nat], () => nat.metadataPublisher.current.connectedRelay === other.peerId);
    assert.ok(nat.metadataPublisher.currentSequence > firstSeq, 'new relay info has a higher seq');
    assert.equal(nat.metadataPublisher.current.relayAddress, quicAddress(other));
    await until([other], () => other.relayServer.list().some((s) => s.peerId === nat.peerId));
  });

  it('moves to the relay an operator selects, seen through relaySessionChanged and relaySessions', async (t) => {
    const relayA = await startTestDaemon(t, relaySettings());
    const relayB = await startTestDaemon(t, relaySettings());
    const nat = await startTestDaemon(t, natSettings([relayA.node, relayB.node]));
    const first = await registered(nat.node);
    const [from, to] = first === relayA.node.peerId ? [relayA, relayB] : [relayB, relayA];
    const client = createWsClient({ url: nat.api.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const changes: string[] = [];
    const subscription = client.iterate<{ relaySessionChanged: { change: string; role: string; peerId: string } }>({
      query: 'subscription { relaySessionChanged { change role peerId sessionId } }',
    });
    const before = nat.node.bus.listenerCount();
    const collected = (async () => {
      for await (const { data } of subscription) {
        const c = data?.relaySessionChanged;
        changes.push(`${c?.change} ${c?.role} ${c?.peerId === from.node.peerId ? 'from' : c?.peerId === to.node.peerId ? 'to' : '?'}`);
        if (c?.change === 'registered') break;
      }
    })();
    await subscriptionActive(nat.node, before);
    const selected = await gql(nat.api.url, `mutation { selectRelay(peerId: "${to.node.peerId}") { peerId sessionId address } }`);
    assert.equal(selected.errors, undefined, JSON.stringify(selected.errors));
    assert.equal(selected.data?.selectRelay.peerId, to.node.peerId);
    assert.equal(selected.data?.selectRelay.address, quicAddress(to.node));
    await collected;
    assert.deepEqual(changes, ['closed client from', 'registered client to']);
    const sessions = await gql(to.api.url, '{ relaySessions { peerId sessionId circuits } }');
    assert.deepEqual(
      sessions.data?.relaySessions.map((s: { peerId: string; sessionId: string }) => [s.peerId, s.sessionId]),
      [[nat.node.peerId, selected.data?.selectRelay.sessionId]],
    );
    const view = await gql(nat.api.url, '{ node { relay { peerId } } }');
    assert.equal(view.data?.node.relay.peerId, to.node.peerId);
    // Not a relay: a typed refusal.
    const refused = await gql(nat.api.url, `mutation { selectRelay(peerId: "${'e'.repeat(40)}") { peerId } }`);
    assert.equal(refused.errors?.[0]?.extensions?.code, 'RELAY_UNAVAILABLE');
  });
});
