/**
 * ESP anti-replay window (RFC 4303 §3.4.3) kept as the RFC 6479 bitmap: a ring
 * of 32-bit words indexed by the low bits of the sequence number, cleared a whole
 * word at a time as the window slides forward, so an advance costs at most one
 * store per word and a check is one shift and one mask. Also the high-half
 * inference of extended sequence numbers (RFC 4303 Appendix A2.1).
 *
 * Use: `check(seq)` before the ICV is verified (pure: changes nothing), then
 * `commit(seq)` only after it verified, so a forged sequence number cannot move
 * the window (RFC 4303 §3.4.3, last paragraphs).
 *
 * Sequence numbers. The protocol's counter is 64 bits wide. The number form
 * (`check(seq)`, `commit(seq)`) takes a JS number, exact for seq < 2^53: that is
 * enough for every real SA, because counters start at 1 with each SA (RFC 4303
 * §3.3.3) and sectunnel rekeys long before: even at 10^8 packets/s, 2^53 packets
 * take 2.8 years, and our senders refuse to go past 2^53 − 1 (sa.ts). The hi/lo
 * form (`checkHiLo(hi, lo)`) is exact over the whole 64-bit space, with no BigInt
 * and no allocation; the ESP stage uses it, so a peer or a published test vector
 * that starts its counter high (draft-mcgrew-gcm-test-01 uses 2^64 − 1) works too.
 */
import { Reason } from './reasons.js';

/** Smallest configurable window (RFC 4303 §3.4.3: the default is 64, the minimum 32; RFC 6479 wants ≥ 2 words). */
export const REPLAY_WINDOW_MIN_PACKETS = 64;
/** Largest configurable window. */
export const REPLAY_WINDOW_MAX_PACKETS = 65536;
/** sectunnel's default window (DESIGN.md "Wire format"): room for reordering across batches and cores. */
export const REPLAY_WINDOW_DEFAULT_PACKETS = 4096;

const WORD_BITS = 32;
const TWO_32 = 4294967296;
const U32_MAX = 0xffffffff;

/** Splits a sequence number < 2^53 into its high 32 bits. */
export function seqHiOf(seq: number): number {
  return Math.floor(seq / TWO_32);
}

/** Joins two 32-bit halves into one number (exact while hi < 2^21, i.e. seq < 2^53). */
export function seqJoin(hi: number, lo: number): number {
  return hi * TWO_32 + lo;
}

/** Validates a window size: an integer multiple of 32 in 64..65536; throws a RangeError naming the value. */
export function checkReplayWindowPackets(windowPackets: number): number {
  if (
    !Number.isInteger(windowPackets) ||
    windowPackets < REPLAY_WINDOW_MIN_PACKETS ||
    windowPackets > REPLAY_WINDOW_MAX_PACKETS ||
    windowPackets % WORD_BITS !== 0
  ) {
    throw new RangeError(
      `replayWindowPackets must be a multiple of ${WORD_BITS} in ${REPLAY_WINDOW_MIN_PACKETS}..${REPLAY_WINDOW_MAX_PACKETS}, got ${String(windowPackets)}`,
    );
  }
  return windowPackets;
}

/**
 * A sliding anti-replay window of `windowPackets` packets: sequence numbers
 * top − windowPackets + 1 … top are tracked, anything at or below
 * top − windowPackets is too old, anything above top is new.
 */
export class ReplayWindow {
  readonly windowPackets: number;
  /** High and low halves of the highest committed sequence number; 0/0 before the first commit. */
  topHi = 0;
  topLo = 0;
  /**
   * The RFC 6479 bitmap. Its size is a power of two words, at least one word
   * more than the window, so the word that the window slides into can be cleared
   * whole while every bit of the window stays valid, and bit positions are
   * simply the low bits of the sequence number.
   */
  private readonly ring: Uint32Array;
  /** ring.length − 1. */
  private readonly wordMask: number;

  /** @param windowPackets window size, a multiple of 32 in 64..65536 (default 4096) */
  constructor(windowPackets: number = REPLAY_WINDOW_DEFAULT_PACKETS) {
    this.windowPackets = checkReplayWindowPackets(windowPackets);
    let words = 1;
    while (words < windowPackets / WORD_BITS + 1) words *= 2;
    this.ring = new Uint32Array(words);
    this.wordMask = words - 1;
  }

