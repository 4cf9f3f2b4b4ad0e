import { describe, expect, it } from 'vitest';
import {
  AUDIT_EMIT_RECORD,
  AUDIT_EMIT_SUMMARY,
  AuditConfigError,
  AuditEvent,
  AuditRateLimiter,
  Auditor,
  buildAuditRecord,
  type AuditRecord,
  type AuditSummaryRecord,
} from '../../src/core/audit.js';
import { DomainTable, LabelTable } from '../../src/core/labels.js';
import { Reason } from '../../src/core/reasons.js';

const labels = new LabelTable([
  { name: 'red', vlan: 100, context: 'system_u:system_r:svirt_t:s0:c1,c2' },
  { name: 'audit', vlan: 300, greKey: null },
]);
const domains = new DomainTable([{ name: 'web1', label: 'red', macs: ['52:54:00:00:00:01'], interface: 'vnet0' }], labels);
const T0 = Date.UTC(2024, 5, 11, 12, 0, 0);

// Ethernet header at offset 3: dst 52:54:00:00:00:01, src 52:54:00:00:00:99, 802.1Q.
const FRAME = Uint8Array.from([0xa5, 0xa5, 0xa5, 0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x52, 0x54, 0x00, 0x00, 0x00, 0x99, 0x81, 0x00, 0x01, 0x2c]);

function denial(reason: number): AuditEvent {
  const ev = new AuditEvent();
  ev.reason = reason;
  ev.labelFrom = 1;
  ev.labelTo = 0;
  ev.domain = 0;
  ev.peer = 1;
  ev.spi = 0x1001;
  ev.frame = FRAME;
  ev.ethOffset = 3;
  ev.vlan = 300;
  return ev;
}

describe('buildAuditRecord', () => {
  it('names labels, contexts, domain and peer, formats SPI and MACs, and survives JSON', () => {
    const ev = denial(Reason.policy_denied);
    ev.greKey = 0x12c00;
    const r = buildAuditRecord(T0 + 5, ev, { labels, domains, peerNames: ['host-a', 'host-b (192.0.2.1)'] });
    const want: AuditRecord = {
      type: 'drop',
      time: '2024-06-11T12:00:00.005Z',
      reason: 'policy_denied',
      labelFrom: 'audit',
      labelTo: 'red',
      contextFrom: null,
      contextTo: 'system_u:system_r:svirt_t:s0:c1,c2',
      domain: 'web1',
      peer: 'host-b (192.0.2.1)',
      spi: '0x00001001',
      srcMac: '52:54:00:00:00:99',
      dstMac: '52:54:00:00:00:01',
      vlan: 300,
      greKey: 0x12c00,
    };
    expect(r).toEqual(want);
    expect(JSON.parse(JSON.stringify(r))).toEqual(want);
  });

  it('writes null for everything absent, and ids without a name table as #id', () => {
    const ev = new AuditEvent();
    ev.reason = Reason.label_mismatch;
    ev.peer = 4;
    ev.spi = 0xffffffff;
    expect(buildAuditRecord(0, ev)).toEqual({
      type: 'drop',
      time: '1970-01-01T00:00:00.000Z',
      reason: 'label_mismatch',
      labelFrom: null,
      labelTo: null,
      contextFrom: null,
      contextTo: null,
      domain: null,
      peer: '#4',
      spi: '0xffffffff',
      srcMac: null,
      dstMac: null,
      vlan: null,
      greKey: null,
    });
  });

  it('does not read MACs past the end of the frame', () => {
    const ev = denial(Reason.spoofed_src_mac);
    ev.ethOffset = 10; // dst fits (10..15), src would be 16..21 of a 19-octet buffer
    const r = buildAuditRecord(T0, ev);
    expect(r.dstMac).toBe('54:00:00:00:99:81');
    expect(r.srcMac).toBeNull();
  });

  it('clear() resets a reused event', () => {
    const ev = denial(Reason.policy_denied).clear();
    const r = buildAuditRecord(T0, ev, { labels, domains });
    expect([r.labelFrom, r.labelTo, r.domain, r.peer, r.spi, r.srcMac, r.vlan, r.greKey]).toEqual([null, null, null, null, null, null, null, null]);
  });
});

