import { describe, expect, it } from 'vitest';
import { IP_PROTO_ESP, IP_PROTO_ICMPV6, IP_PROTO_UDP } from '../../src/wire/constants.js';
import { WireError, wireErrorName } from '../../src/wire/errors.js';
import {
  IPV6_MAX_EXT_HEADERS,
  Ipv6Packet,
  type Ipv6FragmentRepr,
  type Ipv6Repr,
  emitIpv6,
  emitIpv6Fragment,
  formatIpv6,
  ipv6BufferLen,
  ipv6FragmentBufferLen,
  parseIpv6,
  parseIpv6Address,
  parseIpv6Fragment,
} from '../../src/wire/ipv6.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, placed, probeIsolated, snapshot, toHex } from '../helpers/hex.js';

// Golden packets built with scapy; decodes from `tshark -r F.pcap -V`.

// Internet Protocol Version 6, Src: 2001:db8::1, Dst: 2001:db8::2
//     .... 1011 1000 .... .... .... .... .... = Traffic Class: 0xb8 (DSCP: EF PHB, ECN: Not-ECT)
//     .... 0001 0010 0011 0100 0101 = Flow Label: 0x12345
//     Payload Length: 28
//     Next Header: IPv6 Hop-by-Hop Option (0)
//     Hop Limit: 64
//     IPv6 Hop-by-Hop Option
//         Next Header: Fragment Header for IPv6 (44)
//         Length: 0
//         Router Alert: MLD (0)
//         PadN: <none>
//     Fragment Header for IPv6
//         Next header: Encap Security Payload (50)
//         0000 0000 0000 0... = Offset: 0 (0 bytes)
//         .... .... .... ...1 = More Fragments: Yes
//         Identification: 0x12345678
// Data (12 bytes)
const HBH_FRAG_ESP = hex(`
  6b 81 23 45 00 1c 00 40 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 01 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 02 2c 00 05 02 00 00 01 00
  32 00 00 01 12 34 56 78 00 00 10 01 00 00 00 01
  00 11 22 33`);

// Internet Protocol Version 6, Src: fe80::1, Dst: ff02::1
//     Payload Length: 24
//     Next Header: Destination Options for IPv6 (60)
//     Hop Limit: 255
//     Destination Options for IPv6
//         Next Header: Routing Header for IPv6 (43)
//         Length: 0
//         PadN: 00000000
//     Routing Header for IPv6 (Source Route)
//         Next Header: ICMPv6 (58)
//         Length: 0
//         Type: Source Route (0)
//         Segments Left: 0
// Internet Control Message Protocol v6
//     Type: Echo (ping) request (128)
//     Checksum: 0x8234 [correct]
//     Identifier: 0x0001
//     Sequence: 2
const DST_RT_ICMP = hex(`
  60 00 00 00 00 18 3c ff fe 80 00 00 00 00 00 00
  00 00 00 00 00 00 00 01 ff 02 00 00 00 00 00 00
  00 00 00 00 00 00 00 01 2b 00 01 04 00 00 00 00
  3a 00 00 00 00 00 00 00 80 00 82 34 00 01 00 02`);

// Internet Protocol Version 6, Src: 2001:db8::1, Dst: 2001:db8::2
//     Payload Length: 16
//     Next Header: Fragment Header for IPv6 (44)
//     Hop Limit: 64
//     Fragment Header for IPv6
//         Next header: UDP (17)
//         0000 0100 1101 0... = Offset: 154 (1232 bytes)
//         .... .... .... ...0 = More Fragments: No
//         Identification: 0x0000cafe
// Data (8 bytes)
const LAST_FRAGMENT = hex(`
  60 00 00 00 00 10 2c 40 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 01 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 02 11 00 04 d0 00 00 ca fe
  00 01 02 03 04 05 06 07`);

