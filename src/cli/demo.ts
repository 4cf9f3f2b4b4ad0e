/**
 * `sectunnel demo`: two hosts and two labels in network namespaces, two real
 * daemons, same-label traffic passing and cross-label traffic denied.
 *
 * Stages (one progress line each):
 *   1. preflight: root, the native addon (TAPs), the daemon's command;
 *   2. world: stale `st-demo-…` namespaces and temp folders removed, hosts and
 *      underlay built, one empty namespace per guest (demo/world.ts);
 *   3. configs with fresh random static SAs (demo/plan.ts), daemons started in
 *      the host namespaces, waited for until both answer `status`;
 *   4. guests attached: each TAP moved into its guest namespace;
 *   5. traffic: red ↔ red ping, red → red TCP, blue ↔ blue ping, red → blue and
 *      blue → red pings (must fail), with the receiving daemon's counter deltas
 *      and audit records (demo/traffic.ts, demo/report.ts);
 *   6. summary table from both daemons; teardown (daemons SIGTERM, namespaces,
 *      temp folder) — also on failure and on SIGINT/SIGTERM/SIGHUP — or, with
 *      --keep, instructions to inspect and remove.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callControl } from '../control/status-client.js';
import type { StatusReport } from '../control/status-report.js';
import { ioAddon } from '../io/tap.js';
import { namespacesWithPrefix, removeStaleNamespaces, runCommand } from '../io/netns.js';
import { nativeLoadError } from '../native.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';
import {
  DEMO_LABELS,
  DEMO_PREFIX,
  DEMO_TMP_MARKER,
  DEMO_TMP_PREFIX,
  demoPlan,
  writeHostKeys,
  guestOf,
  hostConfigText,
  outerPacketBytes,
  type DemoGuest,
  type DemoHost,
  type DemoPlan,
} from './demo/plan.js';
import {
  countersOf,
  denials,
  formatAuditRecord,
  formatDeltas,
  Progress,
  readAuditFrom,
  reasonDeltas,
  summaryTable,
  type HostCounters,
  type ProgressSink,
} from './demo/report.js';
import { haveIperf3, ping, pingUntilReply, throughput, type PingResult } from './demo/traffic.js';
import { attachGuests, buildHosts, DemoWorld, type Daemon, type DaemonStop, type TeardownReport } from './demo/world.js';

const HELP = `usage: sectunnel demo [--keep] [--json]
       sectunnel demo --cleanup

Builds a small world in network namespaces named ${DEMO_PREFIX}… and runs two
sectunnel daemons in it, to show what labeled tunnels do:

  host-a 192.0.2.1 ───── veth underlay, MTU 1500 ───── host-b 192.0.2.2
   ├─ a-red   198.51.100.11  label red  (VLAN 100)      ├─ b-red   198.51.100.21
   └─ a-blue  198.51.100.12  label blue (VLAN 200)      └─ b-blue  198.51.100.22

Each guest is a namespace whose NIC is a TAP of its host's daemon. The daemons
carry guest frames as Ethernet-in-GRE-in-ESP (AES-256-GCM, UDP 4500) with
keys from the peer handshake: each host gets a fresh X25519 key (0600 file),
names its peer by public key, and the daemons derive per-label SAs. The
guest MTU is the underlay MTU minus the tunnel overhead, so nothing fragments.

Steps, one line each: red ↔ red ping; a 3 s TCP run red → red (iperf3, or a
Node transfer without it); blue ↔ blue ping; then red → blue and blue → red
pings — the sender is given the target's MAC, so its frames do reach the
other host — which the receiving daemon must deny (its counters and audit
records are shown). Then a table of both daemons' counters, and everything is
torn down: also on failure and on Ctrl-C.

  --keep      leave the world and the daemons running for inspection, and
              print how to look at it and how to remove it
  --cleanup   remove what a kept or crashed demo left (${DEMO_PREFIX}… namespaces,
              the daemons in them, its temp folders), then exit
  --json      print the final summary as JSON on stdout (progress: stderr)
  -h, --help  this text

Needs root, iproute2, ping and the native addon (TAP devices); uses iperf3 if
installed. Takes about 20 seconds.
Exit status: 0 same-label traffic passed and cross-label traffic was denied;
1 a step failed (the output names it); 2 bad arguments; 128+N on signal N.`;

/** Longest wait for both daemons to answer `status`. */
const DAEMON_READY_TIMEOUT_MS = 20_000;
/** Longest wait for the daemon's TAPs to appear (after status answers). */
const TAP_TIMEOUT_MS = 10_000;
/** Warm-up: ARP and the daemons' MAC tables. */
const WARMUP_TIMEOUT_MS = 8000;
const THROUGHPUT_SECONDS = 3;
const SAME_LABEL_PING = { count: 5, intervalSeconds: 0.2, waitSeconds: 1 };
const CROSS_LABEL_PING = { count: 3, intervalSeconds: 0.3, waitSeconds: 1 };
/** Longest wait for a daemon's denial counters and audit file to show the attempt. */
const DENIAL_SETTLE_MS = 3000;

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** One step's outcome, as printed and as in --json. */
export interface DemoStep {
  step: string;
  ok: boolean;
  detail: string;
  data?: unknown;
}

