import { describe, expect, it } from 'vitest';
import { IP_PROTO_GRE, IP_PROTO_NONE } from '../../src/wire/constants.js';
import { WireError, wireErrorName } from '../../src/wire/errors.js';
import {
  EspPacket,
  EspTrailer,
  emitEsp,
  emitEspHeader,
  emitEspTrailer,
  emitEspTrailerFields,
  espBufferLen,
  espPadLength,
  espPaddingValid,
  espTrailerBufferLen,
  parseEsp,
  parseEspTrailer,
} from '../../src/wire/esp.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, placed, probeIsolated, snapshot, toHex } from '../helpers/hex.js';

// An ESP packet with NULL encryption (payload in clear, no IV) and a 16-octet ICV
// c0…cf, cut from IPv4 192.0.2.1 → 192.0.2.2 protocol 50. Decode:
// `tshark -r esp.pcap -V -o esp.enable_null_encryption_decode_heuristic:TRUE`
// Encapsulating Security Payload
//     ESP SPI: 0x00001001 (4097)
//     ESP Sequence: 1
//     Pad: 0102
//     ESP Pad Length: 2
//     Next header: Generic Routing Encapsulation (0x2f)
//     ESP ICV: c0c1c2c3c4c5c6c7c8c9cacbcccdcecf [unchecked]
// Generic Routing Encapsulation (Transparent Ethernet bridging)
//     Flags and Version: 0x2000
//     Protocol Type: Transparent Ethernet bridging (0x6558)
//     Key: 0x00006400
// Ethernet II, Src: 02:00:00:00:00:01, Dst: 02:00:00:00:00:02
// 802.1Q Virtual LAN, PRI: 5, DEI: 1, ID: 100
// Internet Protocol Version 4, Src: 10.0.0.1, Dst: 10.0.0.2
//     Total Length: 30
// Internet Control Message Protocol
//     Type: 8 (Echo (ping) request)
//     Checksum: 0x8f96 [correct]
//     Data (2 bytes): 6869
const ESP_NULL = hex(`
  00 00 10 01 00 00 00 01 20 00 65 58 00 00 64 00
  02 00 00 00 00 02 02 00 00 00 00 01 81 00 b0 64
  08 00 45 00 00 1e 00 01 00 00 40 01 66 dc 0a 00
  00 01 0a 00 00 02 08 00 8f 96 00 00 00 00 68 69
  01 02 02 2f c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb
  cc cd ce cf`);
const ICV_BYTES = 16;
/** The decrypted range of ESP_NULL: payload (56) + padding (2) + trailer (2). */
const PLAIN_OFF = 8;
const PLAIN_LEN = ESP_NULL.length - 8 - ICV_BYTES;
const PAYLOAD_LEN = 56;

const TRAILER_FIELDS = ['padLength', 'nextHeader', 'payloadOffset', 'payloadLen', 'padOffset'] as const;

describe('EspPacket view', () => {
  it('deconstructs the header at offsets 0–7', () => {
    const e = new EspPacket();
    for (const off of OFFSETS) {
      expect(e.bind(placed(ESP_NULL, off, 2), off, ESP_NULL.length)).toBe(0);
      expect([e.spi, e.sequence, e.payloadOffset, e.payloadLen]).toEqual([0x1001, 1, off + 8, ESP_NULL.length - 8]);
    }
    expect(e.bind(hex('ff ff ff ff ff ff ff fe'), 0, 8)).toBe(0);
    expect([e.spi, e.sequence, e.payloadLen]).toEqual([0xffffffff, 0xfffffffe, 0]);
  });

  it('checks length: 8 octets of header (check_len)', () => {
    const e = new EspPacket();
    for (let n = 0; n < 8; n++) expect(e.bind(ESP_NULL, 0, n)).toBe(WireError.truncated);
    expect(e.bind(ESP_NULL, 0, 8)).toBe(0);
    expect(e.bind(ESP_NULL, 3, ESP_NULL.length)).toBe(WireError.truncated);
    expect(parseEsp(ESP_NULL, 0, 7)).toBe(WireError.truncated);
  });

  it('parses and emits the header at offsets 0–7 (0xa5 buffers); buffer_len is 8', () => {
    const repr = { spi: 0x1001, sequence: 1 };
    expect(espBufferLen(repr)).toBe(8);
    for (const off of OFFSETS) {
      expect(parseEsp(placed(ESP_NULL, off), off, ESP_NULL.length)).toEqual(repr);
      const buf = filled(off + 9);
      expect(emitEsp(repr, buf, off)).toBe(8);
      expect(toHex(buf, off, 8)).toBe(toHex(ESP_NULL, 0, 8));
      expect(buf[off + 8]).toBe(FILL);
      if (off > 0) expect(buf[off - 1]).toBe(FILL);
      const hot = filled(off + 8);
      emitEspHeader(hot, off, 0xfedcba98, 0x80000000);
      expect(parseEsp(hot, off, 8)).toEqual({ spi: 0xfedcba98, sequence: 0x80000000 });
    }
  });
});

