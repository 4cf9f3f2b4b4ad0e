// src/cli/demo.ts: the README's main-job command. End to end in network namespaces:
// same-label traffic passes, cross-label traffic is denied with counters and audit
// records, and nothing is left behind — after a run and after Ctrl-C midway.
// Plus the pure parts: the plan's MTU arithmetic and configs, ping parsing, counters.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { daemonConfigSchema } from '../../src/control/config.js';
import { validateConfig } from '../../src/control/load.js';
import type { StatusReport } from '../../src/control/status-report.js';
import { namespacesWithPrefix } from '../../src/io/netns.js';
import { runDemo, type DemoSummary } from '../../src/cli/demo.js';
import { DEMO_PREFIX, demoPlan, hostConfigText, outerPacketBytes, writeHostKeys } from '../../src/cli/demo/plan.js';
import { loadPrivateKey, publicKeyOf } from '../../src/control/keys.js';
import { countersOf, denials, formatAuditRecord, reasonDeltas, summaryTable } from '../../src/cli/demo/report.js';
import { parsePing } from '../../src/cli/demo/traffic.js';
import { itWith } from '../helpers/tools.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

/**
 * The command under test: `scripts/sectunnel` (the compiled tree `npm ci` builds), or
 * `node $SECTUNNEL_TEST_CLI` to test another build of bin.js.
 */
function cliArgv(args: string[]): [string, string[]] {
  const alt = process.env.SECTUNNEL_TEST_CLI;
  if (alt) return [process.execPath, [alt, ...args]];
  const built = join(ROOT, 'dist', 'src', 'cli', 'demo.js');
  if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` (npm ci does) before this test`);
  return [join(ROOT, 'scripts', 'sectunnel'), args];
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the demo; `onOutput` sees the output so far and may signal the child. */
function runCli(args: string[], onOutput?: (all: string, pid: number) => void): Promise<Ran> {
  const [cmd, argv] = cliArgv(args);
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString('utf8');
      onOutput?.(stdout + stderr, child.pid!);
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString('utf8');
      onOutput?.(stdout + stderr, child.pid!);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolveRun({ code, signal, stdout, stderr }));
  });
}

function processAlive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(stat, 'utf8'));
  } catch {
    return false;
  }
}

/** The daemons' pids from the "✓ daemons: host-a pid N, host-b pid M …" line. */
function daemonPids(output: string): number[] {
  const line = output.split('\n').find((l) => l.startsWith('✓ daemons:')) ?? '';
  return [...line.matchAll(/host-[ab] pid (\d+)/g)].map((m) => Number(m[1]));
}

/** The temp folder from the "✓ configs: /tmp/sectunnel-demo-XXXXXX/host-a.json, …" line. */
function tmpDirOf(output: string): string | null {
  return /^✓ configs: (\S*sectunnel-demo-\w+)\/host-a\.json/m.exec(output)?.[1] ?? null;
}

