import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import type { QUICClientCrypto, QUICServerCrypto } from '@matrixai/quic';

/**
 * The symmetric crypto the QUIC library asks its host for. The server signs stateless-retry
 * tokens and derives connection ids with HMAC-SHA256 under a key that lives only as long as the
 * server (a token from a previous run is simply refused and the client retried); the client only
 * needs random connection ids. The library passes Buffers where it declares ArrayBuffers, so both
 * are accepted.
 */
export function serverCrypto(): QUICServerCrypto {
  const key = new Uint8Array(32);
  randomFillSync(key);
  return {
    key: key.buffer,
    ops: {
      sign: async (secret, data) => exactArrayBuffer(hmac(secret, data)),
      verify: async (secret, data, signature) => {
        const expected = hmac(secret, data);
        const given = bytes(signature);
        return given.length === expected.length && timingSafeEqual(given, expected);
      },
    },
  };
}

export function clientCrypto(): QUICClientCrypto {
  return {
    ops: {
      randomBytes: async (data: ArrayBuffer | ArrayBufferView) => {
        randomFillSync(bytes(data));
      },
    },
  };
}

function hmac(secret: ArrayBuffer, data: ArrayBuffer): Buffer {
  return createHmac('sha256', bytes(secret)).update(bytes(data)).digest();
}

function bytes(data: ArrayBuffer | ArrayBufferView): Buffer {
  return ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
}

/** The library wraps the result as a connection id from offset 0, so no pooled Buffer may leak through. */
function exactArrayBuffer(buffer: Buffer): ArrayBuffer {
  const copy = new Uint8Array(buffer.length);
  copy.set(buffer);
  return copy.buffer;
}
