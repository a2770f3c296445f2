import bencode from 'bencode';
import { z } from 'zod';
import { MAX_BEP44_SALT_BYTES, MAX_BEP44_VALUE_BYTES } from './constants.ts';
import type { BencodeValue } from './krpc-decode.ts';

/**
 * The KRPC messages (BEP 5, BEP 44) this node accepts, one schema per query and per response
 * type, checked on the decoded datagram before bittorrent-dht sees it. The library trusts every
 * field's type: an integer where it expects bytes ends in `RangeError: toString() radix` or
 * `TypeError: id is not a Uint8Array` inside the socket's message handler. Fields the library
 * reads are typed here; others are allowed (extensions add fields) and never read.
 */

const bytes = z.custom<Buffer>((v) => Buffer.isBuffer(v), 'expected a byte string');
const bytesOf = (length: number) => z.custom<Buffer>((v) => Buffer.isBuffer(v) && v.length === length, `expected ${length} bytes`);
const shortBytes = (max: number) => z.custom<Buffer>((v) => Buffer.isBuffer(v) && v.length <= max, `expected at most ${max} bytes`);
const int = z.number().int();
const nodeId = bytesOf(20);
const infoHash = bytesOf(20);
/** Compact node info (BEP 5): 26 bytes per IPv4 node; IPv6 nodes (BEP 32) 38. */
const compactNodes = (size: number) =>
  z.custom<Buffer>((v) => Buffer.isBuffer(v) && v.length % size === 0, `expected a multiple of ${size} bytes`);
/** Compact peer info: 6 bytes (IPv4) or 18 (IPv6). */
const compactPeer = z.custom<Buffer>((v) => Buffer.isBuffer(v) && (v.length === 6 || v.length === 18), 'expected 6 or 18 bytes');
/** Any bencodable value whose encoding fits BEP 44's limit (a put's `v`). */
const storableValue = z.custom<BencodeValue>(
  (v) => v !== undefined && v !== null && bencode.encode(v).length <= MAX_BEP44_VALUE_BYTES,
  `expected a value of at most ${MAX_BEP44_VALUE_BYTES} bencoded bytes`,
);
/** A transaction id is echoed back; BEP 5 clients use 2 to 4 bytes. */
const transactionId = z.custom<Buffer>((v) => Buffer.isBuffer(v) && v.length >= 1 && v.length <= 16, 'expected 1 to 16 bytes');

/** BEP 44: a mutable item carries k, sig and seq together (the library assumes all three). */
const mutableComplete = (a: { k?: unknown; sig?: unknown; seq?: unknown }) =>
  (a.k === undefined && a.sig === undefined) || (a.k !== undefined && a.sig !== undefined && a.seq !== undefined);

const base = { id: nodeId };

export const queryArguments = {
  ping: z.object(base),
  find_node: z.object({ ...base, target: nodeId, want: z.array(bytes).optional() }),
  get_peers: z.object({
    ...base,
    info_hash: infoHash,
    want: z.array(bytes).optional(),
    noseed: int.optional(),
    scrape: int.optional(),
  }),
  announce_peer: z
    .object({
      ...base,
      info_hash: infoHash,
      token: bytes,
      port: int.min(0).max(65535).optional(),
      implied_port: int.optional(),
      seed: int.optional(),
      name: bytes.optional(),
    })
    .refine((a) => a.port !== undefined || a.implied_port === 1, 'port is required unless implied_port is 1'),
  get: z.object({ ...base, target: nodeId, seq: int.min(0).optional() }),
  put: z
    .object({
      ...base,
      token: bytes,
      v: storableValue,
      k: bytesOf(32).optional(),
      sig: bytesOf(64).optional(),
      seq: int.min(0).optional(),
      cas: int.optional(),
      salt: shortBytes(MAX_BEP44_SALT_BYTES).optional(),
    })
    .refine(mutableComplete, 'a mutable put needs k, sig and seq'),
} as const;

/** Queries of other methods (extensions the library ignores): only the sender's id is read. */
export const otherQueryArguments = z.object(base);

export type KrpcMethod = keyof typeof queryArguments;

