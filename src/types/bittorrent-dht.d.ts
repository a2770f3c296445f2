// bittorrent-dht 11 ships no types; this declares the part we use (public API plus the few
// internals the adapter in src/node/dht/mainline-dht.ts relies on, named there).
declare module 'bittorrent-dht' {
  import { EventEmitter } from 'node:events';

  export interface DhtContact {
    id?: Buffer;
    host: string;
    port: number;
    token?: Buffer;
  }

  export interface DhtOptions {
    nodeId?: Buffer;
    /** Passed down to k-rpc-socket: the UDP socket to use instead of one of its own. */
    socket?: import('node:dgram').Socket;
    bootstrap?: Array<string | { host: string; port: number }> | false;
    host?: string | false;
    verify?: (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) => boolean;
    timeout?: number;
    concurrency?: number;
    maxValues?: number;
    maxPeers?: number;
    maxAge?: number;
  }

  export interface GetResponse {
    id: Buffer;
    v: unknown;
    k?: Buffer;
    sig?: Buffer;
    seq?: number;
    salt?: Buffer;
  }

  interface KBucketLike {
    closest(target: Buffer, n?: number): DhtContact[];
    toArray(): DhtContact[];
    count(): number;
  }

  interface KrpcError extends Error {
    code?: number;
  }

  export default class DHT extends EventEmitter {
    constructor(options?: DhtOptions);
    nodeId: Buffer;
    nodes: KBucketLike;
    listening: boolean;
    destroyed: boolean;
    listen(port: number, host: string, callback?: () => void): void;
    address(): { address: string; port: number; family: string };
    addNode(node: { host: string; port: number; id?: Buffer }): void;
    announce(infoHash: Buffer, port: number, callback: (error: Error | null) => void): void;
    lookup(infoHash: Buffer, callback: (error: Error | null, visited?: number) => void): () => void;
    get(
      target: Buffer,
      options: { cache?: boolean; salt?: Buffer },
      callback: (error: Error | null, value: GetResponse | null) => void,
    ): void;
    put(options: unknown, callback: (error: Error | null, target: Buffer, nodes: number) => void): Buffer;
    destroy(callback?: () => void): void;

    /**
     * Internal: an iterative lookup of `target` sending `message` to ever closer nodes; `onreply`
     * sees each response (returning false stops sending further queries).
     */
    _closest(
      target: Buffer,
      message: unknown,
      onreply: ((message: { r?: GetResponse }, node: DhtContact) => boolean) | null,
      callback: (error: Error | null, visited?: number) => void,
    ): void;
    /** Internal: closest-node tables (with write tokens) from the last lookup of each target. */
    _tables: { get(targetHex: string): KBucketLike | undefined };
    /** Internal: locally stored items (what other nodes put to us). */
    _values: { get(targetHex: string): unknown; set(targetHex: string, value: unknown): void };
    /** Internal: the KRPC client. */
    _rpc: {
      id: Buffer;
      /** k-rpc's routing-table insertion (every node it learns goes through here). */
      _addNode(node: DhtContact & { distance?: number; seen?: number }): void;
      nodes: KBucketLike & {
        get(id: Buffer): DhtContact | null;
        remove(id: Buffer): void;
        on(event: 'added' | 'removed', listener: (contact: DhtContact) => void): void;
        on(event: 'updated', listener: (incumbent: DhtContact, selection: DhtContact) => void): void;
      };
      /** k-rpc-socket: queries in flight, transaction ids aligned with requests. */
      socket: {
        _ids: number[];
        _reqs: Array<{ message: { q?: unknown }; peer: { host: string } } | null>;
      };
      query(node: DhtContact, message: unknown, callback: (error: KrpcError | null, response?: unknown) => void): void;
      on(event: 'node', listener: (node: DhtContact) => void): void;
    };
  }
}
