// The two pipelines end to end in memory: host A's encap feeds host B's decap.
// Labels red (VLAN 100, default key 100<<8) and blue (VLAN 200, key 0xb1ue → 0xb10e).
import { describe, expect, it } from 'vitest';
import { PacketPool } from '../../src/buf/pool.js';
import type { PacketBuf } from '../../src/buf/packet-buf.js';
import { Actions, VERDICT_PENDING } from '../../src/core/actions.js';
import { Auditor, type AuditRecord, type AuditSummaryRecord } from '../../src/core/audit.js';
import { DecapInput, DecapPipeline } from '../../src/core/decap.js';
import { EncapPipeline } from '../../src/core/encap.js';
import { DomainTable, LabelTable } from '../../src/core/labels.js';
import { Policy } from '../../src/core/policy.js';
import { OK, Reason, REASON_NAMES } from '../../src/core/reasons.js';
import { InboundSa, OutboundSa } from '../../src/core/sa.js';
import { Tables } from '../../src/core/tables.js';
import type { AeadAlgorithm } from '../../src/crypto/aead.js';
import { aeadKeymatBytes } from '../../src/crypto/aead.js';
import { EthernetFrame, EthTag } from '../../src/wire/ethernet.js';
import { GrePacket } from '../../src/wire/gre.js';

const T0 = 1_700_000_000_000;
const LABELS = [
  { name: 'red', vlan: 100 },
  { name: 'blue', vlan: 200, greKey: 0xb10e },
  { name: 'audit', vlan: 300, greKey: null },
];
const MAC = {
  aRed: '02:00:00:00:0a:01',
  aRed2: '02:00:00:00:0a:03',
  aBlue: '02:00:00:00:0a:02',
  bRed: '02:00:00:00:0b:01',
  bBlue: '02:00:00:00:0b:02',
  bAudit: '02:00:00:00:0b:03',
};

function key(alg: AeadAlgorithm, seed: number): Uint8Array {
  const k = new Uint8Array(aeadKeymatBytes(alg));
  for (let i = 0; i < k.length; i++) k[i] = (seed * 31 + i * 7) & 0xff;
  return k;
}

interface Host {
  tables: Tables;
  pool: PacketPool;
  encap: EncapPipeline;
  decap: DecapPipeline;
  audit: (AuditRecord | AuditSummaryRecord)[];
}

/** One host: its domains, one peer (id 0) carrying red/blue/audit, SA pairs per label. */
function host(side: 'a' | 'b', alg: AeadAlgorithm, policy: string[] = []): Host {
  const labels = new LabelTable(LABELS);
  const domains =
    side === 'a'
      ? new DomainTable(
          [
            { name: 'a-red', label: 'red', macs: [MAC.aRed] },
            { name: 'a-red2', label: 'red', macs: [MAC.aRed2] },
            { name: 'a-blue', label: 'blue', macs: [MAC.aBlue] },
          ],
          labels,
        )
      : new DomainTable(
          [
            { name: 'b-red', label: 'red', macs: [MAC.bRed] },
            { name: 'b-blue', label: 'blue', macs: [MAC.bBlue] },
            { name: 'b-audit', label: 'audit', macs: [MAC.bAudit] },
          ],
          labels,
        );
  const audit: (AuditRecord | AuditSummaryRecord)[] = [];
  const tables = new Tables({
    labels,
    domains,
    policy: new Policy(labels, policy),
    peers: [{ id: 0, name: side === 'a' ? 'host-b' : 'host-a', labelIds: [0, 1, 2] }],
    auditor: new Auditor({ sink: (r) => audit.push(r), names: { labels, domains } }),
  });
  // SPI 0x1000+label for A→B, 0x2000+label for B→A; key seeds differ per direction and label.
  LABELS.forEach((l, id) => {
    const outSpi = (side === 'a' ? 0x1000 : 0x2000) + id;
    const inSpi = (side === 'a' ? 0x2000 : 0x1000) + id;
    const outSeed = (side === 'a' ? 10 : 20) + id;
    const inSeed = (side === 'a' ? 20 : 10) + id;
    tables.setOutbound(0, id, new OutboundSa({ spi: outSpi, algorithm: alg, keymat: key(alg, outSeed), labels: [l.name], nowMs: T0 }));
    tables.setInbound(new InboundSa({ spi: inSpi, algorithm: alg, keymat: key(alg, inSeed), labels: [l.name], nowMs: T0 }), 0);
  });
  const pool = new PacketPool({ packets: 256 });
  return { tables, pool, encap: new EncapPipeline(tables, pool), decap: new DecapPipeline(tables), audit };
}

