import { native, type TLSVerifyCallback } from '@matrixai/quic';
import { peerIdFromPublicKey } from '../base/peer-id.ts';
import { parseCertificate, publicKeyFromCertificate } from './certificate.ts';
import { CertificateKeyError } from './errors.ts';
import { setBounded } from '../util/bounded-map.ts';

const { CryptoError } = native;
type TlsAlert = native.CryptoError;

/** A remote identity proven by TLS: the handshake showed possession of this key's private half. */
export interface ProvenPeer {
  readonly peerId: string;
  readonly publicKey: Uint8Array;
}

export type PeerCertificateCheck =
  | { readonly ok: true; readonly peer: ProvenPeer }
  | { readonly ok: false; readonly alert: TlsAlert; readonly reason: string; readonly peer?: ProvenPeer };

/**
 * What a peer's certificate chain must be: exactly one self-signed certificate over an Ed25519
 * key, valid now. No CA is involved; TLS itself (CertificateVerify) proves the remote holds the
 * key, so the key is the identity and the peer id follows from it.
 */
export function checkPeerCertificates(chain: readonly Uint8Array[], now: Date = new Date()): PeerCertificateCheck {
  const [leaf] = chain;
  if (leaf === undefined) return reject(CryptoError.CertificateRequired, 'no certificate');
  if (chain.length !== 1) return reject(CryptoError.BadCertificate, `${chain.length} certificates, expected one`);
  const known = verified.get(derKey(leaf));
  if (known) {
    // The same bytes passed the checks before; only the clock can have changed the answer.
    const time = now.getTime();
    if (time < known.validFrom || time > known.validTo) {
      return reject(
        CryptoError.CertificateExpired,
        `outside its validity (${new Date(known.validFrom).toISOString()} to ${new Date(known.validTo).toISOString()})`,
      );
    }
    return { ok: true, peer: known.peer };
  }
  let publicKey: Uint8Array;
  let certificate: ReturnType<typeof parseCertificate>;
  try {
    certificate = parseCertificate(leaf);
    publicKey = publicKeyFromCertificate(certificate);
  } catch (error) {
    if (!(error instanceof CertificateKeyError)) throw error;
    return reject(CryptoError.UnsupportedCertificate, error.message);
  }
  if (!certificate.verify(certificate.publicKey)) {
    return reject(CryptoError.BadCertificate, 'not self-signed by its own key');
  }
  const time = now.getTime();
  if (time < Date.parse(certificate.validFrom) || time > Date.parse(certificate.validTo)) {
    const validity = `${certificate.validFrom} to ${certificate.validTo}`;
    return reject(CryptoError.CertificateExpired, `outside its validity (${validity})`);
  }
  const peer = { peerId: peerIdFromPublicKey(publicKey), publicKey };
  setBounded(
    verified,
    derKey(leaf),
    { peer, validFrom: Date.parse(certificate.validFrom), validTo: Date.parse(certificate.validTo) },
    MAX_VERIFIED_CERTIFICATES,
  );
  return { ok: true, peer };
}

/** The identity in an already verified chain (the connection's remote certificates). */
export function peerFromCertificates(chain: readonly Uint8Array[]): ProvenPeer {
  const [leaf] = chain;
  if (leaf === undefined) throw new CertificateKeyError('the peer sent no certificate');
  const known = verified.get(derKey(leaf));
  if (known) return known.peer;
  const publicKey = publicKeyFromCertificate(leaf);
  return { peerId: peerIdFromPublicKey(publicKey), publicKey };
}

/**
 * Certificates that passed the checks, by their exact bytes: parsing and verifying one costs
 * ~0.2 ms (and reading its key another ~0.15 ms) on each side of every connection, and peers
 * reconnect with the same certificate. Only the validity period is checked again.
 */
const MAX_VERIFIED_CERTIFICATES = 1024;
const verified = new Map<string, { readonly peer: ProvenPeer; readonly validFrom: number; readonly validTo: number }>();
const derKey = (der: Uint8Array) => Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');

export interface VerifyPolicy {
  readonly ownPeerId: string;
  /** Set by a dial that knows whom it wants: anyone else is refused during the handshake. */
  readonly expectedPeerId?: string;
  readonly onReject: (reason: string, peer: ProvenPeer | undefined) => void;
}

/**
 * The TLS verify callback for both sides. It is the only certificate check (the library skips
 * BoringSSL's chain validation once a callback is set) and it runs before either side treats the
 * connection as established, so a refused peer never reaches the node. It must stay synchronous in
 * effect: the library resets peer streams that arrive while the connection is still starting.
 */
export function createVerifyCallback(policy: VerifyPolicy): TLSVerifyCallback {
  return (certs) => {
    const verdict = decide(checkPeerCertificates(certs), policy);
    if (!verdict.ok) policy.onReject(verdict.reason, verdict.peer);
    return Promise.resolve(verdict.ok ? undefined : verdict.alert);
  };
}

function decide(check: PeerCertificateCheck, policy: VerifyPolicy): PeerCertificateCheck {
  if (!check.ok) return check;
  const { peer } = check;
  if (peer.peerId === policy.ownPeerId) return reject(CryptoError.AccessDenied, 'the peer is ourselves', peer);
  if (policy.expectedPeerId !== undefined && peer.peerId !== policy.expectedPeerId) {
    return reject(CryptoError.AccessDenied, `peer id ${peer.peerId}, expected ${policy.expectedPeerId}`, peer);
  }
  return check;
}

function reject(alert: TlsAlert, reason: string, peer?: ProvenPeer): PeerCertificateCheck {
  return peer === undefined ? { ok: false, alert, reason } : { ok: false, alert, reason, peer };
}
