/**
 * What the ports of the I/O layer share: the receive ring lent to the addon
 * (RxRing) and the reading and sending steps of a port on a native handle
 * (NativePort: TapDevice, NativeUdpTransport, AttachPort), the I/O errors and
 * counters, and the batch option checks.
 *
 * Receive, one batch per readable event:
 *   1. the addon reads packets into the ring's pool slots (at `rxOffset`), one
 *      meta row each,
 *   2. one JS call: takeBatch() turns each delivered slot into a PacketBuf
 *      [rxOffset, rxOffset+len) that the consumer owns from then on,
 *   3. rearm(): the emptied entries are refilled from the pool; when the pool is
 *      empty the ring shrinks, and at zero the reader stops (counted in
 *      `poolExhausted`) and retries every millisecond, never allocating.
 * Send: describe() writes (offset, length[, peer]) per buffer of the pool's slab
 * for one addon call; a buffer of another slab is a counted tx error.
 */
import type { PacketBuf } from '../buf/packet-buf.js';
import type { PacketPool } from '../buf/pool.js';
import type { IoAddon, NativeHandle } from './tap.js';

/** Error on a control path of the I/O layer, with a stable code. */
export class IoError extends Error {
  constructor(
    readonly code: 'ST_IO_NO_NATIVE' | 'ST_IO_OPTION' | 'ST_IO_CLOSED',
    message: string,
  ) {
    super(message);
    this.name = 'IoError';
  }
}

/** Counter names, in the order of the addon's ioStats slots (io.h ST_RX_PACKETS…). */
const NATIVE_STAT_NAMES = [
  'rxPackets',
  'rxBytes',
  'rxBatches',
  'rxTruncated',
  'rxErrors',
  'txPackets',
  'txBytes',
  'txDropped',
  'txErrors',
  'lastErrno',
] as const;

/** Counters of one device or socket. */
export type IoStats = Record<(typeof NATIVE_STAT_NAMES)[number] | 'poolExhausted', number>;

/** All-zero counters (for the dgram transport, which counts in JS). */
export function emptyIoStats(): IoStats {
  const s = { poolExhausted: 0 } as IoStats;
  for (const n of NATIVE_STAT_NAMES) s[n] = 0;
  return s;
}

/** Reads a native handle's counters into an IoStats object. */
export function nativeIoStats(addon: IoAddon, handle: NativeHandle, poolExhausted: number): IoStats {
  const raw = new Float64Array(NATIVE_STAT_NAMES.length);
  addon.ioStats(handle, raw);
  const s = emptyIoStats();
  NATIVE_STAT_NAMES.forEach((n, i) => (s[n] = raw[i]!));
  s.poolExhausted = poolExhausted;
  return s;
}

/** Checks a batch size option. */
export function batchOption(what: string, n: number | undefined, dflt: number): number {
  const v = n ?? dflt;
  if (!Number.isInteger(v) || v < 1 || v > 1024) throw new IoError('ST_IO_OPTION', `${what}: must be an integer in 1..1024, got ${v}`);
  return v;
}

/** Checks that a receive offset leaves at least 64 octets of a slot; throws IoError(ST_IO_OPTION) naming `what` otherwise. */
export function checkRxOffset(what: string, pool: PacketPool, rxOffset: number, capacityBytes: number): void {
  if (!Number.isInteger(rxOffset) || rxOffset < 0 || capacityBytes < 64) {
    throw new IoError('ST_IO_OPTION', `${what} ${rxOffset}: leaves ${capacityBytes} octets of a ${pool.slotBytes}-octet slot (need ≥ 64)`);
  }
}

/**
 * The receive ring lent to the addon: `ring` holds (slab offset, capacity) of
 * `slots[i]` for i < ready; `meta` gets one row of `metaStride` int32 per
 * packet. Refilling takes from the pool and compacts, so entries 0..ready-1
 * are always valid.
 */
