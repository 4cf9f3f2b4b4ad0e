/**
 * Attach mode: a guest port on an existing interface that another program owns
 * (a libvirt vnetN TAP, a veth end), through an AF_PACKET socket of the native
 * addon (native-fallback/src/packet.c). Same shape as TapDevice, so the daemon
 * treats both as guest ports.
 *
 * Receive, one batch per readable event:
 *   1. the addon reads frames (recvmmsg) straight into the ring's pool slots at
 *      `rxOffset`: the kernel's copy is the only one. With `inboundOnly` (the
 *      default) only frames arriving from the guest side are read
 *      (PACKET_IGNORE_OUTGOING): frames written to the device by the host's
 *      bridge or stack or by another port are not. A packet socket never reads
 *      the frames it sent itself, so our own injections never come back,
 *   2. a VLAN tag the kernel moved out of the frame (Linux untags every received
 *      802.1Q/802.1ad frame before packet sockets see it) is put back from the
 *      socket's auxdata, TPID included: a slot holds the frame exactly as the
 *      guest sent it, so the core still sees (and drops, `guest_vlan_tag`) a
 *      guest's own tag,
 *   3. one JS call: each frame becomes a PacketBuf [rxOffset, rxOffset+len) owned
 *      by the consumer; a frame larger than its slot is counted (`rxTruncated`)
 *      and its slot reused,
 *   4. the ring is refilled from the pool; when the pool is empty reading stops
 *      (`poolExhausted` counts the stalls) and frames wait in the socket's receive
 *      buffer (`captureBufferBytes`); what does not fit there is dropped by the
 *      kernel and counted (`rxKernelDrops`). Nothing is allocated per frame.
 * Send: writeBatch() = one addon call per batch (sendmmsg out of the device, i.e.
 * to the guest; one kernel copy per frame). A full queue or a down link is a
 * counted drop (`txDropped`), other failures `txErrors`; never an exception.
 *
 * Link loss: the device going down, being deleted (a VM stopping deletes its
 * vnetN) or moving to another network namespace ends the port: onError gets the
 * errno once (ENETDOWN), the socket is closed, the ring's buffers go back to the
 * pool, later writes count as `txDropped`. The process carries on; reopen the
 * port (AttachPort.open) when the device is back. Opening a device that is down
 * fails (AttachError).
 *
 * Frames are read as the device carries them: when the guest side uses
 * segmentation or checksum offload (virtio-net with host TSO/csum, veth's
 * defaults) a frame can be a GSO super-frame (counted `rxTruncated` if larger
 * than a slot) or carry a partial checksum. Turn the offloads off on the guest's
 * side (libvirt `<driver><host csum='off' tso4='off' tso6='off'/></driver>`,
 * `ethtool -K DEV tso off gso off tx off` on the far end of a veth).
 *
 * Needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode) and the addon.
 */
import { constants as osConstants } from 'node:os';
import { HEADROOM_BYTES, TAILROOM_BYTES } from '../buf/constants.js';
import type { PacketBuf } from '../buf/packet-buf.js';
import { PacketPool } from '../buf/pool.js';
import { IoError, NativePort, RxRing, batchOption, checkRxOffset, type IoStats } from './rx-ring.js';
import { requireIoAddon, type IoAddon, type NativeHandle, type TapDevice } from './tap.js';

/** The guest-port shape TapDevice and AttachPort share (what the daemon needs of either). */
export type GuestPort = Pick<TapDevice, 'name' | 'pool' | 'onFrames' | 'onError' | 'writeBatch' | 'refill' | 'stats' | 'close'>;

/** Options of AttachPort.open. */
export interface AttachOptions {
  /** The interface to attach to, in this process's network namespace (1–15 octets). */
  device: string;
  /** Pool for received frames and the slab that writes come from (default: a new pool). */
  pool?: PacketPool;
  /** Frames per delivered batch at most, also the pool slots the receive ring holds (default 64). */
  batchFrames?: number;
  /** Where a received frame starts in its slot (default HEADROOM_BYTES). */
  rxOffset?: number;
  /** The socket's receive buffer (SO_RCVBUFFORCE; the kernel doubles it for overhead; default 4 MiB). */
  captureBufferBytes?: number;
  /** Read only frames arriving on the device, not those it sends (default true). See the file comment. */
  inboundOnly?: boolean;
  /** Put the device in promiscuous mode while attached (default true; needed on a NIC to see frames to guest MACs). */
  promiscuous?: boolean;
}