/** Every field a response may carry that the library reads, typed, whatever the query was. */
const responseFields = {
  ...base,
  nodes: compactNodes(26).optional(),
  nodes6: compactNodes(38).optional(),
  token: bytes.optional(),
  values: z.array(compactPeer).optional(),
  v: z.custom<BencodeValue>((v) => v !== undefined).optional(),
  k: bytesOf(32).optional(),
  sig: bytesOf(64).optional(),
  seq: int.min(0).optional(),
};
const anyResponse = z.object(responseFields);

/** Per query type: what its response must hold on top of the common fields. */
export const responseValues = {
  ping: anyResponse,
  find_node: anyResponse,
  get_peers: anyResponse,
  announce_peer: anyResponse,
  put: anyResponse,
  get: anyResponse.refine(mutableComplete, 'a mutable item needs k, sig and seq'),
} as const satisfies Record<KrpcMethod, z.ZodType>;

const envelope = z.object({
  t: transactionId,
  y: z.custom<Buffer>((v) => Buffer.isBuffer(v) && v.length === 1, 'expected one byte'),
  v: shortBytes(32).optional(),
  ip: shortBytes(18).optional(),
  ro: int.optional(),
});
const query = envelope.extend({ q: shortBytes(64), a: z.record(z.string(), z.unknown()) });
const response = envelope.extend({ r: z.record(z.string(), z.unknown()) });
const error = envelope.extend({ e: z.tuple([int, bytes]).rest(z.unknown()) });

/** Why a datagram was dropped (counted per reason). */
export type KrpcDropReason = 'malformed' | 'envelope' | 'query' | 'response' | 'unsolicited' | 'error';

export type KrpcVerdict =
  | { readonly ok: true; readonly kind: 'query'; readonly method: string }
  | { readonly ok: true; readonly kind: 'response' | 'error' }
  | { readonly ok: false; readonly reason: KrpcDropReason; readonly detail: string };

/**
 * Checks a decoded datagram. `pendingMethod` names the query a response (or error) answers: one
 * this node sent, with that transaction id, to the address it came from. Anything else is
 * unsolicited: the library would still add the sender to the routing table (a response flood
 * with random ids) though no query of ours is waiting for it.
 */
export function checkKrpc(message: BencodeValue, pendingMethod: (transactionId: Buffer) => string | undefined): KrpcVerdict {
  const head = envelope.safeParse(message);
  if (!head.success) return drop('envelope', head.error);
  const type = head.data.y.toString('latin1');
  if (type === 'q') {
    const parsed = query.safeParse(message);
    if (!parsed.success) return drop('query', parsed.error);
    const method = parsed.data.q.toString('latin1');
    const schema = method in queryArguments ? queryArguments[method as KrpcMethod] : otherQueryArguments;
    const args = schema.safeParse(parsed.data.a);
    return args.success ? { ok: true, kind: 'query', method } : drop('query', args.error, method);
  }
  if (type === 'r' || type === 'e') {
    const method = pendingMethod(head.data.t);
    if (method === undefined) return { ok: false, reason: 'unsolicited', detail: 'no query of ours is waiting for this answer' };
    if (type === 'e') {
      const parsed = error.safeParse(message);
      return parsed.success ? { ok: true, kind: 'error' } : drop('error', parsed.error);
    }
    const parsed = response.safeParse(message);
    if (!parsed.success) return drop('response', parsed.error);
    const schema = method in responseValues ? responseValues[method as KrpcMethod] : anyResponse;
    const values = schema.safeParse(parsed.data.r);
    return values.success ? { ok: true, kind: 'response' } : drop('response', values.error, method);
  }
  return { ok: false, reason: 'envelope', detail: 'y is not q, r or e' };
}

function drop(reason: KrpcDropReason, error: z.ZodError, method?: string): KrpcVerdict {
  const issue = error.issues[0];
  const where = issue ? issue.path.join('.') : '';
  return { ok: false, reason, detail: `${method ? `${method}: ` : ''}${where ? `${where}: ` : ''}${issue?.message ?? 'invalid'}` };
}
