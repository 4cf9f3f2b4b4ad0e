/**
 * End-to-end benchmark (issue 8): guest to guest through bridged TAPs between
 * two network namespaces, for every contender in one run, alternating.
 *
 *   npm run build && sudo npm run bench:e2e [-- --quick] [-- --json] [-- --only NAME[,NAME]]
 *
 * Stages:
 *   1. Arguments; which contenders can run here (unavailable ones get a row saying why).
 *   2. The guest MTU: the largest that no contender fragments on the 1500-octet
 *      underlay, capped at 1400 (the reference point).
 *   3. One world `st-bench-`: hosts a and b joined by veth `ul0` (192.0.2.1/.2),
 *      one guest per host (198.51.100.11, .21) whose veth host end is on bridge `br0`.
 *   4. Rounds (3): for each contender in turn — setup (its TAPs joined to `br0`),
 *      wait until guest a pings guest b, then measure idle ping RTT (20 pings),
 *      iperf3 TCP, iperf3 UDP with 64-octet payloads, the CPU time of the tunnel
 *      processes across each iperf3 run, then teardown.
 *   5. Medians over the rounds; a table on stdout, or one JSON object with `--json`.
 *   6. The world is destroyed (also on Ctrl-C, SIGTERM and failure).
 *
 * A contender is `{name, overheadBytes, unavailable(), setup(bw), teardown(bw), processes()}`.
 * The sectunnel contenders come from `sectunnelContender(alg)`; only `sectunnelConfig()`
 * needs its body written once the daemon's config schema exists.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openBenchRun, runIperf } from './world.js';
import {
  World,
  buildStandardTopology,
  runCommand,
  type Guest,
  type Host,
  type NsProcess,
  type Topology,
} from '../src/io/netns.js';

// ---------------------------------------------------------------------------------
// Parameters

const PREFIX = 'st-bench-';
const UNDERLAY_MTU_BYTES = 1500;
/** The reference guest MTU; lowered only if a contender would fragment at it. */
const REFERENCE_GUEST_MTU_BYTES = 1400;
const ROUNDS = 3;
const FULL_SECONDS = 10;
const QUICK_SECONDS = 3;
const PINGS_PER_ROUND = 20;
const PING_INTERVAL_S = '0.1';
const UDP_PAYLOAD_BYTES = 64;
const READY_TIMEOUT_MS = 30_000;
const IPERF_PORT = 5201;
/** The bridge in each host that holds the guest's veth and the contender's TAP. */
const BRIDGE = 'br0';

/** Where the checkout is: dist/bench/e2e.js and bench/e2e.ts both find it. */
function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(dirname(here)) === 'dist' ? join(here, '..', '..') : join(here, '..');
}

// ---------------------------------------------------------------------------------
// Contenders

/** What every contender gets: the world, its topology and a private scratch folder. */
export interface BenchWorld {
  world: World;
  topo: Topology;
  /** Host a (192.0.2.1) and host b (192.0.2.2). */
  a: Host;
  b: Host;
  /** The guest on host a (iperf3 client) and on host b (iperf3 server). */
  guestA: Guest;
  guestB: Guest;
  /** Scratch folder for certificates, configs; removed at the end. */
  tmpDir: string;
  guestMtuBytes: number;
}

/** One row of the benchmark. */
export interface Contender {
  /** Short name for `--only` and JSON (`none`, `openvpn-aes`, `socat`, `sectunnel-aes`, …). */
  id: string;
  /** Row name. */
  name: string;
  /**
   * Octets the tunnel adds on the IPv4 underlay to a guest IP packet, the
   * guest's Ethernet header included; the guest MTU is chosen so that
   * guest MTU + overheadBytes <= underlay MTU for every contender.
   */
  overheadBytes: number;
  /** Null if it can run on this machine, else why not (shown in its row). */
  unavailable(): Promise<string | null>;
  /** Starts the tunnel and joins its TAP in each host to `br0`. */
  setup(bw: BenchWorld): Promise<void>;
  /** Stops the tunnel and removes what setup added; must leave the world as it found it. */
  teardown(bw: BenchWorld): Promise<void>;
  /** PIDs whose CPU time counts as the tunnel's (empty for in-kernel paths). */
  processes(): number[];
}

async function commandWorks(cmd: string, args: string[]): Promise<string | null> {
  try {
    await runCommand(cmd, args, { timeoutMs: 20_000 });
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0]!;
  }
}

