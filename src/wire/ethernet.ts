/**
 * Ethernet II frames (IEEE 802.3 §3.2.6) with 802.1Q customer tags and 802.1ad
 * service tags (IEEE 802.1Q §9.6): a reusable view, a Repr, and the in-place tag
 * insert/strip the pipeline uses (guest tags are dropped; the label's tag is
 * inserted on send and stripped on delivery). No FCS: frames are as TAP and
 * pcap carry them.
 */
import {
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
  ETH_HEADER_BYTES,
  MAC_BYTES,
  VLAN_TAG_BYTES,
} from './constants.js';
import { WireError } from './errors.js';

/** Offsets inside the frame (IEEE 802.3 §3.1.1, 802.1Q §9.3). */
const DST = 0;
const SRC = 6;
const TYPE = 12;
/** The two MAC addresses move when a tag is inserted or stripped. */
const MACS_BYTES = 2 * MAC_BYTES;
/** Most tags the view walks: a service tag and a customer tag. */
export const ETH_MAX_TAGS = 2;

/** What kind of tagging a frame carries. */
export const EthTag = Object.freeze({
  /** No tag: the EtherType follows the source MAC. */
  none: 0,
  /** Exactly one 802.1Q customer tag (TPID 0x8100). */
  dot1q: 1,
  /** An 802.1ad service tag (TPID 0x88a8) with or without a customer tag, or stacked 0x8100 tags (QinQ). */
  qinq: 2,
});
/** One of the EthTag values. */
export type EthTag = (typeof EthTag)[keyof typeof EthTag];

/** True for the TPIDs the view walks: 0x8100 and 0x88a8. */
export function isVlanTpid(etherType: number): boolean {
  return etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ;
}

/** Tag control information from its fields (IEEE 802.1Q §9.6): PCP (3 bits), DEI (1 bit), VID (12 bits). */
export function vlanTci(vid: number, pcp = 0, dei = false): number {
  return ((pcp & 7) << 13) | (dei ? 0x1000 : 0) | (vid & 0xfff);
}

/**
 * A view over one Ethernet frame. `bind` walks up to two tags; afterwards every
 * accessor reads only octets `bind` checked. Offsets are absolute indices into `bytes`.
 */
export class EthernetFrame {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  private kind: EthTag = EthTag.none;
  private tags = 0;
  private tpid0 = 0;
  private tci0 = 0;
  private tpid1 = 0;
  private tci1 = 0;
  private type = 0;

