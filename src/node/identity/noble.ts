import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';

// @noble/ed25519 v3 needs a synchronous SHA-512 for its sync API.
ed.hashes.sha512 = sha512;

/**
 * The user's named Ed25519 library (@noble/ed25519), pure JavaScript. The node signs and verifies
 * through `./signatures.ts` (node:crypto, measured faster); this module is the independent reference
 * that tests compare against and the benchmark's baseline.
 */
export function nobleSign(secretSeed: Uint8Array, message: Uint8Array): Uint8Array {
  return ed.sign(message, secretSeed);
}

export function nobleVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    return ed.verify(signature, message, publicKey);
  } catch {
    return false;
  }
}

export function noblePublicKey(secretSeed: Uint8Array): Uint8Array {
  return ed.getPublicKey(secretSeed);
}
