import type { Reachability as ReachabilityValue } from '../../node/base/node-type.ts';
import type { BusEvent } from '../../node/events/bus.ts';
import type { NodeEventMap } from '../../node/events/types.ts';
import type { HolePunchResult, HolePunchStats } from '../../node/holepunch/hole-puncher.ts';
import type { NodeApi } from '../context.ts';
import type { RelaySession } from '../../node/relay/relay-client.ts';
import type { RelaySessionInfo } from '../../node/relay/relay-server.ts';
import { otherPeerIdArgument } from '../arguments.ts';
import { builder } from '../builder.ts';
import { NodeInfo } from './node-info.ts';

const Reachability = builder.enumType('Reachability', {
  description: 'Whether peers can dial this node (an AutoNAT-style dial-back check, or the configured node_type).',
  values: {
    UNKNOWN: { description: 'Not decided yet (too few peers answered).' },
    PUBLIC: { description: 'Peers dialled us back from fresh sockets.' },
    PRIVATE: { description: 'Behind NAT or a firewall: reached through a relay.' },
  } as const satisfies Record<ReachabilityValue, { description: string }>,
});

const NatType = builder.enumType('NatType', {
  description: 'How the NAT maps our socket, from the addresses peers observe.',
  values: {
    UNKNOWN: { description: 'Too few observations (needs peers at two addresses).' },
    NONE: { description: 'Peers see our own address: no NAT.' },
    CONE: { description: 'One mapping for every destination (endpoint-independent): hole punching works.' },
    SYMMETRIC: { description: 'A mapping per destination (endpoint-dependent): hole punching fails; the relay stays.' },
  } as const,
});

const ReachabilityConfidence = builder.enumType('ReachabilityConfidence', {
  description: 'How sure the reachability verdict is.',
  values: {
    NONE: { description: 'No verdict yet.' },
    PROVISIONAL: {
      description: 'One peer (or peers of one network only, when others were connected) said so: re-tested as more peers arrive.',
    },
    CONFIRMED: { description: 'Two distinct peers agreed, from distinct /24 or /48 networks when there were such peers.' },
    CONFIGURED: { description: 'node_type is forced in the configuration.' },
  } as const,
});

const NatInfo = builder.objectRef<NodeApi>('NatInfo').implement({
  fields: (t) => ({
    reachability: t.field({ type: Reachability, resolve: (n) => n.reachability.reachability }),
    confidence: t.field({ type: ReachabilityConfidence, resolve: (n) => n.reachability.confidence }),
    checkedAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When the last dial-back check that got answers ended (null: none yet, or node_type is forced).',
      resolve: (n) => n.reachability.state.checkedAt,
    }),
    nextCheckAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When the next check is due (sooner when our observed address or interfaces change).',
      resolve: (n) => n.reachability.state.nextCheckAt,
    }),
    type: t.field({ type: NatType, resolve: (n) => n.reachability.natType }),
    observedAddresses: t.stringList({
      description: 'Our address as directly connected peers see it, most reported first.',
      resolve: (n) => n.addresses.observed.addresses(),
    }),
  }),
});

const RelayInfo = builder.objectRef<RelaySession>('RelayInfo').implement({
  description: "This NAT node's session with its relay.",
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', resolve: (s) => s.relayPeerId }),
    sessionId: t.string({ resolve: (s) => s.sessionId }),
    address: t.string({ description: "The relay's address, as published in our metadata.", resolve: (s) => s.relayAddress }),
    since: t.field({ type: 'DateTime', resolve: (s) => s.since }),
  }),
});

builder.mutationField('checkReachability', (t) =>
  t.field({
    type: NatInfo,
    description:
      'Runs a reachability check now (dial-backs from up to three connected peers) and returns the result; with a forced node_type, the configured answer.',
    resolve: async (_root, _args, ctx) => {
      await ctx.node.reachability.check('requested through the API');
      return ctx.node;
    },
  }),
);

builder.objectFields(NodeInfo, (t) => ({
  nat: t.field({ type: NatInfo, resolve: (n) => n }),
  relay: t.field({
    type: RelayInfo,
    nullable: true,
    description: 'Null unless this node is private and registered with a relay.',
    resolve: (n) => n.relayClient.session,
  }),
}));

