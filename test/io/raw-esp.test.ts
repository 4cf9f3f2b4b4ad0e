// src/io/raw-esp.ts: ESP as IP protocol 50 between network namespaces. Raw
// sockets live in the namespace of the process that opens them, so every
// transport runs in a child process (`ip netns exec`) over a transpiled copy of
// src/; children exchange configs and results through JSON files. Namespaces
// are st-raw-…, removed after the file (also on failure, by World).
import { readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HEADROOM_BYTES } from '../../src/buf/constants.js';
import { PacketPool } from '../../src/buf/pool.js';
import { World, type NsProcess } from '../../src/io/netns.js';
import { RawEspTransport, errnoFromMessage, isDropErrno } from '../../src/io/raw-esp.js';
import { IoError } from '../../src/io/tap.js';
import { itWith } from '../helpers/tools.js';
import { ioChildTree } from '../helpers/child-tree.js';

const ROOT = resolve(__dirname, '..', '..');

/** The child: one transport per process, driven by a JSON config file (see the roles below). */
const CHILD = `
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PacketPool } from './src/buf/pool.js';
import { RawEspTransport } from './src/io/raw-esp.js';
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pool = new PacketPool(cfg.pool ?? {});

if (cfg.role === 'recv') {
  // Collects until 'expect' packets are accounted for (delivered or counted as dropped), or SIGTERM.
  const t = await RawEspTransport.bind({ address: cfg.address, family: cfg.family, pool });
  for (const [i, a] of cfg.peers ?? []) t.setPeer(i, a);
  const got = [];
  const held = [];
  let finished = false;
  const accounted = () => { const s = t.stats(); return got.length + s.poolExhausted + s.rxTruncated + s.rxOtherDestination; };
  const finish = () => {
    if (finished) return;
    finished = true;
    clearInterval(poll);
    const stats = t.stats();
    t.close();
    held.forEach((b) => pool.put(b));
    writeFileSync(cfg.out, JSON.stringify({ got, stats, poolAvailable: pool.available, poolCapacity: pool.capacity }));
    console.log('done');
  };
  t.onPackets((bufs, n, meta) => {
    for (let i = 0; i < n; i++) {
      const b = bufs[i];
      got.push({ hex: Buffer.from(b.view()).toString('hex'), start: b.start, family: meta.family(i), address: meta.address(i), port: meta.port(i), peer: meta.peer(i) });
      if (cfg.hold) held.push(b); else pool.put(b);
    }
  });
  const poll = setInterval(() => { if (accounted() >= cfg.expect) finish(); }, 10);
  process.on('SIGTERM', finish);
  console.log('ready');
} else if (cfg.role === 'send') {
  // Sends cfg.batches ({peer, hex[]}) one sendBatch each, waiting for the kernel between batches.
  const t = await RawEspTransport.bind({ family: cfg.family, pool, sendQueuePackets: cfg.sendQueuePackets });
  for (const [i, a] of cfg.peers) t.setPeer(i, a);
  const returns = [];
  let total = 0;
  const settled = () => { const s = t.stats(); return s.txPackets + s.txErrors + s.txDropped; };
  for (const batch of cfg.batches) {
    const bufs = batch.hex.map((h) => {
      const b = pool.get();
      b.load(Buffer.from(h, 'hex'));
      return b;
    });
    if (batch.foreign) { const f = new PacketPool({ packets: 1 }).get(); f.append(10); bufs.push(f); }
    const peers = batch.peers ?? new Array(bufs.length).fill(batch.peer);
    returns.push(t.sendBatch(bufs, peers, bufs.length));
    bufs.forEach((b) => { if (b.bytes.buffer === pool.slab.buffer) pool.put(b); }); // sendBatch copied them
    total += bufs.length;
    for (let w = 0; settled() < total && w < 4000; w++) await sleep(5);
  }
  const stats = t.stats();
  t.close();
  writeFileSync(cfg.out, JSON.stringify({ returns, stats }));
  console.log('sent');
} else if (cfg.role === 'send-with-options') {
  // A plain raw-socket sender with IPv4 options, so the receiver sees a header longer than 20 octets.
  const raw = createRequire(import.meta.url)('raw-socket');
  const s = raw.createSocket({ protocol: 50, addressFamily: raw.AddressFamily.IPv4 });
  s.on('error', (e) => console.log('error', e.message));
  const o = Buffer.from(cfg.options, 'hex');
  s.setOption(raw.SocketLevel.IPPROTO_IP, raw.SocketOption.IP_OPTIONS, o, o.length);
  const b = Buffer.from(cfg.hex, 'hex');
  globalThis.sock = s; // raw-socket closes a socket that is garbage collected
  s.send(b, 0, b.length, cfg.to, (err) => { console.log(err ? 'error ' + err.message : 'sent'); s.close(); });
} else if (cfg.role === 'unreferenced') {
  // Nothing but the transport's own listener refers to it; collections must not close it.
  {
    const t = await RawEspTransport.bind({ family: 4, pool });
    t.onPackets((bufs, n) => { for (let i = 0; i < n; i++) pool.put(bufs[i]); console.log('got', n); t.close(); });
  }
  for (let i = 0; i < 5; i++) { globalThis.gc(); await sleep(10); }
  console.log('ready');
} else if (cfg.role === 'open-close') {
  // Opens a v4 and a v6 transport, receives one packet on the v4 one, closes both: must exit by itself.
  const t4 = await RawEspTransport.bind({ family: 4, pool });
  const t6 = await RawEspTransport.bind({ family: 6, pool });
  t6.onPackets(() => {});
  t4.onPackets((bufs, n) => {
    for (let i = 0; i < n; i++) pool.put(bufs[i]);
    t4.close();
    t6.close();
    t4.close();
    let threw = '';
    try { t4.setPeer(0, '192.0.2.1'); } catch (e) { threw = e.code; }
    console.log('closed', n, threw, t4.sendBatch([pool.get()], [0], 1), pool.available === pool.capacity - 1);
  });
  console.log('ready');
}
`;

