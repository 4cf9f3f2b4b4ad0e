/**
 * ESP directly over IP (IP protocol 50, RFC 4303 §2; no UDP encapsulation)
 * through the `raw-socket` package: a raw socket per address family, the
 * kernel builds the outer IP header. A fallback transport: raw-socket reads
 * and writes one datagram per event-loop wakeup and allocates per datagram (a
 * Buffer slice and a source string on receive, a copy on send), which is
 * acceptable here and is why the UDP transport stays the fast path.
 *
 * Receive, one batch per turn of the event loop:
 *   1. raw-socket reads one datagram into its own Buffer and emits it,
 *   2. IPv4: the kernel delivers the IP header too; it is checked (version 4,
 *      IHL ≥ 5 within the datagram, total length, no fragment bits, protocol 50,
 *      destination = the bound address unless bound to 0.0.0.0) and stripped,
 *      the source read from it. IPv6: the kernel delivers the ESP payload alone
 *      (extension headers already processed); the source comes from recvfrom,
 *   3. the ESP packet is copied into a pool slot at `rxOffset` (no free slot:
 *      dropped, counted in `poolExhausted`; larger than the slot: `rxTruncated`)
 *      with a meta row in the UDP transport's layout (port 0),
 *   4. the batch is delivered when full or on the next setImmediate.
 * Send: sendBatch copies each packet into a Buffer queued on raw-socket, which
 * sends one per writable event; at most `sendQueuePackets` wait (more: counted
 * `txDropped`). Counters move when the kernel has taken (or refused) a packet.
 *
 * Fragmentation (both families: the receiving kernel reassembles before a raw
 * socket sees anything, so a whole ESP packet is always delivered):
 *   - IPv4: IP_MTU_DISCOVER = IP_PMTUDISC_DONT, so DF is never set: the sending
 *     kernel fragments a packet larger than the route MTU, and routers on the
 *     path fragment further instead of dropping (RFC 791 §2.3).
 *   - IPv6: routers never fragment (RFC 8200 §5); the sending kernel fragments
 *     (IPV6_DONTFRAG off) to the MTU of the route to the peer. This socket never
 *     lowers that from ICMPv6 Packet Too Big: Linux ignores it for an
 *     unconnected raw socket without IPV6_RECVERR (rawv6_err), raw-socket can
 *     neither connect nor read an error queue, and without the kernel's esp6
 *     module nobody else handles a Packet Too Big about protocol 50. IPV6_MTU
 *     does not help either (a raw socket's datagram within the route MTU leaves
 *     whole). So when the path may be narrower than the first link, give the
 *     route to the peer an `mtu` (`ip -6 route replace PEER via GW mtu 1280`;
 *     1280 always fits); else larger packets are lost at the narrow link.
 *
 * Addresses: raw-socket exposes no bind(), so the source address of sent
 * packets is the kernel's choice for the route (set `src` on the route, or
 * `device`, on a host with several addresses); `address` must be local, and on
 * IPv4 receive drops packets addressed to another local address
 * (`rxOtherDestination`). IPv6 receive cannot see the destination: a socket
 * receives protocol 50 for every local IPv6 address of the namespace. Every raw
 * ESP socket of a namespace gets a copy of every ESP packet (two transports on
 * one host both see them); the kernel's own ESP (xfrm) still gets its copy too.
 *
 * An open transport is kept alive (and keeps the process alive) until close().
 * Needs CAP_NET_RAW.
 */
import { createRequire } from 'node:module';
import { networkInterfaces, constants as osConstants } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import { HEADROOM_BYTES } from '../buf/constants.js';
import type { PacketBuf } from '../buf/packet-buf.js';
import { PacketPool } from '../buf/pool.js';
import { IP_PROTO_ESP, IPV4_HEADER_BYTES } from '../wire/constants.js';
import { IoError, batchOption, checkRxOffset, emptyIoStats, type IoStats } from './rx-ring.js';
import { CopyRxBatch, UDP_MAX_PEERS, UDP_META_STRIDE, formatIp, parseIp, type UdpPacketsCallback, type UdpTransport } from './udp.js';

/** The transport shape the UDP and raw ESP transports share (what the daemon needs of either). */
export type EspTransport = Pick<
  UdpTransport,
  'family' | 'address' | 'pool' | 'setPeer' | 'clearPeer' | 'sendBatch' | 'onPackets' | 'onError' | 'refill' | 'stats' | 'close'
>;

