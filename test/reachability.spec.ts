import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestDaemon, startTestNode, until } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { usePrivateNetwork } from './helpers/network.ts';

/**
 * Reachability detection on loopback, where every dial-back gets through: an `auto` node becomes
 * public and only then publishes. (Behind real NAT the same check finds a node private: nat.spec.ts.)
 */
describe('reachability (auto node type)', { timeout: 120_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();

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
});
