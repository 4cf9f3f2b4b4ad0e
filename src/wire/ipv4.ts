/**
 * IPv4 header (RFC 791 §3.1): a reusable view that verifies the header checksum,
 * a Repr with an emitter that computes it, and address text helpers.
 *
 *   |Version|  IHL  |  DSCP   |ECN|          Total Length         |
 *   |         Identification        |R|D|M|    Fragment Offset    |
 *   |  Time to Live |    Protocol   |         Header Checksum       |
 *   |                       Source Address                          |
 *   |                    Destination Address                        |
 *   |                    Options (IHL > 5)                          |
 */
import { IPV4_HEADER_BYTES } from './constants.js';
import { internetChecksum } from './checksum.js';
import { WireError } from './errors.js';

/** Length of an IPv4 address. */
export const IPV4_ADDRESS_BYTES = 4;
/** Largest header: IHL 15 × 4 octets (RFC 791 §3.1). */
export const IPV4_MAX_HEADER_BYTES = 60;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const FRAG_OFFSET_MASK = 0x1fff;

/** Big-endian unsigned 16-bit read. */
function u16(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

/**
 * A view over one IPv4 packet. After a successful `bind` the header, its options
 * and `totalLength` octets lie inside the window; octets past `totalLength` (link
 * padding) are not part of the payload.
 */
export class Ipv4Packet {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  private hdrLen = IPV4_HEADER_BYTES;
  private total = IPV4_HEADER_BYTES;

  /**
   * Binds to bytes[off, off + len). Returns 0, or truncated, badVersion, badLength
   * (IHL < 5 or total length < header length) or badChecksum (only if `verifyChecksum`).
   */
  bind(bytes: Uint8Array, off: number, len: number, verifyChecksum = true): number {
    if (len < IPV4_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    const vihl = bytes[off]!;
    if (vihl >>> 4 !== 4) return WireError.badVersion;
    const hdrLen = (vihl & 0x0f) * 4;
    if (hdrLen < IPV4_HEADER_BYTES) return WireError.badLength;
    if (hdrLen > len) return WireError.truncated;
    const total = u16(bytes, off + 2);
    if (total < hdrLen) return WireError.badLength;
    if (total > len) return WireError.truncated;
    if (verifyChecksum && internetChecksum(bytes, off, hdrLen) !== 0) return WireError.badChecksum;
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    this.hdrLen = hdrLen;
    this.total = total;
    return 0;
  }

  /** Version (4). */
  get version(): number {
    return this.bytes[this.off]! >>> 4;
  }
  /** Header length in octets, options included (IHL × 4). */
  get headerLen(): number {
    return this.hdrLen;
  }
  /** Differentiated Services code point (RFC 2474). */
  get dscp(): number {
    return this.bytes[this.off + 1]! >>> 2;
  }
  /** ECN field (RFC 3168). */
  get ecn(): number {
    return this.bytes[this.off + 1]! & 3;
  }
  /** Total length: header + payload. */
  get totalLength(): number {
    return this.total;
  }
  /** Identification. */
  get identification(): number {
    return u16(this.bytes, this.off + 4);
  }
  /** Don't Fragment flag. */
  get dontFragment(): boolean {
    return (u16(this.bytes, this.off + 6) & FLAG_DF) !== 0;
  }
  /** More Fragments flag. */
  get moreFragments(): boolean {
    return (u16(this.bytes, this.off + 6) & FLAG_MF) !== 0;
  }
  /** Fragment offset in octets (the field × 8). */
  get fragmentOffsetBytes(): number {
    return (u16(this.bytes, this.off + 6) & FRAG_OFFSET_MASK) * 8;
  }
  /** True if this packet is a fragment (MF set or offset ≠ 0). */
  get isFragment(): boolean {
    return (u16(this.bytes, this.off + 6) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0;
  }
  /** Time to live. */
  get ttl(): number {
    return this.bytes[this.off + 8]!;
  }
  /** Protocol of the payload (unknown values as they are). */
  get protocol(): number {
    return this.bytes[this.off + 9]!;
  }
  /** Stored header checksum. */
  get checksum(): number {
    return u16(this.bytes, this.off + 10);
  }
  /** Absolute offset of the 4-octet source address. */
  get srcOffset(): number {
    return this.off + 12;
  }
  /** Absolute offset of the 4-octet destination address. */
  get dstOffset(): number {
    return this.off + 16;
  }
  /** Source address as an unsigned 32-bit number. */
  get src(): number {
    const b = this.bytes;
    const i = this.off + 12;
    return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
  }
  /** Destination address as an unsigned 32-bit number. */
  get dst(): number {
    const b = this.bytes;
    const i = this.off + 16;
    return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
  }
  /** Absolute offset of the options (empty when IHL = 5). */
  get optionsOffset(): number {
    return this.off + IPV4_HEADER_BYTES;
  }
  /** Length of the options in octets. */
  get optionsLen(): number {
    return this.hdrLen - IPV4_HEADER_BYTES;
  }
  /** Absolute offset of the payload. */
  get payloadOffset(): number {
    return this.off + this.hdrLen;
  }
  /** Payload length: total length − header length. */
  get payloadLen(): number {
    return this.total - this.hdrLen;
  }
}

/** An IPv4 header as plain data. Optional fields default to 0 / false / none when emitted. */
export interface Ipv4Repr {
  /** 4 octets. */
  src: Uint8Array;
  /** 4 octets. */
  dst: Uint8Array;
  protocol: number;
  /** Octets after the header; total length = header + payloadLen. */
  payloadLen: number;
  ttl: number;
  dscp?: number;
  ecn?: number;
  identification?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  /** Fragment offset in octets, a multiple of 8. */
  fragmentOffsetBytes?: number;
  /** Raw options, a multiple of 4 octets, at most 40. */
  options?: Uint8Array;
}

const scratch = new Ipv4Packet();

/** Parses (checksum verified) the IPv4 header at bytes[off, off + len). */
export function parseIpv4(bytes: Uint8Array, off: number, len: number): Ipv4Repr | WireError {
  const err = scratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  const p = scratch;
  return {
    src: bytes.slice(p.srcOffset, p.srcOffset + 4),
    dst: bytes.slice(p.dstOffset, p.dstOffset + 4),
    protocol: p.protocol,
    payloadLen: p.payloadLen,
    ttl: p.ttl,
    dscp: p.dscp,
    ecn: p.ecn,
    identification: p.identification,
    dontFragment: p.dontFragment,
    moreFragments: p.moreFragments,
    fragmentOffsetBytes: p.fragmentOffsetBytes,
    options: bytes.slice(p.optionsOffset, p.optionsOffset + p.optionsLen),
  };
}

/** Octets emitIpv4 writes: the header, 20 + options. */
export function ipv4BufferLen(repr: Ipv4Repr): number {
  return IPV4_HEADER_BYTES + (repr.options ? repr.options.length : 0);
}

/** Writes the header at bytes[off] with its checksum (RFC 791 §3.1) and returns its length. */
export function emitIpv4(repr: Ipv4Repr, bytes: Uint8Array, off: number): number {
  const optLen = repr.options ? repr.options.length : 0;
  const hdrLen = IPV4_HEADER_BYTES + optLen;
  const total = hdrLen + repr.payloadLen;
  const id = repr.identification ?? 0;
  const frag =
    (repr.dontFragment ? FLAG_DF : 0) | (repr.moreFragments ? FLAG_MF : 0) | (((repr.fragmentOffsetBytes ?? 0) >>> 3) & FRAG_OFFSET_MASK);
  bytes[off] = 0x40 | (hdrLen >>> 2);
  bytes[off + 1] = ((repr.dscp ?? 0) << 2) | ((repr.ecn ?? 0) & 3);
  bytes[off + 2] = total >>> 8;
  bytes[off + 3] = total;
  bytes[off + 4] = id >>> 8;
  bytes[off + 5] = id;
  bytes[off + 6] = frag >>> 8;
  bytes[off + 7] = frag;
  bytes[off + 8] = repr.ttl;
  bytes[off + 9] = repr.protocol;
  bytes[off + 10] = 0;
  bytes[off + 11] = 0;
  for (let i = 0; i < IPV4_ADDRESS_BYTES; i++) {
    bytes[off + 12 + i] = repr.src[i]!;
    bytes[off + 16 + i] = repr.dst[i]!;
  }
  for (let i = 0; i < optLen; i++) bytes[off + IPV4_HEADER_BYTES + i] = repr.options![i]!;
  fillIpv4Checksum(bytes, off);
  return hdrLen;
}

/** Recomputes the header checksum of the header at bytes[off] in place (after patching a template's length or id). */
export function fillIpv4Checksum(bytes: Uint8Array, off: number): void {
  bytes[off + 10] = 0;
  bytes[off + 11] = 0;
  const sum = internetChecksum(bytes, off, (bytes[off]! & 0x0f) * 4);
  bytes[off + 10] = sum >>> 8;
  bytes[off + 11] = sum;
}

/** Dotted-quad text of the 4 octets at bytes[off]: "192.0.2.1". */
export function formatIpv4(bytes: Uint8Array, off = 0): string {
  return `${bytes[off]}.${bytes[off + 1]}.${bytes[off + 2]}.${bytes[off + 3]}`;
}

/** The 4 octets of a dotted quad ("192.0.2.1", no leading zeros), or null if `text` is not one. */
export function parseIpv4Address(text: string): Uint8Array | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(IPV4_ADDRESS_BYTES);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}