/** Transpiles the modules the child needs into a temporary tree with the child script. */
function childTree(): string {
  const out = ioChildTree('st-raw-child-', { 'child.js': CHILD });
  return out;
}

interface Env {
  world: World;
  tree: string;
  a: string;
  b: string;
}

let env: Promise<Env> | null = null;
let cfgSeq = 0;

/**
 * Namespaces st-raw-two-a and st-raw-two-b joined by veth e0 (MTU 1500): a has 192.0.2.1 and
 * 2001:db8::1; b has 192.0.2.2, 192.0.2.12 and 2001:db8::2. Built once, on first use.
 */
function setup(): Promise<Env> {
  env ??= (async () => {
    const world = await World.create('st-raw-two-');
    const tree = childTree();
    const a = await world.addNamespace('a');
    const b = await world.addNamespace('b');
    await world.addVeth({ ns: a, name: 'e0', mtuBytes: 1500 }, { ns: b, name: 'e0', mtuBytes: 1500 });
    for (const [ns, addrs] of [
      [a, ['192.0.2.1/24', '2001:db8::1/64']],
      [b, ['192.0.2.2/24', '192.0.2.12/24', '2001:db8::2/64']],
    ] as const) {
      for (const cidr of addrs) await world.addAddress(ns, 'e0', cidr);
      await world.linkUp(ns, 'e0');
    }
    await world.waitForPing(a, '192.0.2.2', 20_000);
    await world.waitForPing(a, '2001:db8::2', 20_000);
    return { world, tree, a, b };
  })();
  return env;
}

afterAll(async () => {
  if (!env) return;
  const e = await env.catch(() => null);
  if (e) rmSync(e.tree, { recursive: true, force: true });
  if (e) await e.world.destroy();
});

