import type { NodeType } from '../base/node-type.ts';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { crc32c } from '@aws-crypto/crc32c';

/**
 * BEP 42 (DHT security extension), IPv4: a node id is bound to the node's external IP.
 * crc = crc32c((ip & 0x030f3fff) | (r << 29)) over 4 big-endian bytes; the id's first 21 bits are
 * the crc's top 21 bits and its last byte holds r. Nodes on local, private and link-local
 * addresses are exempt.
 */
const IPV4_MASK = 0x030f3fff;

const EXEMPT_V4: ReadonlyArray<readonly [number, number]> = [
  [ipv4ToInt('10.0.0.0'), 8],
  [ipv4ToInt('172.16.0.0'), 12],
  [ipv4ToInt('192.168.0.0'), 16],
  [ipv4ToInt('169.254.0.0'), 16],
  [ipv4ToInt('127.0.0.0'), 8],
];

export function ipv4ToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  return (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
}

export function isBep42Exempt(ip: string): boolean {
  if (isIP(ip) !== 4) return true; // only IPv4 ids are defined by our DHT (bittorrent-dht is IPv4)
  const value = ipv4ToInt(ip);
  return EXEMPT_V4.some(([network, bits]) => value >>> (32 - bits) === network >>> (32 - bits));
}

export function bep42Crc(ip: string, r: number): number {
  const masked = ((ipv4ToInt(ip) & IPV4_MASK) | ((r & 7) << 29)) >>> 0;
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(masked);
  return crc32c(bytes) >>> 0;
}

/** A BEP 42 node id for `ip`; `rand` (0..255) and the 17 random bytes may be given for tests. */
export function bep42NodeId(ip: string, rand = randomBytes(1)[0] ?? 0, random = randomBytes(17)): Buffer {
  const crc = bep42Crc(ip, rand);
  const id = Buffer.alloc(20);
  id[0] = (crc >>> 24) & 0xff;
  id[1] = (crc >>> 16) & 0xff;
  id[2] = ((crc >>> 8) & 0xf8) | ((random[0] ?? 0) & 0x07);
  random.copy(id, 3, 1, 17);
  id[19] = rand & 0xff;
  return id;
}

/** True when `nodeId` is acceptable for a node at `ip` (always true for exempt addresses). */
export function isValidBep42NodeId(nodeId: Uint8Array, ip: string): boolean {
  if (isBep42Exempt(ip)) return true;
  if (nodeId.length !== 20) return false;
  const crc = bep42Crc(ip, nodeId[19] ?? 0);
  return nodeId[0] === ((crc >>> 24) & 0xff) && nodeId[1] === ((crc >>> 16) & 0xff) && ((nodeId[2] ?? 0) & 0xf8) === ((crc >>> 8) & 0xf8);
}

/**
 * Our own DHT node id: BEP 42 when we are public and know the address others see (a specific
 * listen address), random otherwise, as the seed prescribes for nodes behind NAT.
 */
export function chooseNodeId(nodeType: NodeType, externalIp: string | null): Buffer {
  return nodeType === 'public' && externalIp !== null && isIP(externalIp) === 4 ? bep42NodeId(externalIp) : randomBytes(20);
}
