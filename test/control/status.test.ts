// The control socket (newline-delimited JSON over a unix socket) and
// `sectunnel status`: round trips, bounds (request size, connections, idle),
// stale and busy socket paths, client errors, and the tables printed from a
// canned report.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { callControl, ControlClientError } from '../../src/control/status-client.js';
import { ControlMethodError, ControlServer, ControlServerError } from '../../src/control/status-server.js';
import { STATUS_REPORT_VERSION, type StatusReport } from '../../src/control/status-report.js';
import { controlSocket, formatAge, formatStatus, runStatus, timeoutMsOf } from '../../src/cli/status.js';
import { CliError } from '../../src/cli/errors.js';

let dir: string;
const servers: ControlServer[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'st-ctl-'));
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

async function serve(opts: Partial<ConstructorParameters<typeof ControlServer>[0]> = {}, path = join(dir, 'run', 'hv1.sock')): Promise<ControlServer> {
  const s = new ControlServer({ path, ...opts });
  servers.push(s);
  await s.listen();
  return s;
}

/** A raw connection that collects reply lines. */
function raw(path: string): Promise<{ sock: Socket; lines: () => Promise<unknown[]>; nextLine: () => Promise<any>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path });
    let text = '';
    const waiters: (() => void)[] = [];
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      text += c;
      for (const w of waiters.splice(0)) w();
    });
    const closed = new Promise<void>((r) => sock.on('close', () => { r(); for (const w of waiters.splice(0)) w(); }));
    sock.on('error', () => {});
    const nextLine = async (): Promise<any> => {
      for (;;) {
        const nl = text.indexOf('\n');
        if (nl !== -1) {
          const l = text.slice(0, nl);
          text = text.slice(nl + 1);
          return JSON.parse(l);
        }
        if (sock.destroyed) throw new Error('closed without a line');
        await new Promise<void>((r) => waiters.push(r));
      }
    };
    sock.once('connect', () =>
      resolve({
        sock,
        nextLine,
        closed,
        lines: async () => {
          await closed;
          return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
        },
      }),
    );
    sock.once('error', reject);
  });
}

