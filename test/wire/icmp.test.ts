import { describe, expect, it } from 'vitest';
import { WireError, wireErrorName } from '../../src/wire/errors.js';
import {
  ICMPV4_MAX_QUOTE_BYTES,
  ICMPV6_MAX_QUOTE_BYTES,
  IcmpPacket,
  type IcmpRepr,
  emitIcmpv4,
  emitIcmpv4FragNeeded,
  emitIcmpv6,
  emitIcmpv6PacketTooBig,
  icmpBufferLen,
  icmpv4FragNeeded,
  icmpv6PacketTooBig,
  parseIcmpv4,
  parseIcmpv6,
} from '../../src/wire/icmp.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, placed, probeIsolated, randomBytes, rng, snapshot, toHex } from '../helpers/hex.js';

// IP packets carrying ICMP, built with scapy; decodes from `tshark -r F.pcap -V`.
// The ICMP message starts at octet 20 (IPv4) or 40 (IPv6).

// Internet Protocol Version 4, Src: 192.0.2.254, Dst: 192.0.2.1
//     Protocol: ICMP (1)
// Internet Control Message Protocol
//     Type: 3 (Destination unreachable)
//     Code: 4 (Fragmentation needed)
//     Checksum: 0xbe91 [correct]
//     Unused: 0000
//     MTU of next hop: 1400
//     Internet Protocol Version 4, Src: 192.0.2.1, Dst: 198.51.100.9
//         Total Length: 1500
//         Flags: 0x2, Don't fragment
//         Protocol: UDP (17)
//     User Datagram Protocol, Src Port: 4500, Dst Port: 4500
//         Length: 1480
// Encapsulating Security Payload
//     ESP SPI: 0x00001001 (4097)
//     ESP Sequence: 1
const V4_FRAG_NEEDED = hex(`
  45 00 00 40 00 00 00 00 40 01 f5 bd c0 00 02 fe
  c0 00 02 01 03 04 be 91 00 00 05 78 45 00 05 dc
  00 42 40 00 40 11 48 91 c0 00 02 01 c6 33 64 09
  11 94 11 94 05 c8 00 00 00 00 10 01 00 00 00 01`);

// Internet Protocol Version 6, Src: 2001:db8::fe, Dst: 2001:db8::1
//     Payload Length: 60
//     Next Header: ICMPv6 (58)
// Internet Control Message Protocol v6
//     Type: Packet Too Big (2)
//     Code: 0
//     Checksum: 0x2112 [correct]
//     MTU: 1280
//     Internet Protocol Version 6, Src: 2001:db8::1, Dst: 2001:db8:1::9
//         Payload Length: 1452
//         Next Header: Encap Security Payload (50)
//     Encapsulating Security Payload
//         ESP SPI: 0x00001001 (4097)
//         ESP Sequence: 2
const V6_TOO_BIG = hex(`
  60 00 00 00 00 3c 3a 40 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 fe 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 01 02 00 21 12 00 00 05 00
  60 00 00 00 05 ac 32 40 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 01 20 01 0d b8 00 01 00 00
  00 00 00 00 00 00 00 09 00 00 10 01 00 00 00 02
  aa bb cc dd`);

// Internet Protocol Version 4, Src: 192.0.2.1, Dst: 192.0.2.2
// Internet Control Message Protocol
//     Type: 8 (Echo (ping) request)
//     Code: 0
//     Checksum: 0x06f6 [correct]
//     Identifier (BE): 4660 (0x1234)
//     Sequence Number (BE): 5 (0x0005)
//     Data (4 bytes): 70696e67 ("ping")
const V4_ECHO = hex(`
  45 00 00 20 00 00 00 00 40 01 f6 d9 c0 00 02 01
  c0 00 02 02 08 00 06 f6 12 34 00 05 70 69 6e 67`);

const V6_SRC = V6_TOO_BIG.slice(8, 24);
const V6_DST = V6_TOO_BIG.slice(24, 40);

/** [packet, ICMP offset, repr, IPv6?] */
const CASES: [Uint8Array, number, IcmpRepr, boolean][] = [
  [V4_FRAG_NEEDED, 20, { type: 3, code: 4, rest: 1400, data: V4_FRAG_NEEDED.slice(28) }, false],
  [V6_TOO_BIG, 40, { type: 2, code: 0, rest: 1280, data: V6_TOO_BIG.slice(48) }, true],
  [V4_ECHO, 20, { type: 8, code: 0, rest: 0x12340005, data: hex('70696e67') }, false],
];

