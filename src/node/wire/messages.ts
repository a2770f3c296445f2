import { NODE_TYPES } from '../base/node-type.ts';
import { z } from 'zod';
import { parseHostPort } from '../base/address.ts';
import {
  MAX_DESCRIPTION_CHARS,
  MAX_FILE_NAME_CHARS,
  MAX_INTERFACE_FILES,
  MAX_PARAMETER_DESCRIPTION_CHARS,
  MAX_PARAMETER_VALUE_CHARS,
  MAX_PARAMETERS,
  MAX_PATTERN_CHARS,
  MAX_QUERY_CHARS,
  MAX_SEARCH_RESULTS_WIRE,
} from '../services/constants.ts';
import { PARAMETER_TYPES, SERVICE_KINDS } from '../services/service.ts';
import type { JobWireMessage } from '../jobs/job-messages.ts';
import type { DataWireMessage } from '../services/data-transfer.ts';

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
  node_type: z.enum(NODE_TYPES),
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

const nonce = hex(32);
const signature = hex(64);
const sessionId = hex(8);

// --- Relay (a NAT node's session with its relay, and circuits through the relay) ---

/** A NAT node asks the relay for a session; `peer_id` must be the one TLS proved on this connection. */
export const relayRegisterMessage = z.object({ type: z.literal('relay_register'), peer_id: peerIdSchema });
export type RelayRegisterMessage = z.infer<typeof relayRegisterMessage>;
export const relayRegisteredMessage = z.object({
  type: z.literal('relay_registered'),
  session_id: sessionId,
  /** The relay's own dialable address, for the client's metadata. */
  relay_address: address,
  keepalive_interval: z.number().int().min(1).max(3600),
});
export const relayKeepaliveMessage = z.object({ type: z.literal('relay_keepalive'), session_id: sessionId });
export const relayKeepaliveAckMessage = z.object({ type: z.literal('relay_keepalive_ack'), session_id: sessionId });
/** A peer asks the relay for a circuit to a registered target. */
export const relayConnectMessage = z.object({ type: z.literal('relay_connect'), target_peer_id: peerIdSchema });
export type RelayConnectMessage = z.infer<typeof relayConnectMessage>;
/** The relay tells the target who asks (a claim: the end-to-end handshake proves it). */
export const relayIncomingMessage = z.object({ type: z.literal('relay_incoming'), source_peer_id: peerIdSchema });
export const relayAcceptMessage = z.object({ type: z.literal('relay_accept') });
export const relayConnectedMessage = z.object({ type: z.literal('relay_connected') });

// --- End-to-end over a circuit: both ends prove their keys (signed nonces) ---

export const circuitHelloMessage = z.object({
  type: z.literal('circuit_hello'),
  peer_id: peerIdSchema,
  public_key: hex(32),
  nonce,
  /** `control` opens a relayed connection; `stream` adds a stream to the one named by connection_id. */
  purpose: z.enum(['control', 'stream']),
  connection_id: hex(8),
});
export const circuitProofMessage = z.object({
  type: z.literal('circuit_proof'),
  peer_id: peerIdSchema,
  public_key: hex(32),
  nonce,
  signature,
});
export const circuitFinishMessage = z.object({ type: z.literal('circuit_finish'), signature });

// --- Reachability (AutoNAT-style dial-back) ---

export const dialbackRequestMessage = z.object({ type: z.literal('dialback_request') });
export const dialbackResultMessage = z.object({
  type: z.literal('dialback_result'),
  /** The address the peer dialled (ours as it sees it). */
  address,
  reached: z.boolean(),
  reason: z.string().max(200).nullable(),
});

// --- Hole punching, over a relayed connection ---

export const holePunchConnectMessage = z.object({
  type: z.literal('holepunch_connect'),
  addresses: z.array(address).min(0).max(8),
});
export const holePunchSyncMessage = z.object({ type: z.literal('holepunch_sync') });

// --- Service search (src/node/services) ---

const serviceKind = z.enum(SERVICE_KINDS);
/** A service as a search shows it: what a peer needs to choose it and fill in its parameters. */
export const searchedServiceEntry = z.object({
  id: hex(16),
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
  kind: serviceKind,
  description: z.string().max(MAX_DESCRIPTION_CHARS),
  parameters: z
    .array(
      z.object({
        name: z.string().regex(/^[a-z][a-z0-9_]{0,31}$/),
        type: z.enum(PARAMETER_TYPES),
        required: z.boolean(),
        default: z.union([z.string().max(MAX_PARAMETER_VALUE_CHARS), z.number(), z.boolean()]).optional(),
        pattern: z.string().max(MAX_PATTERN_CHARS).optional(),
        maxLength: z.number().int().min(0).optional(),
        min: z.number().int().optional(),
        max: z.number().int().optional(),
        description: z.string().max(MAX_PARAMETER_DESCRIPTION_CHARS).optional(),
      }),
    )
    .max(MAX_PARAMETERS),
  /** null for DATA services. */
  interfaces: z
    .object({
      stdin: z.boolean(),
      stdout: z.boolean(),
      stderr: z.boolean(),
      inputs: z.array(z.string().max(MAX_FILE_NAME_CHARS)).max(MAX_INTERFACE_FILES),
      outputs: z.array(z.string().max(MAX_FILE_NAME_CHARS)).max(MAX_INTERFACE_FILES),
    })
    .nullable(),
});
export type SearchedServiceEntry = z.infer<typeof searchedServiceEntry>;
export const serviceSearchMessage = z.object({
  type: z.literal('service_search'),
  query: z.string().max(MAX_QUERY_CHARS),
  kind: serviceKind.nullable(),
});
export type ServiceSearchMessage = z.infer<typeof serviceSearchMessage>;
/** Entries are validated one by one by the reader: a bad entry is dropped, not the whole answer. */
export const serviceSearchResultMessage = z.object({
  type: z.literal('service_search_result'),
  services: z.array(z.unknown()).max(MAX_SEARCH_RESULTS_WIRE),
});

export type WireMessage =
  | IdentityMessage
  | KnownPeersMessage
  | ErrorMessage
  | RelayRegisterMessage
  | z.infer<typeof relayRegisteredMessage>
  | z.infer<typeof relayKeepaliveMessage>
  | z.infer<typeof relayKeepaliveAckMessage>
  | RelayConnectMessage
  | z.infer<typeof relayIncomingMessage>
  | z.infer<typeof relayAcceptMessage>
  | z.infer<typeof relayConnectedMessage>
  | z.infer<typeof circuitHelloMessage>
  | z.infer<typeof circuitProofMessage>
  | z.infer<typeof circuitFinishMessage>
  | z.infer<typeof dialbackRequestMessage>
  | z.infer<typeof dialbackResultMessage>
  | z.infer<typeof holePunchConnectMessage>
  | z.infer<typeof holePunchSyncMessage>
  | ServiceSearchMessage
  | z.infer<typeof serviceSearchResultMessage>
  | JobWireMessage
  | DataWireMessage;
