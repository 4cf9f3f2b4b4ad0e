// `sectunnel attach`, `sectunnel detach` and `sectunnel hook` against a control socket
// served by a stand-in daemon that plans with the real control/libvirt-attach.ts (the
// daemon itself: test/integration/libvirt-hook.test.ts).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runAttach, runDetach } from '../../src/cli/attach.js';
import { CliError } from '../../src/cli/errors.js';
import { runHook } from '../../src/cli/hook.js';
import { daemonConfigSchema, type DaemonConfig } from '../../src/control/config.js';
import { AttachError, parseAttachRequest, parseDetachRequest, planAttach, planDetach, type Attachment } from '../../src/control/libvirt-attach.js';
import { validateConfig } from '../../src/control/load.js';
import { ControlMethodError, ControlServer } from '../../src/control/status-server.js';

const FIXTURES = resolve(__dirname, '..', 'fixtures', 'libvirt');
const fx = (n: string) => join(FIXTURES, n);
const dir = mkdtempSync(join(tmpdir(), 'st-attach-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CFG: DaemonConfig = validateConfig(
  {
    host: { name: 'hv1' },
    underlay: { address: '192.0.2.1' },
    labels: [
      { name: 'red', vlan: 100, context: 'system_u:system_r:svirt_t:s0:c100' },
      { name: 'blue', vlan: 200, greKey: 51201 },
      { name: 'audit', vlan: 400 },
    ],
  },
  daemonConfigSchema,
  'hv1.yaml',
);

/** A stand-in daemon: attach/detach planned as the daemon plans them; requests recorded. */
class FakeDaemon {
  attachments: Attachment[] = [];
  readonly requests: { method: string; params: unknown }[] = [];
  readonly server: ControlServer;
  /** When set, attach never answers (a hung daemon). */
  hang = false;
  constructor(readonly path: string) {
    this.server = new ControlServer({ path });
    const wrap = (method: string, f: (p: unknown) => { next: readonly Attachment[]; added: readonly Attachment[]; removed: readonly Attachment[]; unchanged: readonly Attachment[] }) =>
      this.server.register(method, async (params: unknown) => {
        this.requests.push({ method, params });
        if (this.hang) await new Promise(() => undefined);
        try {
          const p = f(params);
          this.attachments = [...p.next];
          return { attached: p.added.map((a) => a.name), detached: p.removed.map((a) => a.name), unchanged: p.unchanged.map((a) => a.name), reload: null };
        } catch (e) {
          if (e instanceof AttachError) throw new ControlMethodError(e.code, e.message);
          throw e;
        }
      });
    wrap('attach', (p) => planAttach(parseAttachRequest(p), CFG, this.attachments, 'now'));
    wrap('detach', (p) => planDetach(parseDetachRequest(p), this.attachments));
  }
}

let fake: FakeDaemon;
let n = 0;
beforeEach(async () => {
  fake = new FakeDaemon(join(dir, `d${n++}.sock`));
  await fake.server.listen();
});
afterEach(async () => {
  await fake.server.close();
});

function out() {
  const lines: string[] = [];
  return { w: { write: (t: string) => lines.push(t) }, text: () => lines.join('') };
}

async function cliError(p: Promise<unknown>): Promise<{ exit: number; message: string }> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  if (!(e instanceof CliError)) throw new Error(`expected a CliError, got ${String(e)}`);
  return { exit: e.exitCode, message: e.message };
}