const VIEW_FIELDS = ['type', 'code', 'checksum', 'rest', 'nextHopMtu', 'mtu', 'dataOffset', 'dataLen'] as const;

describe('IcmpPacket view', () => {
  it('deconstructs frag-needed, packet-too-big and echo at offsets 0–7, checksums verified', () => {
    const m = new IcmpPacket();
    for (const off of OFFSETS) {
      const v4 = placed(V4_FRAG_NEEDED, off, 2);
      expect(m.bind(v4, off + 20, 44)).toBe(0);
      expect([m.type, m.code, m.checksum, m.nextHopMtu, m.dataOffset, m.dataLen]).toEqual([3, 4, 0xbe91, 1400, off + 28, 36]);
      expect(m.checksumValidV4()).toBe(true);

      const v6 = placed(V6_TOO_BIG, off);
      expect(m.bind(v6, off + 40, 60)).toBe(0);
      expect([m.type, m.code, m.checksum, m.mtu, m.dataOffset, m.dataLen]).toEqual([2, 0, 0x2112, 1280, off + 48, 52]);
      expect(m.checksumValidV6(v6, off + 8, v6, off + 24)).toBe(true);
      expect(m.checksumValidV6(V6_DST, 0, V6_DST, 0)).toBe(false); // another source address
      expect(m.checksumValidV4()).toBe(false); // v6 checksum needs the pseudo-header

      expect(m.bind(placed(V4_ECHO, off), off + 20, 12)).toBe(0);
      expect([m.type, m.code, m.rest, m.dataLen]).toEqual([8, 0, 0x12340005, 4]);
      expect(m.checksumValidV4()).toBe(true);
    }
  });

  it('checks length: 8 octets of header (check_len)', () => {
    const m = new IcmpPacket();
    for (let n = 0; n < 8; n++) expect(m.bind(V4_ECHO, 20, n)).toBe(WireError.truncated);
    expect(m.bind(V4_ECHO, 20, 8)).toBe(0);
    expect(m.dataLen).toBe(0);
    expect(m.bind(V4_ECHO, 21, 12)).toBe(WireError.truncated);
  });

  it('never throws or reads outside its window on truncated and random input (seeded)', () => {
    const m = new IcmpPacket();
    const messages = CASES.map(([p, at]) => p.slice(at));
    for (const input of fuzzInputs(0x1c1c, messages, 3000, 80)) {
      const off = input.length % 8;
      const [a, b] = probeIsolated(input, off, (bytes, o, l) => {
        const err = m.bind(bytes, o, l);
        if (err !== 0) return wireErrorName(err);
        expect(m.dataOffset + m.dataLen).toBe(o + l);
        return { ...snapshot(m, VIEW_FIELDS), v4: m.checksumValidV4(), v6: m.checksumValidV6(V6_SRC, 0, V6_DST, 0) };
      });
      expect(a).toEqual(b);
      for (const parse of [parseIcmpv4, (x: Uint8Array, o: number, l: number) => parseIcmpv6(x, o, l, V6_SRC, V6_DST)]) {
        const [pa, pb] = probeIsolated(input, off, parse);
        expect(pa).toEqual(pb);
      }
    }
  });
});

describe('IcmpRepr', () => {
  it('parses every golden message at offsets 0–7 and rejects a bad checksum', () => {
    for (const [packet, at, repr, v6] of CASES) {
      for (const off of OFFSETS) {
        const buf = placed(packet, off, 1);
        const got = v6 ? parseIcmpv6(buf, off + at, packet.length - at, V6_SRC, V6_DST) : parseIcmpv4(buf, off + at, packet.length - at);
        expect(got).toEqual(repr);
      }
      const bad = packet.slice();
      bad[bad.length - 1] ^= 0x80;
      const got = v6 ? parseIcmpv6(bad, at, bad.length - at, V6_SRC, V6_DST) : parseIcmpv4(bad, at, bad.length - at);
      expect(got).toBe(WireError.badChecksum);
    }
    expect(parseIcmpv4(V4_ECHO, 20, 7)).toBe(WireError.truncated);
  });

  it('emits every golden message with its checksum into 0xa5 buffers at offsets 0–7', () => {
    for (const [packet, at, repr, v6] of CASES) {
      const n = icmpBufferLen(repr);
      expect(n).toBe(packet.length - at);
      for (const off of OFFSETS) {
        const buf = filled(off + n + 3);
        expect(v6 ? emitIcmpv6(repr, buf, off, V6_SRC, V6_DST) : emitIcmpv4(repr, buf, off)).toBe(n);
        expect(toHex(buf, off, n)).toBe(toHex(packet, at));
        expect([...buf.subarray(0, off), ...buf.subarray(off + n)].every((b) => b === FILL)).toBe(true);
      }
    }
  });

  it('builds frag-needed and packet-too-big Reprs that quote the offending packet', () => {
    const orig4 = V4_FRAG_NEEDED.slice(28);
    expect(icmpv4FragNeeded(1400, orig4)).toEqual(CASES[0]![2]);
    const orig6 = V6_TOO_BIG.slice(48);
    expect(icmpv6PacketTooBig(1280, orig6)).toEqual(CASES[1]![2]);
  });
});

