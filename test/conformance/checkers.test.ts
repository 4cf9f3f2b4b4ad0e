// The independent checkers checked: the scapy ESP peer (test/conformance/tools/scapy_peer.py,
// wrapped by test/helpers/scapy.ts) and tshark's ESP decryption (test/helpers/tshark-esp.ts).
// Conformance tests trust their word about sectunnel's packets, so here they must
//  (a) seal and open every algorithm, ESN on and off, IPv4/IPv6, raw ESP and UDP 4500,
//      with headers that are right on the wire (checked byte by byte below, by hand);
//  (b) agree with tshark on what scapy sealed (AES-GCM without ESN, all tshark can do);
//  (c) agree with the published vectors (draft-mcgrew-gcm-test-01, RFC 7634);
//  (d) open what sectunnel's AEAD layer (createAead) seals into hand-written ESP packets,
//      and fail each check (ICV, padding, next header, GRE, tag, UDP) when it should.
// Nothing here uses sectunnel's wire or pipeline code; packets are written out in the test.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AEAD_ALGORITHMS,
  aeadKeymatBytes,
  availableBackends,
  createAead,
  type AeadAlgorithm,
  type AeadBackendName,
} from '../../src/crypto/index.js';
import { toHex } from '../helpers/hex.js';
import { runScapyPeer, scapyDecrypt, scapyEncrypt, type ScapySa, type ScapyVerdict } from '../helpers/scapy.js';
import { TsharkEspError, espSaLine, tsharkDecryptEsp, type TsharkEspSa } from '../helpers/tshark-esp.js';
import { itWith } from '../helpers/tools.js';

const VECTORS = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/conformance/vectors');
const TWO_32 = 2n ** 32n;
const ETH = 14;
const GRE_PROTO_TEB = 0x6558;
const VID = 100;
const GUEST_A = '02:00:00:00:00:0a';
const GUEST_B = '02:00:00:00:00:0b';
const HOST_MAC_A = '02:00:00:00:00:01';
const HOST_MAC_B = '02:00:00:00:00:02';
const AES_GCM = ['aes-gcm-128', 'aes-gcm-192', 'aes-gcm-256'] as const;

// ---------------------------------------------------------------------------
// Bytes written by hand

