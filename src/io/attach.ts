/**
 * Attach mode: a guest port on an existing interface that another program owns
 * (a libvirt vnetN TAP, a veth end), through libpcap with the `cap` package.
 * Same shape as TapDevice, so the daemon treats both as guest ports.
 *
 * Receive, one batch per turn of the event loop:
 *   1. libpcap captures with the filter `inbound` (pkttype != PACKET_OUTGOING;
 *      `inboundOnly`, the default): only frames arriving from the guest side;
 *      frames written to the device (by another port, the host's bridge or
 *      stack) are not captured. Without it those are captured too; in both
 *      cases a packet socket never sees the frames it sent itself, so our own
 *      injections never come back,
 *   2. cap copies each frame into one capture Buffer and emits it; we copy it
 *      into a pool slot at `rxOffset` (two copies after the kernel's: libpcap's
 *      ring -> cap's Buffer -> the slot; unavoidable with cap's API). No free
 *      slot: dropped, counted in `poolExhausted`; larger than the slot: `rxTruncated`,
 *   3. the batch is delivered when full or on the next setImmediate.
 * Send: writeBatch copies each frame into one transmit Buffer and injects it
 * (pcap_sendpacket = one send() per frame on the packet socket: the frame goes
 * out of the device, i.e. to the guest). A full queue or a down link is a
 * counted drop (`txDropped`), other failures `txErrors`; never an exception.
 *
 * Limits of cap 0.2.1 the daemon must know:
 *   - the device going down or away while attached (`ip link set down`, a VM
 *     stopping deletes its vnetN) makes libuv report POLLERR, and cap's poll
 *     callback asserts on it: the whole process aborts (test/io/attach.test.ts
 *     pins this). Only closing the port before can prevent it, which for a
 *     libvirt vnetN is rarely possible (qemu closes the TAP before any hook),
 *
 *   - promiscuous mode is always on; pcap_lookupnet prints a warning on stderr
 *     for a device without an IPv4 address; immediate mode needs `libpcap.so`
 *     (libpcap-dev), else frames wait up to 1 s in libpcap's buffer,
 *   - with `inbound`, the first frame after open is lost: libpcap filters the
 *     frames already in its ring when a filter is set (at least one) in
 *     userland, where the kernel's pkttype is unknown, so `inbound` rejects it
 *     (pcap-linux.c, pcap_setfilter_linux). Without immediate mode (TPACKET_V3)
 *     that is a whole first block of frames,
 *   - kernel capture drops (ring full) are not reported: cap has no pcap_stats.
 *     With offloads on the device (veth and TAP have them by default) libpcap
 *     sizes each ring slot for 64 KiB, so the default 4 MiB ring holds about 60
 *     frames: a longer burst loses frames. Turn offloads off on the device
 *     (`ethtool -K DEV gro off gso off tso off`; slots then fit the MTU) or
 *     raise `captureBufferBytes`,
 *   - cap handles are never freed (see `retainedHandles`): a small object per open,
 *   - frames are captured as the device carries them: with segmentation or
 *     checksum offload on the guest side they can be GSO super-frames (counted
 *     `rxTruncated` if larger than a slot) or carry partial checksums.
 *
 * Needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode).
 */
import { createRequire } from 'node:module';
import { HEADROOM_BYTES, TAILROOM_BYTES } from '../buf/constants.js';
import type { PacketBuf } from '../buf/packet-buf.js';
import { PacketPool } from '../buf/pool.js';
import { errnoFromMessage, isDropErrno } from './raw-esp.js';
import { IoError, batchOption, emptyIoStats, type IoStats, type TapDevice } from './tap.js';

/** The guest-port shape TapDevice and AttachPort share (what the daemon needs of either). */
export type GuestPort = Pick<TapDevice, 'name' | 'pool' | 'onFrames' | 'onError' | 'writeBatch' | 'refill' | 'stats' | 'close'>;

/** Options of AttachPort.open. */
export interface AttachOptions {
  /** The interface to attach to, in this process's network namespace (1–15 octets). */
  device: string;
  /** Pool for captured frames and the slab that writes come from (default: a new pool). */
  pool?: PacketPool;
  /** Frames per delivered batch at most (default 64). */
  batchFrames?: number;
  /** Where a captured frame starts in its slot (default HEADROOM_BYTES). */
  rxOffset?: number;
  /** libpcap's kernel ring (pcap_set_buffer_size; default 4 MiB). */
  captureBufferBytes?: number;
  /** Capture only frames arriving on the device (BPF `inbound`; default true). See the file comment. */
  inboundOnly?: boolean;
}