function mac(text: string): number[] {
  return text.split(':').map((h) => parseInt(h, 16));
}

/** An untagged IPv4/UDP guest frame dst ← src with a recognisable payload. */
function frame(dst: string, src: string, payloadBytes = 64, tag?: number): Uint8Array {
  const hdr = [...mac(dst), ...mac(src), ...(tag !== undefined ? [0x81, 0x00, tag >> 8, tag & 0xff] : []), 0x08, 0x00];
  const f = new Uint8Array(hdr.length + payloadBytes);
  f.set(hdr);
  for (let i = 0; i < payloadBytes; i++) f[hdr.length + i] = (i * 13 + 5) & 0xff;
  return f;
}

function load(pool: PacketPool, bytes: Uint8Array): PacketBuf {
  const b = pool.get()!;
  expect(b.load(bytes)).toBe(true);
  return b;
}

/** Encap on A of frames from domain `from`; returns the actions (buffers still owned). */
function send(a: Host, from: string, frames: Uint8Array[], out = new Actions()): Actions {
  const d = a.tables.domains.idOf(from);
  const bufs = frames.map((f) => load(a.pool, f));
  a.encap.run(bufs, new Int32Array(bufs.length).fill(d), bufs.length, T0, out);
  return out;
}

/** The wire: copies each sent ESP packet into B's pool and runs B's decap. */
function receive(b: Host, packets: Uint8Array[], out = new Actions()): Actions {
  const bufs = packets.map((p) => load(b.pool, p));
  b.decap.run(bufs, new Uint8Array(bufs.length).fill(DecapInput.esp), bufs.length, T0, out);
  return out;
}

function sentPackets(out: Actions): Uint8Array[] {
  return Array.from({ length: out.sendCount }, (_, k) => out.sendBufs[k]!.view().slice());
}

function delivered(out: Actions, tables: Tables): { domain: string; bytes: Uint8Array }[] {
  return Array.from({ length: out.deliverCount }, (_, k) => ({
    domain: tables.domains.get(out.deliverDomain[k]!)?.name ?? `label:${out.deliverLabel[k]}`,
    bytes: out.deliverBufs[k]!.view().slice(),
  }));
}

function names(codes: number[]): string[] {
  return codes.map((c) => (c === VERDICT_PENDING ? 'pending' : REASON_NAMES[c]!));
}

function release(h: Host, out: Actions): void {
  for (let k = 0; k < out.releaseCount; k++) h.pool.put(out.release[k]!);
}