/** Counters of a raw ESP transport: the I/O counters and the IPv4 receive checks. */
export interface RawEspStats extends IoStats {
  /** IPv4 datagrams whose header was malformed or not protocol 50 (dropped). */
  rxNotEsp: number;
  /** IPv4 datagrams addressed to another local address than the bound one (dropped). */
  rxOtherDestination: number;
}

/** Options of RawEspTransport.bind. */
export interface RawEspBindOptions {
  /** Local address (default 0.0.0.0 or ::); must be an address of this host. See the file comment on sources. */
  address?: string;
  /** 4 or 6 (default: the address's family, else 4). */
  family?: 4 | 6;
  /** Pool for received packets and the slab sends come from (default: a new pool). */
  pool?: PacketPool;
  /** Packets per delivered batch at most (default 64). */
  batchPackets?: number;
  /** Where a received ESP packet starts in its slot (default HEADROOM_BYTES). */
  rxOffset?: number;
  /** Socket buffer sizes asked for (best effort; default 4 MiB each). */
  rcvbufBytes?: number;
  sndbufBytes?: number;
  /** Send and receive only through this interface (SO_BINDTODEVICE). */
  device?: string;
  /** Copies waiting in raw-socket's send queue at most; beyond it sends are counted drops (default 1024). */
  sendQueuePackets?: number;
}

/** A control-path failure of the raw socket (creating it, setting an option), with a stable code. */
export class RawEspError extends Error {
  readonly code = 'ST_IO_RAW_SOCKET';
  constructor(message: string) {
    super(message);
    this.name = 'RawEspError';
  }
}

// ---------------------------------------------------------------------------------
// raw-socket, as far as we use it (it ships no types)

interface RawSocket {
  on(event: 'message', cb: (msg: Buffer, source: string) => void): void;
  on(event: 'error', cb: (err: Error) => void): void;
  removeAllListeners(event: string): void;
  send(buf: Buffer, offset: number, length: number, address: string, cb: (err: Error | null, bytes: number) => void): void;
  setOption(level: number, option: number, value: number | Buffer, length?: number): void;
  close(): void;
}

interface RawSocketModule {
  createSocket(opts: { protocol: number; addressFamily: number; bufferSize: number }): RawSocket;
  AddressFamily: { IPv4: number; IPv6: number };
  SocketLevel: { SOL_SOCKET: number; IPPROTO_IP: number; IPPROTO_IPV6: number };
  SocketOption: { SO_RCVBUF: number; SO_SNDBUF: number; SO_BINDTODEVICE?: number };
}

let rawModule: RawSocketModule | null = null;

/**
 * Open sockets, held until close(): raw-socket's socket is a weak native object
 * whose poll handle does not keep it alive, so an open transport nobody
 * references would be collected and its socket closed silently (even with sends queued).
 */
const openSockets = new Set<RawSocket>();

/** Loads raw-socket once; throws IoError(ST_IO_NO_NATIVE) naming why it is missing. */
function loadRawSocket(): RawSocketModule {
  if (rawModule) return rawModule;
  try {
    rawModule = createRequire(import.meta.url)('raw-socket') as RawSocketModule;
  } catch (e) {
    throw new IoError('ST_IO_NO_NATIVE', `RawEspTransport needs the raw-socket package (npm ci builds it): ${(e as Error).message}`);
  }
  return rawModule;
}

// Linux option numbers raw-socket does not name (its setOption takes any number).
const IP_MTU_DISCOVER = 10;
const IP_PMTUDISC_DONT = 0;
const IPV6_DONTFRAG = 62;

/** Receive buffer of raw-socket: the largest IPv4 datagram or IPv6 payload. */
const RAW_RECV_BUFFER_BYTES = 65536;

// ---------------------------------------------------------------------------------
// errno from the strerror text raw-socket and libpcap report

let errnoByMessage: Map<string, number> | null = null;

/** The errno (positive) whose strerror text ends `message` ("send: No buffer space available"), or 0. */
export function errnoFromMessage(message: string): number {
  errnoByMessage ??= new Map([...getSystemErrorMap()].map(([neg, [, text]]) => [text.toLowerCase(), -neg]));
  const text = message.toLowerCase();
  const exact = errnoByMessage.get(text);
  if (exact !== undefined) return exact;
  const colon = text.lastIndexOf(': ');
  return colon >= 0 ? (errnoByMessage.get(text.slice(colon + 2)) ?? 0) : 0;
}

/** True for errnos that mean "queue full or link down": a counted drop, not an error (as tap.c counts them). */
export function isDropErrno(errno: number): boolean {
  const e = osConstants.errno;
  return errno === e.EAGAIN || errno === e.EWOULDBLOCK || errno === e.ENOBUFS || errno === e.ENETDOWN || errno === e.ENXIO || errno === e.EIO;
}

