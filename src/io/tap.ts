/**
 * TAP devices through the native addon (native-fallback/src/tap.c), and the
 * addon's I/O functions (IoAddon) that every port on a native handle uses.
 *
 * Receive, one batch per readable event (the steps of rx-ring.ts):
 *   1. the addon reads frames into the RxRing's pool slots (at `rxOffset`),
 *   2. one JS call: each frame becomes a PacketBuf handed to onFrames' callback,
 *      whose consumer owns it from then on (returns it to the pool),
 *   3. the ring is refilled from the pool; an empty pool stops the reader
 *      (`poolExhausted`) until buffers come back, never allocating.
 * Send: writeBatch() = one addon call per batch; a full queue or a down link is
 * a counted drop (`txDropped`), never an exception.
 *
 * With `offload: true` (IFF_VNET_HDR + TUNSETOFFLOAD, native-fallback/src/offload.h)
 * the kernel hands over TCP super-frames of up to 64 KB, which the addon cuts
 * into ordinary frames in step 1 (many frames per read), and writeBatch() joins
 * consecutive segments of one TCP flow into super-frames (one write each). JS
 * sees and writes ordinary frames either way; offloadStats() counts the work
 * and the super-frames dropped, by reason.
 */
import { HEADROOM_BYTES, TAILROOM_BYTES } from '../buf/constants.js';
import type { PacketBuf } from '../buf/packet-buf.js';
import { PacketPool } from '../buf/pool.js';
import { nativeAddon, nativeLoadError } from '../native.js';
import { IoError, NativePort, RxRing, batchOption, type IoStats } from './rx-ring.js';

// Moved to rx-ring.ts; still exported here, where other modules import them.
export { IoError, RxRing, batchOption, checkRxOffset, describeBatch, emptyIoStats, nativeIoStats, NativePort, type IoStats } from './rx-ring.js';

/** An opaque native handle (a tagged napi external). */
export type NativeHandle = object;

/** The addon functions of io.c, tap.c and udp.c (see the comments there). */
export interface IoAddon {
  ioStart(h: NativeHandle, slab: Uint8Array, ring: Int32Array, meta: Int32Array, cb: (count: number, errno: number) => number, ready: number): void;
  ioResume(h: NativeHandle, ready: number): void;
  ioPause(h: NativeHandle): void;
  ioClose(h: NativeHandle): void;
  ioStats(h: NativeHandle, out: Float64Array): void;
  tapOpen(name: string, flags: number): { handle: NativeHandle; name: string; offload?: number };
  tapOffloadStats?(h: NativeHandle, out: Float64Array): void;
  /** For tests: tap_rx_offload's work on one read (vnet header + frame) without a device; segments or -reason. */
  offloadSegment?(input: Uint8Array, out: Uint8Array, capBytes: number, lens: Int32Array): number;
  /** For tests: the writes tapWrite would make with offloads, copied to out at outDesc (offset, length, frames)*; -1 if out is short. */
  offloadCoalesce?(slab: Uint8Array, desc: Int32Array, count: number, out: Uint8Array, outDesc: Int32Array): number;
  tapSetPersist(h: NativeHandle, on: boolean): void;
  tapSetLink(name: string, mtuBytes: number, up: number): void;
  tapWrite(h: NativeHandle, slab: Uint8Array, desc: Int32Array, count: number): number;
  udpOpen(family: 4 | 6, address: string, port: number, rcvbufBytes: number, sndbufBytes: number, reuseAddr: boolean): {
    handle: NativeHandle;
    family: 4 | 6;
    address: string;
    port: number;
  };
  udpSetPeer(h: NativeHandle, index: number, family: 4 | 6, address: Uint8Array, port: number): void;
  udpClearPeer(h: NativeHandle, index: number): void;
  udpSend(h: NativeHandle, slab: Uint8Array, desc: Int32Array, count: number): number;
}

/** The addon's I/O functions, or null when the addon is absent or predates them. */
export function ioAddon(): IoAddon | null {
  const a = nativeAddon();
  return a && typeof a.ioStart === 'function' && typeof a.tapOpen === 'function' ? (a as unknown as IoAddon) : null;
}

/** True if the addon can open TAPs with offloads (TapOpenOptions.offload). */
export function tapOffloadSupported(): boolean {
  return typeof ioAddon()?.tapOffloadStats === 'function';
}

