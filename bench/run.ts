import { benchBencode } from './bencode.ts';
import { benchDht } from './dht.ts';
import { benchDiscovery } from './discovery.ts';
import { benchEd25519 } from './ed25519.ts';
import { benchKnownPeers } from './known-peers.ts';
import { benchKrpcGuard } from './krpc-guard.ts';
import { benchMetrics } from './metrics.ts';
import { benchHolePunch } from './holepunch.ts';
import { benchJobs } from './jobs.ts';
import { benchNetwork } from './network.ts';
import { benchRelay } from './relay.ts';
import { printSection } from './report.ts';
import { benchSandbox } from './sandbox.ts';
import { THROUGHPUT_MIB, benchThroughput } from './throughput.ts';

/** `npm run bench`: every figure next to its target, with its baseline measured in this same run. */
console.log(`# Remote Network benchmarks (node ${process.version}, ${new Date().toISOString()})`);
printSection('Ed25519 (404-byte message, 2000 ops after warm-up; baseline @noble/ed25519)', benchEd25519());
printSection('bencode (PeerMetadata-shaped dict)', benchBencode());
printSection('known_peers in SQLite (WAL, synchronous=NORMAL)', benchKnownPeers());
printSection('KRPC checks on every inbound DHT datagram (strict bencode + schema)', benchKrpcGuard());
printSection(`BEP 44 on a 20-node DHT on 127.0.0.1`, await benchDht());
printSection(
  'Metrics: prom-client behind the Metrics interface (baseline: the no-op default, a node with metrics off)',
  await benchMetrics(),
);
printSection('Jobs: orderer and executor on 127.0.0.1 (bubblewrap sandbox, cgroups)', await benchJobs());
printSection('QUIC connections between two nodes on 127.0.0.1 (@matrixai/quic 2.0.9)', await benchNetwork());
printSection('Relay on 127.0.0.1 (relay in its own process)', await benchRelay());
printSection('Hole punching behind real NAT (network namespaces, nftables)', await benchHolePunch());
printSection(
  `Bulk throughput of one QUIC stream on 127.0.0.1 (${THROUGHPUT_MIB} MiB streams, @matrixai/quic 2.0.9 defaults)`,
  await benchThroughput(),
);
printSection('Discovery: 50 and 100 nodes in one process on 127.0.0.1 (private DHT, default configuration)', await benchDiscovery());
printSection('Job sandbox: bubblewrap + cgroups start-up cost (baseline: a plain spawn in this same run)', await benchSandbox());