// ---------------------------------------------------------------------------------

/** True if `bytes` is an address of one of this namespace's interfaces. */
function isLocalAddress(family: 4 | 6, bytes: Uint8Array): boolean {
  const want = formatIp(bytes, 0, family);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const p = parseIp(a.address);
      if (p && p.family === family && formatIp(p.bytes, 0, family) === want) return true;
    }
  }
  return false;
}

/** ESP over IP protocol 50 through a raw-socket socket; implements the UdpTransport shape without ports. */
export class RawEspTransport implements EspTransport {
  readonly impl = 'raw-socket';
  /** No port: IP carries ESP directly. Meta rows report port 0. */
  readonly port = 0;
  private closed = false;
  private readonly counters: RawEspStats = { ...emptyIoStats(), rxNotEsp: 0, rxOtherDestination: 0 };
  /** Address text raw-socket sends to, by peer index. */
  private readonly peerText: (string | null)[] = [];
  /** IPv4 source (as a uint32) -> lowest peer index. */
  private readonly peerIndex4 = new Map<number, number>();
  /** IPv6 source in RFC 5952 text -> lowest peer index. */
  private readonly peerIndex6 = new Map<string, number>();
  private readonly slabView: Buffer;
  private readonly rx: CopyRxBatch;
  private inflight = 0;
  private packets: UdpPacketsCallback | null = null;
  private errors: ((errno: number) => void) | null = null;

  private constructor(
    private readonly sock: RawSocket,
    readonly family: 4 | 6,
    readonly address: string,
    /** The bound IPv4 address as a uint32 for the destination check, or -1 for 0.0.0.0 and IPv6. */
    private readonly local4: number,
    readonly pool: PacketPool,
    batchPackets: number,
    rxOffset: number,
    private readonly sendQueuePackets: number,
  ) {
    this.slabView = Buffer.from(pool.slab.buffer, pool.slab.byteOffset, pool.slab.byteLength);
    this.rx = new CopyRxBatch(pool, batchPackets, rxOffset, this.counters, (bufs, n, meta) => this.packets?.(bufs, n, meta));
    sock.on('error', this.onSocketError);
    openSockets.add(sock);
  }

  /**
   * Opens a raw socket for protocol 50 of the family; throws IoError (options, package
   * missing) or RawEspError (socket or option refused: EPERM without CAP_NET_RAW, …).
   * Async only so that it has the signature of UdpTransport.bind.
   */
  static async bind(opts: RawEspBindOptions = {}): Promise<RawEspTransport> {
    const parsed = opts.address !== undefined ? parseIp(opts.address) : null;
    if (opts.address !== undefined && parsed === null) throw new IoError('ST_IO_OPTION', `raw ESP bind address: not an IP address: ${opts.address}`);
    const family = opts.family ?? parsed?.family ?? 4;
    if (family !== 4 && family !== 6) throw new IoError('ST_IO_OPTION', `raw ESP bind family: must be 4 or 6, got ${String(family)}`);
    if (parsed && parsed.family !== family) throw new IoError('ST_IO_OPTION', `raw ESP bind address ${opts.address} is not IPv${family}`);
    const wildcard = !parsed || parsed.bytes.every((x) => x === 0);
    if (!wildcard && !isLocalAddress(family, parsed.bytes)) {
      throw new IoError('ST_IO_OPTION', `raw ESP bind address ${opts.address}: not an address of this host (os.networkInterfaces())`);
    }
    const batchPackets = batchOption('raw ESP batchPackets', opts.batchPackets, 64);
    const pool = opts.pool ?? new PacketPool();
    const rxOffset = opts.rxOffset ?? HEADROOM_BYTES;
    checkRxOffset('raw ESP rxOffset', pool, rxOffset, pool.slotBytes - rxOffset);
    const sendQueuePackets = opts.sendQueuePackets ?? 1024;
    if (!Number.isInteger(sendQueuePackets) || sendQueuePackets < 1) {
      throw new IoError('ST_IO_OPTION', `raw ESP sendQueuePackets: must be a positive integer, got ${sendQueuePackets}`);
    }

    const raw = loadRawSocket();
    let sock: RawSocket;
    try {
      sock = raw.createSocket({
        protocol: IP_PROTO_ESP,
        addressFamily: family === 4 ? raw.AddressFamily.IPv4 : raw.AddressFamily.IPv6,
        bufferSize: RAW_RECV_BUFFER_BYTES,
      });
    } catch (e) {
      throw new RawEspError(`raw ESP socket(AF_INET${family === 6 ? '6' : ''}, SOCK_RAW, 50): ${(e as Error).message} (needs CAP_NET_RAW)`);
    }
    const set = (what: string, level: number, option: number, value: number | Buffer, length?: number): void => {
      try {
        if (length === undefined) sock.setOption(level, option, value);
        else sock.setOption(level, option, value, length);
      } catch (e) {
        sock.close();
        throw new RawEspError(`raw ESP setsockopt ${what}: ${(e as Error).message}`);
      }
    };
    const { SocketLevel: L, SocketOption: O } = raw;
    for (const [option, bytes] of [
      [O.SO_RCVBUF, opts.rcvbufBytes ?? 4 << 20],
      [O.SO_SNDBUF, opts.sndbufBytes ?? 4 << 20],
    ] as const) {
      try {
        sock.setOption(L.SOL_SOCKET, option, bytes);
      } catch {
        // best effort, as in the UDP transports
      }
    }
    if (process.platform === 'linux') {
      if (family === 4) set('IP_MTU_DISCOVER=IP_PMTUDISC_DONT', L.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT);
      else set('IPV6_DONTFRAG=0', L.IPPROTO_IPV6, IPV6_DONTFRAG, 0);
    }
    if (opts.device !== undefined) {
      if (O.SO_BINDTODEVICE === undefined) {
        sock.close();
        throw new IoError('ST_IO_OPTION', `raw ESP device ${opts.device}: SO_BINDTODEVICE is not available on ${process.platform}`);
      }
      const name = Buffer.from(`${opts.device}\0`);
      set(`SO_BINDTODEVICE ${opts.device}`, L.SOL_SOCKET, O.SO_BINDTODEVICE, name, name.length);
    }
    const address = wildcard ? (family === 4 ? '0.0.0.0' : '::') : formatIp(parsed.bytes, 0, family);
    const local4 = family === 4 && !wildcard ? ((parsed.bytes[0]! << 24) | (parsed.bytes[1]! << 16) | (parsed.bytes[2]! << 8) | parsed.bytes[3]!) >>> 0 : -1;
    return new RawEspTransport(sock, family, address, local4, pool, batchPackets, rxOffset, sendQueuePackets);
  }

