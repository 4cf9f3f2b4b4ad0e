// src/io/udp.ts offloads (native-fallback/src/udp.c): UDP GSO on send, UDP GRO on receive.
// Loopback keeps a GSO message whole up to a socket with UDP_GRO (one coalesced datagram)
// and cuts it into its datagrams for a socket without; both must deliver the sent datagrams.
// The refusal test runs a child process in a namespace `st-h8u-…` whose loopback MTU is small.
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { HEADROOM_BYTES } from '../../src/buf/constants.js';
import type { PacketBuf } from '../../src/buf/packet-buf.js';
import { PacketPool } from '../../src/buf/pool.js';
import { UdpTransport, offloadOption, type UdpBindOptions } from '../../src/io/udp.js';
import { itWith } from '../helpers/tools.js';
import { ioChildTree, runChild } from '../helpers/child-tree.js';
import { payloads } from '../helpers/payloads.js';

const ROOT = resolve(__dirname, '..', '..');
const sh = promisify(execFile);

/** Resolves when cond() holds; rejects with `what` after 20 s (a guard against hangs, not a timing assertion). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !cond(); waited += 5) {
    if (waited > 20_000) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Received {
  data: Uint8Array;
  port: number;
  peer: number;
  /** Where the datagram starts in its slot (the pool's headroom must stay). */
  start: number;
}

/** Collects copies of everything `t` receives, in order, returning each buffer to the pool. */
function collect(t: UdpTransport): Received[] {
  const got: Received[] = [];
  t.onPackets((bufs, count, meta) => {
    for (let i = 0; i < count; i++) {
      const b = bufs[i]!;
      got.push({ data: b.view().slice(), port: meta.port(i), peer: meta.peer(i), start: b.start });
      t.pool.put(b);
    }
  });
  return got;
}

const native = (o: UdpBindOptions): Promise<UdpTransport> => UdpTransport.bind({ ...o, impl: 'native', address: o.address ?? '127.0.0.1' });

/**
 * A batch to two peers with runs that GSO may merge: 20 × 1000 (one run), 600 (ends it: shorter),
 * 1000 × 5 to the other peer, 1000 × 3 back to the first, 1200 (longer: a new run), then 70 × 100
 * (more than 64: two runs), then 1 octet (ends the second run) and 1472 alone.
 */
const BATCH: readonly (readonly [size: number, peer: number])[] = [
  ...Array.from({ length: 20 }, () => [1000, 0] as const),
  [600, 0],
  ...Array.from({ length: 5 }, () => [1000, 1] as const),
  ...Array.from({ length: 3 }, () => [1000, 0] as const),
  [1200, 0],
  ...Array.from({ length: 70 }, () => [100, 0] as const),
  [1, 0],
  [1472, 0],
];
/** GSO messages the batch needs at most: 20+600 | 5 | 3 | 1200 | 64 × 100 | 6 × 100 + 1. */
const BATCH_GSO_SENDS = 6;