/** Resolves with `p`, or rejects as soon as one of `procs` exits (naming it and its output). */
async function whileRunning<T>(procs: NsProcess[], p: Promise<T>): Promise<T> {
  const died = procs.map((proc) =>
    proc.exited.then((e) => {
      throw new Error(
        `\`${proc.argv.join(' ')}\` in ${proc.ns} exited (code ${e.code}, signal ${e.signal}): ${proc.output().slice(-1500).trim()}`,
      );
    }),
  );
  for (const d of died) d.catch(() => undefined); // not an unhandled rejection once `p` has won
  return Promise.race([p, ...died]);
}

/** (a) No tunnel: a veth joins the two host bridges; the kernel's floor-less ceiling. */
function noTunnelContender(): Contender {
  return {
    id: 'none',
    name: 'no tunnel (veth)',
    overheadBytes: 0,
    unavailable: async () => null,
    async setup({ world, a, b }) {
      await world.addVeth({ ns: a.ns, name: 'nt0' }, { ns: b.ns, name: 'nt0' });
      await world.attachToBridge(a.ns, 'nt0', BRIDGE);
      await world.attachToBridge(b.ns, 'nt0', BRIDGE);
    },
    async teardown({ world, a }) {
      await world.deleteLink(a.ns, 'nt0');
    },
    processes: () => [],
  };
}

/** Makes a CA and server/client certificates (P-256) with `openssl` in `dir`, once per run. */
async function makeOpenvpnPki(dir: string): Promise<void> {
  if (existsSync(join(dir, 'client.crt'))) return;
  const ossl = (args: string[]): Promise<unknown> => runCommand('openssl', args);
  await ossl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'ca.key')]);
  await ossl(['req', '-x509', '-new', '-key', join(dir, 'ca.key'), '-days', '2', '-subj', '/CN=st-bench-ca', '-out', join(dir, 'ca.crt')]);
  for (const [who, eku] of [
    ['server', 'serverAuth'],
    ['client', 'clientAuth'],
  ] as const) {
    await ossl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, `${who}.key`)]);
    await ossl(['req', '-new', '-key', join(dir, `${who}.key`), '-subj', `/CN=st-bench-${who}`, '-out', join(dir, `${who}.csr`)]);
    writeFileSync(
      join(dir, `${who}.ext`),
      `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=${eku}\n`,
    );
    await ossl([
      'x509', '-req', '-in', join(dir, `${who}.csr`), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'),
      '-CAcreateserial', '-days', '2', '-extfile', join(dir, `${who}.ext`), '-out', join(dir, `${who}.crt`),
    ]);
  }
}

/**
 * (b) OpenVPN 2.6, TAP over UDP, TLS mode (generated CA), data channel `cipher`,
 * DCO off (DCO has no TAP mode), MSS clamping off (the guest MTU already fits).
 */
function openvpnContender(cipher: 'AES-256-GCM' | 'CHACHA20-POLY1305'): Contender {
  const procs: NsProcess[] = [];
  const tap = 'stvpn0';
  const port = 1194;
  return {
    id: cipher === 'AES-256-GCM' ? 'openvpn-aes' : 'openvpn-chacha',
    name: `OpenVPN ${cipher.toLowerCase()}`,
    // IPv4 20 + UDP 8 + P_DATA_V2 opcode/peer-id 4 + packet id 4 + GCM/Poly1305 tag 16 + Ethernet 14.
    overheadBytes: 20 + 8 + 4 + 4 + 16 + 14,
    unavailable: async () => commandWorks('openvpn', ['--version']).then((why) => why && `openvpn: ${why}`),
    async setup({ world, a, b, tmpDir }) {
      await makeOpenvpnPki(tmpDir);
      for (const [self, peer, role] of [
        [a, b, 'server'],
        [b, a, 'client'],
      ] as const) {
        const args = [
          '--dev', tap, '--dev-type', 'tap', '--proto', 'udp',
          '--local', self.ipv4, '--lport', String(port), '--remote', peer.ipv4, '--rport', String(port),
          ...(role === 'server' ? ['--tls-server', '--dh', 'none'] : ['--tls-client', '--remote-cert-tls', 'server']),
          '--ca', join(tmpDir, 'ca.crt'), '--cert', join(tmpDir, `${role}.crt`), '--key', join(tmpDir, `${role}.key`),
          '--data-ciphers', cipher, '--data-ciphers-fallback', cipher,
          '--disable-dco', '--mssfix', '0', '--tun-mtu', '1500', '--fast-io',
          '--script-security', '0', '--verb', '3',
        ];
        procs.push(world.spawn(self.ns, 'openvpn', args));
      }
      for (const p of procs) {
        await p.waitForOutput(/Initialization Sequence Completed/, READY_TIMEOUT_MS);
        // The negotiated data channel must be the one this row names.
        const m = await p.waitForOutput(/NCP negotiation result: .*cipher=([\w-]+)/, 5000);
        if (m[1] !== cipher) throw new Error(`openvpn in ${p.ns} negotiated ${m[1]}, not ${cipher}`);
      }
      for (const h of [a, b]) await world.attachToBridge(h.ns, tap, BRIDGE);
    },
    async teardown() {
      await Promise.all(procs.splice(0).map((p) => p.stop()));
    },
    processes: () => procs.map((p) => p.pid),
  };
}