/** Deterministic key material for an algorithm. */
function keymatFor(alg: AeadAlgorithm, seed: number): Uint8Array {
  const out = new Uint8Array(aeadKeymatBytes(alg));
  for (let i = 0; i < out.length; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

function macBytes(text: string): number[] {
  return text.split(':').map((p) => parseInt(p, 16));
}

function u16(v: number): number[] {
  return [(v >>> 8) & 0xff, v & 0xff];
}

function u32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

/** RFC 1071 one's complement sum of 16-bit words, folded (0xffff over data with a right checksum). */
function sum16(parts: readonly (Uint8Array | number[])[]): number {
  const all = parts.flatMap((p) => Array.from(p));
  if (all.length % 2) all.push(0);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) s += (all[i]! << 8) | all[i + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function ipv4Bytes(text: string): number[] {
  return text.split('.').map(Number);
}

function ipv6Bytes(text: string): number[] {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => u16(parseInt(g, 16)));
}

/** IPv4 header (20 octets, DF, TTL 64) with its checksum. */
function ipv4Header(src: string, dst: string, proto: number, payloadBytes: number): number[] {
  const h = [0x45, 0, ...u16(20 + payloadBytes), 0, 0, 0x40, 0, 64, proto, 0, 0, ...ipv4Bytes(src), ...ipv4Bytes(dst)];
  const c = ~sum16([h]) & 0xffff;
  h[10] = c >>> 8;
  h[11] = c & 0xff;
  return h;
}

function ipv6Header(src: string, dst: string, nh: number, payloadBytes: number): number[] {
  return [0x60, 0, 0, 0, ...u16(payloadBytes), nh, 64, ...ipv6Bytes(src), ...ipv6Bytes(dst)];
}

/** UDP header with its checksum over the IPv4 or IPv6 pseudo-header (RFC 768, RFC 8200 §8.1). */
function udpHeader(src: string, dst: string, sport: number, dport: number, payload: Uint8Array): number[] {
  const len = 8 + payload.length;
  const v6 = src.includes(':');
  const pseudo = v6
    ? [...ipv6Bytes(src), ...ipv6Bytes(dst), ...u32(len), 0, 0, 0, 17]
    : [...ipv4Bytes(src), ...ipv4Bytes(dst), 0, 17, ...u16(len)];
  const h = [...u16(sport), ...u16(dport), ...u16(len), 0, 0];
  const c = ~sum16([pseudo, h, payload]) & 0xffff || 0xffff;
  h[6] = c >>> 8;
  h[7] = c & 0xff;
  return h;
}

interface FrameSpec {
  ip: 4 | 6;
  payloadBytes: number;
  /** 802.1Q tags: each VID (none for an untagged frame). */
  vids?: number[];
}

/** Guest frame GUEST_A → GUEST_B with its tags, an IPv4 or IPv6 UDP datagram 1234 → 5678 inside. */
function innerFrame(spec: FrameSpec): Uint8Array {
  const payload = new Uint8Array(spec.payloadBytes).map((_, i) => (i * 13 + 1) & 0xff);
  const src = spec.ip === 4 ? '10.0.0.1' : 'fd00::1';
  const dst = spec.ip === 4 ? '10.0.0.2' : 'fd00::2';
  const udp = [...udpHeader(src, dst, 1234, 5678, payload), ...payload];
  const ip = spec.ip === 4 ? ipv4Header(src, dst, 17, udp.length) : ipv6Header(src, dst, 17, udp.length);
  const tags = (spec.vids ?? [VID]).flatMap((vid, i) => [0x81, 0x00, ...u16((i === 0 ? 5 << 13 : 0) | vid)]);
  return new Uint8Array([...macBytes(GUEST_B), ...macBytes(GUEST_A), ...tags, ...u16(spec.ip === 4 ? 0x0800 : 0x86dd), ...ip, ...udp]);
}

/** Frames whose ESP plaintexts need 3, 2, 1 and 0 pad octets behind an 8-octet GRE header. */
const FRAMES: Uint8Array[] = [
  innerFrame({ ip: 4, payloadBytes: 5 }),
  innerFrame({ ip: 4, payloadBytes: 6 }),
  innerFrame({ ip: 6, payloadBytes: 7 }),
  innerFrame({ ip: 6, payloadBytes: 8 }),
];

interface GreSpec {
  key?: number | null;
  checksum?: boolean;
  /** Overrides of the first 16 bits (flags and version) and the protocol. */
  flags?: number;
  proto?: number;
  /** A GRE sequence number (S bit, RFC 2890 §2.2). */
  sequence?: number;
}

/** GRE header (RFC 2784, RFC 2890) + frame. */
function greWrap(frame: Uint8Array, spec: GreSpec = {}): Uint8Array {
  const key = spec.key === undefined ? 0x12345678 : spec.key;
  let flags = (spec.checksum ? 0x8000 : 0) | (key !== null ? 0x2000 : 0) | (spec.sequence !== undefined ? 0x1000 : 0);
  if (spec.flags !== undefined) flags = spec.flags;
  const h = [...u16(flags), ...u16(spec.proto ?? GRE_PROTO_TEB)];
  if (spec.checksum) h.push(0, 0, 0, 0);
  if (key !== null) h.push(...u32(key));
  if (spec.sequence !== undefined) h.push(...u32(spec.sequence));
  const out = new Uint8Array([...h, ...frame]);
  if (spec.checksum) {
    const c = ~sum16([out]) & 0xffff;
    out[4] = c >>> 8;
    out[5] = c & 0xff;
  }
  return out;
}

interface HandEsp {
  alg: AeadAlgorithm;
  keymat: Uint8Array;
  spi: number;
  seq: bigint;
  esn: boolean;
  /** ESP payload (normally GRE + frame). */
  payload: Uint8Array;
  nextHeader?: number;
  /** Pad octets to send instead of 1, 2, 3, … */
  pad?: number[];
  /** Pad length field to send instead of pad.length. */
  padLenField?: number;
  backend?: AeadBackendName;
}

/**
 * An ESP packet (RFC 4303 §2: SPI ‖ seq ‖ IV ‖ ciphertext ‖ ICV) sealed with sectunnel's AEAD
 * layer: IV = the 64-bit sequence number, AAD = SPI ‖ seq (or SPI ‖ seq_hi ‖ seq_lo with ESN).
 */
function sealByHand(h: HandEsp): Uint8Array {
  const padCount = (4 - ((h.payload.length + 2) % 4)) % 4;
  const pad = h.pad ?? Array.from({ length: padCount }, (_, i) => i + 1);
  const textLen = h.payload.length + pad.length + 2;
  const out = new Uint8Array(16 + textLen + 16);
  const hi = Number(h.seq >> 32n);
  const lo = Number(h.seq & 0xffffffffn);
  out.set([...u32(h.spi), ...u32(lo), ...u32(hi), ...u32(lo)], 0);
  out.set(h.payload, 16);
  out.set(pad, 16 + h.payload.length);
  out[16 + textLen - 2] = h.padLenField ?? pad.length;
  out[16 + textLen - 1] = h.nextHeader ?? 47;
  const aad = new Uint8Array(h.esn ? [...u32(h.spi), ...u32(hi), ...u32(lo)] : [...u32(h.spi), ...u32(lo)]);
  const aead = createAead(h.alg, h.keymat, h.backend);
  try {
    aead.seal(out, 8, 16, textLen, aad);
  } finally {
    aead.destroy();
  }
  return out;
}

/** Outer Ethernet frame HOST_A → HOST_B around an IPv4 or IPv6 packet carrying `proto`. */
function outerFrame(src: string, dst: string, proto: number, l4: Uint8Array | number[]): Uint8Array {
  const v6 = src.includes(':');
  const ip = v6 ? ipv6Header(src, dst, proto, l4.length) : ipv4Header(src, dst, proto, l4.length);
  return new Uint8Array([...macBytes(HOST_MAC_B), ...macBytes(HOST_MAC_A), ...u16(v6 ? 0x86dd : 0x0800), ...ip, ...l4]);
}

function outerEsp(esp: Uint8Array, src = '192.0.2.1', dst = '192.0.2.2'): Uint8Array {
  return outerFrame(src, dst, 50, esp);
}

function outerUdp(payload: Uint8Array, src = '192.0.2.1', dst = '192.0.2.2'): Uint8Array {
  return outerFrame(src, dst, 17, [...udpHeader(src, dst, 4500, 4500, payload), ...payload]);
}

/** Where the headers of an outer frame are, parsed by hand. */
interface OuterLayout {
  family: 4 | 6;
  ipOff: number;
  ipPayloadBytes: number;
  udpOff: number | null;
  espOff: number;
}

function outerLayout(p: Uint8Array): OuterLayout {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const etherType = dv.getUint16(12);
  const family = etherType === 0x0800 ? 4 : etherType === 0x86dd ? 6 : 0;
  if (family === 0) throw new Error(`outer EtherType 0x${etherType.toString(16)}`);
  const ipOff = ETH;
  const hdr = family === 4 ? (p[ipOff]! & 0x0f) * 4 : 40;
  const proto = family === 4 ? p[ipOff + 9]! : p[ipOff + 6]!;
  const ipPayloadBytes = family === 4 ? dv.getUint16(ipOff + 2) - hdr : dv.getUint16(ipOff + 4);
  const l4 = ipOff + hdr;
  return { family, ipOff, ipPayloadBytes, udpOff: proto === 17 ? l4 : null, espOff: proto === 17 ? l4 + 8 : l4 };
}

// ---------------------------------------------------------------------------
// SAs

interface Family {
  name: 'ipv4' | 'ipv6';
  src: string;
  dst: string;
}
const FAMILIES: Family[] = [
  { name: 'ipv4', src: '192.0.2.1', dst: '192.0.2.2' },
  { name: 'ipv6', src: '2001:db8::1', dst: '2001:db8::2' },
];

function sa(alg: AeadAlgorithm, fam: Family, encapsulation: 'udp' | 'esp', esn: boolean, greKey?: number | null, spi = 0x00001001): ScapySa {
  const out: ScapySa = { spi, algorithm: alg, keymat: keymatFor(alg, spi & 0xff), esn, src: fam.src, dst: fam.dst, encapsulation };
  if (greKey !== undefined) out.greKey = greKey;
  return out;
}

function tsharkSa(s: ScapySa): TsharkEspSa {
  return { family: s.src.includes(':') ? 'ipv6' : 'ipv4', src: s.src, dst: s.dst, spi: s.spi, algorithm: s.algorithm, keymat: s.keymat, esn: s.esn };
}

function errors(vs: readonly ScapyVerdict[]): (string | null)[] {
  return vs.map((v) => v.error);
}

// ---------------------------------------------------------------------------
// (a) scapy seals every combination and opens it back

describe('(a) scapy peer: seal and open every algorithm, ESN, family and encapsulation', () => {
  // GRE key cycles through an explicit key, none, and the default (VLAN << 8).
  const keyChoices: (number | null | undefined)[] = [0x12345678, null, undefined];
  let n = 0;
  for (const alg of AEAD_ALGORITHMS) {
    for (const esn of [false, true]) {
      for (const fam of FAMILIES) {
        for (const encapsulation of ['esp', 'udp'] as const) {
          const greKey = keyChoices[n++ % keyChoices.length];
          const name = `${alg} esn=${esn} ${fam.name} ${encapsulation} greKey=${greKey === undefined ? 'default' : greKey}`;
          itWith(['scapy'], name, async () => {
            const s = sa(alg, fam, encapsulation, esn, greKey);
            // With ESN, cross the 2^32 boundary: the third packet has seq_lo 0 (scapy's seq_num=0 quirk).
            const firstSeq = esn ? TWO_32 - 2n : 1n;
            const outer = await scapyEncrypt(s, FRAMES, { firstSeq });
            const greBytes = greKey === null ? 4 : 8;
            outer.forEach((p, i) => {
              const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
              const at = outerLayout(p);
              const seq = firstSeq + BigInt(i);
              expect(at.family).toBe(fam.name === 'ipv4' ? 4 : 6);
              expect(toHex(p, 0, 12)).toBe(HOST_MAC_B.replace(/:/g, '') + HOST_MAC_A.replace(/:/g, ''));
              expect(at.ipOff + (at.family === 4 ? 20 : 40) + at.ipPayloadBytes).toBe(p.length);
              if (at.family === 4) expect(sum16([p.subarray(ETH, ETH + 20)])).toBe(0xffff);
              if (encapsulation === 'udp') {
                const u = at.udpOff!;
                expect(dv.getUint16(u)).toBe(4500);
                expect(dv.getUint16(u + 2)).toBe(4500);
                expect(dv.getUint16(u + 4)).toBe(at.ipPayloadBytes); // scapy writes 8 over IPv4
                if (at.family === 4) {
                  expect(dv.getUint16(u + 6)).toBe(0); // RFC 3948 §2.1
                } else {
                  // scapy leaves 0; a zero UDP checksum is not allowed over IPv6.
                  expect(dv.getUint16(u + 6)).not.toBe(0);
                  const pseudo = [...ipv6Bytes(fam.src), ...ipv6Bytes(fam.dst), ...u32(at.ipPayloadBytes), 0, 0, 0, 17];
                  expect(sum16([pseudo, p.subarray(u)])).toBe(0xffff);
                }
              } else {
                expect(at.udpOff).toBeNull();
              }
              const e = at.espOff;
              expect(dv.getUint32(e)).toBe(0x00001001);
              expect(BigInt(dv.getUint32(e + 4))).toBe(seq & 0xffffffffn); // only the low half on the wire
              expect(dv.getBigUint64(e + 8)).toBe(seq); // IV = the 64-bit sequence number
              const plain = greBytes + FRAMES[i]!.length + 2;
              expect(p.length - e).toBe(16 + plain + ((4 - (plain % 4)) % 4) + 16);
            });
            const verdicts = await scapyDecrypt(s, outer, { firstSeq });
            expect(errors(verdicts)).toEqual(FRAMES.map(() => null));
            verdicts.forEach((v, i) => {
              expect(v.ok).toBe(true);
              expect(v.spi).toBe('0x00001001');
              expect(v.seq).toBe(firstSeq + BigInt(i));
              expect(v.nextHeader).toBe(47);
              expect(v.padLen).toBe(3 - i);
              expect(v.vlan).toBe(VID);
              expect(v.greKey).toBe(greKey === undefined ? VID << 8 : greKey);
              expect(toHex(v.inner!)).toBe(toHex(FRAMES[i]!));
            });
          });
        }
      }
    }
  }
});

// ---------------------------------------------------------------------------
// The scapy peer's checks fail when they should

describe('scapy peer: verdicts on bad packets', () => {
  const v4 = FAMILIES[0]!;
  const v6 = FAMILIES[1]!;

  itWith(['scapy'], 'a flipped ciphertext octet, a wrong key or a wrong ESN high half is icv_mismatch', async () => {
    const s = sa('aes-gcm-256', v4, 'esp', true, 0x12345678);
    const outer = await scapyEncrypt(s, FRAMES, { firstSeq: 5n * TWO_32 + 1n });
    outer[1]![outer[1]!.length - 30]! ^= 0x01;
    const good = await scapyDecrypt(s, outer, { firstSeq: 5n * TWO_32 + 1n });
    expect(errors(good)).toEqual([null, 'icv_mismatch', null, null]);
    const wrongKey = await scapyDecrypt({ ...s, keymat: keymatFor('aes-gcm-256', 99) }, outer, { firstSeq: 5n * TWO_32 + 1n });
    expect(errors(wrongKey)).toEqual(FRAMES.map(() => 'icv_mismatch'));
    // The receiver infers high half 0 from --first-seq 1: the AAD differs, so nothing opens.
    const wrongHi = await scapyDecrypt(s, outer);
    expect(errors(wrongHi)).toEqual(FRAMES.map(() => 'icv_mismatch'));
    expect(wrongHi[0]!.seqHi).toBe(0);
    const noEsn = await scapyDecrypt({ ...s, esn: false }, outer);
    expect(errors(noEsn)).toEqual(FRAMES.map(() => 'icv_mismatch'));
  });

  itWith(['scapy'], 'next header 4 is unexpected_next_header and 59 a dummy_packet, after the ICV verifies', async () => {
    const s = sa('chacha20-poly1305', v4, 'udp', false, 7);
    const nh4 = await scapyDecrypt(s, await scapyEncrypt(s, FRAMES.slice(0, 1), { nextHeader: 4 }));
    expect([nh4[0]!.error, nh4[0]!.nextHeader]).toEqual(['unexpected_next_header', 4]);
    const nh59 = await scapyDecrypt(s, await scapyEncrypt(s, FRAMES.slice(0, 1), { nextHeader: 59 }));
    expect([nh59[0]!.error, nh59[0]!.nextHeader]).toEqual(['dummy_packet', 59]);
  });

  itWith(['scapy'], 'a GRE key other than the SA\'s is gre_unknown_key, in each direction of key/no key/default', async () => {
    const frames = FRAMES.slice(0, 1);
    // [GRE key sent, GRE key the SA expects (undefined: the default VLAN << 8), verdict]
    const cases: [number | null | undefined, number | null | undefined, string | null][] = [
      [7, 8, 'gre_unknown_key'],
      [null, 8, 'gre_unknown_key'],
      [7, null, 'gre_unknown_key'],
      [null, undefined, 'gre_unknown_key'],
      [VID << 8, null, 'gre_unknown_key'],
      [VID << 8, undefined, null],
      [undefined, VID << 8, null],
    ];
    for (const [sent, expected, error] of cases) {
      const out = await scapyEncrypt(sa('aes-gcm-128', v6, 'esp', false, sent), frames);
      const [v] = await scapyDecrypt(sa('aes-gcm-128', v6, 'esp', false, expected), out);
      expect([sent, expected, v!.error, v!.greKey]).toEqual([sent, expected, error, sent === undefined ? VID << 8 : sent]);
    }
  });

  itWith(['scapy'], 'an untagged inner frame is inner_untagged; two tags or VLAN 0 is inner_malformed', async () => {
    const s = sa('aes-gcm-192', v4, 'esp', false, 9);
    const frames = [
      innerFrame({ ip: 4, payloadBytes: 5, vids: [] }),
      innerFrame({ ip: 4, payloadBytes: 5, vids: [VID, 200] }),
      innerFrame({ ip: 4, payloadBytes: 5, vids: [0] }),
      innerFrame({ ip: 4, payloadBytes: 5, vids: [4094] }),
    ];
    const vs = await scapyDecrypt(s, await scapyEncrypt(s, frames));
    expect(errors(vs)).toEqual(['inner_untagged', 'inner_malformed', 'inner_malformed', null]);
    expect(vs[3]!.vlan).toBe(4094);
  });

  itWith(['scapy'], 'UDP as scapy 2.5 writes it (length 8 over IPv4, checksum 0 over IPv6) is refused', async () => {
    const s4 = sa('aes-gcm-128', v4, 'udp', false, 1);
    const p4 = (await scapyEncrypt(s4, FRAMES.slice(0, 1)))[0]!;
    const u4 = outerLayout(p4).udpOff!;
    p4[u4 + 4] = 0;
    p4[u4 + 5] = 8;
    expect((await scapyDecrypt(s4, [p4]))[0]!.error).toBe('udp_bad_length');

    const s6 = sa('aes-gcm-128', v6, 'udp', false, 1);
    const [a, b] = await scapyEncrypt(s6, FRAMES.slice(0, 2));
    const u6 = outerLayout(a!).udpOff!;
    a![u6 + 6] = 0;
    a![u6 + 7] = 0;
    b![u6 + 7]! ^= 0x40;
    expect(errors(await scapyDecrypt(s6, [a!, b!]))).toEqual(['udp_zero_checksum_v6', 'udp_bad_checksum']);
  });

  itWith(['scapy'], 'SPI, addresses and encapsulation must match an SA', async () => {
    const s = sa('aes-gcm-128', v4, 'esp', false, 1);
    const out = await scapyEncrypt(s, FRAMES.slice(0, 1));
    expect((await scapyDecrypt({ ...s, spi: 0x1002 }, out))[0]!.error).toBe('unknown_spi');
    expect((await scapyDecrypt({ ...s, dst: '192.0.2.9' }, out))[0]!.error).toBe('wrong_address');
    expect((await scapyDecrypt({ ...s, encapsulation: 'udp' }, out))[0]!.error).toBe('wrong_encapsulation');
    // Several SAs: chosen by SPI.
    const two = await scapyDecrypt([{ ...s, spi: 0x2000, keymat: keymatFor('aes-gcm-128', 5) }, s], out);
    expect(two[0]!.error).toBeNull();
  });

  itWith(['scapy'], 'NAT keepalive, non-ESP marker, a short ESP packet and non-ESP traffic', async () => {
    const s = sa('aes-gcm-128', v4, 'udp', false, 1);
    const packets = [
      outerUdp(new Uint8Array([0xff])),
      outerUdp(new Uint8Array([0, 0, 0, 0, 1, 2, 3, 4])),
      outerUdp(new Uint8Array([0, 0, 0x10, 0x01, 0, 0, 0, 1, 9, 9])),
      outerFrame('192.0.2.1', '192.0.2.2', 6, new Uint8Array(20)),
    ];
    expect(errors(await scapyDecrypt(s, packets))).toEqual(['nat_keepalive', 'non_esp_marker', 'truncated', 'not_esp']);
  });

  describe('bad input exits 2 with a message, never a traceback', () => {
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'st-checkers-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    const goodSa = (): Record<string, unknown> => ({
      spi: '0x00001001',
      algorithm: 'aes-gcm-128',
      keymat: '00'.repeat(20),
      esn: false,
      src: '192.0.2.1',
      dst: '192.0.2.2',
      encapsulation: 'esp',
      greKey: null,
    });

    const cases: [string, Record<string, unknown> | string, string | null, string[], RegExp][] = [
      ['keymat missing', { ...goodSa(), keymat: undefined }, null, [], /field 'keymat' is missing/],
      ['keymat too short', { ...goodSa(), keymat: '00'.repeat(16) }, null, [], /needs 20 octets/],
      ['unknown algorithm', { ...goodSa(), algorithm: 'aes-cbc' }, null, [], /field 'algorithm' must be one of/],
      ['mixed address families', { ...goodSa(), dst: '2001:db8::2' }, null, [], /different IP versions/],
      ['greKey out of range', { ...goodSa(), greKey: 2 ** 32 }, null, [], /field 'greKey'/],
      ['a misspelt field', { ...goodSa(), grekey: 5 }, null, [], /unknown field 'grekey'/],
      ['SA.json not JSON', '{"spi": ', null, [], /not JSON/],
      ['input not a capture', goodSa(), 'hello, world', [], /not a pcap or pcapng file/],
      ['seq past 32 bits without ESN', goodSa(), null, ['--first-seq', String(2 ** 32)], /--first-seq must be in 0\.\.4294967295/],
      ['default GRE key of an untagged frame', { ...goodSa(), greKey: undefined }, 'untagged', [], /no 802\.1Q tag/],
    ];
    for (const [what, saDoc, input, extra, message] of cases) {
      itWith(['scapy'], what, async () => {
        const saPath = join(dir, `${what}.json`);
        const inPath = join(dir, `${what}.pcap`);
        await writeFile(saPath, typeof saDoc === 'string' ? saDoc : JSON.stringify(saDoc));
        if (input === 'untagged') {
          await writeFile(inPath, pcap([innerFrame({ ip: 4, payloadBytes: 5, vids: [] })]));
        } else {
          await writeFile(inPath, input ?? pcap(FRAMES));
        }
        const r = await runScapyPeer(['encrypt', '--sa', saPath, '--in', inPath, '--out', join(dir, 'out.pcap'), ...extra]);
        expect(r.exitCode).toBe(2);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).not.toMatch(/Traceback/);
      });
    }

    itWith(['scapy'], 'decrypt reads pcapng, and refuses one cut short', async () => {
      const s = sa('aes-gcm-128', FAMILIES[0]!, 'esp', false, null);
      const outer = await scapyEncrypt(s, FRAMES);
      await writeFile(join(dir, 'sa.json'), JSON.stringify({ ...goodSa(), keymat: toHex(s.keymat as Uint8Array) }));
      const ng = pcapng(outer);
      const run = async (bytes: Uint8Array): Promise<[number, string, number]> => {
        await writeFile(join(dir, 'in.pcapng'), bytes);
        await rm(join(dir, 'v.jsonl'), { force: true });
        const r = await runScapyPeer(['decrypt', '--sa', join(dir, 'sa.json'), '--in', join(dir, 'in.pcapng'), '--out', join(dir, 'o.pcap'), '--verdicts', join(dir, 'v.jsonl')]);
        const lines = r.exitCode === 0 ? (await readFile(join(dir, 'v.jsonl'), 'utf8')).split('\n').filter((l) => l.includes('"ok": true')).length : 0;
        return [r.exitCode, r.stderr, lines];
      };
      expect(await run(ng)).toEqual([0, '', FRAMES.length]);
      const [code, stderr] = await run(ng.subarray(0, ng.length - 10));
      expect([code, /cut off/.test(stderr)]).toEqual([2, true]);
    });

    itWith(['scapy'], 'decrypt of a missing file', async () => {
      await writeFile(join(dir, 'sa.json'), JSON.stringify(goodSa()));
      const r = await runScapyPeer(['decrypt', '--sa', join(dir, 'sa.json'), '--in', join(dir, 'nope.pcap'), '--out', join(dir, 'o.pcap'), '--verdicts', join(dir, 'v.jsonl')]);
      expect([r.exitCode, /nope\.pcap: cannot read/.test(r.stderr), /Traceback/.test(r.stderr)]).toEqual([2, true, false]);
    });
  });
});