describe('UDP offloads (native)', () => {
  for (const [gro, address] of [
    [false, '127.0.0.1'],
    [true, '127.0.0.1'],
    [true, '::1'],
  ] as const) {
    itWith(['native'], `a GSO batch arrives as the datagrams sent, in order, byte-exact, at a receiver ${gro ? 'with' : 'without'} GRO (${address})`, async () => {
      const pool = new PacketPool({ packets: 1024 });
      const a = await native({ pool, address, offload: { gso: true, gro: false } });
      const b = await native({ pool, address, offload: { gso: false, gro } });
      const c = await native({ pool, address, offload: { gso: false, gro } });
      try {
        a.setPeer(0, b.address, b.port);
        a.setPeer(1, c.address, c.port);
        b.setPeer(5, a.address, a.port);
        const gotB = collect(b);
        const gotC = collect(c);
        const bufs = payloads(pool, BATCH.map(([s]) => s));
        const sent = bufs.map((x) => x.view().slice());
        expect(a.sendBatch(bufs, Int32Array.from(BATCH, ([, p]) => p), BATCH.length)).toBe(BATCH.length);
        bufs.forEach((x) => pool.put(x));
        const toB = sent.filter((_, i) => BATCH[i]![1] === 0);
        const toC = sent.filter((_, i) => BATCH[i]![1] === 1);
        await until(() => gotB.length >= toB.length && gotC.length >= toC.length, 'every datagram').catch((e: unknown) => {
          console.log(gotB.length, toB.length, gotC.length, toC.length, a.offloadStats(), b.offloadStats(), b.stats(), c.offloadStats());
          throw e;
        });

        expect(gotB.map((r) => r.data)).toEqual(toB);
        expect(gotC.map((r) => r.data)).toEqual(toC);
        expect(new Set(gotB.map((r) => `${r.port}/${r.peer}/${r.start}`))).toEqual(new Set([`${a.port}/5/${HEADROOM_BYTES}`]));

        const sa = a.offloadStats();
        expect(sa.gso).toBe(1);
        expect(sa.gsoSends).toBeGreaterThan(0);
        expect(sa.gsoSends).toBeLessThanOrEqual(BATCH_GSO_SENDS);
        expect(sa.gsoSegments).toBeGreaterThanOrEqual(100); // 20+1, 5, 3, 64, 6+1 (the 1200 run has 1)
        expect(sa.gsoFallbacks).toBe(0);
        expect(a.stats()).toMatchObject({ txPackets: BATCH.length, txErrors: 0, txDropped: 0 });

        const sb = b.offloadStats();
        expect(sb.gro).toBe(gro ? 1 : 0);
        if (gro) {
          expect(sb.groDatagrams).toBeGreaterThan(0);
          expect(sb.groSegments).toBeGreaterThanOrEqual(sb.groDatagrams * 2);
        } else {
          expect(sb.groDatagrams).toBe(0);
        }
                expect(b.stats()).toMatchObject({ rxPackets: toB.length, rxTruncated: 0 });
      } finally {
        for (const t of [a, b, c]) t.close();
      }
    });
  }

  itWith(['native'], 'GRO splits a coalesced datagram at gso_size exactly: 10 × 1000 + 337 arrive as 11 datagrams', async () => {
    const pool = new PacketPool({ packets: 256 });
    const a = await native({ pool, offload: { gso: true, gro: false } });
    const b = await native({ pool, offload: { gso: false, gro: true } });
    try {
      a.setPeer(0, b.address, b.port);
      const got = collect(b);
      const sizes = [...new Array<number>(10).fill(1000), 337];
      const bufs = payloads(pool, sizes);
      const sent = bufs.map((x) => x.view().slice());
      expect(a.sendBatch(bufs, new Int32Array(sizes.length), sizes.length)).toBe(sizes.length);
      bufs.forEach((x) => pool.put(x));
      await until(() => got.length >= sizes.length, '11 datagrams');
      expect(got.map((r) => r.data.length)).toEqual(sizes);
      expect(got.map((r) => r.data)).toEqual(sent);
      expect(b.offloadStats()).toMatchObject({ groDatagrams: 1, groSegments: 11, groCarried: 0 });
      expect(a.offloadStats()).toMatchObject({ gsoSends: 1, gsoSegments: 11 });
    } finally {
      a.close();
      b.close();
    }
  });

  itWith(['native'], 'a coalesced datagram larger than the free receive ring: what fits now, the rest in order once buffers come back', async () => {
    const pool = new PacketPool({ packets: 40, slotBytes: 512 }); // the receive ring gets 40 buffers
    const a = await native({ offload: { gso: true, gro: false } });
    const b = await native({ pool, offload: { gso: false, gro: true } });
    const held: PacketBuf[] = [];
    const got: Uint8Array[] = [];
    try {
      a.setPeer(0, b.address, b.port);
      b.onPackets((bufs, count) => {
        for (let i = 0; i < count; i++) held.push(bufs[i]!);
      });
      const bufs = payloads(a.pool, new Array<number>(64).fill(100));
      const sent = bufs.map((x) => x.view().slice());
      expect(a.sendBatch(bufs, new Int32Array(64), 64)).toBe(64);
      bufs.forEach((x) => a.pool.put(x));
      await until(() => held.length === 40 && b.stats().poolExhausted >= 1, 'the first 40, then a stall');
      expect(b.offloadStats()).toMatchObject({ groDatagrams: 1, groSegments: 64, groCarried: 1 });
      const drain = (): void => {
        for (const x of held.splice(0)) {
          got.push(x.view().slice());
          pool.put(x);
        }
      };
      drain();
      b.refill();
      await until(() => {
        drain();
        return got.length >= 64;
      }, 'the other 24');
      expect(got).toEqual(sent);
      expect(b.stats()).toMatchObject({ rxPackets: 64, rxTruncated: 0 });
    } finally {
      held.forEach((x) => pool.put(x));
      a.close();
      b.close();
    }
  });

  itWith(['native'], 'with offload: false nothing is merged or split, and the counters stay at zero', async () => {
    const a = await native({ offload: false });
    const b = await native({ offload: false });
    try {
      a.setPeer(0, b.address, b.port);
      const got = collect(b);
      const bufs = payloads(a.pool, new Array<number>(30).fill(500));
      expect(a.sendBatch(bufs, new Int32Array(30), 30)).toBe(30);
      bufs.forEach((x) => a.pool.put(x));
      await until(() => got.length >= 30, '30 datagrams');
      expect(a.offloadStats()).toMatchObject({ gso: 0, gro: 0, gsoSends: 0 });
      expect(b.offloadStats()).toMatchObject({ gso: 0, gro: 0, groDatagrams: 0 });
    } finally {
      a.close();
      b.close();
    }
  });

  it('reads SECTUNNEL_UDP_OFFLOAD when the option is absent', () => {
    expect(offloadOption(undefined, undefined)).toEqual({ gso: true, gro: true });
    expect(offloadOption(undefined, '0')).toEqual({ gso: false, gro: false });
    expect(offloadOption(undefined, 'gso')).toEqual({ gso: true, gro: false });
    expect(offloadOption(undefined, 'gro')).toEqual({ gso: false, gro: true });
    expect(offloadOption(false, '1')).toEqual({ gso: false, gro: false });
    expect(offloadOption({ gso: false, gro: true }, '0')).toEqual({ gso: false, gro: true });
  });
});

