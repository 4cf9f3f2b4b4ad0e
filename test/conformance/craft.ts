// Builds outer packets for conformance cases by construction, byte by byte, sealing with
// the AEAD layer directly (not core/esp.ts), so malformed trailers, bad GRE headers and
// wrong labels can be made on purpose and the expected verdict is known in advance.
import { createAead } from '../../src/crypto/index.js';
import type { AeadAlgorithm } from '../../src/crypto/aead.js';
import { aeadKeymatBytes } from '../../src/crypto/aead.js';
import { internetChecksum } from '../../src/wire/checksum.js';
import { emitIpv4 } from '../../src/wire/ipv4.js';
import { emitIpv6 } from '../../src/wire/ipv6.js';
import { emitUdpHeader, fillUdpChecksumV4, fillUdpChecksumV6 } from '../../src/wire/udp.js';

export interface CraftSa {
  spi: number;
  alg: AeadAlgorithm;
  keymat: Uint8Array;
  esn: boolean;
}

export function keymatFor(alg: AeadAlgorithm, seed: number): Uint8Array {
  return Uint8Array.from({ length: aeadKeymatBytes(alg) }, (_, i) => (seed * 29 + i * 3 + 1) & 0xff);
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

export interface EspOptions {
  nextHeader?: number;
  /** Explicit padding octets (default 1, 2, 3, … to a 4-octet boundary). */
  pad?: number[];
  /** Pad length octet to write instead of pad.length. */
  padLength?: number;
}

/** An ESP packet: SPI, seq_lo, IV = 64-bit seq, then payload ‖ pad ‖ pad length ‖ next header sealed, ICV. */
export function craftEsp(sa: CraftSa, seq: number, payload: Uint8Array, o: EspOptions = {}): Uint8Array {
  const nh = o.nextHeader ?? 47;
  const pad = o.pad ?? Array.from({ length: (4 - ((payload.length + 2) % 4)) % 4 }, (_, i) => i + 1);
  const padLength = o.padLength ?? pad.length;
  const hi = Math.floor(seq / 4294967296);
  const lo = seq >>> 0;
  const text = [...payload, ...pad, padLength, nh];
  const pkt = new Uint8Array(16 + text.length + 16);
  pkt.set([...u32(sa.spi), ...u32(lo), ...u32(hi), ...u32(lo)]);
  pkt.set(text, 16);
  const aad = Uint8Array.from(sa.esn ? [...u32(sa.spi), ...u32(hi), ...u32(lo)] : [...u32(sa.spi), ...u32(lo)]);
  const aead = createAead(sa.alg, sa.keymat.slice());
  aead.seal(pkt, 8, 16, text.length, aad);
  aead.destroy();
  return pkt;
}

export interface GreOptions {
  version?: number;
  /** Extra flag bits to set (e.g. 0x4000 = reserved bit 1). */
  flags?: number;
  protocol?: number;
  checksum?: 'good' | 'bad';
  sequence?: number;
}

/** A GRE packet around `payload`: K bit and key unless key is null. */
export function gre(key: number | null, payload: Uint8Array, o: GreOptions = {}): Uint8Array {
  let flags = (o.flags ?? 0) | (o.version ?? 0);
  if (key !== null) flags |= 0x2000;
  if (o.checksum) flags |= 0x8000;
  if (o.sequence !== undefined) flags |= 0x1000;
  const hdr = [flags >> 8, flags & 0xff, ...[(o.protocol ?? 0x6558) >> 8, (o.protocol ?? 0x6558) & 0xff]];
  if (o.checksum) hdr.push(0, 0, 0, 0);
  if (key !== null) hdr.push(...u32(key));
  if (o.sequence !== undefined) hdr.push(...u32(o.sequence));
  const out = Uint8Array.from([...hdr, ...payload]);
  if (o.checksum) {
    let c = internetChecksum(out, 0, out.length, 0);
    if (o.checksum === 'bad') c ^= 0x0101;
    out[4] = c >> 8;
    out[5] = c & 0xff;
  }
  return out;
}

export const MACS = {
  guestA: [0x02, 0, 0, 0, 0x0a, 0x01],
  guestB: [0x02, 0, 0, 0, 0x0b, 0x01],
  bcast: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
};

/** A guest frame dst ← src carrying IPv4, with 0, 1 or 2 tags (tags: list of [tpid, vid]). */
export function frame(tags: [number, number][], payloadBytes: number, seed = 1, dst = MACS.guestB, src = MACS.guestA): Uint8Array {
  const t = tags.flatMap(([tpid, vid]) => [tpid >> 8, tpid & 0xff, (vid >> 8) & 0x0f, vid & 0xff]);
  const hdr = [...dst, ...src, ...t, 0x08, 0x00];
  const f = new Uint8Array(hdr.length + payloadBytes);
  f.set(hdr);
  for (let i = 0; i < payloadBytes; i++) f[hdr.length + i] = (i * 7 + seed) & 0xff;
  return f;
}

/** The same frame with its first tag removed. */
export function untag(f: Uint8Array): Uint8Array {
  return Uint8Array.from([...f.subarray(0, 12), ...f.subarray(16)]);
}

const ETH_SRC = [0x02, 0, 0, 0, 0, 0x01];
const ETH_DST = [0x02, 0, 0, 0, 0, 0x02];

export interface OuterOptions {
  udp?: boolean;
  dport?: number;
  /** IPv4 fragment: offset in octets (multiple of 8) and MF. */
  frag?: { offsetBytes: number; more: boolean; id: number };
  zeroUdpChecksumV6?: boolean;
  protocol?: number;
}

/** Ethernet | IPv4 192.0.2.1 → 192.0.2.2 | [UDP 4500] | payload. */
export function ipv4(payload: Uint8Array, o: OuterOptions = {}): Uint8Array {
  const udp = o.udp ?? true;
  const l4 = udp && !o.frag ? 8 : 0;
  const total = 14 + 20 + l4 + payload.length;
  const b = new Uint8Array(total);
  b.set([...ETH_DST, ...ETH_SRC, 0x08, 0x00]);
  emitIpv4(
    {
      src: Uint8Array.of(192, 0, 2, 1),
      dst: Uint8Array.of(192, 0, 2, 2),
      protocol: o.protocol ?? (udp ? 17 : 50),
      payloadLen: l4 + payload.length,
      ttl: 64,
      identification: o.frag?.id ?? 1,
      moreFragments: o.frag?.more ?? false,
      fragmentOffsetBytes: o.frag?.offsetBytes ?? 0,
    },
    b,
    14,
  );
  if (l4 > 0) {
    emitUdpHeader(b, 34, 4500, o.dport ?? 4500, payload.length);
    b.set(payload, 42);
    fillUdpChecksumV4(b, 34, b, 26, b, 30);
  } else {
    b.set(payload, 34);
  }
  return b;
}

/** A UDP datagram (header + payload) as the payload of IPv4 fragments, checksum over 192.0.2.1 → .2. */
export function udp4Datagram(payload: Uint8Array): Uint8Array {
  const d = new Uint8Array(8 + payload.length);
  emitUdpHeader(d, 0, 4500, 4500, payload.length);
  d.set(payload, 8);
  fillUdpChecksumV4(d, 0, Uint8Array.of(192, 0, 2, 1), 0, Uint8Array.of(192, 0, 2, 2), 0);
  return d;
}

/** Ethernet | IPv6 2001:db8::1 → 2001:db8::2 | [UDP 4500] | payload. */
export function ipv6(payload: Uint8Array, o: OuterOptions = {}): Uint8Array {
  const udp = o.udp ?? true;
  const l4 = udp ? 8 : 0;
  const b = new Uint8Array(14 + 40 + l4 + payload.length);
  b.set([...ETH_DST, ...ETH_SRC, 0x86, 0xdd]);
  const src = Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
  const dst = Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);
  emitIpv6({ src, dst, nextHeader: udp ? 17 : 50, payloadLen: l4 + payload.length, hopLimit: 64 }, b, 14);
  if (udp) {
    emitUdpHeader(b, 54, 4500, o.dport ?? 4500, payload.length);
    b.set(payload, 62);
    if (!o.zeroUdpChecksumV6) fillUdpChecksumV6(b, 54, b, 22, b, 38);
  } else {
    b.set(payload, 54);
  }
  return b;
}