/** The --json output. */
export interface DemoSummary {
  ok: boolean;
  failedSteps: string[];
  guestMtuBytes: number;
  overheadBytes: number;
  steps: DemoStep[];
  counters: Record<string, HostCounters>;
  teardown: TeardownReport | null;
  kept: { namespaces: string[]; tmpDir: string; daemons: { host: string; pid: number; socket: string }[] } | null;
}

/** A step that could not go on (the world or a daemon), as opposed to a check that failed. */
class StepAbort extends Error {
  constructor(
    readonly step: string,
    message: string,
  ) {
    super(message);
    this.name = 'StepAbort';
  }
}

/** The `sectunnel` command line that runs a daemon: node + this build's bin.js, else scripts/sectunnel. */
function daemonCommand(): string[] {
  const bin = fileURLToPath(new URL('./bin.js', import.meta.url));
  if (existsSync(bin)) return [process.execPath, bin];
  for (const rel of ['../../scripts/sectunnel', '../../../scripts/sectunnel']) {
    const script = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(script)) return [script];
  }
  throw new CliError(`cannot find the sectunnel command to start the daemons (looked for ${bin} and scripts/sectunnel)`, EXIT_FAILURE);
}

/** Removes the temp folders of earlier runs (only those carrying the demo's marker file), except `keep`. */
function removeStaleTmpDirs(keep: string | null): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DEMO_TMP_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    if (dir === keep || !existsSync(join(dir, DEMO_TMP_MARKER))) continue;
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

