// src/io/attach.ts: attach mode (an AF_PACKET socket of the native addon,
// native-fallback/src/packet.c) on a veth pair whose guest end is in a namespace
// with an address, the other end in a "host" namespace where sectunnel's side
// attaches; veth pairs inside the host namespace for the tests that need a quiet
// link or one to lose. Packet sockets bind in the namespace of the process that
// opens them, so every port runs in a child process (`ip netns exec`) over a
// transpiled copy of src/; configs and results go through JSON files.
// Namespaces are st-att-…, removed after the file.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HEADROOM_BYTES, TAILROOM_BYTES } from '../../src/buf/constants.js';
import { PacketPool } from '../../src/buf/pool.js';
import { AttachPort } from '../../src/io/attach.js';
import { World, type NsProcess } from '../../src/io/netns.js';
import { itWith } from '../helpers/tools.js';
import { ioChildTree } from '../helpers/child-tree.js';

const ROOT = resolve(__dirname, '..', '..');
const NATIVE_PATH = process.env.SECTUNNEL_NATIVE_PATH ?? join(ROOT, 'native-fallback', 'build', 'Release', 'sectunnel_native.node');
const GUEST_MAC = '02:53:54:00:00:01';
const GUEST_IP = '198.18.0.1'; // RFC 2544 benchmarking range, only inside our namespaces
const PEER_MAC = '02:00:00:00:00:02';
const PEER_IP = '198.18.0.2';
/** EtherType of our test frames (IEEE 802 local experimental). */
const MARKER_TYPE = '88b5';
const { ENETDOWN, EMSGSIZE } = osConstants.errno;

/** The child: attach ports driven by a JSON config file (see the roles below). */
const CHILD = `
import { readFileSync, writeFileSync } from 'node:fs';
import { PacketPool } from './src/buf/pool.js';
import { AttachPort } from './src/io/attach.js';
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const pool = new PacketPool(cfg.pool ?? {});
/** The EtherType after any 802.1Q/802.1ad tags. */
const innerType = (b) => {
  let at = b.start + 12;
  while (at + 4 <= b.end && (b.bytes[at] === 0x81 && b.bytes[at + 1] === 0x00 || b.bytes[at] === 0x88 && b.bytes[at + 1] === 0xa8)) at += 4;
  return (b.bytes[at] << 8) | b.bytes[at + 1];
};
const isMarker = (b) => innerType(b) === 0x88b5;
const frame = (bytes) => { const b = pool.get(); b.load(bytes); return b; };
const hex = (b) => Buffer.from(b.view()).toString('hex');
const mac = (s) => s.split(':').map((x) => parseInt(x, 16));
const PEER_MAC = mac('${PEER_MAC}');
const PEER_IP = '${PEER_IP}'.split('.').map(Number);
const same = (a, off, b) => b.every((x, i) => a[off + i] === x);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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
  // Collects marker frames until cfg.expect frames are accounted for (delivered,
  // truncated or dropped by the kernel). With cfg.hold it keeps every buffer,
  // prints 'stalled' once the pool is empty and reading stopped, and gives them
  // all back on SIGUSR2.
  const port = AttachPort.open({ device: cfg.device, pool, inboundOnly: cfg.inboundOnly, captureBufferBytes: cfg.captureBufferBytes });
  const got = [];
  const held = [];
  let hold = cfg.hold === true;
  let stalled = false;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearInterval(poll);
    const stats = port.stats();
    port.close();
    held.forEach((b) => pool.put(b));
    writeFileSync(cfg.out, JSON.stringify({ got, stats, poolAvailable: pool.available, poolCapacity: pool.capacity }));
  };
  port.onFrames((bufs, n) => {
    for (let i = 0; i < n; i++) {
      const b = bufs[i];
      if (isMarker(b)) got.push({ hex: hex(b), start: b.start });
      if (hold) held.push(b); else pool.put(b);
    }
  });
  const poll = setInterval(() => {
    const s = port.stats();
    if (hold && !stalled && pool.available === 0 && s.poolExhausted > 0) { stalled = true; console.log('stalled', got.length); }
    if (got.length + s.rxTruncated + s.rxKernelDrops >= cfg.expect) finish();
  }, 10);
  process.on('SIGUSR2', () => {
    hold = false;
    held.splice(0).forEach((b) => pool.put(b));
    port.refill();
  });
  process.on('SIGTERM', finish);
  console.log('ready');
} else if (cfg.role === 'inject') {
  // Writes cfg.batches (arrays of frame hex), one writeBatch each; a foreign buffer if asked.
  const port = AttachPort.open({ device: cfg.device, pool });
  const returns = [];
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
  // Opens, reads, closes: must exit by itself. Also: a closed port is inert, a
  // missing or down device is an AttachError, and a port closed inside its own
  // frame callback (frames written by a port on the other end of cfg.pair) stops cleanly.
  const port = AttachPort.open({ device: cfg.device, pool });
  port.onFrames((bufs, n) => { for (let i = 0; i < n; i++) pool.put(bufs[i]); });
  await sleep(50);
  port.close();
  port.close();
  let threw = '';
  try { port.onFrames(() => {}); } catch (e) { threw = e.code; }
  const failed = (device) => { try { AttachPort.open({ device, pool }).close(); return 'opened'; } catch (e) { return e.code + (/down/.test(e.message) ? ':down' : ''); } };
  const a = AttachPort.open({ device: cfg.pair[0], pool });
  const b = AttachPort.open({ device: cfg.pair[1], pool });
  let closedInCallback = 0;
  a.onFrames((bufs, n) => {
    for (let i = 0; i < n; i++) pool.put(bufs[i]);
    a.close();
    closedInCallback++;
  });
  const f = frame(Buffer.from(cfg.frameHex, 'hex'));
  while (closedInCallback === 0) { b.writeBatch([f], 1); await sleep(10); }
  pool.put(f);
  b.close();
  console.log('closed', threw, failed('st-att-none0'), failed(cfg.down), closedInCallback, pool.available === pool.capacity);
} else if (cfg.role === 'link-loss') {
  // A port on cfg.device (the test takes that link away) and one on cfg.survivor.
  // After the loss: the error came once, the port stopped, writes are counted
  // drops, and the survivor still reads cfg.expect markers; then both close and
  // the process must exit by itself.
  const lost = AttachPort.open({ device: cfg.device, pool });
  const survivor = AttachPort.open({ device: cfg.survivor, pool });
  const errors = [];
  let got = 0;
  lost.onFrames((bufs, n) => { for (let i = 0; i < n; i++) pool.put(bufs[i]); });
  lost.onError((errno) => {
    errors.push(errno);
    const f = frame(Buffer.from(cfg.frameHex, 'hex'));
    const written = lost.writeBatch([f], 1);
    pool.put(f);
    console.log('lost', errno, written, lost.failedErrno);
  });
  survivor.onFrames((bufs, n) => {
    for (let i = 0; i < n; i++) { if (isMarker(bufs[i])) got++; pool.put(bufs[i]); }
    if (got >= cfg.expect && errors.length > 0) {
      const stats = lost.stats();
      lost.close();
      survivor.close();
      writeFileSync(cfg.out, JSON.stringify({ errors, got, stats, poolAvailable: pool.available, poolCapacity: pool.capacity }));
    }
  });
  console.log('ready');
} else if (cfg.role === 'no-native') {
  try { AttachPort.open({ device: 'lo', pool }); console.log('opened'); } catch (e) { console.log('refused', e.code, e.message); }
}
`;

