import { describe, expect, it } from 'vitest';
import { IP_PROTO_ESP, IP_PROTO_UDP } from '../../src/wire/constants.js';
import { WireError, wireErrorName } from '../../src/wire/errors.js';
import {
  Ipv4Packet,
  type Ipv4Repr,
  emitIpv4,
  fillIpv4Checksum,
  formatIpv4,
  ipv4BufferLen,
  parseIpv4,
  parseIpv4Address,
} from '../../src/wire/ipv4.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, placed, probeIsolated, snapshot, toHex } from '../helpers/hex.js';

// Golden packets built with scapy; decodes from `tshark -r F.pcap -V -o ip.check_checksum:TRUE`.

// Internet Protocol Version 4, Src: 192.0.2.1, Dst: 192.0.2.2
//     0100 .... = Version: 4
//     .... 0101 = Header Length: 20 bytes (5)
//     Differentiated Services Field: 0xb8 (DSCP: EF PHB, ECN: Not-ECT)
//     Total Length: 36
//     Identification: 0x1234 (4660)
//     010. .... = Flags: 0x2, Don't fragment
//     ...0 0000 0000 0000 = Fragment Offset: 0
//     Time to Live: 64
//     Protocol: UDP (17)
//     Header Checksum: 0xa3d9 [correct]
// User Datagram Protocol, Src Port: 4500, Dst Port: 4500
//     Checksum: 0x0000 [zero-value ignored]
// UDP Encapsulation of IPsec Packets
// Encapsulating Security Payload
//     ESP SPI: 0x00001001 (4097)
//     ESP Sequence: 1
const OUTER_UDP = hex(`
  45 b8 00 24 12 34 40 00 40 11 a3 d9 c0 00 02 01
  c0 00 02 02 11 94 11 94 00 10 00 00 00 00 10 01
  00 00 00 01`);

// Internet Protocol Version 4, Src: 10.0.0.1, Dst: 224.0.0.22
//     .... 0110 = Header Length: 24 bytes (6)
//     Total Length: 40
//     Identification: 0x0000 (0)
//     Time to Live: 1
//     Protocol: IGMP (2)
//     Header Checksum: 0x3ab9 [correct]
//     Options: (4 bytes), Router Alert
//         IP Option - Router Alert (4 bytes): Router shall examine packet (0)
// Internet Group Management Protocol
//     [IGMP Version: 3]
//     Type: Membership Report (0x22)
const WITH_OPTIONS = hex(`
  46 00 00 28 00 00 00 00 01 02 3a b9 0a 00 00 01
  e0 00 00 16 94 04 00 00 22 00 f9 02 00 00 00 01
  04 00 00 00 e0 00 00 fb`);

// Internet Protocol Version 4, Src: 2.2.2.2, Dst: 198.51.100.7
//     Total Length: 36
//     Identification: 0xbeef (48879)
//     001. .... = Flags: 0x1, More fragments
//     ...0 0000 0000 0000 = Fragment Offset: 0
//     Time to Live: 255
//     Protocol: Encap Security Payload (50)
//     Header Checksum: 0xae79 [correct]
const FRAG_FIRST = hex(`
  45 00 00 24 be ef 20 00 ff 32 ae 79 02 02 02 02
  c6 33 64 07 00 01 02 03 04 05 06 07 08 09 0a 0b
  0c 0d 0e 0f`);

// Internet Protocol Version 4, Src: 2.2.2.2, Dst: 198.51.100.7
//     Differentiated Services Field: 0x03 (DSCP: CS0, ECN: CE)
//     Total Length: 28
//     Identification: 0xbeef (48879)
//     000. .... = Flags: 0x0
//     ...0 0000 1011 1001 = Fragment Offset: 1480
//     Time to Live: 255
//     Protocol: Encap Security Payload (50)
//     Header Checksum: 0xcdc5 [correct]
const FRAG_LAST = hex(`
  45 03 00 1c be ef 00 b9 ff 32 cd c5 02 02 02 02
  c6 33 64 07 00 01 02 03 04 05 06 07`);

const GOLDENS = [OUTER_UDP, WITH_OPTIONS, FRAG_FIRST, FRAG_LAST];