/** (c) socat TAP <-> UDP relay, no crypto: the userspace floor. */
function socatContender(): Contender {
  const procs: NsProcess[] = [];
  const tap = 'stsocat0';
  const port = 7000;
  return {
    id: 'socat',
    name: 'socat TAP<->UDP (no crypto)',
    // IPv4 20 + UDP 8 + Ethernet 14 (iff-no-pi: no packet-info header).
    overheadBytes: 20 + 8 + 14,
    unavailable: async () => commandWorks('socat', ['-V']).then((why) => why && `socat: ${why}`),
    async setup({ world, a, b }) {
      for (const [self, peer] of [
        [a, b],
        [b, a],
      ] as const) {
        // UDP-DATAGRAM (unconnected): an ICMP port-unreachable before the peer starts cannot end it.
        procs.push(
          world.spawn(self.ns, 'socat', [
            `TUN,tun-type=tap,tun-name=${tap},iff-no-pi,iff-up`,
            `UDP-DATAGRAM:${peer.ipv4}:${port},bind=${self.ipv4}:${port}`,
          ]),
        );
      }
      for (const h of [a, b]) await whileRunning(procs, world.waitForLink(h.ns, tap, READY_TIMEOUT_MS));
      for (const h of [a, b]) await world.attachToBridge(h.ns, tap, BRIDGE);
    },
    async teardown() {
      await Promise.all(procs.splice(0).map((p) => p.stop()));
    },
    processes: () => procs.map((p) => p.pid),
  };
}

// ---------------------------------------------------------------------------------
// (d) sectunnel
//
// The contender writes `sectunnelConfig()` to a file, starts `scripts/sectunnel run`
// in each host namespace, waits for the TAP named `ctx.tapName` to appear, joins it to
// br0, and waits for guest a to ping guest b.

/** sectunnel's data-channel algorithms compared here (DESIGN.md "Wire format"). */
export type SectunnelAlg = 'aes-gcm-256' | 'chacha20-poly1305';

/** Everything a host's sectunnel config may need. */
export interface SectunnelConfigContext {
  alg: SectunnelAlg;
  /** This host and its peer (ns, underlay `ipv4`/`ipv6`, `index` 1 or 2, `guests`). */
  self: Host;
  peer: Host;
  /** The guest on this host: its MAC is the domain's MAC; `guest.ipv4` for reference. */
  guest: Guest;
  /** The TAP the daemon must create for the guest's domain; the bench bridges it to br0. */
  tapName: string;
  /** UDP port (RFC 3948). */
  udpPort: number;
  /** Label of both guests. */
  label: { name: string; vlan: number };
  /** Per-run random KEYMAT (key || 4-octet salt, hex) and SPIs, one SA per direction, for static-key configs. */
  sas: { aToB: { spi: number; keymatHex: string }; bToA: { spi: number; keymatHex: string } };
  /** Scratch folder (for key files, sockets, the audit log). */
  tmpDir: string;
}

/**
 * The config file body for `sectunnel run --config FILE --insecure-static-keys` on `ctx.self`
 * (docs/config.md): one label, the guest's TAP, the peer with a static SA pair of fresh
 * random keys for this run. Static keys keep the handshake out of the measured path.
 */
