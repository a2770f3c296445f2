import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RemoteNode } from '../src/node/node.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { startTestDaemon, startTestNode, until } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { usePrivateNetwork } from './helpers/network.ts';
import { exchangeAs, startRawPeer } from './helpers/raw-peer.ts';

/**
 * Reachability detection on loopback, where every dial-back gets through: an `auto` node becomes
 * public and only then publishes. (Behind real NAT the same check finds a node private: nat.spec.ts.)
 */
describe('reachability (auto node type)', { timeout: 120_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();

  /** The verdicts `node` announces from now on, as `VERDICT/CONFIDENCE`. */
  function verdicts(node: RemoteNode): string[] {
    const seen: string[] = [];
    node.bus.on('nat.reachability.changed', (e) => seen.push(`${e.payload.reachability}/${e.payload.confidence}`));
    return seen;
  }

  it('asks two peers to dial back, is found public, and only then publishes its address', async (t) => {
    const p1 = await startTestNode(t, settings());
    const p2 = await startTestNode(t, settings());
    const x = await startTestDaemon(
      t,
      settings({ 'node.node_type': 'auto', 'peer_discovery.bootstrap_peers': [p1, p2].map(quicAddress).join(',') }),
    );
    assert.equal(x.node.metadataPublisher.isHeld, true, 'auto holds publication until the verdict');
    const verdict = await x.node.reachability.waitForVerdict(60_000);
    assert.equal(verdict, 'PUBLIC');
    await until([x.node], () => x.node.metadataPublisher.lastPublish !== null);
    const published = x.node.metadataPublisher.current;
    assert.equal(published.nodeType, 'public');
    assert.equal(published.publicIp, '127.0.0.1');
    assert.equal(published.publicPort, x.node.quicPort);
    // The dial-backs were consumed by the check: the peers' own connections are intact.
    assert.equal(x.node.connections.isConnected(p1.peerId), true);
    assert.equal(x.node.connections.isConnected(p2.peerId), true);
    const view = await gql(x.api.url, '{ node { nodeType nat { reachability type observedAddresses } relay { peerId } } }');
    assert.equal(view.errors, undefined, JSON.stringify(view.errors));
    assert.equal(view.data?.node.nodeType, 'PUBLIC');
    assert.equal(view.data?.node.nat.reachability, 'PUBLIC');
    assert.equal(view.data?.node.nat.type, 'NONE');
    assert.deepEqual(view.data?.node.nat.observedAddresses, [quicAddress(x.node)]);
    assert.equal(view.data?.node.relay, null);
  });

  it('decides with one peer (provisional, and publishes), confirms when a second answers, and runs a check on request', async (t) => {
    const p1 = await startTestNode(t, settings());
    const x = await startTestDaemon(
      t,
      settings({ 'node.node_type': 'auto', 'nat.unsettled_recheck_interval': '1', 'peer_discovery.bootstrap_peers': quicAddress(p1) }),
    );
    const seen = verdicts(x.node);
    assert.equal(await x.node.reachability.waitForVerdict(30_000), 'PUBLIC');
    assert.equal(x.node.reachability.confidence, 'PROVISIONAL', 'one peer is one opinion');
    await until([x.node], () => x.node.metadataPublisher.lastPublish !== null);
    assert.equal(x.node.metadataPublisher.current.nodeType, 'public', 'a provisional public verdict is enough to publish');

    const p2 = await startTestNode(t, settings({ 'peer_discovery.bootstrap_peers': quicAddress(x.node) }));
    await until([x.node, p2], () => x.node.reachability.confidence === 'CONFIRMED', 30_000);
    assert.deepEqual(seen.slice(-2), ['PUBLIC/PROVISIONAL', 'PUBLIC/CONFIRMED'].slice(-seen.length));

    const answer = await gql(x.api.url, 'mutation { checkReachability { reachability confidence checkedAt nextCheckAt } }');
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    assert.deepEqual([answer.data?.checkReachability.reachability, answer.data?.checkReachability.confidence], ['PUBLIC', 'CONFIRMED']);
    assert.ok(Date.parse(answer.data?.checkReachability.checkedAt) > Date.now() - 10_000, 'checked just now');
    assert.ok(Date.parse(answer.data?.checkReachability.nextCheckAt) > Date.now(), 'the next check is scheduled');
  });

  it('keeps a relay session while private, then drops it and republishes as public once found public', async (t) => {
    const x = await startTestNode(t, settings({ 'node.node_type': 'auto', 'nat.unsettled_recheck_interval': '1' }));
    // First a liar only: PRIVATE (provisional), and the relay client starts.
    const liar = await startRawPeer(t);
    const connection = await liar.transport.dial({ host: '127.0.0.1', port: x.quicPort }, { expectedPeerId: x.peerId });
    connection.onStream((stream) => {
      const channel = new MessageChannel(stream);
      void channel
        .receiveAny()
        .then((m) =>
          m.type === 'dialback_request'
            ? channel.sendFinal({ type: 'dialback_result', address: `127.0.0.1:${x.quicPort}`, reached: false, reason: 'nothing' })
            : undefined,
        )
        .catch(() => {});
    });
    await exchangeAs(liar, connection);
    assert.equal(await x.reachability.waitForVerdict(30_000), 'PRIVATE');
    // A relay turns up: x registers with it and publishes it…
    const relay = await startTestNode(t, settings({ 'relay.relay_mode': 'true' }));
    const registered = x.bus.once('relay.session.registered', (e) => e.payload.role === 'client' && e.payload.peerId === relay.peerId);
    await x.connections.connect({ host: '127.0.0.1', port: relay.quicPort }, relay.peerId);
    await registered;
    await until(
      [x],
      () => x.metadataPublisher.current.usingRelay && x.metadataPublisher.lastPublish?.sequence === x.metadataPublisher.currentSequence,
    );
    const withRelay = x.metadataPublisher.currentSequence;
    // …until the next check, which asks the relay too: its dial-back arrives. Public: no relay any more.
    const closed = x.bus.once('relay.session.closed', (e) => e.payload.role === 'client');
    await until([x], () => x.reachability.reachability === 'PUBLIC', 30_000);
    await closed;
    await until(
      [x],
      () =>
        x.metadataPublisher.current.nodeType === 'public' &&
        x.metadataPublisher.lastPublish?.sequence === x.metadataPublisher.currentSequence,
    );
    const published = x.metadataPublisher.current;
    assert.deepEqual([published.usingRelay, published.connectedRelay, published.relayAddress], [false, null, null]);
    assert.ok(x.metadataPublisher.currentSequence > withRelay, 'republished with a higher seq');
    assert.equal(x.relayClient.session, null);
    assert.equal(relay.relayServer.list().length, 0, 'the relay no longer holds a session for it');
  });

  it('is not pinned PRIVATE by a peer that lies about its dial-backs once an honest peer is connected', async (t) => {
    const x = await startTestNode(t, settings({ 'node.node_type': 'auto', 'nat.unsettled_recheck_interval': '1' }));
    const seen = verdicts(x);
    // The liar answers every dial-back request "dialled you, nothing arrived", and never dials.
    const liar = await startRawPeer(t);
    const connection = await liar.transport.dial({ host: '127.0.0.1', port: x.quicPort }, { expectedPeerId: x.peerId });
    let lies = 0;
    connection.onStream((stream) => {
      const channel = new MessageChannel(stream);
      void (async () => {
        const request = await channel.receiveAny();
        if (request.type !== 'dialback_request') return;
        lies += 1;
        await channel.sendFinal({ type: 'dialback_result', address: `127.0.0.1:${x.quicPort}`, reached: false, reason: 'nothing' });
      })().catch(() => {});
    });
    await exchangeAs(liar, connection);
    assert.equal(await x.reachability.waitForVerdict(30_000), 'PRIVATE');
    assert.equal(x.reachability.confidence, 'PROVISIONAL', "one peer's word");
    assert.ok(lies >= 1);
    // An honest peer arrives: its dial-back arrives too, and that outweighs any number of "nothing arrived".
    await startTestNode(t, settings({ 'peer_discovery.bootstrap_peers': quicAddress(x) }));
    await until([x], () => x.reachability.reachability === 'PUBLIC', 30_000);
    assert.deepEqual(seen.slice(0, 2), ['PRIVATE/PROVISIONAL', 'PUBLIC/PROVISIONAL']);
    await until([x], () => x.metadataPublisher.current.nodeType === 'public', 10_000);
  });
});