describe('EspTrailer view', () => {
  it('deconstructs the trailer in front of the ICV at offsets 0–7', () => {
    const t = new EspTrailer();
    for (const off of OFFSETS) {
      const buf = placed(ESP_NULL, off);
      expect(t.bind(buf, off + PLAIN_OFF, PLAIN_LEN)).toBe(0);
      expect([t.padLength, t.nextHeader]).toEqual([2, IP_PROTO_GRE]);
      expect([t.payloadOffset, t.payloadLen, t.padOffset]).toEqual([off + 8, PAYLOAD_LEN, off + 8 + PAYLOAD_LEN]);
    }
  });

  it('accepts no padding and a full 255-octet padding; a dummy packet is just next header 59', () => {
    const t = new EspTrailer();
    expect(t.bind(hex('aa bb 00 3b'), 0, 4)).toBe(0);
    expect([t.padLength, t.nextHeader, t.payloadLen]).toEqual([0, IP_PROTO_NONE, 2]);
    expect(t.bind(hex('00 3b'), 0, 2)).toBe(0);
    expect(t.payloadLen).toBe(0);
    const big = new Uint8Array(257);
    for (let i = 0; i < 255; i++) big[i] = i + 1;
    big[255] = 255;
    big[256] = 47;
    expect(t.bind(big, 0, 257)).toBe(0);
    expect([t.padLength, t.payloadLen]).toEqual([255, 0]);
  });

  it('rejects a pad length past the payload start and pad bytes that are not 1, 2, 3, …', () => {
    const t = new EspTrailer();
    expect(t.bind(hex('01 02 03 2f'), 0, 4)).toBe(WireError.badPadLength); // 3 + 2 > 4
    expect(t.bind(hex('01 02 02 2f'), 0, 4)).toBe(0);
    expect(t.bind(hex('01 03 02 2f'), 0, 4)).toBe(WireError.badPadding);
    expect(t.bind(hex('00 00 02 2f'), 0, 4)).toBe(WireError.badPadding);
    const bad = ESP_NULL.slice();
    bad[PLAIN_OFF + PAYLOAD_LEN + 1] = 0x03; // second pad byte 3 instead of 2
    expect(t.bind(bad, PLAIN_OFF, PLAIN_LEN)).toBe(WireError.badPadding);
    expect(parseEspTrailer(bad, PLAIN_OFF, PLAIN_LEN)).toBe(WireError.badPadding);
    expect(espPaddingValid(ESP_NULL, PLAIN_OFF + PAYLOAD_LEN, 2)).toBe(true);
    expect(espPaddingValid(bad, PLAIN_OFF + PAYLOAD_LEN, 2)).toBe(false);
  });

  it('checks length: pad length and next header must be there (check_len)', () => {
    const t = new EspTrailer();
    expect(t.bind(ESP_NULL, 0, 0)).toBe(WireError.truncated);
    expect(t.bind(ESP_NULL, 0, 1)).toBe(WireError.truncated);
    expect(t.bind(hex('00 2f'), 1, 2)).toBe(WireError.truncated);
  });

  it('parses, emits into 0xa5 buffers at offsets 0–7, and sizes the trailer', () => {
    const repr = { padLength: 2, nextHeader: IP_PROTO_GRE };
    expect(espTrailerBufferLen(repr)).toBe(4);
    for (const off of OFFSETS) {
      expect(parseEspTrailer(placed(ESP_NULL, off), off + PLAIN_OFF, PLAIN_LEN)).toEqual(repr);
      const buf = filled(off + 5);
      expect(emitEspTrailer(repr, buf, off)).toBe(4);
      expect(toHex(buf, off, 4)).toBe('0102022f');
      expect(buf[off + 4]).toBe(FILL);
      if (off > 0) expect(buf[off - 1]).toBe(FILL);
    }
  });

  it('computes padding to 4-octet alignment and round-trips every payload length', () => {
    expect([0, 1, 2, 3, 4, 5, 56].map((n) => espPadLength(n))).toEqual([2, 1, 0, 3, 2, 1, 2]);
    expect(espPadLength(3, 16)).toBe(11);
    for (let n = 0; n < 40; n++) {
      const pad = espPadLength(n);
      const buf = filled(n + pad + 2);
      emitEspTrailerFields(buf, n, pad, IP_PROTO_GRE);
      expect((n + pad + 2) % 4).toBe(0);
      expect(parseEspTrailer(buf, 0, buf.length)).toEqual({ padLength: pad, nextHeader: IP_PROTO_GRE });
    }
  });
});

describe('ESP fuzz', () => {
  it('never throws or reads outside its window on truncated and random input (seeded)', () => {
    const e = new EspPacket();
    const t = new EspTrailer();
    const plain = ESP_NULL.slice(PLAIN_OFF, PLAIN_OFF + PLAIN_LEN);
    const shortPad = hex('aa bb cc 01 02 03 04 05 06 07 07 3b');
    const seen = new Set<string>();
    for (const input of fuzzInputs(0xe5e5, [ESP_NULL, plain, shortPad], 3000, 64)) {
      const off = input.length % 8;
      const [a, b] = probeIsolated(input, off, (bytes, o, l) => {
        const err = e.bind(bytes, o, l);
        return err !== 0 ? wireErrorName(err) : [e.spi, e.sequence, e.payloadOffset, e.payloadLen];
      });
      expect(a).toEqual(b);
      const [c, d] = probeIsolated(input, off, (bytes, o, l) => {
        const err = t.bind(bytes, o, l);
        if (err !== 0) return wireErrorName(err);
        expect(t.payloadLen).toBeGreaterThanOrEqual(0);
        expect(t.padOffset + t.padLength + 2).toBe(o + l);
        return snapshot(t, TRAILER_FIELDS);
      });
      expect(c).toEqual(d);
      seen.add(typeof c === 'string' ? c : 'ok');
      expect(probeIsolated(input, off, parseEsp)[0]).toEqual(probeIsolated(input, off, parseEsp)[1]);
      const [pa, pb] = probeIsolated(input, off, parseEspTrailer);
      expect(pa).toEqual(pb);
    }
    expect([...seen].sort()).toEqual(['badPadLength', 'badPadding', 'ok', 'truncated']);
  });
});