export function sectunnelConfig(ctx: SectunnelConfigContext): string {
  const outbound = ctx.self.index === 1 ? ctx.sas.aToB : ctx.sas.bToA;
  const inbound = ctx.self.index === 1 ? ctx.sas.bToA : ctx.sas.aToB;
  const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
  return JSON.stringify(
    {
      host: { name: `host-${ctx.self.index}` },
      underlay: { address: ctx.self.ipv4, port: ctx.udpPort },
      crypto: { algorithm: ctx.alg },
      labels: [{ name: ctx.label.name, vlan: ctx.label.vlan }],
      domains: [{ name: 'guest', label: ctx.label.name, macs: [ctx.guest.mac], tap: { name: ctx.tapName, create: true } }],
      peers: [
        {
          name: `host-${ctx.peer.index}`,
          address: ctx.peer.ipv4,
          labels: [ctx.label.name],
          staticSas: [{ labels: [ctx.label.name], in: { spi: hex(inbound.spi), keymat: inbound.keymatHex }, out: { spi: hex(outbound.spi), keymat: outbound.keymatHex } }],
        },
      ],
      control: { socket: join(ctx.tmpDir, `status-${ctx.self.index}.sock`) },
      state: { dir: join(ctx.tmpDir, `state-${ctx.self.index}`) },
      audit: { path: join(ctx.tmpDir, `audit-${ctx.self.index}.jsonl`) },
      log: { level: 'warn' },
    },
    null,
    2,
  );
}

/** (d) sectunnel with `alg`: "not available yet" until `scripts/sectunnel run --help` works. */
export function sectunnelContender(alg: SectunnelAlg): Contender {
  const procs: NsProcess[] = [];
  const script = join(repoRoot(), 'scripts', 'sectunnel');
  const tapName = 'sttap0';
  let sas: SectunnelConfigContext['sas'] | null = null;
  return {
    id: alg === 'aes-gcm-256' ? 'sectunnel-aes' : 'sectunnel-chacha',
    name: `sectunnel ${alg}`,
    // IPv4 20 + UDP 8 + ESP SPI/seq 8 + IV 8 + GRE with key 8 + Ethernet 14 + 802.1Q 4
    // + pad (at most 3) + pad length/next header 2 + ICV 16.
    overheadBytes: 20 + 8 + 8 + 8 + 8 + 14 + 4 + 3 + 2 + 16,
    async unavailable() {
      if (!existsSync(script)) return `not available yet: ${script} is missing`;
      const why = await commandWorks(script, ['run', '--help']);
      return why && `not available yet: \`sectunnel run --help\` fails (${why.slice(0, 160)})`;
    },
    async setup(bw) {
      const { world, a, b, tmpDir } = bw;
      // Fresh keys per setup: a restarted daemon must not reuse (key, IV) pairs.
      const keymatHex = (): string => randomBytes(36).toString('hex');
      sas = { aToB: { spi: 0x1001, keymatHex: keymatHex() }, bToA: { spi: 0x2001, keymatHex: keymatHex() } };
      for (const [self, peer] of [
        [a, b],
        [b, a],
      ] as const) {
        const file = join(tmpDir, `sectunnel-${alg}-${self.index}.conf`);
        const ctx: SectunnelConfigContext = {
          alg, self, peer, guest: self.guests[0]!, tapName, udpPort: 4500,
          label: { name: 'bench', vlan: 100 }, sas, tmpDir,
        };
        writeFileSync(file, sectunnelConfig(ctx), { mode: 0o600 });
        procs.push(world.spawn(self.ns, script, ['run', '--config', file, '--insecure-static-keys']));
      }
      for (const h of [a, b]) await whileRunning(procs, world.waitForLink(h.ns, tapName, READY_TIMEOUT_MS));
      for (const h of [a, b]) await world.attachToBridge(h.ns, tapName, BRIDGE);
    },
    async teardown() {
      await Promise.all(procs.splice(0).map((p) => p.stop()));
    },
    processes: () => procs.map((p) => p.pid),
  };
}

/** Every contender, in the order each round runs them. */
export function allContenders(): Contender[] {
  return [
    noTunnelContender(),
    sectunnelContender('aes-gcm-256'),
    sectunnelContender('chacha20-poly1305'),
    openvpnContender('AES-256-GCM'),
    openvpnContender('CHACHA20-POLY1305'),
    socatContender(),
  ];
}

// ---------------------------------------------------------------------------------
// Measurements

const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux (getconf CLK_TCK); checked at start

/** utime + stime of `pids` in seconds (/proc/PID/stat fields 14 and 15); exited ones count 0. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // fields 14, 15 counted from 1 with pid, comm
    } catch {
      // exited
    }
  }
  return ticks / CLOCK_TICKS_PER_S;
}

/** Busy and total jiffies of all CPUs (/proc/stat "cpu" line). */
function boxJiffies(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((s, x) => s + x, 0);
  return { busy: total - idle, total };
}

