/**
 * pcap and pcapng capture files: a checked reader for both formats and a pcap writer.
 *
 * Our own module, not an npm library (pcap-parser, pcap-ng-parser, …): zero dependencies,
 * bounded memory (a record is a view into the caller's bytes and a streaming caller holds at
 * most one record or block), and every error has a stable code and the exact byte offset
 * of the field at fault.
 *
 * Formats: classic pcap as in draft-ietf-opsawg-pcap (§4 file header, §5 packet record);
 * pcapng as in draft-ietf-opsawg-pcapng (§3.1 block structure, §3.5 options, §4.1 SHB,
 * §4.2 IDB with if_tsresol/if_tsoffset, §4.3 EPB, §4.4 SPB).
 *
 * Stages of the decoder, one item per step:
 *  1. File start: the first four octets choose classic pcap (magic: byte order and
 *     µs/ns resolution) or pcapng (a Section Header Block).
 *  2. Classic: 16-octet record header → length bounds → record (a view, no copy).
 *  3. pcapng: block type and length → length bounds → SHB (new section, its own byte
 *     order, empty interface table), IDB (link type, snaplen, timestamp resolution),
 *     EPB/SPB (record, a view), any other block skipped by its length.
 *
 * Nothing here throws on bad input: the decoder returns a PcapError (code + offset) and
 * stays in that error. Only the emitters throw, RangeError, for arguments a caller got wrong.
 */

// ---------------------------------------------------------------------------
// Constants (spec values, then our bounds)

/** Classic pcap magic, microsecond timestamps (draft-ietf-opsawg-pcap §4). */
export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
/** Classic pcap magic, nanosecond timestamps. */
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;
/** Classic pcap file header: magic, version, reserved ×2, snaplen, link type. */
export const PCAP_GLOBAL_HEADER_BYTES = 24;
/** Classic pcap record header: ts seconds, ts fraction, captured length, original length. */
export const PCAP_RECORD_HEADER_BYTES = 16;
/** Version written and required (major): 2.4. */
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;

/** pcapng Section Header Block type; a palindrome, so it reads the same in both byte orders (§4.1). */
export const PCAPNG_SHB_TYPE = 0x0a0d0d0a;
/** pcapng byte-order magic inside the SHB. */
export const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
export const PCAPNG_IDB_TYPE = 0x00000001;
export const PCAPNG_SPB_TYPE = 0x00000003;
export const PCAPNG_EPB_TYPE = 0x00000006;
/** Smallest block: type, length, trailing length (§3.1). */
export const PCAPNG_MIN_BLOCK_BYTES = 12;
/** SHB without options: 12 + byte-order magic 4 + version 4 + section length 8. */
const SHB_MIN_BYTES = 28;
/** IDB without options: 12 + link type 2 + reserved 2 + snaplen 4. */
const IDB_MIN_BYTES = 20;
/** EPB without data: 12 + interface 4 + timestamp 8 + captured length 4 + original length 4. */
const EPB_MIN_BYTES = 32;
/** SPB without data: 12 + original length 4. */
const SPB_MIN_BYTES = 16;
const OPT_ENDOFOPT = 0;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;

/** Ethernet II frames (LINKTYPE_ETHERNET). */
export const LINKTYPE_ETHERNET = 1;
/** Raw IP, version from the first nibble (LINKTYPE_RAW). */
export const LINKTYPE_RAW = 101;
/** Linux "cooked" capture v1, 16-octet pseudo-header (LINKTYPE_LINUX_SLL). */
export const LINKTYPE_LINUX_SLL = 113;
/** Raw IPv4 (LINKTYPE_IPV4). */
export const LINKTYPE_IPV4 = 228;
/** Raw IPv6 (LINKTYPE_IPV6). */
export const LINKTYPE_IPV6 = 229;
/** Link types the reader accepts; any other is PCAP_UNKNOWN_LINKTYPE. */
export const SUPPORTED_LINKTYPES: ReadonlySet<number> = new Set([
  LINKTYPE_ETHERNET,
  LINKTYPE_RAW,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_IPV4,
  LINKTYPE_IPV6,
]);
/** Link types the writer emits: Ethernet frames and raw IP packets. */
export type WritableLinkType = typeof LINKTYPE_ETHERNET | typeof LINKTYPE_RAW;

