import { describe, expect, it } from 'vitest';
import { pseudoSumV4, sumWords } from '../../src/wire/checksum.js';
import { WireError, wireErrorName } from '../../src/wire/errors.js';
import {
  UdpPacket,
  type UdpRepr,
  emitUdp,
  emitUdpHeader,
  fillUdpChecksumV4,
  fillUdpChecksumV6,
  parseUdp,
  udpBufferLen,
} from '../../src/wire/udp.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, placed, probeIsolated, snapshot, toHex } from '../helpers/hex.js';

// IP packets carrying UDP, built with scapy; decodes from
// `tshark -r F.pcap -V -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE`.
// The UDP datagram starts at octet 20 (IPv4) or 40 (IPv6).

// Internet Protocol Version 4, Src: 192.0.2.1, Dst: 192.0.2.2
// User Datagram Protocol, Src Port: 1234, Dst Port: 5678
//     Length: 10
//     Checksum: 0xf86c [correct]
// Data (2 bytes): 6869
const V4_DATA = hex(`
  45 00 00 1e 00 01 00 00 40 11 f6 ca c0 00 02 01
  c0 00 02 02 04 d2 16 2e 00 0a f8 6c 68 69`);

// Internet Protocol Version 4, Src: 192.0.2.1, Dst: 192.0.2.2
// User Datagram Protocol, Src Port: 4500, Dst Port: 4500
//     Length: 9
//     Checksum: 0x59af [correct]
// UDP Encapsulation of IPsec Packets
//     NAT-keepalive packet
const V4_KEEPALIVE = hex(`
  45 00 00 1d 00 07 00 00 40 11 f6 c5 c0 00 02 01
  c0 00 02 02 11 94 11 94 00 09 59 af ff`);

// Internet Protocol Version 4, Src: 192.0.2.1, Dst: 192.0.2.2
// User Datagram Protocol, Src Port: 4500, Dst Port: 4500
//     Length: 16
//     Checksum: 0x0000 [zero-value ignored]
// UDP Encapsulation of IPsec Packets
// Encapsulating Security Payload
//     ESP SPI: 0x00001001 (4097)
//     ESP Sequence: 1
const V4_ESP_NO_CHECKSUM = hex(`
  45 b8 00 24 12 34 40 00 40 11 a3 d9 c0 00 02 01
  c0 00 02 02 11 94 11 94 00 10 00 00 00 00 10 01
  00 00 00 01`);

// Internet Protocol Version 6, Src: 2001:db8::1, Dst: 2001:db8::2
// User Datagram Protocol, Src Port: 4500, Dst Port: 4500
//     Length: 11
//     Checksum: 0xbcd8 [correct]
// UDP payload (3 bytes): 616263
const V6_DATA = hex(`
  60 00 00 00 00 0b 11 40 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 01 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 02 11 94 11 94 00 0b bc d8
  61 62 63`);

/** [packet, UDP offset, repr, stored checksum, IPv6?] */
const CASES: [Uint8Array, number, UdpRepr, number, boolean][] = [
  [V4_DATA, 20, { srcPort: 1234, dstPort: 5678, payloadLen: 2 }, 0xf86c, false],
  [V4_KEEPALIVE, 20, { srcPort: 4500, dstPort: 4500, payloadLen: 1 }, 0x59af, false],
  [V4_ESP_NO_CHECKSUM, 20, { srcPort: 4500, dstPort: 4500, payloadLen: 8 }, 0, false],
  [V6_DATA, 40, { srcPort: 4500, dstPort: 4500, payloadLen: 3 }, 0xbcd8, true],
];

const VIEW_FIELDS = ['srcPort', 'dstPort', 'length', 'checksum', 'payloadOffset', 'payloadLen'] as const;

/** Checks the datagram of `packet` placed at `off`: the view's verdict with addresses from the IP header. */
function check(u: UdpPacket, buf: Uint8Array, off: number, v6: boolean): number {
  return v6 ? u.checkChecksumV6(buf, off + 8, buf, off + 24) : u.checkChecksumV4(buf, off + 12, buf, off + 16);
}

