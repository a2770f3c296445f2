import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { peerIdFromPublicKey } from '../src/node/base/peer-id.ts';
import type { RemoteNode } from '../src/node/node.ts';
import { DISCONNECT_AFTER_UNVERIFIABLE, HEARSAY_PER_MINUTE } from '../src/node/peers/peer-trust.ts';
import type { KnownPeerEntry } from '../src/node/wire/messages.ts';
import { startTestNode, until } from './helpers/daemon.ts';
import { usePrivateNetwork } from './helpers/network.ts';
import { exchangeAs, startRawPeer } from './helpers/raw-peer.ts';

/** A peer nobody can find: a fresh key (peer_id = SHA1(key) holds, so the entry is well formed). */
function inventedPeer(): KnownPeerEntry {
  const key = randomBytes(32);
  return {
    peer_id: peerIdFromPublicKey(key),
    dht_node_id: randomBytes(20).toString('hex'),
    public_key: key.toString('hex'),
    is_relay: true,
  };
}

/** What `node` tells a newcomer in an exchange (its shared list). */
async function sharedList(t: { after(fn: () => unknown): void }, node: RemoteNode): Promise<string[]> {
  const probe = await startRawPeer(t);
  const connection = await probe.transport.dial({ host: '127.0.0.1', port: node.quicPort }, { expectedPeerId: node.peerId });
  const answer = await exchangeAs(probe, connection);
  return answer.peers.map((p) => (p as KnownPeerEntry).peer_id);
}

describe('known peers: hearsay from a hostile peer', { timeout: 180_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();

  it('takes 50 invented peers a minute at most, shares none, disconnects the liar, and keeps every real peer', async (t) => {
    const h1 = await startTestNode(t, settings({ 'peer_discovery.max_known_peers': '100', 'peer_discovery.max_unverified_peers': '40' }));
    const h2 = await startTestNode(t, settings({ 'peer_discovery.bootstrap_peers': quicAddress(h1) }));
    await until([h1, h2], () => h1.knownPeers.get(h2.peerId)?.verified === true && h2.knownPeers.get(h1.peerId) !== undefined);

    const hostile = await startRawPeer(t);
    const distrusted = h1.bus.once(
      'peer.trust.changed',
      (e) => e.payload.peerId === hostile.identity.peerId && e.payload.level === 'distrusted',
    );
    const connection = await hostile.transport.dial({ host: '127.0.0.1', port: h1.quicPort }, { expectedPeerId: h1.peerId });
    const invented = new Set<string>();
    let refused = 0;
    const off = h1.bus.on('peer.exchanged', (e) => {
      if (e.payload.peerId === hostile.identity.peerId) refused += e.payload.peersRefused;
    });
    t.after(off);
    // 20 exchanges of 50 invented relays each, as fast as the node answers.
    for (let round = 0; round < 20; round++) {
      const batch = Array.from({ length: 50 }, inventedPeer);
      for (const p of batch) invented.add(p.peer_id);
      try {
        await exchangeAs(hostile, connection, batch);
      } catch {
        break; // the node has already had enough of it
      }
    }
    const stored = () => [...invented].filter((id) => h1.knownPeers.get(id) !== undefined);
    assert.ok(
      stored().length <= HEARSAY_PER_MINUTE,
      `${stored().length} invented peers taken (the allowance is ${HEARSAY_PER_MINUTE} a minute)`,
    );
    assert.ok(refused >= 1000 - HEARSAY_PER_MINUTE - 50 * 2, `${refused} refused`);
    assert.ok(
      stored().every((id) => h1.knownPeers.get(id)?.verified === false),
      'all hearsay',
    );

    // The DHT knows none of them: the source loses trust and is disconnected.
    const change = await distrusted;
    assert.ok(change.payload.unverifiable >= DISCONNECT_AFTER_UNVERIFIABLE);
    assert.match(await connection.closed, /distrusted/);
    // It comes back: its exchange is served (its own identity is verified), then it is sent away again.
    const again = await hostile.transport.dial({ host: '127.0.0.1', port: h1.quicPort }, { expectedPeerId: h1.peerId });
    await exchangeAs(hostile, again, Array.from({ length: 50 }, inventedPeer)).catch(() => undefined);
    assert.match(await again.closed, /distrusted/);

    // Nothing invented is passed on, nor offered as a relay, and the real peers are all still known.
    const shared = await sharedList(t, h1);
    assert.equal(shared.filter((id) => invented.has(id)).length, 0, 'no invented peer in what h1 shares');
    assert.ok(shared.includes(h2.peerId), 'h1 still shares its real peers');
    await h2.connections.reexchange(h1.peerId);
    assert.equal([...invented].filter((id) => h2.knownPeers.get(id) !== undefined).length, 0, 'none reached h2');
    const relays = h1.knownPeers.page({ isRelay: true, verified: true }, 100).rows.map((r) => r.peerId);
    assert.equal(relays.filter((id) => invented.has(id)).length, 0, 'no invented relay is a candidate');
    assert.equal(h1.knownPeers.get(h2.peerId)?.verified, true, 'the flood pushed out no real peer');
    assert.ok(h1.knownPeers.count({ verified: false }) <= 40, 'hearsay stays within max_unverified_peers');
  });

  it('verifies honest hearsay in the DHT and passes it on only then', async (t) => {
    const quiet = { 'peer_discovery.target_connections': '1' };
    const h1 = await startTestNode(t, settings(quiet));
    const h2 = await startTestNode(t, settings({ ...quiet, 'peer_discovery.bootstrap_peers': quicAddress(h1) }));
    await until([h1], () => h1.connections.isConnected(h2.peerId));
    // h1 hears of h3 from h2 only (one connection each): hearsay, then verified through the DHT.
    const heard = h1.bus.once('peer.verified', (e) => e.payload.by === 'dht');
    const h3 = await startTestNode(t, settings({ ...quiet, 'peer_discovery.bootstrap_peers': quicAddress(h2) }));
    const verified = await heard;
    assert.equal(verified.payload.peerId, h3.peerId);
    assert.deepEqual([verified.payload.by, verified.payload.via], ['dht', h2.peerId]);
    const row = h1.knownPeers.get(h3.peerId);
    assert.deepEqual([row?.source, row?.verified], ['peer_exchange', true]);
    assert.ok((await sharedList(t, h1)).includes(h3.peerId), 'shared once verified');
    assert.equal(h1.knownPeers.trust.level(h2.peerId), 'trusted');
  });
});
