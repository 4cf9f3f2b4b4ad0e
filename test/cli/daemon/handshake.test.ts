// The daemon on handshake keys, in this process over loopback (no namespaces, no root):
// key file checks at start, two daemons establishing a session, `rekey` (control method
// and CLI), status fields, and reloads that keep, update and remove peers.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from '../../../src/cli/daemon/daemon.js';
import { runRekey } from '../../../src/cli/rekey.js';
import { encodeKey, generatePresharedKey, generatePrivateKey, publicKeyOf, writeSecretKeyFile } from '../../../src/control/keys.js';
import { callControl, ControlClientError } from '../../../src/control/status-client.js';
import type { StatusReport } from '../../../src/control/status-report.js';
import { noisePrimitives } from '../../../src/core/noise.js';

const dirs: string[] = [];
const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const quiet = { write: () => true };

interface Pair {
  dir: string;
  ports: [number, number];
  pub: [string, string];
  file: (i: 0 | 1) => string;
  config: (i: 0 | 1, edit?: (c: Record<string, any>) => void) => string;
  socket: (i: 0 | 1) => string;
}

async function pair(): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), 'st-hsd-'));
  dirs.push(dir);
  const ports: [number, number] = [await freePort(), await freePort()];
  const pub: string[] = [];
  for (const i of [0, 1]) {
    const k = generatePrivateKey();
    await writeSecretKeyFile(join(dir, `h${i}.key`), k);
    pub.push(encodeKey(publicKeyOf(k)));
  }
  const p: Pair = {
    dir,
    ports,
    pub: pub as [string, string],
    file: (i) => join(dir, `h${i}.json`),
    socket: (i) => join(dir, `h${i}.sock`),
    config: (i, edit = () => {}) => {
      const o = (1 - i) as 0 | 1;
      const c: Record<string, any> = {
        host: { name: `h${i}`, privateKeyFile: join(dir, `h${i}.key`) },
        underlay: { address: `127.0.0.${i + 1}`, port: ports[i] },
        labels: [
          { name: 'red', vlan: 100 },
          { name: 'blue', vlan: 200 },
        ],
        peers: [{ name: `h${o}`, address: `127.0.0.${o + 1}`, port: ports[o], labels: ['red', 'blue'], publicKey: pub[o] }],
        audit: { path: join(dir, `h${i}-audit.jsonl`) },
        control: { socket: join(dir, `h${i}.sock`) },
        state: { dir: join(dir, `h${i}-state`) },
        log: { level: 'warn' },
      };
      edit(c);
      writeFileSync(p.file(i), JSON.stringify(c));
      return p.file(i);
    },
  };
  return p;
}

async function start(p: Pair, i: 0 | 1, edit?: (c: Record<string, any>) => void): Promise<Daemon> {
  const d = await Daemon.start({ configFile: p.config(i, edit), insecureStaticKeys: false, logStream: quiet });
  daemons.push(d);
  return d;
}

