// `sectunnel run`: arguments, refusals with exit 2, and the daemon's control path in this
// process without root — a daemon with no guest ports on a loopback UDP port: the start
// log line, `status` and `reload` over the control socket, reloads kept, applied and
// refused, and a clean stop. (Guests, TAPs and two hosts: test/integration/.)
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Daemon } from '../../src/cli/daemon/daemon.js';
import { main } from '../../src/cli/main.js';
import { runRun } from '../../src/cli/run.js';
import { ConfigError } from '../../src/control/config-errors.js';
import { callControl, ControlClientError } from '../../src/control/status-client.js';
import type { StatusReport } from '../../src/control/status-report.js';

const dirs: string[] = [];
function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'st-run-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  vi.restoreAllMocks();
});

/** Runs the CLI in this process; returns the exit status and what it wrote. */
async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((stdout += String(c)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  try {
    return { code: await main(argv), stdout, stderr };
  } finally {
    vi.restoreAllMocks();
  }
}

const K = (b: number): string => Buffer.alloc(36, b).toString('hex');

function freeUdpPortish(): Promise<number> {
  // A free TCP port number is almost always a free UDP port number too (loopback, tests only).
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A config with no domains (no TAP, no root), one peer with a static SA pair per label. */
function config(dir: string, port: number, edit: (c: Record<string, any>) => void = () => {}): Record<string, any> {
  const c: Record<string, any> = {
    host: { name: 'hv1' },
    underlay: { address: '127.0.0.1', port },
    labels: [
      { name: 'red', vlan: 100 },
      { name: 'blue', vlan: 200 },
    ],
    peers: [
      {
        name: 'hv2',
        address: '127.0.0.2',
        labels: ['red', 'blue'],
        staticSas: [
          { labels: ['red'], in: { spi: 4097, keymat: K(1) }, out: { spi: 8193, keymat: K(2) } },
          { labels: ['blue'], in: { spi: 4098, keymat: K(3) }, out: { spi: 8194, keymat: K(4) } },
        ],
      },
    ],
    audit: { path: join(dir, 'audit.jsonl') },
    control: { socket: join(dir, 'ctl.sock') },
    state: { dir: join(dir, 'state') },
  };
  edit(c);
  return c;
}

function write(dir: string, cfg: Record<string, any>): string {
  const file = join(dir, 'hv1.json');
  writeFileSync(file, JSON.stringify(cfg, null, 1));
  return file;
}

describe('sectunnel run: arguments', () => {
  it('--help explains every option and the signals', async () => {
    let text = '';
    expect(await runRun(['--help'], { write: (t: string) => (text += t) })).toBe(0);
    for (const opt of ['--config FILE', '--insecure-static-keys', '--user NAME', '--reset-seq-state', '-h, --help', 'SIGHUP', 'SIGTERM', 'Exit status']) expect(text).toContain(opt);
  });

  it('exits 2 without --config, with an unknown option, or with a positional argument', async () => {
    for (const argv of [['run'], ['run', '--confgi', 'x'], ['run', '--config', 'x', 'extra']]) {
      const r = await cli(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^sectunnel run: /);
    }
    expect((await cli(['run'])).stderr).toContain('--config FILE is required');
  });

  it('refuses an invalid config with its ConfigError lines and exit 2', async () => {
    const dir = scratch();
    const file = write(dir, config(dir, 4500, (c) => (c.labels[1].vlan = 0)));
    const r = await cli(['run', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`${file}: labels[1].vlan: 0 is not valid: expected an integer in 1..4094 (line 16, column 12)\n`);
  });

  it('refuses static keys without --insecure-static-keys (exit 2), saying why', async () => {
    const dir = scratch();
    const file = write(dir, config(dir, 4500));
    const r = await cli(['run', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: peers[0].staticSas[0], peers[0].staticSas[1]: static SA keys are refused without --insecure-static-keys`);
    expect(r.stderr).toContain('pass --insecure-static-keys');
    expect(existsSync(join(dir, 'state'))).toBe(false); // refused before touching anything
  });

  it('refuses two SAs sharing a KEYMAT (exit 2), naming both fields', async () => {
    const dir = scratch();
    const file = write(dir, config(dir, 4500, (c) => (c.peers[0].staticSas[1].out.keymat = K(2))));
    const r = await cli(['run', '--config', file, '--insecure-static-keys']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: peers[0].staticSas[1].out.keymat: the same KEYMAT as peers[0].staticSas[0].out.keymat is not valid`);
  });

  it('exits 1 with a log line naming the resource when the control socket path is taken by a file', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'ctl.sock'), 'not a socket');
    const file = write(dir, config(dir, await freeUdpPortish()));
    const r = await cli(['run', '--config', file, '--insecure-static-keys']);
    expect(r.code).toBe(1);
    const line = JSON.parse(r.stderr.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'error', msg: 'sectunnel could not start', code: 'CONTROL_NOT_SOCKET' });
    expect(line.error).toContain(join(dir, 'ctl.sock'));
  });
});

