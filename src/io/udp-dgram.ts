/**
 * UdpTransport over node:dgram: the slow path used when the native addon is
 * absent. Same interface and meta rows as the native transport; it copies and
 * allocates per datagram (dgram hands out Buffers and queues sends).
 *
 * Receive:
 *   1. each 'message' is copied into a pool slot at `rxOffset` (no free slot:
 *      dropped, counted in `poolExhausted`; larger than the slot: `rxTruncated`),
 *      with a meta row (length, family, port, peer index, address octets),
 *   2. the batch is delivered when it is full or on the next setImmediate.
 * Send: one dgram send per datagram, of a copy (the caller may reuse its buffer at once).
 * No offloads (the `offload` option is ignored; offloadStats() is all zero).
 */
import dgram from 'node:dgram';
import type { PacketBuf } from '../buf/packet-buf.js';
import type { PacketPool } from '../buf/pool.js';
import { IoError, emptyIoStats, type IoStats } from './rx-ring.js';
import {
  CopyRxBatch,
  UDP_META_STRIDE,
  checkPeer,
  emptyOffloadStats,
  formatIp,
  parseIp,
  resolveUdpOptions,
  type UdpBindOptions,
  type UdpOffloadStats,
  type UdpPacketsCallback,
  type UdpTransport,
} from './udp.js';

/** UdpTransport over node:dgram. */
export class DgramUdpTransport implements UdpTransport {
  readonly impl = 'dgram';
  private closed = false;
  private readonly counters = emptyIoStats();
  private readonly peers: ({ address: string; port: number } | null)[] = [];
  /** `address|port` (address in canonical text) -> peer index; the lowest index wins. */
  private readonly peerIndex = new Map<string, number>();
  private readonly rx: CopyRxBatch;
  private packets: UdpPacketsCallback | null = null;
  private errors: ((errno: number) => void) | null = null;

  private constructor(
    private readonly sock: dgram.Socket,
    readonly family: 4 | 6,
    readonly address: string,
    readonly port: number,
    readonly pool: PacketPool,
    batchPackets: number,
    rxOffset: number,
  ) {
    this.rx = new CopyRxBatch(pool, batchPackets, rxOffset, this.counters, (bufs, n, meta) => this.packets?.(bufs, n, meta));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      this.counters.rxErrors++;
      this.counters.lastErrno = -(e.errno ?? 0);
      this.errors?.(-(e.errno ?? 0));
    });
  }

  /** Binds a dgram socket (reuseAddr, IPv6-only for family 6); rejects with the bind error. */
  static async bind(opts: UdpBindOptions = {}): Promise<DgramUdpTransport> {
    const o = resolveUdpOptions(opts);
    const sock = dgram.createSocket({
      type: o.family === 4 ? 'udp4' : 'udp6',
      reuseAddr: true,
      ipv6Only: o.family === 6,
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(o.port, o.address, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    for (const [set, bytes] of [
      [sock.setRecvBufferSize, o.rcvbufBytes],
      [sock.setSendBufferSize, o.sndbufBytes],
    ] as const) {
      try {
        set.call(sock, bytes);
      } catch {
        // best effort, as in the native transport
      }
    }
    const local = sock.address();
    return new DgramUdpTransport(sock, o.family, local.address, local.port, o.pool, o.batchPackets, o.rxOffset);
  }

  setPeer(index: number, address: string, port: number): void {
    this.assertOpen();
    const bytes = checkPeer(this.family, index, address, port);
    this.peers[index] = { address: formatIp(bytes, 0, this.family), port };
    this.reindex();
  }

  clearPeer(index: number): void {
    this.assertOpen();
    if (this.peers[index]) this.peers[index] = null;
    this.reindex();
  }

  sendBatch(bufs: readonly PacketBuf[], peers: ArrayLike<number>, count: number): number {
    if (this.closed) return 0;
    const c = this.counters;
    let sent = 0;
    for (let i = 0; i < count; i++) {
      const b = bufs[i]!;
      const p = this.peers[peers[i]!];
      if (!p || b.bytes.buffer !== this.pool.slab.buffer) {
        c.txErrors++;
        continue;
      }
      this.sock.send(Buffer.from(b.bytes.subarray(b.start, b.end)), p.port, p.address, this.onSent);
      c.txPackets++;
      c.txBytes += b.end - b.start;
      sent++;
    }
    return sent;
  }

  onPackets(cb: UdpPacketsCallback): void {
    this.assertOpen();
    const first = this.packets === null;
    this.packets = cb;
    if (first) this.sock.on('message', this.onMessage);
  }

  onError(cb: (errno: number) => void): void {
    this.errors = cb;
  }

  /** Nothing to re-arm: dgram keeps receiving and drops what finds no buffer. */
  refill(): void {}

  stats(): IoStats {
    return { ...this.counters };
  }

  /** node:dgram has no GSO or GRO: all zero. */
  offloadStats(): UdpOffloadStats {
    return emptyOffloadStats();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.off('message', this.onMessage);
    this.sock.close();
    this.rx.release();
    this.packets = null;
  }

  private reindex(): void {
    this.peerIndex.clear();
    this.peers.forEach((p, i) => {
      const key = p && `${p.address}|${p.port}`;
      if (key && !this.peerIndex.has(key)) this.peerIndex.set(key, i);
    });
  }

  private readonly onSent = (err: Error | null): void => {
    if (!err) return;
    this.counters.txErrors++;
    this.counters.lastErrno = -((err as NodeJS.ErrnoException).errno ?? 0);
  };

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const rx = this.rx;
    const b = rx.slot(msg.length);
    if (b === null) return;
    const src = parseIp(rinfo.address);
    b.load(msg, rx.rxOffset);
    const i = rx.nextRow();
    const row = i * UDP_META_STRIDE;
    rx.rows[row] = msg.length;
    rx.rows[row + 1] = src?.family ?? 0;
    rx.rows[row + 2] = rinfo.port;
    rx.rows[row + 4] = this.peerIndex.get(`${src ? formatIp(src.bytes, 0, src.family) : ''}|${rinfo.port}`) ?? -1;
    if (src) rx.meta.addrBytes.set(src.bytes, rx.meta.addrOffset(i));
    rx.push(b, msg.length);
  };

  private assertOpen(): void {
    if (this.closed) throw new IoError('ST_IO_CLOSED', `UDP socket ${this.address}:${this.port} is closed`);
  }
}