/** Starts the child in `ns` with `cfg` (its `out` file is added); resolves once it printed `ready`, if `waitReady`. */
async function start(e: Env, ns: string, cfg: Record<string, unknown>, waitReady: boolean): Promise<Child> {
  const n = cfgSeq++;
  const out = join(e.tree, `out-${n}.json`);
  const cfgPath = join(e.tree, `cfg-${n}.json`);
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, out }));
  const proc = e.world.spawn(ns, process.execPath, ['--expose-gc', join(e.tree, 'child.js'), cfgPath], {
    env: { NODE_PATH: join(ROOT, 'node_modules') },
  });
  // 'close' comes after 'exit' once stdout and stderr are drained.
  const closed = new Promise<void>((r) => proc.child.once('close', () => r()));
  if (waitReady) await proc.waitForOutput(/ready/, 30_000);
  return { proc, out, closed };
}

interface Child {
  proc: NsProcess;
  out: string;
  closed: Promise<void>;
}

/** Waits for the child to exit by itself (SIGKILL after 30 s as a guard) and returns its exit, result file and output. */
async function finished(p: Child): Promise<{ code: number | null; signal: string | null; result: any; output: string }> {
  const guard = setTimeout(() => p.proc.signal('SIGKILL'), 30_000);
  const exit = await p.proc.exited;
  await p.closed;
  clearTimeout(guard);
  const result = existsSync(p.out) ? JSON.parse(readFileSync(p.out, 'utf8')) : null;
  return { code: exit.code, signal: exit.signal, result, output: p.proc.output() };
}

/** `count` deterministic ESP-looking payloads of the given sizes: SPI 0x1000+tag, then bytes from a seeded generator. */
function payloads(tag: number, sizes: number[]): string[] {
  let x = 0x9e3779b9 ^ tag;
  return sizes.map((n, i) => {
    const b = Buffer.alloc(n);
    for (let k = 0; k < n; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b[k] = x & 0xff;
    }
    if (n >= 8) b.writeUInt32BE(0x1000 + tag * 1000 + i, 0);
    return b.toString('hex');
  });
}

const sorted = (xs: string[]): string[] => [...xs].sort();

