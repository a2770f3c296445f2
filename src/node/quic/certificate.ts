// @peculiar/x509 resolves its ASN.1 serializers through tsyringe, which needs the Reflect metadata
// polyfill loaded before the library's own module code runs.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import type { NodeIdentity } from '../identity/key-store.ts';
import { PUBLIC_KEY_BYTES } from '../base/peer-id.ts';
import { CERT_BACKDATE_MS, CERT_RENEW_BEFORE_MS, CERT_VALIDITY_MS } from './constants.ts';
import { CertificateKeyError } from './errors.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** Our TLS credentials: a self-signed certificate over the node's own Ed25519 key. */
export interface NodeCertificate {
  readonly certPem: string;
  /** PKCS#8 PEM of the identity key: the QUIC library's TLS stack only takes PEM. */
  readonly keyPem: string;
  readonly der: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const ED25519 = { name: 'Ed25519' } as const;

/**
 * The certificate carries no trust of its own: peers read the Ed25519 key from it, and TLS proves
 * we hold the matching private key. The subject names the peer id only to help a human debugging
 * with Wireshark or openssl.
 */
export async function createNodeCertificate(
  identity: Pick<NodeIdentity, 'peerId' | 'privateKey'>,
  now: Date = new Date(),
): Promise<NodeCertificate> {
  const pkcs8 = identity.privateKey.export({ format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(identity.privateKey).export({ format: 'der', type: 'spki' });
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, ED25519, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', spki, ED25519, true, ['verify']);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: `CN=${identity.peerId}`,
    notBefore: new Date(now.getTime() - CERT_BACKDATE_MS),
    notAfter: new Date(now.getTime() + CERT_VALIDITY_MS),
    keys: { privateKey, publicKey },
    signingAlgorithm: ED25519,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  return {
    certPem: certificate.toString('pem'),
    keyPem: identity.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    der: new Uint8Array(certificate.rawData),
    // Read back from the certificate: X.509 times have whole seconds.
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}

/** True when the certificate is not valid yet, or will expire within `renewBeforeMs`. */
export function certificateNeedsRenewal(
  certificate: Pick<NodeCertificate, 'notBefore' | 'notAfter'>,
  now: Date = new Date(),
  renewBeforeMs: number = CERT_RENEW_BEFORE_MS,
): boolean {
  const time = now.getTime();
  return time < certificate.notBefore.getTime() || certificate.notAfter.getTime() - time < renewBeforeMs;
}

/**
 * The raw 32-byte Ed25519 key of a certificate (DER bytes or PEM text). Any other key type is
 * refused: a peer id is SHA1 of exactly these 32 bytes.
 */
export function publicKeyFromCertificate(certificate: Uint8Array | string | X509Certificate): Uint8Array {
  const parsed = certificate instanceof X509Certificate ? certificate : parseCertificate(certificate);
  const key = parsed.publicKey;
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new CertificateKeyError(`its key is ${key.asymmetricKeyType ?? 'of an unknown type'}, not ed25519`);
  }
  const raw = Buffer.from(key.export({ format: 'jwk' }).x ?? '', 'base64url');
  if (raw.length !== PUBLIC_KEY_BYTES) throw new CertificateKeyError('its Ed25519 key is not 32 bytes');
  return new Uint8Array(raw);
}

/** Node's own (OpenSSL) parser: synchronous, so it can run inside the TLS verify callback. */
export function parseCertificate(certificate: Uint8Array | string): X509Certificate {
  try {
    return new X509Certificate(typeof certificate === 'string' ? certificate : Buffer.from(certificate));
  } catch (error) {
    throw new CertificateKeyError('not a valid X.509 certificate', { cause: error });
  }
}

/** 16 random bytes, top bit cleared: RFC 5280 wants a positive serial of at most 20 bytes. */
function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}
