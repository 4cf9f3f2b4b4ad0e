/**
 * The daemon's dataplane: moves batches between the guest ports, the core
 * pipelines and the underlay transport, all on one packet pool.
 *
 * Send path, per batch a guest port delivers (TAP read or capture):
 *   1. nowMs = Date.now() once; each frame gets its port's current domain id,
 *   2. `beforeSend(count)`: the sequence-number guard (no SA may seal past what
 *      the sequence store has reserved on disk); false → the batch is dropped,
 *   3. EncapPipeline.run → actions,
 *   4. perform: one transport.sendBatch for every send (outer size above the
 *      underlay MTU → counted in `fragmented`: the kernel sends it as fragments),
 *      one writeBatch per destination domain for local deliveries,
 *   5. release: every buffer of out.release goes back to the pool.
 * Receive path, per batch the transport delivers:
 *   1. nowMs once; every packet of the batch is of the transport's input kind,
 *   2. DecapPipeline.run → actions (deliveries only),
 *   3. control plane: each control message (non-ESP marker) is copied out to
 *      `onControl` with its source "addr:port"; each ESP packet dropped for an
 *      unknown SPI from a configured peer's address goes to `onUnknownSpi`,
 *   4. perform: one writeBatch per destination domain,
 *   5. release.
 * `swap()` replaces the tables (a reload) between two batches: both pipelines are
 * rebuilt over the new tables; the reassembler (fragments in flight) is kept.
 */
import type { PacketBuf } from '../../buf/packet-buf.js';
import type { PacketPool } from '../../buf/pool.js';
import { Actions } from '../../core/actions.js';
import { DecapPipeline } from '../../core/decap.js';
import { EncapPipeline } from '../../core/encap.js';
import { Reason } from '../../core/reasons.js';
import { Reassembler } from '../../core/reassembly.js';
import type { Tables } from '../../core/tables.js';
import type { EspTransport } from '../../io/raw-esp.js';
import type { UdpRxMeta } from '../../io/udp.js';
import type { PortHandle } from './ports.js';
import { endpointText } from './transport.js';

/** Largest batch either pipeline runs (port and transport batches are at most 64). */
export const DATAPLANE_MAX_BATCH = 256;

export interface DataplaneOptions {
  pool: PacketPool;
  tables: Tables;
  /** UDP port of ESP-in-UDP (the receive pipeline checks it on IP input only). */
  udpPort: number;
  /** Underlay MTU and the octets the kernel adds in front of each ESP packet (IP + UDP). */
  underlayMtu: number;
  outerHeaderBytes: number;
  /** The sequence guard: may SAs seal `count` more packets each? (see file comment) */
  beforeSend?: (count: number) => boolean;
}

export class Dataplane {
  readonly pool: PacketPool;
  readonly reassembler = new Reassembler();
  /** Encapsulated packets larger than the underlay MTU (sent as outer IP fragments). */
  fragmented = 0;
  /** Guest frames dropped because the sequence guard refused the batch. */
  guardDrops = 0;
  /** Control messages (handshakes) from the underlay, copied out; null: dropped (counted non_esp_marker). */
  onControl: ((payload: Uint8Array, source: string) => void) | null = null;
  /** ESP with an unknown SPI from configured peer `peerIndex` (a peer that may have restarted). */
  onUnknownSpi: ((peerIndex: number) => void) | null = null;
  /** Batches handled per direction. */
  sendBatches = 0;
  receiveBatches = 0;
  private tablesNow: Tables;
  private encap: EncapPipeline;
  private decap: DecapPipeline;
  private readonly encapOut = new Actions();
  private readonly decapOut = new Actions();
  private readonly domainIds = new Int32Array(DATAPLANE_MAX_BATCH);
  private kinds = new Uint8Array(DATAPLANE_MAX_BATCH);
  /** Port of each domain id of the current tables. */
  private portOf: (PortHandle | null)[] = [];
  private transport: EspTransport | null = null;
  private readonly udpPort: number;
  private readonly underlayMtu: number;
  private readonly outerHeaderBytes: number;
  private readonly beforeSend: (count: number) => boolean;
  // Delivery grouping scratch.
  private group: PacketBuf[] = [];
  private groupDone = new Uint8Array(DATAPLANE_MAX_BATCH);

  constructor(o: DataplaneOptions) {
    this.pool = o.pool;
    this.udpPort = o.udpPort;
    this.underlayMtu = o.underlayMtu;
    this.outerHeaderBytes = o.outerHeaderBytes;
    this.beforeSend = o.beforeSend ?? (() => true);
    this.tablesNow = o.tables;
    this.encap = new EncapPipeline(o.tables, o.pool, DATAPLANE_MAX_BATCH);
    this.decap = this.newDecap(o.tables);
  }

  /** The tables the pipelines run on now. */
  get tables(): Tables {
    return this.tablesNow;
  }

  /** Installs new tables and the port of each of their domains (index = domain id). */
  swap(tables: Tables, portOf: (PortHandle | null)[]): void {
    this.tablesNow = tables;
    this.encap = new EncapPipeline(tables, this.pool, DATAPLANE_MAX_BATCH);
    this.decap = this.newDecap(tables);
    this.portOf = portOf;
  }