/** A control-path failure of libpcap (opening the device, compiling the filter), with a stable code. */
export class AttachError extends Error {
  readonly code = 'ST_IO_PCAP';
  constructor(message: string) {
    super(message);
    this.name = 'AttachError';
  }
}

// ---------------------------------------------------------------------------------
// cap, as far as we use it (it ships no types)

interface PcapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  send(buffer: Buffer, length: number): void;
  close(): boolean;
  on(event: 'packet', cb: (nbytes: number, truncated: boolean) => void): void;
  removeAllListeners(event: string): void;
}

interface CapModule {
  Cap: new () => PcapHandle;
}

let capModule: CapModule | null = null;

/**
 * Every cap handle ever created, never released to the garbage collector: cap 0.2.1
 * aborts the process when a handle whose open failed is closed or collected
 * (uv_poll_stop on a poll handle it never initialised; Unref without Ref), and a
 * closed handle's uv_poll_t is freed without uv_close (a dangling loop handle).
 * The price is one small object per attach ever made.
 */
const retainedHandles: PcapHandle[] = [];

/** Loads cap once; throws IoError(ST_IO_NO_NATIVE) naming why it is missing. */
function loadCap(): CapModule {
  if (capModule) return capModule;
  try {
    capModule = createRequire(import.meta.url)('cap') as CapModule;
  } catch (e) {
    throw new IoError('ST_IO_NO_NATIVE', `AttachPort needs the cap package (npm ci builds it; libpcap-dev): ${(e as Error).message}`);
  }
  return capModule;
}

/** Linux interface names: at most 15 octets (IFNAMSIZ - 1), no '/', ':' or white space. */
const IFNAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}$/;

/** A guest port over libpcap on an existing interface: captures inbound frames, injects frames out of it. */
export class AttachPort implements GuestPort {
  private closed = false;
  private readonly counters = emptyIoStats();
  private readonly slabView: Buffer;
  private readonly txBuffer: Buffer;
  private readonly out: PacketBuf[];
  private pending = 0;
  private scheduled = false;
  private frames: ((bufs: PacketBuf[], count: number) => void) | null = null;

  private constructor(
    private readonly cap: PcapHandle,
    /** Frames land here (cap copies into it); as long as a slot's room for a frame. */
    private readonly captureBuffer: Buffer,
    /** The attached interface. */
    readonly name: string,
    readonly pool: PacketPool,
    private readonly batchFrames: number,
    private readonly rxOffset: number,
  ) {
    this.slabView = Buffer.from(pool.slab.buffer, pool.slab.byteOffset, pool.slab.byteLength);
    this.txBuffer = Buffer.alloc(pool.slotBytes);
    this.out = new Array<PacketBuf>(batchFrames);
  }

  /** Attaches to `opts.device`; throws IoError (options, package missing) or AttachError (libpcap refused). */
  static open(opts: AttachOptions): AttachPort {
    const device = opts.device;
    if (typeof device !== 'string' || !IFNAME_PATTERN.test(device)) {
      throw new IoError('ST_IO_OPTION', `attach device: not an interface name (1–15 of [A-Za-z0-9_.@-]): ${String(device)}`);
    }
    const batchFrames = batchOption('AttachPort.open batchFrames', opts.batchFrames, 64);
    const pool = opts.pool ?? new PacketPool();
    const rxOffset = opts.rxOffset ?? HEADROOM_BYTES;
    const capacityBytes = pool.slotBytes - rxOffset - TAILROOM_BYTES;
    if (!Number.isInteger(rxOffset) || rxOffset < 0 || capacityBytes < 64) {
      throw new IoError('ST_IO_OPTION', `attach rxOffset ${rxOffset}: leaves ${capacityBytes} octets of a ${pool.slotBytes}-octet slot (need ≥ 64)`);
    }
    const ringBytes = opts.captureBufferBytes ?? 4 << 20;
    if (!Number.isInteger(ringBytes) || ringBytes < 65536 || ringBytes > 2 ** 31 - 1) {
      throw new IoError('ST_IO_OPTION', `attach captureBufferBytes: must be an integer in 65536..2^31-1, got ${ringBytes}`);
    }
    // No caller-supplied filter: a filter that fails to compile would leave an
    // activated handle that cannot be closed safely (see retainedHandles).
    const filter = opts.inboundOnly === false ? '' : 'inbound';

    const { Cap } = loadCap();
    const cap = new Cap();
    retainedHandles.push(cap);
    const captureBuffer = Buffer.alloc(capacityBytes);
    let linkType: string;
    try {
      linkType = cap.open(device, filter, ringBytes, captureBuffer);
    } catch (e) {
      // Not closed: see retainedHandles (libpcap has released its socket already).
      throw new AttachError(`attach ${device} (filter '${filter}'): ${(e as Error).message}`);
    }
    if (linkType !== 'ETHERNET') {
      cap.close();
      throw new AttachError(`attach ${device}: link type ${linkType}, not Ethernet`);
    }
    return new AttachPort(cap, captureBuffer, device, pool, batchFrames, rxOffset);
  }