describe('ControlServer and callControl', () => {
  it('round trip: the folder is made 0750-ish, the socket 0660, results and params pass through', async () => {
    const s = await serve();
    s.register('status', () => ({ host: 'hv1', peers: 2 }));
    s.register('echo', async (params) => ({ got: params }));
    expect(await callControl(s.path, 'status')).toEqual({ host: 'hv1', peers: 2 });
    expect(await callControl(s.path, 'echo', { label: 'red', n: [1, 2] })).toEqual({ got: { label: 'red', n: [1, 2] } });
    expect(statSync(s.path).isSocket()).toBe(true);
    expect(statSync(s.path).mode & 0o777).toBe(0o660);
    expect(statSync(join(dir, 'run')).mode & 0o007).toBe(0);
  });

  it('a handler\'s ControlMethodError reaches the client with its code; other throws are internal_error', async () => {
    const errors: unknown[] = [];
    const s = await serve({ onError: (e) => errors.push(e) });
    s.register('reload', () => {
      throw new ControlMethodError('reload_failed', '/etc/sectunnel/hv1.json: labels[0].vlan: 5000 is not valid');
    });
    s.register('bug', () => {
      throw new TypeError('x is undefined');
    });
    const e1 = (await callControl(s.path, 'reload').catch((e: unknown) => e)) as ControlClientError;
    expect(e1).toBeInstanceOf(ControlClientError);
    expect(e1.code).toBe('CONTROL_REMOTE');
    expect(e1.remote).toEqual({ code: 'reload_failed', message: '/etc/sectunnel/hv1.json: labels[0].vlan: 5000 is not valid' });
    expect(e1.message).toContain('labels[0].vlan');
    const e2 = (await callControl(s.path, 'bug').catch((e: unknown) => e)) as ControlClientError;
    expect(e2.remote?.code).toBe('internal_error');
    expect(errors).toHaveLength(1);
  });

  it('an unknown method is an error that lists the known ones', async () => {
    const s = await serve();
    s.register('status', () => ({}));
    s.register('reload', () => ({}));
    const e = (await callControl(s.path, 'rekey').catch((x: unknown) => x)) as ControlClientError;
    expect(e.code).toBe('CONTROL_REMOTE');
    expect(e.remote?.code).toBe('unknown_method');
    expect(e.remote?.message).toBe('unknown method "rekey"; this daemon knows: reload, status');
  });

  it('several requests on one connection are answered in order; bad lines get errors without closing', async () => {
    const s = await serve();
    let n = 0;
    s.register('count', async () => {
      await new Promise((r) => setTimeout(r, 5));
      return ++n;
    });
    const c = await raw(s.path);
    c.sock.write('{"id":"a","method":"count"}\n{"id":2,"method":"count"}\nnot json\n[1]\n{"id":3}\n\r\n{"id":4,"method":"count"}\n');
    expect(await c.nextLine()).toEqual({ id: 'a', result: 1 });
    expect(await c.nextLine()).toEqual({ id: 2, result: 2 });
    expect((await c.nextLine()).error.code).toBe('parse_error');
    expect((await c.nextLine()).error.code).toBe('invalid_request');
    expect(await c.nextLine()).toEqual({ id: 3, error: { code: 'invalid_request', message: 'method must be a non-empty string' } });
    expect(await c.nextLine()).toEqual({ id: 4, result: 3 });
    c.sock.end();
    await c.closed;
  });

  it('a request line over the size bound gets request_too_large and the connection is closed', async () => {
    const s = await serve({ maxRequestBytes: 1024 });
    let called = false;
    s.register('status', () => (called = true));
    // Without a newline: the bound trips on the partial line.
    const a = await raw(s.path);
    a.sock.write('{"id":1,"method":"status","params":"' + 'x'.repeat(4000));
    const la = await a.lines();
    expect(la).toHaveLength(1);
    expect(la[0]).toMatchObject({ id: null, error: { code: 'request_too_large' } });
    // With a newline, in one write.
    const b = await raw(s.path);
    b.sock.write(JSON.stringify({ id: 1, method: 'status', params: 'y'.repeat(2000) }) + '\n');
    expect((await b.lines())[0]).toMatchObject({ error: { code: 'request_too_large' } });
    expect(called).toBe(false);
    // A request at the bound still works.
    const params = 'z'.repeat(1024 - JSON.stringify({ id: 1, method: 'status', params: '' }).length);
    expect(await callControl(s.path, 'status', params)).toBe(true);
  });

  it('connections beyond the limit are refused with too_many_connections', async () => {
    const s = await serve({ maxConnections: 2 });
    s.register('status', () => 'ok');
    const a = await raw(s.path);
    const b = await raw(s.path);
    const c = await raw(s.path);
    expect((await c.lines())[0]).toMatchObject({ error: { code: 'too_many_connections' } });
    a.sock.write('{"id":1,"method":"status"}\n');
    expect(await a.nextLine()).toEqual({ id: 1, result: 'ok' });
    a.sock.destroy();
    b.sock.destroy();
    await a.closed;
    await b.closed;
    for (let i = 0; i < 200 && s.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 5)); // let the server see the closes
    expect(await callControl(s.path, 'status')).toBe('ok');
  });

  it('an idle connection is closed by the server', async () => {
    const s = await serve({ idleTimeoutMs: 50 });
    const c = await raw(s.path);
    await c.closed; // resolves only because the server closed it
    expect(c.sock.destroyed).toBe(true);
    for (let i = 0; i < 100 && s.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(s.connectionCount).toBe(0);
  });

  it('a stale socket file (its daemon was killed) is removed and reused', async () => {
    const path = join(dir, 'run', 'hv1.sock');
    mkdirSync(join(dir, 'run'));
    // A daemon that dies with SIGKILL leaves its socket file behind.
    const child = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(child.signal).toBe('SIGKILL');
    expect(statSync(path).isSocket()).toBe(true);
    const stale = (await callControl(path, 'status').catch((e: unknown) => e)) as ControlClientError;
    expect(stale.code).toBe('CONTROL_NO_DAEMON');
    expect(stale.message).toBe(`cannot connect to ${path}: no daemon listening (ECONNREFUSED); is \`sectunnel run\` running?`);
    const s = await serve({}, path);
    s.register('status', () => 'alive');
    expect(await callControl(path, 'status')).toBe('alive');
  });

  it('a second server on the same path is refused, naming the path; the first keeps working', async () => {
    const first = await serve();
    first.register('status', () => 'first');
    const second = new ControlServer({ path: first.path });
    const err = (await second.listen().catch((e: unknown) => e)) as ControlServerError;
    expect(err).toBeInstanceOf(ControlServerError);
    expect(err.code).toBe('CONTROL_IN_USE');
    expect(err.message).toContain(first.path);
    expect(await callControl(first.path, 'status')).toBe('first');
  });

  it('a path that is not a socket is refused, not removed', async () => {
    const path = join(dir, 'not-a-socket');
    writeFileSync(path, 'important');
    const err = (await new ControlServer({ path }).listen().catch((e: unknown) => e)) as ControlServerError;
    expect(err.code).toBe('CONTROL_NOT_SOCKET');
    expect(err.message).toContain(path);
    expect(existsSync(path)).toBe(true);
  });

  it('close removes the socket file; a client then hears "no daemon listening (ENOENT)"', async () => {
    const s = await serve();
    await s.close();
    expect(existsSync(s.path)).toBe(false);
    const e = (await callControl(s.path, 'status').catch((x: unknown) => x)) as ControlClientError;
    expect(e.code).toBe('CONTROL_NO_DAEMON');
    expect(e.message).toBe(`cannot connect to ${s.path}: no daemon listening (ENOENT); is \`sectunnel run\` running?`);
  });

  it('a daemon that does not answer makes the client time out with a clear error', async () => {
    const s = await serve();
    s.register('status', () => new Promise(() => {}));
    const e = (await callControl(s.path, 'status', undefined, { timeoutMs: 100 }).catch((x: unknown) => x)) as ControlClientError;
    expect(e.code).toBe('CONTROL_TIMEOUT');
    expect(e.message).toBe(`no reply from the daemon on ${s.path} within 100 ms (method status)`);
  });
});