/** Largest captured length accepted (libpcap's MAXIMUM_SNAPLEN); larger is PCAP_ABSURD_LENGTH. */
export const PCAP_MAX_CAPLEN_BYTES = 262144;
/**
 * A record may exceed the file's or interface's snaplen by this much before it is absurd:
 * some writers store a snaplen a little below what they capture (libpcap tolerates it too).
 */
export const PCAP_SNAPLEN_SLACK_BYTES = 256;
/** Largest pcapng block accepted (Wireshark's limit); also the most a streaming reader buffers. */
export const PCAPNG_MAX_BLOCK_BYTES = 16 * 1024 * 1024;
/** Most interfaces one pcapng section may declare (bounds the interface table). */
export const PCAPNG_MAX_INTERFACES = 65536;

// ---------------------------------------------------------------------------
// Results

/** Stable error codes of the capture reader. */
export type PcapErrorCode =
  | 'PCAP_TRUNCATED'
  | 'PCAP_BAD_MAGIC'
  | 'PCAP_BAD_VERSION'
  | 'PCAP_ABSURD_LENGTH'
  | 'PCAP_UNKNOWN_LINKTYPE'
  | 'PCAP_BAD_BLOCK';

/** A malformed capture file: `code` is stable, `offset` is the byte offset of the field at fault. */
export class PcapError extends Error {
  constructor(
    readonly code: PcapErrorCode,
    readonly offset: number,
    /** What is wrong, without the offset: "truncated record header". */
    readonly detail: string,
  ) {
    super(`${detail} at byte offset ${offset}`);
    this.name = 'PcapError';
  }
}

export type CaptureFormat = 'pcap' | 'pcapng';

/** One captured packet. */
export interface PcapRecord {
  /** LINKTYPE_* of the packet's interface. */
  linkType: number;
  /** pcapng interface index within its section; 0 in classic pcap. */
  interfaceId: number;
  /** Seconds since the epoch (after if_tsoffset); 0 for an SPB, which has no timestamp. */
  tsSec: number;
  /** Nanoseconds within the second, 0..999_999_999. */
  tsNsec: number;
  /** Length of the packet on the wire; data.length may be less (snaplen). */
  origLen: number;
  /** The captured bytes: a view into the parsed buffer, not a copy. */
  data: Uint8Array;
  /** Byte offset of the record header (classic) or block (pcapng) in the file. */
  offset: number;
}

/** The record's timestamp in nanoseconds since the epoch. */
export function recordTimeNs(r: PcapRecord): bigint {
  return BigInt(r.tsSec) * 1_000_000_000n + BigInt(r.tsNsec);
}

/** One decoder step: a record, a non-packet item consumed, more bytes needed, the end, or an error. */
export type DecodeStep =
  | { kind: 'record'; record: PcapRecord; next: number }
  | { kind: 'skip'; next: number }
  | { kind: 'more'; need: number }
  | { kind: 'end' }
  | { kind: 'error'; error: PcapError };

interface Iface {
  linkType: number;
  snaplen: number;
  /** Timestamp units per second (if_tsresol; default 10^6). */
  unitsPerSec: bigint;
  /** if_tsoffset: seconds added to every timestamp. */
  offsetSec: number;
}

const END: DecodeStep = { kind: 'end' };
const U32 = 0x1_0000_0000;

/** Caplen bound for an interface: the hard maximum, and snaplen + slack when a snaplen is given. */
function caplenLimit(snaplen: number): number {
  return snaplen === 0 ? PCAP_MAX_CAPLEN_BYTES : Math.min(PCAP_MAX_CAPLEN_BYTES, snaplen + PCAP_SNAPLEN_SLACK_BYTES);
}