// Internet Protocol Version 6, Src: 2001:db8::1, Dst: 2001:db8::2
//     Payload Length: 11
//     Next Header: UDP (17)
//     Hop Limit: 64
// User Datagram Protocol, Src Port: 4500, Dst Port: 4500
//     Checksum: 0xbcd8 [correct]
const PLAIN_UDP = hex(`
  60 00 00 00 00 0b 11 40 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 01 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 02 11 94 11 94 00 0b bc d8
  61 62 63`);

const GOLDENS = [HBH_FRAG_ESP, DST_RT_ICMP, LAST_FRAGMENT, PLAIN_UDP];

const A = (s: string) => parseIpv6Address(s)!;
const REPRS: [Uint8Array, Ipv6Repr][] = [
  [HBH_FRAG_ESP, { src: A('2001:db8::1'), dst: A('2001:db8::2'), nextHeader: 0, payloadLen: 28, hopLimit: 64, trafficClass: 0xb8, flowLabel: 0x12345 }],
  [DST_RT_ICMP, { src: A('fe80::1'), dst: A('ff02::1'), nextHeader: 60, payloadLen: 24, hopLimit: 255, trafficClass: 0, flowLabel: 0 }],
  [LAST_FRAGMENT, { src: A('2001:db8::1'), dst: A('2001:db8::2'), nextHeader: 44, payloadLen: 16, hopLimit: 64, trafficClass: 0, flowLabel: 0 }],
  [PLAIN_UDP, { src: A('2001:db8::1'), dst: A('2001:db8::2'), nextHeader: 17, payloadLen: 11, hopLimit: 64, trafficClass: 0, flowLabel: 0 }],
];

const VIEW_FIELDS = [
  'version',
  'trafficClass',
  'flowLabel',
  'payloadLength',
  'nextHeader',
  'hopLimit',
  'srcOffset',
  'dstOffset',
  'extHeaderCount',
  'upperProtocol',
  'upperOffset',
  'upperLen',
  'end',
  'hasFragmentHeader',
  'isFragment',
  'fragmentHeaderOffset',
  'fragmentLinkOffset',
  'fragmentNextHeader',
  'fragmentOffsetBytes',
  'moreFragments',
  'fragmentId',
] as const;

/** An IPv6 packet (2001:db8::1 → ::2) whose payload is `ext` followed by `upper`, first next header `nh`. */
function v6(nh: number, ext: string, upper = ''): Uint8Array {
  const payload = hex(ext + upper);
  const repr: Ipv6Repr = { src: A('2001:db8::1'), dst: A('2001:db8::2'), nextHeader: nh, payloadLen: payload.length, hopLimit: 64 };
  const out = new Uint8Array(40 + payload.length);
  emitIpv6(repr, out, 0);
  out.set(payload, 40);
  return out;
}

