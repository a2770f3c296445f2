import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import bencode from 'bencode';
import { bep42Crc, bep42NodeId, isBep42Exempt, isValidBep42NodeId } from '../src/node/dht/bep42.ts';
import { immutableTarget, mutableTarget, signableBuffer } from '../src/node/dht/bep44.ts';
import { nobleVerify } from '../src/node/identity/noble.ts';
import { verifySignature } from '../src/node/identity/signatures.ts';

interface Vectors {
  bep42: { vectors: Array<{ ip: string; rand: number; nodeIdPrefix: string; lastByte: string; crc32c: string }> };
  bep44: {
    publicKey: string;
    mutable: Array<{ seq: number; v: string; salt: string | null; signedBuffer: string; target: string; sig: string }>;
    immutable: Array<{ v: string; target: string }>;
  };
}

// The shared spec vectors; CI clones the repo with shared/ beside it, a copy is kept in test/fixtures.
const vectors = JSON.parse(readFileSync(new URL('./fixtures/bep-vectors.json', import.meta.url), 'utf8')) as Vectors;

describe('BEP 42 node ids', () => {
  for (const v of vectors.bep42.vectors) {
    it(`generates and validates the spec vector for ${v.ip}, r=${v.rand}`, () => {
      assert.equal(bep42Crc(v.ip, v.rand).toString(16).padStart(8, '0'), v.crc32c);
      const id = bep42NodeId(v.ip, v.rand);
      const prefix = Buffer.from(v.nodeIdPrefix, 'hex');
      assert.equal(id[0], prefix[0]);
      assert.equal(id[1], prefix[1]);
      assert.equal((id[2] ?? 0) & 0xf8, (prefix[2] ?? 0) & 0xf8, 'top 5 bits of byte 2');
      assert.equal(id[19], Number.parseInt(v.lastByte, 16));
      assert.ok(isValidBep42NodeId(id, v.ip));
      // The spec's own example id (prefix + any middle + last byte) validates too.
      const specId = Buffer.concat([prefix, Buffer.alloc(16, 0x42), Buffer.from(v.lastByte, 'hex')]);
      assert.ok(isValidBep42NodeId(specId, v.ip));
    });
  }

  it('rejects a wrong prefix, a wrong r and a wrong length', () => {
    const v = vectors.bep42.vectors[0]!;
    const id = bep42NodeId(v.ip, v.rand);
    const wrongPrefix = Buffer.from(id);
    wrongPrefix[1] = (wrongPrefix[1] ?? 0) ^ 0x01;
    assert.equal(isValidBep42NodeId(wrongPrefix, v.ip), false);
    const wrongTopBits = Buffer.from(id);
    wrongTopBits[2] = (wrongTopBits[2] ?? 0) ^ 0x80;
    assert.equal(isValidBep42NodeId(wrongTopBits, v.ip), false);
    const wrongR = Buffer.from(id);
    wrongR[19] = ((wrongR[19] ?? 0) + 1) & 7;
    assert.equal(isValidBep42NodeId(wrongR, v.ip), false);
    assert.equal(isValidBep42NodeId(id.subarray(0, 19), v.ip), false);
    assert.equal(isValidBep42NodeId(id, '21.75.31.124'), false, 'the id is bound to its IP');
  });

  it('exempts local, private and link-local addresses', () => {
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.9.9']) {
      assert.ok(isBep42Exempt(ip), ip);
      assert.ok(isValidBep42NodeId(Buffer.alloc(20), ip), `${ip} accepts any id`);
    }
    for (const ip of ['172.32.0.1', '198.51.100.7', '8.8.8.8']) assert.equal(isBep42Exempt(ip), false, ip);
  });
});

describe('BEP 44 vectors', () => {
  const publicKey = Buffer.from(vectors.bep44.publicKey, 'hex');
  for (const item of vectors.bep44.mutable) {
    it(`verifies the mutable vector${item.salt ? ` with salt ${item.salt}` : ''}`, () => {
      const salt = item.salt ? Buffer.from(item.salt) : undefined;
      const encoded = bencode.encode(Buffer.from(item.v));
      const signable = signableBuffer(item.seq, encoded, salt);
      assert.equal(signable.toString(), item.signedBuffer);
      assert.equal(mutableTarget(publicKey, salt).toString('hex'), item.target);
      const sig = Buffer.from(item.sig, 'hex');
      assert.ok(verifySignature(publicKey, signable, sig), 'node:crypto verifies');
      assert.ok(nobleVerify(publicKey, signable, sig), 'noble verifies');
      const tampered = signableBuffer(item.seq + 1, encoded, salt);
      assert.equal(verifySignature(publicKey, tampered, sig), false);
    });
  }

  it('computes the immutable target', () => {
    for (const item of vectors.bep44.immutable) {
      assert.equal(immutableTarget(bencode.encode(Buffer.from(item.v))).toString('hex'), item.target);
    }
  });
});
