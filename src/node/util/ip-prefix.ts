import { isIP } from 'node:net';

/**
 * IP addresses as bit strings, for prefix matching (allow-lists) and grouping by network (the
 * connection limits count per address and per /24 or /48). Shared by the config parser and the
 * connection limits.
 */

/** An IPv4 address as its IPv4-mapped IPv6 form would be compared: a dual-stack socket reports both. */
const IPV4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

export interface IpPrefix {
  readonly family: 4 | 6;
  readonly bits: bigint;
  readonly length: number;
  /** As configured, for messages. */
  readonly text: string;
}

/** `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::y/n`; undefined when malformed. */
export function parseIpPrefix(text: string): IpPrefix | undefined {
  const [address = '', lengthText, ...rest] = text.trim().split('/');
  if (rest.length > 0) return undefined;
  const parsed = parseIp(address);
  if (!parsed) return undefined;
  const max = parsed.family === 4 ? 32 : 128;
  if (lengthText !== undefined && !/^\d{1,3}$/.test(lengthText)) return undefined;
  const length = lengthText === undefined ? max : Number(lengthText);
  if (length > max) return undefined;
  return { family: parsed.family, bits: maskTo(parsed.bits, max, length), length, text: text.trim() };
}

export function prefixContains(prefix: IpPrefix, host: string): boolean {
  const parsed = parseIp(host);
  if (!parsed || parsed.family !== prefix.family) return false;
  const max = parsed.family === 4 ? 32 : 128;
  return maskTo(parsed.bits, max, prefix.length) === prefix.bits;
}

/** The network of `host` at `length` bits, as `address/length` (e.g. `10.1.2.0/24`); the host itself when unparsable. */
export function networkOf(host: string, length: number): string {
  const parsed = parseIp(host);
  if (!parsed) return host;
  const max = parsed.family === 4 ? 32 : 128;
  const bits = maskTo(parsed.bits, max, Math.min(length, max));
  return `${formatBits(bits, parsed.family)}/${Math.min(length, max)}`;
}

export function ipFamily(host: string): 4 | 6 | undefined {
  return parseIp(host)?.family;
}

function parseIp(host: string): { family: 4 | 6; bits: bigint } | undefined {
  const mapped = IPV4_MAPPED.exec(host);
  const address = mapped?.[1] ?? host;
  const family = isIP(address);
  if (family === 4) {
    const bits = address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
    return { family: 4, bits };
  }
  if (family === 6) return { family: 6, bits: ipv6Bits(address) };
  return undefined;
}

function ipv6Bits(address: string): bigint {
  // An embedded IPv4 tail (::ffff:1.2.3.4 forms that are not plain mapped ones) becomes two groups.
  let text = address.split('%')[0] ?? address;
  const v4 = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (v4?.[1]) {
    const [a = 0, b = 0, c = 0, d = 0] = v4[1].split('.').map(Number);
    text = `${text.slice(0, -v4[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head.length > 0 ? head.split(':') : [];
  const tailGroups = tail !== undefined && tail.length > 0 ? tail.split(':') : [];
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}

function maskTo(bits: bigint, width: number, length: number): bigint {
  if (length === 0) return 0n;
  const hostBits = BigInt(width - length);
  return (bits >> hostBits) << hostBits;
}

function formatBits(bits: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((bits >> shift) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((bits >> shift) & 0xffffn).toString(16));
  return groups.join(':');
}