let tree: string | null = null;

/** Transpiles the modules the child needs into a temporary tree with the child script (once). */
function childTree(): string {
  if (tree) return tree;
  const out = ioChildTree('st-att-child-', { 'child.js': CHILD });
  tree = out;
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

/**
 * A veth pair: `a` in the host namespace, `b` there too or in `bNs`; both ends up unless
 * `up` is false. No addresses and IPv6 off: nothing but the test's frames crosses it.
 */
async function pair(e: Env, a: string, b: string, opts: { bNs?: string; up?: boolean } = {}): Promise<void> {
  const bNs = opts.bNs ?? e.host;
  await e.world.addVeth({ ns: e.host, name: a, mtuBytes: 1500 }, { ns: bNs, name: b, mtuBytes: 1500 });
  if (opts.up !== false) {
    await e.world.linkUp(e.host, a);
    await e.world.linkUp(bNs, b);
  }
}

afterAll(async () => {
  const e = env ? await env.catch(() => null) : null;
  if (tree) rmSync(tree, { recursive: true, force: true });
  if (e) await e.world.destroy();
});

/** Starts the child in `ns` with `cfg` (its `out` file is added); waits for `ready` if asked. */
async function start(e: Env, ns: string, cfg: Record<string, unknown>, waitReady: boolean): Promise<Child> {
  const n = cfgSeq++;
  const out = join(e.tree, `out-${n}.json`);
  const cfgPath = join(e.tree, `cfg-${n}.json`);
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, out }));
  const proc = e.world.spawn(ns, process.execPath, [join(e.tree, 'child.js'), cfgPath], { env: { SECTUNNEL_NATIVE_PATH: NATIVE_PATH } });
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

