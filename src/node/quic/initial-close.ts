import { createCipheriv, createHmac } from 'node:crypto';

/**
 * A server's CONNECTION_CLOSE in a QUIC v1 Initial packet (RFC 9000 §17.2.2, protected per
 * RFC 9001 §5), built without any connection state. It lets the server refuse a dialer before
 * the TLS handshake: the library only answers through a full quiche connection, whose close (once
 * the ClientHello is processed) goes out in a Handshake packet that the client cannot decrypt yet,
 * so the client would retransmit and time out instead of learning why. Initial keys come from the
 * client's Destination Connection ID alone, which is what makes this cheap: two HMACs, one AES-GCM
 * seal and one AES block.
 */

export const QUIC_VERSION_1 = 0x0000_0001;
/** RFC 9001 §5.2. */
const INITIAL_SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
const AEAD_TAG_BYTES = 16;
const HP_SAMPLE_BYTES = 16;
/** The sample starts 4 bytes after the packet number's first byte, whatever its length. */
const HP_SAMPLE_OFFSET = 4;
const FRAME_CONNECTION_CLOSE_TRANSPORT = 0x1c;
const FRAME_PADDING = 0x00;
/** A close is one small packet; the reason is cut to keep it well inside any path MTU. */
export const MAX_INITIAL_CLOSE_REASON_BYTES = 200;

export interface InitialKeys {
  readonly key: Buffer;
  readonly iv: Buffer;
  readonly hp: Buffer;
}

/** The Initial keys one side protects its packets with (`server in` / `client in`). */
export function initialKeys(clientDcid: Uint8Array, side: 'server' | 'client'): InitialKeys {
  const initialSecret = createHmac('sha256', INITIAL_SALT_V1).update(clientDcid).digest();
  const secret = expandLabel(initialSecret, side === 'server' ? 'server in' : 'client in', 32);
  return { key: expandLabel(secret, 'quic key', 16), iv: expandLabel(secret, 'quic iv', 12), hp: expandLabel(secret, 'quic hp', 16) };
}

export interface InitialPacket {
  readonly version: number;
  readonly dcid: Uint8Array;
  readonly scid: Uint8Array;
  readonly packetNumber: number;
  /** 1 to 4 bytes on the wire. */
  readonly packetNumberLength: 1 | 2 | 3 | 4;
  readonly payload: Uint8Array;
}

/** Seals an Initial packet (no token: a server's) under `keys`. */
export function sealInitialPacket(packet: InitialPacket, keys: InitialKeys): Buffer {
  const pnLength = packet.packetNumberLength;
  // Header protection needs 16 bytes of ciphertext after pn offset + 4; pad the payload if short.
  const minPayload = HP_SAMPLE_OFFSET + HP_SAMPLE_BYTES - pnLength - AEAD_TAG_BYTES;
  const payload =
    packet.payload.length >= minPayload
      ? Buffer.from(packet.payload)
      : Buffer.concat([packet.payload, Buffer.alloc(minPayload - packet.payload.length, FRAME_PADDING)]);
  const pn = Buffer.alloc(pnLength);
  pn.writeUIntBE(packet.packetNumber, 0, pnLength);
  const header = Buffer.concat([
    Buffer.from([0xc0 | (pnLength - 1)]), // long header, fixed bit, type Initial
    uint32(packet.version),
    Buffer.from([packet.dcid.length]),
    packet.dcid,
    Buffer.from([packet.scid.length]),
    packet.scid,
    varint(0), // token length
    varint2(pnLength + payload.length + AEAD_TAG_BYTES),
    pn,
  ]);
  const pnOffset = header.length - pnLength;

  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < pnLength; i += 1) nonce[nonce.length - pnLength + i]! ^= pn[i]!;
  const cipher = createCipheriv('aes-128-gcm', keys.key, nonce);
  cipher.setAAD(header);
  const sealed = Buffer.concat([header, cipher.update(payload), cipher.final(), cipher.getAuthTag()]);

  const sampleAt = pnOffset + HP_SAMPLE_OFFSET;
  const hp = createCipheriv('aes-128-ecb', keys.hp, null);
  const mask = hp.update(sealed.subarray(sampleAt, sampleAt + HP_SAMPLE_BYTES));
  sealed[0]! ^= mask[0]! & 0x0f;
  for (let i = 0; i < pnLength; i += 1) sealed[pnOffset + i]! ^= mask[1 + i]!;
  return sealed;
}

export interface InitialClose {
  /** The client's Source Connection ID: our packet's destination. */
  readonly clientScid: Uint8Array;
  /** The Destination Connection ID the client used (it derives the Initial keys from it). */
  readonly clientDcid: Uint8Array;
  /** Transport error code, e.g. CONNECTION_REFUSED (0x02). */
  readonly errorCode: number;
  readonly reason: string;
}

/** The one datagram that refuses a client: CONNECTION_CLOSE (transport) in a server Initial. */
export function initialClosePacket(close: InitialClose): Buffer {
  let reason = Buffer.from(close.reason, 'utf8');
  if (reason.length > MAX_INITIAL_CLOSE_REASON_BYTES) reason = reason.subarray(0, MAX_INITIAL_CLOSE_REASON_BYTES);
  const frame = Buffer.concat([
    varint(FRAME_CONNECTION_CLOSE_TRANSPORT),
    varint(close.errorCode),
    varint(0), // the frame type that caused it: none
    varint(reason.length),
    reason,
  ]);
  return sealInitialPacket(
    {
      version: QUIC_VERSION_1,
      dcid: close.clientScid,
      // The connection id the client already addresses us by: a server may pick any.
      scid: close.clientDcid,
      packetNumber: 0,
      packetNumberLength: 1,
      payload: frame,
    },
    initialKeys(close.clientDcid, 'server'),
  );
}

/** HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, for outputs of one SHA-256 block. */
function expandLabel(secret: Buffer, label: string, length: number): Buffer {
  const fullLabel = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, fullLabel.length]), fullLabel, Buffer.from([0])]);
  return createHmac('sha256', secret)
    .update(info)
    .update(Buffer.from([1]))
    .digest()
    .subarray(0, length);
}

function uint32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

/** QUIC variable-length integer (RFC 9000 §16), values below 2^30. */
function varint(value: number): Buffer {
  if (value < 0x40) return Buffer.from([value]);
  if (value < 0x4000) return varint2(value);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((value | 0x8000_0000) >>> 0);
  return b;
}

/** Always the 2-byte form (the Length field is written before its value is final in some stacks). */
function varint2(value: number): Buffer {
  return Buffer.from([0x40 | (value >> 8), value & 0xff]);
}