function fail(code: PcapErrorCode, offset: number, detail: string): DecodeStep {
  return { kind: 'error', error: new PcapError(code, offset, detail) };
}

// ---------------------------------------------------------------------------
// Decoder

/**
 * Incremental decoder of one capture file. Call `step(bytes, pos, final, base)` with the
 * unconsumed bytes starting at file offset `base + pos`; it decodes one item (header,
 * record or block) and says where the next one starts. With `final` false it asks for
 * more bytes (`need`, counted from pos) instead of reporting truncation, so a streaming
 * reader can refill its window. After an error every step returns that error.
 */
export class CaptureDecoder {
  /** Detected format; null until the first item has been decoded. */
  format: CaptureFormat | null = null;
  private error: PcapError | null = null;
  private le = true;
  private nanos = false;
  private linkType = 0;
  private snaplen = 0;
  private ifaces: Iface[] = [];
  private dvBytes: Uint8Array | null = null;
  private dv: DataView | null = null;

  /** Decodes the item at bytes[pos..]; `base` is the file offset of bytes[0]. */
  step(bytes: Uint8Array, pos: number, final: boolean, base = 0): DecodeStep {
    if (this.error) return { kind: 'error', error: this.error };
    const s = this.decode(bytes, pos, final, base);
    if (s.kind === 'error') this.error = s.error;
    return s;
  }

  private view(bytes: Uint8Array): DataView {
    if (this.dvBytes !== bytes || this.dv === null) {
      this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.dvBytes = bytes;
    }
    return this.dv;
  }

  private decode(bytes: Uint8Array, pos: number, final: boolean, base: number): DecodeStep {
    const avail = bytes.length - pos;
    if (this.format === null) return this.decodeStart(bytes, pos, avail, final, base);
    if (avail === 0) return final ? END : { kind: 'more', need: 1 };
    return this.format === 'pcap'
      ? this.decodeRecord(bytes, pos, avail, final, base)
      : this.decodeBlock(bytes, pos, avail, final, base);
  }

  /** File start: classic magic (§4) or a pcapng SHB (§4.1). */
  private decodeStart(bytes: Uint8Array, pos: number, avail: number, final: boolean, base: number): DecodeStep {
    if (avail < 4) {
      if (!final) return { kind: 'more', need: 4 };
      return fail('PCAP_TRUNCATED', base + pos, avail === 0 ? 'empty file, no capture header' : 'truncated file header');
    }
    const dv = this.view(bytes);
    const magicBe = dv.getUint32(pos, false);
    if (magicBe === PCAPNG_SHB_TYPE) {
      this.format = 'pcapng';
      return this.decodeBlock(bytes, pos, avail, final, base);
    }
    const magicLe = dv.getUint32(pos, true);
    let le: boolean;
    if (magicLe === PCAP_MAGIC_USEC || magicLe === PCAP_MAGIC_NSEC) le = true;
    else if (magicBe === PCAP_MAGIC_USEC || magicBe === PCAP_MAGIC_NSEC) le = false;
    else {
      return fail('PCAP_BAD_MAGIC', base + pos, `not a pcap or pcapng file: magic 0x${hex32(magicBe)}`);
    }
    if (avail < PCAP_GLOBAL_HEADER_BYTES) {
      if (!final) return { kind: 'more', need: PCAP_GLOBAL_HEADER_BYTES };
      return fail('PCAP_TRUNCATED', base + pos, 'truncated global header');
    }
    const magic = le ? magicLe : magicBe;
    const major = dv.getUint16(pos + 4, le);
    if (major !== PCAP_VERSION_MAJOR) {
      return fail('PCAP_BAD_VERSION', base + pos + 4, `unsupported pcap version ${major}.${dv.getUint16(pos + 6, le)}`);
    }
    // §4: link type in the low 16 bits; bits 16–25 are reserved and the top four say an FCS
    // of some length ends every frame. We read neither, so any of those bits makes it unknown.
    const linkField = dv.getUint32(pos + 20, le);
    const linkType = linkField & 0xffff;
    if (linkField !== linkType) {
      return fail(
        'PCAP_UNKNOWN_LINKTYPE',
        base + pos + 20,
        `unknown link type ${linkType} with FCS/reserved bits 0x${hex32(linkField - linkType)}`,
      );
    }
    if (!SUPPORTED_LINKTYPES.has(linkType)) {
      return fail('PCAP_UNKNOWN_LINKTYPE', base + pos + 20, `unknown link type ${linkType}`);
    }
    this.format = 'pcap';
    this.le = le;
    this.nanos = magic === PCAP_MAGIC_NSEC;
    this.snaplen = dv.getUint32(pos + 16, le);
    this.linkType = linkType;
    return { kind: 'skip', next: pos + PCAP_GLOBAL_HEADER_BYTES };
  }