const A = (s: string) => parseIpv4Address(s)!;
const REPRS: [Uint8Array, Ipv4Repr][] = [
  [
    OUTER_UDP,
    { src: A('192.0.2.1'), dst: A('192.0.2.2'), protocol: 17, payloadLen: 16, ttl: 64, dscp: 46, ecn: 0, identification: 0x1234, dontFragment: true, moreFragments: false, fragmentOffsetBytes: 0, options: new Uint8Array(0) },
  ],
  [
    WITH_OPTIONS,
    { src: A('10.0.0.1'), dst: A('224.0.0.22'), protocol: 2, payloadLen: 16, ttl: 1, dscp: 0, ecn: 0, identification: 0, dontFragment: false, moreFragments: false, fragmentOffsetBytes: 0, options: hex('94040000') },
  ],
  [
    FRAG_FIRST,
    { src: A('2.2.2.2'), dst: A('198.51.100.7'), protocol: 50, payloadLen: 16, ttl: 255, dscp: 0, ecn: 0, identification: 0xbeef, dontFragment: false, moreFragments: true, fragmentOffsetBytes: 0, options: new Uint8Array(0) },
  ],
  [
    FRAG_LAST,
    { src: A('2.2.2.2'), dst: A('198.51.100.7'), protocol: 50, payloadLen: 8, ttl: 255, dscp: 0, ecn: 3, identification: 0xbeef, dontFragment: false, moreFragments: false, fragmentOffsetBytes: 1480, options: new Uint8Array(0) },
  ],
];

const VIEW_FIELDS = [
  'version',
  'headerLen',
  'dscp',
  'ecn',
  'totalLength',
  'identification',
  'dontFragment',
  'moreFragments',
  'fragmentOffsetBytes',
  'isFragment',
  'ttl',
  'protocol',
  'checksum',
  'srcOffset',
  'dstOffset',
  'src',
  'dst',
  'optionsOffset',
  'optionsLen',
  'payloadOffset',
  'payloadLen',
] as const;

/** A copy of `packet` with octet i set to v. */
function patched(packet: Uint8Array, i: number, v: number): Uint8Array {
  const p = packet.slice();
  p[i] = v;
  return p;
}

describe('Ipv4Packet view', () => {
  it('deconstructs the golden packets at offsets 0–7', () => {
    const p = new Ipv4Packet();
    for (const off of OFFSETS) {
      expect(p.bind(placed(OUTER_UDP, off, 2), off, OUTER_UDP.length)).toBe(0);
      expect([p.version, p.headerLen, p.dscp, p.ecn, p.totalLength, p.identification]).toEqual([4, 20, 46, 0, 36, 0x1234]);
      expect([p.dontFragment, p.moreFragments, p.fragmentOffsetBytes, p.isFragment]).toEqual([true, false, 0, false]);
      expect([p.ttl, p.protocol, p.checksum]).toEqual([64, IP_PROTO_UDP, 0xa3d9]);
      expect([formatIpv4(p.bytes, p.srcOffset), formatIpv4(p.bytes, p.dstOffset)]).toEqual(['192.0.2.1', '192.0.2.2']);
      expect([p.src, p.dst]).toEqual([0xc0000201, 0xc0000202]);
      expect([p.optionsLen, p.payloadOffset, p.payloadLen]).toEqual([0, off + 20, 16]);

      expect(p.bind(placed(WITH_OPTIONS, off), off, WITH_OPTIONS.length)).toBe(0);
      expect([p.headerLen, p.optionsOffset, p.optionsLen, p.payloadOffset, p.payloadLen]).toEqual([24, off + 20, 4, off + 24, 16]);
      expect([p.ttl, p.protocol, p.dst]).toEqual([1, 2, 0xe0000016]);

      expect(p.bind(placed(FRAG_FIRST, off), off, FRAG_FIRST.length)).toBe(0);
      expect([p.moreFragments, p.fragmentOffsetBytes, p.isFragment, p.protocol, p.identification]).toEqual([true, 0, true, IP_PROTO_ESP, 0xbeef]);

      expect(p.bind(placed(FRAG_LAST, off), off, FRAG_LAST.length)).toBe(0);
      expect([p.moreFragments, p.fragmentOffsetBytes, p.isFragment, p.ecn, p.payloadLen]).toEqual([false, 1480, true, 3, 8]);
    }
  });

  it('takes the payload length from Total Length, not from trailing link padding', () => {
    const p = new Ipv4Packet();
    const padded = placed(FRAG_LAST, 0, 18, 0); // Ethernet pads a 28-octet packet to 46
    expect(p.bind(padded, 0, padded.length)).toBe(0);
    expect([p.totalLength, p.payloadLen]).toEqual([28, 8]);
  });

  it('checks length, version, IHL, total length and checksum (check_len)', () => {
    const p = new Ipv4Packet();
    for (let n = 0; n < 20; n++) expect(p.bind(OUTER_UDP, 0, n), `${n} octets`).toBe(WireError.truncated);
    for (let n = 20; n < 24; n++) expect(p.bind(WITH_OPTIONS, 0, n), `${n} octets, IHL 6`).toBe(WireError.truncated);
    for (let n = 20; n < 36; n++) expect(p.bind(OUTER_UDP, 0, n), `${n} of 36 octets`).toBe(WireError.truncated);
    expect(p.bind(OUTER_UDP, 1, 36)).toBe(WireError.truncated);
    expect(p.bind(patched(OUTER_UDP, 0, 0x65), 0, 36)).toBe(WireError.badVersion);
    expect(p.bind(patched(OUTER_UDP, 0, 0x44), 0, 36)).toBe(WireError.badLength); // IHL 4
    expect(p.bind(patched(OUTER_UDP, 3, 19), 0, 36)).toBe(WireError.badLength); // total < header
    expect(p.bind(patched(OUTER_UDP, 8, 63), 0, 36)).toBe(WireError.badChecksum); // TTL changed
    expect(p.bind(patched(OUTER_UDP, 8, 63), 0, 36, false)).toBe(0);
    expect(p.ttl).toBe(63);
  });

  it('never throws or reads outside its window on truncated and random input (seeded)', () => {
    const p = new Ipv4Packet();
    const seen = new Set<string>();
    for (const input of fuzzInputs(0x4444, GOLDENS, 3000, 64)) {
      const off = input.length % 8;
      for (const verify of [true, false]) {
        const [a, b] = probeIsolated(input, off, (bytes, o, l) => {
          const err = p.bind(bytes, o, l, verify);
          if (err !== 0) return wireErrorName(err);
          expect(p.payloadOffset + p.payloadLen).toBeLessThanOrEqual(o + l);
          expect(p.payloadLen).toBeGreaterThanOrEqual(0);
          return snapshot(p, VIEW_FIELDS);
        });
        expect(a).toEqual(b);
        seen.add(typeof a === 'string' ? a : 'ok');
      }
      const [pa, pb] = probeIsolated(input, off, parseIpv4);
      expect(pa).toEqual(pb);
    }
    expect([...seen].sort()).toEqual(['badChecksum', 'badLength', 'badVersion', 'ok', 'truncated']);
  });
});

