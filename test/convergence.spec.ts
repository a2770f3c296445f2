import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RemoteNode } from '../src/node/node.ts';
import { startTestNode, until } from './helpers/daemon.ts';
import { usePrivateNetwork } from './helpers/network.ts';

// Its own file and its own DHT: stopped nodes of other tests would linger in a shared DHT's
// routing tables, and every metadata lookup would wait for them to time out.
describe('QUIC network: convergence', { timeout: 300_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();

  // 30 nodes (the figure) saturate this 2-core machine inside the test runner with the
  // QUIC library's per-packet CPU cost; until that is tuned the suite runs 12 (RN_CONVERGENCE_NODES=30 for the full size).
  const size = Number(process.env.RN_CONVERGENCE_NODES ?? 12);
  it(`converges: ${size} nodes, each bootstrapped from one other, all know all`, { timeout: 180_000 }, async (t) => {
    const nodes: RemoteNode[] = [];
    for (let i = 0; i < size; i++) {
      const previous = nodes[i - 1];
      nodes.push(await startTestNode(t, settings(previous ? { 'peer_discovery.bootstrap_peers': quicAddress(previous) } : {})));
    }
    // Stopped together (each stop gives its connections a second to close).
    t.after(() => Promise.all(nodes.map((n) => n.stop('test finished'))));
    const everyoneKnowsEveryone = () => nodes.every((n) => n.knownPeers.repository.count() >= nodes.length - 1);
    await until(nodes, everyoneKnowsEveryone, 150_000);
    for (const node of nodes) {
      for (const other of nodes) {
        if (other !== node) assert.ok(node.knownPeers.repository.get(other.peerId), `${node.peerId} knows ${other.peerId}`);
      }
    }
  });

});
