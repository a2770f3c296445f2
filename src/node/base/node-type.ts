/** How a node is reached: `public` nodes are dialled directly, `private` ones through a relay. */
export const NODE_TYPES = ['public', 'private'] as const;
export type NodeType = (typeof NODE_TYPES)[number];

/** The `node_type` setting: a node type forced, or `auto` (decided by reachability detection). */
export const NODE_TYPE_SETTINGS = ['auto', ...NODE_TYPES] as const;
export type NodeTypeSetting = (typeof NODE_TYPE_SETTINGS)[number];

/** What reachability detection concluded: UNKNOWN until peers have dialled us back (or not). */
export type Reachability = 'UNKNOWN' | DecidedReachability;
export type DecidedReachability = 'PUBLIC' | 'PRIVATE';
