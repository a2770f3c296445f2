import type DHT from 'bittorrent-dht';
import type { DhtContact } from 'bittorrent-dht';
import type { Logger } from '../base/logger.ts';
import { setBounded } from '../util/bounded-map.ts';
import { isBep42Exempt } from './bep42.ts';
import type { KrpcGuard } from './krpc-guard.ts';

/**
 * Node ids one public IP may hold in our routing table. BEP 42 ties an id to its IP so that one
 * address cannot place ids where it likes; its 3 random bits give an IP at most 8 id prefixes.
 * Local and private ranges are exempt from BEP 42 (many honest nodes share 127.0.0.1 or a LAN
 * address there); they keep the per-address rule only.
 */
export const MAX_IDS_PER_IP = 8;
/** A query sender is pinged (to prove it answers at that address) at most this often per address. */
export const VERIFY_QUIET_MS = 10 * 60_000;
/** Verification pings sent per second at most, whatever the number of senders (no reflection flood). */
export const MAX_VERIFICATIONS_PER_SECOND = 20;
const MAX_REMEMBERED_ADDRESSES = 4096;

export interface RoutingTableStats {
  /** Node ids refused: their address already holds another id, or their IP is at MAX_IDS_PER_IP. */
  readonly refused: number;
  /** Query senders pinged before being admitted. */
  readonly verifications: number;
}

/**
 * Decides what enters the DHT routing table. bittorrent-dht adds the sender of every query it
 * gets, with whatever id the query names: one socket sending get_peers with random ids grew a
 * table from 2 to 233 fake ids in 3.7 s, after which our lookups went to nodes that do not
 * exist and our metadata reached nobody. Here:
 * - a query's sender is not taken at its word: it is pinged, and enters with the id it answers
 *   with (a response to our own query, from that address) — as libtorrent does;
 * - one id per IP:port (a socket is one node), the one already in the table staying: a node that
 *   restarts with a new id is replaced once the old id stops answering (k-rpc removes it);
 * - at most MAX_IDS_PER_IP ids per public IP (BEP 42's intent).
 * The bucket policy itself stays Kademlia's: a full bucket pings its oldest contacts and a
 * newcomer only replaces one that does not answer, so long-lived responsive nodes stay.
 */
export class RoutingTablePolicy {
  /** The id (hex) each IP:port holds in the table. */
  private readonly byAddress = new Map<string, string>();
  private readonly perIp = new Map<string, number>();
  private readonly verified = new Map<string, number>();
  private verificationWindow = { second: 0, sent: 0 };
  private refused = 0;
  private verifications = 0;

  constructor(
    private readonly dht: DHT,
    private readonly guard: KrpcGuard,
    private readonly log: Logger,
  ) {
    const rpc = dht._rpc;
    const table = rpc.nodes;
    for (const contact of table.toArray()) this.indexed(contact, +1);
    table.on('added', (contact: DhtContact) => this.indexed(contact, +1));
    table.on('removed', (contact: DhtContact) => this.indexed(contact, -1));
    table.on('updated', (incumbent: DhtContact, selection: DhtContact) => {
      this.indexed(incumbent, -1);
      this.indexed(selection, +1);
    });
    const addNode = rpc._addNode.bind(rpc);
    rpc._addNode = (node) => {
      if (this.admits(node)) addNode(node);
    };
  }

  get stats(): RoutingTableStats {
    return { refused: this.refused, verifications: this.verifications };
  }

  private admits(node: DhtContact): boolean {
    if (!node.id) return false;
    if (this.guard.dispatching?.kind === 'query') {
      this.verify(node);
      return false;
    }
    const address = `${node.host}:${node.port}`;
    const holder = this.byAddress.get(address);
    if (holder !== undefined && holder !== node.id.toString('hex')) return this.refuse(address, 'address holds another id');
    if (!isBep42Exempt(node.host) && (this.perIp.get(node.host) ?? 0) >= MAX_IDS_PER_IP) return this.refuse(address, 'IP at its id limit');
    return true;
  }

  /** Pings a query's sender; its answer (a response to us) brings it in through `admits`. */
  private verify(node: DhtContact): void {
    const address = `${node.host}:${node.port}`;
    const now = Date.now();
    if (this.byAddress.has(address) || (this.verified.get(address) ?? -Infinity) > now - VERIFY_QUIET_MS) return;
    const second = Math.floor(now / 1000);
    if (this.verificationWindow.second !== second) this.verificationWindow = { second, sent: 0 };
    if (this.verificationWindow.sent >= MAX_VERIFICATIONS_PER_SECOND) return;
    this.verificationWindow.sent += 1;
    setBounded(this.verified, address, now, MAX_REMEMBERED_ADDRESSES);
    this.verifications += 1;
    this.dht._rpc.query({ host: node.host, port: node.port }, { q: 'ping', a: { id: this.dht._rpc.id } }, () => {});
  }

  private refuse(address: string, why: string): false {
    this.refused += 1;
    this.log.trace({ address, why }, 'routing table: node refused');
    return false;
  }

  private indexed(contact: DhtContact, delta: 1 | -1): void {
    if (!contact.id) return;
    const address = `${contact.host}:${contact.port}`;
    if (delta > 0) this.byAddress.set(address, contact.id.toString('hex'));
    else if (this.byAddress.get(address) === contact.id.toString('hex')) this.byAddress.delete(address);
    const count = (this.perIp.get(contact.host) ?? 0) + delta;
    if (count > 0) this.perIp.set(contact.host, count);
    else this.perIp.delete(contact.host);
  }
}
