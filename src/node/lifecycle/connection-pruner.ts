/**
 * Which connection gives way when the node is full and a newcomer arrives (js-libp2p's connection
 * pruner, with its tags reduced to what this node needs): peers with history are protected, by
 * tag, and never pruned; of the rest, an inbound connection from the most crowded network goes
 * first, so a flood from one network cannot keep a peer from elsewhere out.
 */

/** Tags the node sets itself; others (a later "job running" one) use the same API. */
export const PROTECTION_TAGS = {
  /** The relay this node uses. */
  relay: 'relay',
  /** A NAT peer this node relays for. */
  relayedPeer: 'relayed-peer',
  /** A peer at a configured bootstrap address. */
  bootstrap: 'bootstrap',
} as const;

/** Peers protected from pruning, each with the tags that protect it. */
export class PeerProtection {
  private readonly tags = new Map<string, Set<string>>();

  protect(peerId: string, tag: string): void {
    let tags = this.tags.get(peerId);
    if (!tags) {
      tags = new Set();
      this.tags.set(peerId, tags);
    }
    tags.add(tag);
  }

  /** Removes one tag; the peer stays protected while it has another. */
  unprotect(peerId: string, tag: string): void {
    const tags = this.tags.get(peerId);
    if (!tags) return;
    tags.delete(tag);
    if (tags.size === 0) this.tags.delete(peerId);
  }

  isProtected(peerId: string | null): boolean {
    return peerId !== null && this.tags.has(peerId);
  }

  list(): Array<{ peerId: string; tags: string[] }> {
    return [...this.tags].map(([peerId, tags]) => ({ peerId, tags: [...tags].sort() }));
  }
}

export interface PruneCandidate {
  readonly id: string;
  /** Its network (see connection-groups.ts). */
  readonly group: string;
  readonly inbound: boolean;
  readonly protected: boolean;
  readonly activeStreams: number;
  readonly openedAt: Date;
}

/**
 * The connection to close so that a newcomer from `newcomerGroup` gets a slot, if any: an
 * unprotected inbound connection from the most crowded group that has one, provided that group
 * holds at least two more inbound connections than the newcomer's. That margin keeps two crowded
 * groups from pruning each other in turns: after a prune the newcomer's group is never the
 * larger. Within the group, the one with fewest active streams, then the newest, goes first (a
 * connection that just arrived in a flood before one that has served for hours).
 */
export function choosePruneVictim(connections: readonly PruneCandidate[], newcomerGroup: string): PruneCandidate | undefined {
  const counts = new Map<string, number>();
  for (const c of connections) if (c.inbound) counts.set(c.group, (counts.get(c.group) ?? 0) + 1);
  const newcomerCount = counts.get(newcomerGroup) ?? 0;
  const groups = [...counts].filter(([, count]) => count > newcomerCount + 1).sort((a, b) => b[1] - a[1]);
  for (const [group] of groups) {
    const candidates = connections.filter((c) => c.inbound && !c.protected && c.group === group);
    if (candidates.length === 0) continue;
    candidates.sort((a, b) => a.activeStreams - b.activeStreams || b.openedAt.getTime() - a.openedAt.getTime());
    return candidates[0];
  }
  return undefined;
}