  /** Classic packet record (§5). */
  private decodeRecord(bytes: Uint8Array, pos: number, avail: number, final: boolean, base: number): DecodeStep {
    if (avail < PCAP_RECORD_HEADER_BYTES) {
      if (!final) return { kind: 'more', need: PCAP_RECORD_HEADER_BYTES };
      return fail('PCAP_TRUNCATED', base + pos, 'truncated record header');
    }
    const dv = this.view(bytes);
    const le = this.le;
    const caplen = dv.getUint32(pos + 8, le);
    const limit = caplenLimit(this.snaplen);
    if (caplen > limit) {
      return fail(
        'PCAP_ABSURD_LENGTH',
        base + pos + 8,
        `absurd captured length ${caplen} (limit ${limit}: snaplen ${this.snaplen})`,
      );
    }
    const total = PCAP_RECORD_HEADER_BYTES + caplen;
    if (avail < total) {
      if (!final) return { kind: 'more', need: total };
      return fail(
        'PCAP_TRUNCATED',
        base + pos + PCAP_RECORD_HEADER_BYTES,
        `truncated record body (${avail - PCAP_RECORD_HEADER_BYTES} of ${caplen} bytes)`,
      );
    }
    const unitsPerSec = this.nanos ? 1_000_000_000 : 1_000_000;
    const frac = dv.getUint32(pos + 4, le);
    // A fraction ≥ 1 s (a writer bug) carries into the seconds instead of breaking tsNsec's range.
    const tsSec = dv.getUint32(pos, le) + Math.floor(frac / unitsPerSec);
    const tsNsec = (frac % unitsPerSec) * (this.nanos ? 1 : 1000);
    const start = pos + PCAP_RECORD_HEADER_BYTES;
    return {
      kind: 'record',
      record: {
        linkType: this.linkType,
        interfaceId: 0,
        tsSec,
        tsNsec,
        origLen: dv.getUint32(pos + 12, le),
        data: bytes.subarray(start, start + caplen),
        offset: base + pos,
      },
      next: pos + total,
    };
  }