describe('RawEspTransport between two namespaces', () => {
  for (const [family, src, dst, maxPayload] of [
    [4, '192.0.2.1', '192.0.2.2', 1480],
    [6, '2001:db8::1', '2001:db8::2', 1460],
  ] as const) {
    itWith(['netns'], `IPv${family}: batches of 1, 7 and 64 packets of 8..${maxPayload} octets arrive byte-exact, with source ${src} and its peer index`, async () => {
      const e = await setup();
      const sizes = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 8 + ((i * 977 + seed * 131) % (maxPayload - 7)));
      const batches = [
        { peer: 3, hex: payloads(1, [maxPayload]) },
        { peer: 3, hex: payloads(2, sizes(7, 2)) },
        { peer: 3, hex: payloads(3, sizes(64, 3)) },
      ];
      const all = batches.flatMap((x) => x.hex);
      const rx = await start(e, e.b, { role: 'recv', family, address: dst, peers: [[5, src]], expect: all.length }, true);
      const tx = await start(e, e.a, { role: 'send', family, peers: [[3, dst]], batches }, false);
      const sent = await finished(tx);
      expect(sent.code, sent.output).toBe(0);
      expect(sent.result.returns).toEqual([1, 7, 64]);
      expect([sent.result.stats.txPackets, sent.result.stats.txErrors, sent.result.stats.txDropped]).toEqual([72, 0, 0]);
      const got = await finished(rx);
      expect(got.code, got.output).toBe(0);
      const r = got.result;
      expect(r.got.length).toBe(72);
      expect(sorted(r.got.map((g: { hex: string }) => g.hex))).toEqual(sorted(all));
      for (const g of r.got) expect({ family: g.family, address: g.address, port: g.port, peer: g.peer, start: g.start }).toEqual({ family, address: src, port: 0, peer: 5, start: HEADROOM_BYTES });
      expect([r.stats.rxPackets, r.stats.rxBytes, r.stats.rxNotEsp, r.stats.rxTruncated]).toEqual([72, all.reduce((s, h) => s + h.length / 2, 0), 0, 0]);
      expect(r.poolAvailable).toBe(r.poolCapacity);
    });

    itWith(['netns'], `IPv${family}: packets larger than the MTU (4000, 9000 octets) are fragmented by the kernel and arrive whole; one larger than a slot is counted as truncated`, async () => {
      const e = await setup();
      const big = payloads(10 + family, [4000, 9000]);
      const tooBig = payloads(20 + family, [12000]);
      const rx = await start(e, e.b, { role: 'recv', family, expect: 3, peers: [[0, src]] }, true);
      const tx = await start(e, e.a, { role: 'send', family, pool: { packets: 16, slotBytes: 16384 }, peers: [[1, dst]], batches: [{ peer: 1, hex: [...big, ...tooBig] }] }, false);
      const sent = await finished(tx);
      expect(sent.code, sent.output).toBe(0);
      expect(sent.result.stats.txPackets).toBe(3);
      const got = await finished(rx);
      expect(got.code, got.output).toBe(0);
      expect(sorted(got.result.got.map((g: { hex: string }) => g.hex))).toEqual(sorted(big));
      expect(got.result.stats.rxTruncated).toBe(1);
    });
  }

  itWith(['netns'], 'IPv4: the header is stripped by its IHL when the sender adds IP options', async () => {
    const e = await setup();
    const [hex] = payloads(30, [100]);
    const rx = await start(e, e.b, { role: 'recv', family: 4, expect: 1 }, true);
    const tx = await start(e, e.a, { role: 'send-with-options', to: '192.0.2.2', options: '9404000001010100', hex }, false);
    const sent = await finished(tx);
    expect(sent.output).toMatch(/sent/);
    const got = await finished(rx);
    expect(got.result.got.map((g: { hex: string }) => g.hex)).toEqual([hex]);
    expect(got.result.got[0].address).toBe('192.0.2.1');
    expect(got.result.got[0].peer).toBe(-1); // no peer registered
  });

  itWith(['netns'], 'IPv4: a transport bound to 192.0.2.2 drops packets to 192.0.2.12 (counted); a wildcard one in the same namespace gets both', async () => {
    const e = await setup();
    const toBound = payloads(40, [64, 65, 66]);
    const toOther = payloads(41, [70, 71]);
    const bound = await start(e, e.b, { role: 'recv', family: 4, address: '192.0.2.2', expect: 5 }, true);
    const wild = await start(e, e.b, { role: 'recv', family: 4, expect: 5 }, true);
    const tx = await start(e, e.a, {
      role: 'send',
      family: 4,
      peers: [[0, '192.0.2.2'], [1, '192.0.2.12']],
      batches: [{ peers: [0, 1, 0, 1, 0], hex: [toBound[0], toOther[0], toBound[1], toOther[1], toBound[2]] }],
    }, false);
    expect((await finished(tx)).result.stats.txPackets).toBe(5);
    const b = (await finished(bound)).result;
    const w = (await finished(wild)).result;
    expect(sorted(b.got.map((g: { hex: string }) => g.hex))).toEqual(sorted(toBound));
    expect(b.stats.rxOtherDestination).toBe(2);
    expect(sorted(w.got.map((g: { hex: string }) => g.hex))).toEqual(sorted([...toBound, ...toOther]));
    expect(w.stats.rxOtherDestination).toBe(0);
  });

  itWith(['netns'], 'a full pool drops and counts (poolExhausted) instead of allocating', async () => {
    const e = await setup();
    const hex = payloads(50, new Array<number>(10).fill(200));
    const rx = await start(e, e.b, { role: 'recv', family: 4, expect: 10, hold: true, pool: { packets: 4, slotBytes: 1024 } }, true);
    const tx = await start(e, e.a, { role: 'send', family: 4, peers: [[0, '192.0.2.2']], batches: [{ peer: 0, hex }] }, false);
    expect((await finished(tx)).result.stats.txPackets).toBe(10);
    const r = (await finished(rx)).result;
    expect(r.got.length).toBe(4);
    expect(r.stats.poolExhausted).toBe(6);
    expect(r.poolAvailable).toBe(r.poolCapacity);
  });

  itWith(['netns'], 'send errors are counted, not thrown: unknown peer and foreign buffer (txErrors), a full send queue (txDropped)', async () => {
    const e = await setup();
    const hex = payloads(60, [40, 41, 42, 43, 44]);
    const rx = await start(e, e.b, { role: 'recv', family: 4, expect: 3 }, true);
    const tx = await start(e, e.a, {
      role: 'send',
      family: 4,
      sendQueuePackets: 2,
      peers: [[0, '192.0.2.2']],
      batches: [
        { peers: [0, 9, 0, 0, 0], hex, foreign: false },
        { peers: [0, 0, 0], hex: [hex[0], hex[1]], foreign: true },
      ],
    }, false);
    const s = await finished(tx);
    expect(s.code, s.output).toBe(0);
    // batch 1: two queued, peer 9 unknown (error), two beyond the 2-packet queue (dropped);
    // batch 2 (after the queue drained): two queued, a buffer of another pool (error).
    expect(s.result.returns[0]).toBe(2);
    expect(s.result.stats.txDropped).toBe(2);
    expect(s.result.returns[1]).toBe(2);
    expect(s.result.stats.txErrors).toBe(2); // peer 9, and the foreign buffer
    expect(s.result.stats.txPackets).toBe(4);
    const r = await finished(rx);
    expect(r.result.got.length).toBeGreaterThanOrEqual(3);
  });

  itWith(['netns'], 'a process that opens IPv4 and IPv6 transports, receives, and closes them exits by itself; closed transports are inert', async () => {
    const e = await setup();
    const child = await start(e, e.b, { role: 'open-close' }, true);
    const tx = await start(e, e.a, { role: 'send', family: 4, peers: [[0, '192.0.2.2']], batches: [{ peer: 0, hex: payloads(70, [32]) }] }, false);
    await finished(tx);
    const r = await finished(child);
    expect(r.output.trim().split('\n').pop()).toBe('closed 1 ST_IO_CLOSED 0 true');
    expect([r.code, r.signal]).toEqual([0, null]);
  });
});

