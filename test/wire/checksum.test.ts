import { describe, expect, it } from 'vitest';
import { foldChecksum, internetChecksum, pseudoSumV4, pseudoSumV6, sumWords } from '../../src/wire/checksum.js';
import { OFFSETS, hex, placed, randomBytes, rng } from '../helpers/hex.js';

/** Straightforward RFC 1071 reference: add words as big integers, fold at the end. */
function reference(bytes: Uint8Array): number {
  let sum = 0n;
  for (let i = 0; i < bytes.length; i += 2) sum += BigInt((bytes[i]! << 8) | (bytes[i + 1] ?? 0));
  while (sum > 0xffffn) sum = (sum & 0xffffn) + (sum >> 16n);
  return Number(~sum & 0xffffn);
}

// Ethernet/802.1Q/IPv4/UDP, scapy-built; tshark -V (ip/udp checksum checks on):
// Internet Protocol Version 4, Src: 192.0.2.1, Dst: 192.0.2.2
//     Total Length: 30
//     Protocol: UDP (17)
//     Header Checksum: 0xf6ca [correct]
// User Datagram Protocol, Src Port: 1234, Dst Port: 5678
//     Length: 10
//     Checksum: 0xf86c [correct]
const IPV4_UDP = hex(`
  45 00 00 1e 00 01 00 00 40 11 f6 ca c0 00 02 01
  c0 00 02 02 04 d2 16 2e 00 0a f8 6c 68 69`);

// IPv6/UDP 4500; tshark -V:
// Internet Protocol Version 6, Src: 2001:db8::1, Dst: 2001:db8::2
//     Payload Length: 11
//     Next Header: UDP (17)
// User Datagram Protocol, Src Port: 4500, Dst Port: 4500
//     Length: 11
//     Checksum: 0xbcd8 [correct]
const IPV6_UDP = hex(`
  60 00 00 00 00 0b 11 40 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 01 20 01 0d b8 00 00 00 00
  00 00 00 00 00 00 00 02 11 94 11 94 00 0b bc d8
  61 62 63`);

describe('internet checksum (RFC 1071)', () => {
  it('matches the worked example of RFC 1071 §3', () => {
    // 0001 + f203 + f4f5 + f6f7 = 2ddf0 → ddf2 folded; checksum is its complement.
    const b = hex('00 01 f2 03 f4 f5 f6 f7');
    expect(foldChecksum(sumWords(b, 0, 8))).toBe(0xddf2);
    expect(internetChecksum(b, 0, 8)).toBe(0x220d);
  });

  it('computes the IPv4 header checksum tshark calls correct, at offsets 0–7', () => {
    for (const off of OFFSETS) {
      const b = placed(IPV4_UDP, off, 3);
      expect(internetChecksum(b, off, 20), `offset ${off}`).toBe(0); // stored checksum verifies
      b[off + 10] = 0;
      b[off + 11] = 0;
      expect(internetChecksum(b, off, 20), `offset ${off}`).toBe(0xf6ca);
    }
  });

  it('pads an odd final octet with zero', () => {
    expect(internetChecksum(hex('ab'), 0, 1)).toBe(~0xab00 & 0xffff);
    expect(internetChecksum(hex('12 34 56'), 0, 3)).toBe(reference(hex('12 34 56')));
  });

  it('returns 0xffff over all-zero data and ignores octets outside the range', () => {
    const b = hex('ff ff 00 00 00 00 ff');
    expect(internetChecksum(b, 2, 4)).toBe(0xffff);
    expect(internetChecksum(b, 2, 0)).toBe(0xffff);
  });

  it('agrees with a BigInt reference on random data up to 70000 octets (crosses the fold chunk)', () => {
    const next = rng(1071);
    for (const n of [1, 2, 3, 19, 20, 64, 1400, 1501, 9018, 32767, 32768, 32769, 65535, 70000]) {
      const data = randomBytes(next, n);
      for (const off of [0, 3]) {
        const b = placed(data, off, 5, 0xff);
        expect(internetChecksum(b, off, n), `n=${n} off=${off}`).toBe(reference(data));
      }
    }
    // Worst case for the accumulator: every word 0xffff.
    expect(internetChecksum(new Uint8Array(70000).fill(0xff), 0, 70000)).toBe(reference(new Uint8Array(70000).fill(0xff)));
  });

  it('sums in pieces: a seed carries a partial sum across even-length ranges', () => {
    const data = randomBytes(rng(7), 301);
    const whole = internetChecksum(data, 0, 301);
    const part = sumWords(data, 0, 100);
    expect(internetChecksum(data, 100, 201, part)).toBe(whole);
    expect(internetChecksum(data, 100, 201, sumWords(data, 0, 50, sumWords(data, 50, 50)))).toBe(whole);
  });
});

describe('pseudo-header sums', () => {
  it('IPv4 (RFC 768): UDP checksum over pseudo-header + datagram verifies, at offsets 0–7', () => {
    for (const off of OFFSETS) {
      const b = placed(IPV4_UDP, off);
      const seed = pseudoSumV4(b, off + 12, b, off + 16, 17, 10);
      expect(internetChecksum(b, off + 20, 10, seed)).toBe(0);
      b[off + 26] = 0;
      b[off + 27] = 0;
      expect(internetChecksum(b, off + 20, 10, seed)).toBe(0xf86c);
    }
  });

  it('IPv6 (RFC 8200 §8.1): UDP checksum over pseudo-header + datagram verifies, at offsets 0–7', () => {
    for (const off of OFFSETS) {
      const b = placed(IPV6_UDP, off);
      const seed = pseudoSumV6(b, off + 8, b, off + 24, 17, 11);
      expect(internetChecksum(b, off + 40, 11, seed)).toBe(0);
      b[off + 46] = 0;
      b[off + 47] = 0;
      expect(internetChecksum(b, off + 40, 11, seed)).toBe(0xbcd8);
    }
  });

  it('reads addresses from separate arrays and a 32-bit IPv6 upper-layer length', () => {
    const src = hex('20010db8000000000000000000000001');
    const dst = hex('20010db8000000000000000000000002');
    expect(pseudoSumV6(src, 0, dst, 0, 17, 11)).toBe(pseudoSumV6(IPV6_UDP, 8, IPV6_UDP, 24, 17, 11));
    // A jumbogram length contributes both halves: 0x00010002 → 0x0001 + 0x0002.
    expect(pseudoSumV6(src, 0, dst, 0, 17, 0x10002) - pseudoSumV6(src, 0, dst, 0, 17, 0)).toBe(3);
    expect(pseudoSumV4(hex('c0000201'), 0, hex('c0000202'), 0, 17, 10)).toBe(pseudoSumV4(IPV4_UDP, 12, IPV4_UDP, 16, 17, 10));
  });
});
