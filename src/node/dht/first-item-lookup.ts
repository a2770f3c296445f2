import type DHT from 'bittorrent-dht';
import type { DhtContact, GetResponse } from 'bittorrent-dht';

/** Queries in flight at once (Kademlia's α). */
export const FIRST_ITEM_ALPHA = 3;
/** Queries one lookup sends at most before it gives up: enough to reach the nodes closest to the target. */
export const FIRST_ITEM_MAX_QUERIES = 16;
const NODE_INFO_BYTES = 26;

/**
 * A narrow Kademlia walk towards `target` that ends at the first answer `accept` takes: α
 * queries at a time to the closest nodes known, each answer's closer nodes joining the candidates.
 * Verifying that a peer published costs a handful of datagrams this way, where the library's
 * lookup sends 16 queries at once and visits every node near the target (15 to 50 datagrams on a
 * 40-node DHT). Resolves null when no node within FIRST_ITEM_MAX_QUERIES had an acceptable item.
 */
export function findFirstItem<T>(dht: DHT, target: Buffer, accept: (response: GetResponse) => T | null): Promise<T | null> {
  const rpc = dht._rpc;
  const queried = new Set<string>();
  const candidates: DhtContact[] = rpc.nodes.closest(target, 16);
  let inFlight = 0;
  let sent = 0;
  let done = false;
  return new Promise((resolve) => {
    const finish = (value: T | null) => {
      if (done) return;
      done = true;
      resolve(value);
    };
    const next = () => {
      if (done) return;
      candidates.sort((a, b) => compareDistance(a.id, b.id, target));
      while (inFlight < FIRST_ITEM_ALPHA && sent < FIRST_ITEM_MAX_QUERIES) {
        const node = candidates.find((c) => !queried.has(`${c.host}:${c.port}`));
        if (!node) break;
        queried.add(`${node.host}:${node.port}`);
        inFlight += 1;
        sent += 1;
        rpc.query(node, { q: 'get', a: { id: rpc.id, target } }, (error, response) => {
          inFlight -= 1;
          const r = (response as { r?: GetResponse } | undefined)?.r;
          if (!error && r) {
            const item = r.v === undefined ? null : accept(r);
            if (item !== null) return finish(item);
            for (const contact of compactNodes((r as { nodes?: unknown }).nodes)) candidates.push(contact);
          }
          next();
        });
      }
      if (inFlight === 0) finish(null);
    };
    next();
  });
}

/** Compact node info (BEP 5), already checked by the KRPC schemas to be a multiple of 26 bytes. */
function compactNodes(nodes: unknown): DhtContact[] {
  if (!Buffer.isBuffer(nodes)) return [];
  const contacts: DhtContact[] = [];
  for (let i = 0; i + NODE_INFO_BYTES <= nodes.length; i += NODE_INFO_BYTES) {
    const port = nodes.readUInt16BE(i + 24);
    if (port === 0) continue;
    contacts.push({ id: nodes.subarray(i, i + 20), host: `${nodes[i + 20]}.${nodes[i + 21]}.${nodes[i + 22]}.${nodes[i + 23]}`, port });
  }
  return contacts;
}

function compareDistance(a: Buffer | undefined, b: Buffer | undefined, target: Buffer): number {
  if (!a || !b) return a ? -1 : b ? 1 : 0;
  for (let i = 0; i < target.length; i++) {
    const da = (a[i] ?? 0) ^ (target[i] ?? 0);
    const db = (b[i] ?? 0) ^ (target[i] ?? 0);
    if (da !== db) return da - db;
  }
  return 0;
}
