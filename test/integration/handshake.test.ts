// Two sectunnel daemons on handshake keys only (no --insecure-static-keys): each host has
// an X25519 key file and names its peer by public key; SAs come from the Noise IKpsk2
// handshake on the UDP port. Covers: bring-up and same-label traffic; a wrong public key
// and a wrong pre-shared key fail closed with counted reasons; an iperf3 TCP stream across
// 20+ forced rekeys (`sectunnel rekey` / the control socket) without ESP-level loss, printing the
// longest delivery gap seen on the receiving guest's veth (tshark); a peer restart mid-stream.
// Namespaces <prefix>hs-…, removed after each test (also on failure). World: test/fixtures/daemon/harness.ts.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect } from 'vitest';
import { encodeKey, generatePresharedKey } from '../../src/control/keys.js';
import { callControl } from '../../src/control/status-client.js';
import type { StatusReport } from '../../src/control/status-report.js';
import { cliArgv, DaemonWorld, ensureBuilt, waitFor } from '../fixtures/daemon/harness.js';
import { itWith } from '../helpers/tools.js';

const run = promisify(execFile);

let dw: DaemonWorld | null = null;
beforeAll(() => ensureBuilt(), 300_000);
afterEach(async () => {
  await dw?.destroy();
  dw = null;
});

function world(name: string, transport: 'udp' | 'esp' = 'udp', family: 4 | 6 = 4): Promise<DaemonWorld> {
  return DaemonWorld.create({ name: `hs-${name}`, family, transport, keys: 'handshake' });
}

/** `sectunnel rekey PEER --socket …` as a user runs it. */
async function rekeyCli(w: DaemonWorld, h: 1 | 2, peer: string): Promise<string> {
  const [cmd, ...pre] = cliArgv();
  const { stdout } = await run(cmd!, [...pre, 'rekey', peer, '--socket', w.socketPath(h)], { timeout: 20_000 });
  return stdout;
}

function sum(r: StatusReport, names: readonly string[]): number {
  return names.reduce((n, k) => n + ((r.reasons as Record<string, number> | undefined)?.[k] ?? 0), 0);
}

