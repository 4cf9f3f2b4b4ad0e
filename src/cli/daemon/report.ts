/**
 * What the daemon shows: the `status` report (control/status-report.ts) and the
 * Prometheus snapshot (control/metrics.ts), both read from the live state —
 * the tables' counters, the SAs, the ports, the pool, the audit log.
 * Control path: called per request or scrape, allocates freely.
 */
import type { PacketPool } from '../../buf/pool.js';
import type { MtuPlan } from '../../control/build.js';
import type { AuditLog } from '../../control/audit-log.js';
import type { DaemonConfig } from '../../control/config.js';
import type { MetricSample, MetricsSnapshot } from '../../control/metrics.js';
import { effectiveGreKey } from '../../control/replay-config.js';
import { STATUS_REPORT_VERSION, tapOffloadDrops, type AttachmentStatus, type SaStatus, type StatusReport } from '../../control/status-report.js';
import type { Auditor } from '../../core/audit.js';
import { DISCARD_REASONS, DROP_REASONS, Reason } from '../../core/reasons.js';
import type { InboundSa, OutboundSa } from '../../core/sa.js';
import type { Tables } from '../../core/tables.js';
import type { Dataplane } from './dataplane.js';
import { TapDevice, type TapOffloadStats } from '../../io/tap.js';
import type { PortHandle } from './ports.js';
import type { Handshakes } from './handshake.js';
import type { SaRegistry } from './sas.js';

/** The version the daemon reports (package.json). */
export const SECTUNNEL_VERSION = '0.1.0';

/** The live state the report and the metrics read. */
export interface DaemonView {
  readonly cfg: DaemonConfig;
  readonly configFile: string;
  readonly startedAtMs: number;
  readonly staticKeys: boolean;
  readonly backend: string;
  readonly transportImpl: string;
  readonly mtu: MtuPlan;
  readonly pool: PacketPool;
  readonly dataplane: Dataplane;
  readonly tables: Tables;
  readonly sas: SaRegistry;
  /** The peer handshake, or null (static keys). */
  readonly handshakes: Handshakes | null;
  /** Ports by domain name. */
  readonly ports: ReadonlyMap<string, PortHandle>;
  readonly auditLog: AuditLog;
  readonly auditor: Auditor;
  /** Runtime attachments (the overlay on the config file). */
  readonly attachments: readonly AttachmentStatus[];
  /** The underlay socket's GSO/GRO counters, or null (raw ESP). */
  underlayOffload(): Record<string, number> | null;
}

/** A domain's TAP offload counters, or null (no TAP offloads on its port). */
function tapOffloadOf(v: DaemonView, domain: string): TapOffloadStats | null {
  const port = v.ports.get(domain)?.port;
  return port instanceof TapDevice && port.offload ? port.offloadStats() : null;
}

