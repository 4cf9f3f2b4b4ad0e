/**
 * Groups a pipeline's pending packets by the SA (or route) they go through, so that
 * each SA's packets are sealed or opened in one AEAD batch (encap stage 4, decap
 * stage 3). Groups come in the order of their first packet; inside a group, packets
 * keep their batch order (per-SA order on the wire and in the replay window).
 *
 * Use, without allocation per batch:
 *   groups.start(n);
 *   for (let g = groups.next(keys, bufs, n); g > 0; g = groups.next(keys, bufs, n)) {
 *     const key = keys[groups.idx[0]!]!;   // the group's SA or route
 *     … groups.bufs[0..g), groups.idx[0..g) …
 *   }
 */
import type { PacketBuf } from '../buf/packet-buf.js';

/** Packets of one batch, grouped by key identity (see file comment). */
export class SaGroups<K> {
  /** The current group's buffers, [0, g). */
  readonly bufs: PacketBuf[] = [];
  /** The current group's indexes into the pending arrays, [0, g). */
  readonly idx: number[] = [];
  private done: Uint8Array;
  private from = 0;

  constructor(capacity: number) {
    this.done = new Uint8Array(capacity);
  }

  /** Starts grouping the first n pending packets. */
  start(n: number): void {
    if (this.done.length < n) this.done = new Uint8Array(n);
    this.done.fill(0, 0, n);
    this.from = 0;
  }

  /** Fills `bufs`/`idx` with the next group and returns its size; 0 when every packet is grouped. */
  next(keys: readonly K[], bufs: readonly PacketBuf[], n: number): number {
    const done = this.done;
    let k = this.from;
    while (k < n && done[k] === 1) k++;
    this.from = k;
    if (k >= n) return 0;
    const key = keys[k];
    let g = 0;
    for (let j = k; j < n; j++) {
      if (done[j] === 0 && keys[j] === key) {
        done[j] = 1;
        this.bufs[g] = bufs[j]!;
        this.idx[g] = j;
        g++;
      }
    }
    return g;
  }
}