describe('sectunnel demo, end to end', () => {
  itWith(['netns', 'native'], 'red ↔ red passes, red → blue and blue → red are denied and audited, nothing is left', async () => {
    const r = await runCli(['demo', '--json']);
    const progress = r.stderr;
    expect(r.code, `demo failed:\n${progress}\n${r.stdout}`).toBe(0);

    // What the user reads.
    expect(progress).toMatch(/^✓ red ↔ red: a-red → b-red [1-9]\d*\/\d+ replies/m);
    expect(progress).toMatch(/^✓ red → red TCP: a-red → b-red [\d.]+ Mbit\/s/m);
    expect(progress).toMatch(/^✓ blue ↔ blue: a-blue → b-blue [1-9]\d*\/\d+ replies/m);
    const redBlue = /^✓ red → blue: denied: a-red → b-blue 0\/\d+ replies .*host-b counters: (.*); audit records \+(\d+)$/m.exec(progress);
    expect(redBlue, progress).not.toBeNull();
    expect(redBlue![1]).toMatch(/(policy_denied|label_mismatch) \+[1-9]/);
    expect(Number(redBlue![2])).toBeGreaterThan(0);
    expect(progress).toMatch(/^ {4}audit host-b: (policy_denied|label_mismatch): red → blue/m);
    expect(progress).toMatch(/^✓ blue → red: denied: b-blue → a-red 0\/\d+ replies/m);
    expect(progress).toMatch(/^PASS/m);

    // The JSON summary agrees.
    const summary = JSON.parse(r.stdout) as DemoSummary;
    expect(summary.ok).toBe(true);
    expect(summary.failedSteps).toEqual([]);
    const step = (name: string) => summary.steps.find((s) => s.step === name);
    const denied = step('red → blue')!.data as { counterDeltas: Record<string, number>; auditWritten: number; ping: { received: number } };
    expect(denied.ping.received).toBe(0);
    expect(denials(denied.counterDeltas)).toBeGreaterThan(0);
    expect(summary.counters['host-b']!.audit.written).toBeGreaterThan(0);
    expect(summary.counters['host-a']!.labels.red!.txPackets).toBeGreaterThan(0);
    expect(summary.counters['host-b']!.labels.red!.rxPackets).toBeGreaterThan(0);

    // Torn down: no namespace, no daemon, no temp folder.
    expect(await namespacesWithPrefix(DEMO_PREFIX)).toEqual([]);
    const pids = daemonPids(progress);
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(processAlive(pid), `daemon ${pid} still runs`).toBe(false);
    const tmp = tmpDirOf(progress);
    expect(tmp).not.toBeNull();
    expect(existsSync(tmp!)).toBe(false);
  });

  itWith(['netns', 'native'], 'Ctrl-C midway stops the daemons and removes every namespace and file', async () => {
    let sent = false;
    const r = await runCli(['demo'], (all, pid) => {
      // Once both daemons run and traffic has started: interrupt.
      if (!sent && /^✓ guests:/m.test(all)) {
        sent = true;
        process.kill(pid, 'SIGINT');
      }
    });
    const out = r.stdout + r.stderr;
    expect(sent, `never reached the traffic steps:\n${out}`).toBe(true);
    expect(r.code, out).toBe(130);
    expect(out).toMatch(/interrupted by SIGINT: tearing down/);
    expect(out).toMatch(/^✓ teardown: host-a stopped by SIGTERM .*host-b stopped by SIGTERM .*6 namespaces deleted/m);
    expect(out).not.toMatch(/^PASS/m);
    expect(await namespacesWithPrefix(DEMO_PREFIX)).toEqual([]);
    const pids = daemonPids(out);
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(processAlive(pid), `daemon ${pid} still runs`).toBe(false);
    expect(existsSync(tmpDirOf(out)!)).toBe(false);
  });
});