  /** Binds to bytes[off, off + len): 0, or WireError.truncated if the header (with its tags) does not fit. */
  bind(bytes: Uint8Array, off: number, len: number): number {
    if (len < ETH_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    let at = off + TYPE;
    let type = (bytes[at]! << 8) | bytes[at + 1]!;
    let tags = 0;
    let tpid0 = 0;
    let tci0 = 0;
    let tpid1 = 0;
    let tci1 = 0;
    while (tags < ETH_MAX_TAGS && isVlanTpid(type)) {
      if (at + VLAN_TAG_BYTES + 2 > off + len) return WireError.truncated;
      const tci = (bytes[at + 2]! << 8) | bytes[at + 3]!;
      if (tags === 0) {
        tpid0 = type;
        tci0 = tci;
      } else {
        tpid1 = type;
        tci1 = tci;
      }
      tags++;
      at += VLAN_TAG_BYTES;
      type = (bytes[at]! << 8) | bytes[at + 1]!;
    }
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    this.tpid0 = tpid0;
    this.tci0 = tci0;
    this.tpid1 = tpid1;
    this.tci1 = tci1;
    this.tags = tags;
    this.type = type;
    this.kind = tags === 0 ? EthTag.none : tags === 1 && tpid0 === ETHERTYPE_VLAN ? EthTag.dot1q : EthTag.qinq;
    return 0;
  }

  /** Absolute offset of the destination MAC. */
  get dstOffset(): number {
    return this.off + DST;
  }
  /** Absolute offset of the source MAC. */
  get srcOffset(): number {
    return this.off + SRC;
  }
  /** EthTag.none, .dot1q or .qinq. */
  get tagKind(): EthTag {
    return this.kind;
  }
  /** True if the frame carries any tag (the pipeline drops tagged guest frames). */
  get tagged(): boolean {
    return this.tags !== 0;
  }
  /** Number of tags walked (0–2); a third stacked tag shows up as `etherType` 0x8100/0x88a8. */
  get tagCount(): number {
    return this.tags;
  }
  /** TPID of the outer tag, 0 if untagged. */
  get outerTpid(): number {
    return this.tpid0;
  }
  /** TCI of the outer tag, 0 if untagged. */
  get outerTci(): number {
    return this.tci0;
  }
  /** VLAN id of the outer tag (0 if untagged). */
  get vid(): number {
    return this.tci0 & 0xfff;
  }
  /** Priority code point of the outer tag. */
  get pcp(): number {
    return this.tci0 >>> 13;
  }
  /** Drop eligible indicator of the outer tag. */
  get dei(): boolean {
    return (this.tci0 & 0x1000) !== 0;
  }
  /** TPID of the second tag, 0 if fewer than two. */
  get innerTpid(): number {
    return this.tpid1;
  }
  /** TCI of the second tag, 0 if fewer than two. */
  get innerTci(): number {
    return this.tci1;
  }
  /** VLAN id of the second tag (0 if fewer than two). */
  get innerVid(): number {
    return this.tci1 & 0xfff;
  }
  /** EtherType after the tags (unknown values are kept as they are). */
  get etherType(): number {
    return this.type;
  }
  /** Header length: 14 + 4 per tag. */
  get headerLen(): number {
    return ETH_HEADER_BYTES + this.tags * VLAN_TAG_BYTES;
  }
  /** Absolute offset of the payload. */
  get payloadOffset(): number {
    return this.off + this.headerLen;
  }
  /** Payload length (everything after the header; no FCS is assumed). */
  get payloadLen(): number {
    return this.len - this.headerLen;
  }
}

/** One tag of a Repr. */
export interface EthernetTagRepr {
  /** 0x8100 (customer) or 0x88a8 (service). */
  tpid: number;
  vid: number;
  pcp: number;
  dei: boolean;
}

/** An Ethernet header as plain data. */
export interface EthernetRepr {
  /** 6 octets. */
  dst: Uint8Array;
  /** 6 octets. */
  src: Uint8Array;
  /** Outer tag first; empty when untagged. */
  tags: EthernetTagRepr[];
  etherType: number;
}

const scratch = new EthernetFrame();

/** Parses the header of the frame at bytes[off, off + len) (control path; copies the MACs). */
export function parseEthernet(bytes: Uint8Array, off: number, len: number): EthernetRepr | WireError {
  const err = scratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  const tags: EthernetTagRepr[] = [];
  const tciOf = [scratch.outerTci, scratch.innerTci];
  const tpidOf = [scratch.outerTpid, scratch.innerTpid];
  for (let i = 0; i < scratch.tagCount; i++) {
    const tci = tciOf[i]!;
    tags.push({ tpid: tpidOf[i]!, vid: tci & 0xfff, pcp: tci >>> 13, dei: (tci & 0x1000) !== 0 });
  }
  return {
    dst: bytes.slice(off + DST, off + DST + MAC_BYTES),
    src: bytes.slice(off + SRC, off + SRC + MAC_BYTES),
    tags,
    etherType: scratch.etherType,
  };
}

/** Octets emitEthernet writes: 14 + 4 per tag. */
export function ethernetBufferLen(repr: EthernetRepr): number {
  return ETH_HEADER_BYTES + repr.tags.length * VLAN_TAG_BYTES;
}

/** Writes the header at bytes[off] and returns its length; the caller provides ethernetBufferLen octets. */
export function emitEthernet(repr: EthernetRepr, bytes: Uint8Array, off: number): number {
  for (let i = 0; i < MAC_BYTES; i++) {
    bytes[off + DST + i] = repr.dst[i]!;
    bytes[off + SRC + i] = repr.src[i]!;
  }
  let at = off + TYPE;
  for (const t of repr.tags) {
    const tci = vlanTci(t.vid, t.pcp, t.dei);
    bytes[at] = t.tpid >>> 8;
    bytes[at + 1] = t.tpid;
    bytes[at + 2] = tci >>> 8;
    bytes[at + 3] = tci;
    at += VLAN_TAG_BYTES;
  }
  bytes[at] = repr.etherType >>> 8;
  bytes[at + 1] = repr.etherType;
  return at + 2 - off;
}

/**
 * Inserts an 802.1Q tag (TPID 0x8100) in place: moves the 12 MAC octets of the frame
 * at `frameStart` 4 octets back into the headroom and writes the tag behind them
 * (IEEE 802.1Q §9.3). Returns the new frame start, or -1 if there is no headroom
 * or no 14-octet header at `frameStart`.
 */
export function insertVlanTag(bytes: Uint8Array, frameStart: number, vid: number, pcp = 0, dei = false): number {
  const start = frameStart - VLAN_TAG_BYTES;
  if (start < 0 || frameStart + ETH_HEADER_BYTES > bytes.length) return -1;
  for (let i = 0; i < MACS_BYTES; i++) bytes[start + i] = bytes[frameStart + i]!; // ascending: dst < src
  const tci = vlanTci(vid, pcp, dei);
  bytes[start + TYPE] = ETHERTYPE_VLAN >>> 8;
  bytes[start + TYPE + 1] = ETHERTYPE_VLAN & 0xff;
  bytes[start + TYPE + 2] = tci >>> 8;
  bytes[start + TYPE + 3] = tci;
  return start;
}

/**
 * Strips the outer tag (TPID 0x8100 or 0x88a8) in place: moves the 12 MAC octets 4
 * octets forward over it. Returns the new frame start, or -1 if the frame at
 * `frameStart` has no tag or is too short to hold one.
 */
export function stripVlanTag(bytes: Uint8Array, frameStart: number): number {
  if (frameStart < 0 || frameStart + ETH_HEADER_BYTES + VLAN_TAG_BYTES > bytes.length) return -1;
  if (!isVlanTpid((bytes[frameStart + TYPE]! << 8) | bytes[frameStart + TYPE + 1]!)) return -1;
  const start = frameStart + VLAN_TAG_BYTES;
  for (let i = MACS_BYTES - 1; i >= 0; i--) bytes[start + i] = bytes[frameStart + i]!; // descending: dst > src
  return start;
}