describe('sectunnel attach / detach', () => {
  it('attaches over the socket, says what changed; again changes nothing; detach removes it', async () => {
    const o = out();
    const args = ['--domain', 'web1', '--interface', 'vnet3', '--label', 'red', '--mac', '52:54:00:6B:3C:58', '--socket', fake.path];
    expect(await runAttach(args, o.w)).toBe(0);
    expect(o.text()).toBe('attached web1\n');
    expect(fake.requests[0]).toEqual({ method: 'attach', params: { domain: 'web1', interfaces: [{ interface: 'vnet3', label: 'red', macs: ['52:54:00:6b:3c:58'] }] } });
    const again = out();
    expect(await runAttach(args, again.w)).toBe(0);
    expect(again.text()).toBe('web1 is already attached so; nothing changed\n');
    const vlan = out();
    expect(await runAttach(['--domain', 'db1', '--interface', 'vnet5', '--vlan', '200', '--mac', '52:54:00:a1:b2:c3', '--mac', '52:54:00:a1:b2:c5', '--socket', fake.path], vlan.w)).toBe(0);
    expect(fake.attachments.map((a) => [a.name, a.label, a.macs.join()])).toEqual([
      ['web1', 'red', '52:54:00:6b:3c:58'],
      ['db1', 'blue', '52:54:00:a1:b2:c3,52:54:00:a1:b2:c5'],
    ]);
    const d = out();
    expect(await runDetach(['--domain', 'web1', '--socket', fake.path], d.w)).toBe(0);
    expect(d.text()).toBe('detached web1\n');
    expect(fake.attachments.map((a) => a.name)).toEqual(['db1']);
  });

  it('bad arguments exit 2 naming the flag and the value, before asking the daemon', async () => {
    const base = ['--domain', 'web1', '--interface', 'vnet3', '--label', 'red', '--mac', '52:54:00:6b:3c:58', '--socket', fake.path];
    const with_ = (flag: string, value: string) => {
      const a = [...base];
      a[a.indexOf(flag) + 1] = value;
      return a;
    };
    expect(await cliError(runAttach(with_('--mac', '52:54:00:6b:3c'), out().w))).toEqual({ exit: 2, message: '--mac "52:54:00:6b:3c" is not valid: expected a unicast MAC address like "52:54:00:12:34:56"' });
    expect(await cliError(runAttach(with_('--interface', 'vnet3:1'), out().w))).toEqual({
      exit: 2,
      message: '--interface "vnet3:1" is not valid: expected an interface name of 1..15 characters without "/", ":" or white space (libvirt\'s vnetN)',
    });
    expect(await cliError(runAttach(['--domain', 'web1', '--interface', 'vnet3', '--vlan', '5000', '--mac', '52:54:00:6b:3c:58'], out().w))).toEqual({ exit: 2, message: '--vlan "5000" is not valid: expected a VLAN id in 1..4094' });
    const noLabel = await cliError(runAttach(['--domain', 'web1', '--interface', 'vnet3', '--mac', '52:54:00:6b:3c:58'], out().w));
    expect(noLabel.exit).toBe(2);
    expect(noLabel.message.split('\n')[0]).toBe('--label LABEL (or --vlan VID) is required: there is no default label');
    expect((await cliError(runDetach(['--interface', 'vnet3'], out().w))).message.split('\n')[0]).toBe('--domain is required');
    expect(fake.requests).toEqual([]);
  });

  it('the daemon refusing (unknown label, interface taken, nothing to detach) exits 2 with its message', async () => {
    const base = ['--domain', 'web1', '--interface', 'vnet3', '--mac', '52:54:00:6b:3c:58', '--socket', fake.path];
    expect(await cliError(runAttach([...base, '--label', 'purple'], out().w))).toEqual({
      exit: 2,
      message: 'sectunnel attach: interfaces[0].label: "purple" is not a label of this host (labels: red, blue, audit)',
    });
    expect(await runAttach([...base, '--label', 'red'], out().w)).toBe(0);
    expect(await cliError(runAttach(['--domain', 'web2', '--interface', 'vnet3', '--mac', '52:54:00:00:00:02', '--label', 'red', '--socket', fake.path], out().w))).toEqual({
      exit: 2,
      message: 'sectunnel attach: interfaces[0].interface: "vnet3" is already attached to domain "web1" (attached as "web1"); detach it first',
    });
    expect((await cliError(runDetach(['--domain', 'web2', '--socket', fake.path], out().w))).exit).toBe(2);
    const ok = out();
    expect(await runDetach(['--domain', 'web2', '--missing-ok', '--socket', fake.path], ok.w)).toBe(0);
    expect(ok.text()).toBe('nothing to detach\n');
  });

  it('no daemon on the socket exits 1', async () => {
    const e = await cliError(runAttach(['--domain', 'web1', '--interface', 'vnet3', '--label', 'red', '--mac', '52:54:00:6b:3c:58', '--socket', join(dir, 'none.sock')], out().w));
    expect(e.exit).toBe(1);
    expect(e.message).toMatch(/no daemon listening/);
  });

  it('--help describes both commands', async () => {
    const a = out();
    expect(await runAttach(['--help'], a.w)).toBe(0);
    expect(a.text()).toMatch(/^usage: sectunnel attach --domain NAME --interface DEV \(--label LABEL \| --vlan VID\) --mac MAC/);
    expect(a.text()).toContain('survives reloads (SIGHUP) and daemon restarts');
    const d = out();
    expect(await runDetach(['--help'], d.w)).toBe(0);
    expect(d.text()).toMatch(/^usage: sectunnel detach --domain NAME \[--interface DEV\] \[--missing-ok\]/);
  });
});