/** A classic pcap (Ethernet) of frames, written here so these tests do not lean on our writer. */
function pcap(frames: readonly Uint8Array[]): Uint8Array {
  const parts: number[] = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0];
  for (const f of frames) {
    const len = [f.length & 0xff, (f.length >>> 8) & 0xff, 0, 0];
    parts.push(0, 0, 0, 0, 0, 0, 0, 0, ...len, ...len, ...f);
  }
  return new Uint8Array(parts);
}

/** A pcapng file (SHB, one Ethernet IDB, one EPB per frame; little-endian), written here. */
function pcapng(frames: readonly Uint8Array[]): Uint8Array {
  const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  const block = (type: number, body: number[]): number[] => {
    const padded = [...body, ...Array<number>((4 - (body.length % 4)) % 4).fill(0)];
    const len = 12 + padded.length;
    return [...le32(type), ...le32(len), ...padded, ...le32(len)];
  };
  const shb = block(0x0a0d0d0a, [...le32(0x1a2b3c4d), 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const idb = block(1, [1, 0, 0, 0, ...le32(0)]);
  const epbs = frames.flatMap((f, i) => block(6, [...le32(0), ...le32(0), ...le32(i * 1_000_000), ...le32(f.length), ...le32(f.length), ...f]));
  return new Uint8Array([...shb, ...idb, ...epbs]);
}

// ---------------------------------------------------------------------------
// (b) tshark agrees with scapy

const TSHARK_FIELDS = [
  'esp.spi',
  'esp.sequence',
  'esp.icv_good',
  'esp.icv_bad',
  'esp.protocol',
  'esp.pad_len',
  'gre.key',
  'vlan.id',
  'eth.src',
  'eth.dst',
  'ip.src',
  'ip.dst',
  'ipv6.src',
  'ipv6.dst',
  'udp.dstport',
  'udp.length',
  'udp.checksum.status',
];

describe('(b) tshark decrypts what scapy sealed (AES-GCM, no ESN)', () => {
  for (const alg of AES_GCM) {
    for (const fam of FAMILIES) {
      for (const encapsulation of ['esp', 'udp'] as const) {
        itWith(['scapy', 'tshark'], `${alg} ${fam.name} ${encapsulation}`, async () => {
          const s = sa(alg, fam, encapsulation, false, 0x00abcdef);
          const outer = await scapyEncrypt(s, FRAMES);
          const got = await tsharkDecryptEsp([tsharkSa(s)], outer, TSHARK_FIELDS, { prefs: ['udp.check_checksum:TRUE'] });
          expect(got.map((p) => p.frame)).toEqual([1, 2, 3, 4]);
          got.forEach((p, i) => {
            const ipField = fam.name === 'ipv4' ? 'ip' : 'ipv6';
            const innerIp = i < 2 ? 'ip' : 'ipv6';
            expect(p.protocols.slice(p.protocols.indexOf('esp'))).toEqual(
              ['esp', 'gre', 'eth', 'ethertype', 'vlan', 'ethertype', innerIp, 'udp', 'data'],
            );
            expect(p.outer['esp.icv_good']).toBe('1');
            expect(p.outer['esp.icv_bad']).toBe('0');
            expect(p.outer['esp.spi']).toBe('0x00001001');
            expect(p.outer['esp.sequence']).toBe(String(i + 1));
            expect(p.outer['esp.protocol']).toBe('0x2f');
            expect(p.outer['esp.pad_len']).toBe(String(3 - i));
            expect(p.outer[`${ipField}.src`]).toBe(fam.src);
            expect(p.outer[`${ipField}.dst`]).toBe(fam.dst);
            expect(p.outer['eth.src']).toBe(HOST_MAC_A);
            expect(p.outer['eth.dst']).toBe(HOST_MAC_B);
            if (encapsulation === 'udp') {
              expect(p.outer['udp.dstport']).toBe('4500');
              expect(p.outer['udp.length']).toBe(String(outerLayout(outer[i]!).ipPayloadBytes));
              // 1 = good; over IPv4 the zero checksum is "not present" (3).
              expect(p.outer['udp.checksum.status']).toBe(fam.name === 'ipv6' ? '1' : '3');
            } else {
              expect(p.outer['udp.dstport']).toBeUndefined();
            }
            expect(p.inner['gre.key']).toBe('0x00abcdef');
            expect(p.inner['vlan.id']).toBe(String(VID));
            expect(p.inner['eth.src']).toBe(GUEST_A);
            expect(p.inner['eth.dst']).toBe(GUEST_B);
            expect(p.inner[`${innerIp}.src`]).toBe(innerIp === 'ip' ? '10.0.0.1' : 'fd00::1');
            expect(p.inner[`${innerIp}.dst`]).toBe(innerIp === 'ip' ? '10.0.0.2' : 'fd00::2');
            expect(p.inner['udp.dstport']).toBe('5678');
          });
        });
      }
    }
  }

  itWith(['scapy', 'tshark'], 'a wrong key in the esp_sa table makes every ICV bad', async () => {
    const s = sa('aes-gcm-128', FAMILIES[0]!, 'udp', false, 1);
    const outer = await scapyEncrypt(s, FRAMES);
    const got = await tsharkDecryptEsp([{ ...tsharkSa(s), keymat: keymatFor('aes-gcm-128', 77) }], outer, ['esp.icv_good', 'esp.icv_bad']);
    expect(got.map((p) => [p.outer['esp.icv_good'], p.outer['esp.icv_bad']])).toEqual(FRAMES.map(() => ['0', '1']));
  });

  itWith(['scapy', 'tshark'], 'UDP 4500 is ESP-in-UDP by default; another port only when asked', async () => {
    const s = sa('aes-gcm-256', FAMILIES[0]!, 'udp', false, 1);
    const outer = await scapyEncrypt(s, FRAMES.slice(0, 1));
    const p = outer[0]!;
    const u = outerLayout(p).udpOff!;
    p.set([...u16(4501), ...u16(4501)], u); // the IPv4 UDP checksum is 0, so still valid
    const plain = await tsharkDecryptEsp([tsharkSa(s)], [p], ['esp.icv_good']);
    expect([plain[0]!.protocols.includes('esp'), plain[0]!.outer['esp.icv_good']]).toEqual([false, undefined]);
    const asked = await tsharkDecryptEsp([tsharkSa(s)], [p], ['esp.icv_good'], { udpEncapPorts: [4501] });
    expect(asked[0]!.outer['esp.icv_good']).toBe('1');
  });

  it('the helper refuses ChaCha20-Poly1305 and ESN SAs, which tshark 4.0 cannot check', () => {
    const base = tsharkSa(sa('aes-gcm-128', FAMILIES[0]!, 'esp', false));
    const refused = (x: TsharkEspSa): string | null => {
      try {
        espSaLine(x);
        return null;
      } catch (e) {
        return e instanceof TsharkEspError ? e.code : String(e);
      }
    };
    expect(refused({ ...base, algorithm: 'chacha20-poly1305', keymat: keymatFor('chacha20-poly1305', 1) })).toBe('TSHARK_ESP_UNSUPPORTED');
    expect(refused({ ...base, esn: true })).toBe('TSHARK_ESP_UNSUPPORTED');
    expect(refused({ ...base, keymat: new Uint8Array(16) })).toBe('TSHARK_ESP_BAD_ARGUMENT');
    expect(refused({ ...base, src: '2001:db8::1' })).toBe('TSHARK_ESP_BAD_ARGUMENT');
    expect(espSaLine({ ...base, esn: true }, 0, { esn: 'as-32-bit' })).toBe(espSaLine(base));
    // The line of /work/shared/conformance/README.md.
    expect(espSaLine({ family: 'ipv4', src: '192.0.2.1', dst: '192.0.2.2', spi: 0x1001, algorithm: 'aes-gcm-128', keymat: '00'.repeat(20), esn: false })).toBe(
      `"IPv4","192.0.2.1","192.0.2.2","0x00001001","AES-GCM with 16 octet ICV [RFC4106]","0x${'00'.repeat(20)}","NULL",""`,
    );
  });
});

// ---------------------------------------------------------------------------
// (c) the published vectors

interface PublishedSa {
  spi: string;
  family: 'ipv4';
  src: string;
  dst: string;
  algorithm: string;
  keymat_hex: string;
  esn: boolean;
  vector_id: string;
}

interface DraftVector {
  id: string;
  seq_hex: string;
  derived?: { pad_len: number; next_header: number };
}

async function published(): Promise<{ sas: PublishedSa[]; seqs: Map<string, bigint>; trailers: Map<string, [number, number]> }> {
  const sas = JSON.parse(await readFile(join(VECTORS, 'published_sa.json'), 'utf8')) as PublishedSa[];
  const draft = JSON.parse(await readFile(join(VECTORS, 'draft-mcgrew-gcm-test-01.json'), 'utf8')) as { vectors: DraftVector[] };
  const rfc7634 = JSON.parse(await readFile(join(VECTORS, 'rfc7634-appendix-a.json'), 'utf8')) as { vectors: DraftVector[] };
  const seqs = new Map<string, bigint>();
  const trailers = new Map<string, [number, number]>();
  for (const v of [...draft.vectors, ...rfc7634.vectors]) {
    seqs.set(v.id, BigInt(`0x${v.seq_hex}`));
    if (v.derived) trailers.set(v.id, [v.derived.pad_len, v.derived.next_header]);
  }
  return { sas, seqs, trailers };
}

const algorithmOf = (name: string): AeadAlgorithm => name.toLowerCase() as AeadAlgorithm;

describe('(c) published vectors (published_esp.pcap, published_sa.json)', () => {
  itWith(['tshark'], 'tshark verifies exactly the 5 AES-GCM packets without ESN and reports the 11 ESN ones bad', async () => {
    const { sas } = await published();
    const aes = sas.filter((s) => s.algorithm.startsWith('AES-GCM'));
    const table: TsharkEspSa[] = aes.map((s) => ({
      family: s.family,
      src: s.src,
      dst: s.dst,
      spi: s.spi,
      algorithm: algorithmOf(s.algorithm),
      keymat: s.keymat_hex,
      esn: s.esn,
    }));
    // tshark 4.0 knows no ESN; the ESN SAs go in as plain SAs to show it then fails them.
    const got = await tsharkDecryptEsp(table, { path: join(VECTORS, 'published_esp.pcap') }, ['esp.spi', 'esp.icv_good', 'esp.icv_bad'], {
      esn: 'as-32-bit',
    });
    expect(got).toHaveLength(sas.length);
    const good = got.filter((p) => p.outer['esp.icv_good'] === '1').map((p) => sas[p.frame - 1]!.vector_id);
    const bad = got.filter((p) => p.outer['esp.icv_bad'] === '1').map((p) => sas[p.frame - 1]!);
    expect(good).toEqual(aes.filter((s) => !s.esn).map((s) => s.vector_id));
    expect(good).toHaveLength(5);
    expect(good).toContain('mcgrew-gcm-test-01-case04'); // SPI 0: tshark decrypts it; a receiver may drop it first
    expect(bad.every((s) => s.esn)).toBe(true);
    expect(bad).toHaveLength(11);
    // The ChaCha20-Poly1305 packet has no SA tshark could use: neither good nor bad.
    const chacha = got[sas.findIndex((s) => s.algorithm.startsWith('CHACHA'))]!;
    expect([chacha.outer['esp.spi'], chacha.outer['esp.icv_good'], chacha.outer['esp.icv_bad']]).toEqual(['0x01020304', undefined, undefined]);
  });

  itWith(['scapy'], 'scapy opens all 17 packets, ESN and ChaCha20-Poly1305 included, with the published trailers', async () => {
    const { sas, seqs, trailers } = await published();
    const file = await readFile(join(VECTORS, 'published_esp.pcap'));
    // Records of the classic pcap, read here (little-endian, 16-octet record headers).
    const packets: Uint8Array[] = [];
    for (let at = 24; at < file.length; ) {
      const caplen = file.readUInt32LE(at + 8);
      packets.push(new Uint8Array(file.subarray(at + 16, at + 16 + caplen)));
      at += 16 + caplen;
    }
    expect(packets).toHaveLength(sas.length);
    const scapySas: ScapySa[] = sas.map((s) => ({
      spi: s.spi,
      algorithm: algorithmOf(s.algorithm),
      keymat: s.keymat_hex,
      esn: s.esn,
      src: s.src,
      dst: s.dst,
      encapsulation: 'esp',
    }));
    // One run per sequence number, so ESN inference starts right at each vector's number.
    const bySeq = new Map<bigint, number[]>();
    sas.forEach((s, i) => {
      const seq = seqs.get(s.vector_id)!;
      bySeq.set(seq, [...(bySeq.get(seq) ?? []), i]);
    });
    for (const [seq, idx] of bySeq) {
      const vs = await scapyDecrypt(scapySas, idx.map((i) => packets[i]!), { firstSeq: seq });
      vs.forEach((v, k) => {
        const s = sas[idx[k]!]!;
        const [padLen, nextHeader] = trailers.get(s.vector_id)!;
        // They carry IP packets (next header 1 or 4), not GRE: authentic, then refused.
        expect([s.vector_id, v.error, v.seq, v.padLen, v.nextHeader]).toEqual([s.vector_id, 'unexpected_next_header', seq, padLen, nextHeader]);
      });
    }
  });
});

// ---------------------------------------------------------------------------
// (d) sectunnel's AEAD layer and the scapy peer agree

describe('(d) ESP sealed by createAead opens in scapy', () => {
  const backends = availableBackends();
  for (const alg of AEAD_ALGORITHMS) {
    itWith(['scapy'], `${alg} over backends ${backends.join(', ')}, ESN off and on`, async () => {
      const esnBase = 3n * TWO_32 + 0xfffffffen;
      const noEsn = sa(alg, FAMILIES[0]!, 'esp', false, 0x12345678, 0x2001);
      const withEsn = sa(alg, FAMILIES[0]!, 'esp', true, 0x12345678, 0x2002);
      const packets: Uint8Array[] = [];
      const expected: [string, bigint, Uint8Array][] = [];
      backends.forEach((backend, b) => {
        FRAMES.forEach((frame, f) => {
          for (const s of [noEsn, withEsn]) {
            const seq = s.esn ? esnBase + BigInt(b * FRAMES.length + f) : BigInt(1 + b * FRAMES.length + f);
            const esp = sealByHand({
              alg,
              keymat: s.keymat as Uint8Array,
              spi: s.spi as number,
              seq,
              esn: s.esn,
              payload: greWrap(frame),
              backend,
            });
            packets.push(outerEsp(esp));
            expected.push([s.spi === 0x2001 ? '0x00002001' : '0x00002002', seq, frame]);
          }
        });
      });
      const vs = await scapyDecrypt([noEsn, withEsn], packets, { firstSeq: esnBase });
      expect(errors(vs)).toEqual(packets.map(() => null));
      vs.forEach((v, i) => {
        const [spi, seq, frame] = expected[i]!;
        expect([v.spi, v.seq, v.greKey, v.vlan]).toEqual([spi, seq, 0x12345678, VID]);
        expect(toHex(v.inner!)).toBe(toHex(frame));
      });
    });

    itWith(['scapy'], `${alg}: what scapy seals is byte for byte what createAead seals, and opens with it`, async () => {
      const s = sa(alg, FAMILIES[1]!, 'udp', true, 0x12345678);
      const firstSeq = TWO_32 + 9n;
      const outer = await scapyEncrypt(s, FRAMES, { firstSeq });
      outer.forEach((p, i) => {
        const e = outerLayout(p).espOff;
        const esp = p.slice(e);
        const seq = firstSeq + BigInt(i);
        // Same SPI, sequence number, IV (= sequence number), padding and key: the same bytes.
        const ours = sealByHand({ alg, keymat: s.keymat as Uint8Array, spi: 0x1001, seq, esn: true, payload: greWrap(FRAMES[i]!) });
        expect(toHex(esp)).toBe(toHex(ours));
        const aad = new Uint8Array([...esp.subarray(0, 4), ...u32(Number(seq >> 32n)), ...esp.subarray(4, 8)]);
        const aead = createAead(alg, s.keymat as Uint8Array);
        const textLen = esp.length - 32;
        expect(aead.open(esp, 8, 16, textLen, aad)).toBe(true);
        aead.destroy();
        const text = esp.subarray(16, 16 + textLen);
        const padLen = text[textLen - 2]!;
        expect([padLen, text[textLen - 1]]).toEqual([3 - i, 47]);
        expect(Array.from(text.subarray(textLen - 2 - padLen, textLen - 2))).toEqual([1, 2, 3].slice(0, padLen));
        expect(toHex(text.subarray(0, textLen - 2 - padLen))).toBe(toHex(greWrap(FRAMES[i]!)));
      });
    });
  }

  itWith(['scapy'], 'each check of the scapy peer fails on a packet built to fail it', async () => {
    const alg = 'aes-gcm-128';
    const s = sa(alg, FAMILIES[0]!, 'esp', false, 0x12345678, 0x3001);
    const frame = FRAMES[0]!; // 3 pad octets behind an 8-octet GRE header
    const keyed = (seq: number, payload: Uint8Array, extra: Partial<HandEsp> = {}): Uint8Array =>
      outerEsp(sealByHand({ alg, keymat: s.keymat as Uint8Array, spi: 0x3001, seq: BigInt(seq), esn: false, payload, ...extra }));
    const cases: [string | null, Uint8Array][] = [
      [null, keyed(1, greWrap(frame))],
      ['bad_padding_content', keyed(2, greWrap(frame), { pad: [1, 2, 4] })],
      ['bad_padding_content', keyed(3, greWrap(frame), { pad: [0, 0, 0] })],
      [null, keyed(4, greWrap(frame), { pad: [1, 2, 3, 4, 5, 6, 7] })], // longer padding is allowed (RFC 4303 §2.4)
      ['bad_pad_length', keyed(5, greWrap(frame), { padLenField: 250 })],
      ['unexpected_next_header', keyed(6, greWrap(frame), { nextHeader: 4 })],
      [null, keyed(7, greWrap(frame, { checksum: true }))],
      ['gre_checksum', keyed(8, (() => { const g = greWrap(frame, { checksum: true }); g[5]! ^= 1; return g; })())],
      ['gre_malformed', keyed(9, greWrap(frame, { flags: 0x2001 }))], // version 1
      ['gre_malformed', keyed(10, greWrap(frame, { flags: 0x6000 }))], // reserved bit 1
      ['gre_malformed', keyed(11, greWrap(frame, { proto: 0x0800 }))],
      [null, keyed(12, greWrap(frame, { sequence: 77 }))], // S bit: accepted and ignored
      ['gre_unknown_key', keyed(13, greWrap(frame, { key: 0x12345679 }))],
      ['inner_untagged', keyed(14, greWrap(innerFrame({ ip: 6, payloadBytes: 3, vids: [] })))],
      ['inner_malformed', keyed(15, greWrap(frame.subarray(0, 16)))],
    ];
    const vs = await scapyDecrypt(s, cases.map(([, p]) => p));
    expect(vs.map((v) => [v.frame, v.error])).toEqual(cases.map(([e], i) => [i + 1, e]));
    expect(vs[3]!.padLen).toBe(7);
  });
});
