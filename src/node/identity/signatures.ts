import { type KeyObject, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { setBounded } from '../util/bounded-map.ts';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../base/peer-id.ts';

/**
 * The one place where Ed25519 signatures are made and checked. It uses node:crypto (OpenSSL):
 * `npm run bench` measures it against @noble/ed25519 in the same run, and on this machine kind
 * verification is an order of magnitude faster (see README, Benchmarks). `./noble.ts` is kept as
 * the reference implementation that the tests hold this module to.
 */

// Parsing a raw key into a KeyObject costs more than the verification itself, and the same few
// peers sign most of what we verify, so their KeyObjects are kept (bounded, oldest dropped first).
const PUBLIC_KEY_CACHE_LIMIT = 4096;
const publicKeyCache = new Map<string, KeyObject>();

/** DER prefix of an SPKI Ed25519 public key; the raw 32 bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const cacheKey = Buffer.from(publicKey).toString('base64');
  let key = publicKeyCache.get(cacheKey);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    setBounded(publicKeyCache, cacheKey, key, PUBLIC_KEY_CACHE_LIMIT);
  }
  return key;
}

export function signMessage(privateKey: KeyObject, message: Uint8Array): Uint8Array {
  return new Uint8Array(cryptoSign(null, message, privateKey));
}

/**
 * True only for a valid signature. Never throws: malformed keys and signatures from the network are
 * simply invalid (callers such as the DHT's UDP handler must not be able to crash on them).
 */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  try {
    return cryptoVerify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}
