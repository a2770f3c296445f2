import { builder } from '../builder.ts';
import { userInputError } from '../errors.ts';

interface FetchedData {
  readonly peerId: string;
  readonly serviceId: string;
  readonly sha256: string;
  readonly size: number;
}

const FetchedDataRef = builder.objectRef<FetchedData>('FetchedData').implement({
  description: "A peer's DATA service, now stored on this node by content (verified: size and SHA-256).",
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', resolve: (d) => d.peerId }),
    serviceId: t.exposeString('serviceId'),
    sha256: t.exposeString('sha256'),
    size: t.exposeInt('size', { description: 'Bytes.' }),
  }),
});

builder.mutationField('fetchData', (t) =>
  t.field({
    type: FetchedDataRef,
    description:
      "Fetches a peer's DATA service (by id or name) into this node's content store. UNKNOWN_SERVICE when the peer offers no such " +
      'service to this node, DATA_CHANGED when its file changed since it was registered, BLOB_VERIFICATION_FAILED when what arrived does not match.',
    args: { peerId: t.arg({ type: 'PeerId', required: true }), serviceId: t.arg.string({ required: true }) },
    resolve: async (_root, args, ctx) => {
      if (args.peerId === ctx.node.peerId) throw userInputError('fetchData fetches from another peer', { argument: 'peerId' });
      const fetched = await ctx.node.dataTransfer.fetch(args.peerId, args.serviceId);
      return { peerId: args.peerId, ...fetched };
    },
  }),
);
