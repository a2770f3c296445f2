import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rawPrivateSeed } from '../src/node/identity/key-store.ts';
import { nobleSign, noblePublicKey, nobleVerify } from '../src/node/identity/noble.ts';
import { signMessage, verifySignature } from '../src/node/identity/signatures.ts';
import { type Figure, ratio, timeOps, us } from './report.ts';

/** Sign and verify a 404-byte message (a typical signed BEP 44 payload) with both libraries. */
export function benchEd25519(iterations = 2000): Figure[] {
  const { privateKey } = generateKeyPairSync('ed25519');
  const seed = rawPrivateSeed(privateKey);
  const publicKey = noblePublicKey(seed);
  const message = randomBytes(404);
  const signature = signMessage(privateKey, message);

  for (let i = 0; i < 200; i++) {
    signMessage(privateKey, message);
    nobleSign(seed, message);
    verifySignature(publicKey, message, signature);
    nobleVerify(publicKey, message, signature);
  }
  const nodeSign = timeOps(iterations, () => signMessage(privateKey, message));
  const nobleSignNs = timeOps(iterations, () => nobleSign(seed, message));
  const nodeVerify = timeOps(iterations, () => verifySignature(publicKey, message, signature));
  const nobleVerifyNs = timeOps(iterations, () => nobleVerify(publicKey, message, signature));
  return [
    {
      name: 'sign, node:crypto (hot path)',
      value: us(nodeSign),
      baseline: `noble ${us(nobleSignNs)}, ${ratio(nobleSignNs, nodeSign)} faster`,
    },
    {
      name: 'verify, node:crypto (hot path)',
      value: us(nodeVerify),
      target: '≤ 100 µs',
      met: nodeVerify <= 100_000,
      baseline: `noble ${us(nobleVerifyNs)}, ${ratio(nobleVerifyNs, nodeVerify)} faster`,
    },
  ];
}
