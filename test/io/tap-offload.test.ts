// TAP offloads (native-fallback/src/offload.c through tap.c): segmentation of the super-frames a
// TAP with IFF_VNET_HDR hands over, and coalescing of TCP segments into super-frames on write.
// The pure steps run through the addon's offloadSegment/offloadCoalesce and are checked by tshark
// (checksums verified) and by a round trip; a fuzz run feeds random vnet headers and frames; and
// a relay of two offloading TAPs in two namespaces carries a kernel TCP stream both ways.
// Namespaces are named st-h8t-<pid>-…, and are removed also on failure.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect } from 'vitest';
import type { PacketBuf } from '../../src/buf/packet-buf.js';
import { PacketPool } from '../../src/buf/pool.js';
import { ioAddon, OFFLOAD_DROP_REASONS, TapDevice, type IoAddon } from '../../src/io/tap.js';
import { encodePcap, LINKTYPE_ETHERNET } from '../../src/wire/pcap.js';
import { itWith } from '../helpers/tools.js';

const run = promisify(execFile);
const TAG = `${process.pid % 1_000_000}`;
const nsName = (what: string): string => `st-h8t-${TAG}-${what}`;

const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_UDP_L4 = 5;
const GSO_ECN = 0x80;
const NEEDS_CSUM = 1;
const FIN = 0x01;
const PSH = 0x08;
const ACK = 0x10;
const CWR = 0x80;

const addon = (): IoAddon & Required<Pick<IoAddon, 'offloadSegment' | 'offloadCoalesce'>> => ioAddon() as never;

