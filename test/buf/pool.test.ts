// PacketPool (src/buf/pool.ts): fixed slots carved from one slab; exhaustion returns
// null and never allocates; returning a buffer twice or one of another pool throws.
import { describe, expect, it } from 'vitest';
import { DEFAULT_POOL_PACKETS, DEFAULT_SLOT_BYTES, HEADROOM_BYTES } from '../../src/buf/constants.js';
import { PacketBuf } from '../../src/buf/packet-buf.js';
import { PacketPool } from '../../src/buf/pool.js';

describe('PacketPool', () => {
  it('defaults: DEFAULT_POOL_PACKETS slots of DEFAULT_SLOT_BYTES in one slab', () => {
    const pool = new PacketPool();
    expect(pool.capacity).toBe(DEFAULT_POOL_PACKETS);
    expect(pool.slotBytes).toBe(DEFAULT_SLOT_BYTES);
    expect(pool.slab.length).toBe(DEFAULT_POOL_PACKETS * DEFAULT_SLOT_BYTES);
    expect(pool.available).toBe(DEFAULT_POOL_PACKETS);
    expect(pool.slab.buffer).toBeInstanceOf(ArrayBuffer);
  });

  it('get until exhausted, then null; the pool never grows', () => {
    const pool = new PacketPool({ packets: 4, slotBytes: 256 });
    const slab = pool.slab;
    const slabBuffer = pool.slab.buffer;
    const got = [pool.get(), pool.get(), pool.get(), pool.get()];
    expect(got.every((b) => b instanceof PacketBuf)).toBe(true);
    expect(new Set(got.map((b) => b!.index)).size).toBe(4);
    expect(pool.available).toBe(0);
    expect(pool.get()).toBeNull();
    expect(pool.get()).toBeNull();
    expect(pool.capacity).toBe(4);
    expect(pool.slab).toBe(slab);
    expect(pool.slab.buffer).toBe(slabBuffer);
    expect(pool.slab.length).toBe(4 * 256);
    expect(slabBuffer.byteLength).toBe(4 * 256);
  });

  it('put makes a buffer available again; get hands it out reset to the headroom', () => {
    const pool = new PacketPool({ packets: 2, slotBytes: 256 });
    const a = pool.get()!;
    pool.get();
    expect(pool.get()).toBeNull();
    a.load(new Uint8Array([1, 2, 3]));
    a.prepend(5);
    pool.put(a);
    expect(pool.available).toBe(1);
    const again = pool.get();
    expect(again).toBe(a);
    expect([again!.start, again!.end]).toEqual([HEADROOM_BYTES, HEADROOM_BYTES]);
    expect(again!.free).toBe(false);
  });

  it('put twice throws and leaves the free count alone', () => {
    const pool = new PacketPool({ packets: 3, slotBytes: 256 });
    const b = pool.get()!;
    pool.put(b);
    expect(() => pool.put(b)).toThrow(`PacketPool.put: buffer ${b.index} returned twice`);
    expect(pool.available).toBe(3);
    // The free list holds each slot once: three gets give three different buffers.
    const all = [pool.get(), pool.get(), pool.get()];
    expect(new Set(all).size).toBe(3);
    expect(pool.get()).toBeNull();
  });

  it('put of a buffer from another pool, or of a stray one, throws', () => {
    const p1 = new PacketPool({ packets: 2, slotBytes: 256 });
    const p2 = new PacketPool({ packets: 2, slotBytes: 256 });
    const foreign = p2.get()!;
    expect(() => p1.put(foreign)).toThrow('PacketPool.put: buffer belongs to another pool');
    const stray = new PacketBuf(new Uint8Array(256), 0, 0);
    expect(() => p1.put(stray)).toThrow('PacketPool.put: buffer belongs to another pool');
    expect(p1.available).toBe(2);
  });

  it('every buffer is a view of the one slab at slabOffset = index × slotBytes', () => {
    const pool = new PacketPool({ packets: 5, slotBytes: 320 });
    for (let i = 0; i < pool.capacity; i++) {
      const b = pool.at(i);
      expect(b.index).toBe(i);
      expect(b.bytes.buffer).toBe(pool.slab.buffer);
      expect(b.slabOffset).toBe(i * 320);
      expect(b.bytes.byteOffset).toBe(pool.slab.byteOffset + b.slabOffset);
      expect(b.bytes.length).toBe(320);
    }
    // A write through one slot shows in the slab at its offset and in no other slot.
    pool.at(3).bytes[0] = 0x5a;
    expect(pool.slab[3 * 320]).toBe(0x5a);
    expect(pool.at(2).bytes[319]).toBe(0);
  });

  it('shared: true backs the slab with a SharedArrayBuffer', () => {
    const pool = new PacketPool({ packets: 2, slotBytes: 256, shared: true });
    expect(pool.slab.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(pool.get()!.bytes.buffer).toBe(pool.slab.buffer);
  });

  it('accepts the edge values of its options', () => {
    expect(new PacketPool({ packets: 1, slotBytes: 256 }).capacity).toBe(1);
    expect(new PacketPool({ packets: 1, slotBytes: 131072 }).slotBytes).toBe(131072);
  });

  it('bad options throw RangeError with the value in the message', () => {
    const bad: [object, RegExp][] = [
      [{ packets: 0 }, /packets .* got 0$/],
      [{ packets: -1 }, /packets .* got -1$/],
      [{ packets: 1.5 }, /packets .* got 1\.5$/],
      [{ packets: 1048577 }, /packets .* got 1048577$/],
      [{ packets: Number.NaN }, /packets .* got NaN$/],
      [{ packets: 2, slotBytes: 255 }, /slotBytes .* got 255$/],
      [{ packets: 2, slotBytes: 131073 }, /slotBytes .* got 131073$/],
      [{ packets: 2, slotBytes: 300.5 }, /slotBytes .* got 300\.5$/],
    ];
    for (const [opts, msg] of bad) {
      expect(() => new PacketPool(opts), JSON.stringify(opts)).toThrow(RangeError);
      expect(() => new PacketPool(opts)).toThrow(msg);
    }
  });
});
