import type { RemoteNode } from '../node/node.ts';

/**
 * What the API reads and drives of a node: its public components and a few facts about it, never
 * the wiring (the composition root's other members) nor a component's internals. Listed here so
 * that what the API depends on is visible, and a test can serve the API from anything that has it.
 */
export type NodeApi = Pick<
  RemoteNode,
  | 'peerId'
  | 'version'
  | 'startedAt'
  | 'config'
  | 'identity'
  | 'health'
  | 'metrics'
  | 'bus'
  | 'knownPeers'
  | 'connections'
  | 'connectionLimits'
  | 'connectToPeer'
  | 'dht'
  | 'dhtNodeId'
  | 'topicDiscovery'
  | 'metadataFetcher'
  | 'metadataPublisher'
  | 'addresses'
  | 'nodeType'
  | 'isRelay'
  | 'reachability'
  | 'relayClient'
  | 'relayServer'
  | 'holePuncher'
  | 'services'
  | 'jobs'
  | 'jobExecutor'
  | 'jobStore'
  | 'dataTransfer'
  | 'serviceSearch'
>;

/**
 * What resolvers see. A fresh object per operation, so DataLoader caches never outlive a request.
 */
export interface GraphQLContext {
  readonly node: NodeApi;
}
