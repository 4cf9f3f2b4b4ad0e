/**
 * The demo's traffic between guests: ping (loss, round-trip time) and a short
 * TCP throughput run (iperf3 when installed, else a timed transfer between two
 * small Node scripts). Each runs inside the guest namespaces through DemoWorld.
 */
import type { NsProcess } from '../../io/netns.js';
import type { DemoGuest } from './plan.js';
import type { DemoWorld } from './world.js';

/** What ping reported. */
export interface PingResult {
  transmitted: number;
  received: number;
  lossPercent: number;
  /** Round-trip times in ms; null when nothing came back. */
  rttMinMs: number | null;
  rttAvgMs: number | null;
  rttMaxMs: number | null;
}

/**
 * Reads iputils ping's summary: "5 packets transmitted, 5 received, 0% packet loss"
 * (maybe with "+N errors"), and "rtt min/avg/max/mdev = a/b/c/d ms". Null if absent.
 */
export function parsePing(stdout: string): PingResult | null {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received,(?: \+\d+ errors,)? ([\d.]+)% packet loss/.exec(stdout);
  if (m === null) return null;
  const rtt = /(?:rtt|round-trip) min\/avg\/max(?:\/mdev)? = ([\d.]+)\/([\d.]+)\/([\d.]+)/.exec(stdout);
  return {
    transmitted: Number(m[1]),
    received: Number(m[2]),
    lossPercent: Number(m[3]),
    rttMinMs: rtt ? Number(rtt[1]) : null,
    rttAvgMs: rtt ? Number(rtt[2]) : null,
    rttMaxMs: rtt ? Number(rtt[3]) : null,
  };
}

/** Options of `ping`. */
export interface PingOptions {
  count: number;
  intervalSeconds: number;
  /** Wait for each reply (ping -W). */
  waitSeconds: number;
}

/** Pings `to` from `from` and returns ping's summary; throws if ping printed none (it could not run). */
export async function ping(world: DemoWorld, from: DemoGuest, to: DemoGuest, opts: PingOptions): Promise<PingResult> {
  const args = ['-n', '-q', '-c', String(opts.count), '-i', String(opts.intervalSeconds), '-W', String(opts.waitSeconds), to.ipv4];
  const r = await world.exec(from.ns, 'ping', args, 30_000);
  const parsed = parsePing(r.stdout);
  if (parsed === null) throw new Error(`ping ${to.ipv4} in ${from.ns} printed no summary (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-300)}`);
  return parsed;
}

/** Pings once a second until a reply comes or `timeoutMs` passes; true if one came (warms ARP and the daemons' MAC tables). */
export async function pingUntilReply(world: DemoWorld, from: DemoGuest, to: DemoGuest, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await ping(world, from, to, { count: 1, intervalSeconds: 1, waitSeconds: 1 });
    if (r.received > 0) return true;
    if (Date.now() > deadline) return false;
  }
}

/** A throughput run's result. */
export interface ThroughputResult {
  tool: 'iperf3' | 'node';
  seconds: number;
  /** Octets the receiver got. */
  bytes: number;
  mbitPerSecond: number;
}

const IPERF_PORT = 5201;

/** Whether iperf3 can be run here. */
export async function haveIperf3(world: DemoWorld, ns: string): Promise<boolean> {
  const r = await world.exec(ns, 'iperf3', ['--version'], 5000);
  return r.code === 0 || /iperf 3/.test(r.stdout);
}

/** TCP from `client` to `server` for `seconds`: iperf3 if `useIperf3`, else the Node scripts below. */
export async function throughput(world: DemoWorld, client: DemoGuest, server: DemoGuest, seconds: number, useIperf3: boolean): Promise<ThroughputResult> {
  return useIperf3 ? iperf3Run(world, client, server, seconds) : nodeRun(world, client, server, seconds);
}

/** Longest wait for a server to listen. */
const LISTEN_TIMEOUT_MS = 10_000;

/**
 * Waits until a TCP socket listens on IPERF_PORT in the server's namespace (asked of
 * `ss`: iperf3 buffers its "Server listening" line when its output is a pipe).
 */
