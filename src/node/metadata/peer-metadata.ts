import { NODE_TYPES, type NodeType } from '../base/node-type.ts';
import { isPeerId } from '../base/peer-id.ts';
import { isIP } from 'node:net';
import bencode from 'bencode';
import { z } from 'zod';
import { MAX_BEP44_VALUE_BYTES } from '../dht/constants.ts';
import { RemoteNetworkError } from '../base/errors.ts';

/** Version of the metadata layout below; readers accept higher versions (unknown keys ignored). */
export const METADATA_VERSION = 1;
/** Entries of `protocols` and of `capabilities` a reader accepts, and characters of one entry. */
export const MAX_LIST_ITEMS = 16;
export const MAX_LIST_ITEM_CHARS = 64;

/** What a node publishes about itself in the DHT (the seed's PeerMetadata). */
export interface PeerMetadata {
  readonly peerId: string;
  readonly publicIp: string | null;
  readonly privateIp: string | null;
  readonly publicPort: number | null;
  readonly privatePort: number | null;
  readonly nodeType: NodeType;
  readonly isRelay: boolean;
  readonly usingRelay: boolean;
  readonly connectedRelay: string | null;
  readonly relaySessionId: string | null;
  readonly relayAddress: string | null;
  readonly protocols: readonly string[];
  readonly capabilities: readonly string[];
  /** Unix seconds when this content was built. */
  readonly timestamp: number;
  readonly version: number;
}

export class MetadataTooLargeError extends RemoteNetworkError {
  readonly code = 'METADATA_TOO_LARGE';

  constructor(readonly size: number) {
    super(`metadata is ${size} bencoded bytes, ${size - MAX_BEP44_VALUE_BYTES} over the BEP 44 limit of ${MAX_BEP44_VALUE_BYTES}`);
  }
}

export class MetadataInvalidError extends RemoteNetworkError {
  readonly code = 'METADATA_INVALID';
}

/**
 * The wire form: a bencoded dict with the seed's snake_case keys. Bencode has no booleans or
 * null, so flags are 0/1 and absent values are omitted.
 */
export function encodeMetadata(metadata: PeerMetadata): Record<string, unknown> {
  const dict: Record<string, unknown> = {
    peer_id: metadata.peerId,
    node_type: metadata.nodeType,
    is_relay: metadata.isRelay ? 1 : 0,
    using_relay: metadata.usingRelay ? 1 : 0,
    protocols: [...metadata.protocols],
    capabilities: [...metadata.capabilities],
    timestamp: metadata.timestamp,
    version: metadata.version,
  };
  const optional = {
    public_ip: metadata.publicIp,
    private_ip: metadata.privateIp,
    public_port: metadata.publicPort,
    private_port: metadata.privatePort,
    connected_relay: metadata.connectedRelay,
    relay_session_id: metadata.relaySessionId,
    relay_address: metadata.relayAddress,
  };
  for (const [key, value] of Object.entries(optional)) if (value !== null) dict[key] = value;
  return dict;
}

/** Encodes and enforces the BEP 44 limit before anything is sent. */
export function encodeMetadataChecked(metadata: PeerMetadata): { value: Record<string, unknown>; size: number } {
  const value = encodeMetadata(metadata);
  const size = bencode.encode(value).length;
  if (size > MAX_BEP44_VALUE_BYTES) throw new MetadataTooLargeError(size);
  return { value, size };
}

const bytesText = (max: number) =>
  z
    .instanceof(Uint8Array)
    .transform((b) => Buffer.from(b).toString('utf8'))
    .pipe(z.string().max(max));
const flag = z.union([z.literal(0), z.literal(1)]).transform((v) => v === 1);
const port = z.number().int().min(0).max(65535);
const ip = bytesText(45).refine((v) => isIP(v) !== 0, 'not an IP address');
const list = z.array(bytesText(MAX_LIST_ITEM_CHARS)).max(MAX_LIST_ITEMS);

const wireSchema = z.object({
  peer_id: bytesText(40).refine(isPeerId, 'not a peer id'),
  node_type: bytesText(16).pipe(z.enum(NODE_TYPES)),
  is_relay: flag,
  using_relay: flag,
  protocols: list,
  capabilities: list,
  timestamp: z.number().int().min(0),
  version: z.number().int().min(1),
  public_ip: ip.optional(),
  private_ip: ip.optional(),
  public_port: port.optional(),
  private_port: port.optional(),
  connected_relay: bytesText(40).refine(isPeerId, 'not a peer id').optional(),
  relay_session_id: bytesText(128).optional(),
  relay_address: bytesText(64).optional(),
});

/** Validates a decoded `v` from the network; anything malformed is a MetadataInvalidError. */
export function decodeMetadata(value: unknown): PeerMetadata {
  const parsed = wireSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MetadataInvalidError(`metadata is malformed at ${issue?.path.join('.') || 'top level'}: ${issue?.message}`);
  }
  const d = parsed.data;
  return {
    peerId: d.peer_id,
    publicIp: d.public_ip ?? null,
    privateIp: d.private_ip ?? null,
    publicPort: d.public_port ?? null,
    privatePort: d.private_port ?? null,
    nodeType: d.node_type,
    isRelay: d.is_relay,
    usingRelay: d.using_relay,
    connectedRelay: d.connected_relay ?? null,
    relaySessionId: d.relay_session_id ?? null,
    relayAddress: d.relay_address ?? null,
    protocols: d.protocols,
    capabilities: d.capabilities,
    timestamp: d.timestamp,
    version: d.version,
  };
}

/** Equal content, ignoring the build timestamp (a republish of unchanged content keeps its seq). */
export function sameContent(a: PeerMetadata, b: PeerMetadata): boolean {
  return JSON.stringify({ ...a, timestamp: 0 }) === JSON.stringify({ ...b, timestamp: 0 });
}

export class MetadataNotFoundError extends RemoteNetworkError {
  readonly code = 'METADATA_NOT_FOUND';

  constructor(readonly peerId: string) {
    super(`no valid metadata for peer ${peerId} was found in the DHT`);
  }
}

export class PublicationHeldError extends RemoteNetworkError {
  readonly code = 'PUBLICATION_HELD';

  constructor() {
    super('metadata publication is held: a private node publishes only once it has a relay session');
  }
}
