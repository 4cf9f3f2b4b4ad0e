/**
 * Batched UDP transport: the `UdpTransport` interface, its native
 * implementation (recvmmsg/sendmmsg in native-fallback/src/udp.c) and the
 * choice between it and the node:dgram twin (udp-dgram.ts).
 *
 * Receive, one batch per readable event:
 *   1. recvmmsg into the ring's pool slots (at `rxOffset`), source address,
 *      port and matching peer index in one meta row per datagram,
 *   2. truncated datagrams (larger than a slot) are counted and their slot kept,
 *   3. one callback `cb(bufs, count, meta)`: bufs are the caller's from then on,
 *   4. ring refill from the pool; an empty pool stops the reader (`poolExhausted`).
 * Send: sendBatch(bufs, peers, count) = one addon call; each datagram names a
 * peer index registered with setPeer, so no address crosses per packet.
 *
 * Offloads of the native transport (on unless `offload: false` or the environment
 * has SECTUNNEL_UDP_OFFLOAD=0; `gso` or `gro` there keeps only that one):
 *   - GSO: a run of datagrams to one peer of equal length (the last may be shorter)
 *     leaves as one sendmsg with UDP_SEGMENT, the kernel cutting it back apart;
 *   - GRO: the kernel may hand over several datagrams of one flow as one; the addon
 *     splits them into ring slots again, so receivers still see single datagrams
 *     (pieces that do not fit the ring go first into the next batch).
 * `offloadStats()` tells whether each is in use and counts what they did.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { HEADROOM_BYTES } from '../buf/constants.js';
import type { PacketBuf } from '../buf/packet-buf.js';
import { PacketPool } from '../buf/pool.js';
import { IoError, NativePort, RxRing, batchOption, type IoStats } from './rx-ring.js';
import { ioAddon, requireIoAddon, type IoAddon, type NativeHandle } from './tap.js';

/** Int32 words per meta row (udp.c): len, family, port, flags, peer, 3 reserved, 16 address octets. */
export const UDP_META_STRIDE = 12;
/** Meta flag: the datagram was larger than its slot (never delivered). */
export const UDP_META_TRUNCATED = 1;
/** The meta row word holding the flags. */
const UDP_META_FLAGS_WORD = 3;
/** Highest peer index + 1. */
export const UDP_MAX_PEERS = 65536;

