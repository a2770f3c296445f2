import type { ConnectionLimitStats } from '../../node/lifecycle/connection-limits.ts';
import type { LimitReason } from '../../node/quic/refusal.ts';
import { builder } from '../builder.ts';

const ConnectionLimitReason = builder.enumType('ConnectionLimitReason', {
  description: 'Why a connection was refused or pruned for a connection limit ([connection_limits], max_connections).',
  values: {
    IP: { value: 'ip', description: 'Too many connections from its IP address (max_inbound_per_ip).' },
    SUBNET: { value: 'subnet', description: 'Too many from its /24 or /48 (max_inbound_per_subnet).' },
    PENDING_IP: { value: 'pending_ip', description: 'Too many of its address still in the handshake or exchange (max_pending_per_ip).' },
    PENDING: { value: 'pending', description: 'Too many in the handshake or exchange overall (max_pending).' },
    RATE: { value: 'rate', description: 'New connections from its address came too fast (inbound_rate_per_ip, inbound_burst_per_ip).' },
    CAPACITY: { value: 'capacity', description: 'Every slot taken (max_connections) and nothing could be pruned for it.' },
    PRUNED: { value: 'pruned', description: 'An open connection closed to make room for a peer from a less crowded network.' },
  } as const,
});

const ConnectionLimitCount = builder.objectRef<{ readonly reason: LimitReason; readonly count: number }>('ConnectionLimitCount').implement({
  fields: (t) => ({
    reason: t.field({ type: ConnectionLimitReason, resolve: (c) => c.reason }),
    count: t.int({ resolve: (c) => c.count }),
  }),
});

const ProtectedPeer = builder.objectRef<{ readonly peerId: string; readonly tags: string[] }>('ProtectedPeer').implement({
  description: 'A peer whose connections are never pruned, and why (relay, relayed-peer, bootstrap, …).',
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', resolve: (p) => p.peerId }),
    tags: t.stringList({ resolve: (p) => p.tags }),
  }),
});

interface LimitsView extends ConnectionLimitStats {
  readonly protectedPeers: Array<{ peerId: string; tags: string[] }>;
}

const ConnectionLimits = builder.objectRef<LimitsView>('ConnectionLimits').implement({
  description: 'What the inbound connection limits refused and pruned since start, and what they hold now.',
  fields: (t) => ({
    refusals: t.field({
      type: [ConnectionLimitCount],
      description: 'Refused and pruned connections by reason, every reason listed.',
      resolve: (l) => [...l.refusals],
    }),
    pending: t.int({ description: 'Inbound connections not yet through TLS and the identity exchange.', resolve: (l) => l.pending }),
    inbound: t.int({ description: 'Direct inbound connections admitted and open, pending ones included.', resolve: (l) => l.inbound }),
    protectedPeers: t.field({ type: [ProtectedPeer], resolve: (l) => l.protectedPeers }),
  }),
});

builder.queryField('connectionLimits', (t) =>
  t.field({
    type: ConnectionLimits,
    resolve: (_root, _args, ctx) => ({ ...ctx.node.connectionLimits.stats(), protectedPeers: ctx.node.connections.protection.list() }),
  }),
);
