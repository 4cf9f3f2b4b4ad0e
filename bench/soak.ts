/**
 * Soak benchmark (issue 8): two sectunnel daemons under full load for 10 minutes,
 * their resident memory sampled throughout. The question it answers: does memory
 * stay under 150 MB and flat, i.e. is nothing retained per packet, per rekey or
 * per handshake?
 *
 *   npm run build && sudo npm run bench:soak [-- --minutes M] [-- --json]
 *
 * Stages:
 *   1. One world `st-soak-`: hosts a and b joined by veth `ul0` (MTU 1500), one guest per
 *      host bridged to the daemon's TAP (guest MTU 1400), as in bench:e2e.
 *   2. Two daemons on handshake keys (fresh X25519 key files) with a rekey every
 *      REKEY_AFTER_S seconds, so sessions and SAs are created and retired throughout.
 *   3. Load for the whole run: iperf3 TCP for TCP_CHUNK_S, then UDP with 64-octet payloads
 *      for UDP_CHUNK_S, alternating; meanwhile every SAMPLE_EVERY_S the daemons' VmRSS
 *      (/proc/PID/status), their packet counters and pool use (control socket) are recorded.
 *   4. A table (one row per minute: RSS of each daemon, peak so far, Gbit/s and kpps of the
 *      chunks that ended in that minute, rekeys) and the verdict: peak RSS against the
 *      150 MB limit, and the growth after warm-up (least-squares slope of RSS over the
 *      samples after the first WARMUP_S seconds, in MB per minute, plus the difference
 *      between the last minute's and the first post-warm-up minute's mean RSS).
 *   5. The world is destroyed (also on Ctrl-C, SIGTERM and failure).
 * Exit 0 when both limits hold, 1 when one does not, 2 on bad arguments or a missing tool.
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeKey, generatePrivateKey, publicKeyOf, writeSecretKeyFile } from '../src/control/keys.js';
import { callControl } from '../src/control/status-client.js';
import type { StatusReport } from '../src/control/status-report.js';
import { buildStandardTopology, runCommand, type Host, type NsProcess, type World } from '../src/io/netns.js';
import { openBenchRun, runIperf, sleep } from './world.js';

const PREFIX = 'st-soak-';
const GUEST_MTU_BYTES = 1400;
const UNDERLAY_MTU_BYTES = 1500;
const DEFAULT_MINUTES = 10;
const TCP_CHUNK_S = 20;
const UDP_CHUNK_S = 10;
const UDP_PAYLOAD_BYTES = 64;
const SAMPLE_EVERY_S = 5;
const WARMUP_S = 60;
const REKEY_AFTER_S = 30;
const RSS_LIMIT_MB = 150;
/** Growth after warm-up that still counts as flat: below this many MB per minute … */
const FLAT_SLOPE_MB_PER_MIN = 1;
/** … and the last minute's mean at most this much above the first post-warm-up minute's. */
const FLAT_GROWTH_MB = 5;
const IPERF_PORT = 5201;
const BRIDGE = 'br0';
const TAP = 'sttap0';

function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(dirname(here)) === 'dist' ? join(here, '..', '..') : join(here, '..');
}

const USAGE = `usage: npm run bench:soak -- [--minutes M] [--json]
  --minutes   length of the run (default ${DEFAULT_MINUTES}); the first ${WARMUP_S} s are warm-up
  --json      one JSON object on stdout instead of the table
Needs root, iproute2 and iperf3. Exit 0: peak RSS < ${RSS_LIMIT_MB} MB and flat after warm-up; 1: a limit missed.`;

class UsageError extends Error {}

interface Args {
  minutes: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { minutes: DEFAULT_MINUTES, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') args.json = true;
    else if (a === '--minutes') {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 2) throw new UsageError(`--minutes needs a number ≥ 2, got ${argv[i] ?? 'nothing'}\n${USAGE}`);
      args.minutes = v;
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new UsageError(`unknown argument ${a}\n${USAGE}`);
  }
  return args;
}

