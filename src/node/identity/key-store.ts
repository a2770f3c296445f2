import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyFileError } from './errors.ts';
import { PUBLIC_KEY_BYTES, peerIdFromPublicKey } from '../base/peer-id.ts';
import { signMessage } from './signatures.ts';

export const KEYS_DIR = 'keys';
export const PRIVATE_KEY_FILE = 'ed25519.key';
export const PUBLIC_KEY_FILE = 'ed25519.pub';

/** The node's own Ed25519 identity. The private key never leaves this object except to sign. */
export interface NodeIdentity {
  readonly peerId: string;
  /** Raw 32-byte public key. */
  readonly publicKey: Uint8Array;
  /** The private key as a KeyObject, for TLS certificates (QUIC) that need it. */
  readonly privateKey: KeyObject;
  sign(message: Uint8Array): Uint8Array;
}

export interface LoadedIdentity {
  readonly identity: NodeIdentity;
  /** True when this call generated the key pair (first start). */
  readonly created: boolean;
  readonly privateKeyFile: string;
}

/**
 * Loads `<dataDir>/keys/ed25519.key`, or generates it on first start. An existing file that cannot
 * be used (unreadable, not an Ed25519 PKCS#8 key, readable by others, or disagreeing with the
 * public key file) stops the start: an identity is never replaced silently.
 */
export function loadOrCreateIdentity(dataDir: string, options: { create?: boolean } = {}): LoadedIdentity {
  const dir = join(dataDir, KEYS_DIR);
  const privateFile = join(dir, PRIVATE_KEY_FILE);
  const publicFile = join(dir, PUBLIC_KEY_FILE);
  const create = options.create ?? true;
  if (create) mkdirSync(dir, { recursive: true, mode: 0o700 });

  let created = false;
  let privatePem = readIfExists(privateFile);
  if (privatePem === undefined && !create) {
    throw new KeyFileError(privateFile, 'does not exist: this data directory has no identity yet (start the node once)');
  }
  if (privatePem === undefined) {
    if (readIfExists(publicFile) !== undefined) {
      throw new KeyFileError(
        privateFile,
        `is missing although ${publicFile} exists; restore the private key, or remove both files to create a new identity`,
      );
    }
    privatePem = createPrivateKeyFile(privateFile);
    created = privatePem !== undefined;
    privatePem ??= readIfExists(privateFile);
    if (privatePem === undefined) throw new KeyFileError(privateFile, 'was created but cannot be read back');
  }

  checkPermissions(privateFile);
  const privateKey = parsePrivateKey(privateFile, privatePem);
  const publicKey = rawPublicKey(privateKey);

  const publicPem = createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString();
  const storedPublic = readIfExists(publicFile);
  if (storedPublic === undefined) {
    if (create) writeFileSync(publicFile, publicPem, { mode: 0o644 });
  } else if (storedPublic.trim() !== publicPem.trim()) {
    throw new KeyFileError(publicFile, `does not match the private key in ${privateFile}`);
  }

  const identity: NodeIdentity = {
    peerId: peerIdFromPublicKey(publicKey),
    publicKey,
    privateKey,
    sign: (message) => signMessage(privateKey, message),
  };
  return { identity, created, privateKeyFile: privateFile };
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeyFileError(file, `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, {
      cause: error,
    });
  }
}

/**
 * Writes a fresh key to a temporary file and hard-links it into place, which fails if another
 * process created the key first; that process's key then wins and is loaded instead.
 * Returns the PEM written, or undefined if another process won the race.
 */
function createPrivateKeyFile(privateFile: string): string | undefined {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const temp = `${privateFile}.${process.pid}.tmp`;
  writeFileSync(temp, pem, { mode: 0o600, flag: 'wx' });
  chmodSync(temp, 0o600); // the umask may have narrowed nothing, but never widen it either
  try {
    linkSync(temp, privateFile);
    return pem;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw new KeyFileError(privateFile, `cannot be created (${(error as NodeJS.ErrnoException).code})`, {
      cause: error,
    });
  } finally {
    unlinkSync(temp);
  }
}

function checkPermissions(file: string): void {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new KeyFileError(file, `is accessible by other users (mode ${mode.toString(8).padStart(4, '0')}); run chmod 600 on it`);
  }
}

function parsePrivateKey(file: string, pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (error) {
    throw new KeyFileError(file, 'is damaged: not a PEM-encoded PKCS#8 private key', { cause: error });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new KeyFileError(file, `holds a ${key.asymmetricKeyType ?? 'unknown'} key, expected ed25519`);
  }
  return key;
}

function rawPublicKey(privateKey: KeyObject): Uint8Array {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const raw = Buffer.from(jwk.x ?? '', 'base64url');
  if (raw.length !== PUBLIC_KEY_BYTES) throw new Error('unexpected Ed25519 public key length');
  return new Uint8Array(raw);
}

/** The raw 32-byte seed of a private key (for the noble reference implementation and tests). */
export function rawPrivateSeed(privateKey: KeyObject): Uint8Array {
  const jwk = privateKey.export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(jwk.d ?? '', 'base64url'));
}
