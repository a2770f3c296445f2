import { NODE_EVENT_TYPES, type NodeEventMap, type NodeEventType } from '../../node/events/types.ts';
import type { AnyBusEvent } from '../../node/events/bus.ts';
import { builder } from '../builder.ts';
import { userInputError } from '../errors.ts';

const KNOWN_TYPES = new Set<string>(NODE_EVENT_TYPES);
const MAX_NAMED_UNKNOWN = 5;

const Event = builder.objectRef<AnyBusEvent<NodeEventMap>>('Event').implement({
  description: "One event from the node's event bus.",
  fields: (t) => ({
    type: t.string({ description: 'Event name, e.g. peer.discovered.', resolve: (e) => e.type }),
    seq: t.int({
      description: 'Increases by one per event published by this node: a gap means events were missed.',
      resolve: (e) => e.seq,
    }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    payload: t.field({ type: 'JSON', resolve: (e) => e.payload }),
  }),
});

builder.queryField('eventTypes', (t) =>
  t.stringList({ description: 'Every event name that `events` can stream.', resolve: () => [...NODE_EVENT_TYPES] }),
);

builder.subscriptionField('events', (t) =>
  t.field({
    type: Event,
    description: "Streams the node's events as they happen, optionally only the given types.",
    args: { types: t.arg.stringList({ required: false }) },
    subscribe: (_root, { types }, ctx) => {
      const unknown = (types ?? []).filter((type) => !KNOWN_TYPES.has(type));
      if (unknown.length > 0) {
        // The list can be as long as the request body allows: name a few, count the rest.
        const named = unknown.slice(0, MAX_NAMED_UNKNOWN).map((type) => type.slice(0, 64));
        const more = unknown.length > named.length ? ` and ${unknown.length - named.length} more` : '';
        throw userInputError(`unknown event type(s): ${named.join(', ')}${more}; see the eventTypes query`, {
          argument: 'types',
        });
      }
      const filter = types && types.length > 0 ? new Set(types as NodeEventType[]) : undefined;
      return ctx.node.bus.subscribe({ types: filter });
    },
    resolve: (event) => event,
  }),
);
