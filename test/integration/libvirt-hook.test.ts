// Two daemons configured only from a libvirt network definition and a host key
// (`sectunnel run --config tvd.xml`: each finds itself by its underlay address and
// reads HOST.key next to the XML; SAs from the handshake), started with no domains.
// Guests sit behind veths whose host ends (vg1, vg2) stand in for libvirt's vnetN.
// scripts/libvirt-qemu-hook, fed a live domain XML on stdin as libvirt does, attaches
// and detaches them at run time; `sectunnel attach` attaches the other domains.
// Namespaces st-h7-…, removed after each test (also on failure).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect } from 'vitest';
import { DEFAULT_STATE_DIR, defaultControlSocket } from '../../src/control/config.js';
import { encodeKey, generatePresharedKey, generatePrivateKey, publicKeyOf, writeSecretKeyFile } from '../../src/control/keys.js';
import { callControl } from '../../src/control/status-client.js';
import type { StatusReport } from '../../src/control/status-report.js';
import { buildStandardTopology, guestMac, NetnsError, World, type NsProcess, type Topology } from '../../src/io/netns.js';
import { cliArgv, ensureBuilt, REPO, waitFor } from '../fixtures/daemon/harness.js';
import { itWith } from '../helpers/tools.js';

const HOOK = join(REPO, 'scripts', 'libvirt-qemu-hook');
const NETWORK = 'tvd-h7';
const RED = 'system_u:system_r:svirt_t:s0:c100';

/** A live domain XML as libvirt hands it to the hook at `started`: one NIC on the network, an sVirt label. */
function domainXml(name: string, uuid: string, dev: string, mac: string, context: string): string {
  return `<domain type='kvm' id='3'>
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-8.2'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='network'>
      <mac address='${mac}'/>
      <source network='${NETWORK}' portid='2c1e5f0a-7b0e-4d43-9a51-3e1d9c0b7a11' bridge='virbr-h7'/>
      <target dev='${dev}'/>
      <model type='virtio'/>
      <port isolated='yes'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
  </devices>
  <seclabel type='static' model='selinux' relabel='yes'>
    <label>${context}</label>
    <imagelabel>system_u:object_r:svirt_image_t:s0:c100</imagelabel>
  </seclabel>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+107:+107</label>
    <imagelabel>+107:+107</imagelabel>
  </seclabel>
</domain>
`;
}

class HookWorld {
  readonly procs = new Map<1 | 2, NsProcess>();
  readonly names: Record<1 | 2, string>;
  readonly xml: string;
  private readonly stateDirExisted = existsSync(DEFAULT_STATE_DIR);

