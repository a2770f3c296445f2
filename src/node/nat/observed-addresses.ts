import { networkInterfaces } from 'node:os';
import { type HostPort, parseHostPort } from '../base/address.ts';
import { setBounded } from '../util/bounded-map.ts';

/** How the NAT in front of us maps our socket, as the addresses peers observe reveal it. */
export type NatType = 'UNKNOWN' | 'NONE' | 'CONE' | 'SYMMETRIC';

/** Reports kept (one per reporting peer, newest first out). */
const MAX_REPORTS = 32;

interface Report {
  readonly host: string;
  readonly port: number;
  /** The reporting peer's address: observations from one host say nothing about mapping behaviour. */
  readonly from: string;
}

/**
 * Our address as each directly connected peer sees it (the `observed_address` of its identity
 * message). The same external port seen by peers at different addresses means the NAT maps the
 * socket once for every destination (endpoint-independent, "cone": punchable); different ports
 * mean a mapping per destination (endpoint-dependent, "symmetric"); our own address means no NAT.
 */
export class ObservedAddresses {
  private readonly reports = new Map<string, Report>();

  constructor(private readonly localPort: () => number) {}

  record(reporterPeerId: string, observed: string | null, reporterAddress: string): void {
    const address = observed ? parseHostPort(observed) : undefined;
    const from = parseHostPort(reporterAddress);
    if (!address || !from) return;
    setBounded(this.reports, reporterPeerId, { host: address.host, port: address.port, from: from.host }, MAX_REPORTS);
  }

  /** Distinct observed addresses, most reported first. */
  addresses(): string[] {
    const counts = new Map<string, number>();
    for (const r of this.reports.values()) {
      const key = `${r.host}:${r.port}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([address]) => address);
  }

  /** The address most peers see, if any peer reported one. */
  get primary(): HostPort | null {
    const first = this.addresses()[0];
    return first ? (parseHostPort(first) ?? null) : null;
  }

  natType(): NatType {
    const reports = [...this.reports.values()];
    if (reports.length === 0) return 'UNKNOWN';
    const local = localAddresses();
    if (reports.every((r) => local.has(r.host) && r.port === this.localPort())) return 'NONE';
    // Mapping behaviour needs views from at least two different hosts.
    const byHost = new Map<string, Set<number>>();
    for (const r of reports) byHost.set(r.from, (byHost.get(r.from) ?? new Set()).add(r.port));
    if (byHost.size < 2) return 'UNKNOWN';
    const ports = new Set(reports.map((r) => r.port));
    return ports.size === 1 ? 'CONE' : 'SYMMETRIC';
  }
}

function localAddresses(): Set<string> {
  const found = new Set<string>();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) found.add(entry.address);
  }
  return found;
}
