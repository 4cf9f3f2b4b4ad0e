/**
 * ICMP (RFC 792) and ICMPv6 (RFC 4443 §2.1): a basic view/parser of any message
 * (type, code, checksum, the 4-octet rest of header, body), and the two errors a
 * tunnel sends when a packet does not fit: ICMPv4 destination unreachable /
 * fragmentation needed with the next-hop MTU (type 3 code 4, RFC 1191 §4) and
 * ICMPv6 packet too big (type 2, RFC 4443 §3.2, RFC 8201). Both quote as much of
 * the offending packet as the RFCs allow. The IP header in front is the caller's.
 *
 *   |     Type      |     Code      |          Checksum             |
 *   |                 Rest of header (4 octets)                     |
 *   |                 Body (quoted packet, echo data …)             |
 */
import { ICMP_HEADER_BYTES, IPV4_HEADER_BYTES, IPV6_HEADER_BYTES, IP_PROTO_ICMPV6 } from './constants.js';
import { internetChecksum, pseudoSumV6 } from './checksum.js';
import { WireError } from './errors.js';

/** ICMPv4 types (RFC 792). */
export const ICMPV4_ECHO_REPLY = 0;
export const ICMPV4_DEST_UNREACHABLE = 3;
/** Code of destination unreachable: fragmentation needed and DF set (RFC 792, RFC 1191). */
export const ICMPV4_CODE_FRAG_NEEDED = 4;
export const ICMPV4_ECHO_REQUEST = 8;
/** ICMPv6 types (RFC 4443 §2.1). */
export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
/** An ICMPv4 error datagram is at most 576 octets, IP header included (RFC 1812 §4.3.2.3). */
export const ICMPV4_ERROR_MAX_DATAGRAM_BYTES = 576;
/** An ICMPv6 error packet must not exceed the IPv6 minimum MTU (RFC 4443 §2.4 (c)). */
export const ICMPV6_ERROR_MAX_PACKET_BYTES = 1280;
/** Most octets of the offending packet an ICMPv4 error quotes (no IP options in front). */
export const ICMPV4_MAX_QUOTE_BYTES = ICMPV4_ERROR_MAX_DATAGRAM_BYTES - IPV4_HEADER_BYTES - ICMP_HEADER_BYTES;
/** Most octets of the offending packet an ICMPv6 error quotes (no extension headers in front). */
export const ICMPV6_MAX_QUOTE_BYTES = ICMPV6_ERROR_MAX_PACKET_BYTES - IPV6_HEADER_BYTES - ICMP_HEADER_BYTES;

/** Big-endian unsigned 32-bit read. */
function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/** A view over one ICMP or ICMPv6 message; the family only matters for the checksum. */
export class IcmpPacket {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Binds to bytes[off, off + len) (the whole message): 0, or WireError.truncated if the 8-octet header does not fit. */
  bind(bytes: Uint8Array, off: number, len: number): number {
    if (len < ICMP_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    return 0;
  }

  /** Message type. */
  get type(): number {
    return this.bytes[this.off]!;
  }
  /** Message code. */
  get code(): number {
    return this.bytes[this.off + 1]!;
  }
  /** Stored checksum. */
  get checksum(): number {
    return (this.bytes[this.off + 2]! << 8) | this.bytes[this.off + 3]!;
  }
  /** The 4 octets after the checksum as an unsigned 32-bit number. */
  get rest(): number {
    return u32(this.bytes, this.off + 4);
  }
  /** Next-hop MTU of an ICMPv4 fragmentation-needed message: the low 16 bits of `rest` (RFC 1191 §4). */
  get nextHopMtu(): number {
    return (this.bytes[this.off + 6]! << 8) | this.bytes[this.off + 7]!;
  }
  /** MTU of an ICMPv6 packet-too-big message: all 32 bits of `rest` (RFC 4443 §3.2). */
  get mtu(): number {
    return this.rest;
  }
  /** Absolute offset of the body (for errors: the quoted packet). */
  get dataOffset(): number {
    return this.off + ICMP_HEADER_BYTES;
  }
  /** Body length. */
  get dataLen(): number {
    return this.len - ICMP_HEADER_BYTES;
  }

  /** True if the ICMPv4 checksum (over the message alone, RFC 792) verifies. */
  checksumValidV4(): boolean {
    return internetChecksum(this.bytes, this.off, this.len) === 0;
  }

  /** True if the ICMPv6 checksum (over the IPv6 pseudo-header and the message, RFC 4443 §2.3) verifies. */
  checksumValidV6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): boolean {
    return internetChecksum(this.bytes, this.off, this.len, pseudoSumV6(src, srcOff, dst, dstOff, IP_PROTO_ICMPV6, this.len)) === 0;
  }
}

