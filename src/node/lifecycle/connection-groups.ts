import { parseHostPort } from '../base/address.ts';
import { ipFamily, networkOf } from '../util/ip-prefix.ts';

/**
 * How the connection limits group addresses. One "address" is an IPv4 address or an IPv6 /64 (a
 * single host usually gets a whole /64); one network is an IPv4 /24 or an IPv6 /48, the usual
 * allocation of one operator's site. A relayed connection's address is its relay's, so relayed
 * connections form a group per relay instead.
 */
export const IPV4_NETWORK_BITS = 24;
export const IPV6_NETWORK_BITS = 48;
export const IPV6_HOST_BITS = 64;

export function addressKey(host: string): string {
  return ipFamily(host) === 6 ? networkOf(host, IPV6_HOST_BITS) : networkOf(host, 32);
}

export function networkKey(host: string): string {
  return networkOf(host, ipFamily(host) === 6 ? IPV6_NETWORK_BITS : IPV4_NETWORK_BITS);
}

/** The group a connection (`host:port`) counts in when the pruner looks for the most crowded one. */
export function connectionGroup(remoteAddress: string, viaRelay: boolean): string {
  if (viaRelay) return `relay ${remoteAddress}`;
  return networkKey(parseHostPort(remoteAddress)?.host ?? remoteAddress);
}