describe('the plan', () => {
  const plan = demoPlan('/tmp/sectunnel-demo-test');

  it('picks the largest guest MTU whose outer packet fits the 1500-octet underlay', () => {
    expect(plan.overheadBytes).toBe(91); // 20 IPv4 + 8 UDP + 8 ESP + 8 IV + 8 GRE + 14 Ethernet + 4 tag + 3 pad + 2 trailer + 16 ICV
    expect(outerPacketBytes(plan.guestMtuBytes)).toBeLessThanOrEqual(1500);
    // Never more than the worst case: every guest packet up to the MTU fits.
    for (let ip = 1300; ip <= plan.guestMtuBytes; ip++) expect(outerPacketBytes(ip)).toBeLessThanOrEqual(1500);
  });

  it('names only st-demo- namespaces and gives each host its own socket, audit file and metrics port', () => {
    const all = plan.hosts.flatMap((h) => [h.ns, ...h.guests.map((g) => g.ns)]);
    expect(new Set(all).size).toBe(6);
    for (const ns of all) expect(ns.startsWith(DEMO_PREFIX)).toBe(true);
    const [a, b] = plan.hosts;
    expect(a.socket).not.toBe(b.socket);
    expect(a.auditFile).not.toBe(b.auditFile);
    expect(a.metricsPort).not.toBe(b.metricsPort);
    expect(plan.hosts.flatMap((h) => h.guests.map((g) => g.mac)).length).toBe(4);
  });

  it('writes configs the daemon accepts: each host names the other by the public key of its 0600 key file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-demo-test-'));
    try {
      const p = demoPlan(dir);
      const keys = await writeHostKeys(p);
      const [a, b] = p.hosts;
      const ca = validateConfig(JSON.parse(hostConfigText(p, a, keys)), daemonConfigSchema, 'a');
      const cb = validateConfig(JSON.parse(hostConfigText(p, b, keys)), daemonConfigSchema, 'b');
      expect(ca.domains.map((d) => [d.label, d.tap?.create])).toEqual([
        ['red', true],
        ['blue', true],
      ]);
      expect(ca.host.privateKeyFile).toBe(a.keyFile);
      expect(statSync(a.keyFile).mode & 0o777).toBe(0o600);
      // What a names as b's key is the public key of b's private key file, and the other way round.
      expect(Buffer.from(ca.peers[0]!.publicKey!).toString('base64')).toBe(Buffer.from(publicKeyOf(await loadPrivateKey(b.keyFile))).toString('base64'));
      expect(Buffer.from(cb.peers[0]!.publicKey!).toString('base64')).toBe(Buffer.from(publicKeyOf(await loadPrivateKey(a.keyFile))).toString('base64'));
      expect(ca.peers[0]!.staticSas).toEqual([]);
      expect(ca.audit.path).toBe(a.auditFile);
      expect(ca.metrics.listen).toEqual({ address: '127.0.0.1', port: a.metricsPort });
      // Fresh keys every run.
      const again = await writeHostKeys(demoPlan(mkdtempSync(join(dir, 'again-'))));
      expect(again.a).not.toBe(keys.a);
      expect(new Set([keys.a, keys.b, again.a, again.b]).size).toBe(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('reading what happened', () => {
  it('parses ping summaries, with and without replies', () => {
    const ok = `--- 198.51.100.21 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 812ms
rtt min/avg/max/mdev = 0.310/0.402/0.517/0.071 ms
`;
    expect(parsePing(ok)).toEqual({ transmitted: 5, received: 5, lossPercent: 0, rttMinMs: 0.31, rttAvgMs: 0.402, rttMaxMs: 0.517 });
    const lost = `--- 198.51.100.22 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2041ms
`;
    expect(parsePing(lost)).toMatchObject({ transmitted: 3, received: 0, lossPercent: 100, rttAvgMs: null });
    expect(parsePing('ping: connect: Network is unreachable\n')).toBeNull();
  });

  const report = (policyDenied: number, written: number): StatusReport => ({
    reportVersion: 1,
    version: '0.1.0',
    host: 'host-b',
    time: '2025-01-01T00:00:00.000Z',
    labels: [
      { name: 'red', vlan: 100, greKey: 25600 },
      { name: 'blue', vlan: 200, greKey: 51200 },
    ],
    sas: [
      { spi: '0x00001001', direction: 'out', labels: ['red'], peer: 'host-a', ageMs: 1, packets: 10, bytes: 1000 },
      { spi: '0x00002001', direction: 'in', labels: ['red'], peer: 'host-a', ageMs: 1, packets: 12, bytes: 1200 },
    ],
    reasons: { policy_denied: policyDenied, no_route: 0, icv_mismatch: 0 },
    audit: { path: '/tmp/x', written, suppressed: 0, lost: 0 },
  });

  it('takes per-label traffic from the SAs and the drops that grew', () => {
    const before = countersOf(report(1, 1));
    const after = countersOf(report(4, 4));
    expect(after.labels.red).toEqual({ txPackets: 10, txBytes: 1000, rxPackets: 12, rxBytes: 1200 });
    expect(after.labels.blue).toEqual({ txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 });
    expect(after.reasons).toEqual({ policy_denied: 4 }); // zeros left out
    expect(reasonDeltas(before, after)).toEqual({ policy_denied: 3 });
    expect(denials(reasonDeltas(before, after))).toBe(3);
    const table = summaryTable([countersOf(report(0, 0)), after]);
    expect(table).toMatch(/red sent to peer\s+10 pkts 1000 B\s+10 pkts 1000 B/);
    expect(table).toMatch(/drops: policy_denied\s+0\s+4/);
    expect(table).toMatch(/audit records written\s+0\s+4/);
  });

  it('shows an audit record on one line', () => {
    const line = formatAuditRecord({
      type: 'drop', reason: 'policy_denied', labelFrom: 'red', labelTo: 'blue', domain: 'b-blue', peer: 'host-a',
      spi: '0x00001001', srcMac: '02:53:54:00:01:01', dstMac: '02:53:54:00:02:02', vlan: 100,
    });
    expect(line).toBe('policy_denied: red → blue, domain b-blue, peer host-a, SPI 0x00001001, 02:53:54:00:01:01 → 02:53:54:00:02:02');
  });

  it('--help explains the demo and its options without touching the system', async () => {
    let text = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      text += String(chunk);
      return true;
    });
    try {
      expect(await runDemo(['--help'])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    for (const opt of ['--keep', '--json', '--cleanup']) expect(text).toContain(opt);
    expect(text).toMatch(/red/);
    expect(text).toMatch(/Exit status: 0/);
  });
});
