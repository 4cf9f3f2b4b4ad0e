// Robustness of the receive pipeline: tens of thousands of random and mutated packets of
// every input kind. No exception escapes, every buffer goes back to the pool, every verdict
// is OK, pending or a listed reason, and memory stays bounded. Seeded; the seed is in every
// failure message and SECTUNNEL_TEST_SEED replays a run.
import { describe, expect, it } from 'vitest';
import { rng as mulberry32 } from '../helpers/hex.js';
import { PacketPool } from '../../src/buf/pool.js';
import { Actions, VERDICT_PENDING } from '../../src/core/actions.js';
import { Auditor } from '../../src/core/audit.js';
import { DecapInput, DecapPipeline } from '../../src/core/decap.js';
import { DomainTable, LabelTable } from '../../src/core/labels.js';
import { Policy } from '../../src/core/policy.js';
import { OK, REASON_COUNT } from '../../src/core/reasons.js';
import { InboundSa } from '../../src/core/sa.js';
import { Tables } from '../../src/core/tables.js';
import { craftEsp, frame, gre, ipv4, ipv6, keymatFor, udp4Datagram } from '../conformance/craft.js';

const SEED = Number(process.env.SECTUNNEL_TEST_SEED ?? Date.now() % 1_000_000);
const T0 = 1_700_000_000_000;

/** Uniform [0, 1) from the shared mulberry32 generator. */
function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

const SA = { spi: 0x1001, alg: 'aes-gcm-128' as const, keymat: keymatFor('aes-gcm-128', 9), esn: true };

function setup() {
  const labels = new LabelTable([{ name: 'red', vlan: 100 }, { name: 'blue', vlan: 200, greKey: null }]);
  const domains = new DomainTable([{ name: 'd', label: 'red', macs: ['02:00:00:00:0b:01'] }], labels);
  const tables = new Tables({
    labels,
    domains,
    policy: new Policy(labels, []),
    peers: [{ id: 0, name: 'p', labelIds: [0, 1] }],
    auditor: new Auditor({ sink: () => {} }),
  });
  tables.setInbound(new InboundSa({ spi: SA.spi, algorithm: SA.alg, keymat: SA.keymat.slice(), labels: ['red', 'blue'], nowMs: T0, replayWindowPackets: 65536 }), 0);
  return { tables, decap: new DecapPipeline(tables, { maxBatch: 64 }), pool: new PacketPool({ packets: 128 }) };
}

describe('receive pipeline fuzz', () => {
  it(`survives 40,000 random and mutated packets (seed ${SEED})`, () => {
    const r = rng(SEED);
    const { tables, decap, pool } = setup();
    const out = new Actions();
    const rand = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
    // Valid seeds to mutate: authentic ESP with random inner content, outer v4/v6, fragments.
    let seq = 1;
    const seeds = (): Uint8Array => {
      const inner = r() < 0.5 ? frame([[0x8100, r() < 0.5 ? 100 : 200]], Math.floor(r() * 300)) : rand(Math.floor(r() * 200));
      const greBytes = r() < 0.7 ? gre(r() < 0.5 ? 100 << 8 : null, inner) : rand(Math.floor(r() * 40));
      const esp = craftEsp(SA, seq++, greBytes, { nextHeader: r() < 0.9 ? 47 : Math.floor(r() * 256) });
      const pick = r();
      if (pick < 0.4) return ipv4(esp);
      if (pick < 0.6) return ipv6(esp, { udp: r() < 0.5 });
      if (pick < 0.8) return esp;
      const d = udp4Datagram(esp);
      const cut = 8 * (1 + Math.floor(r() * Math.max(1, d.length / 8 - 1)));
      return ipv4(d.subarray(r() < 0.5 ? 0 : cut), { frag: { offsetBytes: r() < 0.5 ? 0 : cut, more: r() < 0.5, id: Math.floor(r() * 8) } });
    };
    const heap0 = process.memoryUsage().heapUsed;
    const kinds = new Uint8Array(64);
    const bufs = [];
    let total = 0;
    while (total < 40_000) {
      bufs.length = 0;
      for (let k = 0; k < 64; k++) {
        let p = r() < 0.15 ? rand(Math.floor(r() * 2000)) : seeds();
        const m = r();
        if (m < 0.3) {
          p = p.slice();
          for (let f = 0, flips = 1 + Math.floor(r() * 4); f < flips && p.length > 0; f++) p[Math.floor(r() * p.length)]! ^= 1 << Math.floor(r() * 8);
        } else if (m < 0.45) {
          p = p.subarray(0, Math.floor(r() * p.length));
        }
        const b = pool.get()!;
        if (!b.load(p.subarray(0, Math.min(p.length, b.bytes.length - b.start)))) throw new Error('load');
        bufs.push(b);
        kinds[k] = Math.floor(r() * 4) as 0 | 1 | 2 | 3;
        if (kinds[k] === DecapInput.ip && p.length > 14 && r() < 0.7) b.start += 14; // mostly real IP
      }
      try {
        decap.run(bufs, kinds, bufs.length, T0 + total, out);
      } catch (e) {
        throw new Error(`seed ${SEED}: exception at packet ~${total}: ${(e as Error).stack}`);
      }
      for (let k = 0; k < bufs.length; k++) {
        const v = out.verdict[k]!;
        expect(v === OK || v === VERDICT_PENDING || (v > 0 && v < REASON_COUNT), `seed ${SEED}: verdict ${v}`).toBe(true);
      }
      for (let k = 0; k < out.releaseCount; k++) pool.put(out.release[k]!);
      expect(pool.available, `seed ${SEED}: buffers leaked`).toBe(128);
      total += bufs.length;
    }
    expect(decap.reassembler.inProgress).toBeLessThanOrEqual(decap.reassembler.limits.maxDatagrams);
    // Bounded: the pipeline holds no per-packet state beyond its fixed tables.
    if (global.gc) global.gc();
    expect(process.memoryUsage().heapUsed - heap0, `seed ${SEED}: heap growth`).toBeLessThan(64 * 1024 * 1024);
    const c = tables.counters.toJSON();
    expect(Object.values(c).reduce((a, b) => a + b, 0)).toBeGreaterThan(1000);
  });
});
