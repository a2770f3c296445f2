import { networkInterfaces } from 'node:os';

/** Addresses that name every local interface when bound (never a peer's). */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::']);

/**
 * Whether `host` is one of this machine's interface addresses (or a wildcard). Read at each call:
 * interfaces come and go (a laptop joining a network), and the list is a handful of entries.
 */
export function isLocalHost(host: string): boolean {
  if (WILDCARD_HOSTS.has(host)) return true;
  for (const addresses of Object.values(networkInterfaces())) {
    if (addresses?.some((a) => a.address === host)) return true;
  }
  return false;
}
