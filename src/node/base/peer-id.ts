import { createHash } from 'node:crypto';

/** Sizes of the raw Ed25519 keys and signatures a peer id is derived from and proven with. */
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
const PEER_ID_PATTERN = /^[0-9a-f]{40}$/;

/** hex(SHA1(raw 32-byte Ed25519 public key)): 40 lowercase hex characters (see `isPeerId`). */
export type PeerId = string;

/** peer_id = hex(SHA1(raw 32-byte Ed25519 public key)): 40 lowercase hex characters. */
export function peerIdFromPublicKey(publicKey: Uint8Array): PeerId {
  return createHash('sha1').update(publicKey).digest('hex');
}

export function isPeerId(value: string): value is PeerId {
  return PEER_ID_PATTERN.test(value);
}
