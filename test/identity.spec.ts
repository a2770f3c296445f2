import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KeyFileError } from '../src/node/identity/errors.ts';
import { KEYS_DIR, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, loadOrCreateIdentity, rawPrivateSeed } from '../src/node/identity/key-store.ts';
import { nobleSign, noblePublicKey, nobleVerify } from '../src/node/identity/noble.ts';
import { isPeerId, peerIdFromPublicKey } from '../src/node/base/peer-id.ts';
import { verifySignature } from '../src/node/identity/signatures.ts';
import { tempDir } from './helpers/temp.ts';

function assertKeyFileError(fn: () => unknown, file: string, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof KeyFileError, `expected KeyFileError, got ${String(error)}`);
    assert.equal(error.file, file);
    assert.match(error.message, pattern);
    assert.ok(error.message.includes(file), 'the message names the file');
    return true;
  });
}

describe('identity', () => {
  it('generates a key pair once, mode 0600, and loads the same identity on restart', (t) => {
    const dir = tempDir(t);
    const first = loadOrCreateIdentity(dir);
    assert.equal(first.created, true);
    const keyFile = join(dir, KEYS_DIR, PRIVATE_KEY_FILE);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, KEYS_DIR)).mode & 0o777, 0o700);
    const second = loadOrCreateIdentity(dir);
    assert.equal(second.created, false);
    assert.equal(second.identity.peerId, first.identity.peerId);
    assert.deepEqual(second.identity.publicKey, first.identity.publicKey);
  });

  it('derives peer_id = hex(SHA1(raw 32-byte public key))', (t) => {
    const { identity } = loadOrCreateIdentity(tempDir(t));
    assert.equal(identity.publicKey.length, 32);
    assert.equal(identity.peerId, createHash('sha1').update(identity.publicKey).digest('hex'));
    assert.ok(isPeerId(identity.peerId));
    assert.ok(!isPeerId(identity.peerId.toUpperCase()), 'peer ids are lowercase');
    assert.ok(!isPeerId(`${identity.peerId}0`));
  });

  it('refuses a damaged key file and never overwrites it', (t) => {
    const dir = tempDir(t);
    loadOrCreateIdentity(dir);
    const keyFile = join(dir, KEYS_DIR, PRIVATE_KEY_FILE);
    const damaged = readFileSync(keyFile, 'utf8').replace(/[A-Za-z]/g, (c, i: number) => (i > 40 && i < 60 ? '!' : c));
    writeFileSync(keyFile, damaged);
    assertKeyFileError(() => loadOrCreateIdentity(dir), keyFile, /is damaged/);
    assert.equal(readFileSync(keyFile, 'utf8'), damaged, 'the damaged file is left as it was');
  });

  it('refuses a key of another type', (t) => {
    const dir = tempDir(t);
    loadOrCreateIdentity(dir);
    const keyFile = join(dir, KEYS_DIR, PRIVATE_KEY_FILE);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' });
    writeFileSync(keyFile, ec);
    assertKeyFileError(() => loadOrCreateIdentity(dir), keyFile, /holds a ec key, expected ed25519/);
  });

  it('refuses a key file readable by other users', (t) => {
    const dir = tempDir(t);
    loadOrCreateIdentity(dir);
    const keyFile = join(dir, KEYS_DIR, PRIVATE_KEY_FILE);
    chmodSync(keyFile, 0o644);
    assertKeyFileError(() => loadOrCreateIdentity(dir), keyFile, /accessible by other users \(mode 0644\); run chmod 600/);
  });

  it('refuses to create a new identity when only the public key remains', (t) => {
    const dir = tempDir(t);
    loadOrCreateIdentity(dir);
    const keyFile = join(dir, KEYS_DIR, PRIVATE_KEY_FILE);
    rmSync(keyFile);
    assertKeyFileError(() => loadOrCreateIdentity(dir), keyFile, /is missing although .*ed25519.pub exists/);
  });

  it('refuses a public key file that does not match the private key', (t) => {
    const dir = tempDir(t);
    loadOrCreateIdentity(dir);
    const other = tempDir(t);
    loadOrCreateIdentity(other);
    const publicFile = join(dir, KEYS_DIR, PUBLIC_KEY_FILE);
    writeFileSync(publicFile, readFileSync(join(other, KEYS_DIR, PUBLIC_KEY_FILE)));
    assertKeyFileError(() => loadOrCreateIdentity(dir), publicFile, /does not match the private key/);
  });

  it('does not create anything in read-only mode', (t) => {
    const dir = tempDir(t);
    assertKeyFileError(() => loadOrCreateIdentity(dir, { create: false }), join(dir, KEYS_DIR, PRIVATE_KEY_FILE), /has no identity yet/);
  });
});

describe('signatures', () => {
  it('node:crypto and @noble/ed25519 produce and accept the same signatures', (t) => {
    const { identity } = loadOrCreateIdentity(tempDir(t));
    const seed = rawPrivateSeed(identity.privateKey);
    assert.deepEqual(noblePublicKey(seed), identity.publicKey, 'same public key from the same seed');
    for (const size of [0, 1, 64, 404, 1000]) {
      const message = randomBytes(size);
      const ours = identity.sign(message);
      const theirs = nobleSign(seed, message);
      assert.deepEqual(ours, theirs, 'Ed25519 is deterministic: both libraries sign identically');
      assert.ok(nobleVerify(identity.publicKey, message, ours), 'noble accepts node:crypto signatures');
      assert.ok(verifySignature(identity.publicKey, message, theirs), 'node:crypto accepts noble signatures');
    }
  });

  it('rejects tampered messages and signatures, and never throws on garbage', (t) => {
    const { identity } = loadOrCreateIdentity(tempDir(t));
    const message = Buffer.from('3:seqi1e1:v4:spam');
    const signature = identity.sign(message);
    assert.ok(verifySignature(identity.publicKey, message, signature));
    const flipped = Uint8Array.from(signature);
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    assert.equal(verifySignature(identity.publicKey, message, flipped), false);
    assert.equal(verifySignature(identity.publicKey, Buffer.from('3:seqi2e1:v4:spam'), signature), false);
    assert.equal(verifySignature(new Uint8Array(31), message, signature), false);
    assert.equal(verifySignature(identity.publicKey, message, new Uint8Array(63)), false);
    assert.equal(verifySignature(new Uint8Array(32).fill(0xff), message, signature), false, 'invalid point');
    assert.equal(nobleVerify(new Uint8Array(32).fill(0xff), message, signature), false);
  });

  it('verifies a known RFC 8032 test vector', () => {
    // RFC 8032 section 7.1, TEST 2.
    const publicKey = Buffer.from('3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', 'hex');
    const message = Buffer.from('72', 'hex');
    const signature = Buffer.from(
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
      'hex',
    );
    assert.ok(verifySignature(publicKey, message, signature));
    assert.ok(nobleVerify(publicKey, message, signature));
    assert.equal(peerIdFromPublicKey(publicKey).length, 40);
  });
});
