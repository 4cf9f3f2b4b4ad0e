// src/io/udp.ts and src/io/udp-dgram.ts: the same suite runs over the native
// transport (recvmmsg/sendmmsg) and the node:dgram fallback, on loopback only.
import { describe, expect, it } from 'vitest';
import type { PacketBuf } from '../../src/buf/packet-buf.js';
import { PacketPool } from '../../src/buf/pool.js';
import { IoError } from '../../src/io/tap.js';
import { UdpTransport, formatIp, parseIp, type UdpBindOptions } from '../../src/io/udp.js';
import { itWith } from '../helpers/tools.js';
import { payloads } from '../helpers/payloads.js';

/** Resolves when cond() holds; rejects with `what` after 20 s (a guard against hangs, not a timing assertion). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !cond(); waited += 5) {
    if (waited > 20_000) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** 64 distinct sizes from 1 to 1500 octets. */
const SIZES = Array.from({ length: 64 }, (_, i) => 1 + Math.floor((i * 1499) / 63));

interface Received {
  data: Uint8Array;
  family: number;
  address: string;
  port: number;
  peer: number;
}

/** Collects copies of everything `t` receives, returning each buffer to the pool. */
function collect(t: UdpTransport): Received[] {
  const got: Received[] = [];
  t.onPackets((bufs, count, meta) => {
    for (let i = 0; i < count; i++) {
      const b = bufs[i]!;
      got.push({ data: b.view().slice(), family: meta.family(i), address: meta.address(i), port: meta.port(i), peer: meta.peer(i) });
      t.pool.put(b);
    }
  });
  return got;
}