async function status(p: Pair, i: 0 | 1): Promise<StatusReport> {
  return (await callControl(p.socket(i), 'status')) as StatusReport;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const established = (p: Pair, i: 0 | 1) => async () => (await status(p, i)).peers![0]!.state === 'established';

describe('daemon start with handshake keys', () => {
  it('refuses a private key file others can read, naming the file and its mode', async () => {
    const p = await pair();
    chmodSync(join(p.dir, 'h0.key'), 0o644);
    await expect(Daemon.start({ configFile: p.config(0), insecureStaticKeys: false, logStream: quiet })).rejects.toMatchObject({
      code: 'ST_DAEMON_KEYS',
      message: expect.stringContaining(`${join(p.dir, 'h0.key')}: mode 0644`),
    });
  });

  it('refuses peers with a public key when host.privateKeyFile is missing', async () => {
    const p = await pair();
    await expect(Daemon.start({ configFile: p.config(0, (c) => delete c.host.privateKeyFile), insecureStaticKeys: false, logStream: quiet })).rejects.toMatchObject({
      code: 'ST_DAEMON_KEYS',
      message: expect.stringContaining('host.privateKeyFile is not'),
    });
  });

  it('refuses a pre-shared key file others can read', async () => {
    const p = await pair();
    const psk = join(p.dir, 'psk');
    writeFileSync(psk, encodeKey(generatePresharedKey()) + '\n', { mode: 0o640 });
    chmodSync(psk, 0o640);
    await expect(
      Daemon.start({ configFile: p.config(0, (c) => (c.peers[0].presharedKeyFile = psk)), insecureStaticKeys: false, logStream: quiet }),
    ).rejects.toMatchObject({ code: 'ST_DAEMON_KEYS', message: expect.stringContaining('peers[0].presharedKeyFile') });
  });
});

describe('two daemons over loopback', () => {
  it('establish a session per label, rekey on demand and show it in status', async () => {
    const p = await pair();
    const psk = encodeKey(generatePresharedKey()) + '\n';
    writeFileSync(join(p.dir, 'psk'), psk, { mode: 0o600 });
    const withPsk = (c: Record<string, any>) => (c.peers[0].presharedKeyFile = join(p.dir, 'psk'));
    await start(p, 0, withPsk);
    await start(p, 1, withPsk);
    await until('h0 established', established(p, 0));
    await until('h1 established', established(p, 1));
    const r = await status(p, 0);
    const peer = r.peers![0]!;
    expect([...peer.negotiatedLabels!].sort()).toEqual(['blue', 'red']);
    expect(peer.algorithm).toBe('aes-gcm-256');
    expect(peer.handshakeFailures).toEqual({});
    expect(r.sas!.filter((s) => s.direction === 'out').map((s) => s.labels.join()).sort()).toEqual(['blue', 'red']);
    expect(r.sas!.filter((s) => s.direction === 'in').length).toBeGreaterThanOrEqual(2);
    const completed = r.handshake!.completed;

    // Rekey through the control method and through the CLI.
    expect(await callControl(p.socket(0), 'rekey', { peer: 'h1' })).toMatchObject({ peer: 'h1', started: true });
    await until('the rekey to complete', async () => (await status(p, 0)).handshake!.completed > completed);
    let out = '';
    expect(await runRekey(['h1', '--socket', p.socket(0)], { write: (t: string) => (out += t) })).toBe(0);
    expect(out).toMatch(/rekey with h1 started|already in progress/);
    await until('the second rekey', async () => (await status(p, 0)).handshake!.completed > completed + 1);
    expect((await status(p, 0)).peers![0]!.rekeys).toMatchObject({ on_demand: 2 });

    await expect(callControl(p.socket(0), 'rekey', { peer: 'nobody' })).rejects.toBeInstanceOf(ControlClientError);
    await expect(runRekey(['nobody', '--socket', p.socket(0)], quiet)).rejects.toMatchObject({ exitCode: 1 });
    await expect(runRekey([], quiet)).rejects.toMatchObject({ exitCode: 2 });
  });

  it('handshake.rekeyAfterPackets / rekeyAfterBytes become the soft limits of the outbound SAs (defaults otherwise); the handshake runs on node:crypto primitives', async () => {
    const p = await pair();
    const a = await start(p, 0, (c) => (c.handshake = { rekeyAfterPackets: 5000, rekeyAfterBytes: 3 << 20 }));
    const b = await start(p, 1);
    await until('h0 established', established(p, 0));
    await until('h1 established', established(p, 1));
    const outA = a.handshakes!.outboundEntries().map((e) => e.sa);
    expect(outA.length).toBe(2);
    for (const sa of outA) expect([sa.softPackets, sa.softBytes]).toEqual([5000, 3 << 20]);
    // h1 sets neither: 7/8 of the ESN counter's range, no byte limit.
    const outB = b.handshakes!.outboundEntries().map((e) => e.sa);
    expect(outB.length).toBe(2);
    for (const sa of outB) expect([sa.softPackets, sa.softBytes]).toEqual([Math.floor(Number.MAX_SAFE_INTEGER / 8) * 7, Infinity]);
    expect(noisePrimitives().name).toBe('node');
  });

  it('a reload keeps an unchanged session, applies a changed label set with a rekey, and removes a peer', async () => {
    const p = await pair();
    const a = await start(p, 0);
    await start(p, 1);
    await until('h0 established', established(p, 0));
    await until('h1 established', established(p, 1));
    const before = await status(p, 0);

    // Unchanged config: the session stays (no new handshake).
    await a.reload();
    const same = await status(p, 0);
    expect(same.handshake!.completed).toBe(before.handshake!.completed);
    expect(same.peers![0]!.state).toBe('established');
    expect(same.sas!.filter((s) => s.direction === 'out').map((s) => s.spi).sort()).toEqual(before.sas!.filter((s) => s.direction === 'out').map((s) => s.spi).sort());

    // h0 stops granting blue: the next session carries red only.
    p.config(0, (c) => (c.peers[0].labels = ['red']));
    await a.reload();
    await until('a session with red only', async () => {
      const r = await status(p, 0);
      return r.peers![0]!.state === 'established' && r.peers![0]!.negotiatedLabels!.join() === 'red';
    });

    // Peer removed: its SAs go.
    p.config(0, (c) => (c.peers = []));
    await a.reload();
    const gone = await status(p, 0);
    expect(gone.peers).toEqual([]);
    expect(gone.sas).toEqual([]);
  });
});