/** Config of host `self` on handshake keys (docs/config.md). */
function daemonConfig(self: Host, peer: Host, keyFile: string, peerPublicKey: string, dir: string): string {
  return JSON.stringify(
    {
      host: { name: `host-${self.index}`, privateKeyFile: keyFile },
      underlay: { address: self.ipv4, port: 4500, mtu: UNDERLAY_MTU_BYTES },
      crypto: { algorithm: 'aes-gcm-256' },
      labels: [{ name: 'soak', vlan: 100 }],
      domains: [{ name: 'guest', label: 'soak', macs: [self.guests[0]!.mac], tap: { name: TAP, create: true, mtu: GUEST_MTU_BYTES } }],
      peers: [{ name: `host-${peer.index}`, address: peer.ipv4, labels: ['soak'], publicKey: peerPublicKey }],
      handshake: { rekeyAfterSeconds: REKEY_AFTER_S },
      control: { socket: join(dir, `control-${self.index}.sock`) },
      state: { dir: join(dir, `state-${self.index}`) },
      audit: { path: join(dir, `audit-${self.index}.jsonl`) },
      log: { level: 'warn' },
    },
    null,
    2,
  );
}

/** VmRSS of `pid` in MB (0 once it has exited). */
function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

interface Sample {
  /** Seconds since the load started. */
  t: number;
  rssMb: [number, number];
  /** Handshakes completed so far per daemon (status report), null if the socket did not answer. */
  handshakes: [number | null, number | null];
  poolInUse: [number | null, number | null];
}

interface Chunk {
  kind: 'tcp' | 'udp';
  endT: number;
  /** Gbit/s for TCP, packets/s for UDP (receiver side). */
  rate: number;
}

async function statusOf(socket: string): Promise<StatusReport | null> {
  try {
    return (await callControl(socket, 'status', undefined, { timeoutMs: 2000 })) as StatusReport;
  } catch {
    return null;
  }
}

function handshakesOf(s: StatusReport | null): number | null {
  return s?.handshake?.completed ?? null;
}

function poolInUseOf(s: StatusReport | null): number | null {
  return s?.pool ? s.pool.total - s.pool.free : null;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0;
}