/** The addon's I/O functions; throws IoError(ST_IO_NO_NATIVE) saying why they are missing. */
export function requireIoAddon(what: string): IoAddon {
  const a = ioAddon();
  if (!a) throw new IoError('ST_IO_NO_NATIVE', `${what} needs the native addon: ${nativeLoadError() ?? 'it has no I/O functions (rebuild it)'}`);
  return a;
}

export interface TapOpenOptions {
  /** Interface name (≤ 15 octets); absent or '' lets the kernel pick `tapN`. An existing persistent device is attached. */
  name?: string;
  /** true: the device outlives the process (TUNSETPERSIST); false: clear that flag; absent: leave it. */
  persistent?: boolean;
  /** Set the link MTU (SIOCSIFMTU). */
  mtuBytes?: number;
  /** Bring the link up (true) or down (false) (SIOCSIFFLAGS). */
  up?: boolean;
  /** IFF_VNET_HDR: every frame carries a virtio_net_hdr in front (passed through, not interpreted). */
  vnetHdr?: boolean;
  /**
   * TAP offloads: TCP/UDP super-frames from the kernel are segmented on read, consecutive TCP
   * segments of a flow are coalesced on write (see the file comment). Frames stay ordinary for JS.
   */
  offload?: boolean;
  /** IFF_MULTI_QUEUE: open one queue of a multi-queue device. */
  multiQueue?: boolean;
  /** Pool for received frames and the slab that writes come from (default: a new pool). */
  pool?: PacketPool;
  /** Frames per read batch, also the number of pool slots the ring holds (default 64; 128 with offload). */
  batchFrames?: number;
  /** Where a received frame starts in its slot (default HEADROOM_BYTES). */
  rxOffset?: number;
}

const TAP_PERSIST = 1;
const TAP_NOPERSIST = 2;
const TAP_VNET_HDR = 4;
const TAP_MULTI_QUEUE = 8;
const TAP_OFFLOAD = 16;

/** Offload counters, in the order of tap.c's TAP_GSO_FRAMES…, then drops per reason (offload.h ST_OFF_*). */
const OFFLOAD_STAT_NAMES = [
  'gsoFrames',
  'gsoSegments',
  'csumCompleted',
  'groFrames',
  'groSegments',
  'dropBadFrame',
  'dropBadGsoType',
  'dropBadGsoSize',
  'dropBadHdrLen',
  'dropBadCsum',
  'dropTooBig',
  'dropNoRoom',
] as const;

/**
 * What the offloads did: super-frames read (`gsoFrames`) and the frames cut out of them
 * (`gsoSegments`), partial checksums completed, super-frames written (`groFrames`) and the
 * frames joined into them (`groSegments`), and super-frames or frames dropped, by reason:
 * malformed (`dropBadFrame`, `dropBadGsoType`, `dropBadGsoSize` 0, `dropBadHdrLen` beyond the
 * frame, `dropBadCsum` offsets beyond the frame), a segment larger than a pool slot
 * (`dropTooBig`), more segments than free pool buffers in the ring (`dropNoRoom`).
 */
export type TapOffloadStats = Record<(typeof OFFLOAD_STAT_NAMES)[number], number>;

/** Reasons a vnet header parse returns (offload.h ST_OFF_*), by number: index = -result of offloadSegment. */
export const OFFLOAD_DROP_REASONS = ['ok', 'bad_frame', 'bad_gso_type', 'bad_gso_size', 'bad_hdr_len', 'bad_csum', 'too_big', 'no_room'] as const;

/** A TAP device (IFF_TAP | IFF_NO_PI, non-blocking, close-on-exec) read and written in batches. */
export class TapDevice {
  private readonly io: NativePort;
  private frames: ((bufs: PacketBuf[], count: number) => void) | null = null;
  private errors: ((errno: number) => void) | null = null;

  private constructor(
    private readonly addon: IoAddon,
    private readonly handle: NativeHandle,
    /** The interface name the kernel gave (the requested one, or `tapN`). */
    readonly name: string,
    readonly pool: PacketPool,
    batchFrames: number,
    rxOffset: number,
    /** TUN_F_* offloads the kernel accepted (TUNSETOFFLOAD); 0 without `offload`. */
    readonly offloadFlags: number,
    /** True if frames carry a vnet header that the addon interprets (the `offload` option). */
    readonly offload: boolean,
  ) {
    this.io = new NativePort(addon, handle, new RxRing(pool, batchFrames, 1, rxOffset, pool.slotBytes - rxOffset - TAILROOM_BYTES), 2);
  }