describe('the daemon without guest ports', () => {
  let daemon: Daemon | null = null;
  afterEach(async () => {
    await daemon?.stop();
    daemon = null;
  });

  async function start(dir: string, cfg: Record<string, any>): Promise<{ d: Daemon; logs: Record<string, unknown>[]; file: string }> {
    const file = write(dir, cfg);
    const logs: Record<string, unknown>[] = [];
    daemon = await Daemon.start({ configFile: file, insecureStaticKeys: true, logStream: { write: (t: string) => logs.push(JSON.parse(t) as Record<string, unknown>) } });
    return { d: daemon, logs, file };
  }

  it('logs the crypto backend, transport, overhead and guest MTU at start, and serves status', async () => {
    const dir = scratch();
    const port = await freeUdpPortish();
    const { d, logs } = await start(dir, config(dir, port));
    const started = logs.find((l) => l.msg === 'sectunnel started')!;
    expect(started).toMatchObject({
      level: 'info',
      host: 'hv1',
      transport: expect.stringMatching(/^udp-(native|dgram)$/),
      underlay: { address: '127.0.0.1', port, family: 4 },
      mtu: { underlayMtu: 1500, overheadBytes: 91, guestMtu: 1409 },
      sas: 2,
    });
    expect((started.crypto as Record<string, unknown>).backend).toMatch(/^(native|node|noble)$/);
    expect(logs.some((l) => l.level === 'warn' && String(l.msg).includes('--insecure-static-keys'))).toBe(true);

    const r = (await callControl(join(dir, 'ctl.sock'), 'status')) as StatusReport;
    expect(r).toMatchObject({ host: 'hv1', pid: process.pid, underlay: { address: '127.0.0.1', port, transport: 'udp' }, fragmented: 0 });
    expect(r.sas!.map((s) => `${s.direction} ${s.spi} ${s.labels.join(',')} ${s.peer}`).sort()).toEqual([
      'in 0x00001001 red hv2',
      'in 0x00001002 blue hv2',
      'out 0x00002001 red hv2',
      'out 0x00002002 blue hv2',
    ]);
    expect(r.peers).toEqual([{ name: 'hv2', address: '127.0.0.2', port, labels: ['red', 'blue'], state: 'static' }]);
    expect(r.pool).toEqual({ free: d.pool.available, total: 4096 });
    // The sequence store holds a reservation for each outbound SA.
    const state = JSON.parse(readFileSync(join(dir, 'state', 'seq-state.json'), 'utf8')) as { entries: { spi: string; reservedUpTo: number }[] };
    expect(state.entries.map((e) => [e.spi, e.reservedUpTo])).toEqual([
      ['0x00002001', 2 ** 20],
      ['0x00002002', 2 ** 20],
    ]);
  });

  it('reloads: keeps unchanged SAs, replaces a changed one, adds labels; refuses invalid and restart-only changes', async () => {
    const dir = scratch();
    const port = await freeUdpPortish();
    const { d, logs, file } = await start(dir, config(dir, port));
    const kept = d.sas.outboundEntries()[1]!.sa;

    write(dir, config(dir, port, (c) => {
      c.labels.push({ name: 'green', vlan: 300 });
      c.peers[0].staticSas[0].out.keymat = K(9);
    }));
    const summary = (await callControl(join(dir, 'ctl.sock'), 'reload')) as Record<string, unknown>;
    expect(summary).toEqual({
      domains: { added: [], removed: [], kept: [] },
      peers: { added: [], removed: [] },
      labels: { added: ['green'], removed: [] },
      sas: { created: 1, kept: 3, destroyed: 1 },
    });
    expect(d.sas.outboundEntries()[1]!.sa).toBe(kept);
    expect(d.tables.labels.idOf('green')).toBe(2);
    expect(d.tables.outbound(0, 1)).toBe(kept);

    // Invalid: refused with every problem logged, the running config stays.
    writeFileSync(file, '{"host": {"name": "hv1"}, "underlay": {"address": "127.0.0.1"}, "labels": []}');
    await expect(d.reload()).rejects.toBeInstanceOf(ConfigError);
    const refused = logs.find((l) => l.msg === 'reload refused: invalid config; the running config stays')!;
    expect(refused.problems).toEqual([`${file}: labels: [] is not valid: expected a non-empty list of labels {name, vlan, greKey?, context?} (line 1, column 75)`]);
    expect(d.tables.labels.idOf('green')).toBe(2);

    // Through the control socket the refusal is an error reply.
    const err = await callControl(join(dir, 'ctl.sock'), 'reload').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlClientError);
    expect((err as ControlClientError).remote?.code).toBe('reload_failed');

    // Settings only a restart applies.
    write(dir, config(dir, port + 1));
    await expect(d.reload()).rejects.toThrow(/only a restart applies these changes: underlay: .*"port":\d+.* → .*/);
    expect(d.reloadsRefused).toBe(3);
    expect(d.reloads).toBe(1);
  });

  it('refuses a reload that brings static keys when started without --insecure-static-keys', async () => {
    const dir = scratch();
    const port = await freeUdpPortish();
    const file = write(dir, config(dir, port, (c) => (c.peers[0].staticSas = [])));
    const logs: string[] = [];
    daemon = await Daemon.start({ configFile: file, insecureStaticKeys: false, logStream: { write: (t: string) => logs.push(t) } });
    expect(logs.some((l) => l.includes('peer has no publicKey'))).toBe(true);
    write(dir, config(dir, port));
    await expect(daemon.reload()).rejects.toThrow('static SA keys are refused without --insecure-static-keys');
    expect(daemon.sas.outboundEntries()).toEqual([]);
  });

  it('stops cleanly: the control socket goes, the SA keys are zeroed, `stopped` resolves', async () => {
    const dir = scratch();
    const { d, logs } = await start(dir, config(dir, await freeUdpPortish()));
    const sas = d.sas.outboundEntries().map((e) => e.sa);
    await d.stop();
    await d.stopped;
    daemon = null;
    expect(existsSync(join(dir, 'ctl.sock'))).toBe(false);
    expect(sas.every((sa) => sa.destroyed)).toBe(true);
    expect(logs.at(-1)).toMatchObject({ level: 'info', msg: 'sectunnel stopped' });
  });
});