/** Counters of an attach port: IoStats and the frames the kernel dropped because the receive buffer was full. */
export type AttachStats = IoStats & { rxKernelDrops: number };

/** A control-path failure of attaching (no such device, not Ethernet, down, no permission), with a stable code. */
export class AttachError extends Error {
  readonly code = 'ST_IO_ATTACH';
  constructor(message: string) {
    super(message);
    this.name = 'AttachError';
  }
}

/** The addon functions of packet.c (see the comments there). */
interface PacketAddon extends IoAddon {
  packetOpen(ifname: string, flags: number, rcvbufBytes: number): { handle: NativeHandle; name: string; ifindex: number; ignoreOutgoing: boolean };
  packetSend(h: NativeHandle, slab: Uint8Array, desc: Int32Array, count: number): number;
  packetTakeError(h: NativeHandle): number;
  packetKernelDrops(h: NativeHandle): number;
}

/** packetOpen flags (packet.c PKT_OPEN_*). */
const OPEN_INBOUND_ONLY = 1;
const OPEN_PROMISC = 2;
/** Meta row of a received frame (packet.c): [0] length, [1] flags, [2] sll_pkttype, [3] length on the link. */
const META_STRIDE = 4;
/** The meta row word holding the flags. */
const META_FLAGS_WORD = 1;
/** Meta flags of frames that are not delivered (packet.c PKT_F_TRUNCATED | PKT_F_OUTGOING). */
const META_SKIP = 1 | 2;

/** The addon with packet sockets; throws IoError(ST_IO_NO_NATIVE) saying why it is missing. */
function requirePacketAddon(): PacketAddon {
  const a = requireIoAddon('AttachPort.open') as Partial<PacketAddon> & IoAddon;
  if (typeof a.packetOpen !== 'function') {
    throw new IoError('ST_IO_NO_NATIVE', 'AttachPort.open needs the native addon with packet sockets (native-fallback/src/packet.c): rebuild it (npm run build:native)');
  }
  return a as PacketAddon;
}

/** Linux interface names: at most 15 octets (IFNAMSIZ - 1), no '/', ':' or white space. */
const IFNAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}$/;

/** A guest port on an existing interface: reads the frames the guest sends, injects frames out of it to the guest. */
export class AttachPort implements GuestPort {
  private closed = false;
  /** errno that ended the port (link down or gone), 0 while it runs. */
  private failure = 0;
  /** Reading and sending; closed on close() or link loss. */
  private readonly io: NativePort;
  private readonly counts = { droppedAfterFailure: 0, kernelDrops: 0 };
  private frames: ((bufs: PacketBuf[], count: number) => void) | null = null;
  private errors: ((errno: number) => void) | null = null;

  private constructor(
    private readonly addon: PacketAddon,
    private readonly handle: NativeHandle,
    /** The attached interface. */
    readonly name: string,
    readonly pool: PacketPool,
    batchFrames: number,
    rxOffset: number,
  ) {
    this.io = new NativePort(addon, handle, new RxRing(pool, batchFrames, META_STRIDE, rxOffset, pool.slotBytes - rxOffset - TAILROOM_BYTES), 2);
  }