  constructor(
    readonly world: World,
    readonly topo: Topology,
    readonly dir: string,
  ) {
    const tag = `${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    this.names = { 1: `h7a-${tag}`, 2: `h7b-${tag}` };
    this.xml = join(dir, 'tvd-h7.xml');
  }

  static async create(name: string): Promise<HookWorld> {
    const world = await World.create(`st-h7-${name}-`);
    try {
      const topo = await buildStandardTopology(world, { guestsPerHost: 2, guestMtuBytes: 1400, bridges: 'none' });
      const hw = new HookWorld(world, topo, mkdtempSync(join(tmpdir(), 'st-h7-')));
      const pub: string[] = [];
      for (const h of [1, 2] as const) {
        const key = generatePrivateKey();
        await writeSecretKeyFile(join(hw.dir, `${hw.names[h]}.key`), key);
        pub.push(encodeKey(publicKeyOf(key)));
      }
      const psk = join(hw.dir, 'psk.base64');
      writeFileSync(psk, encodeKey(generatePresharedKey()) + '\n', { mode: 0o600 });
      writeFileSync(
        hw.xml,
        `<?xml version='1.0' encoding='UTF-8'?>
<network type='tunneled'>
  <name>${NETWORK}</name>
  <uuid>5d0f7a2e-9c41-4b6e-8f3a-1e2d3c4b5a69</uuid>
  <bridge name='virbr-h7'/>
  <tunnel type='ipsec' algorithm='aes-gcm-256' transport='udp' port='4500'>
    <secret file='${psk}'/>
    <label name='red' vlan='100' context='${RED}'/>
    <label name='blue' vlan='200'/>
    <peer name='${hw.names[1]}' address='192.0.2.1' publicKey='${pub[0]}'/>
    <peer name='${hw.names[2]}' address='192.0.2.2' publicKey='${pub[1]}'/>
  </tunnel>
</network>
`,
      );
      return hw;
    } catch (e) {
      await world.destroy();
      throw e;
    }
  }

  socket(h: 1 | 2): string {
    return defaultControlSocket(this.names[h]);
  }

  async start(h: 1 | 2): Promise<void> {
    const [cmd, ...pre] = cliArgv();
    const p = this.world.spawn(this.topo.hosts[h - 1].ns, cmd!, [...pre, 'run', '--config', this.xml]);
    this.procs.set(h, p);
    await p.waitForOutput(/"msg":"sectunnel started"/, 30_000);
  }

  async stop(h: 1 | 2): Promise<void> {
    const p = this.procs.get(h);
    this.procs.delete(h);
    await p?.stop(10_000);
  }

  status(h: 1 | 2): Promise<StatusReport & { attachments?: { name: string; domain: string; interface: string; label: string }[] }> {
    return callControl(this.socket(h), 'status') as Promise<StatusReport & { attachments?: { name: string; domain: string; interface: string; label: string }[] }>;
  }

  /** `sectunnel ARGS` in host h's namespace. */
  cli(h: 1 | 2, args: string[]): { status: number | null; stdout: string; stderr: string } {
    const [cmd, ...pre] = cliArgv();
    const r = spawnSync('ip', ['netns', 'exec', this.topo.hosts[h - 1].ns, cmd!, ...pre, ...args], { encoding: 'utf8', timeout: 30_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** libvirt running /etc/libvirt/hooks/qemu GUEST OP SUBOP - with the domain XML on stdin, in host h. */
  hook(h: 1 | 2, guest: string, op: string, subop: string, xml: string): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.topo.hosts[h - 1].ns, HOOK, guest, op, subop, '-'], {
      input: xml,
      encoding: 'utf8',
      timeout: 30_000,
      env: {
        ...process.env,
        SECTUNNEL: cliArgv().join(' '),
        SECTUNNEL_NETWORK: this.xml,
        SECTUNNEL_SOCKET: this.socket(h),
        SECTUNNEL_HOOK_LOG: this.hookLog(),
        SECTUNNEL_HOOK_DEFAULTS: join(this.dir, 'no-defaults'),
      },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  hookLog(): string {
    return join(this.dir, 'hook.log');
  }

  async pings(h: 1 | 2, g: number, address: string): Promise<boolean> {
    try {
      await this.world.exec(this.topo.hosts[h - 1].guests[g - 1]!.ns, 'ping', ['-n', '-q', '-c', '1', '-W', '1', address], { timeoutMs: 10_000 });
      return true;
    } catch (e) {
      if (e instanceof NetnsError && e.code === 'NETNS_COMMAND_FAILED') return false;
      throw e;
    }
  }

  ip(h: 1 | 2, g: number): string {
    return this.topo.hosts[h - 1].guests[g - 1]!.ipv4;
  }

  async destroy(): Promise<void> {
    try {
      await this.world.destroy();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      for (const h of [1, 2] as const) {
        rmSync(this.socket(h), { force: true });
        rmSync(join(DEFAULT_STATE_DIR, `attachments-${this.names[h]}.json`), { force: true });
      }
      if (!this.stateDirExisted && existsSync(DEFAULT_STATE_DIR) && readdirSync(DEFAULT_STATE_DIR).length === 0) rmdirSync(DEFAULT_STATE_DIR);
    }
  }
}

let hw: HookWorld | null = null;
beforeAll(() => ensureBuilt(), 300_000);
afterEach(async () => {
  await hw?.destroy();
  hw = null;
});

describe('libvirt XML + host key only; the qemu hook attaches and detaches at run time', () => {
  itWith(
    ['netns', 'native'],
    'started attaches (same label flows, cross label does not), stopped detaches; the other domain is undisturbed; attachments survive a restart',
    async () => {
      hw = await HookWorld.create('hook');
      const w = hw;
      await w.start(1);
      await w.start(2);
      for (const h of [1, 2] as const) {
        const r = await w.status(h);
        expect(r.domains).toEqual([]);
        expect(r.attachments).toEqual([]);
      }

      // Host b: web-b (red) by the hook, db-b (blue) by the CLI; host a: db-a (blue) by the CLI.
      const webB = domainXml('web-b', '7f0d6c2e-1a3b-4c5d-8e9f-0a1b2c3d4e5f', 'vg1', guestMac(2, 1), RED);
      const hb = w.hook(2, 'web-b', 'started', 'begin', webB);
      expect(hb.status).toBe(0);
      expect(hb.stdout).toBe('');
      const attachDb = (h: 1 | 2) =>
        w.cli(h, ['attach', '--domain', `db-${h === 1 ? 'a' : 'b'}`, '--interface', 'vg2', '--label', 'blue', '--mac', guestMac(h, 2), '--socket', w.socket(h)]);
      const cb = attachDb(2);
      expect(cb.stderr).toBe('');
      expect(cb.stdout).toBe('attached db-b\nundisturbed: web-b\n');
      expect(attachDb(1)).toMatchObject({ status: 0, stdout: 'attached db-a\n' });

      await waitFor('blue a2 to ping blue b2 over the handshake', () => w.pings(1, 2, w.ip(2, 2)), 30_000);
      // web-a is not attached yet: its red guest reaches nobody.
      expect(await w.pings(1, 1, w.ip(2, 1))).toBe(false);

      const webA = domainXml('web-a', '3b9e1d4c-5a6f-4e70-8192-a3b4c5d6e7f8', 'vg1', guestMac(1, 1), RED);
      const ha = w.hook(1, 'web-a', 'started', 'begin', webA);
      expect(ha.status).toBe(0);
      expect(ha.stdout).toBe('');
      expect(ha.stderr).toMatch(/sectunnel-hook\[\d+\]: info: qemu web-a started begin -: attached web-a; undisturbed: db-a \(web-a: vg1 red 02:53:54:00:01:01\)/);
      await waitFor('red a1 to ping red b1 after the hook attached it', () => w.pings(1, 1, w.ip(2, 1)));
      expect(await w.pings(1, 1, w.ip(2, 2))).toBe(false); // red → blue
      expect(await w.pings(1, 2, w.ip(2, 1))).toBe(false); // blue → red
      expect(await w.pings(1, 2, w.ip(2, 2))).toBe(true);
      const sa = await w.status(1);
      expect(sa.attachments!.map((a) => [a.name, a.domain, a.interface, a.label])).toEqual([
        ['db-a', 'db-a', 'vg2', 'blue'],
        ['web-a', 'web-a', 'vg1', 'red'],
      ]);
      expect(sa.peers![0]!.state).toBe('established');

      // libvirtd restarting reconnects: the same XML again changes nothing.
      expect(w.hook(1, 'web-a', 'reconnect', 'begin', webA).stderr).toMatch(/web-a is already attached so; nothing changed/);

      // stopped: detached; red traffic stops, blue goes on.
      const hs = w.hook(1, 'web-a', 'stopped', 'end', webA);
      expect(hs.status).toBe(0);
      expect(hs.stderr).toMatch(/info: qemu web-a stopped end -: detached web-a; undisturbed: db-a/);
      expect(await w.pings(1, 1, w.ip(2, 1))).toBe(false);
      expect(await w.pings(1, 2, w.ip(2, 2))).toBe(true);
      expect((await w.status(1)).attachments!.map((a) => a.name)).toEqual(['db-a']);
      // release after stopped: nothing left to detach, still fine.
      expect(w.hook(1, 'web-a', 'release', 'end', webA).status).toBe(0);

      // The daemon down: the hook gives up quickly, logs why, and lets libvirt go on.
      await w.stop(1);
      const down = w.hook(1, 'web-a', 'started', 'begin', webA);
      expect(down.status).toBe(0);
      expect(down.stderr).toMatch(/error: qemu web-a started begin -: .*no daemon listening.*\(exit 0: libvirt goes on; pass --strict to refuse\)/);
      const log = readFileSync(w.hookLog(), 'utf8');
      expect(log).toMatch(/info: qemu web-b started begin -: attached web-b/);
      expect(log).toMatch(/error: qemu web-a started begin -/);

      // Restart: the kept attachment (db-a) is attached again, web-a (detached) is not.
      await w.start(1);
      expect((await w.status(1)).attachments!.map((a) => a.name)).toEqual(['db-a']);
      await waitFor('blue a2 to ping blue b2 after host a restarted', () => w.pings(1, 2, w.ip(2, 2)), 30_000);
      expect(await w.pings(1, 1, w.ip(2, 1))).toBe(false);
    },
    180_000,
  );
});