describe('RawEspTransport lifetime', () => {
  itWith(['netns'], 'an open transport that nobody references survives garbage collection and keeps receiving', async () => {
    const e = await setup();
    const child = await start(e, e.b, { role: 'unreferenced' }, true);
    const tx = await start(e, e.a, { role: 'send', family: 4, peers: [[0, '192.0.2.2']], batches: [{ peer: 0, hex: payloads(90, [32]) }] }, false);
    await finished(tx);
    const r = await finished(child);
    expect(r.output).toMatch(/got 1/);
    expect([r.code, r.signal]).toEqual([0, null]);
  });
});

describe('RawEspTransport across a router with a smaller MTU on the far link', () => {
  let world: World | null = null;
  afterAll(async () => {
    await world?.destroy();
  });

  itWith(['netns'], 'IPv4 (DF clear): the router fragments an oversized packet; IPv6 with the path MTU on the route: the sender fragments so that it fits', async () => {
    const e = await setup();
    world = await World.create('st-raw-mtu-');
    const [ra, rr, rb] = [await world.addNamespace('a'), await world.addNamespace('r'), await world.addNamespace('b')];
    await world.addVeth({ ns: ra, name: 'e0', mtuBytes: 1500 }, { ns: rr, name: 'e0', mtuBytes: 1500 });
    await world.addVeth({ ns: rr, name: 'e1', mtuBytes: 1280 }, { ns: rb, name: 'e0', mtuBytes: 1280 });
    const links: [string, string, string[]][] = [
      [ra, 'e0', ['198.51.100.1/24', '2001:db8:1::1/64']],
      [rr, 'e0', ['198.51.100.254/24', '2001:db8:1::fe/64']],
      [rr, 'e1', ['203.0.113.254/24', '2001:db8:2::fe/64']],
      [rb, 'e0', ['203.0.113.2/24', '2001:db8:2::2/64']],
    ];
    for (const [ns, dev, addrs] of links) {
      for (const cidr of addrs) await world.addAddress(ns, dev, cidr);
      await world.linkUp(ns, dev);
    }
    await world.sysctl(rr, 'net.ipv4.ip_forward', '1');
    await world.sysctl(rr, 'net.ipv6.conf.all.forwarding', '1');
    await world.ip(ra, ['route', 'add', 'default', 'via', '198.51.100.254']);
    await world.ip(ra, ['-6', 'route', 'add', 'default', 'via', '2001:db8:1::fe']);
    await world.ip(rb, ['route', 'add', 'default', 'via', '203.0.113.254']);
    await world.ip(rb, ['-6', 'route', 'add', 'default', 'via', '2001:db8:2::fe']);
    await world.waitForPing(ra, '203.0.113.2', 20_000);
    await world.waitForPing(ra, '2001:db8:2::2', 20_000);

    const inWorld = { ...e, world };
    // IPv4: one send of one 1400-octet packet, and it arrives: DF is clear, so the router fragmented it.
    const [hex4] = payloads(80, [1400]);
    const rx4 = await start(inWorld, rb, { role: 'recv', family: 4, expect: 1 }, true);
    const tx4 = await start(inWorld, ra, { role: 'send', family: 4, peers: [[0, '203.0.113.2']], batches: [{ peer: 0, hex: [hex4] }] }, false);
    expect((await finished(tx4)).result.returns).toEqual([1]);
    const r4 = await finished(rx4);
    expect(r4.result.got.map((g: { hex: string }) => g.hex)).toEqual([hex4]);
    expect(r4.result.got[0].address).toBe('198.51.100.1');

    // IPv6: the raw socket does not learn the path MTU from Packet Too Big (see raw-esp.ts), so the
    // route to the peer carries it; the sender fragments to it: one send, and it arrives.
    await world.ip(ra, ['-6', 'route', 'add', '2001:db8:2::2/128', 'via', '2001:db8:1::fe', 'mtu', '1280']);
    const hex6 = payloads(81, [1400, 4000]);
    const rx6 = await start(inWorld, rb, { role: 'recv', family: 6, expect: 2 }, true);
    const tx6 = await start(inWorld, ra, { role: 'send', family: 6, peers: [[0, '2001:db8:2::2']], batches: [{ peer: 0, hex: hex6 }] }, false);
    expect((await finished(tx6)).result.returns).toEqual([2]);
    const r6 = await finished(rx6);
    expect(sorted(r6.result.got.map((g: { hex: string }) => g.hex))).toEqual(sorted(hex6));
    const g6 = r6.result.got[0];
    expect(g6.address).toBe('2001:db8:1::1');
  });
});

