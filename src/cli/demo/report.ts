/**
 * What the demo shows: live progress lines (✓/✗ per step), the counters it
 * reads from each daemon's `status` report, the audit records the daemons
 * wrote, and the final summary table.
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import type { StatusReport } from '../../control/status-report.js';

// ---------------------------------------------------------------------------------
// Progress

/** Where progress goes (stdout, or stderr with --json). */
export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

/**
 * One line per step. On a terminal a running step shows as `… text` and is
 * rewritten in place with ✓/✗ when it ends; elsewhere only the final line is
 * written. `mute()` stops all output (after Ctrl-C, the teardown speaks).
 */
export class Progress {
  private pending: string | null = null;
  private muted = false;

  constructor(private readonly out: ProgressSink) {}

  /** Shows a running step (terminal only). */
  begin(text: string): void {
    if (this.muted) return;
    this.clearPending();
    if (this.out.isTTY) {
      this.out.write(`  … ${text}`);
      this.pending = text;
    }
  }

  /** Ends the running step as passed. */
  ok(text: string): void {
    this.line(`✓ ${text}`);
  }

  /** Ends the running step as failed. */
  fail(text: string): void {
    this.line(`✗ ${text}`);
  }

  /** A detail line under a step. */
  detail(text: string): void {
    this.line(`    ${text}`);
  }

  /** A plain line. */
  line(text: string): void {
    if (this.muted) return;
    this.clearPending();
    this.out.write(`${text}\n`);
  }

  /** Stops all further output from this object. */
  mute(): void {
    this.clearPending();
    this.muted = true;
  }

  private clearPending(): void {
    if (this.pending === null) return;
    this.pending = null;
    this.out.write('\r\x1b[K');
  }
}

// ---------------------------------------------------------------------------------
// Counters

/** Traffic of one label on one host, from its SAs (out: sealed toward the peer; in: opened from it). */
export interface LabelTraffic {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
}

/** The counters the demo reports for one daemon. */
export interface HostCounters {
  host: string;
  labels: Record<string, LabelTraffic>;
  /** Non-zero drop and discard counters by reason name. */
  reasons: Record<string, number>;
  audit: { written: number; suppressed: number; lost: number };
  fragmented: number;
  /** Frames per guest interface: read from the guest, written to it. */
  domains: Record<string, { label: string; fromGuest: number; toGuest: number }>;
  /** The daemon's guest MTU (no fragmentation), if it reports one. */
  guestMtu: number | null;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Reads the demo's counters out of a `status` report (any section may be missing). */
export function countersOf(report: StatusReport): HostCounters {
  const labels: Record<string, LabelTraffic> = {};
  for (const l of report.labels ?? []) labels[l.name] = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 };
  for (const sa of report.sas ?? []) {
    for (const name of sa.labels ?? []) {
      const t = (labels[name] ??= { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 });
      // An SA of several labels counts once per label: the demo's SAs carry one each.
      if (sa.direction === 'out') {
        t.txPackets += num(sa.packets);
        t.txBytes += num(sa.bytes);
      } else {
        t.rxPackets += num(sa.packets);
        t.rxBytes += num(sa.bytes);
      }
    }
  }
  const reasons: Record<string, number> = {};
  for (const [k, v] of Object.entries(report.reasons ?? {})) if (num(v) !== 0) reasons[k] = num(v);
  const domains: HostCounters['domains'] = {};
  for (const d of report.domains ?? []) domains[d.name] = { label: d.label, fromGuest: num(d.framesFromGuest), toGuest: num(d.framesToGuest) };
  return {
    host: report.host,
    labels,
    reasons,
    audit: { written: num(report.audit?.written), suppressed: num(report.audit?.suppressed), lost: num(report.audit?.lost) },
    fragmented: num(report.fragmented),
    domains,
    guestMtu: typeof report.mtu?.guestMtu === 'number' ? report.mtu.guestMtu : null,
  };
}