  /** One pcapng block (§3.1): checked length, then dispatch by type. */
  private decodeBlock(bytes: Uint8Array, pos: number, avail: number, final: boolean, base: number): DecodeStep {
    const dv = this.view(bytes);
    if (avail < 8) {
      if (!final) return { kind: 'more', need: 8 };
      return fail('PCAP_TRUNCATED', base + pos, 'truncated block header');
    }
    // The first block is an SHB (decodeStart chose pcapng because of it).
    const isShb = dv.getUint32(pos, false) === PCAPNG_SHB_TYPE;
    let le = this.le;
    if (isShb) {
      // The SHB's own length is in the byte order its magic announces (§4.1).
      if (avail < 12) {
        if (!final) return { kind: 'more', need: 12 };
        return fail('PCAP_TRUNCATED', base + pos, 'truncated block header');
      }
      const bom = dv.getUint32(pos + 8, true);
      if (bom === PCAPNG_BYTE_ORDER_MAGIC) le = true;
      else if (dv.getUint32(pos + 8, false) === PCAPNG_BYTE_ORDER_MAGIC) le = false;
      else return fail('PCAP_BAD_MAGIC', base + pos + 8, `bad pcapng byte-order magic 0x${hex32(dv.getUint32(pos + 8, false))}`);
    }
    const type = dv.getUint32(pos, le);
    const len = dv.getUint32(pos + 4, le);
    if (len < PCAPNG_MIN_BLOCK_BYTES || len % 4 !== 0 || len > PCAPNG_MAX_BLOCK_BYTES) {
      return fail(
        'PCAP_ABSURD_LENGTH',
        base + pos + 4,
        `absurd block length ${len} of block type 0x${hex32(type)} (must be a multiple of 4 in ${PCAPNG_MIN_BLOCK_BYTES}..${PCAPNG_MAX_BLOCK_BYTES})`,
      );
    }
    if (avail < len) {
      if (!final) return { kind: 'more', need: len };
      return fail('PCAP_TRUNCATED', base + pos + 8, `truncated block body (${avail - 8} of ${len - 8} bytes)`);
    }
    const trailer = dv.getUint32(pos + len - 4, le);
    if (trailer !== len) {
      return fail('PCAP_BAD_BLOCK', base + pos + len - 4, `block length mismatch: header says ${len}, trailer says ${trailer}`);
    }
    const next = pos + len;
    switch (type) {
      case PCAPNG_SHB_TYPE:
        return this.decodeShb(dv, pos, len, le, base, next);
      case PCAPNG_IDB_TYPE:
        return this.decodeIdb(dv, pos, len, base, next);
      case PCAPNG_EPB_TYPE:
        return this.decodeEpb(bytes, dv, pos, len, base, next);
      case PCAPNG_SPB_TYPE:
        return this.decodeSpb(bytes, dv, pos, len, base, next);
      default:
        // NRB, ISB, DSB, custom and obsolete blocks carry no packet we use (§3.1: skip by length).
        return { kind: 'skip', next };
    }
  }

  /** Section Header Block (§4.1): a new section, its byte order, an empty interface table. */
  private decodeShb(dv: DataView, pos: number, len: number, le: boolean, base: number, next: number): DecodeStep {
    if (len < SHB_MIN_BYTES) {
      return fail('PCAP_BAD_BLOCK', base + pos + 4, `section header block of ${len} bytes, shorter than ${SHB_MIN_BYTES}`);
    }
    const major = dv.getUint16(pos + 12, le);
    if (major !== 1) {
      return fail('PCAP_BAD_VERSION', base + pos + 12, `unsupported pcapng version ${major}.${dv.getUint16(pos + 14, le)}`);
    }
    this.le = le;
    this.ifaces = [];
    return { kind: 'skip', next };
  }

