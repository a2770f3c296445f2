import { randomBytes } from 'node:crypto';
import bencode from 'bencode';
import { type Figure, ratio, timeOps, us } from './report.ts';

/** A metadata dict of ~400 bencoded bytes, shaped like the seed's PeerMetadata. */
function sampleMetadata(): Record<string, unknown> {
  return {
    peer_id: randomBytes(20).toString('hex'),
    public_ip: '198.51.100.23',
    private_ip: '10.0.0.12',
    public_port: 30906,
    node_type: 'private',
    is_relay: 0,
    using_relay: 1,
    connected_relay: randomBytes(20).toString('hex'),
    relay_session_id: randomBytes(8).toString('hex'),
    relay_address: '198.51.100.7:30906',
    protocols: ['rn/1', 'rn-relay/1'],
    capabilities: ['workflow', 'docker'],
    timestamp: 1_790_000_000,
    version: 1,
  };
}

export function benchBencode(iterations = 20_000): Figure[] {
  const metadata = sampleMetadata();
  const encoded = bencode.encode(metadata);
  for (let i = 0; i < 2000; i++) bencode.decode(bencode.encode(metadata));
  const encodeNs = timeOps(iterations, () => bencode.encode(metadata));
  const decodeNs = timeOps(iterations, () => bencode.decode(encoded));
  const jsonText = JSON.stringify(metadata);
  const jsonNs = timeOps(iterations, () => JSON.parse(JSON.stringify(metadata)) as unknown);
  const roundTrip = encodeNs + decodeNs;
  return [
    {
      name: `bencode encode (${encoded.length}-byte dict)`,
      value: us(encodeNs),
      target: '≤ 50 µs (seed: ~0.05 ms)',
      met: encodeNs <= 50_000,
    },
    { name: 'bencode decode', value: us(decodeNs) },
    {
      name: 'bencode round trip',
      value: us(roundTrip),
      baseline: `JSON round trip of the same ${jsonText.length}-byte dict ${us(jsonNs)}, bencode/JSON ${ratio(roundTrip, jsonNs)}`,
    },
  ];
}
