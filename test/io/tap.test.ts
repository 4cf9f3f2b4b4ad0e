// src/io/tap.ts: TAP devices through the native addon. The kernel is the peer:
// a TAP moved into a namespace of ours gets an address, `ping` from there sends
// ARP and ICMP into our reader, and our crafted replies must satisfy it.
// Namespaces are named st-io-<pid>-…, interfaces st-io-<pid>…; all are removed.
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect } from 'vitest';
import { HEADROOM_BYTES, TAILROOM_BYTES } from '../../src/buf/constants.js';
import type { PacketBuf } from '../../src/buf/packet-buf.js';
import { PacketPool } from '../../src/buf/pool.js';
import { TapDevice } from '../../src/io/tap.js';
import { itWith } from '../helpers/tools.js';
import { ioChildTree, runChild as runTreeChild } from '../helpers/child-tree.js';

const run = promisify(execFile);
const ROOT = resolve(__dirname, '..', '..');
const TAG = `${process.pid % 1_000_000}`;
const nsName = (what: string): string => `st-io-${TAG}-${what}`;
const ifName = (what: string): string => `st-io-${TAG}${what}`.slice(0, 15);

/** Runs a command; resolves with stdout, rejects (with stderr) on a non-zero exit. */
async function sh(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { timeout: 60_000 })).stdout;
}

async function linkExists(name: string, ns?: string): Promise<boolean> {
  return sh('ip', [...(ns ? ['-n', ns] : []), 'link', 'show', name]).then(
    () => true,
    () => false,
  );
}