async function waitForListener(world: DemoWorld, server: DemoGuest, proc: NsProcess): Promise<void> {
  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  for (;;) {
    const r = await world.exec(server.ns, 'ss', ['-H', '-l', '-t', '-n', 'sport', '=', `:${IPERF_PORT}`], 5000);
    if (r.code === 0 && r.stdout.trim() !== '') return;
    if (!proc.running) throw new Error(`the ${proc.argv[0]} server in ${server.ns} exited before listening: ${proc.output().trim().slice(-300)}`);
    if (Date.now() > deadline) throw new Error(`the ${proc.argv[0]} server in ${server.ns} did not listen on port ${IPERF_PORT} within ${LISTEN_TIMEOUT_MS} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function iperf3Run(world: DemoWorld, client: DemoGuest, server: DemoGuest, seconds: number): Promise<ThroughputResult> {
  const srv = world.spawnHelper(server.ns, 'iperf3', ['-s', '-1', '-B', server.ipv4, '-p', String(IPERF_PORT)]);
  try {
    await waitForListener(world, server, srv);
    const r = await world.exec(client.ns, 'iperf3', ['-c', server.ipv4, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'], (seconds + 20) * 1000);
    let j: { end?: { sum_received?: { bytes?: number; seconds?: number; bits_per_second?: number } }; error?: string };
    try {
      j = JSON.parse(r.stdout) as typeof j;
    } catch {
      throw new Error(`iperf3 client in ${client.ns} printed no JSON (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-300)}`);
    }
    const sum = j.end?.sum_received;
    if (j.error !== undefined || sum?.bits_per_second === undefined) {
      throw new Error(`iperf3 ${client.ipv4} → ${server.ipv4} failed: ${j.error ?? 'no sum_received in its report'}`);
    }
    return { tool: 'iperf3', seconds: sum.seconds ?? seconds, bytes: sum.bytes ?? 0, mbitPerSecond: sum.bits_per_second / 1e6 };
  } finally {
    await srv.stop(1000);
  }
}

// A receiver that counts octets of one connection and prints "bytes seconds" when it ends.
const NODE_SERVER = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const srv = net.createServer((s) => {
  let bytes = 0, t0 = 0;
  s.on('data', (b) => { if (!t0) t0 = performance.now(); bytes += b.length; });
  s.on('close', () => { console.log(bytes + ' ' + ((performance.now() - t0) / 1000)); srv.close(); });
});
srv.listen(Number(port), host);
`;
// A sender that writes 64 KiB chunks for the given seconds, then closes.
const NODE_CLIENT = `
const net = require('node:net');
const [host, port, seconds] = process.argv.slice(1);
const chunk = Buffer.alloc(65536, 0x5a);
const s = net.connect(Number(port), host, () => {
  const end = performance.now() + Number(seconds) * 1000;
  const pump = () => { while (performance.now() < end) { if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
  pump();
});
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

async function nodeRun(world: DemoWorld, client: DemoGuest, server: DemoGuest, seconds: number): Promise<ThroughputResult> {
  const node = process.execPath;
  const srv = world.spawnHelper(server.ns, node, ['-e', NODE_SERVER, server.ipv4, String(IPERF_PORT)]);
  try {
    await waitForListener(world, server, srv);
    const r = await world.exec(client.ns, node, ['-e', NODE_CLIENT, server.ipv4, String(IPERF_PORT), String(seconds)], (seconds + 20) * 1000);
    if (r.code !== 0) throw new Error(`TCP sender in ${client.ns} failed (exit ${r.code}): ${r.stderr.trim().slice(-300)}`);
    const m = await srv.waitForOutput(/^(\d+) ([\d.]+)$/m, 10_000);
    const bytes = Number(m[1]);
    const secs = Number(m[2]);
    return { tool: 'node', seconds: secs, bytes, mbitPerSecond: secs > 0 ? (bytes * 8) / secs / 1e6 : 0 };
  } finally {
    await srv.stop(1000);
  }
}
