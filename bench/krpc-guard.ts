import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import bencode from 'bencode';
import { decodeKrpc } from '../src/node/dht/krpc-decode.ts';
import { checkKrpc } from '../src/node/dht/krpc-schemas.ts';
import { type Figure, ratio, timeOps, us } from './report.ts';

/** The decoder inside k-rpc-socket: it decodes every datagram anyway, after the checks. */
const libraryBencode = createRequire(createRequire(import.meta.url).resolve('k-rpc-socket'))('bencode') as {
  decode: (b: Buffer) => unknown;
};
const libraryDecode = libraryBencode.decode;

/** Datagrams as they arrive at a DHT node: a query, and the answer to one of our BEP 44 gets. */
function samples(): Array<{ name: string; datagram: Buffer; pending?: string }> {
  const id = randomBytes(20);
  const value = {
    peer_id: randomBytes(20).toString('hex'),
    public_ip: '198.51.100.23',
    public_port: 30906,
    node_type: 'public',
    is_relay: 1,
    protocols: ['remote-network/1'],
    capabilities: ['relay'],
    timestamp: 1_790_000_000,
  };
  return [
    {
      name: 'get_peers query',
      datagram: Buffer.from(bencode.encode({ t: 'aa', y: 'q', q: 'get_peers', a: { id, info_hash: randomBytes(20) } })),
    },
    {
      name: 'BEP 44 get response',
      pending: 'get',
      datagram: Buffer.from(
        bencode.encode({
          t: 'ab',
          y: 'r',
          r: { id, token: randomBytes(20), nodes: randomBytes(26 * 8), k: randomBytes(32), sig: randomBytes(64), seq: 42, v: value },
        }),
      ),
    },
  ];
}

/** Cost of the KRPC checks per datagram (strict decode + schema), next to the library's own decode. */
export function benchKrpcGuard(iterations = 50_000): Figure[] {
  return samples().flatMap(({ name, datagram, pending }) => {
    const check = () => checkKrpc(decodeKrpc(datagram), () => pending);
    if (!check().ok) throw new Error(`bench datagram ${name} does not pass the checks`);
    for (let i = 0; i < 5000; i++) check();
    for (let i = 0; i < 5000; i++) libraryDecode(datagram);
    const guardNs = timeOps(iterations, check);
    const decodeNs = timeOps(iterations, () => libraryDecode(datagram));
    return [
      {
        name: `checks per ${name} (${datagram.length} bytes)`,
        value: us(guardNs),
        target: '≤ 25 µs (1000 datagrams/s cost ≤ 2.5 % of a core)',
        met: guardNs <= 25_000,
        baseline: `the library's own decode of it ${us(decodeNs)}, checks/decode ${ratio(guardNs, decodeNs)}`,
      },
    ];
  });
}
