import type { NodeType as NodeTypeValue } from '../../node/base/node-type.ts';
import type { NodeApi } from '../context.ts';
import { builder } from '../builder.ts';

export const NodeType = builder.enumType('NodeType', {
  description: 'Whether the node is reachable from the internet.',
  values: {
    PUBLIC: { value: 'public', description: 'Reachable directly.' },
    PRIVATE: { value: 'private', description: 'Behind NAT; reached through a relay.' },
  } as const satisfies Record<Uppercase<NodeTypeValue>, { value: NodeTypeValue; description: string }>,
});

export const NodeInfo = builder.objectRef<NodeApi>('NodeInfo').implement({
  description: 'This node.',
  fields: (t) => ({
    peerId: t.field({ type: 'PeerId', description: 'hex(SHA1(publicKey)), 40 hex characters.', resolve: (n) => n.peerId }),
    publicKey: t.string({
      description: 'Ed25519 public key, 64 hex characters.',
      resolve: (n) => Buffer.from(n.identity.publicKey).toString('hex'),
    }),
    dhtNodeId: t.string({ description: 'DHT routing id, 40 hex characters.', resolve: (n) => n.dhtNodeId }),
    nodeType: t.field({ type: NodeType, resolve: (n) => n.nodeType }),
    isRelay: t.boolean({ resolve: (n) => n.isRelay }),
    version: t.string({ resolve: (n) => n.version }),
    startedAt: t.field({ type: 'DateTime', resolve: (n) => n.startedAt }),
    uptimeSeconds: t.int({ resolve: (n) => Math.floor((Date.now() - n.startedAt.getTime()) / 1000) }),
  }),
});

builder.queryField('node', (t) => t.field({ type: NodeInfo, resolve: (_root, _args, ctx) => ctx.node }));
