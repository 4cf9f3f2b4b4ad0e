import { describe, expect, it } from 'vitest';
import {
  DEFAULT_FDB_AGE_MS,
  FDB_GROUP,
  FDB_LOCAL,
  FDB_REMOTE,
  FDB_UNKNOWN,
  Fdb,
  FdbConfigError,
  Learn,
  type FdbTopology,
} from '../../src/core/fdb.js';
import { DomainTable, LabelTable } from '../../src/core/labels.js';

/** A frame-like buffer holding the 48-bit `mac` at `off`, surrounded by 0xa5. */
function macBytes(mac: number, off = 0): Uint8Array {
  const b = new Uint8Array(off + 6 + 4).fill(0xa5);
  for (let i = 5; i >= 0; i--) {
    b[off + i] = mac % 256;
    mac = Math.floor(mac / 256);
  }
  return b;
}

/** Deterministic PRNG (mulberry32) for property tests. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n) | 0;
  };
}

// Two labels. Domains 0, 1 are red, 2 is blue. Peer 0 carries red and blue, peer 1 red, peer 2 blue.
const RED = 0;
const BLUE = 1;
const TOPO: FdbTopology = {
  domains: [
    { id: 0, labelId: RED },
    { id: 1, labelId: RED },
    { id: 2, labelId: BLUE },
  ],
  peers: [
    { id: 0, labelIds: [RED, BLUE] },
    { id: 1, labelIds: [RED] },
    { id: 2, labelIds: [BLUE] },
  ],
};
const A = 0x525400000001;
const B = 0x525400000002;
const C = 0x525400000003;

describe('Fdb learning and lookup', () => {
  it('learns local and remote MACs and finds them, at any buffer offset', () => {
    for (let off = 0; off < 8; off++) {
      const f = new Fdb({ labelCount: 2 }, TOPO);
      expect(f.learn(RED, macBytes(A, off), off, FDB_LOCAL, 1, 0)).toBe(Learn.added);
      expect(f.learn(RED, macBytes(B, off), off, FDB_REMOTE, 1, 0)).toBe(Learn.added);
      expect(f.lookup(RED, macBytes(A, off), off, 1)).toBe(FDB_LOCAL);
      expect(f.foundId).toBe(1);
      expect(f.lookup(RED, macBytes(B, off), off, 1)).toBe(FDB_REMOTE);
      expect(f.foundId).toBe(1);
      expect(f.lookup(RED, macBytes(C, off), off, 1)).toBe(FDB_UNKNOWN);
      expect(f.foundId).toBe(-1);
      expect(f.size(RED)).toBe(2);
    }
  });

  it('keeps labels apart: a MAC learned in red is unknown in blue', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    f.learn(RED, macBytes(A), 0, FDB_REMOTE, 0, 0);
    expect(f.lookup(BLUE, macBytes(A), 0, 0)).toBe(FDB_UNKNOWN);
    f.learn(BLUE, macBytes(A), 0, FDB_REMOTE, 2, 0);
    expect(f.lookup(RED, macBytes(A), 0, 0)).toBe(FDB_REMOTE);
    expect(f.foundId).toBe(0);
    expect(f.lookup(BLUE, macBytes(A), 0, 0)).toBe(FDB_REMOTE);
    expect(f.foundId).toBe(2);
  });

  it('reports group destinations (broadcast, multicast) as FDB_GROUP and never learns a group source', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    expect(f.lookup(RED, macBytes(0xffffffffffff), 0, 0)).toBe(FDB_GROUP);
    expect(f.lookup(RED, macBytes(0x01005e000001), 0, 0)).toBe(FDB_GROUP);
    expect(f.lookup(RED, macBytes(0x333300000001), 0, 0)).toBe(FDB_GROUP);
    expect(f.learn(RED, macBytes(0x01005e000001), 0, FDB_LOCAL, 0, 0)).toBe(Learn.ignored);
    expect(f.size(RED)).toBe(0);
  });

  it('refuses to learn against an endpoint that does not carry the label', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    expect(f.learn(RED, macBytes(A), 0, FDB_LOCAL, 2, 0)).toBe(Learn.ignored); // domain 2 is blue
    expect(f.learn(RED, macBytes(A), 0, FDB_REMOTE, 2, 0)).toBe(Learn.ignored); // peer 2 carries blue only
    expect(f.learn(RED, macBytes(A), 0, FDB_REMOTE, 9, 0)).toBe(Learn.ignored); // no such peer
    expect(f.learn(RED, macBytes(A), 0, 7, 0, 0)).toBe(Learn.ignored); // no such kind
    expect(f.counters.refusedForeign).toBe(4);
    expect(f.learn(5, macBytes(A), 0, FDB_LOCAL, 0, 0)).toBe(Learn.ignored); // no such label
    expect(f.learn(RED, macBytes(A), 7, FDB_LOCAL, 0, 0)).toBe(Learn.ignored); // MAC past the end
    expect(f.size(RED)).toBe(0);
  });

  it('reports refresh and counts moves local→remote, remote→remote, remote→local, local→local', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    expect(f.learn(RED, macBytes(A), 0, FDB_LOCAL, 0, 0)).toBe(Learn.added);
    expect(f.learn(RED, macBytes(A), 0, FDB_LOCAL, 0, 1)).toBe(Learn.refreshed);
    expect(f.learn(RED, macBytes(A), 0, FDB_REMOTE, 0, 2)).toBe(Learn.moved);
    expect(f.lookup(RED, macBytes(A), 0, 2)).toBe(FDB_REMOTE);
    expect(f.foundId).toBe(0);
    expect(f.learn(RED, macBytes(A), 0, FDB_REMOTE, 1, 3)).toBe(Learn.moved);
    expect(f.lookup(RED, macBytes(A), 0, 3)).toBe(FDB_REMOTE);
    expect(f.foundId).toBe(1);
    expect(f.learn(RED, macBytes(A), 0, FDB_LOCAL, 1, 4)).toBe(Learn.moved);
    expect(f.learn(RED, macBytes(A), 0, FDB_LOCAL, 0, 5)).toBe(Learn.moved);
    expect(f.lookup(RED, macBytes(A), 0, 5)).toBe(FDB_LOCAL);
    expect(f.foundId).toBe(0);
    const c = f.counters;
    expect([c.movesLocalToRemote, c.movesRemoteToRemote, c.movesRemoteToLocal, c.movesLocalToLocal, c.moves]).toEqual([1, 1, 1, 1, 4]);
    expect(f.size(RED)).toBe(1);
  });
});

describe('Fdb aging (manual clock)', () => {
  it('defaults to 300 s', () => {
    expect(new Fdb({ labelCount: 1 }).ageMs).toBe(300_000);
    expect(DEFAULT_FDB_AGE_MS).toBe(300_000);
  });

  it('expires an entry ageMs after it was last learned, lazily on lookup', () => {
    const f = new Fdb({ labelCount: 2, ageMs: 1000 }, TOPO);
    f.learn(RED, macBytes(A), 0, FDB_REMOTE, 1, 5000);
    expect(f.lookup(RED, macBytes(A), 0, 5999)).toBe(FDB_REMOTE);
    expect(f.lookup(RED, macBytes(A), 0, 6000)).toBe(FDB_UNKNOWN);
    expect(f.size(RED)).toBe(0);
    expect(f.counters.expired).toBe(1);
  });

  it('restarts the age on every learn', () => {
    const f = new Fdb({ labelCount: 2, ageMs: 1000 }, TOPO);
    f.learn(RED, macBytes(A), 0, FDB_REMOTE, 1, 0);
    f.learn(RED, macBytes(A), 0, FDB_REMOTE, 1, 900);
    expect(f.lookup(RED, macBytes(A), 0, 1800)).toBe(FDB_REMOTE);
    expect(f.lookup(RED, macBytes(A), 0, 1900)).toBe(FDB_UNKNOWN);
  });

  it('learning over an aged entry at another endpoint is a new entry, not a move', () => {
    const f = new Fdb({ labelCount: 2, ageMs: 1000 }, TOPO);
    f.learn(RED, macBytes(A), 0, FDB_LOCAL, 0, 0);
    expect(f.learn(RED, macBytes(A), 0, FDB_REMOTE, 1, 1000)).toBe(Learn.added);
    expect(f.counters.moves).toBe(0);
    expect(f.size(RED)).toBe(1);
  });

  it('sweep removes aged learned entries only, and the table stays consistent', () => {
    const f = new Fdb({ labelCount: 2, ageMs: 1000, maxMacsPerLabel: 64 }, TOPO);
    for (let i = 0; i < 60; i++) f.learn(RED, macBytes(A + i), 0, FDB_REMOTE, 1, i % 2 === 0 ? 0 : 500);
    f.addStatic(RED, C + 1000, FDB_LOCAL, 0);
    expect(f.size(RED)).toBe(61);
    expect(f.sweep(999)).toBe(0);
    expect(f.sweep(1000)).toBe(30);
    expect(f.size(RED)).toBe(31);
    for (let i = 0; i < 60; i++) expect(f.lookup(RED, macBytes(A + i), 0, 1001)).toBe(i % 2 === 0 ? FDB_UNKNOWN : FDB_REMOTE);
    expect(f.lookup(RED, macBytes(C + 1000), 0, 1e12)).toBe(FDB_LOCAL);
    expect(f.sweep(1e12)).toBe(30);
    expect(f.size(RED)).toBe(1);
    expect(f.counters.expired).toBe(60);
  });
});

describe('Fdb size bound', () => {
  it('never grows past maxMacsPerLabel: new MACs are refused (counted) and stay unknown (flood)', () => {
    const f = new Fdb({ labelCount: 2, maxMacsPerLabel: 8 }, TOPO);
    let refused = 0;
    for (let i = 0; i < 100; i++) {
      const r = f.learn(RED, macBytes(A + i), 0, FDB_REMOTE, 1, 0);
      if (r === Learn.full) refused++;
      expect(f.size(RED)).toBeLessThanOrEqual(8);
    }
    expect(f.size(RED)).toBe(8);
    expect(refused).toBe(92);
    expect(f.counters.refusedFull).toBe(92);
    expect(f.refusedFullByLabel[RED]).toBe(92);
    expect(f.refusedFullByLabel[BLUE]).toBe(0);
    let known = 0;
    for (let i = 0; i < 100; i++) if (f.lookup(RED, macBytes(A + i), 0, 1) === FDB_REMOTE) known++;
    expect(known).toBe(8);
    expect(f.lookup(RED, macBytes(A + 99), 0, 1)).toBe(FDB_UNKNOWN);
    // Known MACs still refresh and move while full; another label is unaffected.
    expect(f.learn(RED, macBytes(A), 0, FDB_REMOTE, 1, 2)).toBe(Learn.refreshed);
    expect(f.learn(RED, macBytes(A), 0, FDB_REMOTE, 0, 3)).toBe(Learn.moved);
    expect(f.learn(BLUE, macBytes(A + 50), 0, FDB_REMOTE, 2, 0)).toBe(Learn.added);
  });

  it('counts static entries against the bound and refuses a static entry when full', () => {
    const f = new Fdb({ labelCount: 2, maxMacsPerLabel: 2 }, TOPO);
    f.addStatic(RED, A, FDB_LOCAL, 0);
    f.learn(RED, macBytes(B), 0, FDB_REMOTE, 1, 0);
    expect(f.learn(RED, macBytes(C), 0, FDB_REMOTE, 1, 0)).toBe(Learn.full);
    expect(() => f.addStatic(RED, C, FDB_LOCAL, 1)).toThrow(FdbConfigError);
    try {
      f.addStatic(RED, C, FDB_LOCAL, 1);
    } catch (e) {
      expect((e as FdbConfigError).code).toBe('fdb_label_full');
      expect((e as FdbConfigError).message).toBe('static[label 0, mac 52:54:00:00:00:03]: label 0 already holds maxMacsPerLabel = 2 entries');
    }
    // Turning a learned entry into a static one takes no extra room.
    f.addStatic(RED, B, FDB_LOCAL, 1);
    expect(f.size(RED)).toBe(2);
  });
});

describe('Fdb static entries', () => {
  it('are never aged and never overwritten by learning', () => {
    const f = new Fdb({ labelCount: 2, ageMs: 1000 }, TOPO);
    f.addStatic(RED, A, FDB_REMOTE, 1);
    expect(f.learn(RED, macBytes(A), 0, FDB_LOCAL, 0, 10)).toBe(Learn.static);
    expect(f.lookup(RED, macBytes(A), 0, 10 ** 12)).toBe(FDB_REMOTE);
    expect(f.foundId).toBe(1);
    expect(f.sweep(10 ** 12)).toBe(0);
    expect(f.counters.moves).toBe(0);
    expect(f.entries(RED, 10 ** 12)).toEqual([{ mac: A, kind: FDB_REMOTE, id: 1, static: true, ageMs: 0 }]);
  });

  it('replace a learned entry, and can be removed', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    f.learn(RED, macBytes(A), 0, FDB_REMOTE, 1, 0);
    f.addStatic(RED, A, FDB_LOCAL, 0);
    expect(f.lookup(RED, macBytes(A), 0, 0)).toBe(FDB_LOCAL);
    expect(f.size(RED)).toBe(1);
    expect(f.removeStatic(RED, A)).toBe(true);
    expect(f.removeStatic(RED, A)).toBe(false);
    expect(f.lookup(RED, macBytes(A), 0, 0)).toBe(FDB_UNKNOWN);
    f.learn(RED, macBytes(B), 0, FDB_REMOTE, 1, 0);
    expect(f.removeStatic(RED, B)).toBe(false); // learned, not static
    expect(f.size(RED)).toBe(1);
  });

  it('are rejected for a group MAC, an endpoint of another label, or a bad label id', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    const code = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(FdbConfigError);
        return (e as FdbConfigError).code + ' ' + (e as Error).message;
      }
      return 'no error';
    };
    expect(code(() => f.addStatic(RED, 0xffffffffffff, FDB_LOCAL, 0))).toBe('fdb_static_invalid static[label 0, mac ff:ff:ff:ff:ff:ff]: is a group address; static entries are unicast');
    expect(code(() => f.addStatic(RED, A, FDB_LOCAL, 2))).toBe('fdb_static_invalid static[label 0, mac 52:54:00:00:00:01]: domain 2 does not carry label 0');
    expect(code(() => f.addStatic(RED, A, FDB_REMOTE, 2))).toBe('fdb_static_invalid static[label 0, mac 52:54:00:00:00:01]: peer 2 does not carry label 0');
    expect(code(() => f.addStatic(3, A, FDB_LOCAL, 0))).toMatch(/^fdb_static_invalid .*label id 3 is not in 0\.\.1$/);
    expect(code(() => f.addStatic(RED, 2 ** 48, FDB_LOCAL, 0))).toMatch(/is not a 48-bit MAC address$/);
  });
});

describe('Fdb topology', () => {
  it('removes entries whose endpoint no longer carries the label', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    f.learn(RED, macBytes(A), 0, FDB_LOCAL, 1, 0);
    f.learn(RED, macBytes(B), 0, FDB_REMOTE, 1, 0);
    f.addStatic(RED, C, FDB_REMOTE, 0);
    f.learn(BLUE, macBytes(A), 0, FDB_REMOTE, 0, 0);
    // Domain 1 is gone; peer 0 now carries blue only.
    const removed = f.setTopology({
      domains: [{ id: 0, labelId: RED }, { id: 2, labelId: BLUE }],
      peers: [{ id: 0, labelIds: [BLUE] }, { id: 1, labelIds: [RED] }],
    });
    expect(removed).toBe(2);
    expect(f.lookup(RED, macBytes(A), 0, 0)).toBe(FDB_UNKNOWN);
    expect(f.lookup(RED, macBytes(B), 0, 0)).toBe(FDB_REMOTE);
    expect(f.lookup(RED, macBytes(C), 0, 0)).toBe(FDB_UNKNOWN);
    expect(f.lookup(BLUE, macBytes(A), 0, 0)).toBe(FDB_REMOTE);
    expect(f.learn(RED, macBytes(A), 0, FDB_LOCAL, 1, 0)).toBe(Learn.ignored);
  });

  it('rejects malformed topologies with the offending entry', () => {
    const f = new Fdb({ labelCount: 2 });
    expect(() => f.setTopology({ domains: [{ id: 0, labelId: 2 }], peers: [] })).toThrow('domains[0].labelId: 2 is not a label id in 0..1');
    expect(() => f.setTopology({ domains: [{ id: 0, labelId: 0 }, { id: 0, labelId: 1 }], peers: [] })).toThrow('domains[1].id: 0 appears twice');
    expect(() => f.setTopology({ domains: [], peers: [{ id: -1, labelIds: [] }] })).toThrow('peers[0].id: -1 is not an integer in 0..65535');
    expect(() => f.setTopology({ domains: [], peers: [{ id: 1, labelIds: [0, 5] }] })).toThrow('peers[0].labelIds[1]: 5 is not a label id in 0..1');
  });

  it('rejects bad options', () => {
    expect(() => new Fdb({ labelCount: 1, ageMs: 0 })).toThrow('ageMs: 0 is not a positive number of milliseconds');
    expect(() => new Fdb({ labelCount: 1, maxMacsPerLabel: 0 })).toThrow('maxMacsPerLabel: 0 is not an integer in 1..1048576');
    expect(() => new Fdb({ labelCount: -1 })).toThrow('labelCount: -1 is not an integer in 0..4096');
    expect(() => new Fdb({ labelCount: 4096, maxMacsPerLabel: 1 << 20 })).toThrow('maxMacsPerLabel: 1048576 MACs per label for 4096 labels needs 8589934592 slots; at most 16777216');
  });

  it('takes the topology straight from a DomainTable', () => {
    const labels = new LabelTable([{ name: 'red', vlan: 100 }, { name: 'blue', vlan: 200 }]);
    const domains = new DomainTable(
      [
        { name: 'a', label: 'red', macs: ['02:00:00:00:00:01'] },
        { name: 'b', label: 'blue', macs: ['02:00:00:00:00:02'] },
        { name: 'c', label: 'red', macs: ['02:00:00:00:00:03'] },
      ],
      labels,
    );
    const f = new Fdb({ labelCount: labels.size }, { domains: domains.domains, peers: [{ id: 0, labelIds: [0] }] });
    for (const d of domains.domains) for (const m of d.macs) f.addStatic(d.labelId, m, FDB_LOCAL, d.id);
    expect(f.lookup(0, macBytes(0x020000000003), 0, 0)).toBe(FDB_LOCAL);
    expect(f.foundId).toBe(2);
    const t = f.flood(0, FDB_LOCAL, 0);
    expect([...t.domains.subarray(0, t.domainCount)]).toEqual([2]);
    expect([...t.peers.subarray(0, t.peerCount)]).toEqual([0]);
  });
});

describe('Fdb flood sets', () => {
  it('from a local domain: the other local domains of the label and every peer carrying it', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    const t = f.flood(RED, FDB_LOCAL, 0);
    expect([...t.domains.subarray(0, t.domainCount)]).toEqual([1]);
    expect([...t.peers.subarray(0, t.peerCount)].sort()).toEqual([0, 1]);
    const u = f.flood(BLUE, FDB_LOCAL, 2);
    expect(u).toBe(t); // the same preallocated object, refilled
    expect(u.domainCount).toBe(0);
    expect([...u.peers.subarray(0, u.peerCount)].sort()).toEqual([0, 2]);
  });

  it('from a peer: local domains of the label only, never back to peers', () => {
    const f = new Fdb({ labelCount: 2 }, TOPO);
    const t = f.flood(RED, FDB_REMOTE, 1);
    expect([...t.domains.subarray(0, t.domainCount)].sort()).toEqual([0, 1]);
    expect(t.peerCount).toBe(0);
    expect(f.flood(7, FDB_LOCAL, 0).domainCount).toBe(0);
  });

  it('property: for random topologies the flood set of L holds only domains and peers of L, minus the source', () => {
    const rnd = prng(20240611);
    const bad: string[] = [];
    const same = (got: unknown, want: unknown, what: string) => {
      if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    };
    for (let round = 0; round < 200; round++) {
      const labelCount = 1 + rnd(6);
      const domainCount = rnd(12);
      const peerCount = rnd(10);
      const domains = Array.from({ length: domainCount }, (_, id) => ({ id: id * 3 + rnd(3), labelId: rnd(labelCount) }));
      const peers = Array.from({ length: peerCount }, (_, id) => ({
        id: id * 2 + rnd(2),
        labelIds: Array.from({ length: rnd(labelCount + 1) }, () => rnd(labelCount)),
      }));
      const f = new Fdb({ labelCount, maxMacsPerLabel: 4 }, { domains, peers });
      for (let label = 0; label < labelCount; label++) {
        const ofLabel = domains.filter((d) => d.labelId === label).map((d) => d.id);
        const carrying = peers.filter((p) => p.labelIds.includes(label)).map((p) => p.id);
        const sources: [number, number][] = [...domains.map((d) => [FDB_LOCAL, d.id] as [number, number]), ...peers.map((p) => [FDB_REMOTE, p.id] as [number, number])];
        for (const [kind, id] of sources) {
          const t = f.flood(label, kind, id);
          const ds = [...t.domains.subarray(0, t.domainCount)];
          const ps = [...t.peers.subarray(0, t.peerCount)];
          const at = `round ${round} label ${label} from ${kind === FDB_LOCAL ? 'domain' : 'peer'} ${id}`;
          for (const d of ds) same(domains.find((x) => x.id === d)?.labelId, label, `${at}: label of flooded domain ${d}`);
          for (const p of ps) same(peers.find((x) => x.id === p)?.labelIds.includes(label), true, `${at}: flooded peer ${p} carries the label`);
          if (kind === FDB_LOCAL) same(ds.includes(id), false, `${at}: source domain in its own flood set`);
          same(new Set(ds).size, ds.length, `${at}: duplicate domains`);
          same(new Set(ps).size, ps.length, `${at}: duplicate peers`);
          // And nothing of the label is missing.
          same(ds.sort((a, b) => a - b), ofLabel.filter((d) => !(kind === FDB_LOCAL && d === id)).sort((a, b) => a - b), `${at}: domains`);
          same(ps.sort((a, b) => a - b), kind === FDB_LOCAL ? [...carrying].sort((a, b) => a - b) : [], `${at}: peers`);
        }
      }
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });
});

describe('Fdb hash table against a model', () => {
  it('random learn / lookup / static / sweep sequences agree with a Map', () => {
    const rnd = prng(99);
    const bad: string[] = [];
    const same = (got: unknown, want: unknown, what: string) => {
      if (got !== want) bad.push(`${what}: got ${String(got)}, want ${String(want)}`);
    };
    for (let round = 0; round < 30; round++) {
      const max = 1 + rnd(24);
      const ageMs = 50 + rnd(100);
      const f = new Fdb({ labelCount: 2, maxMacsPerLabel: max, ageMs, hashSeed: rnd(1 << 30) }, TOPO);
      // model per label: mac → {kind, id, seen, static}
      const models = [new Map<number, { kind: number; id: number; seen: number; isStatic: boolean }>(), new Map<number, { kind: number; id: number; seen: number; isStatic: boolean }>()];
      const live = (label: number) => models[label]!.size;
      const macs = Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? 0x020000000000 : 0x525400000000) + i * 0x10001);
      let now = 0;
      for (let step = 0; step < 2000; step++) {
        now += rnd(5);
        const label = rnd(2);
        const mac = macs[rnd(macs.length)]!;
        const model = models[label]!;
        const key = mac;
        const op = rnd(20);
        const m = model.get(key);
        const aged = m !== undefined && !m.isStatic && now - m.seen >= ageMs;
        if (op < 10) {
          const kind = rnd(2) === 0 ? FDB_LOCAL : FDB_REMOTE;
          const id = kind === FDB_LOCAL ? (label === RED ? rnd(2) : 2) : label === RED ? rnd(2) : [0, 2][rnd(2)]!;
          const r = f.learn(label, macBytes(mac), 0, kind, id, now);
          let want: number;
          if (m === undefined) want = live(label) >= max ? Learn.full : Learn.added;
          else if (m.isStatic) want = Learn.static;
          else if (aged) want = Learn.added;
          else want = m.kind === kind && m.id === id ? Learn.refreshed : Learn.moved;
          same(r, want, `round ${round} step ${step} learn`);
          if (want !== Learn.full && want !== Learn.static) model.set(key, { kind, id, seen: now, isStatic: false });
        } else if (op < 17) {
          const r = f.lookup(label, macBytes(mac), 0, now);
          if (m === undefined || aged) {
            same(r, FDB_UNKNOWN, `round ${round} step ${step} lookup of an absent MAC`);
            if (aged) model.delete(key);
          } else {
            same(r, m.kind, `round ${round} step ${step} lookup kind`);
            same(f.foundId, m.id, `round ${round} step ${step} lookup id`);
          }
        } else if (op === 17) {
          if (m === undefined && live(label) >= max) continue;
          f.addStatic(label, mac, FDB_REMOTE, label === RED ? 1 : 2);
          model.set(key, { kind: FDB_REMOTE, id: label === RED ? 1 : 2, seen: now, isStatic: true });
        } else if (op === 18) {
          same(f.removeStatic(label, mac), m?.isStatic === true, `round ${round} step ${step} removeStatic`);
          if (m?.isStatic) model.delete(key);
        } else {
          let want = 0;
          for (const m of models) {
            for (const [k, v] of m) {
              if (!v.isStatic && now - v.seen >= ageMs) {
                m.delete(k);
                want++;
              }
            }
          }
          same(f.sweep(now), want, `round ${round} step ${step} sweep`);
        }
        same(f.size(label), live(label), `round ${round} step ${step} size`);
        same(f.size(label) <= max, true, `round ${round} step ${step} size within bound`);
      }
      // Everything the model holds is still found (no entry lost by backward-shift deletion).
      models.forEach((model, label) => {
        for (const [mac, v] of model) {
          if (!v.isStatic && now - v.seen >= ageMs) continue;
          same(f.lookup(label, macBytes(mac), 0, now), v.kind, `round ${round} final lookup`);
        }
      });
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });
});