describe('Ipv6Packet view', () => {
  it('deconstructs hop-by-hop + fragment (first fragment) → stops at the fragment data, at offsets 0–7', () => {
    const p = new Ipv6Packet();
    for (const off of OFFSETS) {
      expect(p.bind(placed(HBH_FRAG_ESP, off, 2), off, HBH_FRAG_ESP.length)).toBe(0);
      expect([p.version, p.trafficClass, p.flowLabel, p.payloadLength, p.nextHeader, p.hopLimit]).toEqual([6, 0xb8, 0x12345, 28, 0, 64]);
      expect([formatIpv6(p.bytes, p.srcOffset), formatIpv6(p.bytes, p.dstOffset)]).toEqual(['2001:db8::1', '2001:db8::2']);
      expect([p.extHeaderCount, p.upperProtocol, p.upperOffset, p.upperLen, p.end]).toEqual([2, IP_PROTO_ESP, off + 56, 12, off + 68]);
      expect([p.hasFragmentHeader, p.isFragment, p.fragmentHeaderOffset, p.fragmentLinkOffset]).toEqual([true, true, off + 48, off + 40]);
      expect([p.fragmentNextHeader, p.fragmentOffsetBytes, p.moreFragments, p.fragmentId]).toEqual([IP_PROTO_ESP, 0, true, 0x12345678]);
    }
  });

  it('walks destination options + routing to ICMPv6; a last fragment stops after its header; plain UDP has no walk', () => {
    const p = new Ipv6Packet();
    for (const off of OFFSETS) {
      expect(p.bind(placed(DST_RT_ICMP, off), off, DST_RT_ICMP.length)).toBe(0);
      expect([p.extHeaderCount, p.upperProtocol, p.upperOffset, p.upperLen, p.hasFragmentHeader]).toEqual([2, IP_PROTO_ICMPV6, off + 56, 8, false]);
      expect([p.fragmentHeaderOffset, p.fragmentLinkOffset, p.fragmentId]).toEqual([-1, -1, 0]);

      expect(p.bind(placed(LAST_FRAGMENT, off), off, LAST_FRAGMENT.length)).toBe(0);
      expect([p.extHeaderCount, p.upperProtocol, p.upperOffset, p.upperLen]).toEqual([1, IP_PROTO_UDP, off + 48, 8]);
      expect([p.isFragment, p.fragmentOffsetBytes, p.moreFragments, p.fragmentId, p.fragmentLinkOffset]).toEqual([true, 1232, false, 0xcafe, off + 6]);

      expect(p.bind(placed(PLAIN_UDP, off), off, PLAIN_UDP.length)).toBe(0);
      expect([p.extHeaderCount, p.upperProtocol, p.upperOffset, p.upperLen, p.isFragment]).toEqual([0, IP_PROTO_UDP, off + 40, 11, false]);
    }
  });

  it('walks through an atomic fragment (offset 0, M clear; RFC 6946) to the upper layer', () => {
    const p = new Ipv6Packet();
    // fragment(nh 60, off 0, M 0) → dstopts(nh 17, len 0) → UDP header
    expect(p.bind(v6(44, '3c000000 0000abcd  11000104 00000000', '11941194 0008 0000'), 0, 64)).toBe(0);
    expect([p.hasFragmentHeader, p.isFragment, p.extHeaderCount, p.upperProtocol, p.upperOffset, p.upperLen]).toEqual([true, false, 2, IP_PROTO_UDP, 56, 8]);
  });

  it('stops at any other next header and keeps unknown values (ESP, GRE, AH, no next header, 253)', () => {
    const p = new Ipv6Packet();
    for (const nh of [50, 47, 51, 59, 6, 253]) {
      expect(p.bind(v6(60, `${nh.toString(16).padStart(2, '0')}00 01040000 0000`, 'deadbeef'), 0, 52)).toBe(0);
      expect([p.upperProtocol, p.upperOffset, p.upperLen]).toEqual([nh, 48, 4]);
    }
  });

  it('bounds the walk, rejects misplaced hop-by-hop and a second fragment header', () => {
    const p = new Ipv6Packet();
    const dst = (next: number) => `${next.toString(16).padStart(2, '0')}00 01040000 0000`;
    const chain = (n: number) => Array.from({ length: n }, (_, i) => dst(i === n - 1 ? 59 : 60)).join(' ');
    expect(p.bind(v6(60, chain(IPV6_MAX_EXT_HEADERS)), 0, 40 + 8 * IPV6_MAX_EXT_HEADERS)).toBe(0);
    expect(p.extHeaderCount).toBe(IPV6_MAX_EXT_HEADERS);
    expect(p.bind(v6(60, chain(IPV6_MAX_EXT_HEADERS + 1)), 0, 40 + 8 * (IPV6_MAX_EXT_HEADERS + 1))).toBe(WireError.tooManyHeaders);
    expect(p.bind(v6(60, `${dst(0)} ${dst(59)}`), 0, 56)).toBe(WireError.malformed); // HBH after dstopts
    expect(p.bind(v6(44, '2c000000 00000001 11000000 00000001'), 0, 56)).toBe(WireError.malformed); // two atomic fragment headers
  });

  it('checks length: fixed header, Payload Length and every extension header (check_len)', () => {
    const p = new Ipv6Packet();
    for (let n = 0; n < HBH_FRAG_ESP.length; n++) expect(p.bind(HBH_FRAG_ESP, 0, n), `${n} octets`).toBe(WireError.truncated);
    expect(p.bind(HBH_FRAG_ESP, 1, HBH_FRAG_ESP.length)).toBe(WireError.truncated);
    // Payload Length too short for the extension headers it claims.
    const short = HBH_FRAG_ESP.slice();
    short[5] = 12; // 8 octets of HBH + 4 of a fragment header
    expect(p.bind(short, 0, short.length)).toBe(WireError.truncated);
    short[5] = 8; // exactly the HBH header; the fragment header lies outside the payload
    expect(p.bind(short, 0, short.length)).toBe(WireError.truncated);
    // A destination options header whose Hdr Ext Len runs past the payload.
    expect(p.bind(v6(60, '3b01 01040000 0000'), 0, 48)).toBe(WireError.truncated);
    const bad = PLAIN_UDP.slice();
    bad[0] = 0x45;
    expect(p.bind(bad, 0, bad.length)).toBe(WireError.badVersion);
    // Octets past Payload Length (link padding) are not part of the packet.
    expect(p.bind(placed(PLAIN_UDP, 0, 9, 0), 0, PLAIN_UDP.length + 9)).toBe(0);
    expect([p.upperLen, p.end]).toEqual([11, 51]);
  });

  it('never throws or reads outside its window on truncated and random input (seeded)', () => {
    const p = new Ipv6Packet();
    const seen = new Set<string>();
    const atomic = v6(44, '3c000000 0000abcd 11000104 00000000', '11941194 0008 0000');
    // Nine destination options headers of one octet pattern: mutations hit the bound and misplace HBH.
    const long = v6(60, Array.from({ length: 9 }, () => '3c00 01040000 0000').join(' '));
    const misplacedHbh = v6(60, '0000 01040000 0000 3b00 01040000 0000');
    for (const input of fuzzInputs(0x6666, [...GOLDENS, atomic, long, misplacedHbh], 4000, 96)) {
      const off = input.length % 8;
      const [a, b] = probeIsolated(input, off, (bytes, o, l) => {
        const err = p.bind(bytes, o, l);
        if (err !== 0) return wireErrorName(err);
        expect(p.upperOffset + p.upperLen).toBe(p.end);
        expect(p.upperLen).toBeGreaterThanOrEqual(0);
        expect(p.end).toBeLessThanOrEqual(o + l);
        return snapshot(p, VIEW_FIELDS);
      });
      expect(a).toEqual(b);
      seen.add(typeof a === 'string' ? a : 'ok');
      const [pa, pb] = probeIsolated(input, off, parseIpv6);
      expect(pa).toEqual(pb);
      const [fa, fb] = probeIsolated(input, off, parseIpv6Fragment);
      expect(fa).toEqual(fb);
    }
    expect([...seen].sort()).toEqual(['badVersion', 'malformed', 'ok', 'tooManyHeaders', 'truncated']);
  });
});

