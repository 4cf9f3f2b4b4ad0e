// src/io/attach.ts: attach mode (libpcap through `cap`) on a veth pair whose
// guest end is in a namespace with an address, the other end in a "host"
// namespace where sectunnel's side attaches. Capture handles live in the
// namespace of the process that opens them, so every port runs in a child
// process (`ip netns exec`) over a transpiled copy of src/; configs and results
// go through JSON files. Namespaces are st-att-…, removed after the file.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { HEADROOM_BYTES, TAILROOM_BYTES } from '../../src/buf/constants.js';
import { PacketPool } from '../../src/buf/pool.js';
import { AttachPort } from '../../src/io/attach.js';
import { World, type NsProcess } from '../../src/io/netns.js';
import { itWith } from '../helpers/tools.js';

const ROOT = resolve(__dirname, '..', '..');
const GUEST_MAC = '02:53:54:00:00:01';
const GUEST_IP = '198.18.0.1'; // RFC 2544 benchmarking range, only inside our namespaces
const PEER_MAC = '02:00:00:00:00:02';
const PEER_IP = '198.18.0.2';
/** EtherType of our test frames (IEEE 802 local experimental). */
const MARKER_TYPE = '88b5';

/** The child: attach ports driven by a JSON config file (see the roles below). */
const CHILD = `
import { readFileSync, writeFileSync } from 'node:fs';
import { PacketPool } from './src/buf/pool.js';
import { AttachPort } from './src/io/attach.js';
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const pool = new PacketPool(cfg.pool ?? {});
const isMarker = (b) => b.bytes[b.start + 12] === 0x88 && b.bytes[b.start + 13] === 0xb5;
const isWarmup = (b) => b.bytes[b.start + 12] === 0x88 && b.bytes[b.start + 13] === 0xb6;
const frame = (bytes) => { const b = pool.get(); b.load(bytes); return b; };
const hex = (b) => Buffer.from(b.view()).toString('hex');
const mac = (s) => s.split(':').map((x) => parseInt(x, 16));
const PEER_MAC = mac('${PEER_MAC}');
const PEER_IP = '${PEER_IP}'.split('.').map(Number);
const same = (a, off, b) => b.every((x, i) => a[off + i] === x);

/** RFC 1071 checksum of b[start, end). */
function inetChecksum(b, start, end) {
  let s = 0;
  for (let i = start; i < end; i += 2) s += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** A host at PEER_IP/PEER_MAC: ARP reply (RFC 826) or ICMP echo reply (RFC 792) to frame f, else null. */
function respond(f, seen) {
  const type = (f[12] << 8) | f[13];
  if (type === 0x0806 && f.length >= 42 && ((f[20] << 8) | f[21]) === 1 && same(f, 38, PEER_IP)) {
    seen.arp++;
    const r = new Uint8Array(42);
    r.set(f.subarray(6, 12), 0);
    r.set(PEER_MAC, 6);
    r.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2], 12);
    r.set(PEER_MAC, 22);
    r.set(PEER_IP, 28);
    r.set(f.subarray(22, 32), 32);
    return r;
  }
  const ip = 14;
  if (type !== 0x0800 || f.length < ip + 20) return null;
  const ihl = (f[ip] & 15) * 4;
  const total = (f[ip + 2] << 8) | f[ip + 3];
  if (f[ip + 9] !== 1 || !same(f, ip + 16, PEER_IP) || f[ip + ihl] !== 8) return null;
  seen.echo++;
  const r = f.slice(0, ip + total);
  r.set(f.subarray(6, 12), 0);
  r.set(PEER_MAC, 6);
  r.set(f.subarray(ip + 16, ip + 20), ip + 12);
  r.set(f.subarray(ip + 12, ip + 16), ip + 16);
  r[ip + 8] = 64;
  r[ip + 10] = r[ip + 11] = 0;
  const c = inetChecksum(r, ip, ip + ihl);
  [r[ip + 10], r[ip + 11]] = [c >> 8, c & 0xff];
  r[ip + ihl] = 0;
  r[ip + ihl + 2] = r[ip + ihl + 3] = 0;
  const c2 = inetChecksum(r, ip + ihl, ip + total);
  [r[ip + ihl + 2], r[ip + ihl + 3]] = [c2 >> 8, c2 & 0xff];
  return r;
}

if (cfg.role === 'responder') {
  // Answers ARP/ICMP for PEER_IP, injects cfg.markers marker frames, and counts
  // markers seen by itself and by a second port on the same device.
  const port = AttachPort.open({ device: cfg.device, pool });
  const other = AttachPort.open({ device: cfg.device, pool });
  const seen = { arp: 0, echo: 0, frames: 0, markersSelf: 0, markersOther: 0, starts: [], replies: 0 };
  port.onFrames((bufs, n) => {
    const replies = [];
    for (let i = 0; i < n; i++) {
      const b = bufs[i];
      seen.frames++;
      if (!seen.starts.includes(b.start)) seen.starts.push(b.start);
      if (isMarker(b)) seen.markersSelf++;
      const r = respond(b.view(), seen);
      pool.put(b);
      if (r) replies.push(frame(r));
    }
    if (replies.length > 0) seen.replies += port.writeBatch(replies, replies.length);
    replies.forEach((r) => pool.put(r));
  });
  other.onFrames((bufs, n) => {
    for (let i = 0; i < n; i++) { if (isMarker(bufs[i])) seen.markersOther++; pool.put(bufs[i]); }
  });
  const warm = frame(Buffer.from(cfg.warmupHex, 'hex'));
  port.writeBatch([warm], 1); // the guest side's first inbound frame is lost by libpcap (see attach.ts)
  pool.put(warm);
  const markers = cfg.markerHex.map((h) => frame(Buffer.from(h, 'hex')));
  seen.markersWritten = port.writeBatch(markers, markers.length);
  markers.forEach((b) => pool.put(b));
  process.on('SIGTERM', () => {
    const stats = port.stats();
    port.close();
    other.close();
    port.close();
    writeFileSync(cfg.out, JSON.stringify({ ...seen, stats, poolAvailable: pool.available, poolCapacity: pool.capacity }));
  });
  console.log('ready');
} else if (cfg.role === 'collect') {
  // Collects marker frames until cfg.expect frames are accounted for (delivered or counted dropped).
  const port = AttachPort.open({ device: cfg.device, pool, inboundOnly: cfg.inboundOnly, captureBufferBytes: cfg.captureBufferBytes });
  const got = [];
  const held = [];
  let warmups = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearInterval(poll);
    const stats = port.stats();
    port.close();
    held.forEach((b) => pool.put(b));
    writeFileSync(cfg.out, JSON.stringify({ got, warmups, stats, poolAvailable: pool.available, poolCapacity: pool.capacity }));
  };
  port.onFrames((bufs, n) => {
    for (let i = 0; i < n; i++) {
      const b = bufs[i];
      if (isWarmup(b)) warmups++;
      if (isMarker(b)) got.push({ hex: hex(b), start: b.start });
      if (cfg.hold && isMarker(b)) held.push(b); else pool.put(b);
    }
  });
  const poll = setInterval(() => { const s = port.stats(); if (got.length + s.poolExhausted + s.rxTruncated >= cfg.expect) finish(); }, 10);
  process.on('SIGTERM', finish);
  console.log('ready');
} else if (cfg.role === 'inject') {
  // Writes cfg.batches (arrays of frame hex), one writeBatch each; a foreign buffer if asked.
  const port = AttachPort.open({ device: cfg.device, pool });
  const returns = [];
  if (cfg.warmupHex) {
    const warm = frame(Buffer.from(cfg.warmupHex, 'hex'));
    port.writeBatch([warm], 1); // the collector's first inbound frame is lost by libpcap (see attach.ts)
    pool.put(warm);
  }
  for (const batch of cfg.batches) {
    const bufs = batch.hex.map((h) => frame(Buffer.from(h, 'hex')));
    if (batch.foreign) { const f = new PacketPool({ packets: 1 }).get(); f.append(60); bufs.push(f); }
    returns.push(port.writeBatch(bufs, bufs.length));
    bufs.forEach((b) => { if (b.bytes.buffer === pool.slab.buffer) pool.put(b); });
  }
  const stats = port.stats();
  port.close();
  writeFileSync(cfg.out, JSON.stringify({ returns, stats, closedWrite: port.writeBatch([pool.get()], 1) }));
} else if (cfg.role === 'attach-close') {
  // Opens, starts capturing, closes: must exit by itself.
  const port = AttachPort.open({ device: cfg.device, pool });
  port.onFrames((bufs, n) => { for (let i = 0; i < n; i++) pool.put(bufs[i]); });
  await new Promise((r) => setTimeout(r, 50));
  port.close();
  let threw = '';
  try { port.onFrames(() => {}); } catch (e) { threw = e.code; }
  let failed = '';
  try { AttachPort.open({ device: 'st-att-none0', pool }); } catch (e) { failed = e.code; }
  console.log('closed', threw, failed, pool.available === pool.capacity);
} else if (cfg.role === 'attach-wait') {
  const port = AttachPort.open({ device: cfg.device, pool });
  port.onFrames((bufs, n) => { for (let i = 0; i < n; i++) pool.put(bufs[i]); });
  console.log('ready');
  process.on('SIGTERM', () => port.close());
}
`;