/** Sum of big-endian 16-bit words of b[start, end) (RFC 1071), not folded. */
function sum16(b: Uint8Array, start: number, end: number, s = 0): number {
  for (let i = start; i < end; i += 2) s += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
  return s;
}
const fold = (s: number): number => {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
};
const put16 = (b: Uint8Array, at: number, v: number): void => {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
};
const get16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const get32 = (b: Uint8Array, at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

interface FrameSpec {
  v6?: boolean;
  vlan?: boolean;
  udp?: boolean;
  payload: Uint8Array;
  flags?: number;
  seq?: number;
  ipId?: number;
  /** TCP options (multiple of 4). Default: NOP NOP timestamps. */
  options?: number[];
  ttl?: number;
  df?: boolean;
  srcPort?: number;
  window?: number;
}

const TS_OPTIONS = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

/**
 * An Ethernet frame 02:00:00:00:00:01 → 02:00:00:00:00:02 [802.1Q 100] IPv4 198.18.0.1 → 198.18.0.2
 * (or IPv6 2001:db8::1 → ::2) TCP 40000 → 5201 (or UDP), whose L4 checksum is left partial (the
 * pseudo-header sum, as the kernel hands CHECKSUM_PARTIAL frames over). Returns the frame and offsets.
 */
function buildFrame(o: FrameSpec): { frame: Uint8Array; l3: number; l4: number; hdr: number } {
  const l3 = o.vlan ? 18 : 14;
  const ipLen = o.v6 ? 40 : 20;
  const l4 = l3 + ipLen;
  const opts = o.udp ? [] : (o.options ?? TS_OPTIONS);
  const l4hdr = o.udp ? 8 : 20 + opts.length;
  const hdr = l4 + l4hdr;
  const f = new Uint8Array(hdr + o.payload.length);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  if (o.vlan) f.set([0x81, 0x00, 0x00, 100], 12);
  put16(f, l3 - 2, o.v6 ? 0x86dd : 0x0800);
  const l4len = l4hdr + o.payload.length;
  const proto = o.udp ? 17 : 6;
  if (o.v6) {
    f[l3] = 0x60;
    put16(f, l3 + 4, l4len);
    f[l3 + 6] = proto;
    f[l3 + 7] = o.ttl ?? 64;
    f.set([0x20, 0x01, 0x0d, 0xb8], l3 + 8);
    f[l3 + 23] = 1;
    f.set([0x20, 0x01, 0x0d, 0xb8], l3 + 24);
    f[l3 + 39] = 2;
  } else {
    f[l3] = 0x45;
    put16(f, l3 + 2, ipLen + l4len);
    put16(f, l3 + 4, o.ipId ?? 0x1234);
    f[l3 + 6] = o.df === false ? 0 : 0x40;
    f[l3 + 8] = o.ttl ?? 64;
    f[l3 + 9] = proto;
    f.set([198, 18, 0, 1, 198, 18, 0, 2], l3 + 12);
    put16(f, l3 + 10, ~fold(sum16(f, l3, l3 + 20)) & 0xffff);
  }
  put16(f, l4, o.srcPort ?? 40000);
  put16(f, l4 + 2, 5201);
  if (o.udp) {
    put16(f, l4 + 4, l4len);
  } else {
    const seq = o.seq ?? 0xfffff000; // wraps inside a super-frame
    put16(f, l4 + 4, seq >>> 16);
    put16(f, l4 + 6, seq & 0xffff);
    f.set([0x11, 0x22, 0x33, 0x44], l4 + 8);
    f[l4 + 12] = (l4hdr / 4) << 4;
    f[l4 + 13] = o.flags ?? ACK;
    put16(f, l4 + 14, o.window ?? 501);
    f.set(opts, l4 + 20);
  }
  f.set(o.payload, hdr);
  // Pseudo-header sum (RFC 793 §3.1, RFC 8200 §8.1) into the checksum field: CHECKSUM_PARTIAL.
  const pseudo = (o.v6 ? sum16(f, l3 + 8, l3 + 40) : sum16(f, l3 + 12, l3 + 20)) + proto + l4len;
  put16(f, l4 + (o.udp ? 6 : 16), fold(pseudo));
  return { frame: f, l3, l4, hdr };
}

/** Completes the partial L4 checksum of a buildFrame frame (what a NIC would do). */
function completeChecksum(b: { frame: Uint8Array; l4: number }, udp = false): Uint8Array {
  const f = b.frame.slice();
  const at = b.l4 + (udp ? 6 : 16);
  let c = ~fold(sum16(f, b.l4, f.length)) & 0xffff;
  if (c === 0) c = 0xffff;
  put16(f, at, c);
  return f;
}

/** virtio_net_hdr (little-endian fields) in front of a frame. */
function withVnet(h: { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number }, frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(10 + frame.length);
  const v = new DataView(out.buffer);
  out[0] = h.flags;
  out[1] = h.gsoType;
  v.setUint16(2, h.hdrLen, true);
  v.setUint16(4, h.gsoSize, true);
  v.setUint16(6, h.csumStart, true);
  v.setUint16(8, h.csumOffset, true);
  out.set(frame, 10);
  return out;
}

function superFrame(o: FrameSpec & { mss: number; ecn?: boolean }): { input: Uint8Array; hdr: number; l4: number } {
  const b = buildFrame(o);
  const gsoType = (o.udp ? GSO_UDP_L4 : o.v6 ? GSO_TCPV6 : GSO_TCPV4) | (o.ecn ? GSO_ECN : 0);
  return { input: withVnet({ flags: NEEDS_CSUM, gsoType, hdrLen: b.hdr, gsoSize: o.mss, csumStart: b.l4, csumOffset: o.udp ? 6 : 16 }, b.frame), hdr: b.hdr, l4: b.l4 };
}

const CAP = 9100;

/** offloadSegment → the segments, or the drop reason's name. */
function segment(input: Uint8Array, maxSegs = 64, cap = CAP): Uint8Array[] | string {
  const out = new Uint8Array(cap * maxSegs);
  const lens = new Int32Array(maxSegs);
  const n = addon().offloadSegment(input, out, cap, lens);
  if (n < 0) return OFFLOAD_DROP_REASONS[-n] ?? `reason ${-n}`;
  return Array.from({ length: n }, (_, j) => out.slice(j * cap, j * cap + lens[j]!));
}

/** offloadCoalesce over frames → the writes (vnet header + frame, and how many frames each holds); checks the frames stay unchanged. */
function coalesce(frames: Uint8Array[]): { bytes: Uint8Array; frames: number }[] {
  const total = frames.reduce((s, f) => s + f.length, 0);
  const slab = new Uint8Array(total + 64);
  const desc = new Int32Array(frames.length * 2);
  let at = 8;
  frames.forEach((f, i) => {
    slab.set(f, at);
    desc[2 * i] = at;
    desc[2 * i + 1] = f.length;
    at += f.length;
  });
  const out = new Uint8Array(total + 10 * frames.length);
  const outDesc = new Int32Array(frames.length * 3);
  const m = addon().offloadCoalesce(slab, desc, frames.length, out, outDesc);
  expect(m).toBeGreaterThan(0);
  // The frames themselves are never changed (decap writes one buffer to every TAP of a flood).
  frames.forEach((f, i) => expect(slab.subarray(desc[2 * i]!, desc[2 * i]! + f.length)).toEqual(f));
  return Array.from({ length: m }, (_, k) => ({ bytes: out.slice(outDesc[3 * k]!, outDesc[3 * k]! + outDesc[3 * k + 1]!), frames: outDesc[3 * k + 2]! }));
}

interface Decoded {
  ipCsum: string;
  l4Csum: string;
  seq: number;
  len: number;
  flags: number;
  ipId: number;
  ipLen: number;
}

/** tshark's decode of Ethernet frames, with IP and TCP/UDP checksum checks on (status 1 = good). */
async function tshark(frames: Uint8Array[]): Promise<Decoded[]> {
  const dir = mkdtempSync(join(tmpdir(), 'st-h8t-'));
  try {
    const file = join(dir, 'f.pcap');
    writeFileSync(file, encodePcap(LINKTYPE_ETHERNET, frames.map((data) => ({ data }))));
    const fields = ['ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'tcp.seq_raw', 'tcp.len', 'udp.length', 'tcp.flags', 'ip.id', 'ip.len', 'ipv6.plen'];
    const { stdout } = await run(
      'tshark',
      ['-r', file, '-n', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.analyze_sequence_numbers:FALSE', '-T', 'fields', '-E', 'separator=/t', ...fields.flatMap((f) => ['-e', f])],
      { timeout: 60_000 },
    );
    return stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const [ipCs, tcpCs, udpCs, seq, tcpLen, udpLen, flags, id, ipLen, plen] = line.split('\t');
        return {
          ipCsum: ipCs || 'none',
          l4Csum: tcpCs || udpCs || 'none',
          seq: Number(seq || 0),
          len: tcpLen ? Number(tcpLen) : Number(udpLen || 8) - 8,
          flags: Number(flags || 0),
          ipId: Number(id || 0),
          ipLen: Number(ipLen || plen || 0),
        };
      });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function randomBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

describe('segmentation of TAP super-frames (offloadSegment)', () => {
  for (const v of [
    { name: 'TCPv4', v6: false, vlan: false },
    { name: 'TCPv6', v6: true, vlan: false },
    { name: 'TCPv4 behind an 802.1Q tag', v6: false, vlan: true },
  ]) {
    itWith(['native', 'tshark'], `a ${v.name} TSO super-frame becomes valid MSS-sized segments (tshark: checksums good, seq contiguous)`, async () => {
      const payload = randomBytes(20_000, 7);
      const sf = superFrame({ ...v, payload, mss: 1348, flags: ACK | PSH | FIN | CWR, ecn: true });
      const segs = segment(sf.input);
      expect(Array.isArray(segs)).toBe(true);
      const list = segs as Uint8Array[];
      expect(list.length).toBe(Math.ceil(20_000 / 1348)); // 15
      const d = await tshark(list);
      expect(d.every((x) => x.l4Csum === '1')).toBe(true);
      if (!v.v6) expect(d.every((x) => x.ipCsum === '1')).toBe(true);
      expect(d.map((x) => x.len)).toEqual([...Array(14).fill(1348), 20_000 - 14 * 1348]);
      expect(d.map((x) => x.seq)).toEqual(d.map((_, i) => (0xfffff000 + i * 1348) >>> 0)); // wraps past 2^32
      expect(d.map((x) => x.flags)).toEqual(d.map((_, i) => (i === 0 ? ACK | CWR : i === d.length - 1 ? ACK | PSH | FIN : ACK)));
      if (!v.v6) expect(d.map((x) => x.ipId)).toEqual(d.map((_, i) => 0x1234 + i));
      expect(d.map((x) => x.ipLen)).toEqual(d.map((x) => x.len + 32 + (v.v6 ? 0 : 20)));
      expect(concat(list.map((s) => s.subarray(sf.hdr)))).toEqual(payload);
    });
  }

  itWith(['native', 'tshark'], 'a UDP (USO) super-frame becomes datagrams of gso_size with good checksums', async () => {
    const payload = randomBytes(4000, 3);
    const sf = superFrame({ udp: true, payload, mss: 1400 });
    const list = segment(sf.input) as Uint8Array[];
    expect(list.length).toBe(3);
    const d = await tshark(list);
    expect(d.map((x) => [x.ipCsum, x.l4Csum, x.len])).toEqual([
      ['1', '1', 1400],
      ['1', '1', 1400],
      ['1', '1', 1200],
    ]);
  });

  itWith(['native', 'tshark'], 'a frame with a partial checksum and no GSO gets its checksum completed', async () => {
    for (const udp of [false, true]) {
      const b = buildFrame({ udp, payload: randomBytes(333, 11) });
      const input = withVnet({ flags: NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: b.l4, csumOffset: udp ? 6 : 16 }, b.frame);
      const list = segment(input) as Uint8Array[];
      expect(list).toEqual([completeChecksum(b, udp)]);
      expect((await tshark(list))[0]!.l4Csum).toBe('1');
    }
  });

  itWith(['native'], 'malformed vnet headers are dropped with a reason, never delivered in part', () => {
    const ok = superFrame({ payload: randomBytes(5000, 1), mss: 1000 });
    const patch = (at: number, v: number, le16 = false): Uint8Array => {
      const c = ok.input.slice();
      if (le16) new DataView(c.buffer).setUint16(at, v, true);
      else c[at] = v;
      return c;
    };
    expect(segment(ok.input)).toHaveLength(5);
    expect(segment(patch(1, 9))).toBe('bad_gso_type'); // unknown type
    expect(segment(patch(1, 3))).toBe('bad_gso_type'); // UFO: not offered to the kernel
    expect(segment(patch(4, 0, true))).toBe('bad_gso_size');
    expect(segment(patch(2, 60_000, true))).toBe('bad_hdr_len');
    expect(segment(patch(6, 5060, true))).toBe('bad_csum');
    expect(segment(patch(1, GSO_TCPV6))).toBe('bad_frame'); // an IPv4 frame said to be IPv6
    expect(segment(patch(10 + 14 + 9, 17))).toBe('bad_frame'); // UDP under a TCP GSO type
    expect(segment(patch(4, 9500, true))).toBe('too_big'); // a segment larger than a slot
    expect(segment(ok.input, 4)).toBe('no_room'); // 5 segments, 4 free buffers
    expect(segment(ok.input.subarray(0, 8))).toBe('bad_frame');
  });

  itWith(['native'], 'fuzz: random and mutated vnet headers and frames never crash and give segments or a counted reason', () => {
    const base = [superFrame({ payload: randomBytes(3000, 5), mss: 700 }).input, superFrame({ v6: true, vlan: true, payload: randomBytes(2000, 6), mss: 500 }).input];
    const reasons = new Map<string, number>();
    const out = new Uint8Array(2048 * 64);
    const lens = new Int32Array(64);
    for (let i = 0; i < 20_000; i++) {
      let input: Uint8Array;
      if (i % 2 === 0) {
        input = randomBytes(1 + (i % 3000), i + 1);
        input[1] = [0, 1, 4, 5, 0x81][i % 5]!; // mostly known GSO types, so the parser goes deep
        if (i % 11 === 0 && input.length > 6) input[4] = input[5] = 0; // gso_size 0
      } else {
        input = base[(i >> 1) % 2]!.slice();
        const noise = randomBytes(6, i);
        for (let k = 0; k < 3; k++) input[noise[2 * k]! % 80] = noise[2 * k + 1]!;
        if (i % 7 === 0) input = input.subarray(0, noise[0]! * 12);
      }
      const n = addon().offloadSegment(input, out, 2048, lens);
      const key = n > 0 ? 'segments' : OFFLOAD_DROP_REASONS[-n]!;
      expect(key, `result ${n}`).toBeDefined();
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
      for (let j = 0; j < n; j++) expect(lens[j]).toBeLessThanOrEqual(2048);
    }
    for (const r of ['segments', 'bad_frame', 'bad_gso_type', 'bad_gso_size', 'bad_hdr_len', 'bad_csum']) expect(reasons.get(r), r).toBeGreaterThan(0);
  });
});

describe('coalescing of TCP segments on write (offloadCoalesce)', () => {
  /** The segments the kernel would put on the wire for a super-frame (full checksums). */
  const segmentsOf = (o: FrameSpec & { mss: number }): Uint8Array[] => segment(superFrame(o).input) as Uint8Array[];

  itWith(['native', 'tshark'], 'exact continuations of one flow become one super-frame that segments back into the same frames', async () => {
    for (const v of [{ v6: false }, { v6: true }, { v6: false, vlan: true }]) {
      const segs = segmentsOf({ ...v, payload: randomBytes(30_000, 9), mss: 1348, flags: ACK | PSH });
      const writes = coalesce(segs.map((s) => s.slice()));
      expect(writes.map((w) => w.frames)).toEqual([segs.length]);
      const w = writes[0]!.bytes;
      const vh = new DataView(w.buffer, w.byteOffset, 10);
      const l4 = (v.vlan ? 18 : 14) + (v.v6 ? 40 : 20);
      expect([w[0], w[1], vh.getUint16(2, true), vh.getUint16(4, true), vh.getUint16(6, true), vh.getUint16(8, true)]).toEqual([
        NEEDS_CSUM,
        v.v6 ? GSO_TCPV6 : GSO_TCPV4,
        l4 + 32,
        1348,
        l4,
        16,
      ]);
      // What the kernel does with it (GSO on the way to a guest) gives back the original segments.
      expect(segment(w)).toEqual(segs);
      const d = await tshark([w.subarray(10)]);
      if (!v.v6) expect(d[0]!.ipCsum).toBe('1');
      expect(d[0]!.len).toBe(30_000);
    }
  });

  itWith(['native'], 'anything but an exact continuation goes as a plain frame behind a zero vnet header', () => {
    const mk = (o: Partial<FrameSpec> & { seq: number }, len = 1000): Uint8Array => completeChecksum(buildFrame({ payload: randomBytes(len, o.seq), ...o }));
    const s0 = 1000;
    const cases: [string, Uint8Array[], number[]][] = [
      ['a contiguous run', [mk({ seq: s0 }), mk({ seq: s0 + 1000 }), mk({ seq: s0 + 2000 }, 300)], [3]],
      ['a gap in seq', [mk({ seq: s0 }), mk({ seq: s0 + 1001 })], [1, 1]],
      ['PSH before the last', [mk({ seq: s0, flags: ACK | PSH }), mk({ seq: s0 + 1000 })], [1, 1]],
      ['PSH on the last', [mk({ seq: s0 }), mk({ seq: s0 + 1000, flags: ACK | PSH })], [2]],
      ['a shorter segment in the middle', [mk({ seq: s0 }), mk({ seq: s0 + 1000 }, 500), mk({ seq: s0 + 1500 }, 500)], [2, 1]],
      ['a longer segment after', [mk({ seq: s0 }, 500), mk({ seq: s0 + 500 }, 1000)], [1, 1]],
      ['another port', [mk({ seq: s0 }), mk({ seq: s0 + 1000, srcPort: 40001 })], [1, 1]],
      ['another window', [mk({ seq: s0 }), mk({ seq: s0 + 1000, window: 502 })], [1, 1]],
      ['another TTL', [mk({ seq: s0 }), mk({ seq: s0 + 1000, ttl: 63 })], [1, 1]],
      ['no DF', [mk({ seq: s0, df: false }), mk({ seq: s0 + 1000, df: false })], [1, 1]],
      ['FIN', [mk({ seq: s0 }), mk({ seq: s0 + 1000, flags: ACK | FIN })], [1, 1]],
      ['options other than timestamps', [mk({ seq: s0, options: [1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2] }), mk({ seq: s0 + 1000, options: [1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2] })], [1, 1]],
      ['other timestamps', [mk({ seq: s0 }), mk({ seq: s0 + 1000, options: [1, 1, 8, 10, 0, 0, 0x12, 0x35, 0, 0, 0x56, 0x78] })], [1, 1]],
      ['two flows interleaved', [mk({ seq: s0 }), mk({ seq: s0, srcPort: 40001 }), mk({ seq: s0 + 1000 }), mk({ seq: s0 + 1000, srcPort: 40001 })], [1, 1, 1, 1]],
    ];
    for (const [what, frames, expected] of cases) {
      const copies = frames.map((f) => f.slice());
      const writes = coalesce(copies);
      expect(writes.map((w) => w.frames), what).toEqual(expected);
      for (const w of writes) {
        if (w.frames === 1) expect(Array.from(w.bytes.subarray(0, 10)), what).toEqual(Array(10).fill(0));
      }
      // A lone frame is written unchanged.
      if (expected.every((k) => k === 1)) expect(writes.map((w) => w.bytes.subarray(10)), what).toEqual(frames);
    }
    // Non-TCP frames and a frame of 1 octet pass through unchanged too.
    const udp = completeChecksum(buildFrame({ udp: true, payload: randomBytes(100, 1) }), true);
    expect(coalesce([udp, udp.slice(), new Uint8Array(1)]).map((w) => w.frames)).toEqual([1, 1, 1]);
  });

  itWith(['native'], 'a super-frame stays within 64 KB of IP length', () => {
    const segs = Array.from({ length: 60 }, (_, i) => completeChecksum(buildFrame({ payload: randomBytes(1400, i + 1), seq: 1 + i * 1400 })));
    const writes = coalesce(segs);
    expect(writes.map((w) => w.frames)).toEqual([46, 14]); // 46 × 1400 + 52 ≤ 65535 < 47 × 1400 + 52
    for (const w of writes) expect(get16(w.bytes, 10 + 16)).toBeLessThanOrEqual(65535);
    expect(get32(writes[1]!.bytes, 10 + 38)).toBe(1 + 46 * 1400);
  });
});

/** Runs a command in the test's namespaces; rejects with stderr on failure. */
async function sh(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { timeout: 60_000 })).stdout;
}

afterAll(async () => {
  const list = await sh('ip', ['netns', 'list']).catch(() => '');
  for (const line of list.split('\n')) {
    const ns = line.split(' ')[0]!;
    if (ns.startsWith(`st-h8t-${TAG}-`)) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
});

describe('two offloading TAPs relayed by this process', () => {
  itWith(
    ['netns', 'native', 'iperf3'],
    'a kernel TCP stream crosses both ways as super-frames: segmented on read, coalesced on write, nothing dropped',
    async () => {
      const [nsA, nsB] = [nsName('a'), nsName('b')];
      const pool = new PacketPool({ packets: 1024 });
      const taps: TapDevice[] = [];
      try {
        for (const ns of [nsA, nsB]) await sh('ip', ['netns', 'add', ns]);
        const names = [`st-h8t-${TAG}a`.slice(0, 15), `st-h8t-${TAG}b`.slice(0, 15)];
        for (const n of names) taps.push(TapDevice.open({ name: n, pool, offload: true, persistent: false }));
        const [ta, tb] = taps as [TapDevice, TapDevice];
        expect(ta.offloadFlags & 0x07).toBe(0x07); // TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
        const relay = (from: TapDevice, to: TapDevice) =>
          from.onFrames((bufs: PacketBuf[], count: number) => {
            to.writeBatch(bufs, count);
            for (let i = 0; i < count; i++) pool.put(bufs[i]!);
          });
        relay(ta, tb);
        relay(tb, ta);
        for (const [i, ns] of [nsA, nsB].entries()) {
          await sh('ip', ['link', 'set', names[i]!, 'netns', ns]);
          await sh('ip', ['-n', ns, 'link', 'set', names[i]!, 'address', `02:00:00:00:00:0${i + 1}`, 'mtu', '1500', 'up']);
          await sh('ip', ['-n', ns, 'addr', 'add', `198.18.0.${i + 1}/24`, 'dev', names[i]!]);
          await sh('ip', ['-n', ns, 'addr', 'add', `2001:db8::${i + 1}/64`, 'dev', names[i]!, 'nodad']);
        }
        await sh('ip', ['netns', 'exec', nsA, 'ping', '-c', '1', '-W', '5', '198.18.0.2']);
        const srv = spawn('ip', ['netns', 'exec', nsB, 'iperf3', '-s', '-1', '-B', '198.18.0.2'], { stdio: 'ignore' });
        try {
          await new Promise((r) => setTimeout(r, 500));
          let out = '';
          for (let attempt = 0; attempt < 20 && out === ''; attempt++) {
            out = await sh('ip', ['netns', 'exec', nsA, 'iperf3', '-c', '198.18.0.2', '-t', '2', '-J']).catch(async () => {
              await new Promise((r) => setTimeout(r, 250));
              return '';
            });
          }
          const report = JSON.parse(out) as { end: { sum_received: { bytes: number } } };
          expect(report.end.sum_received.bytes).toBeGreaterThan(10_000_000);
        } finally {
          srv.kill();
        }
        // IPv6 too, a plain TCP transfer checked octet by octet (nc-free: iperf3 reverse mode).
        const srv6 = spawn('ip', ['netns', 'exec', nsB, 'iperf3', '-s', '-1', '-B', '2001:db8::2'], { stdio: 'ignore' });
        try {
          let out = '';
          for (let attempt = 0; attempt < 20 && out === ''; attempt++) {
            out = await sh('ip', ['netns', 'exec', nsA, 'iperf3', '-c', '2001:db8::2', '-t', '1', '-R', '-J']).catch(async () => {
              await new Promise((r) => setTimeout(r, 250));
              return '';
            });
          }
          expect((JSON.parse(out) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes).toBeGreaterThan(5_000_000);
        } finally {
          srv6.kill();
        }
        const [sa, sb] = [ta.offloadStats(), tb.offloadStats()];
        // A's kernel sent super-frames (segmented here); B's kernel got them back coalesced, and the reverse for IPv6.
        expect(sa.gsoFrames).toBeGreaterThan(0);
        expect(sa.gsoSegments).toBeGreaterThan(sa.gsoFrames);
        expect(sb.groFrames).toBeGreaterThan(0);
        expect(sb.groSegments).toBeGreaterThan(sb.groFrames);
        expect(sb.gsoFrames).toBeGreaterThan(0);
        expect(sa.groFrames).toBeGreaterThan(0);
        for (const s of [sa, sb]) {
          expect([s.dropBadFrame, s.dropBadGsoType, s.dropBadGsoSize, s.dropBadHdrLen, s.dropBadCsum, s.dropTooBig]).toEqual([0, 0, 0, 0, 0, 0]);
        }
        for (const t of taps) expect(t.stats().txErrors).toBe(0);
      } finally {
        for (const t of taps) t.close();
        for (const ns of [nsA, nsB]) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
      }
      expect(pool.available).toBe(1024);
    },
    120_000,
  );
});
