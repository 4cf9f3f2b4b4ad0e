/**
 * IPv6 (RFC 8200): the fixed header (§3), a bounded walk over the extension
 * headers this dataplane must pass (hop-by-hop 0, routing 43, fragment 44,
 * destination options 60; §4) to the upper-layer protocol, the fragment header
 * (§4.5), and address text helpers (RFC 4291 §2.2, RFC 5952).
 *
 *   |Version| Traffic Class |           Flow Label                  |
 *   |         Payload Length        |  Next Header  |   Hop Limit   |
 *   |                  Source Address (16)                          |
 *   |                Destination Address (16)                       |
 */
import {
  IPV6_FRAGMENT_HEADER_BYTES,
  IPV6_HEADER_BYTES,
  IP_PROTO_HOPOPTS,
  IP_PROTO_IPV6_DSTOPTS,
  IP_PROTO_IPV6_FRAGMENT,
  IP_PROTO_IPV6_ROUTING,
} from './constants.js';
import { WireError } from './errors.js';

/** Length of an IPv6 address. */
export const IPV6_ADDRESS_BYTES = 16;
/**
 * Most extension headers the walk follows before it gives up (WireError.tooManyHeaders).
 * RFC 8200 §4.1 allows each at most once (destination options twice): 5 would do.
 */
export const IPV6_MAX_EXT_HEADERS = 8;

const SRC = 8;
const DST = 24;