/** An ICMP or ICMPv6 message as plain data. */
export interface IcmpRepr {
  type: number;
  code: number;
  /** Rest of header as a 32-bit number: next-hop MTU (v4 type 3 code 4), MTU (v6 type 2), identifier ‖ sequence (echo) … */
  rest: number;
  /** Body: for errors the quoted start of the offending packet. */
  data: Uint8Array;
}

const scratch = new IcmpPacket();

/** Parses and verifies the ICMPv4 message at bytes[off, off + len): truncated, badChecksum or the Repr (body copied). */
export function parseIcmpv4(bytes: Uint8Array, off: number, len: number): IcmpRepr | WireError {
  const err = scratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  if (!scratch.checksumValidV4()) return WireError.badChecksum;
  return reprOf(scratch);
}

/** Parses and verifies the ICMPv6 message at bytes[off, off + len) sent from `src` to `dst` (16 octets each). */
export function parseIcmpv6(bytes: Uint8Array, off: number, len: number, src: Uint8Array, dst: Uint8Array): IcmpRepr | WireError {
  const err = scratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  if (!scratch.checksumValidV6(src, 0, dst, 0)) return WireError.badChecksum;
  return reprOf(scratch);
}

/** Copies a bound view into a Repr. */
function reprOf(p: IcmpPacket): IcmpRepr {
  return { type: p.type, code: p.code, rest: p.rest, data: p.bytes.slice(p.dataOffset, p.dataOffset + p.dataLen) };
}

/** Octets emitIcmpv4/emitIcmpv6 write: 8 + body. */
export function icmpBufferLen(repr: IcmpRepr): number {
  return ICMP_HEADER_BYTES + repr.data.length;
}

/**
 * Writes type, code, zero checksum and rest at bytes[off], then copies
 * src[srcOff, srcOff + n) behind it; safe when both ranges share one buffer.
 */
function writeMessage(bytes: Uint8Array, off: number, type: number, code: number, rest: number, src: Uint8Array, srcOff: number, n: number): number {
  const to = off + ICMP_HEADER_BYTES;
  // Copy the body first: in place, the quoted packet may sit where the header goes.
  if (src.buffer === bytes.buffer && bytes.byteOffset + to > src.byteOffset + srcOff) {
    for (let i = n - 1; i >= 0; i--) bytes[to + i] = src[srcOff + i]!; // moving forward: copy from the back
  } else {
    for (let i = 0; i < n; i++) bytes[to + i] = src[srcOff + i]!;
  }
  bytes[off] = type;
  bytes[off + 1] = code;
  bytes[off + 2] = 0;
  bytes[off + 3] = 0;
  bytes[off + 4] = rest >>> 24;
  bytes[off + 5] = rest >>> 16;
  bytes[off + 6] = rest >>> 8;
  bytes[off + 7] = rest;
  return ICMP_HEADER_BYTES + n;
}

/** Stores a checksum at bytes[off + 2]. */
function putChecksum(bytes: Uint8Array, off: number, sum: number): void {
  bytes[off + 2] = sum >>> 8;
  bytes[off + 3] = sum;
}