  /** Registers (or replaces) peer `index` (0..65535); received packets from it carry that index. A port is ignored. */
  setPeer(index: number, address: string, _port?: number): void {
    this.assertOpen();
    if (!Number.isInteger(index) || index < 0 || index >= UDP_MAX_PEERS) {
      throw new IoError('ST_IO_OPTION', `raw ESP peer index: must be 0..${UDP_MAX_PEERS - 1}, got ${index}`);
    }
    const p = parseIp(address);
    if (!p || p.family !== this.family) throw new IoError('ST_IO_OPTION', `raw ESP peer ${index} address: not an IPv${this.family} address: ${address}`);
    const zone = this.family === 6 ? (/%.+$/.exec(address)?.[0] ?? '') : '';
    this.peerText[index] = formatIp(p.bytes, 0, this.family) + zone;
    this.reindex();
  }

  /** Forgets peer `index`; sends naming it count as errors. */
  clearPeer(index: number): void {
    this.assertOpen();
    if (this.peerText[index]) this.peerText[index] = null;
    this.reindex();
  }

  /**
   * Queues a copy of bufs[i] (live octets) to peer peers[i] for i < count; returns how
   * many were queued. Unknown peers and buffers of another slab count as tx errors.
   */
  sendBatch(bufs: readonly PacketBuf[], peers: ArrayLike<number>, count: number): number {
    if (this.closed) return 0;
    const c = this.counters;
    const slab = this.pool.slab;
    let queued = 0;
    for (let i = 0; i < count; i++) {
      const b = bufs[i]!;
      const to = this.peerText[peers[i]!];
      if (!to || b.bytes.buffer !== slab.buffer) {
        c.txErrors++;
        continue;
      }
      if (this.inflight >= this.sendQueuePackets) {
        c.txDropped++;
        continue;
      }
      const len = b.end - b.start;
      const from = b.bytes.byteOffset - slab.byteOffset + b.start;
      const copy = Buffer.allocUnsafe(len);
      this.slabView.copy(copy, 0, from, from + len);
      this.inflight++;
      this.sock.send(copy, 0, len, to, this.onSent);
      queued++;
    }
    return queued;
  }

  /** Starts receiving; cb(bufs, count, meta) gets each batch once (bufs are the callee's; arrays are reused). */
  onPackets(cb: UdpPacketsCallback): void {
    this.assertOpen();
    const first = this.packets === null;
    this.packets = cb;
    if (first) this.sock.on('message', this.onMessage);
  }

