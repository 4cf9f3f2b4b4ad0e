// Isolation property: whatever host A sends — honest or hostile — host B delivers a frame
// only to a domain whose label is the label the frame arrived under (the SA's and the
// frame's, which must agree), or one an explicit allow rule admits. Every refused attempt
// is counted by reason and audited. Random topologies and frames, seeded.
import { describe, expect, it } from 'vitest';
import { rng as mulberry32 } from '../helpers/hex.js';
import { PacketPool } from '../../src/buf/pool.js';
import { Actions } from '../../src/core/actions.js';
import { Auditor, type AuditRecord } from '../../src/core/audit.js';
import { DecapInput, DecapPipeline } from '../../src/core/decap.js';
import { EncapPipeline } from '../../src/core/encap.js';
import { DomainTable, LabelTable, type LabelSpec } from '../../src/core/labels.js';
import { Policy } from '../../src/core/policy.js';
import { OK, Reason, REASON_NAMES } from '../../src/core/reasons.js';
import { InboundSa, OutboundSa } from '../../src/core/sa.js';
import { Tables } from '../../src/core/tables.js';
import { craftEsp, gre, keymatFor } from '../conformance/craft.js';

const SEED = Number(process.env.SECTUNNEL_TEST_SEED ?? 20261125);
const T0 = 1_700_000_000_000;

/** Uniform [0, 1) from the shared mulberry32 generator. */
function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

interface World {
  labels: LabelSpec[];
  a: { tables: Tables; encap: EncapPipeline; pool: PacketPool; domains: { name: string; label: string; mac: number[] }[] };
  b: { tables: Tables; decap: DecapPipeline; pool: PacketPool; audit: AuditRecord[]; domains: { name: string; label: string; mac: number[] }[] };
  allow: [string, string][];
  /** B's inbound SA spec per label (the hostile sender knows A's own keys). */
  saOf: Map<string, { spi: number; keymat: Uint8Array }>;
}

function world(r: () => number): World {
  const nLabels = 2 + Math.floor(r() * 4);
  const labels: LabelSpec[] = Array.from({ length: nLabels }, (_, i) => ({
    name: `l${i}`,
    vlan: 10 + i * (r() < 0.3 ? 0 : 1), // some labels share a VLAN (their keys differ)
    greKey: r() < 0.2 ? undefined : 0x1000 + i,
  }));
  // Labels sharing a VLAN need distinct keys: give the shared-VLAN ones explicit keys.
  labels.forEach((l, i) => {
    if (labels.some((m, j) => j !== i && m.vlan === l.vlan)) l.greKey = 0x2000 + i;
  });
  const macs = new Set<string>();
  const mkDomains = (side: string) =>
    Array.from({ length: 2 + Math.floor(r() * 5) }, (_, i) => {
      let mac: number[];
      do mac = [0x02, side === 'a' ? 0xaa : 0xbb, i, Math.floor(r() * 256), Math.floor(r() * 256), Math.floor(r() * 256)];
      while (macs.has(mac.join()));
      macs.add(mac.join());
      return { name: `${side}${i}`, label: labels[Math.floor(r() * nLabels)]!.name, mac };
    });
  const aDomains = mkDomains('a');
  const bDomains = mkDomains('b');
  const allow: [string, string][] = r() < 0.5 && nLabels > 2 ? [[labels[0]!.name, labels[1]!.name]] : [];
  const macText = (m: number[]) => m.map((x) => x.toString(16).padStart(2, '0')).join(':');
  const saOf = new Map<string, { spi: number; keymat: Uint8Array }>();
  labels.forEach((l, i) => saOf.set(l.name, { spi: 0x4000 + i, keymat: keymatFor('aes-gcm-128', 50 + i) }));

  const build = (domains: typeof aDomains, auditSink: AuditRecord[] | null) => {
    const lt = new LabelTable(labels);
    const dt = new DomainTable(domains.map((d) => ({ name: d.name, label: d.label, macs: [macText(d.mac)] })), lt);
    return new Tables({
      labels: lt,
      domains: dt,
      policy: new Policy(lt, allow.map(([from, to]) => ({ from, to }))),
      peers: [{ id: 0, name: 'peer', labelIds: labels.map((_, i) => i) }],
      auditor: auditSink ? new Auditor({ sink: (x) => x.type === 'drop' && auditSink.push(x), ratePerSec: 1e9, burst: 1e9 }) : null,
    });
  };
  const aTables = build(aDomains, null);
  const audit: AuditRecord[] = [];
  const bTables = build(bDomains, audit);
  labels.forEach((l, i) => {
    const s = saOf.get(l.name)!;
    aTables.setOutbound(0, i, new OutboundSa({ spi: s.spi, algorithm: 'aes-gcm-128', keymat: s.keymat.slice(), labels: [l.name], nowMs: T0 }));
    bTables.setInbound(new InboundSa({ spi: s.spi, algorithm: 'aes-gcm-128', keymat: s.keymat.slice(), labels: [l.name], nowMs: T0, replayWindowPackets: 65536 }), 0);
  });
  const aPool = new PacketPool({ packets: 512 });
  const bPool = new PacketPool({ packets: 512 });
  return {
    labels,
    a: { tables: aTables, encap: new EncapPipeline(aTables, aPool), pool: aPool, domains: aDomains },
    b: { tables: bTables, decap: new DecapPipeline(bTables), pool: bPool, audit, domains: bDomains },
    allow,
    saOf,
  };
}

function admitted(w: World, from: string, to: string): boolean {
  return from === to || w.allow.some(([f, t]) => f === from && t === to);
}

