/**
 * Outer IP fragment reassembly for the receive path (RFC 791 §3.2, RFC 8200 §4.5),
 * bounded in every dimension: datagrams in progress, octets per datagram,
 * fragments per datagram, and age. All memory is allocated once, up front.
 *
 * The caller parses the outer header and passes the fragment's fields and its
 * payload (the octets after the IPv4 header or the IPv6 fragment header).
 * Overlapping fragments discard the whole datagram (RFC 5722; the same rule is
 * applied to IPv4, where overlaps are only ever an attack or a bug).
 * A completed datagram's payload is copied out with `copyOut` — reassembly is the
 * one place the receive path must copy, because fragments arrive in separate buffers.
 */

/** Result of `add`. */
export const REASM_PENDING = 0;
export const REASM_DONE = 1;
export const REASM_FAILED = 2;

/** Why a datagram was given up (for counters and logs; all map to `reassembly_failed`). */
export const ReasmFailure = Object.freeze({
  none: 0,
  overlap: 1,
  tooManyFragments: 2,
  tooLong: 3,
  noSlot: 4,
  timeout: 5,
  badFragment: 6,
  inconsistentEnd: 7,
});
export type ReasmFailureCode = (typeof ReasmFailure)[keyof typeof ReasmFailure];

/** Limits of the reassembler. */
export interface ReassemblyLimits {
  /** Datagrams in progress at once; a fragment of a new datagram when all are busy fails. */
  maxDatagrams: number;
  /** Largest reassembled payload in octets (65535 − 20 for IPv4; more for IPv6 jumbograms is refused). */
  maxDatagramBytes: number;
  /** Fragments accepted per datagram. */
  maxFragmentsPerDatagram: number;
  /** A datagram not completed within this time is dropped (RFC 791 suggests 15 s; RFC 8200 says 60 s). */
  timeoutMs: number;
}

export const DEFAULT_REASSEMBLY_LIMITS: ReassemblyLimits = Object.freeze({
  maxDatagrams: 64,
  maxDatagramBytes: 65535,
  maxFragmentsPerDatagram: 64,
  timeoutMs: 30_000,
});

/** Key octets: family(1) proto(1) id(4) src(16) dst(16). */
const KEY_BYTES = 38;

interface Slot {
  used: boolean;
  key: Uint8Array;
  firstSeenMs: number;
  /** Payload length once the last fragment (more = false) has been seen, else -1. */
  totalBytes: number;
  /** Octets received so far (sum of fragment lengths; no overlaps are kept). */
  receivedBytes: number;
  fragCount: number;
  /** Received ranges [start, end) as pairs. */
  ranges: Int32Array;
  data: Uint8Array;
  proto: number;
}

/** Counters kept by the reassembler. */
export interface ReassemblyStats {
  fragments: number;
  completed: number;
  failed: number;
  timedOut: number;
  failuresByCause: Float64Array;
}

export class Reassembler {
  readonly limits: ReassemblyLimits;
  readonly stats: ReassemblyStats;
  private readonly slots: Slot[];
  private readonly scratchKey = new Uint8Array(KEY_BYTES);
  /** Slot of the datagram that the last `add` completed (valid until `release`). */
  doneSlot = -1;
  /** Why the last `add` failed. */
  lastFailure: ReasmFailureCode = ReasmFailure.none;

  constructor(limits: Partial<ReassemblyLimits> = {}) {
    this.limits = { ...DEFAULT_REASSEMBLY_LIMITS, ...limits };
    const { maxDatagrams, maxDatagramBytes, maxFragmentsPerDatagram } = this.limits;
    if (!Number.isInteger(maxDatagrams) || maxDatagrams < 1 || maxDatagrams > 4096) {
      throw new RangeError(`Reassembler: maxDatagrams must be in 1..4096, got ${maxDatagrams}`);
    }
    if (!Number.isInteger(maxDatagramBytes) || maxDatagramBytes < 576 || maxDatagramBytes > 65535) {
      throw new RangeError(`Reassembler: maxDatagramBytes must be in 576..65535, got ${maxDatagramBytes}`);
    }
    if (!Number.isInteger(maxFragmentsPerDatagram) || maxFragmentsPerDatagram < 2 || maxFragmentsPerDatagram > 1024) {
      throw new RangeError(`Reassembler: maxFragmentsPerDatagram must be in 2..1024, got ${maxFragmentsPerDatagram}`);
    }
    this.slots = [];
    for (let i = 0; i < maxDatagrams; i++) {
      this.slots.push({
        used: false,
        key: new Uint8Array(KEY_BYTES),
        firstSeenMs: 0,
        totalBytes: -1,
        receivedBytes: 0,
        fragCount: 0,
        ranges: new Int32Array(maxFragmentsPerDatagram * 2),
        data: new Uint8Array(maxDatagramBytes),
        proto: 0,
      });
    }
    this.stats = { fragments: 0, completed: 0, failed: 0, timedOut: 0, failuresByCause: new Float64Array(8) };
  }

  /** Datagrams currently in progress. */
  get inProgress(): number {
    let n = 0;
    for (const s of this.slots) if (s.used) n++;
    return n;
  }

