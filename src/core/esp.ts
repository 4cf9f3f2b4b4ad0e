/**
 * The ESP stage (RFC 4303 §2–3 with AES-GCM per RFC 4106 and ChaCha20-Poly1305 per
 * RFC 7634) as functions over PacketBufs, in place, one packet or one batch.
 *
 * Seal (espSeal, espSealBatch):
 *   1. room check (16 octets of headroom, padding + trailer + ICV of tailroom)
 *   2. sequence number from the SA (hard limits → sa_expired; soft → sa.rekeyDue)
 *   3. padding 1, 2, 3, … to a 4-octet boundary, pad length, next header (§2.4–2.6)
 *   4. prepend SPI, seq_lo, IV = the 64-bit sequence number big-endian (RFC 4106 §3.1)
 *   5. AAD = SPI ‖ seq_lo, or SPI ‖ seq_hi ‖ seq_lo with ESN (RFC 4106 §5); seal in place
 *   6. append the ICV
 * Open (espOpen, espOpenBatch), checks in this order (a destroyed SA refuses with sa_expired):
 *   1. length: truncated below header + IV + trailer + ICV, or when the ciphertext is not a
 *      multiple of 4 octets (§2.4 requires the alignment; reported as `truncated`, the one
 *      length code, since a misaligned packet has lost or gained octets)
 *   2. sequence number, high half inferred with ESN (App. A2.1); the 64-bit value 0 → seq_zero
 *   3. replay quick check (§3.4.3) → replay_duplicate / replay_too_old. With ESN a low half
 *      below the window is read as the next epoch (App. A2.1, as Linux does), so an old
 *      packet then fails step 4 (icv_mismatch) instead of being too old.
 *   4. AEAD open → icv_mismatch
 *   5. replay commit (only now may the window move)
 *   6. pad length → bad_pad_length; padding content 1, 2, 3, … → bad_padding_content (§2.4)
 *   7. next header: 47 → accept; 59 → dummy_packet discard (§2.6); else unexpected_next_header
 *      (unless the SA accepts any next header)
 * On success buf [start,end) is the inner payload. Every drop is counted in sa.drops.
 * Nothing here throws or allocates per packet.
 *
 * Success is ESP_OK (= OK = 0, reasons.ts); anything else is a reason code.
 */
import type { PacketBuf } from '../buf/packet-buf.js';
import { AEAD_BATCH_AAD_STRIDE, type AeadBatch } from '../crypto/aead.js';
import {
  ESP_ALIGN_BYTES,
  ESP_HEADER_BYTES,
  ESP_ICV_BYTES,
  ESP_IV_BYTES,
  ESP_TRAILER_BYTES,
  IP_PROTO_GRE,
  IP_PROTO_NONE,
} from '../wire/constants.js';
import { OK, Reason } from './reasons.js';
import type { InboundSa, OutboundSa } from './sa.js';

/** Octets in front of the ciphertext: SPI, sequence number, IV. */
export const ESP_PREFIX_BYTES = ESP_HEADER_BYTES + ESP_IV_BYTES;
/** Smallest ESP packet we accept: header + IV + 4 octets of aligned ciphertext (holding the trailer) + ICV. */
export const ESP_MIN_PACKET_BYTES = ESP_PREFIX_BYTES + ESP_ALIGN_BYTES + ESP_ICV_BYTES;

const ALIGN_MASK = ESP_ALIGN_BYTES - 1;
const TWO_32 = 4294967296;

/** What espSeal/espOpen return (and the batch versions store) for success: reasons.ts OK. */
export const ESP_OK = OK;

/**
 * Returned by espSeal when the buffer lacks headroom or tailroom for ESP. Pool buffers always
 * have both (buf/constants.ts), so this is a caller bug, counted as buffer_no_room.
 */
export const ESP_NO_ROOM_REASON = Reason.buffer_no_room;

/** Padding for a payload of n octets: (payload + padding + 2) is a multiple of 4 (RFC 4303 §2.4). */
export function espPadBytes(payloadBytes: number): number {
  return (ESP_ALIGN_BYTES - ((payloadBytes + ESP_TRAILER_BYTES) & ALIGN_MASK)) & ALIGN_MASK;
}