  /** Called with the errno of a socket error (raw-socket closes the socket on a poll error). */
  onError(cb: (errno: number) => void): void {
    this.errors = cb;
  }

  /** Nothing to re-arm: the socket keeps receiving and drops what finds no buffer. */
  refill(): void {}

  /** Counters (poolExhausted: packets dropped for lack of a buffer). */
  stats(): RawEspStats {
    return { ...this.counters };
  }

  /** Closes the socket (the process can then exit) and returns undelivered buffers to the pool. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.removeAllListeners('message');
    this.sock.close();
    openSockets.delete(this.sock);
    this.rx.release();
    this.packets = null;
  }

  private reindex(): void {
    this.peerIndex4.clear();
    this.peerIndex6.clear();
    this.peerText.forEach((text, i) => {
      if (!text) return;
      const p = parseIp(text)!;
      if (this.family === 4) {
        const key = ((p.bytes[0]! << 24) | (p.bytes[1]! << 16) | (p.bytes[2]! << 8) | p.bytes[3]!) >>> 0;
        if (!this.peerIndex4.has(key)) this.peerIndex4.set(key, i);
      } else {
        const key = formatIp(p.bytes, 0, 6);
        if (!this.peerIndex6.has(key)) this.peerIndex6.set(key, i);
      }
    });
  }

  private readonly onSent = (err: Error | null, bytes: number): void => {
    this.inflight--;
    const c = this.counters;
    if (!err) {
      c.txPackets++;
      c.txBytes += bytes;
      return;
    }
    const errno = errnoFromMessage(err.message);
    c.lastErrno = errno;
    if (isDropErrno(errno)) c.txDropped++;
    else c.txErrors++;
  };

  private readonly onSocketError = (err: Error): void => {
    const errno = errnoFromMessage(err.message);
    this.counters.rxErrors++;
    this.counters.lastErrno = errno;
    this.errors?.(errno);
  };

  private readonly onMessage = (msg: Buffer, source: string): void => {
    if (this.closed) return;
    const c = this.counters;
    let start = 0;
    let end = msg.length;
    let key4 = -1;
    if (this.family === 4) {
      // RFC 791 §3.1: version, IHL, total length, flags/fragment offset, protocol, addresses.
      const ihl = end >= IPV4_HEADER_BYTES ? (msg[0]! & 15) * 4 : 0;
      const total = end >= IPV4_HEADER_BYTES ? (msg[2]! << 8) | msg[3]! : 0;
      if (
        end < IPV4_HEADER_BYTES ||
        msg[0]! >> 4 !== 4 ||
        ihl < IPV4_HEADER_BYTES ||
        total < ihl ||
        total > end ||
        ((msg[6]! & 0x3f) | msg[7]!) !== 0 ||
        msg[9] !== IP_PROTO_ESP
      ) {
        c.rxNotEsp++;
        return;
      }
      if (this.local4 >= 0 && ((msg[16]! << 24) | (msg[17]! << 16) | (msg[18]! << 8) | msg[19]!) >>> 0 !== this.local4) {
        c.rxOtherDestination++;
        return;
      }
      key4 = ((msg[12]! << 24) | (msg[13]! << 16) | (msg[14]! << 8) | msg[15]!) >>> 0;
      start = ihl;
      end = total;
    }
    const len = end - start;
    const rx = this.rx;
    const b = rx.slot(len);
    if (b === null) return;
    msg.copy(this.slabView, b.bytes.byteOffset - this.pool.slab.byteOffset + rx.rxOffset, start, end);
    b.start = rx.rxOffset;
    b.end = rx.rxOffset + len;

    const i = rx.nextRow();
    const row = i * UDP_META_STRIDE;
    const rows = rx.rows;
    const addr = rx.meta.addrBytes;
    const at = rx.meta.addrOffset(i);
    rows[row] = len;
    rows[row + 1] = this.family;
    if (this.family === 4) {
      msg.copy(addr, at, 12, 16);
      rows[row + 4] = this.peerIndex4.get(key4) ?? -1;
    } else {
      const src = parseIp(source);
      if (src) addr.set(src.bytes, at);
      rows[row + 4] = src ? (this.peerIndex6.get(formatIp(src.bytes, 0, 6)) ?? -1) : -1;
    }
    rx.push(b, len);
  };

  private assertOpen(): void {
    if (this.closed) throw new IoError('ST_IO_CLOSED', `raw ESP socket ${this.address} is closed`);
  }
}