/** Big-endian unsigned 16-bit read. */
function u16(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

/** True for the extension headers the walk steps over (RFC 8200 §4.1). */
export function isWalkedExtHeader(nextHeader: number): boolean {
  return (
    nextHeader === IP_PROTO_HOPOPTS ||
    nextHeader === IP_PROTO_IPV6_ROUTING ||
    nextHeader === IP_PROTO_IPV6_FRAGMENT ||
    nextHeader === IP_PROTO_IPV6_DSTOPTS
  );
}

/**
 * A view over one IPv6 packet. `bind` checks the fixed header and walks the
 * extension headers inside Payload Length; it stops at the first other next header
 * (ESP 50, UDP 17, GRE 47, ICMPv6 58, AH 51, no next header 59, unknown …) or right
 * after a fragment header of a real fragment (offset ≠ 0 or M set), whose payload
 * is not parseable before reassembly. An atomic fragment (offset 0, M clear,
 * RFC 6946) is walked through.
 */
export class Ipv6Packet {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  private payload = 0;
  private upperProto = 0;
  private upperOff = 0;
  private extCount = 0;
  private fragOff = -1;
  private fragLink = -1;
  private fragField = 0;
  private fragIdent = 0;
  private fragNext = 0;

  /**
   * Binds to bytes[off, off + len). Returns 0, or truncated (header, Payload Length or
   * an extension header past the window), badVersion, malformed (hop-by-hop not
   * first, a second fragment header) or tooManyHeaders.
   */
  bind(bytes: Uint8Array, off: number, len: number): number {
    if (len < IPV6_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    if (bytes[off]! >>> 4 !== 6) return WireError.badVersion;
    const payload = u16(bytes, off + 4);
    if (IPV6_HEADER_BYTES + payload > len) return WireError.truncated;
    const end = off + IPV6_HEADER_BYTES + payload;
    let link = off + 6; // the Next Header octet that names the header at `at`
    let nh = bytes[link]!;
    let at = off + IPV6_HEADER_BYTES;
    let count = 0;
    let fragOff = -1;
    let fragLink = -1;
    let fragField = 0;
    let fragIdent = 0;
    let fragNext = 0;
    while (isWalkedExtHeader(nh)) {
      if (count >= IPV6_MAX_EXT_HEADERS) return WireError.tooManyHeaders;
      if (nh === IP_PROTO_HOPOPTS && count !== 0) return WireError.malformed; // §4.1: only right after the fixed header
      if (at + 8 > end) return WireError.truncated;
      if (nh === IP_PROTO_IPV6_FRAGMENT) {
        if (fragOff >= 0) return WireError.malformed;
        fragOff = at;
        fragLink = link;
        fragNext = bytes[at]!;
        fragField = u16(bytes, at + 2);
        fragIdent = ((bytes[at + 4]! << 24) | (bytes[at + 5]! << 16) | (bytes[at + 6]! << 8) | bytes[at + 7]!) >>> 0;
        link = at;
        nh = fragNext;
        at += IPV6_FRAGMENT_HEADER_BYTES;
        count++;
        if ((fragField & 0xfff9) !== 0) break; // offset ≠ 0 or M: a real fragment, stop here
        continue;
      }
      const hdrLen = (bytes[at + 1]! + 1) * 8; // §4.3–4.6: Hdr Ext Len in 8-octet units, first 8 not counted
      if (at + hdrLen > end) return WireError.truncated;
      link = at;
      nh = bytes[at]!;
      at += hdrLen;
      count++;
    }
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    this.payload = payload;
    this.upperProto = nh;
    this.upperOff = at;
    this.extCount = count;
    this.fragOff = fragOff;
    this.fragLink = fragLink;
    this.fragField = fragField;
    this.fragIdent = fragIdent;
    this.fragNext = fragNext;
    return 0;
  }

  /** Version (6). */
  get version(): number {
    return this.bytes[this.off]! >>> 4;
  }
  /** Traffic class (DSCP << 2 | ECN). */
  get trafficClass(): number {
    return ((this.bytes[this.off]! & 0x0f) << 4) | (this.bytes[this.off + 1]! >>> 4);
  }
  /** Flow label (20 bits). */
  get flowLabel(): number {
    return ((this.bytes[this.off + 1]! & 0x0f) << 16) | u16(this.bytes, this.off + 2);
  }
  /** Payload Length: octets after the fixed header, extension headers included. */
  get payloadLength(): number {
    return this.payload;
  }
  /** Next Header of the fixed header. */
  get nextHeader(): number {
    return this.bytes[this.off + 6]!;
  }
  /** Hop limit. */
  get hopLimit(): number {
    return this.bytes[this.off + 7]!;
  }
  /** Absolute offset of the 16-octet source address. */
  get srcOffset(): number {
    return this.off + SRC;
  }
  /** Absolute offset of the 16-octet destination address. */
  get dstOffset(): number {
    return this.off + DST;
  }
  /** Number of extension headers walked. */
  get extHeaderCount(): number {
    return this.extCount;
  }
  /** Protocol where the walk stopped: the upper layer (or, in a real fragment, the fragment header's next header). */
  get upperProtocol(): number {
    return this.upperProto;
  }
  /** Absolute offset of the upper-layer header (or of the fragment data). */
  get upperOffset(): number {
    return this.upperOff;
  }
  /** Octets from upperOffset to the end of the payload. */
  get upperLen(): number {
    return this.off + IPV6_HEADER_BYTES + this.payload - this.upperOff;
  }
  /** Absolute offset of the end of the packet (fixed header + Payload Length). */
  get end(): number {
    return this.off + IPV6_HEADER_BYTES + this.payload;
  }
  /** True if a fragment header was walked. */
  get hasFragmentHeader(): boolean {
    return this.fragOff >= 0;
  }
  /** True if the packet is a real fragment: offset ≠ 0 or M set (not an atomic fragment). */
  get isFragment(): boolean {
    return this.fragOff >= 0 && (this.fragField & 0xfff9) !== 0;
  }
  /** Absolute offset of the fragment header, -1 if none. */
  get fragmentHeaderOffset(): number {
    return this.fragOff;
  }
  /** Absolute offset of the Next Header octet that names the fragment header (rewritten on reassembly), -1 if none. */
  get fragmentLinkOffset(): number {
    return this.fragLink;
  }
  /** Next header inside the fragment header (0 if none). */
  get fragmentNextHeader(): number {
    return this.fragNext;
  }
  /** Fragment offset in octets (the 13-bit field × 8), 0 if none. */
  get fragmentOffsetBytes(): number {
    return this.fragField & 0xfff8;
  }
  /** M flag of the fragment header. */
  get moreFragments(): boolean {
    return (this.fragField & 1) !== 0;
  }
  /** Identification of the fragment header (0 if none). */
  get fragmentId(): number {
    return this.fragIdent;
  }
}

/** The fixed IPv6 header as plain data. */
export interface Ipv6Repr {
  /** 16 octets. */
  src: Uint8Array;
  /** 16 octets. */
  dst: Uint8Array;
  /** Next header of the fixed header. */
  nextHeader: number;
  /** Payload Length: everything after the fixed header. */
  payloadLen: number;
  hopLimit: number;
  /** Default 0. */
  trafficClass?: number;
  /** Default 0. */
  flowLabel?: number;
}

const scratch = new Ipv6Packet();

/** Parses the fixed header of the IPv6 packet at bytes[off, off + len) (the extension chain is checked too). */
export function parseIpv6(bytes: Uint8Array, off: number, len: number): Ipv6Repr | WireError {
  const err = scratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  return {
    src: bytes.slice(off + SRC, off + SRC + IPV6_ADDRESS_BYTES),
    dst: bytes.slice(off + DST, off + DST + IPV6_ADDRESS_BYTES),
    nextHeader: scratch.nextHeader,
    payloadLen: scratch.payloadLength,
    hopLimit: scratch.hopLimit,
    trafficClass: scratch.trafficClass,
    flowLabel: scratch.flowLabel,
  };
}

/** Octets emitIpv6 writes: 40. */
export function ipv6BufferLen(_repr: Ipv6Repr): number {
  return IPV6_HEADER_BYTES;
}

/** Writes the fixed header at bytes[off]; returns 40. */
export function emitIpv6(repr: Ipv6Repr, bytes: Uint8Array, off: number): number {
  const tc = repr.trafficClass ?? 0;
  const fl = repr.flowLabel ?? 0;
  bytes[off] = 0x60 | ((tc >>> 4) & 0x0f);
  bytes[off + 1] = ((tc & 0x0f) << 4) | ((fl >>> 16) & 0x0f);
  bytes[off + 2] = fl >>> 8;
  bytes[off + 3] = fl;
  bytes[off + 4] = repr.payloadLen >>> 8;
  bytes[off + 5] = repr.payloadLen;
  bytes[off + 6] = repr.nextHeader;
  bytes[off + 7] = repr.hopLimit;
  for (let i = 0; i < IPV6_ADDRESS_BYTES; i++) {
    bytes[off + SRC + i] = repr.src[i]!;
    bytes[off + DST + i] = repr.dst[i]!;
  }
  return IPV6_HEADER_BYTES;
}

/** The fragment header (RFC 8200 §4.5) as plain data. */
export interface Ipv6FragmentRepr {
  nextHeader: number;
  /** Offset of the fragment data in octets, a multiple of 8. */
  fragmentOffsetBytes: number;
  moreFragments: boolean;
  /** 32-bit identification. */
  identification: number;
}

/** Parses the 8-octet fragment header at bytes[off, off + len). */
export function parseIpv6Fragment(bytes: Uint8Array, off: number, len: number): Ipv6FragmentRepr | WireError {
  if (len < IPV6_FRAGMENT_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
  const field = u16(bytes, off + 2);
  return {
    nextHeader: bytes[off]!,
    fragmentOffsetBytes: field & 0xfff8,
    moreFragments: (field & 1) !== 0,
    identification: ((bytes[off + 4]! << 24) | (bytes[off + 5]! << 16) | (bytes[off + 6]! << 8) | bytes[off + 7]!) >>> 0,
  };
}

/** Octets emitIpv6Fragment writes: 8. */
export function ipv6FragmentBufferLen(_repr: Ipv6FragmentRepr): number {
  return IPV6_FRAGMENT_HEADER_BYTES;
}

/** Writes the fragment header at bytes[off] (reserved fields zero); returns 8. */
export function emitIpv6Fragment(repr: Ipv6FragmentRepr, bytes: Uint8Array, off: number): number {
  const field = (repr.fragmentOffsetBytes & 0xfff8) | (repr.moreFragments ? 1 : 0);
  const id = repr.identification;
  bytes[off] = repr.nextHeader;
  bytes[off + 1] = 0;
  bytes[off + 2] = field >>> 8;
  bytes[off + 3] = field;
  bytes[off + 4] = id >>> 24;
  bytes[off + 5] = id >>> 16;
  bytes[off + 6] = id >>> 8;
  bytes[off + 7] = id;
  return IPV6_FRAGMENT_HEADER_BYTES;
}

/**
 * RFC 5952 text of the 16 octets at bytes[off]: lowercase, no leading zeros, the
 * longest run (≥ 2) of zero groups as "::" (the first on a tie), and
 * "::ffff:a.b.c.d" for IPv4-mapped addresses (§5).
 */
export function formatIpv6(bytes: Uint8Array, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(u16(bytes, off + 2 * i));
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${bytes[off + 12]}.${bytes[off + 13]}.${bytes[off + 14]}.${bytes[off + 15]}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hexOf = (from: number, to: number) => g.slice(from, to).map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hexOf(0, 8);
  return `${hexOf(0, bestStart)}::${hexOf(bestStart + bestLen, 8)}`;
}

/**
 * The 16 octets of an IPv6 address in text ("2001:db8::1", "::ffff:192.0.2.1";
 * RFC 4291 §2.2), or null if `text` is not one. Zone ids ("%eth0") are not accepted.
 */
export function parseIpv6Address(text: string): Uint8Array | null {
  const groups: number[] = [];
  let tail = text;
  const v4 = /(^|:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let v4Groups: number[] = [];
  if (v4) {
    const parts = v4[2]!.split('.');
    if (parts.some((p) => !/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255)) return null;
    const n = parts.map(Number);
    v4Groups = [(n[0]! << 8) | n[1]!, (n[2]! << 8) | n[3]!];
    tail = text.slice(0, text.length - v4[2]!.length);
    if (tail.endsWith(':') && !tail.endsWith('::')) tail = tail.slice(0, -1);
  }
  const halves = tail.split('::');
  if (halves.length > 2) return null;
  const parse = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const p of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
      out.push(parseInt(p, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !rest) return null;
  const explicit = head.length + rest.length + v4Groups.length;
  if (halves.length === 2) {
    if (explicit > 7) return null;
    groups.push(...head, ...new Array<number>(8 - explicit).fill(0), ...rest, ...v4Groups);
  } else {
    if (explicit !== 8) return null;
    groups.push(...head, ...v4Groups);
  }
  const out = new Uint8Array(IPV6_ADDRESS_BYTES);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i]! >>> 8;
    out[2 * i + 1] = groups[i]! & 0xff;
  }
  return out;
}
