import { RemoteNetworkError } from '../base/errors.ts';

/** A bencoded value as KRPC sees it: byte strings stay bytes (keys of dicts are strings). */
export type BencodeValue = Buffer | number | BencodeValue[] | BencodeDict;
export interface BencodeDict {
  [key: string]: BencodeValue;
}

/** Nesting a KRPC datagram may have (a message, its arguments, a BEP 44 value and its parts). */
export const MAX_BENCODE_DEPTH = 16;

export class KrpcDecodeError extends RemoteNetworkError {
  readonly code = 'KRPC_MALFORMED';
}

const COLON = 0x3a;
/** A datagram is at most 64 KiB: a longer length is malformed, not merely past the end. */
const MAX_LENGTH_DIGITS = 6;
const END = 0x65;

/**
 * A strict, bounded bencode decoder for datagrams from the network, run before the DHT library's
 * own decoder sees them. That decoder (bencode 2, inside k-rpc-socket) never terminates on a
 * negative string length (`d-3:e`, five bytes, spins the event loop forever), recurses without a
 * limit (a datagram of `l`s overflows the stack) and accepts non-canonical forms. Only what this
 * one accepts reaches it, and for those inputs both decode to the same value: canonical integers
 * and lengths, no trailing bytes, no duplicate keys (compared as the library compares them, as
 * UTF-8 strings), no `__proto__` key (the library would set the dict's prototype with it), and at
 * most MAX_BENCODE_DEPTH levels. Dict keys need not be sorted: many DHT clients do not sort.
 */
export function decodeKrpc(data: Buffer): BencodeValue {
  const reader = new Reader(data);
  const value = reader.value(0);
  if (reader.position !== data.length) throw new KrpcDecodeError(`${data.length - reader.position} bytes after the message`);
  return value;
}

class Reader {
  position = 0;

  constructor(private readonly data: Buffer) {}

  value(depth: number): BencodeValue {
    if (depth > MAX_BENCODE_DEPTH) throw new KrpcDecodeError(`nested deeper than ${MAX_BENCODE_DEPTH}`);
    const byte = this.data[this.position];
    if (byte === 0x69) return this.integer();
    if (byte === 0x6c) return this.list(depth);
    if (byte === 0x64) return this.dict(depth);
    if (byte !== undefined && byte >= 0x30 && byte <= 0x39) return this.bytes();
    throw new KrpcDecodeError(byte === undefined ? 'unexpected end' : `unexpected byte 0x${byte.toString(16)} at ${this.position}`);
  }

  private integer(): number {
    const { data } = this;
    let i = this.position + 1;
    const negative = data[i] === 0x2d;
    if (negative) i += 1;
    const first = i;
    let value = 0;
    for (; i < data.length && data[i] !== END; i++) {
      const digit = (data[i] ?? 0) - 0x30;
      if (digit < 0 || digit > 9) throw new KrpcDecodeError('malformed integer');
      value = value * 10 + digit;
    }
    const digits = i - first;
    if (i >= data.length) throw new KrpcDecodeError('unterminated integer');
    // Canonical only: no empty, no leading zero, no negative zero.
    if (digits === 0 || (data[first] === 0x30 && (digits > 1 || negative))) throw new KrpcDecodeError('malformed integer');
    if (!Number.isSafeInteger(value)) throw new KrpcDecodeError('integer out of range');
    this.position = i + 1;
    return negative ? -value : value;
  }

  private bytes(): Buffer {
    const { data } = this;
    const first = this.position;
    let length = 0;
    let i = first;
    for (; i < data.length && data[i] !== COLON; i++) {
      const digit = (data[i] ?? 0) - 0x30;
      if (digit < 0 || digit > 9 || i - first >= MAX_LENGTH_DIGITS) throw new KrpcDecodeError('malformed string length');
      length = length * 10 + digit;
    }
    if (i >= data.length || i === first || (data[first] === 0x30 && i - first > 1)) throw new KrpcDecodeError('malformed string length');
    const start = i + 1;
    const end = start + length;
    if (end > data.length) throw new KrpcDecodeError('string past the end');
    this.position = end;
    return data.subarray(start, end);
  }

  private list(depth: number): BencodeValue[] {
    this.position += 1;
    const items: BencodeValue[] = [];
    while (this.data[this.position] !== END) {
      if (this.position >= this.data.length) throw new KrpcDecodeError('unterminated list');
      items.push(this.value(depth + 1));
    }
    this.position += 1;
    return items;
  }

  private dict(depth: number): BencodeDict {
    this.position += 1;
    const dict: BencodeDict = {};
    while (this.data[this.position] !== END) {
      if (this.position >= this.data.length) throw new KrpcDecodeError('unterminated dict');
      if (!isDigit(this.data[this.position])) throw new KrpcDecodeError('dict key is not a string');
      const key = this.bytes().toString();
      if (key === '__proto__') throw new KrpcDecodeError('forbidden dict key');
      if (Object.hasOwn(dict, key)) throw new KrpcDecodeError('duplicate dict key');
      dict[key] = this.value(depth + 1);
    }
    this.position += 1;
    return dict;
  }
}

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39;
}
