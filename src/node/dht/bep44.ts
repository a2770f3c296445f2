import { createHash } from 'node:crypto';

/**
 * BEP 44 mutable items: what is signed and where it is stored. The signature covers the
 * bencoded dict entries `salt` (when present), `seq` and `v` without the enclosing `d…e`:
 * `4:salt<n>:<salt>3:seqi<seq>e1:v<bencoded v>`. The target is SHA1(k || salt).
 */
export function signableBuffer(seq: number, encodedValue: Uint8Array, salt?: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  if (salt && salt.length > 0) parts.push(Buffer.from(`4:salt${salt.length}:`), Buffer.from(salt));
  parts.push(Buffer.from(`3:seqi${seq}e1:v`), Buffer.from(encodedValue));
  return Buffer.concat(parts);
}

export function mutableTarget(publicKey: Uint8Array, salt?: Uint8Array): Buffer {
  const hash = createHash('sha1').update(publicKey);
  if (salt && salt.length > 0) hash.update(salt);
  return hash.digest();
}

export function immutableTarget(encodedValue: Uint8Array): Buffer {
  return createHash('sha1').update(encodedValue).digest();
}

/**
 * Length of the bencoded `v` inside a signable buffer (`[4:salt…]3:seqi<n>e1:v<v>`), or -1 if the
 * buffer has another shape. Lets the DHT's verify hook refuse oversize values before they can be
 * chosen as the "highest seq" answer.
 */
export function valueLengthOfSignable(signable: Uint8Array): number {
  const buffer = Buffer.from(signable.buffer, signable.byteOffset, signable.byteLength);
  const seqAt = buffer.indexOf('3:seqi');
  if (seqAt === -1) return -1;
  const valueAt = buffer.indexOf('e1:v', seqAt + 6);
  return valueAt === -1 ? -1 : buffer.length - (valueAt + 4);
}
