/**
 * MAC-48 addresses (IEEE 802): text form "02:00:00:00:00:01", and a 48-bit
 * number for map keys that is read straight from the frame without allocating.
 */
import { MAC_BYTES } from './constants.js';

const HEX = '0123456789abcdef';

/** Lowercase colon form of the 6 octets at bytes[off]: "02:00:00:00:00:01". */
export function formatMac(bytes: Uint8Array, off = 0): string {
  let s = '';
  for (let i = 0; i < MAC_BYTES; i++) {
    const b = bytes[off + i]!;
    if (i > 0) s += ':';
    s += HEX[b >> 4]! + HEX[b & 15]!;
  }
  return s;
}

/** Value of one hex digit (char code), or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 0x20;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Parses "02:00:00:00:00:01" (or with '-', any case) into bytes[off, off + 6);
 * returns false, writing nothing, if `text` is not such an address.
 */
export function parseMacInto(text: string, bytes: Uint8Array, off = 0): boolean {
  if (text.length !== 17) return false;
  const sep = text.charCodeAt(2);
  if (sep !== 58 /* : */ && sep !== 45 /* - */) return false;
  for (let i = 0; i < MAC_BYTES; i++) {
    if (i > 0 && text.charCodeAt(3 * i - 1) !== sep) return false;
    if (hexDigit(text.charCodeAt(3 * i)) < 0 || hexDigit(text.charCodeAt(3 * i + 1)) < 0) return false;
  }
  for (let i = 0; i < MAC_BYTES; i++) {
    bytes[off + i] = (hexDigit(text.charCodeAt(3 * i)) << 4) | hexDigit(text.charCodeAt(3 * i + 1));
  }
  return true;
}

/** The 6 octets of "02:00:00:00:00:01", or null if `text` is not a MAC address. */
export function parseMac(text: string): Uint8Array | null {
  const out = new Uint8Array(MAC_BYTES);
  return parseMacInto(text, out, 0) ? out : null;
}

/** The MAC at bytes[off] as a number 0 … 2^48 − 1 (first octet most significant), for Map keys. */
export function macToNumber(bytes: Uint8Array, off = 0): number {
  return (
    ((bytes[off]! << 8) | bytes[off + 1]!) * 0x1_0000_0000 +
    (((bytes[off + 2]! << 24) | (bytes[off + 3]! << 16) | (bytes[off + 4]! << 8) | bytes[off + 5]!) >>> 0)
  );
}

/** Writes a number from macToNumber back as 6 octets at bytes[off]. */
export function macFromNumber(mac: number, bytes: Uint8Array, off = 0): void {
  const hi = Math.floor(mac / 0x1_0000_0000);
  const lo = mac >>> 0;
  bytes[off] = hi >>> 8;
  bytes[off + 1] = hi;
  bytes[off + 2] = lo >>> 24;
  bytes[off + 3] = lo >>> 16;
  bytes[off + 4] = lo >>> 8;
  bytes[off + 5] = lo;
}

/** True for group addresses (I/G bit, the low bit of the first octet): multicast and broadcast (IEEE 802 §8.2). */
export function isMulticastMac(bytes: Uint8Array, off = 0): boolean {
  return (bytes[off]! & 1) === 1;
}

/** True for ff:ff:ff:ff:ff:ff. */
export function isBroadcastMac(bytes: Uint8Array, off = 0): boolean {
  return (bytes[off]! & bytes[off + 1]! & bytes[off + 2]! & bytes[off + 3]! & bytes[off + 4]! & bytes[off + 5]!) === 0xff;
}

/** True if the 6 octets at a[aOff] equal those at b[bOff]. */
export function macEquals(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  for (let i = 0; i < MAC_BYTES; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}