/** Parses an IPv4 or IPv6 literal (an IPv6 zone is ignored) into its octets; null if it is neither. */
export function parseIp(address: string): { family: 4 | 6; bytes: Uint8Array } | null {
  if (isIPv4(address)) return { family: 4, bytes: Uint8Array.from(address.split('.'), Number) };
  const bare = address.replace(/%.*$/, '');
  if (!isIPv6(bare)) return null;
  const bytes = new Uint8Array(16);
  let text = bare;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    bytes.set(Uint8Array.from(v4[1]!.split('.'), Number), 12);
    text = text.slice(0, v4.index) + '0:0';
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const hs = head ? head.split(':') : [];
  const ts = tail ? tail.split(':') : [];
  const groups = tail === null ? hs : [...hs, ...new Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  groups.forEach((g, i) => {
    if (v4 && i >= 6) return;
    const v = parseInt(g, 16);
    bytes[2 * i] = v >> 8;
    bytes[2 * i + 1] = v & 0xff;
  });
  return { family: 6, bytes };
}

/** Formats 4 or 16 address octets at `offset` (RFC 5952 text for IPv6: lower case, longest zero run as ::). */
export function formatIp(bytes: Uint8Array, offset: number, family: 4 | 6): string {
  if (family === 4) return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** The per-datagram rows of a received batch: row i describes bufs[i]. */
export class UdpRxMeta {
  /** The rows' octets: the source address of row i is at addrOffset(i), 4 or 16 octets. */
  readonly addrBytes: Uint8Array;

  constructor(readonly rows: Int32Array) {
    this.addrBytes = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
  }

  /** Address family of the source: 4 or 6. */
  family(i: number): 4 | 6 {
    return this.rows[i * UDP_META_STRIDE + 1] as 4 | 6;
  }

  /** Source UDP port. */
  port(i: number): number {
    return this.rows[i * UDP_META_STRIDE + 2]!;
  }

  /** Index of the peer whose address and port match the source, or -1. */
  peer(i: number): number {
    return this.rows[i * UDP_META_STRIDE + 4]!;
  }

  /** Where the source address starts in `addrBytes`. */
  addrOffset(i: number): number {
    return i * UDP_META_STRIDE * 4 + 32;
  }

  /** The source address as text (allocates: for logs and control paths). */
  address(i: number): string {
    return formatIp(this.addrBytes, this.addrOffset(i), this.family(i));
  }
}

/** Receives each batch once: bufs[0..count) are the callee's (back to the pool when done); arrays are reused. */
export type UdpPacketsCallback = (bufs: PacketBuf[], count: number, meta: UdpRxMeta) => void;

/**
 * The receive side of the transports that get one datagram per event and copy it
 * (node:dgram, raw ESP): a pool slot per datagram at `rxOffset` with its meta row,
 * delivered in batches when full or on the next setImmediate. A datagram larger
 * than a slot counts in rxTruncated, one that finds no free slot in poolExhausted.
 */
export class CopyRxBatch {
  readonly rows: Int32Array;
  readonly meta: UdpRxMeta;
  private readonly out: PacketBuf[];
  /** Datagrams waiting for delivery (out[0..pending)). */
  private pending = 0;
  private scheduled = false;

  constructor(
    readonly pool: PacketPool,
    private readonly batchPackets: number,
    readonly rxOffset: number,
    private readonly counters: IoStats,
    private readonly deliver: (bufs: PacketBuf[], count: number, meta: UdpRxMeta) => void,
  ) {
    this.rows = new Int32Array(batchPackets * UDP_META_STRIDE);
    this.meta = new UdpRxMeta(this.rows);
    this.out = new Array<PacketBuf>(batchPackets);
  }

  /** A pool slot for a datagram of `len` octets, or null (counted: larger than a slot, or no free slot). */
  slot(len: number): PacketBuf | null {
    if (len > this.pool.slotBytes - this.rxOffset) {
      this.counters.rxTruncated++;
      return null;
    }
    const b = this.pool.get();
    if (b === null) this.counters.poolExhausted++;
    return b;
  }

  /** The index of the next datagram's meta row, zeroed (its address goes at meta.addrOffset(i)). */
  nextRow(): number {
    const i = this.pending;
    this.rows.fill(0, i * UDP_META_STRIDE, (i + 1) * UDP_META_STRIDE);
    return i;
  }

  /** Queues b, holding a datagram of `len` octets and described by the row nextRow() gave; delivers when the batch is full. */
  push(b: PacketBuf, len: number): void {
    this.out[this.pending++] = b;
    this.counters.rxPackets++;
    this.counters.rxBytes += len;
    if (this.pending === this.batchPackets) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Returns the undelivered buffers to the pool; nothing more is delivered (on close). */
  release(): void {
    for (let i = 0; i < this.pending; i++) this.pool.put(this.out[i]!);
    this.pending = 0;
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const n = this.pending;
    if (n === 0) return;
    this.pending = 0;
    this.counters.rxBatches++;
    this.deliver(this.out, n, this.meta);
  };
}

export interface UdpBindOptions {
  /** Local address (default: 0.0.0.0 or ::). */
  address?: string;
  /** Local port; 0 or absent picks a free one (see `port`). */
  port?: number;
  /** 4 or 6 (default: the address's family, else 4). IPv6 sockets are IPv6-only. */
  family?: 4 | 6;
  /** Pool for received datagrams and the slab sends come from (default: a new pool). */
  pool?: PacketPool;
  /** Datagrams per receive batch, also the pool slots the ring holds (default 64). */
  batchPackets?: number;
  /** Where a received datagram starts in its slot (default HEADROOM_BYTES). */
  rxOffset?: number;
  /** Socket buffer sizes asked for (best effort; default 4 MiB each). */
  rcvbufBytes?: number;
  sndbufBytes?: number;
  /** 'native' (recvmmsg/sendmmsg), 'dgram' (node:dgram), or absent: native when the addon is loaded. */
  impl?: 'native' | 'dgram';
  /**
   * UDP GSO on send and GRO on receive (native only; default: on, unless the environment
   * variable SECTUNNEL_UDP_OFFLOAD is `0`, or `gso` / `gro` for only that one).
   */
  offload?: boolean | { gso: boolean; gro: boolean };
}

/** What the UDP offloads do (all 0 for the dgram transport). */
export interface UdpOffloadStats {
  /** 1 while GSO sends are used (0: not asked for, not supported, or turned off after a refusal). */
  gso: number;
  /** 1 while the socket receives coalesced (GRO) datagrams. */
  gro: number;
  /** Messages sent with UDP_SEGMENT, and the datagrams they carried. */
  gsoSends: number;
  gsoSegments: number;
  /** Runs the kernel refused, sent again datagram by datagram. */
  gsoFallbacks: number;
  /** errno of the latest refusal (of the one that turned GSO off, when it is off). */
  gsoErrno: number;
  /** Coalesced datagrams received, and the datagrams they were split into. */
  groDatagrams: number;
  groSegments: number;
  /** Batches that ended with pieces of a coalesced datagram left over (full ring): they go first into the next. */
  groCarried: number;
}

/** Counter names, in the order of udp.c's udpOffloadStats slots (UO_GSO…). */
const OFFLOAD_STAT_NAMES = [
  'gso',
  'gro',
  'gsoSends',
  'gsoSegments',
  'gsoFallbacks',
  'gsoErrno',
  'groDatagrams',
  'groSegments',
  'groCarried',
] as const satisfies readonly (keyof UdpOffloadStats)[];

/** All-zero offload counters. */
export function emptyOffloadStats(): UdpOffloadStats {
  const s = {} as UdpOffloadStats;
  for (const n of OFFLOAD_STAT_NAMES) s[n] = 0;
  return s;
}

/** The offloads asked for: the option, else SECTUNNEL_UDP_OFFLOAD (`0` off, `gso`/`gro` one of them, else both). */
export function offloadOption(o: UdpBindOptions['offload'], env: string | undefined = process.env.SECTUNNEL_UDP_OFFLOAD): { gso: boolean; gro: boolean } {
  if (typeof o === 'boolean') return { gso: o, gro: o };
  if (o !== undefined) return { gso: o.gso, gro: o.gro };
  const v = (env ?? '').trim().toLowerCase();
  if (v === '0' || v === 'off' || v === 'false' || v === 'no') return { gso: false, gro: false };
  if (v === 'gso' || v === 'gro') return { gso: v === 'gso', gro: v === 'gro' };
  return { gso: true, gro: true };
}

/** The addon functions of udp.c beyond the IoAddon declaration in tap.ts. */
interface UdpAddon {
  udpOpen(
    family: 4 | 6,
    address: string,
    port: number,
    rcvbufBytes: number,
    sndbufBytes: number,
    reuseAddr: boolean,
    offload: number,
  ): { handle: NativeHandle; family: 4 | 6; address: string; port: number };
  udpOffloadStats?(h: NativeHandle, out: Float64Array): void;
}

/** A bound UDP socket moving batches of PacketBufs. Native and dgram implementations behave the same. */
export interface UdpTransport {
  readonly impl: 'native' | 'dgram';
  readonly family: 4 | 6;
  /** Bound local address and port. */
  readonly address: string;
  readonly port: number;
  readonly pool: PacketPool;
  /** Registers (or replaces) peer `index` (0..65535); received datagrams from it carry that index. */
  setPeer(index: number, address: string, port: number): void;
  /** Forgets peer `index`; sends naming it count as errors. */
  clearPeer(index: number): void;
  /** Sends bufs[i] (live octets) to peer peers[i] for i < count; returns datagrams handed to the kernel. */
  sendBatch(bufs: readonly PacketBuf[], peers: ArrayLike<number>, count: number): number;
  /** Starts receiving. */
  onPackets(cb: UdpPacketsCallback): void;
  /** Called with the errno of a receive error that stopped reading. */
  onError(cb: (errno: number) => void): void;
  /** Re-arms a reader stopped by pool exhaustion now. */
  refill(): void;
  /** Counters (poolExhausted: native = reader stalls, dgram = datagrams dropped for lack of a buffer). */
  stats(): IoStats;
  /** What GSO and GRO do on this socket. */
  offloadStats(): UdpOffloadStats;
  /** Closes the socket and returns ring buffers to the pool. Idempotent. */
  close(): void;
}

/** Resolved bind options shared by both implementations. */
export interface ResolvedUdpOptions {
  family: 4 | 6;
  address: string;
  port: number;
  pool: PacketPool;
  batchPackets: number;
  rxOffset: number;
  rcvbufBytes: number;
  sndbufBytes: number;
  offload: { gso: boolean; gro: boolean };
}

/** Validates bind options and fills in defaults; throws IoError(ST_IO_OPTION). */
export function resolveUdpOptions(opts: UdpBindOptions): ResolvedUdpOptions {
  const parsed = opts.address !== undefined ? parseIp(opts.address) : null;
  if (opts.address !== undefined && parsed === null) throw new IoError('ST_IO_OPTION', `UDP bind address: not an IP address: ${opts.address}`);
  const family = opts.family ?? parsed?.family ?? 4;
  if (family !== 4 && family !== 6) throw new IoError('ST_IO_OPTION', `UDP bind family: must be 4 or 6, got ${String(family)}`);
  if (parsed && parsed.family !== family) throw new IoError('ST_IO_OPTION', `UDP bind address ${opts.address} is not IPv${family}`);
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new IoError('ST_IO_OPTION', `UDP bind port: must be 0..65535, got ${port}`);
  return {
    family,
    address: opts.address ?? (family === 4 ? '0.0.0.0' : '::'),
    port,
    pool: opts.pool ?? new PacketPool(),
    batchPackets: batchOption('UDP batchPackets', opts.batchPackets, 64),
    rxOffset: opts.rxOffset ?? HEADROOM_BYTES,
    rcvbufBytes: opts.rcvbufBytes ?? 4 << 20,
    sndbufBytes: opts.sndbufBytes ?? 4 << 20,
    offload: offloadOption(opts.offload),
  };
}

/** Checks a peer index and address for setPeer; returns the parsed address. Throws IoError(ST_IO_OPTION). */
export function checkPeer(family: 4 | 6, index: number, address: string, port: number): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= UDP_MAX_PEERS) {
    throw new IoError('ST_IO_OPTION', `UDP peer index: must be 0..${UDP_MAX_PEERS - 1}, got ${index}`);
  }
  const p = parseIp(address);
  if (!p || p.family !== family) throw new IoError('ST_IO_OPTION', `UDP peer ${index} address: not an IPv${family} address: ${address}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new IoError('ST_IO_OPTION', `UDP peer ${index} port: must be 1..65535, got ${port}`);
  return p.bytes;
}

/** Binds a UDP transport: native when the addon is loaded (or impl: 'native'), else node:dgram. */
export const UdpTransport = {
  async bind(opts: UdpBindOptions = {}): Promise<UdpTransport> {
    const impl = opts.impl ?? (ioAddon() ? 'native' : 'dgram');
    if (impl === 'native') return NativeUdpTransport.bind(opts);
    const { DgramUdpTransport } = await import('./udp-dgram.js');
    return DgramUdpTransport.bind(opts);
  },
};

/** UdpTransport over the addon's recvmmsg/sendmmsg. */
export class NativeUdpTransport implements UdpTransport {
  readonly impl = 'native';
  private readonly io: NativePort;
  private readonly meta: UdpRxMeta;
  private packets: UdpPacketsCallback | null = null;
  private errors: ((errno: number) => void) | null = null;

  private constructor(
    private readonly addon: IoAddon,
    private readonly handle: NativeHandle,
    readonly family: 4 | 6,
    readonly address: string,
    readonly port: number,
    o: ResolvedUdpOptions,
  ) {
    this.pool = o.pool;
    const rx = new RxRing(o.pool, o.batchPackets, UDP_META_STRIDE, o.rxOffset, o.pool.slotBytes - o.rxOffset);
    this.io = new NativePort(addon, handle, rx, 3);
    this.meta = new UdpRxMeta(rx.meta);
  }

  readonly pool: PacketPool;

  /** Opens and binds a socket (SO_REUSEADDR, non-blocking); throws IoError or ST_NATIVE_ERRNO. */
  static async bind(opts: UdpBindOptions = {}): Promise<NativeUdpTransport> {
    const addon = requireIoAddon('NativeUdpTransport.bind');
    const o = resolveUdpOptions(opts);
    const bits = (o.offload.gso ? 1 : 0) | (o.offload.gro ? 2 : 0);
    const s = (addon as unknown as UdpAddon).udpOpen(o.family, o.address, o.port, o.rcvbufBytes, o.sndbufBytes, true, bits);
    return new NativeUdpTransport(addon, s.handle, s.family, s.address, s.port, o);
  }

  setPeer(index: number, address: string, port: number): void {
    this.assertOpen();
    this.addon.udpSetPeer(this.handle, index, this.family, checkPeer(this.family, index, address, port), port);
  }

  clearPeer(index: number): void {
    this.assertOpen();
    this.addon.udpClearPeer(this.handle, index);
  }

  sendBatch(bufs: readonly PacketBuf[], peers: ArrayLike<number>, count: number): number {
    if (this.io.closed) return 0;
    const m = this.io.describe(bufs, count, peers);
    return m === 0 ? 0 : this.addon.udpSend(this.handle, this.pool.slab, this.io.sendDesc, m);
  }

  onPackets(cb: UdpPacketsCallback): void {
    this.assertOpen();
    const first = this.packets === null;
    this.packets = cb;
    if (!first) return;
    this.io.start(this.onBatch);
  }

  onError(cb: (errno: number) => void): void {
    this.errors = cb;
  }

  refill(): void {
    this.io.refill();
  }

  stats(): IoStats {
    return this.io.stats();
  }

  offloadStats(): UdpOffloadStats {
    const read = (this.addon as unknown as UdpAddon).udpOffloadStats;
    const s = emptyOffloadStats();
    if (read === undefined || this.io.closed) return s;
    const raw = new Float64Array(OFFLOAD_STAT_NAMES.length);
    read(this.handle, raw);
    OFFLOAD_STAT_NAMES.forEach((n, i) => (s[n] = raw[i]!));
    return s;
  }

  close(): void {
    if (this.io.closed) return;
    this.io.close();
    this.packets = null;
  }

  private readonly onBatch = (count: number, errno: number): number => {
    // Truncated datagrams are not delivered (the addon counted them; their slots stay in the ring).
    const n = this.io.rx.takeBatch(count, UDP_META_FLAGS_WORD, UDP_META_TRUNCATED, true);
    if (n > 0) this.packets?.(this.io.rx.out, n, this.meta);
    if (errno !== 0) {
      this.errors?.(errno); // the addon stopped reading for good; the ring stays idle until close()
      return 0;
    }
    return this.io.rearm();
  };

  private assertOpen(): void {
    if (this.io.closed) throw new IoError('ST_IO_CLOSED', `UDP socket ${this.address}:${this.port} is closed`);
  }
}
