import Table from 'cli-table3';
import type { KnownPeerRecord } from '../db/known-peers.ts';

export function formatPeersTable(peers: readonly KnownPeerRecord[], total: number): string {
  if (peers.length === 0) return 'no known peers yet';
  const table = new Table({ head: ['PEER ID', 'VERIFIED', 'RELAY', 'SOURCE', 'TOPIC', 'LAST SEEN', 'FIRST SEEN'] });
  for (const p of peers) {
    const verified = p.verified ? 'yes' : 'no (hearsay)';
    table.push([p.peerId, verified, p.isRelay ? 'yes' : 'no', p.source, p.topic, p.lastSeen.toISOString(), p.firstSeen.toISOString()]);
  }
  const more = total > peers.length ? `\n${total - peers.length} more (use --limit)` : '';
  return `${table.toString()}\n${total} known peer(s)${more}`;
}
