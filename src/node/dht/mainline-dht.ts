import type { BaseComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import bencode from 'bencode';
import DHT, { type DhtContact, type GetResponse } from 'bittorrent-dht';
import type { HostPort } from '../base/address.ts';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../base/peer-id.ts';
import { verifySignature } from '../identity/signatures.ts';
import type { Logger } from '../base/logger.ts';
import { chooseNodeId, isValidBep42NodeId } from './bep42.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import { mutableTarget, signableBuffer, valueLengthOfSignable } from './bep44.ts';
import { BEP44_SEQ_TOO_LOW, DHT_OPERATION_TIMEOUT_MS, DHT_QUERY_TIMEOUT_MS, K, MAX_BEP44_VALUE_BYTES } from './constants.ts';
import { setBounded } from '../util/bounded-map.ts';
import { withDeadline } from '../util/time-bounds.ts';
import { DhtNotRunningError, DhtTimeoutError } from './errors.ts';
import { findFirstItem } from './first-item-lookup.ts';
import { KrpcGuard, type KrpcGuardStats, NO_KRPC_TRAFFIC } from './krpc-guard.ts';
import { type DhtMetrics, type DhtOperation, dhtMetrics } from './dht-metrics.ts';
import { RoutingTablePolicy, type RoutingTableStats } from './routing-table-policy.ts';

/** A verified BEP 44 mutable item as read from the DHT. */
export interface MutableItem {
  readonly publicKey: Buffer;
  readonly seq: number;
  /** `v` as decoded from the wire (byte strings as Uint8Array). */
  readonly value: unknown;
  /** bencode(v): what the signature covers and what the 1000-byte limit applies to. */
  readonly encodedValue: Buffer;
  readonly signature: Buffer;
}

export interface MutablePut {
  readonly publicKey: Uint8Array;
  readonly seq: number;
  /** The value to store as `v` (a bencodable dict, list, string or integer). */
  readonly value: unknown;
  /** Signs the BEP 44 signable buffer. */
  readonly sign: (message: Uint8Array) => Uint8Array;
}

export interface PutOutcome {
  readonly target: Buffer;
  /** Nodes that stored the item now. */
  readonly stored: number;
  /** Nodes that refused with 302 because they already hold this seq (or a higher one). */
  readonly alreadyHeld: number;
  readonly failed: number;
  /** Highest valid seq the DHT held for this key before the put (null if none). */
  readonly previousSeq: number | null;
}

export interface MainlineDhtOptions {
  readonly nodeId: Buffer;
  /** Explicit routers; an empty list means none (never the library's public defaults). */
  readonly bootstrap: readonly HostPort[];
  readonly host: string;
  readonly port: number;
  readonly logger: Logger;
  /** Signature check for every item read or stored (the benchmark swaps in @noble/ed25519). */
  readonly verify?: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;
  readonly metrics?: Metrics;
}

/**
 * Our adapter over bittorrent-dht: promises with bounded time, BEP 44 verification with our own
 * signature module, per-node put results, and BEP 42 checks on every node added to the routing
 * table. bittorrent-dht exposes no per-node put results, so puts are sent here with its KRPC
 * client to the closest nodes (and their write tokens) that its own get lookup collected.
 */
export class MainlineDht implements Component {
  readonly name = 'dht';
  private dht: DHT | undefined;
  private guard: KrpcGuard | undefined;
  private routingPolicy: RoutingTablePolicy | undefined;
  private boundPort: number | undefined;
  private ready: Promise<void> = Promise.resolve();
  private readonly metrics: DhtMetrics;
  /** Addresses offered to the routing table, and when (see addNode). */
  private readonly offered = new Map<string, number>();
  private readonly log: Logger;
  private readonly verify: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

  /** As the node runs it: `[dht]` and `[node] listen_host`; a BEP 42 id only for a node configured public. */
  static create({ config, logger, metrics }: BaseComponents): MainlineDht {
    const specificHost = config.node.listen_host === '0.0.0.0' ? null : config.node.listen_host;
    // Chosen before reachability is known.
    const nodeId = chooseNodeId(config.node.node_type === 'public' ? 'public' : 'private', specificHost);
    return new MainlineDht({
      metrics,
      nodeId,
      bootstrap: config.dht.bootstrap_nodes,
      host: config.node.listen_host,
      port: config.dht.dht_port,
      logger,
    });
  }

  constructor(private readonly options: MainlineDhtOptions) {
    this.log = options.logger.child({ component: 'dht' });
    this.verify = options.verify ?? verifySignature;
    this.metrics = dhtMetrics(options.metrics ?? new NoopMetrics(), {
      routingTableSize: () => this.routingTableSize,
      inbound: () => this.inbound,
    });
  }

  async start(): Promise<void> {
    const guard = new KrpcGuard(this.log, this.metrics.inboundQueries);
    const dht = new DHT({
      nodeId: this.options.nodeId,
      // Every datagram is checked before the library sees it (see KrpcGuard).
      socket: guard.socket,
      // false, not [], keeps bittorrent-dht from falling back to the public routers.
      bootstrap: this.options.bootstrap.length > 0 ? this.options.bootstrap.map((b) => `${b.host}:${b.port}`) : false,
      host: false,
      // Runs on every stored and every fetched item. bittorrent-dht never checks a dict's size and
      // keeps the highest seq that passes this hook, so the BEP 44 limit is enforced here too.
      verify: (signature, message, publicKey) => {
        const valueLength = valueLengthOfSignable(message);
        return valueLength >= 0 && valueLength <= MAX_BEP44_VALUE_BYTES && this.verify(publicKey, message, signature);
      },
      timeout: DHT_QUERY_TIMEOUT_MS,
    });
    dht.on('error', (error: Error) => this.log.error({ err: error }, 'DHT socket error'));
    dht.on('warning', (error: Error) => this.log.debug({ err: error }, 'DHT warning'));
    dht._rpc.on('node', (node) => this.checkNode(node));
    guard.pendingMethod = (t, from) => pendingMethodOf(dht, t, from.address);
    this.guard = guard;
    this.routingPolicy = new RoutingTablePolicy(dht, guard, this.log);
    this.ready = new Promise((resolve) => dht.once('ready', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      dht.once('error', onError);
      dht.once('listening', () => {
        dht.off('error', onError);
        resolve();
      });
      dht.listen(this.options.port, this.options.host);
    });
    this.dht = dht;
    this.log.info({ port: this.port, nodeId: this.nodeId.toString('hex') }, 'DHT listening');
  }

  async stop(): Promise<void> {
    const dht = this.dht;
    this.dht = undefined;
    this.boundPort = undefined;
    if (dht) await new Promise<void>((resolve) => dht.destroy(() => resolve()));
  }

  /** Resolves when the bootstrap lookup has finished (at once without bootstrap nodes). */
  whenReady(): Promise<void> {
    return this.ready;
  }

  get running(): boolean {
    return this.dht !== undefined;
  }

  get nodeId(): Buffer {
    return this.options.nodeId;
  }

  /** The bound UDP port (read once: each `address()` is a getsockname system call). */
  get port(): number {
    this.boundPort ??= this.require().address().port;
    return this.boundPort;
  }

  get routingTableSize(): number {
    return this.dht?.nodes.count() ?? 0;
  }

  get bep42Violations(): number {
    return this.metrics.bep42Violations.value();
  }

  /** Datagrams received, dropped by the KRPC checks (by reason), and contained handler failures (since the last start). */
  get inbound(): KrpcGuardStats {
    return this.guard?.stats ?? NO_KRPC_TRAFFIC;
  }

  /** Node ids the routing-table policy refused, and query senders it pinged first. */
  get routingTableAdmission(): RoutingTableStats {
    return this.routingPolicy?.stats ?? { refused: 0, verifications: 0 };
  }

  /** Nodes in our routing table (for tests and diagnostics). */
  contacts(): DhtContact[] {
    return this.dht?.nodes.toArray() ?? [];
  }

  /**
   * Adds a node by address; the library pings it first to learn its id. Every re-exchange with a
   * peer names its DHT port again, and one ping each time is wasted traffic: an address offered
   * within the last ADD_NODE_QUIET_MS is left alone (whether it made it into a bucket or not).
   */
  addNode(contact: HostPort): void {
    const dht = this.require();
    const key = `${contact.host}:${contact.port}`;
    const now = Date.now();
    if ((this.offered.get(key) ?? -Infinity) > now - ADD_NODE_QUIET_MS) return;
    setBounded(this.offered, key, now, MAX_OFFERED_NODES);
    dht.addNode({ host: contact.host, port: contact.port });
  }

  /** Counts nodes whose id is not BEP 42-valid for their address (exempt ranges excepted). */
  checkNode(node: { id?: Buffer; host: string }): void {
    if (node.id && !isValidBep42NodeId(node.id, node.host)) {
      this.metrics.bep42Violations.inc();
      this.log.debug({ host: node.host, id: node.id.toString('hex') }, 'BEP 42 violation');
    }
  }

  /**
   * Looks up the highest-seq valid item stored under SHA1(publicKey). Every response is verified
   * (signature, key, target) and a value over the BEP 44 size limit is ignored. With `useLocal`,
   * an item that another node stored at this node answers without a lookup.
   */
  getMutable(publicKey: Uint8Array, useLocal = false): Promise<MutableItem | null> {
    return this.measured('get', () => this.getMutableItem(publicKey, useLocal));
  }

  private async getMutableItem(publicKey: Uint8Array, useLocal: boolean): Promise<MutableItem | null> {
    const dht = this.require();
    const target = mutableTarget(publicKey);
    const response = await withDeadline(
      new Promise<GetResponse | null>((resolve, reject) =>
        dht.get(target, { cache: useLocal }, (error, value) => (error ? reject(error) : resolve(value))),
      ),
      DHT_OPERATION_TIMEOUT_MS,
      () => new DhtTimeoutError('get', DHT_OPERATION_TIMEOUT_MS),
      UNREF,
    );
    return response ? verifiedItem(response, publicKey, this.verify) : null;
  }

  /**
   * The first valid item stored under SHA1(publicKey) that a lookup meets, whatever its seq: enough
   * to know that the key's holder published one (what verifying a peer heard of needs). A narrow
   * walk (findFirstItem: a handful of datagrams) where getMutable asks every closest node for the
   * highest seq and checks each one's signature (15 to 50 datagrams on a 40-node DHT). Null when
   * the walk met no holder; a caller that must be sure asks again later, or uses getMutable.
   */
  findMutable(publicKey: Uint8Array): Promise<MutableItem | null> {
    return this.measured('find', () => this.findMutableItem(publicKey));
  }

  private async findMutableItem(publicKey: Uint8Array): Promise<MutableItem | null> {
    const dht = this.require();
    const target = mutableTarget(publicKey);
    const check = (response: GetResponse) => verifiedItem(response, publicKey, this.verify);
    const local = dht._values.get(target.toString('hex')) as GetResponse | undefined;
    const held = local ? check(local) : null;
    if (held) return held;
    return withDeadline(
      findFirstItem(dht, target, check),
      DHT_OPERATION_TIMEOUT_MS,
      () => new DhtTimeoutError('get', DHT_OPERATION_TIMEOUT_MS),
      UNREF,
    );
  }

  /** Stores a signed mutable item at the K closest nodes; refuses values over 1000 bencoded bytes. */
  putMutable(put: MutablePut): Promise<PutOutcome> {
    return this.measured('put', () => this.putMutableItem(put));
  }

  private async putMutableItem(put: MutablePut): Promise<PutOutcome> {
    const dht = this.require();
    const encodedValue = Buffer.from(bencode.encode(put.value));
    if (encodedValue.length > MAX_BEP44_VALUE_BYTES) {
      throw new RangeError(`value is ${encodedValue.length} bencoded bytes, over the BEP 44 limit of ${MAX_BEP44_VALUE_BYTES}`);
    }
    const target = mutableTarget(put.publicKey);
    // The lookup collects the closest nodes with their write tokens, and tells what the DHT holds.
    const previous = await this.getMutableItem(put.publicKey, false);
    const closest = dht._tables.get(target.toString('hex'))?.closest(target, K) ?? [];
    const signature = Buffer.from(put.sign(signableBuffer(put.seq, encodedValue)));
    const results = await Promise.all(
      closest.map(
        (node) =>
          new Promise<'stored' | 'held' | 'failed'>((resolve) => {
            const message = {
              q: 'put',
              a: { id: dht._rpc.id, token: node.token, v: put.value, k: Buffer.from(put.publicKey), seq: put.seq, sig: signature },
            };
            dht._rpc.query(node, message, (error) => {
              if (!error) resolve('stored');
              else resolve(error.code === BEP44_SEQ_TOO_LOW ? 'held' : 'failed');
            });
          }),
      ),
    );
    return {
      target,
      stored: results.filter((r) => r === 'stored').length,
      alreadyHeld: results.filter((r) => r === 'held').length,
      failed: results.filter((r) => r === 'failed').length,
      previousSeq: previous?.seq ?? null,
    };
  }

  /** BEP 5 announce_peer for `infoHash` with `port` at the closest nodes. */
  announce(infoHash: Buffer, port: number): Promise<void> {
    return this.measured('announce', () => this.announceAt(infoHash, port));
  }

  private async announceAt(infoHash: Buffer, port: number): Promise<void> {
    const dht = this.require();
    await withDeadline(
      new Promise<void>((resolve, reject) => dht.announce(infoHash, port, (error) => (error ? reject(error) : resolve()))),
      DHT_OPERATION_TIMEOUT_MS,
      () => new DhtTimeoutError('announce', DHT_OPERATION_TIMEOUT_MS),
      UNREF,
    );
  }

  /** BEP 5 get_peers for `infoHash`: the distinct peer addresses found. */
  lookup(infoHash: Buffer): Promise<HostPort[]> {
    return this.measured('lookup', () => this.lookupPeers(infoHash));
  }

  private async lookupPeers(infoHash: Buffer): Promise<HostPort[]> {
    const dht = this.require();
    const found = new Map<string, HostPort>();
    const onPeer = (peer: HostPort, hash: Buffer) => {
      if (hash.equals(infoHash)) found.set(`${peer.host}:${peer.port}`, { host: peer.host, port: peer.port });
    };
    dht.on('peer', onPeer);
    try {
      await withDeadline(
        new Promise<void>((resolve, reject) => dht.lookup(infoHash, (error) => (error ? reject(error) : resolve()))),
        DHT_OPERATION_TIMEOUT_MS,
        () => new DhtTimeoutError('lookup', DHT_OPERATION_TIMEOUT_MS),
        UNREF,
      );
    } finally {
      dht.off('peer', onPeer);
    }
    return [...found.values()];
  }

  /** Counts one operation of ours by outcome and times it (BEP 44 get and put). */
  private async measured<T>(operation: DhtOperation, run: () => Promise<T>): Promise<T> {
    const timer = this.metrics.bep44Duration.startTimer();
    let outcome: 'ok' | 'timeout' | 'error' = 'error';
    try {
      const result = await run();
      outcome = 'ok';
      return result;
    } catch (error) {
      if (error instanceof DhtTimeoutError) outcome = 'timeout';
      throw error;
    } finally {
      this.metrics.operations.inc({ operation, outcome });
      if (operation === 'get' || operation === 'put') timer({ operation, outcome });
    }
  }

  private require(): DHT {
    if (!this.dht) throw new DhtNotRunningError();
    return this.dht;
  }
}

/** A lookup cut short by stop() must not hold the process open. */
const UNREF = { unref: true };
/** An address offered to the routing table is not offered (pinged) again for this long. */
const ADD_NODE_QUIET_MS = 10 * 60_000;
const MAX_OFFERED_NODES = 4096;

/**
 * The method of our query in flight that an answer from `host` with this transaction id answers,
 * read from k-rpc-socket's table of requests (matched the way it matches them: id, then host).
 */
function pendingMethodOf(dht: DHT, transactionId: Buffer, host: string): string | undefined {
  if (transactionId.length < 2) return undefined;
  const { _ids: ids, _reqs: requests } = dht._rpc.socket;
  const tid = transactionId.readUInt16BE(0);
  const index = tid === 0 ? -1 : ids.indexOf(tid);
  const request = index === -1 ? undefined : requests[index];
  if (!request || request.peer.host !== host) return undefined;
  const q = request.message.q;
  return typeof q === 'string' ? q : Buffer.isBuffer(q) ? q.toString('latin1') : undefined;
}

/** Re-checks a response completely: key and signature sizes, target, size limit, signature. */
function verifiedItem(
  response: GetResponse,
  publicKey: Uint8Array,
  verify: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean,
): MutableItem | null {
  const { k, sig, seq } = response;
  if (!k || !sig || k.length !== PUBLIC_KEY_BYTES || sig.length !== SIGNATURE_BYTES) return null;
  if (!Buffer.from(k).equals(Buffer.from(publicKey))) return null;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return null;
  const encodedValue = Buffer.from(bencode.encode(response.v));
  if (encodedValue.length > MAX_BEP44_VALUE_BYTES) return null;
  if (!verify(k, signableBuffer(seq, encodedValue), sig)) return null;
  return { publicKey: Buffer.from(k), seq, value: response.v, encodedValue, signature: Buffer.from(sig) };
}
