import { describe, expect, it } from 'vitest';
import { ETHERTYPE_IPV4, ETHERTYPE_TEB } from '../../src/wire/constants.js';
import { WireError, wireErrorName } from '../../src/wire/errors.js';
import {
  GrePacket,
  type GreRepr,
  emitGre,
  emitGreKeyed,
  greBufferLen,
  greHeaderLen,
  parseGre,
} from '../../src/wire/gre.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, placed, probeIsolated, snapshot, toHex } from '../helpers/hex.js';

// GRE packets cut from IPv4/GRE packets built with scapy (outer IPv4 192.0.2.1 → 192.0.2.2,
// protocol 47, omitted). Decodes are `tshark -r F.pcap -V`.

// Inner frame of the Ethernet payloads below (see ethernet.test.ts):
// Ethernet II, Src: 02:00:00:00:00:01, Dst: 02:00:00:00:00:02
// 802.1Q Virtual LAN, PRI: 5, DEI: 1, ID: 100
// Internet Protocol Version 4, Src: 10.0.0.1, Dst: 10.0.0.2 / ICMP echo request
const INNER = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 81 00 b0 64
  08 00 45 00 00 1c 00 01 00 00 40 01 66 de 0a 00
  00 01 0a 00 00 02 08 00 f7 ff 00 00 00 00`);

// Generic Routing Encapsulation (Transparent Ethernet bridging)
//     Flags and Version: 0x2000
//         0... .... .... .... = Checksum Bit: No
//         .0.. .... .... .... = Routing Bit: No
//         ..1. .... .... .... = Key Bit: Yes
//         ...0 .... .... .... = Sequence Number Bit: No
//         .... 0... .... .... = Strict Source Route Bit: No
//         .... .000 .... .... = Recursion control: 0
//         .... .... 0000 0... = Flags (Reserved): 0
//         .... .... .... .000 = Version: GRE (0)
//     Protocol Type: Transparent Ethernet bridging (0x6558)
//     Key: 0x00006400
// Ethernet II, Src: 02:00:00:00:00:01 (02:00:00:00:00:01), Dst: 02:00:00:00:00:02 (02:00:00:00:00:02)
const KEYED = hex(`20 00 65 58 00 00 64 00 ${toHex(INNER)}`);

// Generic Routing Encapsulation (Transparent Ethernet bridging)
//     Flags and Version: 0xb000
//         1... .... .... .... = Checksum Bit: Yes
//         ..1. .... .... .... = Key Bit: Yes
//         ...1 .... .... .... = Sequence Number Bit: Yes
//         .... .... .... .000 = Version: GRE (0)
//     Protocol Type: Transparent Ethernet bridging (0x6558)
//     Checksum: 0x4937 [correct]
//     [Checksum Status: Good]
//     Offset: 0
//     Key: 0x00006400
//     Sequence Number: 7
// Ethernet II, Src: 02:00:00:00:00:01 (02:00:00:00:00:01), Dst: 02:00:00:00:00:02 (02:00:00:00:00:02)
const CKS_KEY_SEQ = hex(`b0 00 65 58 49 37 00 00 00 00 64 00 00 00 00 07 ${toHex(INNER)}`);

// Generic Routing Encapsulation (IP)
//     Flags and Version: 0x0000
//     Protocol Type: IP (0x0800)
// Internet Protocol Version 4, Src: 10.0.0.1, Dst: 10.0.0.2
const PLAIN = hex(`
  00 00 08 00 45 00 00 1c 00 01 00 00 40 01 66 de
  0a 00 00 01 0a 00 00 02 08 00 f7 ff 00 00 00 00`);

const GOLDENS = [KEYED, CKS_KEY_SEQ, PLAIN];

const REPRS: [Uint8Array, GreRepr, number][] = [
  [KEYED, { protocolType: ETHERTYPE_TEB, key: 0x6400, sequence: null, checksum: false }, 8],
  [CKS_KEY_SEQ, { protocolType: ETHERTYPE_TEB, key: 0x6400, sequence: 7, checksum: true }, 16],
  [PLAIN, { protocolType: ETHERTYPE_IPV4, key: null, sequence: null, checksum: false }, 4],
];

const VIEW_FIELDS = [
  'hasChecksum',
  'hasKey',
  'hasSequence',
  'reserved0',
  'version',
  'protocolType',
  'checksum',
  'key',
  'sequence',
  'headerLen',
  'payloadOffset',
  'payloadLen',
] as const;

/** `packet` with its first two octets (flags and version) replaced. */
function withFlags(packet: Uint8Array, flags: number): Uint8Array {
  const p = packet.slice();
  p[0] = flags >>> 8;
  p[1] = flags & 0xff;
  return p;
}

describe('GrePacket view', () => {
  it('deconstructs keyed, checksum+key+sequence and plain packets at offsets 0–7', () => {
    const g = new GrePacket();
    for (const off of OFFSETS) {
      expect(g.bind(placed(KEYED, off, 3), off, KEYED.length)).toBe(0);
      expect([g.hasChecksum, g.hasKey, g.hasSequence, g.version, g.reserved0]).toEqual([false, true, false, 0, 0]);
      expect([g.protocolType, g.key, g.checksum, g.sequence]).toEqual([0x6558, 0x6400, 0, 0]);
      expect([g.headerLen, g.payloadOffset, g.payloadLen]).toEqual([8, off + 8, INNER.length]);

      expect(g.bind(placed(CKS_KEY_SEQ, off), off, CKS_KEY_SEQ.length)).toBe(0);
      expect([g.hasChecksum, g.hasKey, g.hasSequence]).toEqual([true, true, true]);
      expect([g.protocolType, g.checksum, g.key, g.sequence]).toEqual([0x6558, 0x4937, 0x6400, 7]);
      expect([g.headerLen, g.payloadOffset, g.payloadLen]).toEqual([16, off + 16, INNER.length]);

      expect(g.bind(placed(PLAIN, off), off, PLAIN.length)).toBe(0);
      expect([g.hasChecksum, g.hasKey, g.hasSequence, g.protocolType, g.key]).toEqual([false, false, false, 0x0800, 0]);
      expect([g.headerLen, g.payloadLen]).toEqual([4, 28]);
    }
  });

  it('reads a key with the top bit set as an unsigned 32-bit number', () => {
    const g = new GrePacket();
    expect(g.bind(hex('20 00 65 58 ff ff ff fe'), 0, 8)).toBe(0);
    expect(g.key).toBe(0xfffffffe);
  });

  it('rejects version ≠ 0, reserved bits 1, 4, 5; ignores bits 6–12 (RFC 2784 §2.3)', () => {
    const g = new GrePacket();
    for (const v of [1, 2, 7]) expect(g.bind(withFlags(KEYED, 0x2000 | v), 0, KEYED.length), `version ${v}`).toBe(WireError.badVersion);
    for (const bit of [1, 4, 5]) {
      expect(g.bind(withFlags(KEYED, 0x2000 | (0x8000 >>> bit)), 0, KEYED.length), `bit ${bit}`).toBe(WireError.malformed);
    }
    for (const bit of [6, 7, 8, 9, 10, 11, 12]) {
      expect(g.bind(withFlags(KEYED, 0x2000 | (0x8000 >>> bit)), 0, KEYED.length), `bit ${bit}`).toBe(0);
      expect(g.reserved0).toBe(0x8000 >>> bit);
      expect([g.key, g.headerLen]).toEqual([0x6400, 8]);
    }
  });

  it('verifies the checksum over header and payload; can be told not to', () => {
    const g = new GrePacket();
    const bad = CKS_KEY_SEQ.slice();
    bad[bad.length - 1] ^= 0x01; // one payload bit
    expect(g.bind(bad, 0, bad.length)).toBe(WireError.badChecksum);
    expect(g.bind(bad, 0, bad.length, false)).toBe(0);
    expect(g.checksum).toBe(0x4937);
    // A payload cut short by the caller no longer verifies either (the last 6 octets are f7 ff 00 00 00 00).
    expect(g.bind(CKS_KEY_SEQ, 0, CKS_KEY_SEQ.length - 6)).toBe(WireError.badChecksum);
  });

  it('checks length: the optional fields the flags announce must fit (check_len)', () => {
    const g = new GrePacket();
    for (const [packet, , hdr] of REPRS) {
      for (let n = 0; n < hdr; n++) expect(g.bind(packet, 0, n), `${n} octets`).toBe(WireError.truncated);
    }
    expect(g.bind(KEYED, 0, 8)).toBe(0);
    expect(g.payloadLen).toBe(0);
    expect(g.bind(KEYED, 1, KEYED.length)).toBe(WireError.truncated);
    expect(greHeaderLen(0xb000)).toBe(16);
    expect(greHeaderLen(0x9000)).toBe(12);
  });

  it('never throws or reads outside its window on truncated and random input (seeded)', () => {
    const g = new GrePacket();
    const seen = new Set<string>();
    for (const input of fuzzInputs(0x6e6e, GOLDENS, 3000, 40)) {
      const off = input.length % 8;
      const [a, b] = probeIsolated(input, off, (bytes, o, l) => {
        const err = g.bind(bytes, o, l);
        if (err !== 0) return wireErrorName(err);
        expect(g.payloadOffset + g.payloadLen).toBe(o + l);
        expect(g.payloadLen).toBeGreaterThanOrEqual(0);
        return snapshot(g, VIEW_FIELDS);
      });
      expect(a).toEqual(b);
      seen.add(typeof a === 'string' ? a : 'ok');
      const [pa, pb] = probeIsolated(input, off, parseGre);
      expect(pa).toEqual(pb);
    }
    expect([...seen].sort()).toEqual(['badChecksum', 'badVersion', 'malformed', 'ok', 'truncated']);
  });
});

describe('GreRepr', () => {
  it('parses every golden packet at offsets 0–7', () => {
    for (const [packet, repr] of REPRS) {
      for (const off of OFFSETS) expect(parseGre(placed(packet, off, 2), off, packet.length)).toEqual(repr);
    }
    expect(parseGre(withFlags(KEYED, 0x2001), 0, KEYED.length)).toBe(WireError.badVersion);
  });

  it('emits every golden header (checksum over the payload in place) into 0xa5 buffers at offsets 0–7', () => {
    for (const [packet, repr, hdr] of REPRS) {
      for (const off of OFFSETS) {
        const buf = filled(off + packet.length + 3);
        buf.set(packet.subarray(hdr), off + hdr); // payload first, as the pipeline has it
        expect(emitGre(repr, buf, off, packet.length - hdr)).toBe(hdr);
        expect(toHex(buf, off, packet.length)).toBe(toHex(packet));
        expect([...buf.subarray(0, off), ...buf.subarray(off + packet.length)].every((b) => b === FILL)).toBe(true);
      }
    }
  });

  it('emits the keyed header on the hot path, same as emitGre', () => {
    for (const off of OFFSETS) {
      const buf = filled(off + 9);
      expect(emitGreKeyed(buf, off, ETHERTYPE_TEB, 0x6400)).toBe(8);
      expect(toHex(buf, off, 8)).toBe(toHex(KEYED, 0, 8));
      expect(buf[off + 8]).toBe(FILL);
    }
    const buf = filled(8);
    emitGreKeyed(buf, 0, ETHERTYPE_TEB, 0xfedcba98);
    expect(parseGre(buf, 0, 8)).toEqual({ protocolType: ETHERTYPE_TEB, key: 0xfedcba98, sequence: null, checksum: false });
  });

  it('gives the header length as buffer_len', () => {
    expect(REPRS.map(([, r]) => greBufferLen(r))).toEqual([8, 16, 4]);
    expect(greBufferLen({ protocolType: 0, key: null, sequence: 0, checksum: true })).toBe(12);
  });

  it('round-trips every flag combination with checksum over a random payload', () => {
    const payload = hex('00 11 22 33 44 55 66');
    for (let m = 0; m < 8; m++) {
      const repr: GreRepr = { protocolType: 0x88b5, key: m & 1 ? 0x80000001 : null, sequence: m & 2 ? 0xffffffff : null, checksum: (m & 4) !== 0 };
      const n = greBufferLen(repr);
      const buf = filled(n + payload.length);
      buf.set(payload, n);
      emitGre(repr, buf, 0, payload.length);
      expect(parseGre(buf, 0, buf.length)).toEqual(repr);
    }
  });
});
