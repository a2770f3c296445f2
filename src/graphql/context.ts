import type { RemoteNode } from '../node/node.ts';

/**
 * What resolvers see. A fresh object per operation, so DataLoader caches never outlive a request.
 */
export interface GraphQLContext {
  readonly node: RemoteNode;
}
