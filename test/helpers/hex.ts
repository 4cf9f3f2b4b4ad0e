// Small byte helpers for tests: hex literals, buffers pre-filled with 0xa5 at
// offsets 0–7 (smoltcp / noble habit), a seeded PRNG and fuzz inputs, a check that
// a view reads nothing outside its window, and a minimal pcap writer.

/** Fill octet of emit buffers: an emitter that forgets a field leaves 0xa5, not a plausible zero. */
export const FILL = 0xa5;

/** Buffer offsets every parse and emit test runs at. */
export const OFFSETS = [0, 1, 2, 3, 4, 5, 6, 7] as const;

/** Bytes from hex text; whitespace, ':' and '-' separators are ignored. Throws on anything else. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/[\s:-]/g, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(clean)) throw new Error(`hex(): not an even run of hex digits: ${text.slice(0, 40)}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Lowercase hex of bytes[off, off + len), no separators. */
export function toHex(bytes: Uint8Array, off = 0, len = bytes.length - off): string {
  let s = '';
  for (let i = off; i < off + len; i++) s += bytes[i]!.toString(16).padStart(2, '0');
  return s;
}

/** A buffer of `len` octets, every one `fill` (default 0xa5). */
export function filled(len: number, fill = FILL): Uint8Array {
  return new Uint8Array(len).fill(fill);
}

/** `content` copied to offset `off` of a buffer filled with `fill`, with `tail` fill octets behind it. */
export function placed(content: Uint8Array, off: number, tail = 0, fill = FILL): Uint8Array {
  const out = filled(off + content.length + tail, fill);
  out.set(content, off);
  return out;
}

/** Seeded PRNG (mulberry32): returns uint32 values; same seed, same sequence. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `n` pseudo-random octets from `next`. */
export function randomBytes(next: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = next() & 0xff;
  return out;
}

/**
 * Fuzz inputs for a parser, deterministic for a seed: every prefix of every golden
 * packet, `count` random buffers (0–maxLen octets), and `count` goldens with 1–4
 * octets overwritten at random.
 */
export function fuzzInputs(seed: number, goldens: readonly Uint8Array[], count = 2000, maxLen = 96): Uint8Array[] {
  const next = rng(seed);
  const out: Uint8Array[] = [];
  for (const g of goldens) for (let n = 0; n <= g.length; n++) out.push(g.slice(0, n));
  for (let i = 0; i < count; i++) out.push(randomBytes(next, next() % (maxLen + 1)));
  for (let i = 0; goldens.length > 0 && i < count; i++) {
    const m = goldens[next() % goldens.length]!.slice();
    const edits = 1 + (next() % 4);
    for (let e = 0; e < edits && m.length > 0; e++) m[next() % m.length] = next() & 0xff;
    out.push(m);
  }
  return out;
}

/**
 * Runs `probe(bytes, off, len)` on `content` placed at offset `off` in two buffers
 * whose surroundings (8 octets before, 64 behind) differ: all 0x00 in one, all 0xff
 * in the other. A probe that reads only inside its window returns equal results.
 */
export function probeIsolated<T>(content: Uint8Array, off: number, probe: (bytes: Uint8Array, off: number, len: number) => T): [T, T] {
  const a = placed(content, off, 64, 0x00);
  const b = placed(content, off, 64, 0xff);
  return [probe(a, off, content.length), probe(b, off, content.length)];
}

/** Values of the named getters of `view`, for comparing two probes. */
export function snapshot(view: object, names: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const n of names) out[n] = (view as Record<string, unknown>)[n];
  return out;
}

/** pcap link types (tcpdump.org/linktypes.html). */
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;

/**
 * A classic pcap file (microsecond timestamps, little-endian): the 24-octet global
 * header and one 16-octet record header per packet, timestamps 1 s apart from t = 1 s.
 */
export function pcapFile(packets: readonly Uint8Array[], linkType = LINKTYPE_ETHERNET): Uint8Array {
  const total = 24 + packets.reduce((n, p) => n + 16 + p.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0xa1b2c3d4, true); // magic, microsecond resolution
  dv.setUint16(4, 2, true); // version 2.4
  dv.setUint16(6, 4, true);
  dv.setInt32(8, 0, true); // thiszone
  dv.setUint32(12, 0, true); // sigfigs
  dv.setUint32(16, 65535, true); // snaplen
  dv.setUint32(20, linkType, true);
  let at = 24;
  packets.forEach((p, i) => {
    dv.setUint32(at, i + 1, true); // ts_sec
    dv.setUint32(at + 4, 0, true); // ts_usec
    dv.setUint32(at + 8, p.length, true); // incl_len
    dv.setUint32(at + 12, p.length, true); // orig_len
    out.set(p, at + 16);
    at += 16 + p.length;
  });
  return out;
}