const RelaySessionRef = builder.objectRef<RelaySessionInfo>('RelaySession').implement({
  description: 'A NAT client served by this relay.',
  fields: (t) => ({
    sessionId: t.string({ resolve: (s) => s.sessionId }),
    peerId: t.field({ type: 'PeerId', resolve: (s) => s.peerId }),
    since: t.field({ type: 'DateTime', resolve: (s) => s.since }),
    lastKeepalive: t.field({ type: 'DateTime', resolve: (s) => s.lastKeepalive }),
    bytesIn: t.float({ description: 'Bytes received from the client (circuits included).', resolve: (s) => s.bytesIn }),
    bytesOut: t.float({ description: 'Bytes sent to the client (circuits included).', resolve: (s) => s.bytesOut }),
    circuits: t.int({ description: 'Circuits open now with the client at either end.', resolve: (s) => s.circuits }),
    totalCircuits: t.int({ description: 'Circuits to the client since it registered.', resolve: (s) => s.totalCircuits }),
  }),
});

builder.queryField('relaySessions', (t) =>
  t.field({
    type: [RelaySessionRef],
    description: 'On a relay: every registered NAT client. Empty elsewhere.',
    resolve: (_root, _args, ctx) => ctx.node.relayServer.list(),
  }),
);

const HolePunchStatsRef = builder.objectRef<HolePunchStats>('HolePunchStats').implement({
  fields: (t) => ({
    attempts: t.int({ resolve: (s) => s.attempts }),
    successes: t.int({ resolve: (s) => s.successes }),
    failures: t.int({ resolve: (s) => s.failures }),
    lastDurationMs: t.int({ nullable: true, description: 'From request to direct connection.', resolve: (s) => s.lastDurationMs }),
    lastError: t.string({ nullable: true, resolve: (s) => s.lastError }),
  }),
});

builder.queryField('holePunchStats', (t) =>
  t.field({ type: HolePunchStatsRef, resolve: (_root, _args, ctx) => ctx.node.holePuncher.stats }),
);

const HolePunchResultRef = builder.objectRef<HolePunchResult>('HolePunchResult').implement({
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', resolve: (r) => r.peerId }),
    direct: t.boolean({ description: 'The connection to the peer is now direct.', resolve: (r) => r.direct }),
    durationMs: t.int({ resolve: (r) => r.durationMs }),
    attempt: t.int({ description: 'Attempts for this peer so far (0: it was direct already).', resolve: (r) => r.attempt }),
  }),
});

builder.mutationField('holePunch', (t) =>
  t.field({
    type: HolePunchResultRef,
    description:
      'Tries to replace the relayed connection to a peer with a direct one (relay-coordinated hole punch). ' +
      'Errors: NOT_CONNECTED, HOLE_PUNCH_FAILED (the relayed connection stays).',
    args: { peerId: t.arg({ type: 'PeerId', required: true }) },
    resolve: (_root, args, ctx) => ctx.node.holePuncher.punch(otherPeerIdArgument(args.peerId, ctx.node.peerId)),
  }),
);

builder.mutationField('selectRelay', (t) =>
  t.field({
    type: RelayInfo,
    description: 'On a private node: moves the relay session to this known relay. Error: RELAY_UNAVAILABLE.',
    args: { peerId: t.arg({ type: 'PeerId', required: true }) },
    resolve: (_root, args, ctx) => ctx.node.relayClient.select(otherPeerIdArgument(args.peerId, ctx.node.peerId)),
  }),
);

type RelayEvent = BusEvent<NodeEventMap, 'relay.session.registered' | 'relay.session.expired' | 'relay.session.closed'>;
const RelaySessionChange = builder.objectRef<RelayEvent>('RelaySessionChange').implement({
  description: 'On a relay (role SERVER) peerId is the client; on a NAT node (role CLIENT) it is the relay.',
  fields: (t) => ({
    change: t.string({ description: 'registered, expired or closed.', resolve: (e) => e.type.slice('relay.session.'.length) }),
    role: t.string({ description: 'server or client.', resolve: (e) => e.payload.role }),
    sessionId: t.string({ resolve: (e) => e.payload.sessionId }),
    peerId: t.field({ type: 'PeerId', resolve: (e) => e.payload.peerId }),
    reason: t.string({ nullable: true, resolve: (e) => ('reason' in e.payload ? e.payload.reason : null) }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});

builder.subscriptionField('relaySessionChanged', (t) =>
  t.field({
    type: RelaySessionChange,
    description: 'Relay sessions registered, expired or closed, on either side.',
    subscribe: (_root, _args, ctx) =>
      ctx.node.bus.subscribe({
        types: new Set(['relay.session.registered', 'relay.session.expired', 'relay.session.closed'] as const),
      }) as AsyncIterableIterator<RelayEvent>,
    resolve: (event) => event,
  }),
);