function ms(n: number): string {
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`;
}

function pingText(from: DemoGuest, to: DemoGuest, r: PingResult): string {
  const rtt = r.rttAvgMs !== null ? `, rtt avg ${r.rttAvgMs.toFixed(2)} ms` : '';
  return `${from.name} → ${to.name} ${r.received}/${r.transmitted} replies, ${r.lossPercent}% loss${rtt}`;
}

/** One demo run: its world, daemons, step records and teardown. */
class DemoRun {
  readonly progress: Progress;
  readonly steps: DemoStep[] = [];
  readonly plan: DemoPlan;
  readonly world: DemoWorld;
  daemons: Daemon[] = [];
  guestMtuBytes: number;
  counters: Record<string, HostCounters> = {};
  interrupted: NodeJS.Signals | null = null;
  private teardownReport: Promise<TeardownReport | null> | null = null;

  constructor(
    readonly out: ProgressSink,
    readonly opts: { keep: boolean; json: boolean },
    readonly tmpDir: string,
  ) {
    this.progress = new Progress(out);
    this.plan = demoPlan(tmpDir);
    this.guestMtuBytes = this.plan.guestMtuBytes;
    this.world = new DemoWorld(this.plan.prefix);
  }

  private record(step: string, ok: boolean, detail: string, data?: unknown): void {
    this.steps.push({ step, ok, detail, ...(data !== undefined && { data }) });
    if (ok) this.progress.ok(`${step}: ${detail}`);
    else this.progress.fail(`${step}: ${detail}`);
  }

  /** Runs an infrastructure step: a throw ends the demo (named as this step). */
  private async infra(step: string, running: string, fn: () => Promise<{ detail: string; data?: unknown; details?: string[] }>): Promise<void> {
    this.progress.begin(`${step}: ${running}`);
    let r: { detail: string; data?: unknown; details?: string[] };
    try {
      r = await fn();
    } catch (e) {
      throw e instanceof StepAbort ? e : new StepAbort(step, (e as Error).message);
    }
    this.record(step, true, r.detail, r.data);
    for (const d of r.details ?? []) this.progress.detail(d);
  }

  /** Runs a check: its verdict is recorded and the demo goes on either way (a throw is a failed check). */
  private async check(step: string, running: string, fn: () => Promise<{ ok: boolean; detail: string; data?: unknown; details?: string[] }>): Promise<void> {
    this.progress.begin(`${step}: ${running}`);
    try {
      const r = await fn();
      this.record(step, r.ok, r.ok ? r.detail : r.detail + this.deadDaemonsNote(), r.data);
      for (const d of r.details ?? []) this.progress.detail(d);
    } catch (e) {
      if (this.interrupted) throw e;
      this.record(step, false, oneLine((e as Error).message) + this.deadDaemonsNote());
    }
  }

  /** " (the daemon of host-b is not running: killed by SIGKILL)" for each daemon that stopped, or "". */
  private deadDaemonsNote(): string {
    return this.daemons
      .filter((d) => !d.running)
      .map((d) => ` (the daemon of ${d.host} is not running: ${d.exitStatus?.code != null ? `exit ${d.exitStatus.code}` : `killed by ${d.exitStatus?.signal ?? '?'}`})`)
      .join('');
  }

  async status(host: DemoHost, timeoutMs = 3000): Promise<StatusReport> {
    return (await callControl(host.socket, 'status', undefined, { timeoutMs })) as StatusReport;
  }

  async countersOfHost(host: DemoHost): Promise<HostCounters> {
    return countersOf(await this.status(host));
  }

  /** Steps 2–5. Throws StepAbort when the world or a daemon fails. */
  async runSteps(): Promise<void> {
    const plan = this.plan;
    const [ha, hb] = plan.hosts;

    await this.infra('world', 'building namespaces', async () => {
      const staleDirs = removeStaleTmpDirs(this.tmpDir);
      const world = this.world;
      const stale = await world.removeStale();
      await buildHosts(world, plan);
      const removed = stale.length + staleDirs.length > 0 ? ` (first removed ${stale.length} namespaces and ${staleDirs.length} temp folders of an earlier run)` : '';
      return {
        detail: `${world.namespaceNames().length} namespaces ${plan.prefix}…: ${ha.name} ${ha.ipv4} ↔ ${hb.name} ${hb.ipv4} over veth ${ha.underlayDev}, MTU ${plan.underlayMtuBytes}${removed}`,
        data: { namespaces: world.namespaceNames(), staleRemoved: stale },
      };
    });
    const world = this.world;

    await this.infra('configs', 'writing', async () => {
      const keys = await writeHostKeys(plan);
      for (const h of plan.hosts) {
        mkdirSync(h.stateDir, { recursive: true, mode: 0o700 });
        writeFileSync(h.configFile, hostConfigText(plan, h, keys), { mode: 0o600 });
      }
      return {
        detail: `${this.tmpDir}/${ha.name}.json, ${hb.name}.json: ${plan.algorithm}, peers by public key, SAs per label from the handshake`,
        details: [
          `host keys ${ha.name}.key, ${hb.name}.key (0600); public keys ${ha.name} ${keys.a}, ${hb.name} ${keys.b}`,
          `tunnel overhead ${plan.overheadBytes} B → guest MTU ${plan.guestMtuBytes}: its largest frame makes a ${outerPacketBytes(plan.guestMtuBytes)} B outer packet, underlay MTU ${plan.underlayMtuBytes}`,
        ],
        data: { configs: plan.hosts.map((h) => h.configFile), overheadBytes: plan.overheadBytes, guestMtuBytes: plan.guestMtuBytes },
      };
    });

    await this.infra('daemons', 'starting', async () => {
      const cmd = daemonCommand();
      const t0 = Date.now();
      for (const h of plan.hosts) {
        this.daemons.push(world.spawnDaemon(h.name, h.ns, [...cmd, 'run', '--config', h.configFile], h.logFile));
      }
      const reports = await Promise.all(plan.hosts.map((h, i) => this.waitForStatus(h, this.daemons[i]!)));
      // The daemon knows its overhead best; if it asks for a smaller guest MTU, use that.
      for (const r of reports) if (typeof r.mtu?.guestMtu === 'number' && r.mtu.guestMtu < this.guestMtuBytes) this.guestMtuBytes = r.mtu.guestMtu;
      const mtus = reports.map((r) => r.mtu?.guestMtu ?? '?').join(', ');
      return {
        detail: `${plan.hosts.map((h, i) => `${h.name} pid ${this.daemons[i]!.pid}`).join(', ')} answer status after ${ms(Date.now() - t0)}`,
        details: [`\`sectunnel run --config FILE\` in ${ha.ns}, ${hb.ns}; they report guest MTU ${mtus}; logs ${ha.name}.log, ${hb.name}.log`],
        data: { pids: Object.fromEntries(plan.hosts.map((h, i) => [h.name, this.daemons[i]!.pid])) },
      };
    });

    await this.infra('guests', 'attaching TAPs', async () => {
      try {
        await attachGuests(world, plan, this.guestMtuBytes, TAP_TIMEOUT_MS);
      } catch (e) {
        throw new Error(`${(e as Error).message}${this.daemonTails()}`);
      }
      const list = plan.hosts.flatMap((h) => h.guests.map((g) => `${g.name} ${g.ipv4}`)).join(', ');
      return { detail: `each daemon's TAPs moved into their guest namespaces, MTU ${this.guestMtuBytes}: ${list}` };
    });

    const aRed = guestOf(plan, 'a', 'red');
    const bRed = guestOf(plan, 'b', 'red');
    const aBlue = guestOf(plan, 'a', 'blue');
    const bBlue = guestOf(plan, 'b', 'blue');

    await this.sameLabel('red ↔ red', aRed, bRed);
    await this.check(`red → red TCP`, `${THROUGHPUT_SECONDS} s`, async () => {
      const useIperf3 = await haveIperf3(world, aRed.ns);
      const r = await throughput(world, aRed, bRed, THROUGHPUT_SECONDS, useIperf3);
      const tool = r.tool === 'iperf3' ? 'iperf3' : 'Node TCP transfer (iperf3 not installed)';
      return {
        ok: r.bytes > 0,
        detail: `${aRed.name} → ${bRed.name} ${r.mbitPerSecond.toFixed(1)} Mbit/s over ${r.seconds.toFixed(1)} s (${tool}, ${(r.bytes / 1e6).toFixed(1)} MB)`,
        data: r,
      };
    });
    await this.sameLabel('blue ↔ blue', aBlue, bBlue);
    await this.crossLabel('red → blue', aRed, bBlue, hb);
    await this.crossLabel('blue → red', bBlue, aRed, ha);
  }

  private async waitForStatus(h: DemoHost, d: Daemon): Promise<StatusReport> {
    const deadline = Date.now() + DAEMON_READY_TIMEOUT_MS;
    let last = '';
    for (;;) {
      if (!d.running) {
        const exit = await Promise.race([d.exited, new Promise<null>((r) => setTimeout(() => r(null), 500))]);
        throw new Error(
          `the daemon of ${h.name} exited (code ${exit?.code ?? '?'}, signal ${exit?.signal ?? 'none'}) before answering status; its log ${h.logFile}:\n${indent(d.logTail())}`,
        );
      }
      try {
        return await this.status(h, 2000);
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`the daemon of ${h.name} did not answer status within ${ms(DAEMON_READY_TIMEOUT_MS)} (${last}); its log:\n${indent(d.logTail())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private daemonTails(): string {
    return this.daemons
      .map((d) => `\n  ${d.host} ${d.running ? 'running' : `exited (code ${d.exitStatus?.code}, signal ${d.exitStatus?.signal})`}; log tail:\n${indent(d.logTail(800), 4)}`)
      .join('');
  }

  /** Same-label pings both ways after a warm-up; passes if replies came both ways. */
  private async sameLabel(step: string, a: DemoGuest, b: DemoGuest): Promise<void> {
    const world = this.world;
    await this.check(step, 'ping', async () => {
      const warm = await pingUntilReply(world, a, b, WARMUP_TIMEOUT_MS);
      const ab = await ping(world, a, b, SAME_LABEL_PING);
      const ba = await ping(world, b, a, SAME_LABEL_PING);
      const ok = ab.received > 0 && ba.received > 0;
      const why = ok ? '' : warm ? '' : ` (no reply within ${ms(WARMUP_TIMEOUT_MS)} of warm-up)`;
      return { ok, detail: `${pingText(a, b, ab)}; ${pingText(b, a, ba)}${why}`, data: { [`${a.name}->${b.name}`]: ab, [`${b.name}->${a.name}`]: ba } };
    });
  }

  /**
   * A cross-label attempt: `from` gets a static ARP entry for `to` (an attacker
   * who knows the MAC), so its frames are carried to `to`'s host, whose label
   * check must refuse them. Passes if no reply came and the receiver counted
   * denials (policy_denied / label_mismatch) for them.
   */
  private async crossLabel(step: string, from: DemoGuest, to: DemoGuest, receiver: DemoHost): Promise<void> {
    const world = this.world;
    await this.check(step, 'ping (must fail)', async () => {
      await world.ip(from.ns, ['neigh', 'replace', to.ipv4, 'lladdr', to.mac, 'dev', from.tap, 'nud', 'permanent']);
      const before = await this.countersOfHost(receiver);
      const auditStart = readAuditFrom(receiver.auditFile, 0).offset;
      const r = await ping(world, from, to, CROSS_LABEL_PING);
      // Counters move with the packets; the audit file is written asynchronously: wait for both briefly.
      let after = await this.countersOfHost(receiver);
      let audit = readAuditFrom(receiver.auditFile, auditStart).records.filter((x) => x.type === 'drop');
      const deadline = Date.now() + DENIAL_SETTLE_MS;
      while (Date.now() < deadline && (denials(reasonDeltas(before, after)) < r.transmitted || audit.length < after.audit.written - before.audit.written)) {
        await new Promise((res) => setTimeout(res, 100));
        after = await this.countersOfHost(receiver);
        audit = readAuditFrom(receiver.auditFile, auditStart).records.filter((x) => x.type === 'drop');
      }
      const deltas = reasonDeltas(before, after);
      const denied = denials(deltas);
      const auditDelta = after.audit.written - before.audit.written;
      const ok = r.received === 0 && denied > 0;
      const verdict =
        r.received > 0 ? `${r.received} replies came back: NOT isolated` : denied > 0 ? 'denied' : `no reply, but ${receiver.name} counted no denial`;
      const details = [
        `(${from.name} was given ${to.name}'s MAC by a static ARP entry, so its frames reach ${receiver.name} as ${from.label} traffic)`,
        ...audit.slice(0, 2).map((x) => `audit ${receiver.name}: ${formatAuditRecord(x)}`),
        ...(audit.length > 2 ? [`audit ${receiver.name}: … ${audit.length - 2} more in ${receiver.auditFile}`] : []),
      ];
      return {
        ok,
        detail: `${verdict}: ${from.name} → ${to.name} ${r.received}/${r.transmitted} replies (${r.lossPercent}% loss); ${receiver.name} counters: ${formatDeltas(deltas)}; audit records +${auditDelta}`,
        data: { ping: r, receiver: receiver.name, counterDeltas: deltas, auditWritten: auditDelta, auditRecords: audit },
        details,
      };
    });
  }

  /** Tears down once (also from a signal handler); null with --keep. */
  teardown(): Promise<TeardownReport | null> {
    this.teardownReport ??= (async () => {
      if (this.opts.keep && this.interrupted === null) return null;
      const report = await this.world.teardown();
      rmSync(this.tmpDir, { recursive: true, force: true });
      return report;
    })();
    return this.teardownReport;
  }

  /** Prints the teardown line; true if everything stopped and went away cleanly. */
  reportTeardown(t: TeardownReport, progress = this.progress): boolean {
    // A daemon that needed SIGKILL did not stop cleanly; one that had exited before was reported by the steps.
    const ok = t.daemons.every((d) => d.how !== 'SIGKILL') && t.left.length === 0 && t.problems.length === 0;
    const exitText = (d: DaemonStop): string => (d.code !== null ? `exit ${d.code}` : `killed by ${d.signal}`);
    const daemons = t.daemons.map((d) => `${d.host} ${d.how === 'had exited' ? 'had exited' : `stopped by ${d.how}`} (${exitText(d)})`);
    const text =
      `teardown: ${daemons.length > 0 ? daemons.join(', ') + '; ' : ''}${t.namespaces.length} namespaces deleted` +
      `${t.left.length > 0 ? `, LEFT: ${t.left.join(', ')}` : ''}; ${this.tmpDir} removed` +
      `${t.problems.length > 0 ? `; problems: ${t.problems.join('; ')}` : ''}`;
    if (ok) progress.ok(text);
    else progress.fail(text);
    this.steps.push({ step: 'teardown', ok, detail: text.replace(/^teardown: /, ''), data: t });
    return ok;
  }

  /** Everything after the steps: summary table, teardown or --keep, the verdict. */
  async finish(): Promise<number> {
    const daemonsUp = this.daemons.length === 2 && this.daemons.every((d) => d.running);
    if (daemonsUp) {
      try {
        for (const h of this.plan.hosts) this.counters[h.name] = await this.countersOfHost(h);
        this.progress.line('');
        this.progress.line('counters (from each daemon\'s status report):');
        this.progress.line(summaryTable(this.plan.hosts.map((h) => this.counters[h.name]!)));
        this.progress.line('');
      } catch (e) {
        this.record('summary', false, `could not read the daemons' counters: ${(e as Error).message}`);
      }
    } else if (this.daemons.length > 0 && !this.steps.some((s) => s.step === 'daemons' && !s.ok)) {
      this.record('daemons', false, `a daemon stopped during the demo:${this.daemonTails()}`);
    }

    let kept: DemoSummary['kept'] = null;
    let teardown: TeardownReport | null = null;
    if (this.opts.keep) {
      kept = this.keep();
    } else {
      teardown = await this.teardown();
      if (teardown !== null) this.reportTeardown(teardown);
    }
    const failed = this.steps.filter((s) => !s.ok).map((s) => s.step);
    const ok = failed.length === 0;
    if (ok) this.progress.line('PASS: same-label traffic passed; cross-label traffic was denied and audited.');
    else this.progress.line(`FAIL: ${failed.join(', ')}`);
    if (this.opts.json) {
      const summary: DemoSummary = {
        ok,
        failedSteps: failed,
        guestMtuBytes: this.guestMtuBytes,
        overheadBytes: this.plan.overheadBytes,
        steps: this.steps,
        counters: this.counters,
        teardown,
        kept,
      };
      process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    }
    return ok ? EXIT_OK : EXIT_FAILURE;
  }

  /** --keep: leave it all up and say how to look and how to remove it. */
  private keep(): DemoSummary['kept'] {
    this.world.keep();
    const namespaces = this.world.namespaceNames();
    const daemons = this.plan.hosts.map((h, i) => ({ host: h.name, pid: this.daemons[i]?.pid ?? 0, socket: h.socket }));
    const [ha, hb] = this.plan.hosts;
    const p = this.progress;
    p.line(`kept: ${namespaces.length} namespaces, daemons ${daemons.map((d) => `${d.host} pid ${d.pid}`).join(', ')}, files in ${this.tmpDir}`);
    p.line('  look at it:');
    p.line(`    scripts/sectunnel status --socket ${ha.socket}`);
    p.line(`    ip netns exec ${guestOf(this.plan, 'a', 'red').ns} ping ${guestOf(this.plan, 'b', 'red').ipv4}`);
    p.line(`    ip netns exec ${ha.ns} curl -s http://127.0.0.1:${ha.metricsPort}/metrics`);
    p.line(`    cat ${hb.auditFile} ${hb.logFile}`);
    p.line('  remove it:');
    p.line('    scripts/sectunnel demo --cleanup');
    p.line(`    (or by hand: kill -TERM ${daemons.map((d) => d.pid).join(' ')}; ${namespaces.map((n) => `ip netns del ${n}`).join('; ')}; rm -r ${this.tmpDir})`);
    return { namespaces, tmpDir: this.tmpDir, daemons };
  }
}

