// bencode 4 ships no types; this declares the part we use.
declare module 'bencode' {
  export type BencodeValue = number | Uint8Array | string | BencodeValue[] | { [key: string]: BencodeValue };
  export function encode(value: unknown): Uint8Array;
  export function decode(data: Uint8Array, start?: number, end?: number, encoding?: string): unknown;
  export function byteLength(value: unknown): number;
  export function encodingLength(value: unknown): number;
  const bencode: { encode: typeof encode; decode: typeof decode; byteLength: typeof byteLength; encodingLength: typeof encodingLength };
  export default bencode;
}