  /** Replaces the port of one domain of the current tables (a reopened port). */
  setPort(domainId: number, h: PortHandle): void {
    this.portOf[domainId] = h;
  }

  /** Sets the underlay transport and starts receiving from it. */
  attachTransport(t: EspTransport, inputKind: number): void {
    this.transport = t;
    this.kinds.fill(inputKind);
    t.onPackets(this.fromWire);
  }

  /** Starts reading a guest port: its batches enter the send path under its current domain id. */
  attachPort(h: PortHandle): void {
    h.port.onFrames((bufs, count) => this.fromGuest(h, bufs, count));
  }

  /** Send path for one batch of a port (see the file comment). */
  fromGuest(h: PortHandle, bufs: PacketBuf[], count: number): void {
    const d = h.domainId;
    if (d < 0 || count === 0) {
      for (let i = 0; i < count; i++) this.pool.put(bufs[i]!);
      return;
    }
    let off = 0;
    while (off < count) {
      const n = Math.min(count - off, DATAPLANE_MAX_BATCH);
      const batch = off === 0 ? bufs : bufs.slice(off, off + n);
      this.sendBatch(batch, d, n);
      off += n;
    }
  }

  private sendBatch(bufs: PacketBuf[], d: number, n: number): void {
    const t = this.tablesNow;
    if (!this.beforeSend(n)) {
      this.guardDrops += n;
      t.counters.add(Reason.sa_expired, n);
      for (let i = 0; i < n; i++) this.pool.put(bufs[i]!);
      return;
    }
    const nowMs = Date.now();
    const ids = this.domainIds;
    for (let i = 0; i < n; i++) ids[i] = d;
    const out = this.encapOut;
    this.encap.run(bufs, ids, n, nowMs, out);
    this.sendBatches++;
    if (out.sendCount > 0 && this.transport !== null) {
      const limit = this.underlayMtu - this.outerHeaderBytes;
      for (let k = 0; k < out.sendCount; k++) {
        const b = out.sendBufs[k]!;
        if (b.end - b.start > limit) this.fragmented++;
      }
      this.transport.sendBatch(out.sendBufs, out.sendPeer, out.sendCount);
    }
    this.deliver(out);
    this.release(out);
  }

  /** Receive path for one batch of the transport. */
  private readonly fromWire = (bufs: PacketBuf[], count: number, meta: UdpRxMeta): void => {
    let off = 0;
    while (off < count) {
      const n = Math.min(count - off, DATAPLANE_MAX_BATCH);
      const batch = off === 0 ? bufs : bufs.slice(off, off + n);
      const out = this.decapOut;
      this.decap.run(batch, this.kinds, n, Date.now(), out);
      this.receiveBatches++;
      if (this.onControl !== null || this.onUnknownSpi !== null) this.controlPlane(batch, n, off, meta, out);
      this.deliver(out);
      this.release(out);
      off += n;
    }
  };

  /** Receive stage 3 (see the file comment); allocates only for control messages. */
  private controlPlane(batch: PacketBuf[], n: number, off: number, meta: UdpRxMeta, out: Actions): void {
    const d = this.decap;
    if (this.onControl !== null) {
      for (let c = 0; c < d.controlCount; c++) {
        const i = d.controlFrom[c]!;
        const b = batch[i]!;
        const row = off + i;
        this.onControl(b.bytes.slice(b.start, b.end), endpointText(meta.address(row), meta.port(row)));
      }
    }
    if (this.onUnknownSpi !== null) {
      for (let i = 0; i < n; i++) {
        if (out.verdict[i] !== Reason.unknown_spi) continue;
        const p = meta.peer(off + i);
        if (p >= 0) this.onUnknownSpi(p);
      }
    }
  }

  /** One writeBatch per destination domain, in order of first appearance. */
  private deliver(out: Actions): void {
    const n = out.deliverCount;
    if (n === 0) return;
    if (this.groupDone.length < n) this.groupDone = new Uint8Array(n * 2);
    const done = this.groupDone;
    done.fill(0, 0, n);
    const group = this.group;
    for (let k = 0; k < n; k++) {
      if (done[k] === 1) continue;
      const d = out.deliverDomain[k]!;
      let g = 0;
      for (let j = k; j < n; j++) {
        if (done[j] === 0 && out.deliverDomain[j] === d) {
          done[j] = 1;
          group[g++] = out.deliverBufs[j]!;
        }
      }
      const h = d >= 0 ? this.portOf[d] : undefined;
      if (h) h.port.writeBatch(group, g);
    }
  }

  private release(out: Actions): void {
    const pool = this.pool;
    for (let k = 0; k < out.releaseCount; k++) pool.put(out.release[k]!);
  }

  private newDecap(tables: Tables): DecapPipeline {
    return new DecapPipeline(tables, { udpPort: this.udpPort, maxBatch: DATAPLANE_MAX_BATCH, reassembler: this.reassembler });
  }
}