/** `text` with its line breaks turned into spaces (for one progress line). */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** The last `maxLines` lines of `text`, indented by `n`. */
function indent(text: string, n = 2, maxLines = 15): string {
  const pad = ' '.repeat(n);
  const lines = (text || '(empty)').split('\n');
  const shown = lines.length > maxLines ? ['…', ...lines.slice(-maxLines)] : lines;
  return shown.map((l) => pad + l).join('\n');
}

/** --cleanup: SIGTERM the daemons in st-demo-… namespaces, then remove the namespaces and marked temp folders. */
async function cleanup(out: ProgressSink): Promise<number> {
  const namespaces = await namespacesWithPrefix(DEMO_PREFIX);
  const pids: number[] = [];
  for (const ns of namespaces) {
    try {
      const { stdout } = await runCommand('ip', ['netns', 'pids', ns]);
      pids.push(...stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number));
    } catch {
      // gone meanwhile
    }
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + 5000;
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const removed = await removeStaleNamespaces(DEMO_PREFIX); // SIGKILLs whatever did not stop
  const dirs = removeStaleTmpDirs(null);
  out.write(`✓ cleanup: ${pids.length} processes stopped, ${removed.length} namespaces deleted${removed.length ? ` (${removed.join(', ')})` : ''}, ${dirs.length} temp folders removed\n`);
  const left = await namespacesWithPrefix(DEMO_PREFIX);
  if (left.length > 0) {
    out.write(`✗ still there: ${left.join(', ')}\n`);
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

/** Runs `sectunnel demo` with `argv` (after the subcommand name); returns the exit status. */
export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    { keep: { type: 'boolean' }, json: { type: 'boolean' }, cleanup: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    HELP,
  );
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return EXIT_OK;
  }
  if (values.cleanup && (values.keep || values.json)) throw new CliError('--cleanup takes no other option', EXIT_USAGE);
  if (process.getuid?.() !== 0) throw new CliError('needs root (network namespaces and TAP devices); try: sudo scripts/sectunnel demo', EXIT_FAILURE);
  const out: ProgressSink = values.json ? process.stderr : process.stdout;
  if (values.cleanup) return cleanup(out);
  if (ioAddon() === null) {
    throw new CliError(`the native addon is needed for TAP devices and is not loaded (${nativeLoadError() ?? 'it predates TAP support'}); build it with \`npm run build:native\``, EXIT_FAILURE);
  }

  const tmpDir = mkdtempSync(join(tmpdir(), DEMO_TMP_PREFIX));
  writeFileSync(join(tmpDir, DEMO_TMP_MARKER), `sectunnel demo, pid ${process.pid}\n`);
  const run = new DemoRun(out, { keep: values.keep === true, json: values.json === true }, tmpDir);

  // Ctrl-C, kill or a closed terminal: stop the steps' output, tear down, exit 128+N.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (run.interrupted !== null) return;
    run.interrupted = signal;
    run.progress.mute();
    out.write(`\n✗ interrupted by ${signal}: tearing down\n`);
    void run
      .teardown()
      .then(
        (t) => t !== null && run.reportTeardown(t, new Progress(out)),
        (e: unknown) => out.write(`✗ teardown failed: ${(e as Error).message}\n`),
      )
      .finally(() => process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 0)));
  };
  // Anything else that ends the process (an uncaught error): synchronous teardown.
  const onExit = (): void => {
    if (run.interrupted !== null || values.keep) return;
    run.world.teardownSync();
    rmSync(tmpDir, { recursive: true, force: true });
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  process.on('exit', onExit);

  const [ha, hb] = run.plan.hosts;
  run.progress.line(`sectunnel demo: ${ha.name} and ${hb.name}, labels ${DEMO_LABELS.map((l) => `${l.name} (VLAN ${l.vlan})`).join(' and ')}, a guest of each on each host`);
  try {
    try {
      await run.runSteps();
    } catch (e) {
      if (run.interrupted !== null) return await new Promise<number>(() => {}); // the signal handler exits
      const step = e instanceof StepAbort ? e.step : 'demo';
      run.steps.push({ step, ok: false, detail: (e as Error).message });
      run.progress.fail(`${step}: ${(e as Error).message}`);
    }
    if (run.interrupted !== null) return await new Promise<number>(() => {});
    return await run.finish();
  } finally {
    if (run.interrupted === null) {
      if (!values.keep) await run.teardown(); // after a throw in finish(); a no-op otherwise
      for (const s of signals) process.off(s, onSignal);
      process.off('exit', onExit);
    }
  }
}

registerSubcommand('demo', 'two hosts, two labels in network namespaces: same-label traffic passes, cross-label is denied', runDemo);