/** Runs B's decap over ESP packets; returns deliveries as (domain name, SA label). */
function receive(w: World, packets: Uint8Array[], saLabelOf: (spi: number) => string) {
  const out = new Actions();
  const bufs = packets.map((p) => {
    const b = w.b.pool.get()!;
    b.load(p);
    return b;
  });
  w.b.decap.run(bufs, new Uint8Array(bufs.length).fill(DecapInput.esp), bufs.length, T0, out);
  const got: { domain: string; label: string; viaSa: string }[] = [];
  for (let k = 0; k < out.deliverCount; k++) {
    const d = w.b.tables.domains.get(out.deliverDomain[k]!)!;
    got.push({ domain: d.name, label: w.labels[d.labelId]!.name, viaSa: saLabelOf(out.spi[out.deliverFrom[k]!]!) });
  }
  const verdicts = out.verdict.slice(0, bufs.length);
  for (let k = 0; k < out.releaseCount; k++) w.b.pool.put(out.release[k]!);
  return { got, verdicts };
}

describe('isolation property', () => {
  it(`honest senders: frames reach only domains their label admits (seed ${SEED})`, () => {
    const r = rng(SEED);
    for (let round = 0; round < 40; round++) {
      const w = world(r);
      const frames: Uint8Array[] = [];
      const from: number[] = [];
      for (let n = 0; n < 64; n++) {
        const src = w.a.domains[Math.floor(r() * w.a.domains.length)]!;
        const pick = r();
        const dst = pick < 0.6 ? w.b.domains[Math.floor(r() * w.b.domains.length)]!.mac : pick < 0.8 ? [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] : [0x02, 0xcc, 0, 0, 0, n];
        const f = new Uint8Array(14 + 20 + Math.floor(r() * 100));
        f.set([...dst, ...src.mac, 0x08, 0x00]);
        frames.push(f);
        from.push(w.a.tables.domains.idOf(src.name));
      }
      const out = new Actions();
      const bufs = frames.map((f) => {
        const b = w.a.pool.get()!;
        b.load(f);
        return b;
      });
      w.a.encap.run(bufs, from, bufs.length, T0, out);
      const wire = Array.from({ length: out.sendCount }, (_, k) => out.sendBufs[k]!.view().slice());
      for (let k = 0; k < out.releaseCount; k++) w.a.pool.put(out.release[k]!);
      const spiLabel = (spi: number) => w.labels[spi - 0x4000]!.name;
      const { got } = receive(w, wire, spiLabel);
      for (const g of got) {
        expect(admitted(w, g.viaSa, g.label), `seed ${SEED} round ${round}: ${g.viaSa} frame delivered to ${g.domain} (${g.label})`).toBe(true);
      }
      expect(w.a.pool.available).toBe(512);
      expect(w.b.pool.available).toBe(512);
    }
  });

  it(`hostile sender: other label's SA, rewritten VLAN, swapped GRE key — never delivered across labels (seed ${SEED})`, () => {
    const r = rng(SEED + 1);
    let attempts = 0;
    let refused = 0;
    for (let round = 0; round < 40; round++) {
      const w = world(r);
      const packets: Uint8Array[] = [];
      const claimed: string[] = []; // the SA's label of each packet
      const seqs = new Map<string, number>();
      for (let n = 0; n < 48; n++) {
        // The attacker seals with the SA of label `saLabel` but tags the frame as label `frameLabel`.
        const saLabel = w.labels[Math.floor(r() * w.labels.length)]!;
        const frameLabel = w.labels[Math.floor(r() * w.labels.length)]!;
        const keyFrom = r() < 0.5 ? frameLabel : w.labels[Math.floor(r() * w.labels.length)]!;
        const greKey = keyFrom.greKey === undefined ? keyFrom.vlan << 8 : keyFrom.greKey;
        const dst = w.b.domains[Math.floor(r() * w.b.domains.length)]!;
        const f = new Uint8Array(18 + 40);
        f.set([...dst.mac, 0x02, 0xee, 0, 0, 0, n & 0xff, 0x81, 0x00, (frameLabel.vlan >> 8) & 0xf, frameLabel.vlan & 0xff, 0x08, 0x00]);
        const s = w.saOf.get(saLabel.name)!;
        const seq = (seqs.get(saLabel.name) ?? 0) + 1;
        seqs.set(saLabel.name, seq);
        packets.push(craftEsp({ spi: s.spi, alg: 'aes-gcm-128', keymat: s.keymat, esn: true }, seq, gre(greKey, f)));
        claimed.push(saLabel.name);
        attempts++;
      }
      const spiLabel = (spi: number) => w.labels[spi - 0x4000]!.name;
      const before = w.b.tables.counters.toJSON();
      const { got, verdicts } = receive(w, packets, spiLabel);
      for (const g of got) {
        expect(admitted(w, g.viaSa, g.label), `seed ${SEED + 1} round ${round}: ${g.viaSa} SA delivered to ${g.domain} (${g.label})`).toBe(true);
      }
      // Every refusal is counted by its reason, and label/policy refusals are audited.
      const after = w.b.tables.counters.toJSON();
      const refusedHere = verdicts.filter((v) => v !== OK);
      refused += refusedHere.length;
      for (const name of ['label_mismatch', 'policy_denied', 'gre_unknown_key', 'no_route'] as const) {
        const n = refusedHere.filter((v) => v === Reason[name]).length;
        expect(after[name] - before[name], `${name} counted`).toBe(n);
      }
      const audited = refusedHere.filter((v) => v === Reason.label_mismatch || v === Reason.policy_denied).length;
      expect(w.b.audit.length).toBe(audited);
      for (const v of refusedHere) expect(REASON_NAMES[v]).toBeDefined();
    }
    expect(refused).toBeGreaterThan(attempts / 4);
  });
});
