// In-memory hosts for the daemon's unit tests: a config object → tables, static SAs
// (with a sequence store in a scratch folder) and a Dataplane, with fake guest ports and
// a fake wire between two hosts. No devices, no sockets, no root.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PacketBuf } from '../../../src/buf/packet-buf.js';
import { PacketPool } from '../../../src/buf/pool.js';
import { buildTables, installSaPair, planStaticSas } from '../../../src/control/build.js';
import { daemonConfigSchema, type DaemonConfig } from '../../../src/control/config.js';
import { validateConfig } from '../../../src/control/load.js';
import { Logger } from '../../../src/control/log.js';
import { SeqStore } from '../../../src/control/seq-store.js';
import type { Tables } from '../../../src/core/tables.js';
import { emptyIoStats } from '../../../src/io/tap.js';
import { UDP_META_STRIDE, UdpRxMeta, type UdpPacketsCallback } from '../../../src/io/udp.js';
import { Dataplane } from '../../../src/cli/daemon/dataplane.js';
import { PortHandle, type GuestPort } from '../../../src/cli/daemon/ports.js';
import { SaRegistry } from '../../../src/cli/daemon/sas.js';

const scratchDirs: string[] = [];

/** A scratch folder, removed by `removeScratch`. */
export function scratchDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.push(d);
  return d;
}