// ---------------------------------------------------------------------------
// sectunnel status

const REPORT: StatusReport = {
  reportVersion: STATUS_REPORT_VERSION,
  version: '0.1.0',
  host: 'hv1',
  pid: 4242,
  time: '2024-05-01T12:00:00.000Z',
  startedAt: '2024-05-01T09:00:00.000Z',
  crypto: { algorithm: 'aes-gcm-256', backend: 'native' },
  underlay: { address: '192.0.2.1', port: 4500, transport: 'udp' },
  mtu: { underlayMtu: 1500, overheadBytes: 94, guestMtu: 1406 },
  pool: { free: 4000, total: 4096 },
  peers: [
    { name: 'hv2', address: '192.0.2.2', port: 4500, labels: ['red', 'blue'], state: 'established', lastHandshake: '2024-05-01T11:59:48.000Z' },
    { name: 'hv3', address: '2001:db8::3', port: 4500, labels: ['red'], state: 'static' },
  ],
  sas: [
    { spi: '0x00001001', direction: 'in', labels: ['red'], peer: 'hv2', algorithm: 'aes-gcm-256', ageMs: 192_000, packets: 990, bytes: 1_386_000, replayDrops: 7 },
    { spi: '0x00002001', direction: 'out', labels: ['red', 'blue'], peer: 'hv2', algorithm: 'aes-gcm-256', ageMs: 192_000, packets: 1000, bytes: 1_400_000 },
  ],
  labels: [
    { name: 'red', vlan: 100, greKey: 25600, fdbEntries: 3 },
    { name: 'blue', vlan: 200, greKey: null, context: 'system_u:system_r:svirt_t:s0:c2' },
  ],
  domains: [{ name: 'web1', label: 'red', interface: 'vnet0', kind: 'tap', macs: ['52:54:00:00:01:01'], framesFromGuest: 1001, framesToGuest: 985 }],
  reasons: { label_mismatch: 3, unknown_spi: 17, icv_mismatch: 0, nat_keepalive: 12 },
  fragmented: 2,
  audit: { path: '/var/log/sectunnel/audit.jsonl', written: 3, suppressed: 0, lost: 0 },
};

