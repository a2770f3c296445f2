import type { KnownPeerRecord, KnownPeerSource as KnownPeerSourceValue } from '../../db/known-peers.ts';
import { isPeerId } from '../../node/base/peer-id.ts';
import { builder } from '../builder.ts';
import { userInputError } from '../errors.ts';

export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;
const CURSOR_PREFIX = 'KnownPeer:';

export const KnownPeerSource = builder.enumType('KnownPeerSource', {
  values: {
    IDENTITY_EXCHANGE: { value: 'identity_exchange', description: 'The peer introduced itself.' },
    PEER_EXCHANGE: { value: 'peer_exchange', description: 'Another peer told us about it.' },
  } as const satisfies Record<Uppercase<KnownPeerSourceValue>, { value: KnownPeerSourceValue; description: string }>,
});

export const KnownPeer = builder.loadableObjectRef<KnownPeerRecord, string>('KnownPeer', {
  load: (peerIds, ctx) => Promise.resolve(ctx.node.knownPeers.getMany(peerIds).map(orNotFound)),
});

KnownPeer.implement({
  description: 'A peer this node knows (the lightweight identity kept in SQLite; metadata lives in the DHT).',
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', resolve: (p) => p.peerId }),
    publicKey: t.string({ description: '64 hex characters.', resolve: (p) => Buffer.from(p.publicKey).toString('hex') }),
    dhtNodeId: t.string({ nullable: true, resolve: (p) => p.dhtNodeId }),
    isRelay: t.boolean({ resolve: (p) => p.isRelay }),
    topic: t.string({ resolve: (p) => p.topic }),
    source: t.field({ type: KnownPeerSource, description: 'How we first learned of it.', resolve: (p) => p.source }),
    verified: t.boolean({
      description:
        'True once the peer proved itself (we exchanged with it, or found its signed metadata in the DHT). False: hearsay from another peer, never shared onward, never a relay candidate, evicted first.',
      resolve: (p) => p.verified,
    }),
    firstSeen: t.field({ type: 'DateTime', resolve: (p) => p.firstSeen }),
    lastSeen: t.field({ type: 'DateTime', resolve: (p) => p.lastSeen }),
  }),
});

class KnownPeerNotFound extends Error {}
function orNotFound(record: KnownPeerRecord | undefined): KnownPeerRecord | Error {
  return record ?? new KnownPeerNotFound();
}

builder.queryField('knownPeer', (t) =>
  t.field({
    type: KnownPeer,
    nullable: true,
    args: { peerId: t.arg({ type: 'PeerId', required: true }) },
    resolve: async (_root, { peerId }, ctx) => {
      try {
        return await KnownPeer.getDataloader(ctx).load(peerId);
      } catch (error) {
        if (error instanceof KnownPeerNotFound) return null;
        throw error;
      }
    },
  }),
);

builder.queryField('knownPeers', (t) =>
  t.connection(
    {
      type: KnownPeer,
      description: `Known peers in peer id order (stable while peers are added). At most ${MAX_PAGE_SIZE} per page; forward pagination only.`,
      args: {
        isRelay: t.arg.boolean({ required: false }),
        topic: t.arg.string({ required: false }),
        verified: t.arg.boolean({ required: false, description: 'Only verified peers (true) or only hearsay (false).' }),
      },
      resolve: (_root, args, ctx) => {
        if (args.last != null || args.before != null) {
          throw userInputError('knownPeers pages forward only: use first and after', { argument: args.last != null ? 'last' : 'before' });
        }
        const first = args.first ?? DEFAULT_PAGE_SIZE;
        if (first < 0 || first > MAX_PAGE_SIZE) {
          throw userInputError(`first must be between 0 and ${MAX_PAGE_SIZE}`, { argument: 'first' });
        }
        const after = args.after == null ? undefined : decodeCursor(args.after);
        const filter = { isRelay: args.isRelay ?? undefined, topic: args.topic ?? undefined, verified: args.verified ?? undefined };
        const knownPeers = ctx.node.knownPeers;
        const page = knownPeers.page(filter, first, after);
        const loader = KnownPeer.getDataloader(ctx);
        for (const row of page.rows) loader.prime(row.peerId, row);
        const edges = page.rows.map((node) => ({ node, cursor: encodeCursor(node.peerId) }));
        return {
          edges,
          totalCount: knownPeers.count(filter),
          pageInfo: {
            hasNextPage: page.hasNextPage,
            hasPreviousPage: after !== undefined,
            startCursor: edges[0]?.cursor ?? null,
            endCursor: edges.at(-1)?.cursor ?? null,
          },
        };
      },
    },
    { name: 'KnownPeersConnection' },
    { name: 'KnownPeersEdge' },
  ),
);

function encodeCursor(peerId: string): string {
  return Buffer.from(`${CURSOR_PREFIX}${peerId}`).toString('base64url');
}

function decodeCursor(cursor: string): string {
  const text = Buffer.from(cursor, 'base64url').toString();
  const peerId = text.startsWith(CURSOR_PREFIX) ? text.slice(CURSOR_PREFIX.length) : '';
  if (!isPeerId(peerId)) throw userInputError('after is not a cursor returned by knownPeers', { argument: 'after' });
  return peerId;
}