describe('Ipv4Repr', () => {
  it('parses every golden packet at offsets 0–7', () => {
    for (const [packet, repr] of REPRS) {
      for (const off of OFFSETS) expect(parseIpv4(placed(packet, off, 5), off, packet.length + 5)).toEqual(repr);
    }
    expect(parseIpv4(patched(OUTER_UDP, 11, 0), 0, 36)).toBe(WireError.badChecksum);
  });

  it('emits every golden header, checksum included, into 0xa5 buffers at offsets 0–7', () => {
    for (const [packet, repr] of REPRS) {
      const n = ipv4BufferLen(repr);
      for (const off of OFFSETS) {
        const buf = filled(off + n + 3);
        expect(emitIpv4(repr, buf, off)).toBe(n);
        expect(toHex(buf, off, n)).toBe(toHex(packet, 0, n));
        expect([...buf.subarray(0, off), ...buf.subarray(off + n)].every((b) => b === FILL)).toBe(true);
      }
    }
  });

  it('gives the header length as buffer_len and defaults optional fields to zero', () => {
    expect(REPRS.map(([, r]) => ipv4BufferLen(r))).toEqual([20, 24, 20, 20]);
    const buf = filled(20);
    emitIpv4({ src: A('192.0.2.1'), dst: A('192.0.2.2'), protocol: IP_PROTO_ESP, payloadLen: 100, ttl: 64 }, buf, 0);
    // scapy: bytes(IP(src='192.0.2.1', dst='192.0.2.2', proto=50, ttl=64, id=0, len=120)).hex()
    expect(toHex(buf)).toBe('45000078000000004032f650c0000201c0000202');
    expect(parseIpv4(buf, 0, 20)).toBe(WireError.truncated); // total length 120 > 20 octets
    expect(new Ipv4Packet().bind(placed(buf, 0, 100), 0, 120)).toBe(0);
  });

  it('refreshes the checksum of a patched template in place', () => {
    const buf = OUTER_UDP.slice();
    buf[5] = 0x35; // identification 0x1235
    fillIpv4Checksum(buf, 0);
    const p = new Ipv4Packet();
    expect(p.bind(buf, 0, 36)).toBe(0);
    expect([p.identification, p.checksum]).toEqual([0x1235, 0xa3d8]);
  });
});

describe('IPv4 address text', () => {
  it('formats and parses dotted quads, rejecting anything else', () => {
    expect(formatIpv4(hex('c0000201'))).toBe('192.0.2.1');
    expect(formatIpv4(OUTER_UDP, 16)).toBe('192.0.2.2');
    expect(parseIpv4Address('255.0.10.1')).toEqual(hex('ff000a01'));
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.x', '1..3.4', ' 1.2.3.4', '1.2.3.4 ']) {
      expect(parseIpv4Address(bad), bad).toBeNull();
    }
  });
});