/** `frameHex` with VLAN tags (`tpid`+`tci` hex each, e.g. '81000064') inserted after the MAC addresses. */
const tagged = (frameHex: string, ...tags: string[]): string => frameHex.slice(0, 24) + tags.join('') + frameHex.slice(24);

const sorted = (xs: string[]): string[] => [...xs].sort();
const hexes = (got: { hex: string }[]): string[] => sorted(got.map((g) => g.hex));

describe('AttachPort on a veth whose other end is a guest', () => {
  itWith(['netns', 'native'], "answers the guest's ARP and ICMP with injected frames so `ping -c1` succeeds and `ip neigh` learns the MAC; injected frames are never read back", async () => {
    const e = await setup();
    const markerHex = markerFrames(1, [60, 100, 1514, 64, 70], 'ff:ff:ff:ff:ff:ff');
    // The guest side counts what arrives from the host: the markers must get there.
    const observer = await start(e, e.guest, { role: 'collect', device: 'eth0', expect: 1_000_000 }, true);
    const responder = await start(e, e.host, { role: 'responder', device: 'vg0', markerHex }, true);
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
    expect(hexes(o.result.got)).toEqual(sorted(markerHex)); // they reached the guest
    expect([s.markersSelf, s.markersOther]).toEqual([0, 0]); // and neither host port read them
    expect(s.starts).toEqual([HEADROOM_BYTES]);
    expect(s.stats.txPackets).toBe(markerHex.length + s.replies);
    expect(s.stats.rxPackets).toBe(s.frames);
    expect([s.stats.txErrors, s.stats.txDropped, s.stats.rxTruncated, s.stats.rxErrors, s.stats.rxKernelDrops]).toEqual([0, 0, 0, 0, 0]);
    expect(s.poolAvailable).toBe(s.poolCapacity);
  });

  itWith(['netns', 'native'], 'frames written in batches of 1, 7 and 64 (60..1514 octets) on the guest end are read byte-exact on the other, the first one included', async () => {
    const e = await setup();
    const sizes = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 60 + ((i * 977 + seed * 131) % (1514 - 59)));
    const batches = [{ hex: markerFrames(2, [1514]) }, { hex: markerFrames(3, sizes(7, 3)) }, { hex: markerFrames(4, sizes(64, 4)) }];
    const all = batches.flatMap((b) => b.hex);
    const rx = await start(e, e.host, { role: 'collect', device: 'vg0', expect: all.length }, true);
    const tx = await start(e, e.guest, { role: 'inject', device: 'eth0', batches }, false);
    const sent = await finished(tx);
    expect([sent.code, sent.signal], sent.output).toEqual([0, null]);
    expect(sent.result.returns).toEqual([1, 7, 64]);
    expect([sent.result.stats.txPackets, sent.result.stats.txBytes]).toEqual([72, all.reduce((s, h) => s + h.length / 2, 0)]);
    expect(sent.result.closedWrite).toBe(0);
    const got = await finished(rx);
    expect([got.code, got.signal], got.output).toEqual([0, null]);
    expect(hexes(got.result.got)).toEqual(sorted(all));
    expect(new Set(got.result.got.map((g: { start: number }) => g.start))).toEqual(new Set([HEADROOM_BYTES]));
    expect(got.result.stats.rxBytes).toBe(all.reduce((s, h) => s + h.length / 2, 0));
    expect(got.result.stats.rxBatches).toBeGreaterThanOrEqual(1);
    expect(got.result.stats.rxBatches).toBeLessThanOrEqual(all.length);
    expect(got.result.poolAvailable).toBe(got.result.poolCapacity);
  });

  itWith(['netns', 'native'], "a guest's 802.1Q, 802.1ad, QinQ and priority tags, which the kernel moves out of the frame, are put back: the frames arrive byte-exact", async () => {
    const e = await setup();
    const [a, b, c, d, big] = markerFrames(13, [60, 80, 100, 120, 1514]);
    const frames = [
      tagged(a!, '81002064'), // 802.1Q VID 100, PCP 1
      tagged(b!, '88a80c80'), // 802.1ad VID 3200
      tagged(c!, '88a80065', '81000066'), // QinQ: the outer tag goes to auxdata, the inner stays
      tagged(d!, '81000000'), // priority tag: VID 0, PCP 0 (TCI 0)
      tagged(big!, '81000fff'), // 1518 octets with the tag
    ];
    const rx = await start(e, e.host, { role: 'collect', device: 'vg0', expect: frames.length }, true);
    const tx = await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: frames }] }, false));
    expect(tx.result.returns, tx.output).toEqual([frames.length]);
    const got = await finished(rx);
    expect(hexes(got.result.got)).toEqual(sorted(frames));
    expect(got.result.stats.rxBytes).toBe(frames.reduce((s, h) => s + h.length / 2, 0));
  });

  itWith(['netns', 'native'], 'counts frames larger than a slot (rxTruncated, the tag included) instead of delivering them', async () => {
    const e = await setup();
    // 512-octet slots leave 512 - HEADROOM - TAILROOM octets for a frame.
    const room = 512 - HEADROOM_BYTES - TAILROOM_BYTES;
    const fit = markerFrames(5, [60, room]);
    const over = markerFrames(6, [room + 1, 1000, room - 2]);
    over[2] = tagged(over[2]!, '81000064'); // room + 2 with its tag
    const rx = await start(e, e.host, { role: 'collect', device: 'vg0', expect: 5, pool: { packets: 16, slotBytes: 512 } }, true);
    await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: [fit[0], over[0], fit[1], over[1], over[2]] }] }, false));
    const r = (await finished(rx)).result;
    expect(hexes(r.got)).toEqual(sorted(fit));
    expect([r.stats.rxTruncated, r.stats.rxPackets]).toEqual([3, 2]);
    expect(r.poolAvailable).toBe(r.poolCapacity);
  });

  itWith(['netns', 'native'], 'an empty pool stops reading without losing frames (they wait in the socket); a full receive buffer drops in the kernel, counted in rxKernelDrops', async () => {
    const e = await setup();
    // vk1 in the guest namespace: frames crossing namespaces leave the sender's socket buffer at once.
    await pair(e, 'vk0', 'vk1', { bNs: e.guest });
    // 4 buffers, all held: reading stops after 4 frames; the other 6 wait and arrive once the buffers come back.
    const ten = markerFrames(7, new Array<number>(10).fill(100));
    const held = await start(e, e.host, { role: 'collect', device: 'vk0', expect: 10, hold: true, pool: { packets: 4, slotBytes: 1024 } }, true);
    await finished(await start(e, e.guest, { role: 'inject', device: 'vk1', batches: [{ hex: ten }] }, false));
    const stall = await held.proc.waitForOutput(/stalled (\d+)/, 30_000);
    expect(stall[1]).toBe('4');
    held.proc.signal('SIGUSR2');
    const h = (await finished(held)).result;
    expect(hexes(h.got)).toEqual(sorted(ten));
    expect(h.stats.poolExhausted).toBeGreaterThanOrEqual(1);
    expect(h.stats.rxKernelDrops).toBe(0);
    expect(h.poolAvailable).toBe(h.poolCapacity);

    // The same with a 64 KiB receive buffer and 200 frames of 1000 octets: most cannot wait.
    const many = markerFrames(8, new Array<number>(200).fill(1000));
    const small = await start(e, e.host, { role: 'collect', device: 'vk0', expect: 200, hold: true, captureBufferBytes: 65536, pool: { packets: 4, slotBytes: 2048 } }, true);
    await finished(await start(e, e.guest, { role: 'inject', device: 'vk1', batches: [{ hex: many }] }, false));
    await small.proc.waitForOutput(/stalled/, 30_000);
    small.proc.signal('SIGUSR2');
    const s = (await finished(small)).result;
    expect(s.stats.rxKernelDrops).toBeGreaterThan(0);
    expect(s.got.length + s.stats.rxKernelDrops).toBe(200);
    const sent = new Set(many);
    expect(s.got.every((g: { hex: string }) => sent.has(g.hex))).toBe(true);
    expect(new Set(s.got.map((g: { hex: string }) => g.hex)).size).toBe(s.got.length);
    expect(s.poolAvailable).toBe(s.poolCapacity);
  });

  itWith(['netns', 'native'], 'injection failures are counted, not thrown: a frame over the MTU and a buffer of another pool (txErrors)', async () => {
    const e = await setup();
    const ok = markerFrames(9, [80]);
    const tooBig = markerFrames(9, [1600]); // MTU 1500 + 14 < 1600
    const tx = await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: [tooBig[0], ok[0], tooBig[0]], foreign: true }] }, false);
    const s = await finished(tx);
    expect([s.code, s.signal], s.output).toEqual([0, null]);
    expect(s.result.returns).toEqual([1]);
    expect([s.result.stats.txPackets, s.result.stats.txErrors, s.result.stats.txDropped]).toEqual([1, 3, 0]);
    expect(s.result.stats.lastErrno).toBe(EMSGSIZE);
  });

  itWith(['netns', 'native'], 'a process that attaches, reads and closes exits by itself; a closed port is inert; a missing or down device is an AttachError; closing inside the frame callback is safe', async () => {
    const e = await setup();
    await pair(e, 'vc0', 'vc1');
    await pair(e, 'vd0', 'vd1', { up: false });
    const cfg = { role: 'attach-close', device: 'vg0', pair: ['vc0', 'vc1'], down: 'vd0', frameHex: markerFrames(10, [60])[0] };
    const c = await finished(await start(e, e.host, cfg, false));
    expect(c.output).toMatch(/closed ST_IO_CLOSED ST_IO_ATTACH ST_IO_ATTACH:down 1 true/);
    expect([c.code, c.signal]).toEqual([0, null]);
  });

  itWith(['netns', 'native'], 'inboundOnly: false also reads frames another program sends out of the device; the default does not; neither loses the first frame', async () => {
    const e = await setup();
    const first = markerFrames(11, [60, 61, 62, 63, 64]);
    const fromHost = markerFrames(12, [70, 71, 72]);
    const last = markerFrames(13, [80]);
    const inbound = await start(e, e.host, { role: 'collect', device: 'vg0', expect: first.length + last.length }, true);
    const any = await start(e, e.host, { role: 'collect', device: 'vg0', inboundOnly: false, expect: first.length + fromHost.length + last.length }, true);
    await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: first }] }, false));
    await finished(await start(e, e.host, { role: 'inject', device: 'vg0', batches: [{ hex: fromHost }] }, false));
    await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: last }] }, false));
    const i = await finished(inbound);
    const a = await finished(any);
    expect([i.code, a.code]).toEqual([0, 0]);
    expect(hexes(i.result.got)).toEqual(sorted([...first, ...last]));
    expect(hexes(a.result.got)).toEqual(sorted([...first, ...fromHost, ...last]));
  });

  const losses = [
    { how: 'deleted', act: (e: Env) => e.world.deleteLink(e.host, 'vl0') },
    { how: 'set down', act: (e: Env) => e.world.ip(e.host, ['link', 'set', 'dev', 'vl0', 'down']) },
    {
      how: 'moved to another namespace',
      act: async (e: Env) => {
        const away = await e.world.addNamespace('away');
        await e.world.ip(e.host, ['link', 'set', 'dev', 'vl0', 'netns', away]);
      },
    },
  ];
  for (const { how, act } of losses) {
    itWith(['netns', 'native'], `the attached link ${how}: the port reports ENETDOWN once and stops, writes are counted drops, another port goes on, and the process exits normally`, async () => {
      const e = await setup();
      await pair(e, 'vl0', 'vl1');
      try {
        const markers = markerFrames(14, [60, 70, 80]);
        const frameHex = markerFrames(15, [60])[0];
        const child = await start(e, e.host, { role: 'link-loss', device: 'vl0', survivor: 'vg0', expect: markers.length, frameHex }, true);
        await act(e);
        const lost = await child.proc.waitForOutput(/lost (\d+) (\d+) (\d+)/, 30_000);
        expect(lost.slice(1).map(Number)).toEqual([ENETDOWN, 0, ENETDOWN]);
        await finished(await start(e, e.guest, { role: 'inject', device: 'eth0', batches: [{ hex: markers }] }, false));
        const r = await finished(child);
        expect([r.code, r.signal], r.output).toEqual([0, null]);
        expect(r.result.errors).toEqual([ENETDOWN]);
        expect(r.result.got).toBe(markers.length);
        expect([r.result.stats.rxErrors, r.result.stats.lastErrno, r.result.stats.txDropped]).toEqual([1, ENETDOWN, 1]);
        expect(r.result.poolAvailable).toBe(r.result.poolCapacity);
      } finally {
        if (await e.world.hasLink(e.host, 'vl1')) await e.world.deleteLink(e.host, 'vl1');
      }
    });
  }
});

describe('AttachPort options and requirements (no devices)', () => {
  it('rejects bad options with IoError(ST_IO_OPTION) before opening anything', () => {
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

  it('without the native addon, open fails with IoError(ST_IO_NO_NATIVE) naming why', () => {
    const dir = childTree();
    const cfgPath = join(dir, 'cfg-no-native.json');
    writeFileSync(cfgPath, JSON.stringify({ role: 'no-native' }));
    const r = spawnSync(process.execPath, [join(dir, 'child.js'), cfgPath], { env: { ...process.env, SECTUNNEL_NATIVE: '0' }, encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout, r.stderr).toMatch(/^refused ST_IO_NO_NATIVE .*SECTUNNEL_NATIVE=0/);
    expect(r.status).toBe(0);
  });
});
