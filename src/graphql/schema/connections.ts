import { parseHostPort } from '../../node/base/address.ts';
import type { ConnectionState as ConnectionStateValue } from '../../node/base/connection-state.ts';
import type { BusEvent } from '../../node/events/bus.ts';
import type { NodeEventMap } from '../../node/events/types.ts';
import type { ConnectionInfo } from '../../node/lifecycle/connection-manager.ts';
import { otherPeerIdArgument } from '../arguments.ts';
import { filterAsyncIterator } from '../async-iterators.ts';
import { builder } from '../builder.ts';
import { userInputError } from '../errors.ts';
import { KnownPeer, KnownPeerSource } from './known-peers.ts';

const ConnectionState = builder.enumType('ConnectionState', {
  values: {
    CONNECTING: { description: 'Dialling, or waiting for the identity exchange.' },
    CONNECTED: { description: 'Exchange done, streams open.' },
    IDLE: { description: 'Exchange done, no stream open.' },
    STALE: { description: 'Idle past quic_idle_timeout; being closed.' },
    CLOSED: { description: 'Closed.' },
  } as const satisfies Record<ConnectionStateValue, { description: string }>,
});

const ConnectionDirection = builder.enumType('ConnectionDirection', {
  values: { INBOUND: { value: 'inbound' }, OUTBOUND: { value: 'outbound' } } as const,
});

const Connection = builder.objectRef<ConnectionInfo>('Connection').implement({
  description: 'A QUIC connection to a peer.',
  fields: (t) => ({
    id: t.id({ resolve: (c) => c.id }),
    peerId: t.field({
      type: 'PeerId',
      nullable: true,
      description: 'Proven by TLS; null while dialling an address.',
      resolve: (c) => c.peerId,
    }),
    remoteAddress: t.string({ resolve: (c) => c.remoteAddress }),
    direction: t.field({ type: ConnectionDirection, resolve: (c) => c.direction }),
    state: t.field({ type: ConnectionState, resolve: (c) => c.state }),
    activeStreams: t.int({ resolve: (c) => c.activeStreams }),
    lastActivity: t.field({ type: 'DateTime', resolve: (c) => c.lastActivity }),
    openedAt: t.field({ type: 'DateTime', resolve: (c) => c.openedAt }),
    rttMs: t.float({ nullable: true, resolve: (c) => c.rttMs }),
    viaRelay: t.boolean({ resolve: (c) => c.viaRelay }),
  }),
});

builder.queryField('connections', (t) =>
  t.field({
    type: [Connection],
    args: { state: t.arg({ type: ConnectionState, required: false }) },
    resolve: (_root, args, ctx) => ctx.node.connections.list(args.state ?? undefined),
  }),
);

builder.objectField(KnownPeer, 'connection', (t) =>
  t.field({
    type: Connection,
    nullable: true,
    description: 'Our live connection to it, if any.',
    resolve: (peer, _args, ctx) => ctx.node.connections.byPeer(peer.peerId) ?? null,
  }),
);

builder.mutationField('connectPeer', (t) =>
  t.field({
    type: Connection,
    description:
      'Connects to a peer and runs the exchange. With only peerId, its address comes from its DHT metadata; with an address, ' +
      'that address is dialled (and, with peerId too, the peer there must prove that id).',
    args: { peerId: t.arg({ type: 'PeerId', required: false }), address: t.arg.string({ required: false }) },
    resolve: async (_root, args, ctx) => {
      const peerId = args.peerId == null ? undefined : otherPeerIdArgument(args.peerId, ctx.node.peerId);
      if (args.address != null) {
        const address = parseHostPort(args.address);
        if (!address) throw userInputError('address must be host:port', { argument: 'address' });
        return ctx.node.connections.connect(address, peerId);
      }
      if (peerId === undefined) throw userInputError('give a peerId, an address, or both', { argument: 'peerId' });
      return ctx.node.connectToPeer(peerId);
    },
  }),
);

builder.mutationField('disconnectPeer', (t) =>
  t.boolean({
    description: 'Closes every connection to the peer; false if there was none.',
    args: { peerId: t.arg({ type: 'PeerId', required: true }) },
    resolve: (_root, args, ctx) => ctx.node.connections.disconnect(args.peerId),
  }),
);

type StateChange = BusEvent<NodeEventMap, 'connection.state.changed'>;
const ConnectionStateChange = builder.objectRef<StateChange>('ConnectionStateChange').implement({
  fields: (t) => ({
    connectionId: t.id({ resolve: (e) => e.payload.connectionId }),
    peerId: t.field({ type: 'PeerId', nullable: true, resolve: (e) => e.payload.peerId }),
    remoteAddress: t.string({ resolve: (e) => e.payload.remoteAddress }),
    from: t.field({ type: ConnectionState, nullable: true, resolve: (e) => e.payload.from }),
    to: t.field({ type: ConnectionState, resolve: (e) => e.payload.to }),
    viaRelay: t.boolean({ resolve: (e) => e.payload.viaRelay }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});

builder.subscriptionField('connectionStateChanged', (t) =>
  t.field({
    type: ConnectionStateChange,
    description: 'Every connection state transition, optionally for one peer.',
    args: { peerId: t.arg({ type: 'PeerId', required: false }) },
    subscribe: (_root, args, ctx) => {
      const peerId = args.peerId ?? undefined;
      const changes = ctx.node.bus.subscribe({
        types: new Set(['connection.state.changed'] as const),
      }) as AsyncIterableIterator<StateChange>;
      return peerId === undefined ? changes : filterAsyncIterator(changes, (change) => change.payload.peerId === peerId);
    },
    resolve: (event) => event,
  }),
);

type Discovered = BusEvent<NodeEventMap, 'peer.discovered'>;
const PeerDiscovered = builder.objectRef<Discovered>('PeerDiscovered').implement({
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', resolve: (e) => e.payload.peerId }),
    topic: t.string({ resolve: (e) => e.payload.topic }),
    isRelay: t.boolean({ resolve: (e) => e.payload.isRelay }),
    source: t.field({ type: KnownPeerSource, resolve: (e) => e.payload.source }),
    verified: t.boolean({
      description: 'False for hearsay: told by another peer, not proven yet (neither shared nor dialled until it is).',
      resolve: (e) => e.payload.verified,
    }),
    via: t.field({
      type: 'PeerId',
      nullable: true,
      description: 'The peer that told us of it (hearsay only).',
      resolve: (e) => e.payload.via,
    }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});

builder.subscriptionField('peerDiscovered', (t) =>
  t.field({
    type: PeerDiscovered,
    description: 'Each peer that becomes known to this node.',
    subscribe: (_root, _args, ctx) =>
      ctx.node.bus.subscribe({ types: new Set(['peer.discovered'] as const) }) as AsyncIterableIterator<Discovered>,
    resolve: (event) => event,
  }),
);