function fmt(x: number | null | undefined, digits: number): string {
  return x == null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/** One load chunk from guest a to guest b: Gbit/s (TCP) or received packets/s (UDP-64). */
async function iperfChunk(world: World, client: Host, server: Host, kind: 'tcp' | 'udp', seconds: number): Promise<number> {
  const extra = kind === 'udp' ? ['-u', '-l', String(UDP_PAYLOAD_BYTES), '-b', '0'] : [];
  const { client: j } = await runIperf(world, client.guests[0]!, server.guests[0]!, IPERF_PORT, seconds, extra);
  if (kind === 'tcp') return Number(j.end.sum_received.bits_per_second) / 1e9;
  const sum = j.end.sum;
  return (sum.packets - (sum.lost_packets ?? 0)) / sum.seconds;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (m: string): void => void process.stderr.write(m + '\n');
  if (process.getuid?.() !== 0) {
    log('bench:soak needs root (network namespaces, TAP devices).');
    return 2;
  }
  for (const tool of ['ip', 'iperf3', 'ss']) {
    try {
      await runCommand(tool, tool === 'ip' ? ['-V'] : tool === 'ss' ? ['-V'] : ['--version'], { timeoutMs: 10_000 });
    } catch (e) {
      log(`bench:soak needs ${tool}: ${(e as Error).message.split('\n')[0]}`);
      return 2;
    }
  }
  const durationS = args.minutes * 60;
  const loadBefore = loadavg()[0]!;
  const { world, tmpDir: dir, close: cleanup } = await openBenchRun('bench:soak', PREFIX, log);

  const samples: Sample[] = [];
  const chunks: Chunk[] = [];
  const chunkErrors: string[] = [];
  let exitNote = '';
  try {
    const topo = await buildStandardTopology(world, { guestsPerHost: 1, guestMtuBytes: GUEST_MTU_BYTES, underlayMtuBytes: UNDERLAY_MTU_BYTES, bridges: 'shared' });
    const [a, b] = topo.hosts;
    const keys = [generatePrivateKey(), generatePrivateKey()];
    const procs: NsProcess[] = [];
    const script = join(repoRoot(), 'scripts', 'sectunnel');
    for (const [i, self, peer] of [[0, a, b], [1, b, a]] as const) {
      const keyFile = join(dir, `host-${self.index}.key`);
      await writeSecretKeyFile(keyFile, keys[i]!);
      const file = join(dir, `host-${self.index}.json`);
      writeFileSync(file, daemonConfig(self, peer, keyFile, encodeKey(publicKeyOf(keys[1 - i]!)), dir), { mode: 0o600 });
      procs.push(world.spawn(self.ns, script, ['run', '--config', file]));
    }
    for (const h of [a, b]) await world.waitForLink(h.ns, TAP, 30_000);
    for (const h of [a, b]) await world.attachToBridge(h.ns, TAP, BRIDGE);
    await world.waitForPing(a.guests[0]!.ns, b.guests[0]!.ipv4, 30_000);
    log(`bench:soak: ${args.minutes} min of alternating TCP ${TCP_CHUNK_S} s / UDP-64 ${UDP_CHUNK_S} s, rekey every ${REKEY_AFTER_S} s, RSS every ${SAMPLE_EVERY_S} s`);

    const sockets = [join(dir, 'control-1.sock'), join(dir, 'control-2.sock')];
    const t0 = Date.now();
    const elapsedS = (): number => (Date.now() - t0) / 1000;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const st = await Promise.all(sockets.map(statusOf));
        samples.push({
          t: elapsedS(),
          rssMb: [rssMb(procs[0]!.pid), rssMb(procs[1]!.pid)],
          handshakes: [handshakesOf(st[0]!), handshakesOf(st[1]!)],
          poolInUse: [poolInUseOf(st[0]!), poolInUseOf(st[1]!)],
        });
        const last = samples.at(-1)!;
        if (samples.length % 12 === 0) log(`  ${fmt(last.t / 60, 1)} min: RSS ${fmt(last.rssMb[0], 1)} / ${fmt(last.rssMb[1], 1)} MB`);
        await sleep(SAMPLE_EVERY_S * 1000);
      }
    })();
    try {
      let kind: 'tcp' | 'udp' = 'tcp';
      while (elapsedS() < durationS) {
        const left = durationS - elapsedS();
        const seconds = Math.max(1, Math.min(kind === 'tcp' ? TCP_CHUNK_S : UDP_CHUNK_S, Math.floor(left)));
        for (const p of procs) if (!p.running) throw new Error(`daemon ${p.pid} exited: ${p.output().slice(-800)}`);
        try {
          chunks.push({ kind, rate: await iperfChunk(world, a, b, kind, seconds), endT: elapsedS() });
        } catch (e) {
          chunkErrors.push(`${fmt(elapsedS(), 0)} s ${kind}: ${(e as Error).message.split('\n')[0]}`);
        }
        kind = kind === 'tcp' ? 'udp' : 'tcp';
      }
    } finally {
      sampling = false;
      await sampler;
    }
    for (const p of procs) if (!p.running) exitNote = `daemon ${p.pid} exited during the run`;
  } finally {
    await cleanup();
  }

  // Verdict.
  const post = samples.filter((s) => s.t >= WARMUP_S);
  const peakMb = Math.max(0, ...samples.flatMap((s) => s.rssMb));
  const perDaemon = [0, 1].map((d) => {
    const xs = post.map((s) => s.t / 60);
    const ys = post.map((s) => s.rssMb[d]!);
    const firstMin = post.filter((s) => s.t < WARMUP_S + 60).map((s) => s.rssMb[d]!);
    const lastMin = post.filter((s) => s.t >= (samples.at(-1)?.t ?? 0) - 60).map((s) => s.rssMb[d]!);
    return { slopeMbPerMin: slope(xs, ys), growthMb: mean(lastMin) - mean(firstMin) };
  });
  const flat = post.length >= 4 && perDaemon.every((p) => p.slopeMbPerMin < FLAT_SLOPE_MB_PER_MIN && p.growthMb < FLAT_GROWTH_MB);
  const underLimit = peakMb > 0 && peakMb < RSS_LIMIT_MB;

  const minutes = Math.ceil((samples.at(-1)?.t ?? 0) / 60);
  const rows = Array.from({ length: minutes }, (_, m) => {
    const inMin = samples.filter((s) => s.t >= m * 60 && s.t < (m + 1) * 60);
    const upTo = samples.filter((s) => s.t < (m + 1) * 60);
    const ch = chunks.filter((c) => c.endT >= m * 60 && c.endT < (m + 1) * 60);
    const lastS = inMin.at(-1);
    return {
      minute: m + 1,
      rssMbA: mean(inMin.map((s) => s.rssMb[0])),
      rssMbB: mean(inMin.map((s) => s.rssMb[1])),
      peakMb: Math.max(0, ...upTo.flatMap((s) => s.rssMb)),
      tcpGbps: ch.some((c) => c.kind === 'tcp') ? mean(ch.filter((c) => c.kind === 'tcp').map((c) => c.rate)) : null,
      udpKpps: ch.some((c) => c.kind === 'udp') ? mean(ch.filter((c) => c.kind === 'udp').map((c) => c.rate)) / 1000 : null,
      handshakes: lastS ? lastS.handshakes : [null, null],
      poolInUse: lastS ? lastS.poolInUse : [null, null],
    };
  });
  const meta = {
    bench: 'soak',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', kernel: release() },
    loadAvg1m: { before: loadBefore, after: loadavg()[0]! },
    minutes: args.minutes,
    rekeyAfterSeconds: REKEY_AFTER_S,
  };
  const verdict = { peakRssMb: peakMb, rssLimitMb: RSS_LIMIT_MB, underLimit, perDaemon, flat, chunkErrors, exitNote };
  if (args.json) {
    process.stdout.write(JSON.stringify({ ...meta, rows, samples, verdict }, null, 2) + '\n');
  } else {
    const head = ['min', 'RSS a MB', 'RSS b MB', 'peak MB', 'TCP Gbit/s', 'UDP-64 kpps', 'handshakes a/b', 'pool in use a/b'];
    const cells = rows.map((r) => [
      String(r.minute),
      fmt(r.rssMbA, 1),
      fmt(r.rssMbB, 1),
      fmt(r.peakMb, 1),
      fmt(r.tcpGbps, 2),
      fmt(r.udpKpps, 1),
      `${r.handshakes[0] ?? '-'}/${r.handshakes[1] ?? '-'}`,
      `${r.poolInUse[0] ?? '-'}/${r.poolInUse[1] ?? '-'}`,
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const line = (xs: string[]): string => `| ${xs.map((x, i) => x.padStart(widths[i]!)).join(' | ')} |`;
    const out = [
      `sectunnel soak, ${meta.date}: ${args.minutes} min, AES-256-GCM on handshake keys (rekey every ${REKEY_AFTER_S} s), guest MTU ${GUEST_MTU_BYTES}`,
      `machine: ${meta.machine.cpus} × ${meta.machine.cpuModel}, Linux ${meta.machine.kernel}; load average ${fmt(loadBefore, 2)} before, ${fmt(meta.loadAvg1m.after, 2)} after`,
      '',
      line(head),
      `|${widths.map((w) => '-'.repeat(w + 1) + ':').join('|')}|`,
      ...cells.map(line),
      '',
      `peak RSS ${fmt(peakMb, 1)} MB (limit ${RSS_LIMIT_MB}): ${underLimit ? 'under' : 'OVER'}`,
      ...perDaemon.map(
        (p, i) =>
          `daemon ${'ab'[i]}: after warm-up RSS slope ${fmt(p.slopeMbPerMin, 2)} MB/min (flat below ${FLAT_SLOPE_MB_PER_MIN}), last minute ${fmt(p.growthMb, 1)} MB above the first (flat below ${FLAT_GROWTH_MB})`,
      ),
      `memory ${flat ? 'flat' : 'NOT flat'}`,
      ...chunkErrors.map((e) => `- load chunk failed at ${e}`),
      ...(exitNote ? [`- ${exitNote}`] : []),
    ];
    process.stdout.write(out.join('\n') + '\n');
  }
  return underLimit && flat && !exitNote ? 0 : 1;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench:soak${err instanceof UsageError ? '' : ' failed'}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    },
  );
}