  /** Interface Description Block (§4.2): link type, snaplen, if_tsresol, if_tsoffset. */
  private decodeIdb(dv: DataView, pos: number, len: number, base: number, next: number): DecodeStep {
    const le = this.le;
    if (len < IDB_MIN_BYTES) {
      return fail('PCAP_BAD_BLOCK', base + pos + 4, `interface description block of ${len} bytes, shorter than ${IDB_MIN_BYTES}`);
    }
    if (this.ifaces.length >= PCAPNG_MAX_INTERFACES) {
      return fail('PCAP_ABSURD_LENGTH', base + pos, `more than ${PCAPNG_MAX_INTERFACES} interfaces in one section`);
    }
    const linkType = dv.getUint16(pos + 8, le);
    if (!SUPPORTED_LINKTYPES.has(linkType)) {
      return fail('PCAP_UNKNOWN_LINKTYPE', base + pos + 8, `unknown link type ${linkType}`);
    }
    const iface: Iface = { linkType, snaplen: dv.getUint32(pos + 12, le), unitsPerSec: 1_000_000n, offsetSec: 0 };
    // Options (§3.5): code 2, length 2, value padded to 4; opt_endofopt or the block end stops.
    const end = pos + len - 4;
    let at = pos + 16;
    while (at + 4 <= end) {
      const code = dv.getUint16(at, le);
      const optLen = dv.getUint16(at + 2, le);
      if (code === OPT_ENDOFOPT) break;
      const valueAt = at + 4;
      if (valueAt + optLen > end) {
        return fail('PCAP_BAD_BLOCK', base + at + 2, `option ${code} of length ${optLen} overruns its block`);
      }
      if (code === OPT_IF_TSRESOL && optLen >= 1) {
        const v = dv.getUint8(valueAt);
        // High bit clear: 10^-v seconds; set: 2^-(v & 0x7f) seconds.
        iface.unitsPerSec = v & 0x80 ? 1n << BigInt(v & 0x7f) : 10n ** BigInt(v);
      } else if (code === OPT_IF_TSOFFSET && optLen >= 8) {
        iface.offsetSec = Number(dv.getBigInt64(valueAt, le));
      }
      at = valueAt + ((optLen + 3) & ~3);
    }
    this.ifaces.push(iface);
    return { kind: 'skip', next };
  }

  /** Enhanced Packet Block (§4.3). */
  private decodeEpb(bytes: Uint8Array, dv: DataView, pos: number, len: number, base: number, next: number): DecodeStep {
    const le = this.le;
    if (len < EPB_MIN_BYTES) {
      return fail('PCAP_BAD_BLOCK', base + pos + 4, `enhanced packet block of ${len} bytes, shorter than ${EPB_MIN_BYTES}`);
    }
    const ifId = dv.getUint32(pos + 8, le);
    const iface = this.ifaces[ifId];
    if (iface === undefined) {
      return fail('PCAP_BAD_BLOCK', base + pos + 8, `packet on interface ${ifId}, but the section declares ${this.ifaces.length}`);
    }
    const caplen = dv.getUint32(pos + 20, le);
    const limit = caplenLimit(iface.snaplen);
    if (caplen > limit) {
      return fail(
        'PCAP_ABSURD_LENGTH',
        base + pos + 20,
        `absurd captured length ${caplen} (limit ${limit}: snaplen ${iface.snaplen})`,
      );
    }
    if (caplen > len - EPB_MIN_BYTES) {
      return fail('PCAP_BAD_BLOCK', base + pos + 20, `captured length ${caplen} overruns its block of ${len} bytes`);
    }
    const units = (BigInt(dv.getUint32(pos + 12, le)) << 32n) | BigInt(dv.getUint32(pos + 16, le));
    const sec = units / iface.unitsPerSec;
    const nsec = ((units - sec * iface.unitsPerSec) * 1_000_000_000n) / iface.unitsPerSec;
    const start = pos + 28;
    return {
      kind: 'record',
      record: {
        linkType: iface.linkType,
        interfaceId: ifId,
        tsSec: Number(sec) + iface.offsetSec,
        tsNsec: Number(nsec),
        origLen: dv.getUint32(pos + 24, le),
        data: bytes.subarray(start, start + caplen),
        offset: base + pos,
      },
      next,
    };
  }

