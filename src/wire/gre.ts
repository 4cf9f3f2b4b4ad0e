/**
 * GRE (RFC 2784) with the key and sequence number extensions (RFC 2890):
 *
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  |C| |K|S| Reserved0       | Ver |         Protocol Type         |
 *  |      Checksum (optional)      |       Reserved1 (optional)    |
 *  |                         Key (optional)                        |
 *  |                  Sequence Number (optional)                   |
 *
 * RFC 2784 §2.3: bits 1–12 are Reserved0; RFC 2890 takes bit 2 (K) and bit 3 (S).
 * A receiver MUST discard a packet with any of bits 1–5 set (it does not implement
 * RFC 1701), so bits 1, 4 and 5 set → WireError.malformed; bits 6–12 MUST be
 * ignored. Version must be 0 (RFC 2784 §2.3.1) → else WireError.badVersion.
 */
import { GRE_BASE_BYTES, GRE_OPTION_BYTES } from './constants.js';
import { internetChecksum } from './checksum.js';
import { WireError } from './errors.js';

/** Flag bits of the first 16-bit word: C checksum (RFC 2784 §2), K key and S sequence (RFC 2890 §2). */
export const GRE_FLAG_C = 0x8000;
export const GRE_FLAG_K = 0x2000;
export const GRE_FLAG_S = 0x1000;
/** Reserved0 bits a receiver must find zero (bits 1, 4, 5: RFC 1701's R, s and top Recur bit). */
export const GRE_RESERVED0_MUST_BE_ZERO = 0x4c00;
/** Reserved0 bits not taken by RFC 2890 (bits 1, 4–12). */
const RESERVED0_MASK = 0x4ff8;
const VERSION_MASK = 0x0007;

/** Header length for a flags word: 4 + 4 for each of C, K, S. */
export function greHeaderLen(flags: number): number {
  return (
    GRE_BASE_BYTES +
    (flags & GRE_FLAG_C ? GRE_OPTION_BYTES : 0) +
    (flags & GRE_FLAG_K ? GRE_OPTION_BYTES : 0) +
    (flags & GRE_FLAG_S ? GRE_OPTION_BYTES : 0)
  );
}

/** Big-endian unsigned 32-bit read. */
function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/**
 * A view over one GRE packet (header + payload). `bind` checks version, reserved
 * bits, the length of the optional fields and, when C is set, the checksum.
 */
export class GrePacket {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  private flags = 0;
  private hdrLen = GRE_BASE_BYTES;