describe.each(['aes-gcm-256', 'aes-gcm-128', 'chacha20-poly1305'] as AeadAlgorithm[])('pipeline %s', (alg) => {
  it('carries a red frame from A to the red guest on B, untagged again, byte for byte', () => {
    const a = host('a', alg);
    const b = host('b', alg);
    const f = frame(MAC.bRed, MAC.aRed, 1400);
    const out = send(a, 'a-red', [f]);
    // Unknown destination on A: flooded to a-red2 (local, same label) and to the peer.
    expect(names(out.verdict.slice(0, 1))).toEqual(['ok']);
    expect(out.sendCount).toBe(1);
    expect(delivered(out, a.tables).map((d) => d.domain)).toEqual(['a-red2']);
    const wire = sentPackets(out);
    release(a, out);
    const inb = receive(b, wire);
    expect(names(inb.verdict.slice(0, 1))).toEqual(['ok']);
    const got = delivered(inb, b.tables);
    expect(got.map((d) => d.domain)).toEqual(['b-red']);
    expect(got[0]!.bytes).toEqual(f);
    expect(inb.spi[0]).toBe(0x1000);
    expect(inb.seq[0]).toBe(1);
    release(b, inb);
    expect(a.pool.available).toBe(256);
    expect(b.pool.available).toBe(256);
  });

  it('puts the label on the wire: 802.1Q VID and GRE key inside ESP', () => {
    const a = host('a', alg);
    const b = host('b', alg);
    const out = send(a, 'a-blue', [frame(MAC.bBlue, MAC.aBlue)]);
    const wire = sentPackets(out);
    // Open on B, keep the tag, look at GRE and the inner tag.
    const buf = load(b.pool, wire[0]!);
    const bOut = new Actions();
    const tagKeeping = new DecapPipeline(b.tables, { keepTag: true });
    tagKeeping.run([buf], [DecapInput.esp], 1, T0, bOut);
    expect(names(bOut.verdict.slice(0, 1))).toEqual(['ok']);
    const inner = new EthernetFrame();
    const d = bOut.deliverBufs[0]!;
    expect(inner.bind(d.bytes, d.start, d.end - d.start)).toBe(0);
    expect(inner.tagKind).toBe(EthTag.dot1q);
    expect(inner.vid).toBe(200);
    // The GRE header sits right in front of the delivered frame in the same buffer.
    const gre = new GrePacket();
    expect(gre.bind(d.bytes, d.start - 8, d.end - d.start + 8)).toBe(0);
    expect(gre.hasKey).toBe(true);
    expect(gre.key).toBe(0xb10e);
    expect(gre.protocolType).toBe(0x6558);
  });

  it('never copies a unicast payload: the same buffer from TAP read to wire, and from wire to TAP', () => {
    const a = host('a', alg);
    const b = host('b', alg);
    // Teach A that bRed is behind the peer (a frame from B), then send unicast.
    const back = send(b, 'b-red', [frame(MAC.aRed, MAC.bRed)]);
    receive(a, sentPackets(back));
    const bufIn = load(a.pool, frame(MAC.bRed, MAC.aRed, 800));
    const out = new Actions();
    a.encap.run([bufIn], [a.tables.domains.idOf('a-red')], 1, T0, out);
    expect(out.sendCount).toBe(1);
    expect(out.deliverCount).toBe(0);
    expect(out.sendBufs[0]).toBe(bufIn);
    expect(out.sendBufs[0]!.bytes.buffer).toBe(a.pool.slab.buffer);
    const wireBuf = load(b.pool, out.sendBufs[0]!.view());
    const bOut = new Actions();
    b.decap.run([wireBuf], [DecapInput.esp], 1, T0, bOut);
    expect(bOut.deliverBufs[0]).toBe(wireBuf);
    expect(bOut.deliverBufs[0]!.bytes.buffer).toBe(b.pool.slab.buffer);
  });

  it('drops guest VLAN tags and spoofed source MACs on the send side', () => {
    const a = host('a', alg);
    const out = send(a, 'a-red', [frame(MAC.bRed, MAC.aRed, 64, 100), frame(MAC.bRed, MAC.aBlue), frame(MAC.bRed, MAC.aRed)]);
    expect(names(out.verdict.slice(0, 3))).toEqual(['guest_vlan_tag', 'spoofed_src_mac', 'ok']);
    expect(a.tables.counters.counts[Reason.guest_vlan_tag]).toBe(1);
    expect(a.tables.counters.counts[Reason.spoofed_src_mac]).toBe(1);
    expect(a.audit.some((r) => r.type === 'drop' && r.reason === 'spoofed_src_mac')).toBe(true);
  });

  it('denies red → blue at the destination host (policy_denied) and audits it', () => {
    const a = host('a', alg);
    const b = host('b', alg);
    // a-red floods a frame for b-blue's MAC under red; B must not hand it to b-blue.
    const out = send(a, 'a-red', [frame(MAC.bBlue, MAC.aRed)]);
    const inb = receive(b, sentPackets(out));
    expect(names(inb.verdict.slice(0, 1))).toEqual(['policy_denied']);
    expect(inb.deliverCount).toBe(0);
    const rec = b.audit.find((r) => r.type === 'drop') as AuditRecord;
    expect(rec.reason).toBe('policy_denied');
    expect(rec.labelFrom).toBe('red');
    expect(rec.labelTo).toBe('blue');
  });

  it('delivers across labels only along an explicit one-way rule', () => {
    const a = host('a', alg);
    const b = host('b', alg, ['allow red -> audit']);
    const toAudit = receive(b, sentPackets(send(a, 'a-red', [frame(MAC.bAudit, MAC.aRed)])));
    expect(names(toAudit.verdict.slice(0, 1))).toEqual(['ok']);
    expect(delivered(toAudit, b.tables).map((d) => d.domain)).toEqual(['b-audit']);
    // The reverse direction is not allowed: audit → red is denied on A.
    const a2 = host('a', alg, ['allow red -> audit']);
    const b2 = host('b', alg, ['allow red -> audit']);
    const rev = receive(a2, sentPackets(send(b2, 'b-audit', [frame(MAC.aRed, MAC.bAudit)])));
    expect(names(rev.verdict.slice(0, 1))).toEqual(['policy_denied']);
  });

  it('rejects a red frame sealed under the blue SA (label_mismatch) and audits it', () => {
    const a = host('a', alg);
    const b = host('b', alg);
    // Hostile A: point (peer, red) at the blue SA, so red-tagged frames travel on blue's SPI.
    a.tables.setOutbound(0, 0, a.tables.outbound(0, 1));
    const inb = receive(b, sentPackets(send(a, 'a-red', [frame(MAC.bRed, MAC.aRed)])));
    expect(names(inb.verdict.slice(0, 1))).toEqual(['label_mismatch']);
    expect(inb.deliverCount).toBe(0);
    expect(b.audit.some((r) => r.type === 'drop' && r.reason === 'label_mismatch')).toBe(true);
  });

  it('counts every receive-side drop by reason: unknown SPI, replay, tampering', () => {
    const a = host('a', alg);
    const b = host('b', alg);
    const wire = sentPackets(send(a, 'a-red', [frame(MAC.bRed, MAC.aRed), frame(MAC.bRed, MAC.aRed)]));
    const unknown = wire[0]!.slice();
    unknown[3] ^= 0x40;
    const tampered = wire[1]!.slice();
    tampered[tampered.length - 20] ^= 1;
    const inb = receive(b, [wire[0]!, wire[0]!, unknown, tampered, wire[1]!]);
    expect(names(inb.verdict.slice(0, 5))).toEqual(['ok', 'replay_duplicate', 'unknown_spi', 'icv_mismatch', 'ok']);
    const c = b.tables.counters.toJSON();
    expect([c.replay_duplicate, c.unknown_spi, c.icv_mismatch]).toEqual([1, 1, 1]);
  });

  it('floods a broadcast to every peer and local domain of the label, never to another label', () => {
    const a = host('a', alg);
    const bcast = frame('ff:ff:ff:ff:ff:ff', MAC.aRed);
    const out = send(a, 'a-red', [bcast]);
    expect(delivered(out, a.tables).map((d) => d.domain)).toEqual(['a-red2']);
    expect(out.sendCount).toBe(1);
    expect(a.tables.outbound(0, 0)!.spi).toBe(out.spi[0]);
  });
});

describe('pipeline: outer packets', () => {
  it('accepts NAT keepalives and non-ESP markers as discards, and not_esp for other UDP ports', () => {
    const b = host('b', 'aes-gcm-256');
    const keepalive = Uint8Array.of(0xff);
    const marker = Uint8Array.of(0, 0, 0, 0, 1, 2, 3);
    const bufs = [keepalive, marker].map((p) => load(b.pool, p));
    const out = new Actions();
    b.decap.run(bufs, [DecapInput.udpPayload, DecapInput.udpPayload], 2, T0, out);
    expect(names(out.verdict.slice(0, 2))).toEqual(['nat_keepalive', 'non_esp_marker']);
    expect(b.decap.controlCount).toBe(1);
    expect(OK).toBe(0);
  });
});