  /**
   * Adds one fragment. `src`/`dst` are the outer addresses (4 or 16 octets at srcOff/dstOff),
   * `id` the IPv4 identification or IPv6 fragment identification, `proto` the upper-layer
   * protocol, `offsetBytes` the fragment offset in octets, `more` the MF/M flag, and the
   * fragment's payload is data[dataOff, dataOff+dataLen).
   * Returns REASM_PENDING, REASM_DONE (then `doneSlot` is set: `copyOut` and `release` it) or
   * REASM_FAILED (`lastFailure` says why; the datagram's state is gone).
   */
  add(
    family: 4 | 6,
    addrs: Uint8Array,
    srcOff: number,
    dstOff: number,
    id: number,
    proto: number,
    offsetBytes: number,
    more: boolean,
    data: Uint8Array,
    dataOff: number,
    dataLen: number,
    nowMs: number,
  ): number {
    this.stats.fragments++;
    this.expire(nowMs);
    const addrLen = family === 4 ? 4 : 16;
    const key = this.scratchKey;
    key.fill(0);
    key[0] = family;
    key[1] = proto;
    key[2] = (id >>> 24) & 0xff;
    key[3] = (id >>> 16) & 0xff;
    key[4] = (id >>> 8) & 0xff;
    key[5] = id & 0xff;
    for (let i = 0; i < addrLen; i++) {
      key[6 + i] = addrs[srcOff + i]!;
      key[22 + i] = addrs[dstOff + i]!;
    }

    // RFC 791/8200: every fragment but the last carries a multiple of 8 octets.
    if (dataLen < 0 || offsetBytes < 0 || (more && (dataLen === 0 || (dataLen & 7) !== 0))) {
      return this.failUnkeyed(ReasmFailure.badFragment);
    }
    const end = offsetBytes + dataLen;
    if (end > this.limits.maxDatagramBytes) {
      const s = this.find(key);
      if (s >= 0) this.freeSlot(s);
      return this.failUnkeyed(ReasmFailure.tooLong);
    }

    let si = this.find(key);
    if (si < 0) {
      si = this.freeIndex();
      if (si < 0) return this.failUnkeyed(ReasmFailure.noSlot);
      const s = this.slots[si]!;
      s.used = true;
      s.key.set(key);
      s.firstSeenMs = nowMs;
      s.totalBytes = -1;
      s.receivedBytes = 0;
      s.fragCount = 0;
      s.proto = proto;
    }
    const s = this.slots[si]!;

    if (!more) {
      if (s.totalBytes >= 0 && s.totalBytes !== end) return this.fail(si, ReasmFailure.inconsistentEnd);
      s.totalBytes = end;
    }
    if (s.totalBytes >= 0 && end > s.totalBytes) return this.fail(si, ReasmFailure.inconsistentEnd);
    for (let i = 0; i < s.fragCount; i++) {
      const a = s.ranges[2 * i]!;
      const b = s.ranges[2 * i + 1]!;
      if (offsetBytes < b && a < end) return this.fail(si, ReasmFailure.overlap);
    }
    if (s.fragCount === this.limits.maxFragmentsPerDatagram) return this.fail(si, ReasmFailure.tooManyFragments);

    s.ranges[2 * s.fragCount] = offsetBytes;
    s.ranges[2 * s.fragCount + 1] = end;
    s.fragCount++;
    s.receivedBytes += dataLen;
    s.data.set(data.subarray(dataOff, dataOff + dataLen), offsetBytes);

    // Ranges never overlap, so full coverage is exactly "received == total".
    if (s.totalBytes >= 0 && s.receivedBytes === s.totalBytes) {
      this.stats.completed++;
      this.doneSlot = si;
      return REASM_DONE;
    }
    return REASM_PENDING;
  }

  /** Length of the completed datagram's payload in `slot`. */
  doneLength(slot: number): number {
    return this.slots[slot]!.totalBytes;
  }

  /** Upper-layer protocol of the datagram in `slot`. */
  doneProto(slot: number): number {
    return this.slots[slot]!.proto;
  }

  /** Copies the completed payload of `slot` to target[off…]; returns its length, or -1 if it does not fit. */
  copyOut(slot: number, target: Uint8Array, off: number): number {
    const s = this.slots[slot]!;
    if (off < 0 || off + s.totalBytes > target.length) return -1;
    target.set(s.data.subarray(0, s.totalBytes), off);
    return s.totalBytes;
  }

  /** Frees the slot of a completed datagram. */
  release(slot: number): void {
    if (this.doneSlot === slot) this.doneSlot = -1;
    this.freeSlot(slot);
  }

  /** Drops datagrams older than the timeout; returns how many. Called by `add`, and by the owner periodically. */
  expire(nowMs: number): number {
    let n = 0;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i]!;
      if (s.used && i !== this.doneSlot && nowMs - s.firstSeenMs >= this.limits.timeoutMs) {
        this.freeSlot(i);
        this.stats.timedOut++;
        this.stats.failuresByCause[ReasmFailure.timeout]!++;
        n++;
      }
    }
    return n;
  }

  private find(key: Uint8Array): number {
    outer: for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i]!;
      if (!s.used) continue;
      for (let j = 0; j < KEY_BYTES; j++) if (s.key[j] !== key[j]) continue outer;
      return i;
    }
    return -1;
  }

  private freeIndex(): number {
    for (let i = 0; i < this.slots.length; i++) if (!this.slots[i]!.used) return i;
    return -1;
  }

  private freeSlot(i: number): void {
    const s = this.slots[i]!;
    s.used = false;
    s.fragCount = 0;
    s.receivedBytes = 0;
    s.totalBytes = -1;
  }

  private fail(slot: number, cause: ReasmFailureCode): number {
    this.freeSlot(slot);
    return this.failUnkeyed(cause);
  }

  private failUnkeyed(cause: ReasmFailureCode): number {
    this.lastFailure = cause;
    this.stats.failed++;
    this.stats.failuresByCause[cause]!++;
    return REASM_FAILED;
  }
}