describe('Ipv6Repr', () => {
  it('parses every golden packet at offsets 0–7', () => {
    for (const [packet, repr] of REPRS) {
      for (const off of OFFSETS) expect(parseIpv6(placed(packet, off, 1), off, packet.length)).toEqual(repr);
    }
    expect(parseIpv6(PLAIN_UDP, 0, 50)).toBe(WireError.truncated);
  });

  it('emits every golden fixed header into 0xa5 buffers at offsets 0–7; buffer_len is 40', () => {
    for (const [packet, repr] of REPRS) {
      expect(ipv6BufferLen(repr)).toBe(40);
      for (const off of OFFSETS) {
        const buf = filled(off + 43);
        expect(emitIpv6(repr, buf, off)).toBe(40);
        expect(toHex(buf, off, 40)).toBe(toHex(packet, 0, 40));
        expect([...buf.subarray(0, off), ...buf.subarray(off + 40)].every((b) => b === FILL)).toBe(true);
      }
    }
  });

  it('parses and emits fragment headers (first and last golden) at offsets 0–7; buffer_len is 8', () => {
    const cases: [Uint8Array, number, Ipv6FragmentRepr][] = [
      [HBH_FRAG_ESP, 48, { nextHeader: 50, fragmentOffsetBytes: 0, moreFragments: true, identification: 0x12345678 }],
      [LAST_FRAGMENT, 40, { nextHeader: 17, fragmentOffsetBytes: 1232, moreFragments: false, identification: 0xcafe }],
    ];
    for (const [packet, at, repr] of cases) {
      expect(ipv6FragmentBufferLen(repr)).toBe(8);
      for (const off of OFFSETS) {
        expect(parseIpv6Fragment(placed(packet.subarray(at, at + 8), off), off, 8)).toEqual(repr);
        const buf = filled(off + 9);
        expect(emitIpv6Fragment(repr, buf, off)).toBe(8);
        expect(toHex(buf, off, 8)).toBe(toHex(packet, at, 8));
        expect(buf[off + 8]).toBe(FILL);
      }
    }
    expect(parseIpv6Fragment(LAST_FRAGMENT, 40, 7)).toBe(WireError.truncated);
    const buf = filled(8);
    emitIpv6Fragment({ nextHeader: 50, fragmentOffsetBytes: 65528, moreFragments: true, identification: 0xffffffff }, buf, 0);
    expect(toHex(buf)).toBe('3200fff9ffffffff');
  });
});