describe('AuditRateLimiter', () => {
  it('a burst of 10000 denials within 1 s writes at most burst + rate lines, counts the rest, and summarises afterwards', () => {
    const lines: (AuditRecord | AuditSummaryRecord)[] = [];
    const a = new Auditor({ ratePerSec: 10, burst: 20, sink: (r) => lines.push(r), names: { labels, domains } });
    const reasons = [Reason.policy_denied, Reason.label_mismatch];
    let written = 0;
    for (let i = 0; i < 10_000; i++) {
      if (a.record(T0 + i * 0.0999, denial(reasons[i % 10 === 0 ? 1 : 0]!))) written++;
    }
    expect(lines.length).toBeLessThanOrEqual(20 + 10);
    expect(lines.length).toBeGreaterThanOrEqual(20);
    const drops = lines.filter((l) => l.type === 'drop');
    expect(drops.length).toBe(written);
    const l = a.limiter;
    expect(l.emitted).toBe(written);
    expect(l.suppressedTotal).toBe(10_000 - written);

    // Later, emission resumes: a summary comes first, then the record.
    const before = lines.length;
    expect(a.record(T0 + 5000, denial(Reason.policy_denied))).toBe(true);
    const summary = lines[before] as AuditSummaryRecord;
    expect(summary.type).toBe('suppressed');
    expect(lines[before + 1]!.type).toBe('drop');
    const summaries = lines.filter((x): x is AuditSummaryRecord => x.type === 'suppressed');
    const reported = summaries.reduce((n, s) => n + s.suppressed, 0);
    expect(reported).toBe(10_000 - written);
    expect(summary.message).toBe(`${summary.suppressed} records suppressed`);
    expect(summary.time).toBe('2024-06-11T12:00:05.000Z');
    const byReason = summaries.reduce(
      (acc, s) => ({ p: acc.p + (s.byReason.policy_denied ?? 0), m: acc.m + (s.byReason.label_mismatch ?? 0) }),
      { p: 0, m: 0 },
    );
    expect(byReason.p + byReason.m).toBe(reported);
    expect(byReason.m).toBeGreaterThan(0);
    expect(Object.keys(summary.byReason).every((k) => k === 'policy_denied' || k === 'label_mismatch')).toBe(true);
    expect(l.pending).toBe(0);
  });

  it('builds a record only when it is written', () => {
    let lookups = 0;
    const spyLabels = { get: (id: number) => (lookups++, labels.get(id)) } as unknown as LabelTable;
    let sunk = 0;
    const a = new Auditor({ ratePerSec: 1, burst: 3, sink: () => sunk++, names: { labels: spyLabels } });
    for (let i = 0; i < 1000; i++) a.record(T0, denial(Reason.policy_denied));
    expect(sunk).toBe(3);
    expect(lookups).toBe(3 * 2); // labelFrom and labelTo of the three written records
  });

  it('admit returns summary and record bits, and a summary takes a token of its own', () => {
    const l = new AuditRateLimiter({ ratePerSec: 1, burst: 2, summaryIntervalMs: 0 });
    expect(l.admit(0, Reason.policy_denied)).toBe(AUDIT_EMIT_RECORD);
    expect(l.admit(0, Reason.policy_denied)).toBe(AUDIT_EMIT_RECORD);
    expect(l.admit(0, Reason.policy_denied)).toBe(0);
    expect(l.admit(500, Reason.policy_denied)).toBe(0);
    // 1 s later one token: the summary takes it; this record is suppressed too and counted in that summary.
    expect(l.admit(1000, Reason.policy_denied)).toBe(AUDIT_EMIT_SUMMARY);
    expect(l.takeSummary(1000)!.suppressed).toBe(3);
    expect(l.pending).toBe(0);
    expect(l.admit(1000, Reason.policy_denied)).toBe(0);
    expect(l.pending).toBe(1);
    // 2 s later two tokens: summary and record.
    expect(l.admit(3000, Reason.label_mismatch)).toBe(AUDIT_EMIT_SUMMARY | AUDIT_EMIT_RECORD);
    const s = l.takeSummary(3000)!;
    expect(s.suppressed).toBe(1);
    expect(s.message).toBe('1 record suppressed');
    expect(s.since).toBe('1970-01-01T00:00:01.000Z');
    expect(s.byReason).toEqual({ policy_denied: 1 });
    expect(l.takeSummary(3000)).toBeNull();
  });

  it('writes summaries no more often than summaryIntervalMs', () => {
    const l = new AuditRateLimiter({ ratePerSec: 100, burst: 1, summaryIntervalMs: 1000 });
    let summaries = 0;
    for (let t = 0; t < 10_000; t += 1) {
      for (let k = 0; k < 3; k++) {
        if (l.admit(t, Reason.policy_denied) & AUDIT_EMIT_SUMMARY) {
          summaries++;
          l.takeSummary(t);
        }
      }
    }
    expect(summaries).toBeGreaterThanOrEqual(9);
    expect(summaries).toBeLessThanOrEqual(10);
  });

  it('refills at most to burst after a quiet period', () => {
    const l = new AuditRateLimiter({ ratePerSec: 10, burst: 5 });
    for (let i = 0; i < 5; i++) l.admit(0, Reason.policy_denied);
    let emitted = 0;
    for (let i = 0; i < 100; i++) if (l.admit(3_600_000, Reason.policy_denied) & AUDIT_EMIT_RECORD) emitted++;
    expect(emitted).toBe(5);
  });

  it('does not mint tokens when the clock steps back', () => {
    const l = new AuditRateLimiter({ ratePerSec: 1000, burst: 1 });
    expect(l.admit(10_000, Reason.policy_denied)).toBe(AUDIT_EMIT_RECORD);
    let emitted = 0;
    for (let t = 9_999; t > 0; t -= 100) if (l.admit(t, Reason.policy_denied) & AUDIT_EMIT_RECORD) emitted++;
    expect(emitted).toBe(0);
  });

  it('with rate 0 writes the burst and then only counts', () => {
    const l = new AuditRateLimiter({ ratePerSec: 0, burst: 3 });
    let emitted = 0;
    for (let i = 0; i < 100; i++) if (l.admit(i * 1e6, Reason.policy_denied)) emitted++;
    expect(emitted).toBe(3);
    expect(l.suppressedTotal).toBe(97);
  });

  it('rejects bad options', () => {
    expect(() => new AuditRateLimiter({ ratePerSec: -1 })).toThrow(AuditConfigError);
    expect(() => new AuditRateLimiter({ burst: 0 })).toThrow('audit.burst: 0 is not an integer >= 1');
    expect(() => new AuditRateLimiter({ ratePerSec: Number.POSITIVE_INFINITY })).toThrow('audit.ratePerSec: Infinity is not a finite number');
  });
});

describe('Auditor.flush', () => {
  it('writes the owed summary from a timer when no further denial comes, once', () => {
    const lines: (AuditRecord | AuditSummaryRecord)[] = [];
    const a = new Auditor({ ratePerSec: 1, burst: 1, sink: (r) => lines.push(r) });
    a.record(0, denial(Reason.label_mismatch));
    a.record(1, denial(Reason.label_mismatch));
    a.record(2, denial(Reason.policy_denied));
    expect(lines.length).toBe(1);
    expect(a.flush(500)).toBe(false); // no token yet
    expect(a.flush(1500)).toBe(true);
    expect(lines[1]).toMatchObject({ type: 'suppressed', suppressed: 2, byReason: { label_mismatch: 1, policy_denied: 1 } });
    expect(a.flush(5000)).toBe(false);
    expect(lines.length).toBe(2);
  });
});
