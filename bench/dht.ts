import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { MainlineDht, type MainlineDhtOptions } from '../src/node/dht/mainline-dht.ts';
import { EventBus } from '../src/node/events/bus.ts';
import type { NodeEventMap } from '../src/node/events/types.ts';
import { nobleVerify } from '../src/node/identity/noble.ts';
import { peerIdFromPublicKey } from '../src/node/base/peer-id.ts';
import { signMessage } from '../src/node/identity/signatures.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { MetadataFetcher } from '../src/node/metadata/metadata-fetcher.ts';
import { encodeMetadata } from '../src/node/metadata/peer-metadata.ts';
import { type Figure, ms, percentile, ratio, us } from './report.ts';

const NODES = 20;
const ITEMS = 40;
const GETS = 200;

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const start = performance.now();
  const value = await fn();
  return [performance.now() - start, value];
}

/** BEP 44 put and get on a 20-node DHT on 127.0.0.1, with node:crypto and with noble verification. */
export async function benchDht(): Promise<Figure[]> {
  const logger = createLogger('silent');
  const nodes: MainlineDht[] = [];
  const start = async (verify?: MainlineDhtOptions['verify']) => {
    const bootstrap = nodes.slice(0, 3).map((n) => ({ host: '127.0.0.1', port: n.port }));
    const node = new MainlineDht({ nodeId: randomBytes(20), bootstrap, host: '127.0.0.1', port: 0, logger, verify });
    await node.start();
    await node.whenReady();
    nodes.push(node);
    return node;
  };
  try {
    for (let i = 0; i < NODES; i++) await start();
    const nobleReader = await start(nobleVerify);
    const reader = nodes[NODES - 1]!;

    const keys = Array.from({ length: ITEMS }, () => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
      return { raw, sign: (m: Uint8Array) => signMessage(privateKey, m) };
    });
    const putTimes: number[] = [];
    for (const [i, key] of keys.entries()) {
      const value = encodeMetadata({
        peerId: peerIdFromPublicKey(key.raw),
        publicIp: '198.51.100.7',
        privateIp: '10.0.0.7',
        publicPort: 30906,
        privatePort: 30906,
        nodeType: 'public',
        isRelay: i % 5 === 0,
        usingRelay: false,
        connectedRelay: null,
        relaySessionId: null,
        relayAddress: null,
        protocols: ['remote-network/1'],
        capabilities: [],
        timestamp: 1_790_000_000,
        version: 1,
      });
      const [t] = await timed(() => nodes[i % (NODES - 1)]!.putMutable({ publicKey: key.raw, seq: 1, value, sign: key.sign }));
      putTimes.push(t);
    }

    const getWith = async (node: MainlineDht) => {
      const samples: number[] = [];
      for (let i = 0; i < GETS; i++) {
        const [t, item] = await timed(() => node.getMutable(keys[i % ITEMS]!.raw));
        if (!item) throw new Error('benchmark item not found');
        samples.push(t);
      }
      return samples;
    };
    await getWith(reader); // warm-up
    const uncached = await getWith(reader);
    const noble = await getWith(nobleReader);

    const fetcher = new MetadataFetcher({ dht: reader, bus: new EventBus<NodeEventMap>(), logger, ttlMs: 60_000 });
    for (const key of keys) await fetcher.fetch(key.raw);
    const cached: number[] = [];
    for (let i = 0; i < GETS * 10; i++) {
      const [t] = await timed(() => fetcher.fetch(keys[i % ITEMS]!.raw));
      cached.push(t);
    }

    const uncachedP50 = percentile(uncached, 50);
    const cachedP50 = percentile(cached, 50);
    return [
      {
        name: `BEP 44 put (${ITEMS} items, lookup + store at ${NODES} nodes) p50`,
        value: ms(percentile(putTimes, 50)),
        baseline: `p99 ${ms(percentile(putTimes, 99))}`,
      },
      {
        name: 'BEP 44 get, uncached, p50',
        value: ms(uncachedP50),
        target: '≤ 10 ms',
        met: uncachedP50 <= 10,
        baseline: `p99 ${ms(percentile(uncached, 99))}`,
      },
      {
        name: 'BEP 44 get with @noble/ed25519 verification, p50',
        value: ms(percentile(noble, 50)),
        baseline: `node:crypto ${ratio(percentile(noble, 50), uncachedP50)} faster; noble p99 ${ms(percentile(noble, 99))}`,
      },
      {
        name: 'cached metadata read, p50',
        value: us(cachedP50 * 1e6),
        target: '< 0.1 ms',
        met: cachedP50 < 0.1,
        baseline: `p99 ${us(percentile(cached, 99) * 1e6)}; ${ratio(uncachedP50, cachedP50)} faster than a lookup`,
      },
    ];
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
}
