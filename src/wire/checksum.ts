/**
 * The internet checksum (RFC 1071): the ones' complement of the ones' complement
 * sum of big-endian 16-bit words, with helpers for the pseudo-header sums that
 * UDP, ICMPv6 and others put in front (RFC 768, RFC 8200 §8.1).
 *
 * A "partial sum" is an unfolded 32-bit accumulator: pass it as `seed` to sum
 * more data, then finish with `foldChecksum` / `internetChecksum`.
 */

/** Bytes summed before the accumulator is folded: 16384 words × 0xffff stays below 2^30 (a small integer in V8). */
const CHUNK_BYTES = 32768;

/**
 * Adds the big-endian 16-bit words of bytes[off, off + len) to `seed` (RFC 1071 §4.1);
 * an odd last octet is padded with a zero octet. Returns a partial sum below 2^32.
 */
export function sumWords(bytes: Uint8Array, off: number, len: number, seed = 0): number {
  let sum = (seed >>> 16) + (seed & 0xffff);
  const evenEnd = off + (len & ~1);
  let i = off;
  while (i < evenEnd) {
    const chunkEnd = evenEnd - i > CHUNK_BYTES ? i + CHUNK_BYTES : evenEnd;
    let s = 0;
    for (; i < chunkEnd; i += 2) s += (bytes[i]! << 8) | bytes[i + 1]!;
    sum += s;
    sum = (sum >>> 16) + (sum & 0xffff);
  }
  if (len & 1) sum += bytes[evenEnd]! << 8;
  return sum;
}

/** Folds a partial sum into 16 bits with end-around carry (RFC 1071 §4.1). */
export function foldChecksum(sum: number): number {
  sum = (sum >>> 16) + (sum & 0xffff);
  sum = (sum >>> 16) + (sum & 0xffff);
  return sum;
}

/**
 * The internet checksum of bytes[off, off + len) on top of `seed` (RFC 1071):
 * the value to store in a checksum field that was zero while summing. Over a
 * range that includes a correct checksum field the result is 0.
 */
export function internetChecksum(bytes: Uint8Array, off: number, len: number, seed = 0): number {
  return ~foldChecksum(sumWords(bytes, off, len, seed)) & 0xffff;
}

/**
 * Partial sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1): source and
 * destination address (4 octets each, read at the given offsets), zero, protocol,
 * upper-layer length.
 */
export function pseudoSumV4(
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  protocol: number,
  upperLen: number,
): number {
  return (
    ((src[srcOff]! << 8) | src[srcOff + 1]!) +
    ((src[srcOff + 2]! << 8) | src[srcOff + 3]!) +
    ((dst[dstOff]! << 8) | dst[dstOff + 1]!) +
    ((dst[dstOff + 2]! << 8) | dst[dstOff + 3]!) +
    (protocol & 0xff) +
    (upperLen & 0xffff)
  );
}

/**
 * Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source and destination
 * address (16 octets each), 32-bit upper-layer packet length, three zero octets,
 * next header.
 */
export function pseudoSumV6(
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  nextHeader: number,
  upperLen: number,
): number {
  let sum = (upperLen >>> 16) + (upperLen & 0xffff) + (nextHeader & 0xff);
  for (let i = 0; i < 16; i += 2) {
    sum += ((src[srcOff + i]! << 8) | src[srcOff + i + 1]!) + ((dst[dstOff + i]! << 8) | dst[dstOff + i + 1]!);
  }
  return sum;
}