interface Accounting {
  cpuS: number;
  boxBusyPct: number;
}

/** Runs `fn` and reports the CPU seconds of `pids` and how busy the whole machine was meanwhile. */
async function accounted<T>(pids: number[], fn: () => Promise<T>): Promise<[T, Accounting]> {
  const cpu0 = cpuSeconds(pids);
  const box0 = boxJiffies();
  const result = await fn();
  const cpu1 = cpuSeconds(pids);
  const box1 = boxJiffies();
  const totalJ = box1.total - box0.total;
  return [result, { cpuS: cpu1 - cpu0, boxBusyPct: totalJ > 0 ? (100 * (box1.busy - box0.busy)) / totalJ : 0 }];
}

/** RTTs in ms of `count` pings from guest a to guest b. */
async function measurePing(bw: BenchWorld, count: number): Promise<number[]> {
  const { stdout } = await bw.world.exec(
    bw.guestA.ns,
    'ping',
    ['-n', '-c', String(count), '-i', PING_INTERVAL_S, '-W', '1', bw.guestB.ipv4],
    { timeoutMs: count * 1000 + 10_000 },
  );
  return [...stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

/** One iperf3 test from guest a to guest b (world.ts). */
function iperf(bw: BenchWorld, seconds: number, clientArgs: string[]): Promise<{ client: any; server: any }> {
  return runIperf(bw.world, bw.guestA, bw.guestB, IPERF_PORT, seconds, clientArgs);
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---------------------------------------------------------------------------------
// Rows

/** The measured numbers of one contender (medians over the rounds; null if not measured). */
export interface Row {
  id: string;
  name: string;
  /** Why the contender was not measured ("not available yet: …"), or null. */
  unavailable: string | null;
  /** Errors of rounds that failed (the row's medians use the other rounds). */
  errors: string[];
  tcpGbps: number | null;
  tcpGbpsRuns: number[];
  /** UDP datagrams with 64-octet payload received per second by the guest b iperf3. */
  udpPps: number | null;
  udpPpsRuns: number[];
  /** Median RTT of all idle pings (20 per round), ms. */
  pingRttMs: number | null;
  /** CPU seconds of the tunnel processes during one TCP test (null: no process, e.g. the kernel path). */
  cpuSecondsTcp: number | null;
  /** The same per TCP data frame of full MSS (µs), both directions' daemons together. */
  cpuUsPerFrameTcp: number | null;
  /** CPU seconds of the tunnel processes during one UDP test. */
  cpuSecondsUdp: number | null;
  /** How busy both CPUs were during the TCP test (all processes, incl. iperf3 and softirq), %. */
  boxBusyPctTcp: number | null;
}

interface Samples {
  tcpGbps: number[];
  udpPps: number[];
  pingMs: number[];
  cpuTcp: number[];
  cpuPerFrame: number[];
  cpuUdp: number[];
  busyTcp: number[];
  errors: string[];
}

async function measureRound(c: Contender, bw: BenchWorld, seconds: number, s: Samples, log: (m: string) => void): Promise<void> {
  const mssBytes = bw.guestMtuBytes - 40 - 12; // IPv4 + TCP + timestamps option
  await c.setup(bw);
  try {
    await bw.world.waitForPing(bw.guestA.ns, bw.guestB.ipv4, READY_TIMEOUT_MS);
    const rtts = await measurePing(bw, PINGS_PER_ROUND);
    s.pingMs.push(...rtts);

    const pids = c.processes();
    const [tcp, tcpAcc] = await accounted(pids, () => iperf(bw, seconds, []));
    const bits = Number(tcp.client.end?.sum_received?.bits_per_second);
    const bytes = Number(tcp.client.end?.sum_received?.bytes);
    s.tcpGbps.push(bits / 1e9);
    s.busyTcp.push(tcpAcc.boxBusyPct);
    if (pids.length > 0) {
      s.cpuTcp.push(tcpAcc.cpuS);
      s.cpuPerFrame.push((tcpAcc.cpuS * 1e6) / (bytes / mssBytes));
    }

    const [udp, udpAcc] = await accounted(pids, () =>
      iperf(bw, seconds, ['-u', '-l', String(UDP_PAYLOAD_BYTES), '-b', '0']),
    );
    s.udpPps.push(udpPacketsPerS(udp));
    if (pids.length > 0) s.cpuUdp.push(udpAcc.cpuS);
    log(
      `  ${c.name}: TCP ${fmt(bits / 1e9, 2)} Gbit/s, UDP ${fmt(s.udpPps.at(-1)! / 1000, 1)} kpps, ping ${fmt(median(rtts), 3)} ms` +
        (pids.length ? `, tunnel CPU ${fmt(tcpAcc.cpuS, 2)} s (TCP)` : ''),
    );
  } finally {
    await c.teardown(bw);
  }
}

/** Datagrams the receiver got per second: from the server's report, else the client's copy of it. */
function udpPacketsPerS(r: { client: any; server: any }): number {
  const pick = (j: any): number | null => {
    const sum = j?.end?.sum;
    if (!sum || typeof sum.packets !== 'number' || typeof sum.seconds !== 'number' || sum.seconds <= 0) return null;
    return (sum.packets - (sum.lost_packets ?? 0)) / sum.seconds;
  };
  const fromServer = pick(r.server);
  if (fromServer !== null) return fromServer;
  const fromClient = pick(r.client);
  if (fromClient !== null) return fromClient;
  throw new Error('iperf3 UDP: no receiver packet count in the JSON');
}

function toRow(c: Contender, unavailable: string | null, s: Samples | null): Row {
  return {
    id: c.id,
    name: c.name,
    unavailable,
    errors: s?.errors ?? [],
    tcpGbps: s ? median(s.tcpGbps) : null,
    tcpGbpsRuns: s?.tcpGbps ?? [],
    udpPps: s ? median(s.udpPps) : null,
    udpPpsRuns: s?.udpPps ?? [],
    pingRttMs: s ? median(s.pingMs) : null,
    cpuSecondsTcp: s ? median(s.cpuTcp) : null,
    cpuUsPerFrameTcp: s ? median(s.cpuPerFrame) : null,
    cpuSecondsUdp: s ? median(s.cpuUdp) : null,
    boxBusyPctTcp: s ? median(s.busyTcp) : null,
  };
}

/**
 * Per sectunnel row (by id): TCP against the faster OpenVPN row (`openvpnRow`) and socat,
 * UDP against the faster OpenVPN row, ping over no tunnel, and whether issue 8's targets are met.
 */
export function ratios(rows: Row[]): Record<string, Record<string, number | boolean | string | null>> {
  const measured = rows.filter((r) => r.tcpGbps !== null);
  const openvpn = measured.filter((r) => r.id.startsWith('openvpn-')).sort((p, q) => q.tcpGbps! - p.tcpGbps!)[0];
  const openvpnUdp = measured.filter((r) => r.id.startsWith('openvpn-')).sort((p, q) => (q.udpPps ?? 0) - (p.udpPps ?? 0))[0];
  const socat = measured.find((r) => r.id === 'socat');
  const bare = measured.find((r) => r.id === 'none');
  const out: Record<string, Record<string, number | boolean | string | null>> = {};
  for (const r of measured.filter((x) => x.id.startsWith('sectunnel-'))) {
    const div = (p: number | null | undefined, q: number | null | undefined): number | null =>
      p != null && q != null && q > 0 ? p / q : null;
    const tcpVsOpenvpn = div(r.tcpGbps, openvpn?.tcpGbps);
    const tcpVsSocat = div(r.tcpGbps, socat?.tcpGbps);
    const udpVsOpenvpn = div(r.udpPps, openvpnUdp?.udpPps);
    const pingOverBareMs = r.pingRttMs != null && bare?.pingRttMs != null ? r.pingRttMs - bare.pingRttMs : null;
    out[r.id] = {
      openvpnRow: openvpn?.id ?? null,
      tcpVsOpenvpn,
      tcpVsSocat,
      udpVsOpenvpn,
      pingOverBareMs,
      tcpVsOpenvpnTargetMet: tcpVsOpenvpn === null ? null : tcpVsOpenvpn >= 4,
      tcpVsSocatTargetMet: tcpVsSocat === null ? null : tcpVsSocat >= 3,
      udpVsOpenvpnTargetMet: udpVsOpenvpn === null ? null : udpVsOpenvpn >= 3,
      pingTargetMet: pingOverBareMs === null ? null : pingOverBareMs <= 0.3,
    };
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Output

function fmt(x: number | null | undefined, digits: number): string {
  return x == null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

function table(rows: Row[], header: string[]): string {
  const cols: [string, (r: Row) => string][] = [
    ['contender', (r) => r.name],
    ['TCP Gbit/s', (r) => fmt(r.tcpGbps, 2)],
    ['TCP runs', (r) => r.tcpGbpsRuns.map((x) => fmt(x, 2)).join(' ')],
    ['UDP-64 kpps', (r) => fmt(r.udpPps === null ? null : r.udpPps / 1000, 1)],
    ['ping ms', (r) => fmt(r.pingRttMs, 3)],
    ['tunnel CPU s', (r) => fmt(r.cpuSecondsTcp, 2)],
    ['µs/frame', (r) => fmt(r.cpuUsPerFrameTcp, 1)],
    ['CPU s UDP', (r) => fmt(r.cpuSecondsUdp, 2)],
    ['box busy %', (r) => fmt(r.boxBusyPctTcp, 0)],
  ];
  const cells = rows.map((r) => cols.map(([, f]) => f(r)));
  const widths = cols.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (xs: string[]): string => `| ${xs.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join(' | ')} |`;
  const out = [...header, '', line(cols.map(([h]) => h)), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|')}|`];
  for (const c of cells) out.push(line(c));
  const notes = rows.flatMap((r) => [
    ...(r.unavailable ? [`- ${r.name}: ${r.unavailable}`] : []),
    ...r.errors.map((e) => `- ${r.name}: round failed: ${e}`),
  ]);
  if (notes.length) out.push('', ...notes);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------
// Main

interface Args {
  quick: boolean;
  json: boolean;
  only: string[];
  rounds: number;
  seconds: number | null;
}

const USAGE = `usage: npm run bench:e2e -- [--quick] [--json] [--only NAME[,NAME…]] [--rounds N] [--seconds S]
  --quick     3 × 3 s instead of 3 × 10 s
  --json      one JSON object on stdout instead of the table
  --only      contenders by id (none, sectunnel-aes, sectunnel-chacha, openvpn-aes, openvpn-chacha,
              socat; \`openvpn\` picks both) or part of the row name, e.g. --only none,openvpn
  --rounds    rounds (default 3); --seconds: iperf3 test length
Needs root, iproute2, iperf3, ping; openvpn, socat and openssl for their rows.`;

/** Bad command-line arguments: exit status 2. */
class UsageError extends Error {}

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, json: false, only: [], rounds: ROUNDS, seconds: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === '--quick') args.quick = true;
    else if (a === '--json') args.json = true;
    else if (a === '--only') args.only.push(...value().split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
    else if (a === '--rounds') args.rounds = Math.max(1, Number.parseInt(value(), 10));
    else if (a === '--seconds') args.seconds = Math.max(1, Number.parseInt(value(), 10));
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new UsageError(`unknown argument ${a}\n${USAGE}`);
  }
  return args;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (m: string): void => void process.stderr.write(m + '\n');
  if (process.getuid?.() !== 0) {
    log('bench:e2e needs root (network namespaces, TAP devices).');
    return 2;
  }
  for (const [tool, targs] of [
    ['ip', ['-V']],
    ['iperf3', ['--version']],
    ['ping', ['-V']],
    ['ss', ['-V']],
    ['getconf', ['CLK_TCK']],
  ] as const) {
    const why = await commandWorks(tool, [...targs]);
    if (why) {
      log(`bench:e2e needs ${tool}: ${why}`);
      return 2;
    }
  }
  const hz = Number((await runCommand('getconf', ['CLK_TCK'])).stdout.trim());
  if (hz !== CLOCK_TICKS_PER_S) {
    log(`CLK_TCK is ${hz}, not ${CLOCK_TICKS_PER_S}: CPU times would be wrong.`);
    return 2;
  }

  let contenders = allContenders();
  if (args.only.length) {
    contenders = contenders.filter((c) => args.only.some((o) => c.id === o || c.id.startsWith(`${o}-`) || c.name.toLowerCase().includes(o)));
  }
  if (contenders.length === 0) throw new UsageError(`--only ${args.only.join(',')} matches no contender\n${USAGE}`);
  const why = new Map<Contender, string | null>();
  for (const c of contenders) why.set(c, await c.unavailable());
  const runnable = contenders.filter((c) => why.get(c) === null);

  // The guest MTU: every contender's outer packet fits the underlay.
  const all = allContenders();
  const maxOverhead = Math.max(...all.map((c) => c.overheadBytes));
  const guestMtuBytes = Math.min(REFERENCE_GUEST_MTU_BYTES, UNDERLAY_MTU_BYTES - maxOverhead);
  const seconds = args.seconds ?? (args.quick ? QUICK_SECONDS : FULL_SECONDS);

  const loadAvgBefore = loadavg()[0]!;
  const { world, tmpDir, close: cleanup } = await openBenchRun('bench:e2e', PREFIX, log);

  const samples = new Map<Contender, Samples>();
  try {
    const topo = await buildStandardTopology(world, {
      guestsPerHost: 1,
      guestMtuBytes,
      underlayMtuBytes: UNDERLAY_MTU_BYTES,
      bridges: 'shared',
    });
    const [a, b] = topo.hosts;
    const bw: BenchWorld = { world, topo, a, b, guestA: a.guests[0]!, guestB: b.guests[0]!, tmpDir, guestMtuBytes };
    log(
      `bench:e2e: guest MTU ${guestMtuBytes} (largest overhead ${maxOverhead} octets on a ${UNDERLAY_MTU_BYTES}-octet underlay), ` +
        `${args.rounds} rounds × ${seconds} s, contenders: ${runnable.map((c) => c.name).join(', ') || 'none'}`,
    );
    for (const c of contenders) if (why.get(c)) log(`  skipping ${c.name}: ${why.get(c)}`);
    for (let round = 1; round <= args.rounds; round++) {
      log(`round ${round}/${args.rounds}`);
      for (const c of runnable) {
        const s = samples.get(c) ?? { tcpGbps: [], udpPps: [], pingMs: [], cpuTcp: [], cpuPerFrame: [], cpuUdp: [], busyTcp: [], errors: [] };
        samples.set(c, s);
        try {
          await measureRound(c, bw, seconds, s, log);
        } catch (err) {
          if (world.destroyed) throw err;
          const msg = (err as Error).message.split('\n')[0]!.slice(0, 300);
          s.errors.push(`round ${round}: ${msg}`);
          log(`  ${c.name}: round ${round} failed: ${msg}`);
        }
      }
    }
  } finally {
    await cleanup();
  }

  const rows = contenders.map((c) => toRow(c, why.get(c) ?? null, samples.get(c) ?? null));
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const meta = {
    bench: 'e2e',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel, kernel: release() },
    /** 1-minute load average before and after: other work on the machine skews every row. */
    loadAvg1m: { before: loadAvgBefore, after: loadavg()[0]! },
    guestMtuBytes,
    underlayMtuBytes: UNDERLAY_MTU_BYTES,
    underlay: 'IPv4 veth',
    rounds: args.rounds,
    secondsPerTest: seconds,
    udpPayloadBytes: UDP_PAYLOAD_BYTES,
  };
  if (args.json) {
    process.stdout.write(JSON.stringify({ ...meta, rows, ratios: ratios(rows) }, null, 2) + '\n');
  } else {
    const header = [
      `sectunnel e2e benchmark, ${meta.date}: guest to guest through bridged TAPs, guest MTU ${guestMtuBytes}, ` +
        `underlay MTU ${UNDERLAY_MTU_BYTES} (IPv4), medians of ${args.rounds} × ${seconds} s`,
      `machine: ${meta.machine.cpus} × ${cpuModel}, Linux ${meta.machine.kernel}; load average ${fmt(meta.loadAvg1m.before, 2)} before, ${fmt(meta.loadAvg1m.after, 2)} after`,
    ];
    process.stdout.write(table(rows, header) + '\n');
    const r = ratios(rows);
    for (const [id, v] of Object.entries(r)) {
      const n = (k: string, d: number): string => fmt(v[k] as number | null, d);
      process.stdout.write(
        `${id}: TCP ${n('tcpVsOpenvpn', 2)}× ${v.openvpnRow ?? 'OpenVPN'} (target 4), ${n('tcpVsSocat', 2)}× socat (target 3); ` +
          `UDP ${n('udpVsOpenvpn', 2)}× OpenVPN (target 3); ping +${n('pingOverBareMs', 3)} ms over no tunnel (target 0.3)\n`,
      );
    }
  }
  return rows.some((r) => r.errors.length > 0 && r.tcpGbps === null) ? 1 : 0;
}

// Run when executed (node dist/bench/e2e.js), not when imported for its contenders.
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench:e2e${err instanceof UsageError ? '' : ' failed'}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    },
  );
}
