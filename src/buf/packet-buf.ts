/**
 * PacketBuf: one packet in a fixed slot of a slab, with headroom in front and
 * tailroom behind, so headers are prepended and trailers appended in place.
 * The live bytes are bytes[start, end); `bytes` is the whole slot.
 */
import { HEADROOM_BYTES } from './constants.js';

export class PacketBuf {
  /** First live octet, an index into `bytes`. */
  start = HEADROOM_BYTES;
  /** One past the last live octet. */
  end = HEADROOM_BYTES;
  /** True while the buffer sits in its pool's free list. */
  free = false;

  /**
   * @param bytes the whole slot: a view into the pool's slab (same ArrayBuffer for every slot)
   * @param slabOffset where the slot starts in the slab, for batch calls that take absolute offsets
   * @param index the slot number in its pool
   */
  constructor(
    readonly bytes: Uint8Array,
    readonly slabOffset: number,
    readonly index: number,
  ) {}

  /** Number of live octets. */
  get length(): number {
    return this.end - this.start;
  }

  /** Octets free in front of `start`. */
  get headroom(): number {
    return this.start;
  }

  /** Octets free behind `end`. */
  get tailroom(): number {
    return this.bytes.length - this.end;
  }

  /** Moves `start` back by n octets and returns the new start, or -1 if the headroom is too small. */
  prepend(n: number): number {
    if (n < 0 || n > this.start) return -1;
    this.start -= n;
    return this.start;
  }

  /** Moves `end` forward by n octets and returns the old end, or -1 if the tailroom is too small. */
  append(n: number): number {
    if (n < 0 || n > this.bytes.length - this.end) return -1;
    const at = this.end;
    this.end += n;
    return at;
  }

  /** Drops n octets from the front; false if fewer than n are live. */
  trimFront(n: number): boolean {
    if (n < 0 || n > this.end - this.start) return false;
    this.start += n;
    return true;
  }

  /** Drops n octets from the back; false if fewer than n are live. */
  trimBack(n: number): boolean {
    if (n < 0 || n > this.end - this.start) return false;
    this.end -= n;
    return true;
  }

  /** Empties the buffer and sets `start` = `end` = offset (default: the standard headroom). */
  reset(offset: number = HEADROOM_BYTES): void {
    this.start = offset;
    this.end = offset;
  }

  /** A view of the live octets (allocates a view object: not for the per-packet hot path). */
  view(): Uint8Array {
    return this.bytes.subarray(this.start, this.end);
  }

  /** Replaces the content with a copy of `src` at the standard headroom; false if it does not fit. */
  load(src: Uint8Array, offset: number = HEADROOM_BYTES): boolean {
    if (offset < 0 || offset + src.length > this.bytes.length) return false;
    this.bytes.set(src, offset);
    this.start = offset;
    this.end = offset + src.length;
    return true;
  }
}