/** Runs fn with a fresh namespace that is deleted afterwards, also when fn fails. */
async function withNs(what: string, fn: (ns: string) => Promise<void>): Promise<void> {
  const ns = nsName(what);
  await sh('ip', ['netns', 'add', ns]);
  try {
    await fn(ns);
  } finally {
    await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
}

afterAll(async () => {
  const list = await sh('ip', ['netns', 'list']).catch(() => '');
  for (const line of list.split('\n')) {
    const ns = line.split(' ')[0]!;
    if (ns.startsWith(`st-io-${TAG}-`)) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
  for (const s of ['p', 'k', 'q', 't', 'd', 'l']) await sh('ip', ['link', 'del', ifName(s)]).catch(() => undefined);
});

/** Resolves when cond() holds; rejects after 20 s (a guard against hangs, not a timing assertion). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !cond(); waited += 5) {
    if (waited > 20_000) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** RFC 1071 Internet checksum of b[start, end). */
function inetChecksum(b: Uint8Array, start: number, end: number): number {
  let s = 0;
  for (let i = start; i < end; i += 2) s += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

const PEER_MAC = [0x02, 0, 0, 0, 0, 0x02];
const PEER_IP = [198, 18, 0, 2]; // RFC 2544 benchmarking range, only inside our namespace
const sameBytes = (a: Uint8Array, b: number[]): boolean => b.every((x, i) => a[i] === x);

/**
 * The reply of a host at PEER_IP/PEER_MAC to an Ethernet frame: an ARP reply to
 * a request for PEER_IP (RFC 826), an echo reply to an ICMP echo request to it
 * (RFC 792), else null.
 */
function respond(f: Uint8Array, seen: { arp: number; echo: number }): Uint8Array | null {
  const type = (f[12]! << 8) | f[13]!;
  if (type === 0x0806 && f.length >= 42 && ((f[20]! << 8) | f[21]!) === 1 && sameBytes(f.subarray(38, 42), PEER_IP)) {
    seen.arp++;
    const r = new Uint8Array(42);
    r.set(f.subarray(6, 12), 0); // to the asker
    r.set(PEER_MAC, 6);
    r.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2], 12); // ARP, Ethernet/IPv4, reply
    r.set(PEER_MAC, 22);
    r.set(PEER_IP, 28);
    r.set(f.subarray(22, 32), 32); // target = the asker's MAC and IP
    return r;
  }
  const ip = 14;
  if (type !== 0x0800 || f.length < ip + 20) return null;
  const ihl = (f[ip]! & 15) * 4;
  const total = (f[ip + 2]! << 8) | f[ip + 3]!;
  if (f[ip + 9] !== 1 || !sameBytes(f.subarray(ip + 16, ip + 20), PEER_IP) || f[ip + ihl] !== 8) return null;
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
  r[ip + ihl] = 0; // echo reply
  r[ip + ihl + 2] = r[ip + ihl + 3] = 0;
  const c2 = inetChecksum(r, ip + ihl, ip + total);
  [r[ip + ihl + 2], r[ip + ihl + 3]] = [c2 >> 8, c2 & 0xff];
  return r;
}

/** Answers ARP/ICMP for PEER_IP on `tap`, returning every buffer to the pool. */
function answer(tap: TapDevice): { arp: number; echo: number; frames: number; longest: number; written: number } {
  const seen = { arp: 0, echo: 0, frames: 0, longest: 0, written: 0 };
  const replies: PacketBuf[] = [];
  tap.onFrames((bufs, count) => {
    let m = 0;
    for (let i = 0; i < count; i++) {
      const b = bufs[i]!;
      seen.frames++;
      seen.longest = Math.max(seen.longest, b.length);
      const r = respond(b.view(), seen);
      tap.pool.put(b);
      const out = r && tap.pool.get();
      if (out && out.load(r)) replies[m++] = out;
    }
    seen.written += tap.writeBatch(replies, m);
    for (let i = 0; i < m; i++) tap.pool.put(replies[i]!);
  });
  return seen;
}

/** Moves `tap` into `ns`, gives it 198.18.0.1/24 and brings it up. */
async function plumb(tap: TapDevice, ns: string): Promise<void> {
  await sh('ip', ['link', 'set', tap.name, 'netns', ns]);
  await sh('ip', ['-n', ns, 'addr', 'add', '198.18.0.1/24', 'dev', tap.name]);
  await sh('ip', ['-n', ns, 'link', 'set', tap.name, 'up']);
}

/** Ethernet frames of `n` octets to the broadcast address with the local experimental EtherType 0x88b5. */
function junkFrames(pool: PacketPool, count: number, n = 60): PacketBuf[] {
  return Array.from({ length: count }, () => {
    const b = pool.get()!;
    const f = new Uint8Array(n);
    f.fill(0xff, 0, 6);
    f.set(PEER_MAC, 6);
    f.set([0x88, 0xb5], 12);
    b.load(f);
    return b;
  });
}

describe('TapDevice', () => {
  itWith(['root', 'native'], 'opens a kernel-named TAP with MTU and up flag set, gone after close', async () => {
    const tap = TapDevice.open({ mtuBytes: 1400, up: true });
    try {
      expect(tap.name).toMatch(/^tap\d+$/);
      const link = await sh('ip', ['link', 'show', tap.name]);
      expect(link).toMatch(/mtu 1400/);
      expect(link).toMatch(/<[^>]*\bUP\b[^>]*>/);
    } finally {
      tap.close();
    }
    expect(await linkExists(tap.name)).toBe(false);
    expect(tap.pool.available).toBe(tap.pool.capacity);
  });

  itWith(['root', 'native'], 'a persistent TAP outlives close; reopened as non-persistent it goes with the last close', async () => {
    const name = ifName('p');
    const first = TapDevice.open({ name, persistent: true });
    expect(first.name).toBe(name);
    first.close();
    expect(await linkExists(name)).toBe(true);
    const again = TapDevice.open({ name, persistent: false });
    expect(await linkExists(name)).toBe(true);
    again.close();
    expect(await linkExists(name)).toBe(false);

    const plain = TapDevice.open({ name: ifName('k') });
    plain.close();
    expect(await linkExists(ifName('k'))).toBe(false);
  });

  itWith(['root', 'native'], 'refuses a name longer than 15 octets and a taken name, with the reason', () => {
    expect(() => TapDevice.open({ name: 'st-io-sixteen-ch' })).toThrow(/15 octets/);
    const a = TapDevice.open({ name: ifName('q') });
    try {
      expect(() => TapDevice.open({ name: ifName('q') })).toThrow(/TUNSETIFF .*(busy|Device or resource)/i);
    } finally {
      a.close();
    }
  });

  itWith(['root', 'native', 'netns'], 'answers ARP and ICMP echo in a namespace: ping succeeds and the kernel learns our MAC', async () => {
    await withNs('ping', async (ns) => {
      const tap = TapDevice.open({ name: ifName('t'), pool: new PacketPool({ packets: 256 }) });
      try {
        await plumb(tap, ns);
        const seen = answer(tap);
        await sh('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '10', '198.18.0.2']);
        expect(seen.arp).toBeGreaterThanOrEqual(1);
        expect(seen.echo).toBe(1);
        const neigh = await sh('ip', ['-n', ns, 'neigh', 'show', '198.18.0.2', 'dev', tap.name]);
        expect(neigh).toContain('lladdr 02:00:00:00:00:02');
        const st = tap.stats();
        expect(st.rxPackets).toBe(seen.frames);
        expect(st.rxBatches).toBeGreaterThanOrEqual(2);
        expect([st.txPackets, st.txDropped, st.txErrors]).toEqual([seen.written, 0, 0]);
        expect(seen.written).toBe(seen.arp + seen.echo);
      } finally {
        tap.close();
      }
      expect(tap.pool.available).toBe(tap.pool.capacity);
    });
  });

  itWith(['root', 'native', 'netns'], 'counts a frame larger than its slot as truncated and delivers the ones that fit', async () => {
    await withNs('trunc', async (ns) => {
      const pool = new PacketPool({ packets: 256, slotBytes: 512 });
      const tap = TapDevice.open({ name: ifName('t'), pool });
      const capacity = 512 - HEADROOM_BYTES - TAILROOM_BYTES;
      try {
        await plumb(tap, ns);
        const seen = answer(tap);
        await sh('ip', ['-n', ns, 'neigh', 'replace', '198.18.0.2', 'lladdr', '02:00:00:00:00:02', 'dev', tap.name, 'nud', 'permanent']);
        await sh('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '1', '-s', '1000', '198.18.0.2']).catch(() => undefined);
        await until(() => tap.stats().rxTruncated >= 1, 'a truncated frame');
        await sh('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '10', '-s', '100', '198.18.0.2']);
        expect(seen.echo).toBe(1);
        expect(seen.longest).toBeLessThanOrEqual(capacity);
        expect(tap.stats().rxTruncated).toBe(1);
      } finally {
        tap.close();
      }
    });
  });

  itWith(['root', 'native', 'netns'], 'reports once and stops reading when its namespace (and so the device) is deleted under it', async () => {
    const ns = nsName('gone');
    await sh('ip', ['netns', 'add', ns]);
    const tap = TapDevice.open({ name: ifName('t') });
    const errors: number[] = [];
    try {
      await plumb(tap, ns);
      answer(tap);
      tap.onError((errno) => errors.push(errno));
      await sh('ip', ['netns', 'del', ns]);
      await until(() => errors.length > 0, 'the read error');
      await new Promise((r) => setTimeout(r, 50));
      expect(errors).toHaveLength(1);
      expect([9, 77]).toContain(errors[0]); // libuv's EBADF for EPOLLERR, or read()'s EBADFD
      expect(tap.stats().rxErrors).toBe(1);
      const [frame] = junkFrames(tap.pool, 1);
      expect(tap.writeBatch([frame!], 1)).toBe(0);
      expect(tap.stats().txErrors + tap.stats().txDropped).toBe(1);
      tap.pool.put(frame!);
    } finally {
      tap.close();
      await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
  });

  itWith(['root', 'native', 'netns'], 'counts writes to a down TAP as drops and foreign buffers as errors, without throwing', async () => {
    await withNs('down', async (ns) => {
      const pool = new PacketPool({ packets: 128 });
      const tap = TapDevice.open({ name: ifName('d'), pool });
      try {
        await sh('ip', ['link', 'set', tap.name, 'netns', ns]);
        const frames = junkFrames(pool, 64);
        expect(tap.writeBatch(frames, 64)).toBe(0);
        expect(tap.stats()).toMatchObject({ txPackets: 0, txDropped: 64, txErrors: 0, lastErrno: 5 }); // EIO
        await sh('ip', ['-n', ns, 'link', 'set', tap.name, 'up']);
        const foreign = junkFrames(new PacketPool({ packets: 1 }), 1)[0]!;
        expect(tap.writeBatch([frames[0]!, foreign, frames[1]!], 3)).toBe(2);
        expect(tap.stats()).toMatchObject({ txPackets: 2, txBytes: 120, txDropped: 64, txErrors: 1 });
        frames.forEach((b) => pool.put(b));
      } finally {
        tap.close();
      }
      expect(tap.writeBatch([pool.get()!], 1)).toBe(0); // closed: a counted no-op, no throw
    });
  });
});

/** Transpiles the modules a child process needs (native, buf, wire constants, io) into a temporary tree. */
function childTree(): string {
  const out = ioChildTree('st-io-child-');
  return out;
}

const ADDON = process.env.SECTUNNEL_NATIVE_PATH ?? join(ROOT, 'native-fallback', 'build', 'Release', 'sectunnel_native.node');

/** Runs `script` (an ES module in the transpiled tree) in a child; resolves with its exit code and stdout once it exits. */
async function runChild(script: string, args: string[] = [], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const tree = childTree();
  try {
    writeFileSync(join(tree, 'child.js'), script);
    return await runTreeChild([process.execPath, ...args, join(tree, 'child.js')], { SECTUNNEL_NATIVE_PATH: ADDON, ...env });
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

describe('TapDevice and UdpTransport release everything on close', () => {
  itWith(['root', 'native'], 'a process that reads a TAP and three sockets, then closes them, exits by itself', async () => {
    const r = await runChild(`
      import { TapDevice } from './src/io/tap.js';
      import { UdpTransport } from './src/io/udp.js';
      const tap = TapDevice.open({ name: '${ifName('l')}' });
      tap.onFrames((bufs, n) => { for (let i = 0; i < n; i++) tap.pool.put(bufs[i]); });
      const socks = [
        await UdpTransport.bind({ impl: 'native', address: '127.0.0.1' }),
        await UdpTransport.bind({ impl: 'native', address: '::1' }),
        await UdpTransport.bind({ impl: 'dgram', address: '127.0.0.1' }),
      ];
      let got = 0;
      for (const s of socks) s.onPackets((bufs, n) => { got += n; for (let i = 0; i < n; i++) s.pool.put(bufs[i]); });
      socks[0].setPeer(0, '127.0.0.1', socks[2].port);
      const b = socks[0].pool.get(); b.append(10);
      socks[0].sendBatch([b], [0], 1);
      while (got === 0) await new Promise((r) => setTimeout(r, 5));
      tap.close();
      for (const s of socks) s.close();
      console.log('closed', got);
    `);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('closed 1');
    expect(r.code).toBe(0);
    expect(await linkExists(ifName('l'))).toBe(false);
  });

  itWith(['root', 'native'], 'a TAP handle that is never closed is closed by its finalizer after garbage collection', async () => {
    const r = await runChild(
      `
      import { execFileSync } from 'node:child_process';
      import { TapDevice } from './src/io/tap.js';
      const exists = () => { try { execFileSync('ip', ['link', 'show', '${ifName('l')}'], { stdio: 'ignore' }); return true; } catch { return false; } };
      let tap = TapDevice.open({ name: '${ifName('l')}' });
      const before = exists();
      tap = null;
      for (let i = 0; i < 100 && exists(); i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
      console.log(before, exists());
    `,
      ['--expose-gc'],
    );
    expect(r.stdout.trim()).toBe('true false');
    expect(r.code).toBe(0);
  });

  itWith(['root'], 'without the addon, TapDevice.open fails with ST_IO_NO_NATIVE and UdpTransport falls back to dgram', async () => {
    const r = await runChild(
      `
      import { TapDevice } from './src/io/tap.js';
      import { UdpTransport } from './src/io/udp.js';
      try { TapDevice.open(); } catch (e) { console.log(e.code); }
      const u = await UdpTransport.bind({ address: '127.0.0.1' });
      console.log(u.impl);
      u.close();
    `,
      [],
      { SECTUNNEL_NATIVE: '0' },
    );
    expect(r.stdout.trim().split('\n')).toEqual(['ST_IO_NO_NATIVE', 'dgram']);
    expect(r.code).toBe(0);
  });
});