/** Removes every folder `scratchDir` made (call from afterAll). */
export function removeScratch(): void {
  for (const d of scratchDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export const MAC = {
  aRed: '02:00:00:00:0a:01',
  aRed2: '02:00:00:00:0a:03',
  aBlue: '02:00:00:00:0a:02',
  bRed: '02:00:00:00:0b:01',
  bBlue: '02:00:00:00:0b:02',
};

const KEY = (b: number): string => Buffer.alloc(36, b).toString('hex');

/** Host a or b: domains per side, one peer (the other host) with a static SA pair per label. */
export function hostConfig(side: 'a' | 'b', edit: (c: Record<string, any>) => void = () => {}): DaemonConfig {
  const me = side === 'a' ? 1 : 2;
  const other = side === 'a' ? 2 : 1;
  const spi = (from: number, label: number): string => `0x0000${from}00${label}`;
  const c: Record<string, any> = {
    host: { name: `host-${side}` },
    underlay: { address: `192.0.2.${me}` },
    labels: [
      { name: 'red', vlan: 100 },
      { name: 'blue', vlan: 200 },
    ],
    domains:
      side === 'a'
        ? [
            { name: 'a-red', label: 'red', macs: [MAC.aRed], tap: { name: 'ta1' } },
            { name: 'a-red2', label: 'red', macs: [MAC.aRed2], tap: { name: 'ta3' } },
            { name: 'a-blue', label: 'blue', macs: [MAC.aBlue], tap: { name: 'ta2' } },
          ]
        : [
            { name: 'b-red', label: 'red', macs: [MAC.bRed], tap: { name: 'tb1' } },
            { name: 'b-blue', label: 'blue', macs: [MAC.bBlue], tap: { name: 'tb2' } },
          ],
    peers: [
      {
        name: `host-${side === 'a' ? 'b' : 'a'}`,
        address: `192.0.2.${other}`,
        labels: ['red', 'blue'],
        staticSas: [1, 2].map((l) => ({
          labels: [l === 1 ? 'red' : 'blue'],
          in: { spi: spi(other, l), keymat: KEY(other * 16 + l) },
          out: { spi: spi(me, l), keymat: KEY(me * 16 + l) },
        })),
      },
    ],
  };
  edit(c);
  return validateConfig(c, daemonConfigSchema, `${side}.json`);
}

/** A guest port that records what is written to it; `inject` plays frames read from the guest. */
export class FakePort implements GuestPort {
  readonly written: Uint8Array[] = [];
  /** Frames per writeBatch call. */
  readonly batches: number[] = [];
  closed = false;
  private cb: ((bufs: PacketBuf[], count: number) => void) | null = null;
  constructor(
    readonly name: string,
    readonly pool: PacketPool,
  ) {}
  onFrames(cb: (bufs: PacketBuf[], count: number) => void): void {
    this.cb = cb;
  }
  onError(): void {}
  writeBatch(bufs: readonly PacketBuf[], count: number): number {
    this.batches.push(count);
    for (let i = 0; i < count; i++) this.written.push(bufs[i]!.view().slice());
    return count;
  }
  refill(): void {}
  stats() {
    return emptyIoStats();
  }
  close(): void {
    this.closed = true;
  }
  /** Frames from the guest, as one read batch (buffers from the pool, as a TAP delivers them). */
  inject(frames: Uint8Array[]): void {
    const bufs = frames.map((f) => {
      const b = this.pool.get()!;
      b.load(f);
      return b;
    });
    this.cb!(bufs, bufs.length);
  }
}

/** The underlay: what one host sends arrives at the other's transport as UDP payloads. */
export class FakeWire {
  readonly sent: Uint8Array[] = [];
  peer: FakeWire | null = null;
  /** Drop everything instead of delivering (to look at what was sent). */
  cut = false;
  private cb: UdpPacketsCallback | null = null;
  private readonly meta = new UdpRxMeta(new Int32Array(256 * UDP_META_STRIDE));
  readonly family = 4 as const;
  readonly address = '192.0.2.1';
  constructor(readonly pool: PacketPool) {}
  setPeer(): void {}
  clearPeer(): void {}
  sendBatch(bufs: readonly PacketBuf[], _peers: ArrayLike<number>, count: number): number {
    const packets = Array.from({ length: count }, (_, i) => bufs[i]!.view().slice());
    this.sent.push(...packets);
    if (!this.cut) this.peer?.receive(packets);
    return count;
  }
  receive(packets: Uint8Array[]): void {
    const bufs = packets.map((p) => {
      const b = this.pool.get()!;
      b.load(p);
      return b;
    });
    this.cb?.(bufs, bufs.length, this.meta);
  }
  onPackets(cb: UdpPacketsCallback): void {
    this.cb = cb;
  }
  onError(): void {}
  refill(): void {}
  stats() {
    return emptyIoStats();
  }
  close(): void {}
}

export interface MemHost {
  cfg: DaemonConfig;
  pool: PacketPool;
  tables: Tables;
  sas: SaRegistry;
  dp: Dataplane;
  wire: FakeWire;
  ports: Map<string, FakePort>;
  handles: Map<string, PortHandle>;
  logLines: string[];
}

/** A host in memory: tables, SAs, a Dataplane over fake ports and a fake wire. */
export function memHost(cfg: DaemonConfig, o: { beforeSend?: (n: number) => boolean; underlayMtu?: number; poolPackets?: number } = {}): MemHost {
  const pool = new PacketPool({ packets: o.poolPackets ?? 256 });
  const logLines: string[] = [];
  const log = new Logger({ stream: { write: (t: string) => logLines.push(t) } });
  const store = SeqStore.open(scratchDir('st-dp-'));
  const sas = new SaRegistry(store, undefined, log);
  const tables = buildTables(cfg, { staticSas: true });
  const { changes, commit } = sas.prepare(planStaticSas(cfg, true), 0);
  commit();
  for (const p of changes.pairs) installSaPair(tables, p.plan, p.inbound, p.outbound);
  const dp = new Dataplane({
    pool,
    tables,
    udpPort: 4500,
    underlayMtu: o.underlayMtu ?? 1500,
    outerHeaderBytes: 28,
    beforeSend: o.beforeSend ?? ((n) => sas.guard(n)),
  });
  const wire = new FakeWire(pool);
  dp.attachTransport(wire, 2);
  const ports = new Map<string, FakePort>();
  const handles = new Map<string, PortHandle>();
  const portOf: PortHandle[] = [];
  cfg.domains.forEach((d, i) => {
    const port = new FakePort(d.tap!.name, pool);
    const h = new PortHandle({ kind: 'tap', name: d.tap!.name, create: false }, port, tables.domains.idOf(d.name), `domains[${i}]`);
    ports.set(d.name, port);
    handles.set(d.name, h);
    portOf[h.domainId] = h;
    dp.attachPort(h);
  });
  dp.swap(tables, portOf);
  return { cfg, pool, tables, sas, dp, wire, ports, handles, logLines };
}

/** Connects two hosts' wires both ways. */
export function connect(a: MemHost, b: MemHost): void {
  a.wire.peer = b.wire;
  b.wire.peer = a.wire;
}

function macBytes(text: string): number[] {
  return text.split(':').map((h) => parseInt(h, 16));
}

/** An untagged IPv4 guest frame dst ← src of `payloadBytes` after the Ethernet header. */
export function frame(dst: string, src: string, payloadBytes = 64, seed = 5): Uint8Array {
  const f = new Uint8Array(14 + payloadBytes);
  f.set([...macBytes(dst), ...macBytes(src), 0x08, 0x00]);
  for (let i = 0; i < payloadBytes; i++) f[14 + i] = (i * 13 + seed) & 0xff;
  return f;
}
