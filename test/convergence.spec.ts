import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RemoteNode } from '../src/node/node.ts';
import { startTestNode, until } from './helpers/daemon.ts';
import { usePrivateNetwork } from './helpers/network.ts';

// Its own file and its own DHT: stopped nodes of other tests would linger in a shared DHT's
// routing tables, and every metadata lookup would wait for them to time out.
describe('QUIC network: convergence', { timeout: 300_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();

  // The figure; RN_CONVERGENCE_NODES changes it (e.g. for a quicker local run).
  const size = Number(process.env.RN_CONVERGENCE_NODES ?? 30);
  it(`converges: ${size} nodes, each bootstrapped from one other, all know all`, { timeout: 240_000 }, async (t) => {
    const nodes: RemoteNode[] = [];
    // Registered before the nodes start, so it runs before their own after-hooks: all stop at once
    // (each stop gives its connections a second to close). One after another, the nodes still
    // running would keep dialling the stopped ones and slow every later stop.
    t.after(() => Promise.all(nodes.map((n) => n.stop('test finished'))));
    for (let i = 0; i < size; i++) {
      const previous = nodes[i - 1];
      nodes.push(await startTestNode(t, settings(previous ? { 'peer_discovery.bootstrap_peers': quicAddress(previous) } : {})));
    }
    const everyoneKnowsEveryone = () => nodes.every((n) => n.knownPeers.count() >= nodes.length - 1);
    await until(nodes, everyoneKnowsEveryone, 180_000);
    for (const node of nodes) {
      // Knowing everyone took no full mesh: each node dialled at most target_connections (8).
      const dialled = node.connections.list().filter((c) => c.direction === 'outbound').length;
      assert.ok(dialled <= 8, `${node.peerId} dialled ${dialled} peers`);
      assert.equal(node.knownPeers.get(node.peerId), undefined, `${node.peerId} does not store itself`);
      for (const other of nodes) {
        if (other !== node) assert.ok(node.knownPeers.get(other.peerId), `${node.peerId} knows ${other.peerId}`);
      }
    }
  });
});