/** src/buf, src/io and what they import, transpiled to ES modules in a temporary folder (for a child process). */
function childTree(): string {
  const out = ioChildTree('st-h8u-child-');
  return out;
}

const ADDON = process.env.SECTUNNEL_NATIVE_PATH ?? join(ROOT, 'native-fallback', 'build', 'Release', 'sectunnel_native.node');

describe('UDP GSO refused by the kernel', () => {
  itWith(['root', 'netns', 'native'], 'a run of segments above the path MTU is sent plainly (fragmented), later smaller runs still use GSO', async () => {
    const ns = `st-h8u-gso-${process.pid}`;
    const tree = childTree();
    await sh('ip', ['netns', 'add', ns]);
    try {
      await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'mtu', '1100', 'up']);
      writeFileSync(
        join(tree, 'child.js'),
        `
        import { UdpTransport } from './src/io/udp.js';
        const a = await UdpTransport.bind({ impl: 'native', address: '127.0.0.1', offload: { gso: true, gro: false } });
        const b = await UdpTransport.bind({ impl: 'native', address: '127.0.0.1', offload: { gso: false, gro: true } });
        a.setPeer(0, b.address, b.port);
        const got = [];
        b.onPackets((bufs, n) => { for (let i = 0; i < n; i++) { got.push(bufs[i].view().slice()); b.pool.put(bufs[i]); } });
        const send = (sizes) => {
          const bufs = sizes.map((n, k) => { const x = a.pool.get(); x.bytes.fill(k & 0xff, x.append(n), x.end); x.bytes[x.start] = n & 0xff; return x; });
          const sent = a.sendBatch(bufs, new Int32Array(sizes.length), sizes.length);
          bufs.forEach((x) => a.pool.put(x));
          return sent;
        };
        // 1200 + 28 > MTU 1100: the kernel refuses the GSO message (EINVAL); then 8 × 500 fit.
        const sent = [send(new Array(8).fill(1200)), send(new Array(8).fill(500))];
        while (got.length < 16) await new Promise((r) => setTimeout(r, 5));
        console.log(JSON.stringify({ sent, lengths: got.map((g) => g.length), heads: got.map((g) => g[0]), gso: a.offloadStats(), tx: a.stats(), gro: b.offloadStats() }));
        a.close(); b.close();
      `,
      );
      const { code, stdout, stderr } = await runChild(['ip', 'netns', 'exec', ns, process.execPath, join(tree, 'child.js')], { SECTUNNEL_NATIVE_PATH: ADDON });
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const r = JSON.parse(stdout) as {
        sent: number[];
        lengths: number[];
        heads: number[];
        gso: Record<string, number>;
        tx: Record<string, number>;
        gro: Record<string, number>;
      };
      expect(r.sent).toEqual([8, 8]);
      expect(r.lengths).toEqual([...new Array<number>(8).fill(1200), ...new Array<number>(8).fill(500)]);
      expect(r.heads).toEqual([...new Array<number>(8).fill(1200 & 0xff), ...new Array<number>(8).fill(500 & 0xff)]);
      expect(r.gso).toMatchObject({ gso: 1, gsoFallbacks: 1, gsoSends: 1, gsoSegments: 8 });
      expect(['EINVAL', 'EMSGSIZE']).toContain({ 22: 'EINVAL', 90: 'EMSGSIZE' }[r.gso.gsoErrno!]);
      expect(r.tx).toMatchObject({ txPackets: 16, txErrors: 0, txDropped: 0 });
      expect(r.gro).toMatchObject({ groDatagrams: 1, groSegments: 8 });
    } finally {
      await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
      rmSync(tree, { recursive: true, force: true });
    }
  });
});