export class RxRing {
  readonly ring: Int32Array;
  readonly meta: Int32Array;
  readonly slots: (PacketBuf | null)[];
  /** Delivered buffers of the current batch (reused array; valid during the callback). */
  readonly out: PacketBuf[];
  ready = 0;
  /** Times the reader stopped because the pool had no buffer for the ring. */
  poolExhausted = 0;
  private retry: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly pool: PacketPool,
    readonly entries: number,
    readonly metaStride: number,
    readonly rxOffset: number,
    readonly capacityBytes: number,
  ) {
    checkRxOffset('rxOffset', pool, rxOffset, capacityBytes);
    this.ring = new Int32Array(entries * 2);
    this.meta = new Int32Array(entries * metaStride);
    this.slots = new Array<PacketBuf | null>(entries).fill(null);
    this.out = new Array<PacketBuf>(entries);
  }

  /** Takes the filled buffer of entry i out of the ring, sized to len octets. */
  take(i: number, len: number): PacketBuf {
    const b = this.slots[i]!;
    this.slots[i] = null;
    b.start = this.rxOffset;
    b.end = this.rxOffset + len;
    return b;
  }

  /**
   * Takes the delivered buffers of a batch of `count` meta rows into out[0..n) and returns n.
   * Row i's length is its word 0; a row whose word `flagsWord` has a bit of `skipMask` is not
   * delivered (the addon counted it; its slot stays in the ring). With `compactMeta` the kept
   * rows move to the front, so meta row j describes out[j].
   */
  takeBatch(count: number, flagsWord: number, skipMask: number, compactMeta: boolean): number {
    const { meta, metaStride: stride, out } = this;
    let n = 0;
    for (let i = 0; i < count; i++) {
      const row = i * stride;
      if (meta[row + flagsWord]! & skipMask) continue;
      out[n] = this.take(i, meta[row]!);
      if (compactMeta && n !== i) meta.copyWithin(n * stride, row, row + stride);
      n++;
    }
    return n;
  }

  /** Refills emptied entries from the pool and packs valid ones to the front; returns `ready`. */
  refill(): number {
    const { slots, ring, pool, rxOffset, capacityBytes } = this;
    let w = 0;
    for (let i = 0; i < this.entries; i++) {
      const b = slots[i] ?? pool.get();
      if (b === null) continue;
      slots[i] = null;
      slots[w] = b;
      ring[2 * w] = b.slabOffset + rxOffset;
      ring[2 * w + 1] = capacityBytes;
      w++;
    }
    this.ready = w;
    return w;
  }

  /**
   * After a batch: refills, and when the ring is empty counts a stall and
   * polls the pool every millisecond until `resume(ready)` can be called.
   */
  rearm(resume: (ready: number) => void): number {
    const ready = this.refill();
    if (ready === 0 && this.retry === null) {
      this.poolExhausted++;
      const tick = (): void => {
        this.retry = null;
        if (this.refill() > 0) resume(this.ready);
        else this.retry = setTimeout(tick, 1);
      };
      this.retry = setTimeout(tick, 1);
    }
    return ready;
  }

  /** Stops the retry timer and returns every buffer still in the ring to the pool. */
  release(): void {
    if (this.retry !== null) clearTimeout(this.retry);
    this.retry = null;
    for (let i = 0; i < this.entries; i++) {
      const b = this.slots[i];
      if (b) this.pool.put(b);
      this.slots[i] = null;
    }
    this.ready = 0;
  }
}

/**
 * Fills `desc` with (slab offset, length[, extra]) per buffer of `pool`'s slab.
 * Buffers of another slab are skipped and counted in `foreign`. Returns the entries written.
 */
export function describeBatch(
  pool: PacketPool,
  bufs: readonly PacketBuf[],
  count: number,
  desc: Int32Array,
  stride: 2 | 3,
  extra: ArrayLike<number> | null,
  counts: { foreign: number },
): number {
  const slab = pool.slab.buffer;
  const base = pool.slab.byteOffset;
  let m = 0;
  for (let i = 0; i < count; i++) {
    const b = bufs[i]!;
    if (b.bytes.buffer !== slab) {
      counts.foreign++;
      continue;
    }
    const at = m * stride;
    desc[at] = b.bytes.byteOffset - base + b.start;
    desc[at + 1] = b.end - b.start;
    if (stride === 3) desc[at + 2] = extra![i]!;
    m++;
  }
  return m;
}

/**
 * A port on a native handle (TapDevice, NativeUdpTransport, AttachPort): reading
 * into its RxRing (start, then rearm after each batch, refill after the pool ran
 * dry), describing send batches, counters, and closing the handle.
 */
export class NativePort {
  private desc: Int32Array;
  private readonly counts = { foreign: 0 };
  private started = false;
  private ended = false;

  constructor(
    private readonly addon: IoAddon,
    private readonly handle: NativeHandle,
    readonly rx: RxRing,
    /** Int32 words per send descriptor entry: (offset, length) or (offset, length, peer). */
    private readonly descStride: 2 | 3,
  ) {
    this.desc = new Int32Array(descStride * 64);
  }

  /** True once close() ran: the handle is closed and the ring's buffers are back in the pool. */
  get closed(): boolean {
    return this.ended;
  }

  /** Fills the ring and lends it to the addon; onBatch(count, errno) then gets each batch and returns rearm() (or 0). */
  start(onBatch: (count: number, errno: number) => number): void {
    this.started = true;
    const ready = this.rx.rearm(this.resume);
    this.addon.ioStart(this.handle, this.rx.pool.slab, this.rx.ring, this.rx.meta, onBatch, ready);
  }

  /** After a batch: refills the ring and returns the entries ready for the next one (0 once closed). */
  rearm(): number {
    return this.ended ? 0 : this.rx.rearm(this.resume);
  }

  /** Re-arms a reader stopped by pool exhaustion now (it also retries by itself every millisecond). */
  refill(): void {
    if (this.ended || !this.started || this.rx.ready > 0) return;
    if (this.rx.refill() > 0) this.resume(this.rx.ready);
  }

  /**
   * Describes bufs[0..count) (with extra[i] as a third word when descStride is 3) in `sendDesc`;
   * returns the entries written. Buffers of another pool's slab are skipped and counted as tx errors.
   */
  describe(bufs: readonly PacketBuf[], count: number, extra: ArrayLike<number> | null): number {
    if (this.desc.length < this.descStride * count) this.desc = new Int32Array(this.descStride * count);
    return describeBatch(this.rx.pool, bufs, count, this.desc, this.descStride, extra, this.counts);
  }

  /** The send descriptors describe() wrote. */
  get sendDesc(): Int32Array {
    return this.desc;
  }

  /** The handle's counters (also after close), with skipped foreign buffers as tx errors. */
  stats(): IoStats {
    const s = nativeIoStats(this.addon, this.handle, this.rx.poolExhausted);
    s.txErrors += this.counts.foreign;
    return s;
  }

  /** Closes the handle and returns the ring's buffers to the pool. Idempotent. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.addon.ioClose(this.handle);
    this.rx.release();
  }

  private readonly resume = (ready: number): void => {
    if (!this.ended) this.addon.ioResume(this.handle, ready);
  };
}
