// Pool buffers with random payloads, for the transport tests (test/io/udp*.test.ts).
import { randomFillSync } from 'node:crypto';
import type { PacketBuf } from '../../src/buf/packet-buf.js';
import type { PacketPool } from '../../src/buf/pool.js';

/** One pool buffer per size, each filled with that many random octets. */
export function payloads(pool: PacketPool, sizes: readonly number[]): PacketBuf[] {
  return sizes.map((n) => {
    const b = pool.get()!;
    randomFillSync(b.bytes, b.append(n), n);
    return b;
  });
}