/** Transpiles the modules the child needs into a temporary tree with the child script. */
function childTree(): string {
  const out = mkdtempSync(join(tmpdir(), 'st-att-child-'));
  const files = [
    'src/native.ts',
    'src/wire/constants.ts',
    ...readdirSync(join(ROOT, 'src/buf')).filter((f) => f.endsWith('.ts')).map((f) => `src/buf/${f}`),
    'src/io/tap.ts',
    'src/io/udp.ts',
    'src/io/raw-esp.ts',
    'src/io/attach.ts',
  ];
  for (const rel of files) {
    const js = ts.transpileModule(readFileSync(join(ROOT, rel), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const dest = join(out, rel.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  writeFileSync(join(out, 'package.json'), '{"type":"module"}');
  writeFileSync(join(out, 'child.js'), CHILD);
  return out;
}

interface Env {
  world: World;
  tree: string;
  host: string;
  guest: string;
}

interface Child {
  proc: NsProcess;
  out: string;
  closed: Promise<void>;
}

let env: Promise<Env> | null = null;
let cfgSeq = 0;

/**
 * Namespaces st-att-host and st-att-guest (IPv6 off in both, so the links stay quiet)
 * joined by a veth: guest `eth0` (GUEST_MAC, GUEST_IP/24) and host `vg0` (no address).
 * Built once, on first use.
 */
function setup(): Promise<Env> {
  env ??= (async () => {
    const world = await World.create('st-att-');
    const tree = childTree();
    const host = await world.addNamespace('host');
    const guest = await world.addNamespace('guest');
    for (const ns of [host, guest]) {
      await world.sysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1');
      await world.sysctl(ns, 'net.ipv6.conf.default.disable_ipv6', '1');
    }
    await world.addVeth({ ns: guest, name: 'eth0', mac: GUEST_MAC, mtuBytes: 1500 }, { ns: host, name: 'vg0', mtuBytes: 1500 });
    await world.addAddress(guest, 'eth0', `${GUEST_IP}/24`);
    await world.linkUp(guest, 'eth0');
    await world.linkUp(host, 'vg0');
    return { world, tree, host, guest };
  })();
  return env;
}

afterAll(async () => {
  if (!env) return;
  const e = await env.catch(() => null);
  if (e) rmSync(e.tree, { recursive: true, force: true });
  if (e) await e.world.destroy();
});

/** Starts the child in `ns` with `cfg` (its `out` file is added); waits for `ready` if asked. */
async function start(e: Env, ns: string, cfg: Record<string, unknown>, waitReady: boolean): Promise<Child> {
  const n = cfgSeq++;
  const out = join(e.tree, `out-${n}.json`);
  const cfgPath = join(e.tree, `cfg-${n}.json`);
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, out }));
  const proc = e.world.spawn(ns, process.execPath, [join(e.tree, 'child.js'), cfgPath], {
    env: { NODE_PATH: join(ROOT, 'node_modules') },
  });
  const closed = new Promise<void>((r) => proc.child.once('close', () => r()));
  if (waitReady) await proc.waitForOutput(/ready/, 30_000);
  return { proc, out, closed };
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

/** Marker frames (EtherType 0x88b5) of the given sizes from GUEST_MAC to `dst`, distinct by index and seeded content. */
function markerFrames(tag: number, sizes: number[], dst = '02:00:00:00:00:99'): string[] {
  let x = 0x2545f491 ^ tag;
  return sizes.map((n, i) => {
    const b = Buffer.alloc(n);
    for (let k = 14; k < n; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b[k] = x & 0xff;
    }
    b.set(Buffer.from(dst.replace(/:/g, ''), 'hex'), 0);
    b.set(Buffer.from(GUEST_MAC.replace(/:/g, ''), 'hex'), 6);
    b.write(MARKER_TYPE, 12, 'hex');
    b.writeUInt32BE(tag * 1000 + i, 14);
    return b.toString('hex');
  });
}

const sorted = (xs: string[]): string[] => [...xs].sort();

/**
 * A frame of EtherType 0x88b6 that injectors send first: with the `inbound` filter
 * the first frame a port sees after open is lost (libpcap; see attach.ts), so it
 * must not be one the test counts. Collectors count warm-ups apart.
 */
const WARMUP = markerFrames(999, [60])[0]!.replace(/^(.{24})88b5/, '$188b6');

describe('AttachPort on a veth whose other end is a guest', () => {
  itWith(['netns'], "answers the guest's ARP and ICMP with injected frames so `ping -c1` succeeds and `ip neigh` learns the MAC; injected frames are never captured back", async () => {
    const e = await setup();
    const markerHex = markerFrames(1, [60, 100, 1514, 64, 70], 'ff:ff:ff:ff:ff:ff');
    // The guest side counts what arrives from the host: the markers must get there.
    const observer = await start(e, e.guest, { role: 'collect', device: 'eth0', expect: 1_000_000 }, true);
    const responder = await start(e, e.host, { role: 'responder', device: 'vg0', markerHex, warmupHex: WARMUP }, true);
    try {
      await e.world.exec(e.guest, 'ping', ['-n', '-c', '1', '-W', '10', PEER_IP], { timeoutMs: 30_000 });
      const neigh = (await e.world.ip(e.guest, ['neigh', 'show', PEER_IP, 'dev', 'eth0'])).stdout;
      expect(neigh).toContain(`lladdr ${PEER_MAC}`);
    } finally {
      responder.proc.signal('SIGTERM');
      observer.proc.signal('SIGTERM');
    }
    const r = await finished(responder);
    const o = await finished(observer);
    expect([r.code, r.signal], r.output).toEqual([0, null]);
    expect([o.code, o.signal], o.output).toEqual([0, null]);
    const s = r.result;
    expect(s.arp).toBeGreaterThanOrEqual(1);
    expect(s.echo).toBe(1);
    expect(s.replies).toBe(s.arp + s.echo);
    expect(s.markersWritten).toBe(markerHex.length);
    expect(sorted(o.result.got.map((g: { hex: string }) => g.hex))).toEqual(sorted(markerHex)); // they reached the guest
    expect([s.markersSelf, s.markersOther]).toEqual([0, 0]); // and neither host port captured them
    expect(s.starts).toEqual([HEADROOM_BYTES]);
    expect(s.stats.txPackets).toBe(1 + markerHex.length + s.replies); // warm-up, markers, replies
    expect([s.stats.txErrors, s.stats.txDropped, s.stats.rxTruncated]).toEqual([0, 0, 0]);
    expect(s.poolAvailable).toBe(s.poolCapacity);
  });

  itWith(['netns'], 'frames written in batches of 1, 7 and 64 (60..1514 octets) on the guest end are captured byte-exact on the other', async () => {
    const e = await setup();
    const sizes = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 60 + ((i * 977 + seed * 131) % (1514 - 59)));
    const batches = [{ hex: markerFrames(2, [1514]) }, { hex: markerFrames(3, sizes(7, 3)) }, { hex: markerFrames(4, sizes(64, 4)) }];
    const all = batches.flatMap((b) => b.hex);
    // veth has offloads on, so libpcap's ring slots are 64 KiB: 32 MiB holds the 64-frame burst (4 MiB may not).
    const rx = await start(e, e.host, { role: 'collect', device: 'vg0', expect: all.length, captureBufferBytes: 32 << 20 }, true);
    const tx = await start(e, e.guest, { role: 'inject', device: 'eth0', batches, warmupHex: WARMUP }, false);
    const sent = await finished(tx);
    expect([sent.code, sent.signal], sent.output).toEqual([0, null]);
    expect(sent.result.returns).toEqual([1, 7, 64]);
    expect(sent.result.stats.txPackets).toBe(1 + 72); // warm-up and the batches
    expect(sent.result.closedWrite).toBe(0);
    const got = await finished(rx);
    expect([got.code, got.signal], got.output).toEqual([0, null]);
    expect(sorted(got.result.got.map((g: { hex: string }) => g.hex))).toEqual(sorted(all));
    expect(new Set(got.result.got.map((g: { start: number }) => g.start))).toEqual(new Set([HEADROOM_BYTES]));
    expect(got.result.stats.rxBytes).toBe(all.reduce((s, h) => s + h.length / 2, 0));
    expect(got.result.poolAvailable).toBe(got.result.poolCapacity);
  });

  itWith(['netns'], 'counts frames larger than a slot (rxTruncated) and frames finding no buffer (poolExhausted) instead of delivering or allocating', async () => {
    const e = await setup();
    // 512-octet slots leave 512 - HEADROOM - TAILROOM octets for a frame.
    const room = 512 - HEADROOM_BYTES - TAILROOM_BYTES;
    const fit = markerFrames(5, [60, room]);
    const over = markerFrames(6, [room + 1, 1000]);
    const rx = await start(e, e.host, { role: 'collect', device: 'vg0', expect: 4, pool: { packets: 16, slotBytes: 512 } }, true);
    await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', warmupHex: WARMUP, batches: [{ hex: [fit[0], over[0], fit[1], over[1]] }] }, false));
    const r = (await finished(rx)).result;
    expect(sorted(r.got.map((g: { hex: string }) => g.hex))).toEqual(sorted(fit));
    expect(r.stats.rxTruncated).toBe(2);

    const ten = markerFrames(7, new Array<number>(10).fill(100));
    const held = await start(e, e.host, { role: 'collect', device: 'vg0', expect: 10, hold: true, pool: { packets: 4, slotBytes: 1024 } }, true);
    await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', warmupHex: WARMUP, batches: [{ hex: ten }] }, false));
    const h = (await finished(held)).result;
    expect(h.got.length).toBe(4);
    expect(h.stats.poolExhausted).toBe(6);
    expect(h.poolAvailable).toBe(h.poolCapacity);
  });

  itWith(['netns'], 'injection failures are counted, not thrown: a frame over the MTU and a buffer of another pool (txErrors)', async () => {
    const e = await setup();
    const ok = markerFrames(8, [80]);
    const tooBig = markerFrames(9, [1600]); // MTU 1500 + 14 < 1600
    const tx = await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: [ok[0], tooBig[0]], foreign: true }] }, false);
    const s = await finished(tx);
    expect([s.code, s.signal], s.output).toEqual([0, null]);
    expect(s.result.returns).toEqual([1]);
    expect([s.result.stats.txPackets, s.result.stats.txErrors, s.result.stats.txDropped]).toEqual([1, 2, 0]);
    expect(s.result.stats.lastErrno).toBe(90); // EMSGSIZE
  });

  itWith(['netns'], 'a process that attaches, captures and closes exits by itself; a closed port is inert; a missing device is an AttachError', async () => {
    const e = await setup();
    const c = await finished(await start(e, e.host, { role: 'attach-close', device: 'vg0' }, false));
    expect(c.output).toMatch(/closed ST_IO_CLOSED ST_IO_PCAP true/);
    expect([c.code, c.signal]).toEqual([0, null]);
  });

  itWith(['netns'], 'inboundOnly: false also captures frames another program sends out of the device and does not lose the first frame; the default does neither', async () => {
    const e = await setup();
    const first = markerFrames(10, [60, 61, 62, 63, 64]);
    const fromHost = markerFrames(11, [70, 71, 72]);
    const last = markerFrames(12, [80]);
    // The default port: the first frame is lost, the host's frames are not captured.
    const inbound = await start(e, e.host, { role: 'collect', device: 'vg0', expect: first.length - 1 + last.length }, true);
    const any = await start(e, e.host, { role: 'collect', device: 'vg0', inboundOnly: false, expect: first.length + fromHost.length + last.length }, true);
    await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: first }] }, false));
    await finished(await start(e, e.host, { role: 'inject', device: 'vg0', batches: [{ hex: fromHost }] }, false));
    await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: last }] }, false));
    const i = await finished(inbound);
    const a = await finished(any);
    expect([i.code, a.code]).toEqual([0, 0]);
    expect(sorted(i.result.got.map((g: { hex: string }) => g.hex))).toEqual(sorted([...first.slice(1), ...last]));
    expect(sorted(a.result.got.map((g: { hex: string }) => g.hex))).toEqual(sorted([...first, ...fromHost, ...last]));
  });

  itWith(['netns'], 'KNOWN LIMITATION (cap 0.2.1): deleting the attached link aborts the attached process — the daemon must close the port first', async () => {
    const e = await setup();
    await e.world.addVeth({ ns: e.host, name: 'vgx', mtuBytes: 1500 }, { ns: e.host, name: 'vgy', mtuBytes: 1500 });
    await e.world.linkUp(e.host, 'vgx');
    const child = await start(e, e.host, { role: 'attach-wait', device: 'vgx' }, true);
    await e.world.deleteLink(e.host, 'vgx');
    const r = await finished(child);
    expect(r.signal, r.output).toBe('SIGABRT'); // cap's poll callback asserts status == 0 on POLLERR
  });
});

describe('AttachPort options (no devices)', () => {
  it('rejects bad options with IoError(ST_IO_OPTION) before touching libpcap', () => {
    const pool = new PacketPool({ packets: 1 });
    for (const opts of [
      { device: '' },
      { device: 'a-name-longer-than-15' },
      { device: 'bad/name' },
      { device: 'eth0', batchFrames: 0 },
      { device: 'eth0', rxOffset: 1 << 20 },
      { device: 'eth0', captureBufferBytes: 1000 },
    ]) {
      expect(() => AttachPort.open({ ...opts, pool }), JSON.stringify(opts)).toThrow(expect.objectContaining({ name: 'IoError', code: 'ST_IO_OPTION' }));
    }
  });
});
