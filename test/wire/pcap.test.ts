// pcap and pcapng reading and pcap writing (src/wire/pcap.ts) over hand-built files:
// every field is written out in hex with what it is. Byte offsets in comments are file offsets.
import { describe, expect, it } from 'vitest';
import {
  CaptureDecoder,
  CaptureReader,
  LINKTYPE_ETHERNET,
  LINKTYPE_IPV4,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_RAW,
  PCAP_MAX_CAPLEN_BYTES,
  PcapError,
  type PcapRecord,
  emitPcapGlobalHeader,
  emitPcapRecord,
  encodePcap,
  parseCapture,
  pcapRecordBytes,
  recordTimeNs,
  timeNsToPcapUsec,
} from '../../src/wire/pcap.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, toHex } from '../helpers/hex.js';

/** Bytes from hex strings and byte arrays, in order. */
function cat(...parts: (string | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((p) => (typeof p === 'string' ? hex(p) : p));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// Ethernet II, Src: 02:00:00:00:00:01, Dst: ff:ff:ff:ff:ff:ff; ARP request: Who has 192.0.2.2? Tell 192.0.2.1 (42 octets)
const ARP_FRAME = hex(`ffffffffffff 020000000001 0806 0001 0800 06 04 0001
  020000000001 c0000201 000000000000 c0000202`);
// Ethernet II, Src: 02:00:00:00:00:01, Dst: 02:00:00:00:00:02; IPv4 192.0.2.1 → 192.0.2.2 UDP 1234 → 5678 Len=0 (42 octets)
const UDP_FRAME = hex(`020000000002 020000000001 0800 4500 001c 0001 0000 4011 f77a c0000201 c0000202
  04d2 162e 0008 0000`);
// IPv4 192.0.2.1 → 192.0.2.2, UDP 1234 → 5678 Len=0 (28 octets)
const IPV4_UDP = hex('4500 001c 0002 0000 4011 f779 c0000201 c0000202 04d2 162e 0008 0000');
// IPv6 2001:db8::1 → 2001:db8::2, UDP 1234 → 5678 Len=0 (48 octets)
const IPV6_UDP = hex(`6000 0000 0008 1140 20010db8000000000000000000000001 20010db8000000000000000000000002
  04d2 162e 0008 0000`);
// Linux cooked capture v1: packet type 0 (to us), ARPHRD_ETHER, address length 6, 02:00:00:00:00:01 + 2 pad, protocol IPv4; then IPV4_UDP (44 octets)
const SLL_IPV4 = cat('0000 0001 0006 020000000001 0000 0800', IPV4_UDP);

// Classic pcap, little-endian, microseconds: the two frames above.
const PCAP_LE_USEC = cat(
  'd4c3b2a1', // 0: magic 0xa1b2c3d4 stored little-endian → µs timestamps
  '0200 0400', // 4: version 2.4
  '00000000', // 8: reserved (thiszone)
  '00000000', // 12: reserved (sigfigs)
  'ffff0000', // 16: snaplen 65535
  '01000000', // 20: link type 1 (Ethernet)
  '257d9365', // 24: record 1 ts_sec 1704164645
  '40e20100', // 28: ts_usec 123456
  '2a000000', // 32: captured length 42
  '2a000000', // 36: original length 42
  ARP_FRAME, // 40: data
  '267d9365', // 82: record 2 ts_sec 1704164646
  '01000000', // 86: ts_usec 1
  '2a000000', // 90: captured length 42
  '3c000000', // 94: original length 60 (the capture kept 42)
  UDP_FRAME, // 98: data
);
// Classic pcap, big-endian, microseconds: same content.
const PCAP_BE_USEC = cat(
  'a1b2c3d4', // magic stored big-endian → µs
  '0002 0004', // version 2.4
  '00000000 00000000', // reserved ×2
  '0000ffff', // snaplen 65535
  '00000001', // link type 1
  '65937d25 0001e240 0000002a 0000002a', // ts 1704164645.123456, caplen 42, orig 42
  ARP_FRAME,
  '65937d26 00000001 0000002a 0000003c', // ts 1704164646.000001, caplen 42, orig 60
  UDP_FRAME,
);
// Classic pcap, little-endian, nanoseconds.
const PCAP_LE_NSEC = cat(
  '4d3cb2a1', // magic 0xa1b23c4d stored little-endian → ns timestamps
  '0200 0400', // version 2.4
  '00000000 00000000', // reserved ×2
  '00000400', // snaplen 262144
  '01000000', // link type 1
  '257d9365 15cd5b07 2a000000 2a000000', // ts 1704164645.123456789, caplen 42, orig 42
  ARP_FRAME,
  '267d9365 fd060000 2a000000 3c000000', // ts 1704164646.000001789, caplen 42, orig 60
  UDP_FRAME,
);
// Classic pcap, big-endian, nanoseconds.
const PCAP_BE_NSEC = cat(
  'a1b23c4d', // magic stored big-endian → ns
  '0002 0004', // version 2.4
  '00000000 00000000', // reserved ×2
  '00040000', // snaplen 262144
  '00000001', // link type 1
  '65937d25 075bcd15 0000002a 0000002a', // ts 1704164645.123456789, caplen 42, orig 42
  ARP_FRAME,
  '65937d26 000006fd 0000002a 0000003c', // ts 1704164646.000001789, caplen 42, orig 60
  UDP_FRAME,
);

// pcapng: a little-endian section with three interfaces, then a big-endian section.
const PCAPNG = cat(
  // 0: Section Header Block, little-endian
  '0a0d0d0a', // block type SHB
  '1c000000', // block length 28
  '4d3c2b1a', // byte-order magic 0x1a2b3c4d, little-endian
  '0100 0000', // version 1.0
  'ffffffffffffffff', // section length unknown
  '1c000000', // block length again
  // 28: IDB #0: Ethernet, snaplen 32, default resolution (µs)
  '01000000 14000000', // type IDB, length 20
  '0100 0000', // link type 1, reserved
  '20000000', // snaplen 32
  '14000000', // length
  // 48: IDB #1: raw IPv4, no snaplen, if_tsresol 9 (ns)
  '01000000 20000000', // type IDB, length 32
  'e400 0000', // link type 228, reserved
  '00000000', // snaplen 0 (none)
  '0900 0100 09 000000', // option if_tsresol (9), length 1, value 9 = 10^-9 s, 3 pad octets
  '0000 0000', // opt_endofopt
  '20000000', // length
  // 80: IDB #2: Linux SLL, snaplen 65535, if_tsresol 0x8a (2^-10 s), if_tsoffset 100 s
  '01000000 2c000000', // type IDB, length 44
  '7100 0000', // link type 113, reserved
  'ffff0000', // snaplen 65535
  '0900 0100 8a 000000', // if_tsresol 0x8a: high bit set → 2^-10 s units
  '0e00 0800 6400000000000000', // if_tsoffset (14), length 8: +100 s
  '0000 0000', // opt_endofopt
  '2c000000', // length
  // 124: Name Resolution Block (type 4) — skipped
  '04000000 10000000', // type NRB, length 16
  '0000 0000', // nrb_record_end
  '10000000', // length
  // 140: EPB on interface 1 (raw IPv4, ns)
  '06000000 3c000000', // type EPB, length 60
  '01000000', // interface 1
  'b768a617 80781db6', // timestamp high, low: 1704164647250000000 ns
  '1c000000 1c000000', // captured 28, original 28
  IPV4_UDP, // 28 octets, no padding needed
  '3c000000', // length
  // 200: EPB on interface 2 (SLL, 2^-10 s units, +100 s)
  '06000000 4c000000', // type EPB, length 76
  '02000000', // interface 2
  '96010000 000ef34d', // timestamp 1745064496640 units = 1704164547.5 s (+100 s offset)
  '2c000000 2c000000', // captured 44, original 44
  SLL_IPV4, // 44 octets
  '4c000000', // length
  // 276: Interface Statistics Block (type 5) — skipped
  '05000000 18000000', // type ISB, length 24
  '00000000', // interface 0
  '00000000 00000000', // timestamp
  '18000000', // length
  // 300: Custom Block (type 0x00000bad) — skipped
  'ad0b0000 14000000', // type 0xbad, length 20
  '7f000000', // private enterprise number
  'deadbeef', // custom data
  '14000000', // length
  // 320: Simple Packet Block: interface 0, snaplen 32 → 32 of 42 octets captured
  '03000000 30000000', // type SPB, length 48
  '2a000000', // original length 42
  ARP_FRAME.subarray(0, 32), // the 32 captured octets
  '30000000', // length
  // 368: EPB on interface 0 (Ethernet, µs): 30 of 42 octets, padded to 32
  '06000000 40000000', // type EPB, length 64
  '00000000', // interface 0
  'ed0d0600 80b54fc0', // timestamp 1704164645123456 µs
  '1e000000 2a000000', // captured 30, original 42
  UDP_FRAME.subarray(0, 30), // 30 octets
  '0000', // padding to 32
  '40000000', // length
  // 432: Section Header Block, big-endian: a new section, interfaces start again at 0
  '0a0d0d0a', // block type SHB (same in both orders)
  '00000020', // block length 32
  '1a2b3c4d', // byte-order magic, big-endian
  '0001 0000', // version 1.0
  'ffffffffffffffff', // section length unknown
  '0000 0000', // opt_endofopt
  '00000020', // length
  // 464: IDB #0 of section 2: raw IP (101), snaplen 262144
  '00000001 00000014', // type IDB, length 20
  '0065 0000', // link type 101, reserved
  '00040000', // snaplen 262144
  '00000014', // length
  // 484: EPB on interface 0 (µs)
  '00000006 00000050', // type EPB, length 80
  '00000000', // interface 0
  '00060ded c0833b20', // timestamp 1704164648500000 µs
  '00000030 00000030', // captured 48, original 48
  IPV6_UDP, // 48 octets
  '00000050', // length
);

/** The fields a user checks, with data as hex. */
function summary(r: PcapRecord): object {
  return {
    linkType: r.linkType,
    interfaceId: r.interfaceId,
    tsSec: r.tsSec,
    tsNsec: r.tsNsec,
    origLen: r.origLen,
    data: toHex(r.data),
    offset: r.offset,
  };
}

function classicExpect(nsec: boolean): object[] {
  return [
    { linkType: 1, interfaceId: 0, tsSec: 1704164645, tsNsec: nsec ? 123456789 : 123456000, origLen: 42, data: toHex(ARP_FRAME), offset: 24 },
    { linkType: 1, interfaceId: 0, tsSec: 1704164646, tsNsec: nsec ? 1789 : 1000, origLen: 60, data: toHex(UDP_FRAME), offset: 82 },
  ];
}

/** The error of parsing `bytes`, which must fail. */
function errorOf(bytes: Uint8Array): PcapError {
  const r = parseCapture(bytes);
  expect(r.error, 'expected a parse error').toBeInstanceOf(PcapError);
  return r.error!;
}

/** `bytes` with a little-endian u32 written at `at` (a copy). */
function withU32(bytes: Uint8Array, at: number, v: number, le = true): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint32(at, v, le);
  return out;
}

describe('classic pcap', () => {
  const cases: [string, Uint8Array, boolean][] = [
    ['little-endian µs', PCAP_LE_USEC, false],
    ['big-endian µs', PCAP_BE_USEC, false],
    ['little-endian ns', PCAP_LE_NSEC, true],
    ['big-endian ns', PCAP_BE_NSEC, true],
  ];
  for (const [name, bytes, nsec] of cases) {
    it(`reads ${name}`, () => {
      const r = parseCapture(bytes);
      expect(r.error).toBeNull();
      expect(r.format).toBe('pcap');
      expect(r.records.map(summary)).toEqual(classicExpect(nsec));
    });
  }

  it('returns views into the input, not copies', () => {
    const r = parseCapture(PCAP_LE_USEC);
    const d = r.records[1]!.data;
    expect(d.buffer).toBe(PCAP_LE_USEC.buffer);
    expect(d.byteOffset).toBe(PCAP_LE_USEC.byteOffset + 98);
  });

  it('reads a file with a header and no records', () => {
    const r = parseCapture(PCAP_LE_USEC.subarray(0, 24));
    expect(r).toEqual({ format: 'pcap', records: [], error: null });
  });

  it('gives the timestamp in nanoseconds as a bigint', () => {
    const r = parseCapture(PCAP_BE_NSEC);
    expect(recordTimeNs(r.records[0]!)).toBe(1704164645123456789n);
  });

  it('carries a fraction of a second or more (a writer bug) into the seconds', () => {
    const r = parseCapture(withU32(PCAP_LE_USEC, 28, 1_500_000)); // record 1 ts_usec 1500000
    expect(r.error).toBeNull();
    expect([r.records[0]!.tsSec, r.records[0]!.tsNsec]).toEqual([1704164646, 500_000_000]);
  });

  it('accepts each supported link type and keeps it on the record', () => {
    for (const lt of [1, 101, 113, 228, 229]) {
      const r = parseCapture(withU32(PCAP_LE_USEC, 20, lt));
      expect(r.error).toBeNull();
      expect(r.records[0]!.linkType).toBe(lt);
    }
  });
});

describe('pcapng', () => {
  const parsed = parseCapture(PCAPNG);

  it('reads every packet block of both sections, skipping NRB, ISB and custom blocks', () => {
    expect(parsed.error).toBeNull();
    expect(parsed.format).toBe('pcapng');
    expect(parsed.records.map(summary)).toEqual([
      // EPB, interface 1 (raw IPv4), if_tsresol 9
      { linkType: LINKTYPE_IPV4, interfaceId: 1, tsSec: 1704164647, tsNsec: 250000000, origLen: 28, data: toHex(IPV4_UDP), offset: 140 },
      // EPB, interface 2 (SLL), 2^-10 s units and if_tsoffset +100 s
      { linkType: LINKTYPE_LINUX_SLL, interfaceId: 2, tsSec: 1704164647, tsNsec: 500000000, origLen: 44, data: toHex(SLL_IPV4), offset: 200 },
      // SPB: interface 0, cut to its snaplen 32; no timestamp
      { linkType: LINKTYPE_ETHERNET, interfaceId: 0, tsSec: 0, tsNsec: 0, origLen: 42, data: toHex(ARP_FRAME.subarray(0, 32)), offset: 320 },
      // EPB, interface 0 (Ethernet, µs), 30 octets captured, padding not included
      { linkType: LINKTYPE_ETHERNET, interfaceId: 0, tsSec: 1704164645, tsNsec: 123456000, origLen: 42, data: toHex(UDP_FRAME.subarray(0, 30)), offset: 368 },
      // Section 2 (big-endian): its interface 0 is raw IP
      { linkType: LINKTYPE_RAW, interfaceId: 0, tsSec: 1704164648, tsNsec: 500000000, origLen: 48, data: toHex(IPV6_UDP), offset: 484 },
    ]);
  });

  it('returns views into the input', () => {
    const d = parsed.records[4]!.data;
    expect(d.buffer).toBe(PCAPNG.buffer);
    expect(d.byteOffset).toBe(484 + 28);
  });

  it('forgets the interfaces of the previous section', () => {
    // Section 2 with an EPB on interface 1, which only section 1 declared.
    const bad = withU32(PCAPNG, 484 + 8, 1, false);
    const e = errorOf(bad);
    expect(e.code).toBe('PCAP_BAD_BLOCK');
    expect(e.offset).toBe(484 + 8);
    expect(e.message).toBe('packet on interface 1, but the section declares 1 at byte offset 492');
  });

  it('SPB without a snaplen takes the whole original length', () => {
    const file = cat(
      '0a0d0d0a 1c000000 4d3c2b1a 0100 0000 ffffffffffffffff 1c000000', // SHB, little-endian
      '01000000 14000000 0100 0000 00000000 14000000', // IDB: Ethernet, snaplen 0
      '03000000 3c000000 2a000000', // SPB, length 60, original length 42
      ARP_FRAME,
      '0000', // pad to 44
      '3c000000',
    );
    const r = parseCapture(file);
    expect(r.error).toBeNull();
    expect(r.records.map((x) => toHex(x.data))).toEqual([toHex(ARP_FRAME)]);
  });
});

describe('streaming decoder', () => {
  /** Feeds `bytes` to a CaptureDecoder `chunk` octets at a time, as a file reader would. */
  function streamed(bytes: Uint8Array, chunk: number): { records: object[]; error: PcapError | null } {
    const dec = new CaptureDecoder();
    const records: object[] = [];
    let base = 0;
    let window: Uint8Array = new Uint8Array(0);
    let read = 0;
    let pos = 0;
    for (;;) {
      const eof = read === bytes.length;
      const s = dec.step(window, pos, eof, base);
      if (s.kind === 'record') {
        records.push(summary(s.record));
        pos = s.next;
      } else if (s.kind === 'skip') pos = s.next;
      else if (s.kind === 'end') return { records, error: null };
      else if (s.kind === 'error') return { records, error: s.error };
      else {
        const more = bytes.subarray(read, Math.min(bytes.length, read + chunk));
        read += more.length;
        window = cat(window.subarray(pos), more);
        base += pos;
        pos = 0;
      }
    }
  }

  for (const chunk of [1, 3, 7, 64]) {
    it(`gives the same records fed ${chunk} octet(s) at a time`, () => {
      for (const f of [PCAP_LE_USEC, PCAP_BE_NSEC, PCAPNG]) {
        expect(streamed(f, chunk)).toEqual({ records: parseCapture(f).records.map(summary), error: null });
      }
    });
  }

  it('reports truncation only at the end, with the same code and offset', () => {
    const cut = PCAPNG.subarray(0, 310); // inside the custom block at 300
    const s = streamed(cut, 5);
    expect(s.error?.code).toBe('PCAP_TRUNCATED');
    expect(s.error?.offset).toBe(errorOf(cut).offset);
  });

  it('stays in its error', () => {
    const dec = new CaptureDecoder();
    const bad = hex('00000000 00000000');
    const a = dec.step(bad, 0, true, 0);
    const b = dec.step(PCAP_LE_USEC, 0, true, 0);
    expect(a.kind).toBe('error');
    expect(b).toEqual(a);
  });
});

describe('errors: code and byte offset', () => {
  it('empty input', () => {
    const e = errorOf(new Uint8Array(0));
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_TRUNCATED', 0, 'empty file, no capture header at byte offset 0']);
  });

  it('truncated global header', () => {
    const e = errorOf(PCAP_LE_USEC.subarray(0, 23));
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_TRUNCATED', 0, 'truncated global header at byte offset 0']);
  });

  it('truncated record header', () => {
    // Record 2 starts at 82; cut after 15 of its 16 header octets.
    const e = errorOf(PCAP_LE_USEC.subarray(0, 82 + 15));
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_TRUNCATED', 82, 'truncated record header at byte offset 82']);
  });

  it('truncated record body', () => {
    // Record 2's data starts at 98; one octet of 42 missing.
    const bytes = PCAP_BE_USEC.subarray(0, PCAP_BE_USEC.length - 1);
    const e = errorOf(bytes);
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_TRUNCATED', 98, 'truncated record body (41 of 42 bytes) at byte offset 98']);
  });

  it('keeps the records before the error', () => {
    const r = parseCapture(PCAP_LE_USEC.subarray(0, 90));
    expect(r.records.map(summary)).toEqual(classicExpect(false).slice(0, 1));
    expect(r.error?.offset).toBe(82);
  });

  it('absurd captured length: above 262144', () => {
    // Snaplen 262144 (LE ns file) so only the hard limit applies; caplen field of record 1 at 32.
    const e = errorOf(withU32(PCAP_LE_NSEC, 32, PCAP_MAX_CAPLEN_BYTES + 1));
    expect([e.code, e.offset]).toEqual(['PCAP_ABSURD_LENGTH', 32]);
    expect(e.message).toBe('absurd captured length 262145 (limit 262144: snaplen 262144) at byte offset 32');
  });

  it('captured length at the limit is not absurd (then truncated)', () => {
    const e = errorOf(withU32(PCAP_LE_NSEC, 32, PCAP_MAX_CAPLEN_BYTES));
    expect([e.code, e.offset]).toEqual(['PCAP_TRUNCATED', 40]);
  });

  it('absurd captured length: beyond snaplen + 256', () => {
    const small = withU32(PCAP_LE_USEC, 16, 40); // snaplen 40 → limit 296
    expect(parseCapture(small).error).toBeNull(); // 42 is within the slack
    const e = errorOf(withU32(small, 90, 297)); // record 2 caplen 297
    expect([e.code, e.offset, e.message]).toEqual([
      'PCAP_ABSURD_LENGTH',
      90,
      'absurd captured length 297 (limit 296: snaplen 40) at byte offset 90',
    ]);
  });

  it('bad magic', () => {
    const e = errorOf(hex('47494638 39610100 01000000 00000000 00000000 00000000')); // "GIF89a…"
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_BAD_MAGIC', 0, 'not a pcap or pcapng file: magic 0x47494638 at byte offset 0']);
  });

  it('bad pcapng byte-order magic, also in a later section', () => {
    let e = errorOf(withU32(PCAPNG, 8, 0x12345678));
    expect([e.code, e.offset]).toEqual(['PCAP_BAD_MAGIC', 8]);
    e = errorOf(withU32(PCAPNG, 432 + 8, 0x12345678));
    expect([e.code, e.offset]).toEqual(['PCAP_BAD_MAGIC', 440]);
  });

  it('unsupported versions', () => {
    let e = errorOf(withU32(PCAP_LE_USEC, 4, 0x0004_0001)); // 1.4
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_BAD_VERSION', 4, 'unsupported pcap version 1.4 at byte offset 4']);
    e = errorOf(withU32(PCAPNG, 12, 0x0000_0002)); // pcapng 2.0
    expect([e.code, e.offset]).toEqual(['PCAP_BAD_VERSION', 12]);
  });

  it('unknown link type in a pcap header', () => {
    const e = errorOf(withU32(PCAP_LE_USEC, 20, 147));
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_UNKNOWN_LINKTYPE', 20, 'unknown link type 147 at byte offset 20']);
  });

  it('unknown link type: FCS bits in the pcap link type field are not supported', () => {
    const e = errorOf(withU32(PCAP_LE_USEC, 20, 0x1000_0001)); // Ethernet with the F bit (FCS present) set
    expect([e.code, e.offset, e.message]).toEqual([
      'PCAP_UNKNOWN_LINKTYPE',
      20,
      'unknown link type 1 with FCS/reserved bits 0x10000000 at byte offset 20',
    ]);
  });

  it('unknown link type in a pcapng IDB', () => {
    const bad = PCAPNG.slice();
    new DataView(bad.buffer).setUint16(48 + 8, 105, true); // IDB #1 link type → 105 (802.11)
    const e = errorOf(bad);
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_UNKNOWN_LINKTYPE', 56, 'unknown link type 105 at byte offset 56']);
  });

  it('pcapng block length mismatch', () => {
    const e = errorOf(withU32(PCAPNG, 140 + 60 - 4, 64)); // EPB at 140: trailer 64, header 60
    expect([e.code, e.offset, e.message]).toEqual([
      'PCAP_BAD_BLOCK',
      196,
      'block length mismatch: header says 60, trailer says 64 at byte offset 196',
    ]);
  });

  it('pcapng block length not a multiple of 4, or below 12', () => {
    let e = errorOf(withU32(PCAPNG, 124 + 4, 18)); // NRB at 124
    expect([e.code, e.offset]).toEqual(['PCAP_ABSURD_LENGTH', 128]);
    e = errorOf(withU32(PCAPNG, 124 + 4, 8));
    expect([e.code, e.offset]).toEqual(['PCAP_ABSURD_LENGTH', 128]);
    e = errorOf(withU32(PCAPNG, 124 + 4, 32 * 1024 * 1024));
    expect([e.code, e.offset]).toEqual(['PCAP_ABSURD_LENGTH', 128]);
  });

  it('pcapng truncated block header and body', () => {
    let e = errorOf(PCAPNG.subarray(0, 124 + 7));
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_TRUNCATED', 124, 'truncated block header at byte offset 124']);
    e = errorOf(PCAPNG.subarray(0, 140 + 59));
    expect([e.code, e.offset, e.message]).toEqual(['PCAP_TRUNCATED', 148, 'truncated block body (51 of 52 bytes) at byte offset 148']);
  });

  it('pcapng EPB captured length beyond its block, or absurd', () => {
    let e = errorOf(withU32(PCAPNG, 140 + 20, 29)); // 29 octets in a block with room for 28
    expect([e.code, e.offset]).toEqual(['PCAP_BAD_BLOCK', 160]);
    e = errorOf(withU32(PCAPNG, 140 + 20, 300_000));
    expect([e.code, e.offset]).toEqual(['PCAP_ABSURD_LENGTH', 160]);
  });

  it('pcapng option overrunning its block', () => {
    const bad = PCAPNG.slice();
    new DataView(bad.buffer).setUint16(48 + 16 + 2, 200, true); // IDB #1 if_tsresol length 200
    const e = errorOf(bad);
    expect([e.code, e.offset]).toEqual(['PCAP_BAD_BLOCK', 66]);
  });

  it('pcapng SPB before any IDB', () => {
    const file = cat('0a0d0d0a 1c000000 4d3c2b1a 0100 0000 ffffffffffffffff 1c000000', '03000000 10000000 00000000 10000000');
    const e = errorOf(file);
    expect([e.code, e.offset]).toEqual(['PCAP_BAD_BLOCK', 28]);
  });
});

describe('robustness', () => {
  const CODES = ['PCAP_TRUNCATED', 'PCAP_BAD_MAGIC', 'PCAP_BAD_VERSION', 'PCAP_ABSURD_LENGTH', 'PCAP_UNKNOWN_LINKTYPE', 'PCAP_BAD_BLOCK'];
  it('never throws and never returns data outside the input (prefixes, random and mutated files)', () => {
    const inputs = fuzzInputs(0x9ca9, [PCAP_LE_USEC, PCAP_BE_NSEC, PCAPNG], 3000, 128);
    for (const input of inputs) {
      // Place the input inside a larger buffer so that an overrun would be visible as a view past `len`.
      const host = filled(input.length + 64);
      host.set(input, 16);
      const bytes = host.subarray(16, 16 + input.length);
      const r = parseCapture(bytes);
      for (const rec of r.records) {
        expect(rec.data.buffer).toBe(host.buffer);
        expect(rec.data.byteOffset).toBeGreaterThanOrEqual(16);
        expect(rec.data.byteOffset + rec.data.length).toBeLessThanOrEqual(16 + input.length);
      }
      if (r.error) {
        expect(CODES).toContain(r.error.code);
        expect(r.error.offset).toBeGreaterThanOrEqual(0);
        expect(r.error.offset).toBeLessThanOrEqual(input.length);
      }
    }
  });

  it('every strict prefix of a file fails with PCAP_TRUNCATED (except clean record boundaries)', () => {
    const ends = new Set([24, 82, 140]);
    for (let n = 0; n < PCAP_LE_USEC.length; n++) {
      const r = parseCapture(PCAP_LE_USEC.subarray(0, n));
      if (ends.has(n)) expect(r.error).toBeNull();
      else expect(r.error?.code).toBe('PCAP_TRUNCATED');
    }
  });

  it('CaptureReader is iterable and exposes the error afterwards', () => {
    const reader = new CaptureReader(PCAP_LE_USEC.subarray(0, 100));
    const got = [...reader];
    expect(got).toHaveLength(1);
    expect(reader.error?.code).toBe('PCAP_TRUNCATED');
    expect(reader.next()).toBeNull();
  });
});

describe('pcap writer', () => {
  // The header our writer emits, field by field.
  const HEADER_ETH = hex(
    'd4c3b2a1' + // magic, little-endian, µs
      '0200 0400' + // version 2.4
      '00000000 00000000' + // reserved ×2
      '00000400' + // snaplen 262144
      '01000000', // link type 1
  );

  it('emits the file header at any offset, touching only its 24 octets', () => {
    for (const off of OFFSETS) {
      const out = filled(off + 24 + 8);
      expect(emitPcapGlobalHeader(out, off, LINKTYPE_ETHERNET)).toBe(off + 24);
      expect(toHex(out, off, 24)).toBe(toHex(HEADER_ETH));
      expect(out.subarray(0, off).every((b) => b === FILL)).toBe(true);
      expect(out.subarray(off + 24).every((b) => b === FILL)).toBe(true);
    }
  });

  it('emits link type 101 for raw IP', () => {
    const out = filled(24);
    emitPcapGlobalHeader(out, 0, LINKTYPE_RAW);
    expect(toHex(out, 20, 4)).toBe('65000000');
  });

  it('emits a record at any offset', () => {
    for (const off of OFFSETS) {
      const out = filled(off + pcapRecordBytes(42) + 4);
      expect(emitPcapRecord(out, off, ARP_FRAME, 1704164645, 123456, 60)).toBe(off + 58);
      // ts_sec 1704164645, ts_usec 123456, captured 42, original 60, then the frame
      expect(toHex(out, off, 58)).toBe('257d9365' + '40e20100' + '2a000000' + '3c000000' + toHex(ARP_FRAME));
      expect(out.subarray(off + 58).every((b) => b === FILL)).toBe(true);
    }
  });

  it('round trip: encodePcap → parseCapture', () => {
    const bytes = encodePcap(LINKTYPE_ETHERNET, [
      { data: ARP_FRAME, tsSec: 1704164645, tsUsec: 123456 },
      { data: UDP_FRAME, tsSec: 1704164646, tsUsec: 1, origLen: 60 },
    ]);
    expect(toHex(bytes.subarray(0, 24))).toBe(toHex(HEADER_ETH));
    const r = parseCapture(bytes);
    expect(r.error).toBeNull();
    expect(r.records.map(summary)).toEqual(classicExpect(false));
  });

  it('splits nanosecond timestamps into seconds and microseconds', () => {
    expect(timeNsToPcapUsec(1704164645123456789n)).toEqual({ tsSec: 1704164645, tsUsec: 123456 });
    expect(() => timeNsToPcapUsec(-1n)).toThrow(RangeError);
  });

  it('rejects bad arguments with RangeError naming the value', () => {
    const out = filled(100);
    expect(() => emitPcapGlobalHeader(out, 0, 113 as 1)).toThrow(/got 113/);
    expect(() => emitPcapGlobalHeader(out, 90, LINKTYPE_ETHERNET)).toThrow(/needs 24 bytes at offset 90/);
    expect(() => emitPcapRecord(out, 0, ARP_FRAME, -1, 0)).toThrow(/tsSec .* got -1/);
    expect(() => emitPcapRecord(out, 0, ARP_FRAME, 2 ** 32, 0)).toThrow(RangeError);
    expect(() => emitPcapRecord(out, 0, ARP_FRAME, 0, 1_000_000)).toThrow(/tsUsec .* got 1000000/);
    expect(() => emitPcapRecord(out, 0, ARP_FRAME, 0, 0, 41)).toThrow(/origLen 41/);
    expect(() => emitPcapRecord(out, 50, ARP_FRAME, 0, 0)).toThrow(/needs 58 bytes at offset 50/);
    expect(() => emitPcapRecord(new Uint8Array(300_000), 0, new Uint8Array(PCAP_MAX_CAPLEN_BYTES + 1), 0, 0)).toThrow(/exceeds the snaplen/);
  });
});