  /** The highest committed sequence number as a number (exact below 2^53; 0 before the first commit). */
  get top(): number {
    return seqJoin(this.topHi, this.topLo);
  }

  /**
   * Checks a sequence number < 2^53: 0 if new, else Reason.replay_duplicate or Reason.replay_too_old.
   * Changes nothing. (0 is also Reason.truncated's number, a code this never returns.)
   */
  check(seq: number): number {
    return this.checkHiLo(seqHiOf(seq), seq >>> 0);
  }

  /** Records a sequence number < 2^53 as received; call only after its ICV verified. */
  commit(seq: number): void {
    this.commitHiLo(seqHiOf(seq), seq >>> 0);
  }

  /** check() for a 64-bit sequence number given as two 32-bit halves (RFC 4303 §3.4.3). */
  checkHiLo(hi: number, lo: number): number {
    lo >>>= 0; // callers may pass the low half as an int32 (a small integer in V8: no heap number)
    const th = this.topHi;
    const tl = this.topLo;
    if (hi > th || (hi === th && lo > tl)) return 0; // right of the window: new
    // Distance behind the top. Exact whenever it matters (hi ≥ th − 1); otherwise huge anyway.
    const behind = (th - hi) * TWO_32 + (tl - lo);
    if (behind >= this.windowPackets) return Reason.replay_too_old;
    const word = this.ring[(lo >>> 5) & this.wordMask]!;
    return (word >>> (lo & 31)) & 1 ? Reason.replay_duplicate : 0;
  }

  /**
   * commit() for a 64-bit sequence number given as halves. Slides the window when the
   * number is new, clearing the words it slides over (RFC 6479 §2); a number already
   * too old is ignored.
   */
  commitHiLo(hi: number, lo: number): void {
    lo >>>= 0; // callers may pass the low half as an int32 (a small integer in V8: no heap number)
    const th = this.topHi;
    const tl = this.topLo;
    if (hi > th || (hi === th && lo > tl)) {
      // Words between the old top's word (exclusive) and the new one (inclusive) are stale.
      // 2^27 words per 2^32 sequence numbers; a jump of a whole ring or more clears it all.
      const words = (hi - th) * (TWO_32 / WORD_BITS) + ((lo >>> 5) - (tl >>> 5));
      const ring = this.ring;
      const mask = this.wordMask;
      if (words >= ring.length) {
        ring.fill(0);
      } else {
        let w = tl >>> 5;
        for (let i = 0; i < words; i++) {
          w++;
          ring[w & mask] = 0;
        }
      }
      this.topHi = hi;
      this.topLo = lo;
    } else if ((th - hi) * TWO_32 + (tl - lo) >= this.windowPackets) {
      return;
    }
    this.ring[(lo >>> 5) & this.wordMask]! |= 1 << (lo & 31);
  }

  /**
   * The high half of a received ESN whose low half is `lo` (RFC 4303 Appendix A2.1):
   * the one that puts the number in [top − W + 1, top − W + 2^32], i.e. in or ahead of the
   * window. Two edges the appendix leaves open: there is no epoch below 0 and none above
   * 2^32 − 1, so the guess stays at 0 or 2^32 − 1 there (and the number is then new or too old).
   */
  inferHi(lo: number): number {
    lo >>>= 0; // callers may pass the low half as an int32 (a small integer in V8: no heap number)
    const th = this.topHi;
    const tl = this.topLo;
    const w = this.windowPackets;
    if (tl >= w - 1) {
      // Case A: the window lies within one epoch of 2^32.
      if (lo >= tl - w + 1) return th;
      return th === U32_MAX ? th : th + 1;
    }
    // Case B: the window spans two epochs; its bottom is in epoch th − 1.
    if (lo >= ((tl - w + 1) >>> 0)) return th === 0 ? 0 : th - 1;
    return th;
  }

  /** Forgets everything: top back to 0, bitmap cleared. */
  reset(): void {
    this.ring.fill(0);
    this.topHi = 0;
    this.topLo = 0;
  }
}