describe('sectunnel hook (what scripts/libvirt-qemu-hook runs)', () => {
  const network = fx('network-tunnel.xml');
  function hook(args: string[], stdin: string) {
    const err: string[] = [];
    const log = join(dir, `hook-${n}.log`);
    return {
      run: () => runHook(['--network', network, '--socket', fake.path, '--log', log, ...args], { stdin, err: { write: (t: string) => err.push(t) } }),
      err: () => err.join(''),
      log: () => readFileSync(log, 'utf8'),
    };
  }
  const app3 = () => readFileSync(fx('domain-app3-three-nics.xml'), 'utf8');

  it('started attaches the domain NICs on the network (replace), labels from the seclabel; stopped detaches it', async () => {
    const h = hook(['--', 'app3', 'started', 'begin', '-'], app3());
    expect(await h.run()).toBe(0);
    expect(fake.requests).toEqual([
      {
        method: 'attach',
        params: {
          domain: 'app3',
          replace: true,
          interfaces: [
            { interface: 'vnet11', label: 'red', macs: ['52:54:00:3a:00:01'], name: 'app3.0' },
            { interface: 'vnet13', label: 'red', macs: ['52:54:00:3a:00:03'], name: 'app3.2' },
          ],
        },
      },
    ]);
    expect(h.err()).toMatch(/^\S+Z sectunnel-hook\[\d+\]: info: qemu app3 started begin -: attached app3\.0; attached app3\.2 \(app3\.0: vnet11 red 52:54:00:3a:00:01; app3\.2: vnet13 red 52:54:00:3a:00:03\)\n$/);
    expect(h.log()).toBe(h.err());

    const s = hook(['--', 'app3', 'stopped', 'end', '-'], app3());
    expect(await s.run()).toBe(0);
    expect(fake.requests[1]).toEqual({ method: 'detach', params: { domain: 'app3', missingOk: true } });
    expect(s.err()).toMatch(/info: qemu app3 stopped end -: detached app3\.0; detached app3\.2\n$/);
    expect(fake.attachments).toEqual([]);
  });

  it('a domain with no NIC on the network, and operations other than started/stopped, do not call the daemon', async () => {
    const other = `<domain type='kvm' id='4'><name>log1</name><devices><interface type='network'><mac address='52:54:00:11:22:34'/><source network='default' bridge='virbr0'/><target dev='vnet9'/></interface></devices></domain>`;
    const web = hook(['--', 'log1', 'started', 'begin', '-'], other);
    expect(await web.run()).toBe(0);
    for (const op of ['prepare', 'start', 'migrate', 'restore']) expect(await hook(['--', 'app3', op, 'begin', '-'], app3()).run()).toBe(0);
    expect(fake.requests).toEqual([]);
    expect(web.err()).toMatch(/info: qemu log1 started begin -: no interface on network tvd-finance; nothing to do/);
  });

  it('an unknown label or no label is logged and libvirt goes on (exit 0); with --strict the start is refused (1), never a reconnect', async () => {
    const unknown = hook(['--', 'hr1', 'started', 'begin', '-'], readFileSync(fx('domain-unknown-label.xml'), 'utf8'));
    expect(await unknown.run()).toBe(0);
    expect(unknown.err()).toMatch(/error: qemu \S+ started begin -: .*no label is named.*\(exit 0: libvirt goes on; pass --strict to refuse\)\n$/);
    const strict = hook(['--strict', '--', 'nolabel', 'started', 'begin', '-'], readFileSync(fx('domain-no-seclabel.xml'), 'utf8'));
    expect(await strict.run()).toBe(1);
    expect(strict.err()).toMatch(/sectunnel has no default label \(default deny\)/);
    expect(await hook(['--strict', '--', 'nolabel', 'reconnect', 'begin', '-'], readFileSync(fx('domain-no-seclabel.xml'), 'utf8')).run()).toBe(0);
    const broken = hook(['--', 'web1', 'started', 'begin', '-'], readFileSync(fx('domain-unclosed.xml'), 'utf8'));
    expect(await broken.run()).toBe(0);
    expect(broken.err()).toMatch(/error: .*syntax error/);
    expect(fake.requests).toEqual([]);
  });

  it('gives up at --timeout when the daemon does not answer, and exits 0', async () => {
    fake.hang = true;
    const h = hook(['--timeout', '300', '--', 'app3', 'started', 'begin', '-'], app3());
    expect(await h.run()).toBe(0);
    expect(h.err()).toMatch(/error: qemu app3 started begin -: .*(gave up after 300 ms|within \d+ ms)/);
  });

  it('bad arguments exit 2; --help goes to stderr (stdout is libvirt\'s)', async () => {
    await expect(runHook(['--', 'app3'], { stdin: '', err: { write: () => true } })).rejects.toThrow(/expected GUEST OPERATION SUB-OPERATION/);
    await expect(runHook(['--', 'app3', 'started', 'begin'], { stdin: '', err: { write: () => true } })).rejects.toThrow(/--network FILE \(or --config FILE.xml\) is required/);
    const err: string[] = [];
    expect(await runHook(['--help'], { stdin: '', err: { write: (t: string) => err.push(t) } })).toBe(0);
    expect(err.join('')).toMatch(/^usage: sectunnel hook/);
  });
});