function failures(r: StatusReport): number {
  const host = Object.values(r.handshake?.failures ?? {}).reduce((a, b) => a + b, 0);
  const peer = Object.values(r.peers?.[0]?.handshakeFailures ?? {}).reduce((a, b) => a + b, 0);
  return host + peer;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reasons on the receiving side that a rekey could cause: SA missing, wrong key, replay. */
const REKEY_LOSS_REASONS = ['unknown_spi', 'icv_mismatch', 'replay_duplicate', 'replay_too_old'] as const;

describe('two daemons on handshake keys only', () => {
  itWith(['netns', 'native'], 'come up, negotiate both labels, and carry same-label traffic', async () => {
    dw = await world('up');
    const w = dw;
    await w.start(1);
    await w.start(2);
    await waitFor('red a1 to ping red b1', () => w.pings(1, 1, w.guest(2, 1).ipv4));
    await waitFor('blue a2 to ping blue b2', () => w.pings(1, 2, w.guest(2, 2).ipv4));
    for (const h of [1, 2] as const) {
      const r = await w.status(h);
      const p = r.peers![0]!;
      expect(p.state).toBe('established');
      expect([...p.negotiatedLabels!].sort()).toEqual(['blue', 'red']);
      expect(p.algorithm).toBe('aes-gcm-256');
      expect(p.sessionAgeMs).toBeGreaterThanOrEqual(0);
      expect(typeof p.lastHandshake).toBe('string');
      expect(typeof p.nextRekey === 'string' || p.nextRekey === null).toBe(true);
      // One SA per label and direction at least, with handshake-chosen SPIs (not the static 0x1001…).
      const out = r.sas!.filter((s) => s.direction === 'out');
      expect(out.map((s) => s.labels.join()).sort()).toEqual(['blue', 'red']);
      expect(r.sas!.some((s) => /^0x0000[12]00[12]$/.test(s.spi))).toBe(false);
      expect(r.handshake!.completed).toBeGreaterThanOrEqual(1);
    }
    // Cross label still denied.
    expect(await w.pings(1, 1, w.guest(2, 2).ipv4)).toBe(false);
    // The status printer shows the session table.
    const [cmd, ...pre] = cliArgv();
    const { stdout } = await run(cmd!, [...pre, 'status', '--socket', w.socketPath(1)], { timeout: 20_000 });
    expect(stdout).toMatch(/SESSIONS\n.*SESSION AGE.*NEXT REKEY.*NEGOTIATED LABELS.*HANDSHAKE FAILURES/);
    expect(stdout).toMatch(/^host-b\s+\d/m);
  });

  itWith(['netns', 'native'], 'with raw ESP (and IPv6) the handshake runs on the UDP port and the data on protocol 50', async () => {
    dw = await world('esp6', 'esp', 6);
    const w = dw;
    await w.start(1);
    await w.start(2);
    await waitFor('red a1 to ping red b1', () => w.pings(1, 1, w.guest(2, 1).ipv4));
    const r = await w.status(1);
    expect(r.underlay!.transport).toBe('esp');
    expect(r.peers![0]!.state).toBe('established');
    expect(r.sas!.filter((s) => s.direction === 'out').length).toBe(2);
  });

  itWith(['netns', 'native'], 'a wrong public key installs no SA and counts the failure by reason', async () => {
    dw = await world('wrongpk');
    const w = dw;
    // host-b expects a key host-a does not have.
    const other = encodeKey(generatePresharedKey());
    await w.start(1);
    await w.start(2, { patch: (c) => ((c.peers as Record<string, unknown>[])[0]!.publicKey = other) });
    await waitFor('a handshake failure to be counted', async () => failures(await w.status(2)) > 0 || failures(await w.status(1)) > 0, 20_000);
    const [ra, rb] = [await w.status(1), await w.status(2)];
    console.log('wrong public key: failures host-a', JSON.stringify(ra.handshake?.failures), JSON.stringify(ra.peers![0]!.handshakeFailures), 'host-b', JSON.stringify(rb.handshake?.failures), JSON.stringify(rb.peers![0]!.handshakeFailures));
    for (const r of [ra, rb]) {
      expect(r.sas).toEqual([]);
      expect(r.peers![0]!.state).not.toBe('established');
    }
    expect(await w.pings(1, 1, w.guest(2, 1).ipv4)).toBe(false);
  });

  itWith(['netns', 'native'], 'a wrong pre-shared key installs no SA and counts the failure by reason', async () => {
    dw = await world('wrongpsk');
    const w = dw;
    const pskFile = (h: 1 | 2) => join(w.dir, `psk-${w.letter(h)}`);
    for (const h of [1, 2] as const) writeFileSync(pskFile(h), encodeKey(generatePresharedKey()) + '\n', { mode: 0o600 });
    const withPsk = (h: 1 | 2) => (c: Record<string, unknown>) => ((c.peers as Record<string, unknown>[])[0]!.presharedKeyFile = pskFile(h));
    await w.start(1, { patch: withPsk(1) });
    await w.start(2, { patch: withPsk(2) });
    await waitFor('a handshake failure to be counted', async () => failures(await w.status(2)) > 0 || failures(await w.status(1)) > 0, 20_000);
    const [ra, rb] = [await w.status(1), await w.status(2)];
    console.log('wrong PSK: failures host-a', JSON.stringify(ra.handshake?.failures), JSON.stringify(ra.peers![0]!.handshakeFailures), 'host-b', JSON.stringify(rb.handshake?.failures), JSON.stringify(rb.peers![0]!.handshakeFailures));
    // IKpsk2 mixes the PSK in at the response, so only the initiator can tell it is wrong: the
    // responder may hold inbound SAs of the unconfirmed handshake, but nobody sends on anything.
    for (const r of [ra, rb]) {
      expect(r.sas!.filter((s) => s.direction === 'out')).toEqual([]);
      expect(r.peers![0]!.state).not.toBe('established');
    }
    // Whichever host initiated counts the failure against its peer.
    const counted = [ra, rb].map((r) => r.peers![0]!.handshakeFailures!.response_decrypt_failed ?? 0);
    expect(counted[0]! + counted[1]!).toBeGreaterThan(0);
    expect(await w.pings(1, 1, w.guest(2, 1).ipv4)).toBe(false);
  });

  itWith(['netns', 'native', 'iperf3', 'tshark'], 'an iperf3 TCP stream runs across 20+ forced rekeys without ESP-level loss', async () => {
    dw = await world('rekey');
    const w = dw;
    await w.start(1);
    await w.start(2);
    await waitFor('red a1 to ping red b1', () => w.pings(1, 1, w.guest(2, 1).ipv4));
    const [a0, b0] = [await w.status(1), await w.status(2)];
    const completed0 = a0.handshake!.completed;

    // The stream's data segments as host b hands them to guest b1 (on b1's veth), time-stamped by
    // the kernel; dumpcap keeps 96 octets of each in a file, read after the stream.
    const server = w.guest(2, 1);
    const pcap = join(w.dir, 'rekey-b1.pcapng');
    const capture = w.world.spawn(w.host(2).ns, 'dumpcap', ['-q', '-i', server.hostDev, '-s', '96', '-f', `tcp and src host ${w.guest(1, 1).ipv4} and greater 500`, '-w', pcap]);
    await sleep(1000); // dumpcap prints nothing when it starts: give it time to open the interface
    const srv = w.world.spawn(server.ns, 'iperf3', ['-s', '-1', '--forceflush', '-B', server.ipv4]);
    await srv.waitForOutput(/Server listening/, 10_000);
    const seconds = 24;
    const client = w.world.exec(w.guest(1, 1).ns, 'iperf3', ['-c', server.ipv4, '-t', String(seconds), '-i', '0.1', '-J'], { timeoutMs: 90_000 });

    // A rekey a second: the first with `sectunnel rekey host-b` as a user runs it, then through the
    // control socket (the same request without starting a Node process each time on this 2-core box).
    const rekeyAtMs: number[] = [];
    const results: boolean[] = [];
    const t0 = Date.now();
    for (let i = 1; i < seconds - 1; i++) {
      await sleep(Math.max(0, t0 + i * 1000 - Date.now()));
      rekeyAtMs.push(Date.now());
      if (i === 1) results.push(/started|in progress/.test(await rekeyCli(w, 1, 'host-b')));
      else results.push(((await callControl(w.socketPath(1), 'rekey', { peer: 'host-b' })) as { started: boolean }).started);
    }
    const rekeys = results.filter(Boolean).length;
    const { stdout } = await client;
    await srv.exited;
    await sleep(1500); // let packets in flight land
    await capture.stop();

    const [a1, b1] = [await w.status(1), await w.status(2)];
    const report = JSON.parse(stdout) as {
      end: { sum_received: { bytes: number }; sum_sent: { retransmits?: number } };
      intervals: { sum: { bytes: number; seconds: number } }[];
    };
    // Delivery gaps: the longest time between two consecutive data segments reaching b1, and where
    // it fell relative to the nearest rekey request. Printed, not asserted (DESIGN.md: never assert on time).
    const { stdout: times } = await run('tshark', ['-r', pcap, '-T', 'fields', '-e', 'frame.time_epoch'], { maxBuffer: 256 << 20, timeout: 120_000 });
    const atMs = times.split('\n').filter((l) => l !== '').map((l) => Number(l) * 1000);
    const gaps = atMs.slice(1).map((t, i) => ({ ms: t - atMs[i]!, at: atMs[i]! }));
    const nearestRekey = (t: number) => rekeyAtMs.reduce((best, r) => (Math.abs(t - r) < Math.abs(best) ? t - r : best), Infinity);
    const top = [...gaps].sort((x, y) => y.ms - x.ms).slice(0, 5);
    // Per rekey: the longest gap that began between 50 ms before the request and 500 ms after it.
    const perRekey = rekeyAtMs.map((r) => gaps.filter((g) => g.at >= r - 50 && g.at <= r + 500).reduce((m, g) => Math.max(m, g.ms), 0));
    const aroundRekeysMs = Math.max(0, ...perRekey);
    const medianAroundMs = [...perRekey].sort((x, y) => x - y)[perRekey.length >> 1] ?? 0;
    const longestQuietMs = gaps.filter((g) => Math.abs(nearestRekey(g.at)) > 500).reduce((m, g) => Math.max(m, g.ms), 0);
    const dropped = /dropped[^\n]*/i.exec(capture.output())?.[0] ?? 'no drop count printed';
    const sealedByA = a1.peers![0]!.txPackets! - a0.peers![0]!.txPackets!;
    const openedByB = b1.peers![0]!.rxPackets! - b0.peers![0]!.rxPackets!;
    const lossReasonsB = sum(b1, REKEY_LOSS_REASONS) - sum(b0, REKEY_LOSS_REASONS);
    const noRouteA = sum(a1, ['no_route']) - sum(a0, ['no_route']);
    const completed = a1.handshake!.completed - completed0;
    const emptyIntervals = report.intervals.filter((iv) => iv.sum.bytes === 0).length;
    const deltas = (x: StatusReport, y: StatusReport) =>
      Object.entries(y.reasons ?? {})
        .map(([k, v]) => [k, (v ?? 0) - ((x.reasons as Record<string, number>)[k] ?? 0)] as const)
        .filter(([, d]) => d !== 0)
        .map(([k, d]) => `${k} ${d}`)
        .join(', ');
    console.log(`rekey test: counter deltas host-a: ${deltas(a0, a1) || 'none'}; host-b: ${deltas(b0, b1) || 'none'}`);
    console.log(
      `rekey test: ${rekeys} rekeys requested, ${completed} handshakes completed on host-a; ` +
        `iperf3 received ${report.end.sum_received.bytes} B in ${seconds} s, TCP retransmits ${report.end.sum_sent.retransmits ?? '?'}, empty 100 ms intervals ${emptyIntervals}; ` +
        `ESP sealed by A ${sealedByA}, opened by B ${openedByB}, difference ${sealedByA - openedByB}; ` +
        `B drops unknown_spi+icv_mismatch+replay ${lossReasonsB}; A no_route ${noRouteA}`,
    );
    console.log(
      `rekey test: LONGEST GAP between data segments delivered to b1: ${top[0]?.ms.toFixed(1) ?? '?'} ms (${atMs.length} segments captured); ` +
        `five longest: ${top.map((g) => `${g.ms.toFixed(1)} ms at ${nearestRekey(g.at) >= 0 ? '+' : ''}${Math.round(nearestRekey(g.at))} ms from a rekey`).join(', ')}; ` +
        `longest within -50..+500 ms of a rekey request: ${aroundRekeysMs.toFixed(1)} ms (median over rekeys ${medianAroundMs.toFixed(1)} ms); ` +
        `longest more than 500 ms away from any: ${longestQuietMs.toFixed(1)} ms; dumpcap: ${dropped}`,
    );
    expect(rekeys).toBeGreaterThanOrEqual(20);
    expect(completed).toBeGreaterThanOrEqual(20);
    expect(report.end.sum_received.bytes).toBeGreaterThan(1_000_000);
    expect(atMs.length).toBeGreaterThan(1000);
    expect(lossReasonsB).toBe(0);
    expect(noRouteA).toBe(0);
    expect(sealedByA - openedByB).toBe(0);
  });

  itWith(['netns', 'native'], 'a peer restarted mid-stream is handshaken with again and traffic resumes', async () => {
    dw = await world('restart');
    const w = dw;
    await w.start(1);
    await w.start(2);
    await waitFor('red a1 to ping red b1', () => w.pings(1, 1, w.guest(2, 1).ipv4));
    // Traffic keeps flowing from a1 while b restarts (a ping every 100 ms).
    const stream = w.world.exec(w.guest(1, 1).ns, 'ping', ['-n', '-q', '-i', '0.1', '-w', '12', w.guest(2, 1).ipv4], { timeoutMs: 30_000 }).catch(() => null);
    await sleep(1000);
    const exit = await w.stop(2);
    expect(exit.code).toBe(0);
    const t = Date.now();
    await w.start(2);
    await waitFor('red a1 to ping red b1 after host-b restarted', () => w.pings(1, 1, w.guest(2, 1).ipv4), 30_000);
    console.log(`restart: ping resumed ${Date.now() - t} ms after host-b started again`);
    await stream;
    const [ra, rb] = [await w.status(1), await w.status(2)];
    expect(ra.peers![0]!.state).toBe('established');
    expect(rb.peers![0]!.state).toBe('established');
    expect(await w.pings(2, 2, w.guest(1, 2).ipv4)).toBe(true);
  });
});