  /** Attaches to `opts.device`; throws IoError (options, addon missing) or AttachError (the kernel refused). */
  static open(opts: AttachOptions): AttachPort {
    const device = opts.device;
    if (typeof device !== 'string' || !IFNAME_PATTERN.test(device)) {
      throw new IoError('ST_IO_OPTION', `attach device: not an interface name (1–15 of [A-Za-z0-9_.@-]): ${String(device)}`);
    }
    const batchFrames = batchOption('AttachPort.open batchFrames', opts.batchFrames, 64);
    const pool = opts.pool ?? new PacketPool();
    const rxOffset = opts.rxOffset ?? HEADROOM_BYTES;
    checkRxOffset('attach rxOffset', pool, rxOffset, pool.slotBytes - rxOffset - TAILROOM_BYTES);
    const rcvbufBytes = opts.captureBufferBytes ?? 4 << 20;
    if (!Number.isInteger(rcvbufBytes) || rcvbufBytes < 65536 || rcvbufBytes > 2 ** 30) {
      throw new IoError('ST_IO_OPTION', `attach captureBufferBytes: must be an integer in 65536..2^30, got ${rcvbufBytes}`);
    }
    const flags = (opts.inboundOnly === false ? 0 : OPEN_INBOUND_ONLY) | (opts.promiscuous === false ? 0 : OPEN_PROMISC);
    const addon = requirePacketAddon();
    let opened: ReturnType<PacketAddon['packetOpen']>;
    try {
      opened = addon.packetOpen(device, flags, rcvbufBytes);
    } catch (e) {
      throw new AttachError(`attach ${device}: ${(e as Error).message}`);
    }
    return new AttachPort(addon, opened.handle, device, pool, batchFrames, rxOffset);
  }

  /**
   * Starts reading; `cb(bufs, count)` gets each batch once. bufs[0..count) are the
   * caller's from then on (put them back in the pool); the array itself is reused.
   */
  onFrames(cb: (bufs: PacketBuf[], count: number) => void): void {
    this.assertOpen();
    const first = this.frames === null;
    this.frames = cb;
    if (!first || this.failure !== 0) return;
    this.io.start(this.onBatch);
  }

  /** Called once with the errno (ENETDOWN) when the link goes down or away; the port has stopped by then. */
  onError(cb: (errno: number) => void): void {
    this.errors = cb;
  }

  /** errno that ended the port (the link went down or away), 0 while it runs. */
  get failedErrno(): number {
    return this.failure;
  }

  /** Injects bufs[0..count) (live octets of each), one frame each; returns how many the kernel took. */
  writeBatch(bufs: readonly PacketBuf[], count: number): number {
    if (this.closed) return 0;
    if (this.failure !== 0) {
      this.counts.droppedAfterFailure += count;
      return 0;
    }
    const m = this.io.describe(bufs, count, null);
    return m === 0 ? 0 : this.addon.packetSend(this.handle, this.pool.slab, this.io.sendDesc, m);
  }

  /** Re-arms a reader stopped by pool exhaustion now (it also retries by itself every millisecond). */
  refill(): void {
    this.io.refill();
  }

  /** Counters; buffers from another pool's slab count as tx errors, writes after link loss as tx drops. */
  stats(): AttachStats {
    const s = this.io.stats();
    s.txDropped += this.counts.droppedAfterFailure;
    return { ...s, rxKernelDrops: this.kernelDrops() };
  }

  /** Stops reading, closes the socket (the device leaves promiscuous mode) and returns ring buffers to the pool. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
    this.frames = null;
  }

  /** Closes the socket and returns the ring's buffers (on close or link loss). */
  private release(): void {
    if (this.io.closed) return;
    this.kernelDrops();
    this.io.close();
  }

  private kernelDrops(): number {
    if (!this.io.closed) this.counts.kernelDrops = this.addon.packetKernelDrops(this.handle);
    return this.counts.kernelDrops;
  }

  private readonly onBatch = (count: number, errno: number): number => {
    // Frames counted by the addon (truncated) or not ours are not delivered; their slots stay in the ring.
    const n = this.io.rx.takeBatch(count, META_FLAGS_WORD, META_SKIP, false);
    if (n > 0) this.frames?.(this.io.rx.out, n);
    if (errno !== 0) {
      this.fail(errno);
      return 0;
    }
    return this.io.rearm();
  };

  /** The addon stopped reading for good: learn the socket's real error, release everything, tell the owner once. */
  private fail(errno: number): void {
    if (this.io.closed) return;
    let e = errno;
    if (e === osConstants.errno.EBADF) e = this.addon.packetTakeError(this.handle) || e; // libuv's name for POLLERR
    this.failure = e;
    this.release();
    this.errors?.(e);
  }

  private assertOpen(): void {
    if (this.closed) throw new IoError('ST_IO_CLOSED', `attach port ${this.name} is closed`);
  }
}