describe('RawEspTransport options and helpers (no sockets)', () => {
  it('rejects bad bind options with IoError(ST_IO_OPTION) before opening anything', async () => {
    const bad: Parameters<typeof RawEspTransport.bind>[0][] = [
      { address: 'not-an-ip' },
      { address: '192.0.2.1', family: 6 },
      { family: 5 as 4 },
      { address: '198.18.255.254' }, // not an address of this host
      { batchPackets: 0 },
      { rxOffset: 1 << 20 },
      { sendQueuePackets: 0 },
    ];
    for (const opts of bad) {
      await expect(RawEspTransport.bind({ ...opts, pool: new PacketPool({ packets: 1 }) }), JSON.stringify(opts)).rejects.toMatchObject({
        name: 'IoError',
        code: 'ST_IO_OPTION',
      });
    }
    expect(new IoError('ST_IO_OPTION', 'x')).toBeInstanceOf(Error);
  });

  it('maps strerror texts (raw-socket, libpcap) to errno numbers and classes', () => {
    expect(errnoFromMessage('No buffer space available')).toBe(105);
    expect(errnoFromMessage('send: No buffer space available')).toBe(105);
    expect(errnoFromMessage('Message too long')).toBe(90);
    expect(errnoFromMessage('something else entirely')).toBe(0);
    expect([105, 11, 100, 90, 22].map(isDropErrno)).toEqual([true, true, true, false, false]);
  });
});