function hex8(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

/** Replay-window drops of an inbound SA. */
export function replayDrops(sa: InboundSa): number {
  return sa.drops.counts[Reason.replay_duplicate]! + sa.drops.counts[Reason.replay_too_old]!;
}

function outState(sa: OutboundSa): string {
  return sa.expired ? 'expired' : sa.rekeyDue ? 'soft-expired' : 'active';
}

/** The `status` reply at `nowMs`. */
export function statusReport(v: DaemonView, nowMs: number): StatusReport {
  const { cfg, tables: t } = v;
  const underlayOffload = v.underlayOffload();
  const sas: SaStatus[] = [];
  const sessions = new Map((v.handshakes?.status(nowMs) ?? []).map((x) => [x.peer, x]));
  const inbound = [...v.sas.inboundEntries(), ...(v.handshakes?.inboundEntries() ?? [])];
  const outbound = [...v.sas.outboundEntries(), ...(v.handshakes?.outboundEntries() ?? [])];
  for (const e of inbound) {
    const sa = e.sa;
    sas.push({
      spi: hex8(sa.spi),
      direction: 'in',
      labels: [...sa.labels],
      peer: e.peer,
      algorithm: sa.algorithm,
      ageMs: sa.ageMs(nowMs),
      packets: sa.packets,
      bytes: sa.bytes,
      replayDrops: replayDrops(sa),
      state: sa.destroyed ? 'destroyed' : 'active',
    });
  }
  for (const e of outbound) {
    const sa = e.sa;
    sas.push({
      spi: hex8(sa.spi),
      direction: 'out',
      labels: [...sa.labels],
      peer: e.peer,
      algorithm: sa.algorithm,
      ageMs: sa.ageMs(nowMs),
      packets: sa.packets,
      bytes: sa.bytes,
      state: outState(sa),
    });
  }
  return {
    reportVersion: STATUS_REPORT_VERSION,
    version: SECTUNNEL_VERSION,
    host: cfg.host.name,
    pid: process.pid,
    time: new Date(nowMs).toISOString(),
    startedAt: new Date(v.startedAtMs).toISOString(),
    configFile: v.configFile,
    crypto: { algorithm: cfg.crypto.algorithm, backend: v.backend },
    underlay: {
      address: cfg.underlay.address,
      port: cfg.underlay.transport === 'udp' ? cfg.underlay.port : 0,
      transport: cfg.underlay.transport,
      ...(underlayOffload !== null && { offload: underlayOffload }),
    },
    mtu: { underlayMtu: v.mtu.underlayMtu, overheadBytes: v.mtu.overheadBytes, guestMtu: v.mtu.guestMtu },
    pool: { free: v.pool.available, total: v.pool.capacity },
    peers: cfg.peers.map((p) => {
      const hs = sessions.get(p.name);
      const id = t.peers.findIndex((q) => q.name === p.name);
      let tx = 0;
      let rx = 0;
      for (let l = 0; id >= 0 && l < t.labels.size; l++) {
        tx += t.traffic.txPackets[id * t.labels.size + l]!;
        rx += t.traffic.rxPackets[id * t.labels.size + l]!;
      }
      const base = {
        name: p.name,
        address: p.address,
        ...(cfg.underlay.transport === 'udp' && { port: p.port }),
        labels: [...p.labels],
      };
      if (hs === undefined) return { ...base, state: v.staticKeys && p.staticSas.length > 0 ? 'static' : 'no-keys' };
      return {
        ...base,
        txPackets: tx,
        rxPackets: rx,
        state: hs.established ? 'established' : hs.handshakePending ? 'handshaking' : 'down',
        lastHandshake: hs.lastHandshakeMs === null ? null : new Date(hs.lastHandshakeMs).toISOString(),
        sessionAgeMs: hs.sessionAgeMs,
        nextRekey: hs.nextRekeyMs === null ? null : new Date(hs.nextRekeyMs).toISOString(),
        negotiatedLabels: hs.labels,
        algorithm: hs.algorithm,
        handshakeFailures: { ...hs.failures } as Record<string, number>,
        rekeys: Object.fromEntries(Object.entries(hs.rekeys).filter(([, n]) => n > 0)),
      };
    }),
    sas,
    labels: t.labels.labels.map((l) => ({ name: l.name, vlan: l.vlan, greKey: l.greKey, context: l.context, fdbEntries: t.fdb.size(l.id) })),
    domains: cfg.domains.map((d) => {
      const id = t.domains.idOf(d.name);
      const offload = tapOffloadOf(v, d.name);
      return {
        name: d.name,
        label: d.label,
        interface: d.tap?.name ?? d.attach!.interface,
        kind: d.tap !== undefined ? ('tap' as const) : ('attach' as const),
        macs: [...d.macs],
        framesFromGuest: id >= 0 ? t.traffic.domainIn[id]! : 0,
        framesToGuest: id >= 0 ? t.traffic.domainOut[id]! : 0,
        ...(offload !== null && { offload: { ...offload } }),
      };
    }),
    reasons: t.counters.toJSON(),
    fragmented: v.dataplane.fragmented,
    audit: { path: v.auditLog.path, written: v.auditLog.written, suppressed: v.auditor.limiter.suppressedTotal, lost: v.auditLog.lost },
    ...(v.handshakes !== null && {
      handshake: {
        completed: v.handshakes.host.handshakesCompleted,
        failures: Object.fromEntries(Object.entries(v.handshakes.host.failures).filter(([, n]) => n > 0)),
      },
    }),
    attachments: v.attachments.map((a) => ({ ...a, macs: [...a.macs] })),
  };
}

/** The Prometheus snapshot. */
export function metricsSnapshot(v: DaemonView): MetricsSnapshot {
  const t = v.tables;
  const counts = t.counters.counts;
  const drops: MetricSample<'reason' | 'label' | 'peer'>[] = DROP_REASONS.map((r) => ({ labels: { reason: r }, value: counts[Reason[r]]! }));
  const discards: MetricSample<'reason'>[] = DISCARD_REASONS.map((r) => ({ labels: { reason: r }, value: counts[Reason[r]]! }));
  const packets: MetricSample<'direction' | 'label' | 'peer'>[] = [];
  const bytes: MetricSample<'direction' | 'label' | 'peer'>[] = [];
  const L = t.labels.size;
  for (const p of t.peers) {
    for (const l of t.labels.labels) {
      const i = p.id * L + l.id;
      const labels = { label: l.name, peer: p.name };
      packets.push({ labels: { direction: 'tx', ...labels }, value: t.traffic.txPackets[i]! });
      packets.push({ labels: { direction: 'rx', ...labels }, value: t.traffic.rxPackets[i]! });
      bytes.push({ labels: { direction: 'tx', ...labels }, value: t.traffic.txBytes[i]! });
      bytes.push({ labels: { direction: 'rx', ...labels }, value: t.traffic.rxBytes[i]! });
    }
  }
  const saPackets: MetricSample<'spi' | 'label' | 'peer' | 'direction'>[] = [];
  const replay: MetricSample<'spi'>[] = [];
  for (const e of [...v.sas.inboundEntries(), ...(v.handshakes?.inboundEntries() ?? [])]) {
    const spi = hex8(e.sa.spi);
    saPackets.push({ labels: { spi, label: [...e.sa.labels].join(','), peer: e.peer, direction: 'in' }, value: e.sa.packets });
    replay.push({ labels: { spi }, value: replayDrops(e.sa) });
  }
  for (const e of [...v.sas.outboundEntries(), ...(v.handshakes?.outboundEntries() ?? [])]) {
    saPackets.push({ labels: { spi: hex8(e.sa.spi), label: [...e.sa.labels].join(','), peer: e.peer, direction: 'out' }, value: e.sa.packets });
  }
  return {
    drops,
    discards,
    packets,
    bytes,
    saPackets,
    replayDrops: replay,
    ...tapOffloadMetrics(v),
    fragmented: v.dataplane.fragmented,
    poolFree: v.pool.available,
    fdbEntries: t.labels.labels.map((l) => ({ labels: { label: l.name }, value: t.fdb.size(l.id) })),
    auditWritten: v.auditLog.written,
    auditSuppressed: v.auditor.limiter.suppressedTotal,
    auditLost: v.auditLog.lost,
    info: [{ labels: { version: SECTUNNEL_VERSION, crypto_backend: v.backend }, value: 1 }],
  };
}

/** The TAP offload families: drops by domain and reason, segments by domain and direction. */
function tapOffloadMetrics(v: DaemonView): Pick<MetricsSnapshot, 'tapOffloadDrops' | 'tapOffloadSegments'> {
  const drops: MetricSample<'domain' | 'reason'>[] = [];
  const segments: MetricSample<'domain' | 'direction'>[] = [];
  for (const d of v.cfg.domains) {
    const s = tapOffloadOf(v, d.name);
    if (s === null) continue;
    for (const [reason, n] of tapOffloadDrops(s)) drops.push({ labels: { domain: d.name, reason }, value: n });
    segments.push({ labels: { domain: d.name, direction: 'tx' }, value: s.gsoSegments });
    segments.push({ labels: { domain: d.name, direction: 'rx' }, value: s.groSegments });
  }
  return { tapOffloadDrops: drops, tapOffloadSegments: segments };
}

/** The label names of a config with their wire names, for the start log line. */
export function labelSummary(cfg: DaemonConfig): string[] {
  return cfg.labels.map((l) => {
    const k = effectiveGreKey(l);
    return `${l.name}(vlan ${l.vlan}, ${k === null ? 'no GRE key' : `GRE key 0x${k.toString(16)}`})`;
  });
}