  /**
   * Binds to bytes[off, off + len) = GRE header + payload. Returns 0, or truncated,
   * badVersion, malformed (bits 1, 4, 5), badChecksum (only if `verifyChecksum`).
   */
  bind(bytes: Uint8Array, off: number, len: number, verifyChecksum = true): number {
    if (len < GRE_BASE_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    const flags = (bytes[off]! << 8) | bytes[off + 1]!;
    if ((flags & VERSION_MASK) !== 0) return WireError.badVersion;
    if ((flags & GRE_RESERVED0_MUST_BE_ZERO) !== 0) return WireError.malformed;
    const hdrLen = greHeaderLen(flags);
    if (hdrLen > len) return WireError.truncated;
    // RFC 2784 §2.5: checksum over header and payload, 0 when the stored sum is right.
    if (verifyChecksum && flags & GRE_FLAG_C && internetChecksum(bytes, off, len) !== 0) return WireError.badChecksum;
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    this.flags = flags;
    this.hdrLen = hdrLen;
    return 0;
  }

  /** C bit: a checksum field is present. */
  get hasChecksum(): boolean {
    return (this.flags & GRE_FLAG_C) !== 0;
  }
  /** K bit: a key field is present (RFC 2890 §2.1). */
  get hasKey(): boolean {
    return (this.flags & GRE_FLAG_K) !== 0;
  }
  /** S bit: a sequence number field is present (RFC 2890 §2.2). */
  get hasSequence(): boolean {
    return (this.flags & GRE_FLAG_S) !== 0;
  }
  /** Reserved0 bits other than K and S (bits 6–12 may be set; they are ignored). */
  get reserved0(): number {
    return this.flags & RESERVED0_MASK;
  }
  /** Version (always 0 after a successful bind). */
  get version(): number {
    return this.flags & VERSION_MASK;
  }
  /** Protocol type: an EtherType (0x6558 Transparent Ethernet Bridging, 0x0800 IPv4 …). */
  get protocolType(): number {
    return (this.bytes[this.off + 2]! << 8) | this.bytes[this.off + 3]!;
  }
  /** Stored checksum, 0 when absent. */
  get checksum(): number {
    if (!(this.flags & GRE_FLAG_C)) return 0;
    return (this.bytes[this.off + 4]! << 8) | this.bytes[this.off + 5]!;
  }
  /** Key as an unsigned 32-bit number, 0 when absent (check hasKey). */
  get key(): number {
    if (!(this.flags & GRE_FLAG_K)) return 0;
    return u32(this.bytes, this.off + GRE_BASE_BYTES + (this.flags & GRE_FLAG_C ? GRE_OPTION_BYTES : 0));
  }
  /** Sequence number, 0 when absent (check hasSequence). */
  get sequence(): number {
    if (!(this.flags & GRE_FLAG_S)) return 0;
    return u32(this.bytes, this.off + this.hdrLen - GRE_OPTION_BYTES);
  }
  /** Header length (4–16), derived from the flags. */
  get headerLen(): number {
    return this.hdrLen;
  }
  /** Absolute offset of the payload. */
  get payloadOffset(): number {
    return this.off + this.hdrLen;
  }
  /** Payload length. */
  get payloadLen(): number {
    return this.len - this.hdrLen;
  }
}

/** A GRE header as plain data. */
export interface GreRepr {
  /** EtherType of the payload. */
  protocolType: number;
  /** 32-bit key, or null for no K field. */
  key: number | null;
  /** 32-bit sequence number, or null for no S field. */
  sequence: number | null;
  /** True if the header carries a checksum (C bit). */
  checksum: boolean;
}

const scratch = new GrePacket();

/** Parses (and, if present, verifies the checksum of) the GRE packet at bytes[off, off + len). */
export function parseGre(bytes: Uint8Array, off: number, len: number): GreRepr | WireError {
  const err = scratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  return {
    protocolType: scratch.protocolType,
    key: scratch.hasKey ? scratch.key : null,
    sequence: scratch.hasSequence ? scratch.sequence : null,
    checksum: scratch.hasChecksum,
  };
}

/** Octets emitGre writes: 4 + 4 for each optional field. */
export function greBufferLen(repr: GreRepr): number {
  return greHeaderLen((repr.checksum ? GRE_FLAG_C : 0) | (repr.key !== null ? GRE_FLAG_K : 0) | (repr.sequence !== null ? GRE_FLAG_S : 0));
}

/** Writes a big-endian 32-bit value. */
function put32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}

/**
 * Writes the header at bytes[off] and returns its length. With `repr.checksum` the
 * payload must already be in place behind the header, `payloadLen` octets long: the
 * checksum covers both (RFC 2784 §2.5).
 */
export function emitGre(repr: GreRepr, bytes: Uint8Array, off: number, payloadLen = 0): number {
  const flags = (repr.checksum ? GRE_FLAG_C : 0) | (repr.key !== null ? GRE_FLAG_K : 0) | (repr.sequence !== null ? GRE_FLAG_S : 0);
  bytes[off] = flags >>> 8;
  bytes[off + 1] = 0;
  bytes[off + 2] = repr.protocolType >>> 8;
  bytes[off + 3] = repr.protocolType;
  let at = off + GRE_BASE_BYTES;
  if (repr.checksum) {
    put32(bytes, at, 0); // checksum and Reserved1 zero while summing
    at += GRE_OPTION_BYTES;
  }
  if (repr.key !== null) {
    put32(bytes, at, repr.key);
    at += GRE_OPTION_BYTES;
  }
  if (repr.sequence !== null) {
    put32(bytes, at, repr.sequence);
    at += GRE_OPTION_BYTES;
  }
  const hdrLen = at - off;
  if (repr.checksum) {
    const sum = internetChecksum(bytes, off, hdrLen + payloadLen);
    bytes[off + 4] = sum >>> 8;
    bytes[off + 5] = sum;
  }
  return hdrLen;
}

/** Hot-path emitter of sectunnel's header: K set, no checksum or sequence (8 octets at bytes[off]). */
export function emitGreKeyed(bytes: Uint8Array, off: number, protocolType: number, key: number): number {
  bytes[off] = GRE_FLAG_K >>> 8;
  bytes[off + 1] = 0;
  bytes[off + 2] = protocolType >>> 8;
  bytes[off + 3] = protocolType;
  put32(bytes, off + 4, key);
  return GRE_BASE_BYTES + GRE_OPTION_BYTES;
}
