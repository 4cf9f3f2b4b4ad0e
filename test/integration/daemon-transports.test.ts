// Two sectunnel daemons (child processes of scripts/sectunnel run) in network namespaces,
// on handshake keys (Noise IKpsk2 on the UDP port; no --insecure-static-keys), over each
// underlay: ESP-in-UDP and raw ESP, IPv4 and IPv6. Guests of one label reach
// each other (ping, a TCP transfer whose full-size segments need outer IP fragments);
// guests of different labels do not, and the receiving host counts and audits the denial.
// World layout: test/fixtures/daemon/harness.ts.
import { afterEach, beforeAll, describe, expect } from 'vitest';
import { cliArgv, DaemonWorld, ensureBuilt, saOf, waitFor } from '../fixtures/daemon/harness.js';
import { itWith } from '../helpers/tools.js';

let dw: DaemonWorld | null = null;
beforeAll(() => ensureBuilt(), 300_000);
afterEach(async () => {
  await dw?.destroy();
  dw = null;
});

/** iperf3 for `seconds` from guest (1, gc) to guest (2, gs); returns the bytes the server received. */
async function tcpTransfer(w: DaemonWorld, gc: number, gs: number, seconds: number): Promise<number> {
  const server = w.guest(2, gs);
  const srv = w.world.spawn(server.ns, 'iperf3', ['-s', '-1', '--forceflush', '-B', server.ipv4]);
  await srv.waitForOutput(/Server listening/, 10_000);
  const { stdout } = await w.world.exec(w.guest(1, gc).ns, 'iperf3', ['-c', server.ipv4, '-t', String(seconds), '-J'], { timeoutMs: 60_000 });
  await srv.exited;
  const report = JSON.parse(stdout) as { end: { sum_received: { bytes: number } } };
  return report.end.sum_received.bytes;
}

const CASES = [
  // overhead = outer IP + (UDP 8) + ESP 8 + IV 8 + GRE 8 + 802.1Q 4 + Ethernet 14 + pad ≤ 3 + trailer 2 + ICV 16
  { name: 'udp4', transport: 'udp', family: 4, overheadBytes: 91 },
  { name: 'udp6', transport: 'udp', family: 6, overheadBytes: 111 },
  { name: 'esp4', transport: 'esp', family: 4, overheadBytes: 83 },
  { name: 'esp6', transport: 'esp', family: 6, overheadBytes: 103 },
] as const;

describe.each(CASES)('two daemons over $transport, IPv$family underlay', ({ name, transport, family, overheadBytes }) => {
  itWith(['netns', 'native', 'iperf3'], 'carries same-label traffic and denies cross-label traffic', async () => {
    dw = await DaemonWorld.create({ name, family, transport });
    const w = dw;
    await w.start(1);
    await w.start(2);
    const [a1, a2] = [w.guest(1, 1), w.guest(1, 2)];
    const [b1, b2] = [w.guest(2, 1), w.guest(2, 2)];

    // Same label: red a1 ⇄ red b1, blue a2 ⇄ blue b2.
    await waitFor('red a1 to ping red b1', () => w.pings(1, 1, b1.ipv4));
    await waitFor('blue a2 to ping blue b2', () => w.pings(1, 2, b2.ipv4));
    expect(await w.pings(2, 1, a1.ipv6)).toBe(true);

    // TCP with 1500-octet guest frames: each is 1591/1611 octets on the wire, sent as outer fragments.
    expect(await tcpTransfer(w, 1, 1, 2)).toBeGreaterThan(1_000_000);
    const sa = await w.status(1);
    expect(sa.fragmented).toBeGreaterThan(0);
    expect(sa.mtu).toEqual({ underlayMtu: 1500, overheadBytes, guestMtu: 1500 - overheadBytes });
    expect(sa.peers![0]).toMatchObject({ name: 'host-b', state: 'established' });
    const redOut = saOf(sa, 'out', 'red', 'host-b')!;
    expect(redOut.packets).toBeGreaterThan(500);

    // Cross label: red a1 sends to blue b2's MAC (a static neighbour entry, so no ARP is
    // needed); host b refuses it at the blue domain (policy_denied) and audits it.
    const deniedBefore = (await w.status(2)).reasons!.policy_denied!;
    await w.world.exec(a1.ns, 'ip', ['neigh', 'replace', b2.ipv4, 'lladdr', b2.mac, 'dev', 'eth0', 'nud', 'permanent']);
    expect(await w.pings(1, 1, b2.ipv4)).toBe(false);
    expect(await w.pings(1, 1, b2.ipv4)).toBe(false);
    const deniedAfter = (await w.status(2)).reasons!.policy_denied!;
    expect(deniedAfter - deniedBefore).toBeGreaterThanOrEqual(2);
    await waitFor('the audit record on host b', () =>
      w.auditRecords(2).some((r) => r.reason === 'policy_denied' && r.labelFrom === 'red' && r.labelTo === 'blue' && r.dstMac === b2.mac && r.peer === 'host-a'),
    );
    // … and blue b2 towards red a1 the same way, now denied on host a.
    await w.world.exec(b2.ns, 'ip', ['neigh', 'replace', a1.ipv4, 'lladdr', a1.mac, 'dev', 'eth0', 'nud', 'permanent']);
    expect(await w.pings(2, 2, a1.ipv4)).toBe(false);
    await waitFor('the audit record on host a', () => w.auditRecords(1).some((r) => r.reason === 'policy_denied' && r.labelFrom === 'blue' && r.labelTo === 'red'));
    // Within one host the daemon denies before anything reaches the wire: red a1 → blue a2.
    await w.world.exec(a1.ns, 'ip', ['neigh', 'replace', a2.ipv4, 'lladdr', a2.mac, 'dev', 'eth0', 'nud', 'permanent']);
    expect(await w.pings(1, 1, a2.ipv4)).toBe(false);
    await waitFor('the local denial audited on host a', () => w.auditRecords(1).some((r) => r.reason === 'policy_denied' && r.labelFrom === 'red' && r.labelTo === 'blue' && r.domain === 'a1'));
    // The blue guests never saw a red frame: same-label traffic still flows afterwards.
    expect(await w.pings(1, 1, b1.ipv4)).toBe(true);
    expect(await w.pings(1, 2, b2.ipv4)).toBe(true);

    // A clean stop: exit status 0, and the TAPs the daemon made are gone.
    expect(await w.stop(1)).toEqual({ code: 0, signal: null });
    expect(await w.world.hasLink(w.host(1).ns, w.tapName(1, 1))).toBe(false);
  });
});