  /** Opens (creates or attaches) a TAP device; throws IoError or the addon's ST_NATIVE_ERRNO error. */
  static open(opts: TapOpenOptions = {}): TapDevice {
    const addon = requireIoAddon('TapDevice.open');
    const offload = opts.offload === true;
    if (offload && typeof addon.tapOffloadStats !== 'function') throw new IoError('ST_IO_NO_NATIVE', 'TapDevice.open offload needs a newer native addon (rebuild it)');
    const batch = batchOption('TapDevice.open batchFrames', opts.batchFrames, offload ? 128 : 64);
    const flags =
      (opts.persistent === true ? TAP_PERSIST : opts.persistent === false ? TAP_NOPERSIST : 0) |
      (opts.vnetHdr ? TAP_VNET_HDR : 0) |
      (opts.multiQueue ? TAP_MULTI_QUEUE : 0) |
      (offload ? TAP_OFFLOAD : 0);
    const opened = addon.tapOpen(opts.name ?? '', flags);
    const pool = opts.pool ?? new PacketPool();
    const dev = new TapDevice(addon, opened.handle, opened.name, pool, batch, opts.rxOffset ?? HEADROOM_BYTES, opened.offload ?? 0, offload);
    try {
      if (opts.mtuBytes !== undefined || opts.up !== undefined) dev.setLink({ mtuBytes: opts.mtuBytes, up: opts.up });
    } catch (e) {
      dev.close();
      throw e;
    }
    return dev;
  }

  /** Sets the MTU and/or the up flag of the link (by name, in this process's network namespace). */
  setLink(link: { mtuBytes?: number | undefined; up?: boolean | undefined }): void {
    this.assertOpen();
    this.addon.tapSetLink(this.name, link.mtuBytes ?? 0, link.up === undefined ? -1 : link.up ? 1 : 0);
  }

  /** Makes the device outlive its file descriptor (TUNSETPERSIST), or not. */
  setPersistent(on: boolean): void {
    this.assertOpen();
    this.addon.tapSetPersist(this.handle, on);
  }

  /**
   * Starts reading; `cb(bufs, count)` gets each batch once. bufs[0..count) are the
   * caller's from then on (put them back in the pool); the array itself is reused.
   */
  onFrames(cb: (bufs: PacketBuf[], count: number) => void): void {
    this.assertOpen();
    const first = this.frames === null;
    this.frames = cb;
    if (!first) return;
    this.io.start(this.onBatch);
  }

  /** Called with the errno when reading fails for good (the device was deleted, …); reading has stopped. */
  onError(cb: (errno: number) => void): void {
    this.errors = cb;
  }

  /**
   * Writes bufs[0..count) (live octets of each), one frame each; returns how many the kernel took.
   * With offload, runs of one TCP flow go as one super-frame (one write). The buffers are never
   * changed, so one may be written to several devices.
   */
  writeBatch(bufs: readonly PacketBuf[], count: number): number {
    if (this.io.closed) return 0;
    const m = this.io.describe(bufs, count, null);
    return m === 0 ? 0 : this.addon.tapWrite(this.handle, this.pool.slab, this.io.sendDesc, m);
  }

  /** Re-arms a reader stopped by pool exhaustion now (it also retries by itself every millisecond). */
  refill(): void {
    this.io.refill();
  }

  /** Counters; buffers from another pool's slab count as tx errors. */
  stats(): IoStats {
    return this.io.stats();
  }

  /** The offload counters (all 0 without `offload`; also after close). */
  offloadStats(): TapOffloadStats {
    const s = {} as TapOffloadStats;
    const raw = new Float64Array(OFFLOAD_STAT_NAMES.length);
    if (this.offload) this.addon.tapOffloadStats!(this.handle, raw);
    OFFLOAD_STAT_NAMES.forEach((n, i) => (s[n] = raw[i]!));
    return s;
  }

  /** Stops reading, closes the device (a non-persistent one disappears) and returns ring buffers to the pool. Idempotent. */
  close(): void {
    if (this.io.closed) return;
    this.io.close();
    this.frames = null;
  }

  private readonly onBatch = (count: number, errno: number): number => {
    const n = this.io.rx.takeBatch(count, 0, 0, false); // meta rows are lengths only: every frame is delivered
    if (n > 0) this.frames?.(this.io.rx.out, n);
    if (errno !== 0) {
      this.errors?.(errno); // the addon stopped reading for good; the ring stays idle until close()
      return 0;
    }
    return this.io.rearm();
  };

  private assertOpen(): void {
    if (this.io.closed) throw new IoError('ST_IO_CLOSED', `TAP ${this.name} is closed`);
  }
}
