import { type LabEventStream, type LabNode, createNatLab, natLabSupport, openEventStream, startLabNode } from '../test/helpers/nat-lab.ts';
import { type Figure, ms, percentile } from './report.ts';

const PUNCHES = 6;

interface ConnectionView {
  peerId: string;
  viaRelay: boolean;
  rttMs: number | null;
}

async function connectionTo(node: LabNode, peerId: string): Promise<ConnectionView | undefined> {
  const result = await node.query<{ connections: ConnectionView[] }>('{ connections { peerId viaRelay rttMs } }');
  return result.data?.connections.find((c) => c.peerId === peerId);
}

/** Waits for the next event after the ones already seen until `check` holds. */
async function until(check: () => Promise<boolean>, events: LabEventStream, what: string): Promise<void> {
  for (;;) {
    const seen = events.received.at(-1)?.seq ?? -1;
    if (await check()) return;
    await events.waitFor((e) => e.seq > seen, { timeoutMs: 30_000, what });
  }
}

/**
 * Hole punch time on the NAT lab (network namespaces, two port-preserving NATs, a relay): from the
 * request over the relayed connection to the direct connection, repeated. Needs root and nftables;
 * elsewhere the figure says why it was skipped.
 */
export async function benchHolePunch(): Promise<Figure[]> {
  const support = natLabSupport();
  if (!support.ok) return [{ name: 'hole punch time (NAT lab)', value: `skipped: ${support.reason}` }];
  const cleanups: Array<() => unknown> = [];
  const context = { after: (cleanup: () => unknown) => cleanups.push(cleanup) };
  try {
    const lab = await createNatLab(context);
    const [relayHost, hostA, hostB] = await Promise.all([
      lab.addPublicHost('relay'),
      lab.addPrivateHost('a', { nat: 'cone' }),
      lab.addPrivateHost('b', { nat: 'cone' }),
    ]);
    const relay = await startLabNode(context, lab, relayHost, {
      'node.node_type': 'public',
      'node.listen_host': relayHost.address,
      'relay.relay_mode': 'true',
    });
    const natSettings = {
      'node.node_type': 'private',
      'dht.bootstrap_nodes': relay.dhtAddress,
      'peer_discovery.bootstrap_peers': relay.quicAddress,
      'peer_discovery.discovery_interval': '3600',
    };
    const a = await startLabNode(context, lab, hostA, natSettings);
    const eventsA = await openEventStream(context, a, ['dht.metadata.published', 'connection.state.changed']);
    await until(
      async () => (await a.query<{ node: { relay: unknown } }>('{ node { relay { peerId } } }')).data?.node.relay != null,
      eventsA,
      'a registered',
    );
    await eventsA.waitFor((e) => e.type === 'dht.metadata.published', { timeoutMs: 30_000, what: 'a published' });
    const b = await startLabNode(context, lab, hostB, natSettings);
    const eventsB = await openEventStream(context, b, [
      'peer.discovered',
      'connection.state.changed',
      'holepunch.succeeded',
      'holepunch.failed',
    ]);
    const knowsA = async () =>
      (await b.query<{ knownPeer: unknown }>(`{ knownPeer(peerId: "${a.peerId}") { peerId } }`)).data?.knownPeer != null;
    await until(knowsA, eventsB, 'b learns a from the relay');

    const durations: number[] = [];
    const rtts: number[] = [];
    let failures = 0;
    for (let i = 0; i < PUNCHES; i++) {
      const seen = eventsB.received.at(-1)?.seq ?? -1;
      const reached = await b.query<{ connectPeer: ConnectionView }>(`mutation { connectPeer(peerId: "${a.peerId}") { viaRelay rttMs } }`);
      if (reached.errors) throw new Error(JSON.stringify(reached.errors));
      if (reached.data?.connectPeer.rttMs != null && reached.data.connectPeer.viaRelay) rtts.push(reached.data.connectPeer.rttMs);
      // The dialler punches by itself (twice per peer); past that the API asks. Either way one outcome event.
      await b.query(`mutation { holePunch(peerId: "${a.peerId}") { direct } }`);
      const outcome = await eventsB.waitFor((e) => e.seq > seen && e.type.startsWith('holepunch.'), {
        timeoutMs: 30_000,
        what: 'punch outcome',
      });
      if (outcome.type === 'holepunch.succeeded') durations.push(Number((outcome.payload as { durationMs: number }).durationMs));
      else failures += 1;
      // Back to a relayed connection for the next round: both sides must have dropped the direct one.
      await b.query(`mutation { disconnectPeer(peerId: "${a.peerId}") }`);
      // a's own punch dial may lose the race yet still be in its handshake; when it completes
      // after b's disconnect, a holds a new connection: a drops that one itself.
      const aDropped = async () => {
        if ((await connectionTo(a, b.peerId)) === undefined) return true;
        await a.query(`mutation { disconnectPeer(peerId: "${b.peerId}") }`);
        return false;
      };
      await until(aDropped, eventsA, 'a dropped b');
      await until(async () => (await connectionTo(b, a.peerId)) === undefined, eventsB, 'b dropped a');
    }
    const rtt = rtts.length > 0 ? percentile(rtts, 50) : 0;
    const targetMs = 3 * rtt + 1000;
    const p50 = percentile(durations, 50);
    return [
      {
        name: `hole punch time, request to direct connection (NAT lab: two cone NATs, ${durations.length}/${PUNCHES} succeeded)`,
        value: durations.length > 0 ? `p50 ${ms(p50)} / max ${ms(Math.max(...durations))}` : `none succeeded (${failures} failed)`,
        target: `≤ 3 RTT + 1 s = ${ms(targetMs)}`,
        met: durations.length === PUNCHES && Math.max(...durations) <= targetMs,
        baseline: `RTT through the relay p50 ${ms(rtt)}`,
      },
    ];
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}
