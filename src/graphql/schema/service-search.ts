import type { SearchItem } from '../../node/services/service-search.ts';
import type { SearchedServiceEntry } from '../../node/wire/messages.ts';
import { builder } from '../builder.ts';
import { ParameterSpecType, ServiceInterfacesType, ServiceKind } from './services.ts';

type Complete = Extract<SearchItem, { kind: 'complete' }>;

const RemoteService = builder.objectRef<SearchedServiceEntry>('RemoteService').implement({
  description: 'A service another peer offers us, as its answer to a search showed it.',
  fields: (t) => ({
    id: t.id({ resolve: (s) => s.id }),
    name: t.exposeString('name'),
    kind: t.field({ type: ServiceKind, resolve: (s) => s.kind }),
    description: t.exposeString('description'),
    parameters: t.field({ type: [ParameterSpecType], resolve: (s) => s.parameters }),
    interfaces: t.field({
      type: ServiceInterfacesType,
      nullable: true,
      description: 'null for DATA services.',
      resolve: (s) => s.interfaces,
    }),
  }),
});

const ServiceSearchError = builder.objectRef<{ code: string; message: string }>('ServiceSearchError').implement({
  fields: (t) => ({
    code: t.exposeString('code', { description: 'e.g. SEARCH_RATE_LIMITED (the peer refused), NOT_CONNECTED, PROTOCOL_TIMEOUT.' }),
    message: t.exposeString('message'),
  }),
});

const ServiceSearchComplete = builder.objectRef<Complete>('ServiceSearchComplete').implement({
  fields: (t) => ({
    peersAsked: t.exposeInt('peersAsked'),
    answered: t.exposeInt('answered'),
    failed: t.exposeInt('failed'),
    timedOut: t.exposeInt('timedOut', { description: 'Peers that had not answered by the deadline.' }),
    timedOutPeers: t.field({ type: ['PeerId'], resolve: (c) => c.timedOutPeers }),
    durationMs: t.exposeInt('durationMs'),
  }),
});

const ServiceSearchItem = builder.objectRef<SearchItem>('ServiceSearchItem').implement({
  description: "One item of a search: a peer's matches (services), a peer's failure (error), or the final counts (complete, last).",
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', nullable: true, resolve: (i) => (i.kind === 'complete' ? null : i.peerId) }),
    services: t.field({ type: [RemoteService], resolve: (i) => (i.kind === 'result' ? i.services : []) }),
    error: t.field({
      type: ServiceSearchError,
      nullable: true,
      resolve: (i) => (i.kind === 'error' ? { code: i.code, message: i.message } : null),
    }),
    complete: t.field({ type: ServiceSearchComplete, nullable: true, resolve: (i) => (i.kind === 'complete' ? i : null) }),
  }),
});

builder.subscriptionField('serviceSearch', (t) =>
  t.field({
    type: ServiceSearchItem,
    description:
      'Searches the services of the given peers (dialled when not connected) or else of the connected peers: each ' +
      "peer's matches as they arrive, then one item with `complete`, at the latest after [services] search_deadline.",
    args: {
      query: t.arg.string({
        required: false,
        defaultValue: '',
        description: 'Case-insensitive substring of name or description; empty = all.',
      }),
      kind: t.arg({ type: ServiceKind, required: false }),
      peerIds: t.arg({ type: ['PeerId'], required: false }),
    },
    subscribe: (_root, args, ctx) => ctx.node.serviceSearch.search(args.query ?? '', args.kind ?? null, args.peerIds ?? null),
    resolve: (item) => item,
  }),
);