  /**
   * Starts capturing; `cb(bufs, count)` gets each batch once. bufs[0..count) are the
   * caller's from then on (put them back in the pool); the array itself is reused.
   */
  onFrames(cb: (bufs: PacketBuf[], count: number) => void): void {
    this.assertOpen();
    const first = this.frames === null;
    this.frames = cb;
    if (first) this.cap.on('packet', this.onPacket);
  }

  /** Kept for the TapDevice shape; never called: cap reports no read errors (see the file comment). */
  onError(_cb: (errno: number) => void): void {}

  /** Injects bufs[0..count) (live octets of each), one frame each; returns how many the kernel took. */
  writeBatch(bufs: readonly PacketBuf[], count: number): number {
    if (this.closed) return 0;
    const c = this.counters;
    const slab = this.pool.slab;
    const tx = this.txBuffer;
    let sent = 0;
    for (let i = 0; i < count; i++) {
      const b = bufs[i]!;
      const len = b.end - b.start;
      if (b.bytes.buffer !== slab.buffer || len > tx.length) {
        c.txErrors++;
        continue;
      }
      const from = b.bytes.byteOffset - slab.byteOffset + b.start;
      this.slabView.copy(tx, 0, from, from + len);
      try {
        this.cap.send(tx, len);
      } catch (e) {
        const errno = errnoFromMessage((e as Error).message);
        c.lastErrno = errno;
        if (isDropErrno(errno)) c.txDropped++;
        else c.txErrors++;
        continue;
      }
      c.txPackets++;
      c.txBytes += len;
      sent++;
    }
    return sent;
  }

  /** Nothing to re-arm: capture goes on and drops what finds no buffer (counted in poolExhausted). */
  refill(): void {}

  /** Counters; buffers from another pool's slab count as tx errors. */
  stats(): IoStats {
    return { ...this.counters };
  }

  /** Stops capturing, closes the pcap handle (the process can then exit) and returns undelivered buffers. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cap.removeAllListeners('packet');
    this.cap.close();
    for (let i = 0; i < this.pending; i++) this.pool.put(this.out[i]!);
    this.pending = 0;
    this.frames = null;
  }

  private readonly onPacket = (nbytes: number, truncated: boolean): void => {
    if (this.closed) return;
    const c = this.counters;
    if (truncated) {
      c.rxTruncated++;
      return;
    }
    const b = this.pool.get();
    if (b === null) {
      c.poolExhausted++;
      return;
    }
    this.captureBuffer.copy(this.slabView, b.bytes.byteOffset - this.pool.slab.byteOffset + this.rxOffset, 0, nbytes);
    b.start = this.rxOffset;
    b.end = this.rxOffset + nbytes;
    this.out[this.pending++] = b;
    c.rxPackets++;
    c.rxBytes += nbytes;
    if (this.pending === this.batchFrames) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  };

  private readonly flush = (): void => {
    this.scheduled = false;
    const n = this.pending;
    if (n === 0 || this.closed) return;
    this.pending = 0;
    this.counters.rxBatches++;
    this.frames?.(this.out, n);
  };

  private assertOpen(): void {
    if (this.closed) throw new IoError('ST_IO_CLOSED', `attach port ${this.name} is closed`);
  }
}