for (const impl of ['native', 'dgram'] as const) {
  const reqs = impl === 'native' ? (['native'] as const) : ([] as const);
  const bind = (o: UdpBindOptions): Promise<UdpTransport> => UdpTransport.bind({ ...o, impl });

  describe(`UdpTransport (${impl})`, () => {
    for (const [family, loopback] of [
      [4, '127.0.0.1'],
      [6, '::1'],
    ] as const) {
      itWith([...reqs], `exchanges a batch of 64 datagrams of 1..1500 octets over ${loopback}, byte-exact, with their source`, async () => {
        const pool = new PacketPool({ packets: 512 });
        const a = await bind({ address: loopback, pool });
        const b = await bind({ address: loopback, pool });
        try {
          expect(a.impl).toBe(impl);
          expect([a.family, a.address]).toEqual([family, loopback]);
          expect(a.port).toBeGreaterThan(0);
          a.setPeer(3, b.address, b.port);
          b.setPeer(7, a.address, a.port);
          const got = collect(b);
          const bufs = payloads(pool, SIZES);
          const sent = bufs.map((x) => x.view().slice());
          expect(a.sendBatch(bufs, new Int32Array(64).fill(3), 64)).toBe(64);
          bufs.forEach((x) => pool.put(x));
          await until(() => got.length >= 64, `64 datagrams at ${loopback}`);

          const bySize = new Map(got.map((r) => [r.data.length, r]));
          expect([...bySize.keys()].sort((x, y) => x - y)).toEqual(SIZES);
          for (const s of sent) expect(bySize.get(s.length)!.data).toEqual(s);
          for (const r of got) expect({ family: r.family, address: r.address, port: r.port, peer: r.peer }).toEqual({ family, address: loopback, port: a.port, peer: 7 });
          const sa = a.stats();
          const sb = b.stats();
          expect([sa.txPackets, sa.txBytes]).toEqual([64, SIZES.reduce((x, y) => x + y)]);
          expect([sb.rxPackets, sb.rxBytes, sb.rxTruncated, sb.rxErrors]).toEqual([64, SIZES.reduce((x, y) => x + y), 0, 0]);
        } finally {
          a.close();
          b.close();
        }
        expect(pool.available).toBe(pool.capacity);
      });
    }

    itWith([...reqs], 'reports peer -1 for a source that is not registered, and the first index of one registered twice', async () => {
      const a = await bind({ address: '127.0.0.1' });
      const b = await bind({ address: '127.0.0.1' });
      const c = await bind({ address: '127.0.0.1' });
      try {
        b.setPeer(5, a.address, a.port);
        b.setPeer(2, a.address, a.port);
        b.setPeer(9, c.address, c.port + 1 > 65535 ? 1 : c.port + 1); // c's address, another port
        const got = collect(b);
        a.setPeer(0, b.address, b.port);
        c.setPeer(0, b.address, b.port);
        const [x] = payloads(a.pool, [10]);
        const [y] = payloads(c.pool, [20]);
        expect(a.sendBatch([x!], [0], 1)).toBe(1);
        expect(c.sendBatch([y!], [0], 1)).toBe(1);
        await until(() => got.length >= 2, 'two datagrams');
        const peers = Object.fromEntries(got.map((r) => [r.port, r.peer]));
        expect(peers).toEqual({ [a.port]: 2, [c.port]: -1 });
        b.clearPeer(2);
        got.length = 0;
        expect(a.sendBatch([x!], [0], 1)).toBe(1);
        await until(() => got.length >= 1, 'one datagram');
        expect(got[0]!.peer).toBe(5);
      } finally {
        [a, b, c].forEach((t) => t.close());
      }
    });

    itWith([...reqs], 'drops and counts a datagram larger than its slot, delivering the others', async () => {
      const small = new PacketPool({ packets: 80, slotBytes: 512 });
      const a = await bind({ address: '127.0.0.1' });
      const b = await bind({ address: '127.0.0.1', pool: small, rxOffset: 0 });
      try {
        a.setPeer(1, b.address, b.port);
        const got = collect(b);
        const bufs = payloads(a.pool, [100, 513, 512, 1400, 7]);
        expect(a.sendBatch(bufs, [1, 1, 1, 1, 1], 5)).toBe(5);
        await until(() => b.stats().rxTruncated >= 2 && got.length >= 3, 'three datagrams and two truncated');
        expect(got.map((r) => r.data.length).sort((x, y) => x - y)).toEqual([7, 100, 512]);
        expect(b.stats().rxTruncated).toBe(2);
      } finally {
        a.close();
        b.close();
      }
      expect(small.available).toBe(small.capacity);
    });

    itWith([...reqs], 'counts send errors (unknown peer, foreign buffer) without throwing', async () => {
      const a = await bind({ address: '127.0.0.1' });
      const b = await bind({ address: '127.0.0.1' });
      try {
        a.setPeer(1, b.address, b.port);
        const got = collect(b);
        const foreign = new PacketPool({ packets: 1 }).get()!;
        foreign.append(10);
        const [ok] = payloads(a.pool, [30]);
        expect(a.sendBatch([ok!, ok!, foreign, ok!], [1, 4, 1, 65535], 4)).toBe(1);
        expect(a.stats().txErrors).toBe(3);
        await until(() => got.length >= 1, 'the one good datagram');
        expect(got.map((r) => r.data.length)).toEqual([30]);
      } finally {
        a.close();
        b.close();
      }
    });

    itWith([...reqs], 'stops reading when the pool runs dry and loses nothing once buffers come back (dgram: counts what it dropped)', async () => {
      const pool = new PacketPool({ packets: 70, slotBytes: 512 });
      // Without offloads: a GRO receiver may take a whole GSO batch at once (udp-offload.test.ts).
      const sender = await bind({ address: '127.0.0.1', offload: false });
      const b = await bind({ address: '127.0.0.1', pool, offload: false });
      const held: PacketBuf[] = [];
      try {
        sender.setPeer(0, b.address, b.port);
        b.onPackets((bufs, count) => {
          for (let i = 0; i < count; i++) held.push(bufs[i]!);
        });
        for (let round = 0; round < 2; round++) {
          const bufs = payloads(sender.pool, new Array<number>(64).fill(100));
          expect(sender.sendBatch(bufs, new Int32Array(64), 64)).toBe(64);
          bufs.forEach((x) => sender.pool.put(x));
        }
        await until(() => held.length + b.stats().poolExhausted >= 70, 'the pool to run dry');
        if (impl === 'native') {
          await until(() => b.stats().poolExhausted >= 1, 'the reader to stall');
          let total = held.length;
          expect(total).toBe(70);
          held.splice(0).forEach((x) => pool.put(x));
          b.refill();
          await until(() => {
            total += held.length;
            held.splice(0).forEach((x) => pool.put(x));
            return total >= 128;
          }, 'the rest after buffers came back');
          expect(total).toBe(128);
        } else {
          await until(() => held.length + b.stats().poolExhausted >= 128, 'all 128 accounted for');
          expect(held.length).toBe(70);
          expect(b.stats().poolExhausted).toBe(58);
        }
      } finally {
        held.forEach((x) => pool.put(x));
        sender.close();
        b.close();
      }
    });

    itWith([...reqs], 'rejects bad options and peers with IoError, and stays quiet after close', async () => {
      await expect(bind({ address: 'not-an-ip' })).rejects.toMatchObject({ code: 'ST_IO_OPTION' });
      await expect(bind({ address: '::1', family: 4 })).rejects.toMatchObject({ code: 'ST_IO_OPTION' });
      const a = await bind({ address: '127.0.0.1' });
      expect(() => a.setPeer(0, '::1', 4500)).toThrow(IoError);
      expect(() => a.setPeer(65536, '127.0.0.1', 4500)).toThrow(/peer index/);
      expect(() => a.setPeer(0, '127.0.0.1', 0)).toThrow(/port/);
      a.setPeer(0, '127.0.0.1', 9);
      a.close();
      a.close();
      const [x] = payloads(a.pool, [10]);
      expect(a.sendBatch([x!], [0], 1)).toBe(0);
      expect(() => a.setPeer(1, '127.0.0.1', 9)).toThrow(expect.objectContaining({ code: 'ST_IO_CLOSED' }));
    });

    itWith([...reqs], 'reports a failed bind with the address it tried (an address this host does not have)', async () => {
      await expect(bind({ address: '203.0.113.1' })).rejects.toThrow(/203\.0\.113\.1/);
    });
  });
}

describe('IP address text', () => {
  it('parses and formats IPv4 and IPv6 (RFC 5952) addresses', () => {
    const cases: [string, number[], string][] = [
      ['127.0.0.1', [127, 0, 0, 1], '127.0.0.1'],
      ['::1', [...new Array(15).fill(0), 1], '::1'],
      ['2001:DB8:0:0:1:0:0:1', [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], '2001:db8::1:0:0:1'],
      ['fe80::1%eth0', [0xfe, 0x80, ...new Array(13).fill(0), 1], 'fe80::1'],
      ['::ffff:192.0.2.1', [...new Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 1], '::ffff:c000:201'],
      ['1:2:3:4:5:6:7:8', [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8], '1:2:3:4:5:6:7:8'],
    ];
    for (const [text, bytes, canonical] of cases) {
      const p = parseIp(text)!;
      expect([...p.bytes], text).toEqual(bytes);
      expect(formatIp(p.bytes, 0, p.family), text).toBe(canonical);
    }
    expect(parseIp('1.2.3')).toBeNull();
    expect(parseIp('::g')).toBeNull();
  });
});