/** Length of the ESP packet that carries a payload of n octets. */
export function espPacketBytes(payloadBytes: number): number {
  return ESP_PREFIX_BYTES + payloadBytes + espPadBytes(payloadBytes) + ESP_TRAILER_BYTES + ESP_ICV_BYTES;
}

// 32-bit fields (SPI, sequence number halves) travel between the functions here as int32
// (`x | 0`; `x >>> 0` turns one back into the unsigned value). V8 holds an int32 unboxed, but
// boxes an unsigned value of 2^31 or more into a new heap number wherever it crosses a call
// that is not inlined or lands in a module variable: an allocation per packet for half of all
// SPIs, and for every sequence number whose low half has its top bit set.

/** Writes v (an int32, or the uint32 with the same low 32 bits) big-endian at b[off]. */
function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}

/** Reads the big-endian 32-bit field at b[off] as an int32 (`>>> 0` gives its unsigned value). */
function getI32(b: Uint8Array, off: number): number {
  return (b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!;
}

/** The halves (int32) of the sequence number the last successful prepareSeal wrote (saves reading them back). */
let sealedHi = 0;
let sealedLo = 0;

/**
 * Steps 1–4 and 6 of sealing (all but the cipher): on success buf [start,end) is the whole ESP
 * packet with the plaintext still in place and room for the ICV at the end, and sealedHi/sealedLo
 * hold its sequence number; returns ESP_OK or a reason.
 */
function prepareSeal(sa: OutboundSa, buf: PacketBuf, nextHeader: number, nowMs: number): number {
  const payloadBytes = buf.end - buf.start;
  const padBytes = espPadBytes(payloadBytes);
  if (buf.start < ESP_PREFIX_BYTES || buf.bytes.length - buf.end < padBytes + ESP_TRAILER_BYTES + ESP_ICV_BYTES) {
    return ESP_NO_ROOM_REASON;
  }
  const seq = sa.claim(payloadBytes, nowMs);
  if (seq === 0) return Reason.sa_expired; // 0 is never a sequence number: claim() refused
  const b = buf.bytes;
  // Trailer (RFC 4303 §2.4–2.6): padding 1, 2, 3, …, pad length, next header.
  let p = buf.end;
  for (let i = 1; i <= padBytes; i++) b[p++] = i;
  b[p++] = padBytes;
  b[p++] = nextHeader;
  buf.end = p + ESP_ICV_BYTES;
  // Header (§2.1–2.2) and IV = the 64-bit sequence number (RFC 4106 §3.1, RFC 7634 §2).
  const s = (buf.start -= ESP_PREFIX_BYTES);
  const hi = Math.floor(seq / TWO_32) | 0; // seq < 2^53: hi < 2^21
  const lo = seq | 0; // the low 32 bits, as an int32
  putU32(b, s, sa.spi | 0);
  putU32(b, s + 4, lo);
  putU32(b, s + 8, hi);
  putU32(b, s + 12, lo);
  sealedHi = hi;
  sealedLo = lo;
  return ESP_OK;
}

/**
 * Seals buf's payload (a GRE packet at [start,end)) into an ESP packet in place (RFC 4303 §3.3,
 * RFC 4106, RFC 7634). Returns ESP_OK, Reason.sa_expired at a hard limit, or ESP_NO_ROOM_REASON.
 */
export function espSeal(sa: OutboundSa, buf: PacketBuf, nextHeader: number, nowMs: number): number {
  const r = prepareSeal(sa, buf, nextHeader, nowMs);
  if (r !== ESP_OK) return r;
  const s = buf.start;
  const b = buf.bytes;
  const textOff = s + ESP_PREFIX_BYTES;
  const aad = sa.aadFor(sealedHi, sealedLo);
  sa.aead.seal(b, s + ESP_HEADER_BYTES, textOff, buf.end - ESP_ICV_BYTES - textOff, aad);
  return ESP_OK;
}

/**
 * Steps 2–3 of opening: ESP_OK if the sequence number hi/lo may be opened under the SA's current
 * window, else seq_zero (the 64-bit value 0; a low half of 0 in a later epoch is fine) or
 * replay_duplicate / replay_too_old.
 */
function seqCheck(sa: InboundSa, lo32: number, hi: number): number {
  if (hi === 0 && lo32 === 0) return Reason.seq_zero;
  const r = sa.replay.checkHiLo(hi, lo32);
  return r === 0 ? ESP_OK : r;
}

/** Length check (step 1): the ciphertext length, or -1 if the packet is truncated or misaligned. */
function textBytesOf(buf: PacketBuf): number {
  const textBytes = buf.end - buf.start - ESP_PREFIX_BYTES - ESP_ICV_BYTES;
  if (textBytes < ESP_TRAILER_BYTES || (textBytes & ALIGN_MASK) !== 0) return -1;
  return textBytes;
}

/** Steps 5–7 for an authentic packet: commit, trailer checks, trim to the payload; ESP_OK or a reason. */
function finishOpen(sa: InboundSa, buf: PacketBuf, hi: number, lo32: number, textBytes: number, nowMs: number): number {
  sa.replay.commitHiLo(hi, lo32);
  const b = buf.bytes;
  const textOff = buf.start + ESP_PREFIX_BYTES;
  const trailer = textOff + textBytes - ESP_TRAILER_BYTES;
  const padBytes = b[trailer]!;
  const nextHeader = b[trailer + 1]!;
  if (padBytes > textBytes - ESP_TRAILER_BYTES) return Reason.bad_pad_length;
  const padOff = trailer - padBytes;
  for (let i = 0; i < padBytes; i++) {
    if (b[padOff + i] !== i + 1) return Reason.bad_padding_content;
  }
  if (nextHeader === IP_PROTO_NONE) return Reason.dummy_packet;
  if (nextHeader !== IP_PROTO_GRE && !sa.acceptAnyNextHeader) return Reason.unexpected_next_header;
  buf.start = textOff;
  buf.end = padOff;
  sa.recordAccept(padOff - textOff, hi, lo32, nextHeader, nowMs);
  return ESP_OK;
}

/** The inferred high half (RFC 4303 App. A2.1) for a low half given as an int32. */
function inferHi(sa: InboundSa, lo32: number): number {
  return sa.inferSeqHi(lo32);
}

/** Counts a drop on the SA and returns its code. */
function drop(sa: InboundSa, code: number): number {
  sa.drops.add(code);
  return code;
}

/**
 * Opens the ESP packet at buf [start,end) in place (RFC 4303 §3.4). Returns ESP_OK with buf [start,end)
 * = the inner payload, or a drop/discard reason (buf then unspecified). Updates sa counters.
 */
export function espOpen(sa: InboundSa, buf: PacketBuf, nowMs: number): number {
  if (sa.destroyed) return drop(sa, Reason.sa_expired);
  const textBytes = textBytesOf(buf);
  if (textBytes < 0) return drop(sa, Reason.truncated);
  const b = buf.bytes;
  const s = buf.start;
  const lo = getI32(b, s + 4);
  const hi = inferHi(sa, lo);
  const r = seqCheck(sa, lo, hi);
  if (r !== ESP_OK) return drop(sa, r);
  if (!sa.aead.open(b, s + ESP_HEADER_BYTES, s + ESP_PREFIX_BYTES, textBytes, sa.aadFor(hi, lo))) {
    return drop(sa, Reason.icv_mismatch);
  }
  const f = finishOpen(sa, buf, hi, lo, textBytes, nowMs);
  return f === ESP_OK ? ESP_OK : drop(sa, f);
}

// Per-entry scratch of the batch functions, grown (rarely) to the largest batch seen.
let scratchEntry = new Int32Array(0);
let scratchHi = new Float64Array(0);
let scratchText = new Int32Array(0);

function ensureScratch(n: number): void {
  if (scratchEntry.length >= n) return;
  scratchEntry = new Int32Array(n);
  scratchHi = new Float64Array(n);
  scratchText = new Int32Array(n);
}

/** Most slot indexes a SlabView remembers (a pool has at most 2^20 slots). */
const SLAB_KNOWN_MAX = 1 << 20;

/**
 * A slab (the ArrayBuffer behind a pool) as the batch calls see it: one Uint8Array from the
 * slab's base for AeadBatch.data, and the PacketBufs already found to lie in it, by slot index.
 * A PacketBuf's view and slab offset never change, so each buffer is checked with the typed-array
 * getters (`buffer`, `byteOffset`: each a call into the V8 runtime) once, not once per packet.
 */
class SlabView {
  private known: (PacketBuf | undefined)[] = new Array<PacketBuf | undefined>(64).fill(undefined);

  constructor(
    readonly data: Uint8Array,
    readonly base: number,
  ) {}

  /** True if buf lies in this slab, so its offsets can be made absolute. */
  holds(buf: PacketBuf): boolean {
    const i = buf.index;
    if (this.known[i] === buf) return true;
    const d = this.data;
    const ok = d.buffer === buf.bytes.buffer && buf.bytes.byteOffset - buf.slabOffset === this.base && buf.slabOffset + buf.bytes.length <= d.length;
    if (ok && i >= 0 && i < SLAB_KNOWN_MAX && (i | 0) === i) {
      if (i >= this.known.length) {
        const grown = new Array<PacketBuf | undefined>(Math.min(SLAB_KNOWN_MAX, Math.max(i + 1, this.known.length * 2))).fill(undefined);
        for (let k = 0; k < this.known.length; k++) grown[k] = this.known[k];
        this.known = grown;
      }
      this.known[i] = buf;
    }
    return ok;
  }
}

/** One SlabView per slab, and the last one used (almost always the next one asked for). */
const slabViews = new WeakMap<ArrayBufferLike, SlabView>();
let lastSlab: SlabView | null = null;

/** The SlabView of the slab that holds `buf` (made, with its data view, the first time only). */
function slabOf(buf: PacketBuf): SlabView {
  const last = lastSlab;
  if (last !== null && last.holds(buf)) return last;
  const buffer = buf.bytes.buffer;
  const base = buf.bytes.byteOffset - buf.slabOffset;
  let v = slabViews.get(buffer);
  if (v === undefined || v.base !== base) {
    v = new SlabView(new Uint8Array(buffer, base), base);
    slabViews.set(buffer, v);
  }
  lastSlab = v;
  return v;
}

/** Points the batch at the slab that holds `buf`, empties it, and returns the slab. */
function batchOnSlabOf(batch: AeadBatch, buf: PacketBuf): SlabView {
  const slab = slabOf(buf);
  batch.reset(slab.data);
  return slab;
}

/** Writes the AAD (RFC 4106 §5) of batch entry i. */
function batchAad(batch: AeadBatch, i: number, spi: number, esn: boolean, hi: number, lo: number): number {
  const a = batch.aad;
  let p = i * AEAD_BATCH_AAD_STRIDE;
  putU32(a, p, spi);
  p += 4;
  if (esn) {
    putU32(a, p, hi);
    p += 4;
  }
  putU32(a, p, lo);
  return esn ? 12 : 8;
}

/**
 * espSeal over bufs[0, count) with one sealBatch call per batch.capacity packets. Bufs should
 * come from one pool (one slab); one that does not is sealed on its own. results[i] gets ESP_OK or
 * the reason, exactly as espSeal would return in order. Returns the number sealed.
 */
export function espSealBatch(
  sa: OutboundSa,
  bufs: readonly PacketBuf[],
  count: number,
  batch: AeadBatch,
  results: Uint8Array,
  nowMs: number,
  nextHeader: number = IP_PROTO_GRE,
): number {
  let sealed = 0;
  let i = 0;
  while (i < count) {
    const slab = batchOnSlabOf(batch, bufs[i]!);
    for (; i < count && batch.count < batch.capacity; i++) {
      const buf = bufs[i]!;
      const r = prepareSeal(sa, buf, nextHeader, nowMs);
      results[i] = r;
      if (r !== ESP_OK) continue;
      sealed++;
      const b = buf.bytes;
      const s = buf.start;
      const textOff = s + ESP_PREFIX_BYTES;
      const textBytes = buf.end - ESP_ICV_BYTES - textOff;
      const hi = sealedHi;
      const lo = sealedLo;
      if (!slab.holds(buf)) {
        sa.aead.seal(b, s + ESP_HEADER_BYTES, textOff, textBytes, sa.aadFor(hi, lo));
        continue;
      }
      const at = buf.slabOffset;
      const e = batch.push(at + s + ESP_HEADER_BYTES, at + textOff, textBytes, 0);
      batch.desc[e * 4 + 3] = batchAad(batch, e, sa.spi | 0, sa.esn, hi, lo);
    }
    if (batch.count > 0) sa.aead.sealBatch(batch);
  }
  return sealed;
}

/**
 * espOpen over bufs[0, count) with one openBatch call per batch.capacity packets. results[i]
 * gets exactly what espOpen would have returned for the packets in order: the replay window is
 * checked against its state before the batch, and re-checked in order before each commit, so
 * duplicates inside one batch, and a window moved by an earlier packet of the batch, give the
 * same verdicts as one-by-one processing. Returns the number accepted.
 */
export function espOpenBatch(
  sa: InboundSa,
  bufs: readonly PacketBuf[],
  count: number,
  batch: AeadBatch,
  results: Uint8Array,
  nowMs: number,
): number {
  let accepted = 0;
  ensureScratch(batch.capacity);
  const entry = scratchEntry;
  const hiAt = scratchHi;
  const textAt = scratchText;
  let from = 0;
  while (from < count) {
    const to = Math.min(count, from + batch.capacity);
    const slab = batchOnSlabOf(batch, bufs[from]!);
    // Phase 1: length and sequence checks against the window as it stands; queue the rest.
    // entry[k]: ≥ 0 batch index; -1 decide again in phase 3; -2 final (results[i] is the verdict).
    for (let i = from; i < to; i++) {
      const k = i - from;
      const buf = bufs[i]!;
      const textBytes = sa.destroyed ? -1 : textBytesOf(buf);
      if (textBytes < 0) {
        results[i] = sa.destroyed ? Reason.sa_expired : Reason.truncated;
        entry[k] = -2;
        continue;
      }
      textAt[k] = textBytes;
      const b = buf.bytes;
      const s = buf.start;
      const lo = getI32(b, s + 4);
      const hi = inferHi(sa, lo);
      hiAt[k] = hi;
      entry[k] = -1;
      if (seqCheck(sa, lo, hi) !== ESP_OK || !slab.holds(buf)) continue;
      const at = buf.slabOffset;
      const e = batch.push(at + s + ESP_HEADER_BYTES, at + s + ESP_PREFIX_BYTES, textBytes, 0);
      batch.desc[e * 4 + 3] = batchAad(batch, e, sa.spi | 0, sa.esn, hi, lo);
      entry[k] = e;
    }
    // Phase 2: one AEAD call.
    if (batch.count > 0) sa.aead.openBatch(batch);
    // Phase 3: in order, decide each packet against the window as the earlier ones left it.
    for (let i = from; i < to; i++) {
      const k = i - from;
      const buf = bufs[i]!;
      let code = results[i]!;
      if (entry[k] !== -2) code = openDecide(sa, buf, entry[k]!, hiAt[k]!, textAt[k]!, batch, nowMs);
      results[i] = code;
      if (code === ESP_OK) accepted++;
      else sa.drops.add(code);
    }
    from = to;
  }
  return accepted;
}

/**
 * Phase 3 of espOpenBatch for one packet. `e` is its batch entry (or -1 if it was not opened)
 * and `hi0` the high half it was opened with. Single-packet processing would have inferred the
 * high half and checked the window now; where that differs from phase 1 we follow it: a packet
 * now refused by the window gets that verdict, one that was opened under another high half
 * would have failed its ICV (the AAD holds seq_hi), and one not opened yet is opened now.
 */
function openDecide(sa: InboundSa, buf: PacketBuf, e: number, hi0: number, textBytes: number, batch: AeadBatch, nowMs: number): number {
  const b = buf.bytes;
  const s = buf.start;
  const lo = getI32(b, s + 4);
  const hi = inferHi(sa, lo);
  const r = seqCheck(sa, lo, hi);
  if (r !== ESP_OK) return r;
  let authentic: boolean;
  if (e >= 0) {
    authentic = hi === hi0 && batch.ok[e] === 1;
  } else {
    authentic = sa.aead.open(b, s + ESP_HEADER_BYTES, s + ESP_PREFIX_BYTES, textBytes, sa.aadFor(hi, lo));
  }
  if (!authentic) return Reason.icv_mismatch;
  return finishOpen(sa, buf, hi, lo, textBytes, nowMs);
}