/** Writes an ICMPv4 message with its checksum at bytes[off]; returns its length. */
export function emitIcmpv4(repr: IcmpRepr, bytes: Uint8Array, off: number): number {
  const n = writeMessage(bytes, off, repr.type, repr.code, repr.rest, repr.data, 0, repr.data.length);
  putChecksum(bytes, off, internetChecksum(bytes, off, n));
  return n;
}

/** Writes an ICMPv6 message from `src` to `dst` (16 octets each) with its checksum at bytes[off]; returns its length. */
export function emitIcmpv6(repr: IcmpRepr, bytes: Uint8Array, off: number, src: Uint8Array, dst: Uint8Array): number {
  const n = writeMessage(bytes, off, repr.type, repr.code, repr.rest, repr.data, 0, repr.data.length);
  putChecksum(bytes, off, internetChecksum(bytes, off, n, pseudoSumV6(src, 0, dst, 0, IP_PROTO_ICMPV6, n)));
  return n;
}

/** Repr of an ICMPv4 fragmentation-needed message quoting `packet` (cut to ICMPV4_MAX_QUOTE_BYTES; no copy). */
export function icmpv4FragNeeded(nextHopMtu: number, packet: Uint8Array): IcmpRepr {
  const n = Math.min(packet.length, ICMPV4_MAX_QUOTE_BYTES);
  return { type: ICMPV4_DEST_UNREACHABLE, code: ICMPV4_CODE_FRAG_NEEDED, rest: nextHopMtu & 0xffff, data: packet.subarray(0, n) };
}

/** Repr of an ICMPv6 packet-too-big message quoting `packet` (cut to ICMPV6_MAX_QUOTE_BYTES; no copy). */
export function icmpv6PacketTooBig(mtu: number, packet: Uint8Array): IcmpRepr {
  const n = Math.min(packet.length, ICMPV6_MAX_QUOTE_BYTES);
  return { type: ICMPV6_PACKET_TOO_BIG, code: 0, rest: mtu >>> 0, data: packet.subarray(0, n) };
}

/**
 * Writes ICMPv4 type 3 code 4 with the next-hop MTU (RFC 1191 §4) at bytes[off],
 * quoting orig[origOff, origOff + origLen) cut to ICMPV4_MAX_QUOTE_BYTES; the quote
 * may overlap the output. Returns the message length. No allocation.
 */
export function emitIcmpv4FragNeeded(bytes: Uint8Array, off: number, nextHopMtu: number, orig: Uint8Array, origOff: number, origLen: number): number {
  const q = origLen < ICMPV4_MAX_QUOTE_BYTES ? origLen : ICMPV4_MAX_QUOTE_BYTES;
  const n = writeMessage(bytes, off, ICMPV4_DEST_UNREACHABLE, ICMPV4_CODE_FRAG_NEEDED, nextHopMtu & 0xffff, orig, origOff, q);
  putChecksum(bytes, off, internetChecksum(bytes, off, n));
  return n;
}

/**
 * Writes ICMPv6 packet too big with `mtu` (RFC 4443 §3.2) at bytes[off], quoting
 * orig[origOff, origOff + origLen) cut to ICMPV6_MAX_QUOTE_BYTES, checksummed for
 * src[srcOff] → dst[dstOff]. Returns the message length. No allocation.
 */
export function emitIcmpv6PacketTooBig(
  bytes: Uint8Array,
  off: number,
  mtu: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
): number {
  const q = origLen < ICMPV6_MAX_QUOTE_BYTES ? origLen : ICMPV6_MAX_QUOTE_BYTES;
  const n = writeMessage(bytes, off, ICMPV6_PACKET_TOO_BIG, 0, mtu >>> 0, orig, origOff, q);
  putChecksum(bytes, off, internetChecksum(bytes, off, n, pseudoSumV6(src, srcOff, dst, dstOff, IP_PROTO_ICMPV6, n)));
  return n;
}
