/**
 * UDP (RFC 768): header view with length check and checksum verify/fill over the
 * IPv4 pseudo-header (RFC 768) and the IPv6 pseudo-header (RFC 8200 §8.1).
 *
 *   |          Source Port          |       Destination Port        |
 *   |            Length             |           Checksum            |
 *
 * Over IPv4 a zero checksum means "none" (RFC 768) and is accepted — ESP-in-UDP
 * senders use it (RFC 3948 §2.1). Over IPv6 zero is invalid (RFC 8200 §8.1):
 * `checkChecksumV6` returns WireError.zeroChecksum so the pipeline can count
 * `udp_zero_checksum_v6`.
 */
import { IP_PROTO_UDP, UDP_HEADER_BYTES } from './constants.js';
import { internetChecksum, pseudoSumV4, pseudoSumV6 } from './checksum.js';
import { WireError } from './errors.js';

/** Big-endian unsigned 16-bit read. */
function u16(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

/** A view over one UDP datagram. After `bind`, `length` octets lie inside the window. */
export class UdpPacket {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  private length_ = UDP_HEADER_BYTES;

  /** Binds to bytes[off, off + len): 0, or truncated (header or Length past the window) or badLength (Length < 8). */
  bind(bytes: Uint8Array, off: number, len: number): number {
    if (len < UDP_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    const length = u16(bytes, off + 4);
    if (length < UDP_HEADER_BYTES) return WireError.badLength;
    if (length > len) return WireError.truncated;
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    this.length_ = length;
    return 0;
  }

  /** Source port. */
  get srcPort(): number {
    return u16(this.bytes, this.off);
  }
  /** Destination port. */
  get dstPort(): number {
    return u16(this.bytes, this.off + 2);
  }
  /** Length field: header + payload. */
  get length(): number {
    return this.length_;
  }
  /** Stored checksum (0 = none over IPv4). */
  get checksum(): number {
    return u16(this.bytes, this.off + 6);
  }
  /** Absolute offset of the payload. */
  get payloadOffset(): number {
    return this.off + UDP_HEADER_BYTES;
  }
  /** Payload length: Length − 8 (octets past Length are not payload). */
  get payloadLen(): number {
    return this.length_ - UDP_HEADER_BYTES;
  }

  /** Over IPv4 (addresses at src[srcOff], dst[dstOff]): 0 if the checksum verifies or is 0 ("none"), else badChecksum. */
  checkChecksumV4(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): number {
    if (this.checksum === 0) return 0;
    const seed = pseudoSumV4(src, srcOff, dst, dstOff, IP_PROTO_UDP, this.length_);
    return internetChecksum(this.bytes, this.off, this.length_, seed) === 0 ? 0 : WireError.badChecksum;
  }

  /** Over IPv6 (16-octet addresses): 0 if the checksum verifies, zeroChecksum if it is 0, else badChecksum. */
  checkChecksumV6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): number {
    if (this.checksum === 0) return WireError.zeroChecksum;
    const seed = pseudoSumV6(src, srcOff, dst, dstOff, IP_PROTO_UDP, this.length_);
    return internetChecksum(this.bytes, this.off, this.length_, seed) === 0 ? 0 : WireError.badChecksum;
  }
}

/** Computes and stores the checksum of the datagram at bytes[off] (its Length field set) over the IPv4 pseudo-header; 0 is sent as 0xffff. */
export function fillUdpChecksumV4(bytes: Uint8Array, off: number, src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void {
  const length = u16(bytes, off + 4);
  bytes[off + 6] = 0;
  bytes[off + 7] = 0;
  const sum = internetChecksum(bytes, off, length, pseudoSumV4(src, srcOff, dst, dstOff, IP_PROTO_UDP, length)) || 0xffff;
  bytes[off + 6] = sum >>> 8;
  bytes[off + 7] = sum;
}

/** Computes and stores the checksum of the datagram at bytes[off] over the IPv6 pseudo-header; 0 is sent as 0xffff. */
export function fillUdpChecksumV6(bytes: Uint8Array, off: number, src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void {
  const length = u16(bytes, off + 4);
  bytes[off + 6] = 0;
  bytes[off + 7] = 0;
  const sum = internetChecksum(bytes, off, length, pseudoSumV6(src, srcOff, dst, dstOff, IP_PROTO_UDP, length)) || 0xffff;
  bytes[off + 6] = sum >>> 8;
  bytes[off + 7] = sum;
}

/** A UDP header as plain data. */
export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** Octets after the header; Length = 8 + payloadLen. */
  payloadLen: number;
}

const scratch = new UdpPacket();

/** Parses the UDP header at bytes[off, off + len) (length checked; the checksum needs the IP addresses: use UdpPacket). */
export function parseUdp(bytes: Uint8Array, off: number, len: number): UdpRepr | WireError {
  const err = scratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  return { srcPort: scratch.srcPort, dstPort: scratch.dstPort, payloadLen: scratch.payloadLen };
}

/** Octets emitUdp writes: 8. */
export function udpBufferLen(_repr: UdpRepr): number {
  return UDP_HEADER_BYTES;
}

/**
 * Writes the header at bytes[off] with checksum 0 ("none", fine over IPv4 and for
 * ESP-in-UDP, RFC 3948 §2.1); returns 8. Call fillUdpChecksumV4/V6 once the payload is in place.
 */
export function emitUdp(repr: UdpRepr, bytes: Uint8Array, off: number): number {
  return emitUdpHeader(bytes, off, repr.srcPort, repr.dstPort, repr.payloadLen);
}

/** Hot-path header emitter: ports, Length = 8 + payloadLen, checksum 0; returns 8. */
export function emitUdpHeader(bytes: Uint8Array, off: number, srcPort: number, dstPort: number, payloadLen: number): number {
  const length = UDP_HEADER_BYTES + payloadLen;
  bytes[off] = srcPort >>> 8;
  bytes[off + 1] = srcPort;
  bytes[off + 2] = dstPort >>> 8;
  bytes[off + 3] = dstPort;
  bytes[off + 4] = length >>> 8;
  bytes[off + 5] = length;
  bytes[off + 6] = 0;
  bytes[off + 7] = 0;
  return UDP_HEADER_BYTES;
}