  /** Simple Packet Block (§4.4): interface 0, captured length = min(original length, its snaplen). */
  private decodeSpb(bytes: Uint8Array, dv: DataView, pos: number, len: number, base: number, next: number): DecodeStep {
    if (len < SPB_MIN_BYTES) {
      return fail('PCAP_BAD_BLOCK', base + pos + 4, `simple packet block of ${len} bytes, shorter than ${SPB_MIN_BYTES}`);
    }
    const iface = this.ifaces[0];
    if (iface === undefined) {
      return fail('PCAP_BAD_BLOCK', base + pos, 'simple packet block before any interface description block');
    }
    const origLen = dv.getUint32(pos + 8, this.le);
    const caplen = iface.snaplen === 0 ? origLen : Math.min(origLen, iface.snaplen);
    const limit = caplenLimit(iface.snaplen);
    if (caplen > limit) {
      return fail('PCAP_ABSURD_LENGTH', base + pos + 8, `absurd packet length ${caplen} (limit ${limit}: snaplen ${iface.snaplen})`);
    }
    if (caplen > len - SPB_MIN_BYTES) {
      return fail('PCAP_BAD_BLOCK', base + pos + 8, `packet length ${caplen} overruns its block of ${len} bytes`);
    }
    const start = pos + 12;
    return {
      kind: 'record',
      record: {
        linkType: iface.linkType,
        interfaceId: 0,
        tsSec: 0,
        tsNsec: 0,
        origLen,
        data: bytes.subarray(start, start + caplen),
        offset: base + pos,
      },
      next,
    };
  }
}

// ---------------------------------------------------------------------------
// Whole-buffer reading

/**
 * Iterates the records of a whole capture in memory, scanner-style: `next()` returns a
 * record or null; after null, `error` tells whether the input ended cleanly. Never throws.
 */
export class CaptureReader implements Iterable<PcapRecord> {
  /** Why reading stopped early; null after a clean end. */
  error: PcapError | null = null;
  private readonly decoder = new CaptureDecoder();
  private pos = 0;
  private done = false;

  /** @param bytes the whole file; records are views into it */
  constructor(private readonly bytes: Uint8Array) {}

  /** Detected format, once the header has been read. */
  get format(): CaptureFormat | null {
    return this.decoder.format;
  }

  /** The next record, or null at the end or on an error (then see `error`). */
  next(): PcapRecord | null {
    while (!this.done) {
      const s = this.decoder.step(this.bytes, this.pos, true, 0);
      switch (s.kind) {
        case 'record':
          this.pos = s.next;
          return s.record;
        case 'skip':
          this.pos = s.next;
          break;
        case 'error':
          this.error = s.error;
          this.done = true;
          break;
        default:
          // 'end' ('more' cannot happen with final = true).
          this.done = true;
      }
    }
    return null;
  }

  /** Yields records until the end or an error; check `error` afterwards. */
  *[Symbol.iterator](): Iterator<PcapRecord> {
    for (let r = this.next(); r !== null; r = this.next()) yield r;
  }
}

/** The result of parsing a whole capture: the records before any error, and the error. */
export interface CaptureParse {
  format: CaptureFormat | null;
  records: PcapRecord[];
  error: PcapError | null;
}

/** Parses a whole pcap or pcapng file held in memory; records are views into `bytes`. Never throws. */
export function parseCapture(bytes: Uint8Array): CaptureParse {
  const reader = new CaptureReader(bytes);
  const records = [...reader];
  return { format: reader.format, records, error: reader.error };
}

// ---------------------------------------------------------------------------
// Writing (classic pcap, little-endian, microseconds)

/** Snaplen written in the file header: the largest captured length the reader accepts. */
export const PCAP_WRITER_SNAPLEN_BYTES = PCAP_MAX_CAPLEN_BYTES;

function checkRoom(out: Uint8Array, at: number, n: number, what: string): void {
  if (!Number.isInteger(at) || at < 0 || at + n > out.length) {
    throw new RangeError(`${what}: needs ${n} bytes at offset ${at}, buffer has ${out.length}`);
  }
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= U32) throw new RangeError(`${name} must be an integer in 0..4294967295, got ${v}`);
}

