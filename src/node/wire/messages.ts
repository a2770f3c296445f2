import { z } from 'zod';
import { parseHostPort } from '../config/schema.ts';

/**
 * Every message on every stream, declared once for both sides: a JSON object with a `type`.
 * Unknown keys are ignored (a newer peer may add fields); everything declared is checked.
 */
export const PROTOCOL_VERSION = 1;
export const MAX_SHARED_PEERS = 50;

const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`));
export const peerIdSchema = hex(20);
const address = z
  .string()
  .max(64)
  .refine((v) => parseHostPort(v) !== undefined, 'not host:port');

export const identityMessage = z.object({
  type: z.literal('identity'),
  protocol_version: z.number().int().min(1),
  peer_id: peerIdSchema,
  dht_node_id: hex(20),
  public_key: hex(32),
  node_type: z.enum(['public', 'private']),
  is_relay: z.boolean(),
  topic: z.string().min(1).max(100),
  /** UDP port of the sender's DHT node (added to the receiver's routing table). */
  dht_port: z.number().int().min(0).max(65535),
  /** Addresses the sender listens on (QUIC). */
  listen_addresses: z.array(address).max(8),
  /** The receiver's address as the sender sees it (NAT detection). */
  observed_address: address.nullable(),
});
export type IdentityMessage = z.infer<typeof identityMessage>;

/** One entry is validated on its own: a bad entry is dropped, not the whole list. */
export const knownPeerEntry = z.object({
  peer_id: peerIdSchema,
  dht_node_id: hex(20).nullable(),
  public_key: hex(32),
  is_relay: z.boolean(),
});
export type KnownPeerEntry = z.infer<typeof knownPeerEntry>;

export const knownPeersMessage = z.object({
  type: z.literal('known_peers'),
  topic: z.string().min(1).max(100),
  peers: z.array(z.unknown()).max(MAX_SHARED_PEERS),
  count: z.number().int().min(0),
});
export type KnownPeersMessage = z.infer<typeof knownPeersMessage>;

export const errorMessage = z.object({
  type: z.literal('error'),
  code: z.string().max(64),
  message: z.string().max(500),
});
export type ErrorMessage = z.infer<typeof errorMessage>;

export type WireMessage = IdentityMessage | KnownPeersMessage | ErrorMessage;