describe('IPv6 address text (RFC 5952)', () => {
  it('formats canonically', () => {
    const cases: [string, string][] = [
      ['20010db8000000000000000000000001', '2001:db8::1'],
      ['00000000000000000000000000000000', '::'],
      ['00000000000000000000000000000001', '::1'],
      ['20010db8000000010000000000000000', '2001:db8:0:1::'],
      ['20010db8000000010000000100000001', '2001:db8:0:1:0:1:0:1'], // single zero groups stay
      ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // first of two equal runs
      ['20010db8000000000001000000000000', '2001:db8:0:0:1::'], // the longer run wins
      ['00000000000000000000ffffc0000201', '::ffff:192.0.2.1'],
      ['fe800000000000000000000000000001', 'fe80::1'],
      ['ABCD000000000000000000000000ef01'.toLowerCase(), 'abcd::ef01'],
    ];
    for (const [h, text] of cases) expect(formatIpv6(hex(h)), text).toBe(text);
  });

  it('parses the forms of RFC 4291 §2.2 and rejects malformed text', () => {
    expect(parseIpv6Address('2001:DB8::1')).toEqual(hex('20010db8000000000000000000000001'));
    expect(parseIpv6Address('::')).toEqual(new Uint8Array(16));
    expect(parseIpv6Address('1:2:3:4:5:6:7:8')).toEqual(hex('00010002000300040005000600070008'));
    expect(parseIpv6Address('::ffff:192.0.2.1')).toEqual(hex('00000000000000000000ffffc0000201'));
    expect(parseIpv6Address('1:2:3:4:5:6:1.2.3.4')).toEqual(hex('00010002000300040005000601020304'));
    expect(parseIpv6Address('1::')).toEqual(hex('00010000000000000000000000000000'));
    for (const bad of ['', ':', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', '1:::2', '12345::', 'g::1', 'fe80::1%eth0', '::1.2.3.256', '1:2:3:4:5:6:7::8:9', '1.2.3.4', ':1::']) {
      expect(parseIpv6Address(bad), bad).toBeNull();
    }
    for (const text of ['2001:db8::1', '::', '::1', 'fe80::1:2', '2001:db8:0:1:0:1:0:1', '::ffff:10.0.0.1', '1:2:3:4:5:6:7:8']) {
      expect(formatIpv6(parseIpv6Address(text)!)).toBe(text);
    }
  });
});