describe('guest ports other than a TAP the daemon creates', () => {
  itWith(['netns', 'native'], 'an existing TAP (create: false) and an attached interface (AF_PACKET) reach TAP guests, and are reopened after their device went away', async () => {
    dw = await DaemonWorld.create({ name: 'ports', family: 4, transport: 'udp' });
    const w = dw;
    // Host a: guest 1 through a packet socket on its veth's host end vg1; guest 2 on a TAP made
    // beforehand (as libvirt makes vnetN), which the daemon opens by name.
    await w.world.ip(w.host(1).ns, ['tuntap', 'add', 'dev', w.tapName(1, 2), 'mode', 'tap']);
    await w.start(1, {
      bridged: [2],
      patch: (c) => {
        const [d1, d2] = c.domains as Record<string, unknown>[];
        delete d1!.tap;
        d1!.attach = { interface: w.guest(1, 1).hostDev };
        d2!.tap = { name: w.tapName(1, 2) };
      },
    });
    await w.start(2);
    await waitFor('red a1 (attached) to ping red b1', () => w.pings(1, 1, w.guest(2, 1).ipv4));
    await waitFor('blue a2 (existing TAP) to ping blue b2', () => w.pings(1, 2, w.guest(2, 2).ipv4));
    const r = await w.status(1);
    expect(r.domains!.map((d) => [d.name, d.kind, d.interface])).toEqual([
      ['a1', 'attach', 'vg1'],
      ['a2', 'tap', w.tapName(1, 2)],
    ]);
    expect(r.domains!.every((d) => d.framesFromGuest > 0 && d.framesToGuest > 0)).toBe(true);

    // Devices that go away (a VM stops: libvirt deletes its vnetN) end their port, not the
    // daemon; when the device is back the daemon reopens the port by itself.
    const ns = w.host(1).ns;
    const stopped = (iface: string) => () => w.logLines(1).some((l) => String(l.msg).startsWith('guest port stopped') && l.interface === iface);
    const reopened = (iface: string) => () => w.logLines(1).some((l) => l.msg === 'guest port reopened' && l.interface === iface);
    await w.world.ip(ns, ['link', 'del', w.tapName(1, 2)]);
    await waitFor('the TAP port to stop', stopped(w.tapName(1, 2)));
    expect(await w.pings(1, 1, w.guest(2, 1).ipv4)).toBe(true);
    await w.world.ip(ns, ['tuntap', 'add', 'dev', w.tapName(1, 2), 'mode', 'tap']);
    await w.bridge(1, 2);
    await waitFor('the TAP port to be reopened', reopened(w.tapName(1, 2)));
    await waitFor('blue a2 to ping blue b2 again', () => w.pings(1, 2, w.guest(2, 2).ipv4));
    await w.world.ip(ns, ['link', 'set', 'dev', 'vg1', 'down']);
    await waitFor('the attachment to stop', stopped('vg1'));
    await w.world.ip(ns, ['link', 'set', 'dev', 'vg1', 'up']);
    await waitFor('the attachment to be reopened', reopened('vg1'));
    await waitFor('red a1 to ping red b1 again', () => w.pings(1, 1, w.guest(2, 1).ipv4));
    expect(w.daemon(1).running).toBe(true);

    // Stopping closes the attachment and leaves the TAP it did not create in place.
    expect(await w.stop(1)).toEqual({ code: 0, signal: null });
    expect(await w.world.hasLink(w.host(1).ns, w.tapName(1, 2))).toBe(true);
  });

  itWith(['netns', 'native'], 'a missing TAP with create: false is refused at start with exit 1, naming the field', async () => {
    dw = await DaemonWorld.create({ name: 'noport', family: 4, transport: 'udp' });
    const w = dw;
    w.writeConfig(1, w.config(1, { patch: (c) => ((c.domains as Record<string, any>[])[1]!.tap.create = false) }));
    const [cmd, ...pre] = cliArgv();
    const proc = w.world.spawn(w.host(1).ns, cmd!, [...pre, 'run', '--config', w.configPath(1)]);
    expect(await proc.exited).toEqual({ code: 1, signal: null });
    const line = JSON.parse(proc.output().trim().split('\n').pop()!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'error', msg: 'sectunnel could not start', code: 'ST_DAEMON_PORT' });
    expect(line.error).toBe(`domains[1].tap.name: TAP "${w.tapName(1, 2)}" does not exist (tap.create is false: sectunnel attaches to a TAP another program made; set create: true to have sectunnel make it)`);
    // The TAP of domains[0], made before domains[1] failed, went with the half-made start.
    expect(await w.world.hasLink(w.host(1).ns, w.tapName(1, 1))).toBe(false);
  });
});
