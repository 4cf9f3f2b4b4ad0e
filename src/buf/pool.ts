/**
 * A fixed-size pool of PacketBufs carved out of one slab. Exhaustion is
 * reported to the caller (get() returns null: count `pool_exhausted`), never
 * hidden by allocating. The slab may be a SharedArrayBuffer so that worker
 * threads and the native addon see the same bytes.
 */
import { DEFAULT_POOL_PACKETS, DEFAULT_SLOT_BYTES } from './constants.js';
import { PacketBuf } from './packet-buf.js';

export interface PoolOptions {
  /** Number of slots. */
  packets?: number;
  /** Size of each slot in octets (headroom + frame + tailroom). */
  slotBytes?: number;
  /** Back the slab with a SharedArrayBuffer. */
  shared?: boolean;
}

export class PacketPool {
  /** The slab: every slot is a view into it. */
  readonly slab: Uint8Array;
  readonly slotBytes: number;
  readonly capacity: number;
  private readonly bufs: PacketBuf[];
  private readonly freeStack: Int32Array;
  private freeCount: number;

  constructor(opts: PoolOptions = {}) {
    const packets = opts.packets ?? DEFAULT_POOL_PACKETS;
    const slotBytes = opts.slotBytes ?? DEFAULT_SLOT_BYTES;
    if (!Number.isInteger(packets) || packets < 1 || packets > 1 << 20) {
      throw new RangeError(`PacketPool: packets must be an integer in 1..1048576, got ${packets}`);
    }
    if (!Number.isInteger(slotBytes) || slotBytes < 256 || slotBytes > 1 << 17) {
      throw new RangeError(`PacketPool: slotBytes must be an integer in 256..131072, got ${slotBytes}`);
    }
    this.slotBytes = slotBytes;
    this.capacity = packets;
    const backing = opts.shared ? new SharedArrayBuffer(packets * slotBytes) : new ArrayBuffer(packets * slotBytes);
    this.slab = new Uint8Array(backing);
    this.bufs = new Array<PacketBuf>(packets);
    this.freeStack = new Int32Array(packets);
    for (let i = 0; i < packets; i++) {
      const b = new PacketBuf(this.slab.subarray(i * slotBytes, (i + 1) * slotBytes), i * slotBytes, i);
      b.free = true;
      this.bufs[i] = b;
      this.freeStack[i] = packets - 1 - i;
    }
    this.freeCount = packets;
  }

  /** Slots currently free. */
  get available(): number {
    return this.freeCount;
  }

  /** Takes a buffer, reset to the standard headroom; null when the pool is exhausted. */
  get(): PacketBuf | null {
    if (this.freeCount === 0) return null;
    const b = this.bufs[this.freeStack[--this.freeCount]!]!;
    b.free = false;
    b.reset();
    return b;
  }

  /** Returns a buffer to the pool. Returning one twice, or one of another pool, is a bug and throws. */
  put(b: PacketBuf): void {
    if (this.bufs[b.index] !== b) throw new Error('PacketPool.put: buffer belongs to another pool');
    if (b.free) throw new Error(`PacketPool.put: buffer ${b.index} returned twice`);
    b.free = true;
    this.freeStack[this.freeCount++] = b.index;
  }

  /** The buffer in slot i (for batch calls that name slots by index). */
  at(i: number): PacketBuf {
    return this.bufs[i]!;
  }
}