/** The data rows of a printed table: the lines after `title` up to the next blank line, split on runs of spaces. */
function table(text: string, title: string): string[][] {
  const lines = text.split('\n');
  const at = lines.indexOf(title);
  expect(at, `section ${title}`).toBeGreaterThanOrEqual(0);
  const out: string[][] = [];
  for (let i = at + 1; i < lines.length && lines[i] !== ''; i++) out.push(lines[i]!.trim().split(/ {2,}/));
  return out;
}

describe('sectunnel status', () => {
  it('prints a session table per handshake peer: age, next rekey, negotiated labels, failures by reason', () => {
    const text = formatStatus({
      ...REPORT,
      peers: [
        {
          name: 'hv2',
          address: '192.0.2.2',
          port: 4500,
          labels: ['red', 'blue'],
          state: 'established',
          lastHandshake: '2024-05-01T11:59:48.000Z',
          sessionAgeMs: 12_000,
          nextRekey: '2024-05-01T12:09:48.000Z',
          negotiatedLabels: ['red'],
          algorithm: 'aes-gcm-256',
          handshakeFailures: { bad_mac1: 2, response_decrypt_failed: 1 },
          rekeys: { initial: 1, on_demand: 3 },
        },
      ],
      handshake: { completed: 4, failures: { bad_mac1: 2 } },
    });
    expect(table(text, 'SESSIONS')).toEqual([
      ['PEER', 'SESSION AGE', 'NEXT REKEY', 'NEGOTIATED LABELS', 'ALGORITHM', 'HANDSHAKE FAILURES', 'HANDSHAKES STARTED'],
      ['hv2', '12s', '2024-05-01T12:09:48.000Z (in 9m48s)', 'red', 'aes-gcm-256', 'bad_mac1 2, response_decrypt_failed 1', 'initial 1, on_demand 3'],
    ]);
    expect(text).toContain('handshakes: 4 completed; failures: bad_mac1 2');
  });

  it('prints the runtime attachments (sectunnel attach, the libvirt hook) with their libvirt domain and age; none: no section', () => {
    const text = formatStatus({
      ...REPORT,
      attachments: [
        { name: 'app3-vnet4', domain: 'app3', interface: 'vnet4', label: 'red', macs: ['52:54:00:00:03:01'], attachedAt: '2024-05-01T11:58:00.000Z' },
      ],
    });
    expect(table(text, 'ATTACHED AT RUN TIME')).toEqual([
      ['NAME', 'LIBVIRT DOMAIN', 'INTERFACE', 'LABEL', 'SINCE'],
      ['app3-vnet4', 'app3', 'vnet4', 'red', '2024-05-01T11:58:00.000Z (2m00s ago)'],
    ]);
    expect(formatStatus({ ...REPORT, attachments: [] })).not.toContain('ATTACHED AT RUN TIME');
  });

  it('prints the TAP offload work and drops by reason per domain, and the underlay GSO/GRO line', () => {
    const offload = {
      gsoFrames: 120, gsoSegments: 5400, csumCompleted: 7, groFrames: 300, groSegments: 9000,
      dropBadFrame: 0, dropBadGsoType: 1, dropBadGsoSize: 0, dropBadHdrLen: 0, dropBadCsum: 0, dropTooBig: 0, dropNoRoom: 2,
    };
    const text = formatStatus({
      ...REPORT,
      underlay: { address: '192.0.2.1', port: 4500, transport: 'udp', offload: { gso: 1, gro: 1, gsoSends: 40, gsoSegments: 2500, gsoFallbacks: 0, gsoErrno: 0, groDatagrams: 30, groSegments: 1900, groCarried: 0 } },
      domains: [{ ...REPORT.domains![0]!, offload }],
    });
    expect(text).toContain('underlay offloads: GSO on (40 sends carrying 2500 packets, 0 refused), GRO on (30 datagrams split into 1900)');
    expect(table(text, 'TAP OFFLOADS')).toEqual([
      ['DOMAIN', 'SUPER-FRAMES READ → FRAMES', 'FRAMES → SUPER-FRAMES WRITTEN', 'CHECKSUMS COMPLETED', 'DROPS'],
      ['web1', '120 → 5400', '9000 → 300', '7', 'bad_gso_type 1, no_room 2'],
    ]);
    expect(formatStatus(REPORT)).not.toContain('TAP OFFLOADS');
  });

  it('prints peers, SAs, labels, domains, non-zero drops with a total, pool and guest MTU', () => {
    const text = formatStatus(REPORT);
    expect(text.split('\n')[0]).toBe('sectunnel 0.1.0 on host hv1, pid 4242, up 3h00m');
    expect(text).toContain('guest MTU 1406 avoids fragmentation');
    expect(text).toContain('pool: 4000 of 4096 buffers free');
    expect(text).toContain('underlay: 192.0.2.1:4500 ESP-in-UDP');
    expect(table(text, 'PEERS')).toEqual([
      ['NAME', 'ADDRESS', 'LABELS', 'STATE', 'LAST HANDSHAKE'],
      ['hv2', '192.0.2.2:4500', 'red,blue', 'established', '2024-05-01T11:59:48.000Z (12s ago)'],
      ['hv3', '[2001:db8::3]:4500', 'red', 'static', '-'],
    ]);
    expect(table(text, 'SAS')).toEqual([
      ['SPI', 'DIR', 'LABELS', 'PEER', 'ALGORITHM', 'AGE', 'PACKETS', 'BYTES', 'REPLAY DROPS', 'STATE'],
      ['0x00001001', 'in', 'red', 'hv2', 'aes-gcm-256', '3m12s', '990', '1386000', '7', '-'],
      ['0x00002001', 'out', 'red,blue', 'hv2', 'aes-gcm-256', '3m12s', '1000', '1400000', '-', '-'],
    ]);
    expect(table(text, 'LABELS')).toEqual([
      ['NAME', 'VLAN', 'GRE KEY', 'CONTEXT', 'MACS LEARNED'],
      ['red', '100', '0x00006400', '-', '3'],
      ['blue', '200', 'none', 'system_u:system_r:svirt_t:s0:c2', '-'],
    ]);
    expect(table(text, 'DOMAINS')).toEqual([
      ['NAME', 'LABEL', 'INTERFACE', 'MACS', 'FROM GUEST', 'TO GUEST'],
      ['web1', 'red', 'vnet0', '52:54:00:00:01:01', '1001', '985'],
    ]);
    expect(table(text, 'DROPS')).toEqual([
      ['REASON', 'PACKETS'],
      ['unknown_spi', '17'],
      ['label_mismatch', '3'],
      ['total', '20'],
    ]);
    expect(table(text, 'DISCARDS (not errors)')).toEqual([
      ['REASON', 'PACKETS'],
      ['nat_keepalive', '12'],
    ]);
    expect(text).toContain('audit: 3 written, 0 suppressed by the rate limit, 0 lost (/var/log/sectunnel/audit.jsonl)');
  });

  it('prints only the sections present; terminal control characters are neutralised', () => {
    const text = formatStatus({ version: '0.1.0', host: 'evil\u001b[2J', sas: [], reasons: { icv_mismatch: 0 } });
    expect(text).not.toContain('\u001b');
    expect(text).toContain('host evil?[2J');
    expect(text).toContain('SAS\n(none)');
    expect(text).toContain('DROPS\nnone');
    expect(text).not.toContain('PEERS');
    expect(text).not.toContain('DOMAINS');
  });

  it('formats ages', () => {
    expect([0, 45_000, 192_000, 7_500_000, 3 * 86_400_000 + 4 * 3_600_000, -1, NaN].map(formatAge)).toEqual(['0s', '45s', '3m12s', '2h05m', '3d04h', '-', '-']);
  });

  it('asks the daemon over the socket and prints the tables; --json prints the report itself', async () => {
    const s = await serve();
    s.register('status', () => REPORT);
    let out = '';
    expect(await runStatus(['--socket', s.path], { write: (t: string) => (out += t) })).toBe(0);
    expect(table(out, 'SAS')[1]).toContain('0x00001001');
    expect(out).toContain('guest MTU 1406');
    out = '';
    expect(await runStatus(['--socket', s.path, '--json'], { write: (t: string) => (out += t) })).toBe(0);
    expect(JSON.parse(out)).toEqual(REPORT);
  });

  it('with --config, the socket comes from control.socket', async () => {
    const s = await serve();
    s.register('status', () => REPORT);
    const cfg = join(dir, 'hv1.json');
    writeFileSync(cfg, JSON.stringify({ host: { name: 'hv1' }, underlay: { address: '192.0.2.1' }, labels: [{ name: 'red', vlan: 100 }], control: { socket: s.path } }));
    let out = '';
    expect(await runStatus(['--config', cfg], { write: (t: string) => (out += t) })).toBe(0);
    expect(out).toContain('on host hv1');
  });

  it('no daemon: a CliError (exit 1) that names the socket and suggests `sectunnel run`', async () => {
    const path = join(dir, 'nothing.sock');
    const e = (await runStatus(['--socket', path], { write: () => {} }).catch((x: unknown) => x)) as CliError;
    expect(e).toBeInstanceOf(CliError);
    expect(e.exitCode).toBe(1);
    expect(e.message).toBe(`cannot connect to ${path}: no daemon listening (ENOENT); is \`sectunnel run\` running?`);
  });

  it('--help explains; bad arguments are usage errors (exit 2)', async () => {
    let out = '';
    expect(await runStatus(['--help'], { write: (t: string) => (out += t) })).toBe(0);
    expect(out).toContain('usage: sectunnel status [--socket PATH | --config FILE] [--json]');
    expect(out).toContain('guest');
    for (const argv of [['--bogus'], ['--socket', '/a', '--config', '/b'], ['--timeout', 'soon'], ['extra']]) {
      const e = (await runStatus(argv, { write: () => {} }).catch((x: unknown) => x)) as CliError;
      expect(e, argv.join(' ')).toBeInstanceOf(CliError);
      expect(e.exitCode, argv.join(' ')).toBe(2);
    }
  });
});

describe('the flags every control command shares (status, rekey, attach, detach, hook)', () => {
  it('--timeout: default when absent, an integer in 1..600000, else exit 2 naming the value', () => {
    expect(timeoutMsOf(undefined)).toBe(5000);
    expect(timeoutMsOf(undefined, 7000)).toBe(7000);
    expect(timeoutMsOf('600000')).toBe(600_000);
    for (const bad of ['0', '600001', '1.5', '-3', 'abc', '']) {
      expect(() => timeoutMsOf(bad)).toThrow(expect.objectContaining({ exitCode: 2, message: `--timeout ${bad}: expected milliseconds, an integer in 1..600000` }));
    }
  });

  it('--socket wins, and --socket with --config is exit 2', async () => {
    expect(await controlSocket({ socket: '/run/x.sock' })).toBe('/run/x.sock');
    await expect(controlSocket({ socket: '/run/x.sock', config: '/etc/sectunnel/h.yaml' })).rejects.toMatchObject({ exitCode: 2, message: 'give --socket or --config, not both' });
  });
});