/** Writes a pcap file header (§4) for `linkType` at out[at]; returns the offset after it. */
export function emitPcapGlobalHeader(out: Uint8Array, at: number, linkType: WritableLinkType): number {
  if (linkType !== LINKTYPE_ETHERNET && linkType !== LINKTYPE_RAW) {
    throw new RangeError(`emitPcapGlobalHeader: linkType must be 1 (Ethernet) or 101 (raw IP), got ${String(linkType)}`);
  }
  checkRoom(out, at, PCAP_GLOBAL_HEADER_BYTES, 'emitPcapGlobalHeader');
  const dv = new DataView(out.buffer, out.byteOffset + at, PCAP_GLOBAL_HEADER_BYTES);
  dv.setUint32(0, PCAP_MAGIC_USEC, true);
  dv.setUint16(4, PCAP_VERSION_MAJOR, true);
  dv.setUint16(6, PCAP_VERSION_MINOR, true);
  dv.setUint32(8, 0, true); // reserved (was thiszone)
  dv.setUint32(12, 0, true); // reserved (was sigfigs)
  dv.setUint32(16, PCAP_WRITER_SNAPLEN_BYTES, true);
  dv.setUint32(20, linkType, true);
  return at + PCAP_GLOBAL_HEADER_BYTES;
}

/** Bytes one record of `dataBytes` captured octets takes in a pcap file. */
export function pcapRecordBytes(dataBytes: number): number {
  return PCAP_RECORD_HEADER_BYTES + dataBytes;
}

/**
 * Writes one record (§5: header, then the bytes) at out[at]; returns the offset after it.
 * `origLen` defaults to data.length (nothing cut off).
 */
export function emitPcapRecord(
  out: Uint8Array,
  at: number,
  data: Uint8Array,
  tsSec: number,
  tsUsec: number,
  origLen: number = data.length,
): number {
  checkU32('tsSec', tsSec);
  if (!Number.isInteger(tsUsec) || tsUsec < 0 || tsUsec > 999_999) {
    throw new RangeError(`tsUsec must be an integer in 0..999999, got ${tsUsec}`);
  }
  if (data.length > PCAP_WRITER_SNAPLEN_BYTES) {
    throw new RangeError(`record data of ${data.length} bytes exceeds the snaplen ${PCAP_WRITER_SNAPLEN_BYTES}`);
  }
  checkU32('origLen', origLen);
  if (origLen < data.length) throw new RangeError(`origLen ${origLen} is less than the captured ${data.length} bytes`);
  checkRoom(out, at, pcapRecordBytes(data.length), 'emitPcapRecord');
  const dv = new DataView(out.buffer, out.byteOffset + at, PCAP_RECORD_HEADER_BYTES);
  dv.setUint32(0, tsSec, true);
  dv.setUint32(4, tsUsec, true);
  dv.setUint32(8, data.length, true);
  dv.setUint32(12, origLen, true);
  out.set(data, at + PCAP_RECORD_HEADER_BYTES);
  return at + pcapRecordBytes(data.length);
}

/** Splits a nanosecond timestamp into pcap's (seconds, microseconds), truncating below 1 µs. */
export function timeNsToPcapUsec(tsNs: bigint): { tsSec: number; tsUsec: number } {
  if (tsNs < 0n) throw new RangeError(`timestamp must not be negative, got ${tsNs} ns`);
  return { tsSec: Number(tsNs / 1_000_000_000n), tsUsec: Number((tsNs % 1_000_000_000n) / 1000n) };
}

/** A frame for encodePcap. */
export interface PcapFrame {
  data: Uint8Array;
  tsSec?: number;
  tsUsec?: number;
  origLen?: number;
}

/** A whole pcap file (header + records) in a new Uint8Array. */
export function encodePcap(linkType: WritableLinkType, frames: readonly PcapFrame[]): Uint8Array {
  let total = PCAP_GLOBAL_HEADER_BYTES;
  for (const f of frames) total += pcapRecordBytes(f.data.length);
  const out = new Uint8Array(total);
  let at = emitPcapGlobalHeader(out, 0, linkType);
  for (const f of frames) at = emitPcapRecord(out, at, f.data, f.tsSec ?? 0, f.tsUsec ?? 0, f.origLen ?? f.data.length);
  return out;
}

function hex32(v: number): string {
  return v.toString(16).padStart(8, '0');
}