describe('UdpPacket view', () => {
  it('deconstructs the golden datagrams and verifies their checksums at offsets 0–7', () => {
    const u = new UdpPacket();
    for (const [packet, at, repr, sum, v6] of CASES) {
      for (const off of OFFSETS) {
        const buf = placed(packet, off, 3);
        expect(u.bind(buf, off + at, packet.length - at)).toBe(0);
        expect([u.srcPort, u.dstPort, u.length, u.checksum]).toEqual([repr.srcPort, repr.dstPort, repr.payloadLen + 8, sum]);
        expect([u.payloadOffset, u.payloadLen]).toEqual([off + at + 8, repr.payloadLen]);
        expect(check(u, buf, off, v6)).toBe(0);
      }
    }
  });

  it('treats checksum 0 as "none" over IPv4 but as invalid over IPv6 (RFC 8200 §8.1)', () => {
    const u = new UdpPacket();
    expect(u.bind(V4_ESP_NO_CHECKSUM, 20, 16)).toBe(0);
    expect(u.checkChecksumV4(V4_ESP_NO_CHECKSUM, 12, V4_ESP_NO_CHECKSUM, 16)).toBe(0);
    const zero = V6_DATA.slice();
    zero[46] = 0;
    zero[47] = 0;
    expect(u.bind(zero, 40, 11)).toBe(0);
    expect(u.checkChecksumV6(zero, 8, zero, 24)).toBe(WireError.zeroChecksum);
  });

  it('rejects a wrong checksum: a payload bit, a port, or the other address family', () => {
    const u = new UdpPacket();
    for (const [packet, at, , sum, v6] of CASES) {
      if (sum === 0) continue;
      const bad = packet.slice();
      bad[bad.length - 1] ^= 0x10;
      expect(u.bind(bad, at, bad.length - at)).toBe(0);
      expect(check(u, bad, 0, v6)).toBe(WireError.badChecksum);
      const addr = packet.slice();
      addr[v6 ? 23 : 15] ^= 1; // last octet of the source address
      expect(u.bind(addr, at, addr.length - at)).toBe(0);
      expect(check(u, addr, 0, v6)).toBe(WireError.badChecksum);
    }
  });

  it('checks length: header, Length ≥ 8, Length within the window; octets past Length are not payload (check_len)', () => {
    const u = new UdpPacket();
    for (let n = 0; n < 8; n++) expect(u.bind(V4_DATA, 20, n)).toBe(WireError.truncated);
    expect(u.bind(V4_DATA, 20, 9)).toBe(WireError.truncated); // Length 10 > 9 octets
    expect(u.bind(V4_DATA, 21, 10)).toBe(WireError.truncated); // past the array
    const short = V4_DATA.slice();
    short[25] = 7;
    expect(u.bind(short, 20, 10)).toBe(WireError.badLength);
    expect(u.bind(placed(V4_DATA, 0, 6), 20, 16)).toBe(0);
    expect([u.length, u.payloadLen]).toEqual([10, 2]);
  });

  it('never throws or reads outside its window on truncated and random input (seeded)', () => {
    const u = new UdpPacket();
    const seen = new Set<string>();
    const datagrams = CASES.map(([p, at]) => p.slice(at));
    for (const input of fuzzInputs(0x0d0d, datagrams, 3000, 40)) {
      const off = input.length % 8;
      const [a, b] = probeIsolated(input, off, (bytes, o, l) => {
        const err = u.bind(bytes, o, l);
        if (err !== 0) return wireErrorName(err);
        expect(u.payloadOffset + u.payloadLen).toBeLessThanOrEqual(o + l);
        // Addresses from a fixed array: only the datagram itself may vary the verdicts.
        const addrs = hex('20010db8000000000000000000000001 20010db8000000000000000000000002');
        return { ...snapshot(u, VIEW_FIELDS), v4: u.checkChecksumV4(addrs, 0, addrs, 4), v6: u.checkChecksumV6(addrs, 0, addrs, 16) };
      });
      expect(a).toEqual(b);
      seen.add(typeof a === 'string' ? a : 'ok');
      const [pa, pb] = probeIsolated(input, off, parseUdp);
      expect(pa).toEqual(pb);
    }
    expect([...seen].sort()).toEqual(['badLength', 'ok', 'truncated']);
  });
});

describe('UdpRepr', () => {
  it('parses every golden datagram at offsets 0–7', () => {
    for (const [packet, at, repr] of CASES) {
      for (const off of OFFSETS) expect(parseUdp(placed(packet, off), off + at, packet.length - at)).toEqual(repr);
    }
    expect(parseUdp(V4_DATA, 20, 7)).toBe(WireError.truncated);
  });

  it('emits every golden datagram (header, then checksum over the pseudo-header) into 0xa5 buffers at offsets 0–7', () => {
    for (const [packet, at, repr, sum, v6] of CASES) {
      for (const off of OFFSETS) {
        const buf = filled(off + packet.length + 2);
        buf.set(packet.subarray(0, at), off); // IP header
        buf.set(packet.subarray(at + 8), off + at + 8); // payload
        expect(emitUdp(repr, buf, off + at)).toBe(8);
        if (sum !== 0) {
          if (v6) fillUdpChecksumV6(buf, off + at, buf, off + 8, buf, off + 24);
          else fillUdpChecksumV4(buf, off + at, buf, off + 12, buf, off + 16);
        }
        expect(toHex(buf, off, packet.length)).toBe(toHex(packet));
        expect([...buf.subarray(0, off), ...buf.subarray(off + packet.length)].every((b) => b === FILL)).toBe(true);
      }
    }
  });

  it('gives buffer_len 8 and sends a computed checksum of 0 as 0xffff (RFC 768)', () => {
    expect(udpBufferLen(CASES[0]![2])).toBe(8);
    // Choose the 2-octet payload so that the ones' complement sum is 0xffff, i.e. the checksum 0.
    const buf = V4_DATA.slice();
    buf[28] = 0;
    buf[29] = 0;
    buf[26] = 0;
    buf[27] = 0;
    const partial = sumWords(buf, 20, 10, pseudoSumV4(buf, 12, buf, 16, 17, 10));
    let folded = partial;
    while (folded > 0xffff) folded = (folded >>> 16) + (folded & 0xffff);
    const word = 0xffff - folded;
    buf[28] = word >>> 8;
    buf[29] = word & 0xff;
    fillUdpChecksumV4(buf, 20, buf, 12, buf, 16);
    expect(toHex(buf, 26, 2)).toBe('ffff');
    const u = new UdpPacket();
    expect(u.bind(buf, 20, 10)).toBe(0);
    expect(u.checkChecksumV4(buf, 12, buf, 16)).toBe(0);
  });

  it('emits the hot-path header like emitUdp', () => {
    const a = filled(8);
    const b = filled(8);
    emitUdpHeader(a, 0, 4500, 4500, 1400);
    emitUdp({ srcPort: 4500, dstPort: 4500, payloadLen: 1400 }, b, 0);
    expect(toHex(a)).toBe('1194119405800000');
    expect(toHex(b)).toBe(toHex(a));
  });
});