/** Reasons whose counter grew from `before` to `after`, with the growth. */
export function reasonDeltas(before: HostCounters, after: HostCounters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.reasons)) {
    const d = v - (before.reasons[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** The label-check denials among `reasons`: policy_denied + label_mismatch. */
export function denials(reasons: Record<string, number>): number {
  return (reasons.policy_denied ?? 0) + (reasons.label_mismatch ?? 0);
}

/** "policy_denied +3, no_route +1", or "none". */
export function formatDeltas(d: Record<string, number>): string {
  const parts = Object.entries(d).map(([k, v]) => `${k} ${v > 0 ? '+' : ''}${v}`);
  return parts.length > 0 ? parts.join(', ') : 'no counter changed';
}

// ---------------------------------------------------------------------------------
// Audit records

/** A denial as the audit log has it (core/audit.ts AuditRecord; only the fields shown). */
export interface AuditDrop {
  type: 'drop';
  time?: string;
  reason: string | null;
  labelFrom: string | null;
  labelTo: string | null;
  domain: string | null;
  peer: string | null;
  spi: string | null;
  srcMac: string | null;
  dstMac: string | null;
  vlan: number | null;
}

/** The JSON lines of `path` from byte `offset` on, and the offset after the last complete line. */
export function readAuditFrom(path: string, offset: number): { records: Record<string, unknown>[]; offset: number } {
  let text: string;
  try {
    text = readFileSync(path).subarray(offset).toString('utf8');
  } catch {
    return { records: [], offset };
  }
  const end = text.lastIndexOf('\n');
  if (end < 0) return { records: [], offset };
  const records: Record<string, unknown>[] = [];
  for (const line of text.slice(0, end).split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (typeof v === 'object' && v !== null) records.push(v as Record<string, unknown>);
    } catch {
      records.push({ type: 'unparsable', line });
    }
  }
  return { records, offset: offset + Buffer.byteLength(text.slice(0, end + 1)) };
}

/** One line for an audit record: `policy_denied red → blue at domain b-blue, from host-a, SPI …, 02:… → 02:…`. */
export function formatAuditRecord(r: Record<string, unknown>): string {
  if (r.type !== 'drop') return JSON.stringify(r);
  const s = (k: string): string => (typeof r[k] === 'string' || typeof r[k] === 'number' ? String(r[k]) : '-');
  return `${s('reason')}: ${s('labelFrom')} → ${s('labelTo')}, domain ${s('domain')}, peer ${s('peer')}, SPI ${s('spi')}, ${s('srcMac')} → ${s('dstMac')}`;
}

// ---------------------------------------------------------------------------------
// Summary table

function fmtBytes(n: number): string {
  if (n < 10_000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** A two-host table: per label packets/bytes each way, drops by reason, audit records, fragments. */
export function summaryTable(hosts: readonly HostCounters[]): string {
  const labelNames = [...new Set(hosts.flatMap((h) => Object.keys(h.labels)))];
  const reasonNames = [...new Set(hosts.flatMap((h) => Object.keys(h.reasons)))].sort();
  const rows: string[][] = [['', ...hosts.map((h) => h.host)]];
  for (const l of labelNames) {
    const t = (h: HostCounters): LabelTraffic => h.labels[l] ?? { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 };
    rows.push([`${l} sent to peer`, ...hosts.map((h) => `${t(h).txPackets} pkts ${fmtBytes(t(h).txBytes)}`)]);
    rows.push([`${l} received from peer`, ...hosts.map((h) => `${t(h).rxPackets} pkts ${fmtBytes(t(h).rxBytes)}`)]);
  }
  if (reasonNames.length === 0) rows.push(['drops', ...hosts.map(() => 'none')]);
  for (const r of reasonNames) rows.push([`drops: ${r}`, ...hosts.map((h) => String(h.reasons[r] ?? 0))]);
  rows.push(['audit records written', ...hosts.map((h) => String(h.audit.written))]);
  if (hosts.some((h) => h.audit.suppressed + h.audit.lost > 0)) {
    rows.push(['audit suppressed/lost', ...hosts.map((h) => `${h.audit.suppressed}/${h.audit.lost}`)]);
  }
  rows.push(['outer packets fragmented', ...hosts.map((h) => String(h.fragmented))]);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const fmt = (r: string[]): string => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   ').trimEnd();
  const rule = widths.map((w) => '─'.repeat(w)).join('   ');
  return [fmt(rows[0]!), rule, ...rows.slice(1).map(fmt)].map((l) => `  ${l}`).join('\n');
}