describe('PMTU error emitters', () => {
  it('emit the golden messages straight from the offending packet at offsets 0–7', () => {
    for (const off of OFFSETS) {
      const orig4 = V4_FRAG_NEEDED.slice(28);
      const buf = filled(off + 44 + 2);
      expect(emitIcmpv4FragNeeded(buf, off, 1400, orig4, 0, orig4.length)).toBe(44);
      expect(toHex(buf, off, 44)).toBe(toHex(V4_FRAG_NEEDED, 20));
      expect([...buf.subarray(0, off), ...buf.subarray(off + 44)].every((b) => b === FILL)).toBe(true);

      const orig6 = V6_TOO_BIG.slice(48);
      const buf6 = filled(off + 60 + 2);
      expect(emitIcmpv6PacketTooBig(buf6, off, 1280, orig6, 0, orig6.length, V6_SRC, 0, V6_DST, 0)).toBe(60);
      expect(toHex(buf6, off, 60)).toBe(toHex(V6_TOO_BIG, 40));
      expect(buf6[off + 60]).toBe(FILL);
    }
  });

  it('cut the quote to 576 − 28 octets (RFC 1812 §4.3.2.3) and 1280 − 48 (RFC 4443 §2.4)', () => {
    const big = randomBytes(rng(9), 1500);
    const m = new IcmpPacket();
    const buf = filled(1600);
    const n4 = emitIcmpv4FragNeeded(buf, 0, 1400, big, 0, big.length);
    expect(n4).toBe(8 + ICMPV4_MAX_QUOTE_BYTES);
    expect(ICMPV4_MAX_QUOTE_BYTES).toBe(548);
    expect(m.bind(buf, 0, n4)).toBe(0);
    expect([m.checksumValidV4(), m.nextHopMtu, toHex(buf, 8, 548) === toHex(big, 0, 548)]).toEqual([true, 1400, true]);
    expect(buf[n4]).toBe(FILL);

    const n6 = emitIcmpv6PacketTooBig(buf, 0, 1280, big, 0, big.length, V6_SRC, 0, V6_DST, 0);
    expect(n6).toBe(8 + ICMPV6_MAX_QUOTE_BYTES);
    expect(40 + n6).toBe(1280);
    expect(m.bind(buf, 0, n6)).toBe(0);
    expect([m.checksumValidV6(V6_SRC, 0, V6_DST, 0), m.mtu]).toEqual([true, 1280]);
    expect(icmpv4FragNeeded(1400, big).data.length).toBe(548);
    expect(icmpv6PacketTooBig(1280, big).data.length).toBe(1232);
  });

  it('quote in place: the offending packet may already sit where the message body goes, or overlap its header', () => {
    const orig4 = V4_FRAG_NEEDED.slice(28);
    for (const shift of [-12, -8, -3, 0, 3, 8, 40]) {
      // The offending packet sits at 48 in the buffer; the message is written at 48 - 8 + shift.
      const buf = filled(200);
      buf.set(orig4, 48);
      const at = 40 + shift;
      expect(emitIcmpv4FragNeeded(buf, at, 1400, buf, 48, orig4.length)).toBe(44);
      expect(toHex(buf, at, 44), `shift ${shift}`).toBe(toHex(V4_FRAG_NEEDED, 20));
    }
    // A second view of the same memory counts as the same buffer.
    const slab = filled(200);
    const view = slab.subarray(30);
    slab.set(orig4, 50);
    expect(emitIcmpv4FragNeeded(view, 16, 1400, slab, 50, orig4.length)).toBe(44); // writes at slab 46: body at 54 > 50
    expect(toHex(slab, 46, 44)).toBe(toHex(V4_FRAG_NEEDED, 20));
  });
});
