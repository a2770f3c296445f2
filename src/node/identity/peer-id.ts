import { createHash } from 'node:crypto';

export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
const PEER_ID_PATTERN = /^[0-9a-f]{40}$/;

/** peer_id = hex(SHA1(raw 32-byte Ed25519 public key)): 40 lowercase hex characters. */
export function peerIdFromPublicKey(publicKey: Uint8Array): string {
  return createHash('sha1').update(publicKey).digest('hex');
}

export function isPeerId(value: string): boolean {
  return PEER_ID_PATTERN.test(value);
}
