// Runtime attachments (src/control/libvirt-attach.ts): request checks naming field and
// value, planning against the file config and the overlay, the state file; and the
// daemon's network-XML config source (src/control/libvirt-host.ts).
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { daemonConfigSchema, type DaemonConfig } from '../../src/control/config.js';
import { ConfigError } from '../../src/control/config-errors.js';
import {
  AttachError,
  attachmentsFile,
  fitAttachments,
  mergeAttachments,
  parseAttachRequest,
  parseDetachRequest,
  planAttach,
  planDetach,
  readAttachments,
  writeAttachments,
  type Attachment,
} from '../../src/control/libvirt-attach.js';
import { isLibvirtConfig, loadHostConfig } from '../../src/control/libvirt-host.js';
import { importLibvirt } from '../../src/control/libvirt.js';
import { validateConfig } from '../../src/control/load.js';

const FIXTURES = resolve(__dirname, '..', 'fixtures', 'libvirt');
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'st-libvirt-attach-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(stateDir = '/var/lib/sectunnel'): DaemonConfig {
  return validateConfig(
    {
      host: { name: 'hv1' },
      underlay: { address: '192.0.2.1' },
      labels: [
        { name: 'red', vlan: 100 },
        { name: 'blue', vlan: 200 },
        { name: 'blue2', vlan: 200, greKey: 7 },
        { name: 'audit', vlan: 400 },
      ],
      domains: [{ name: 'web1', label: 'red', macs: ['52:54:00:6b:3c:58'], attach: { interface: 'vnet3' } }],
      state: { dir: stateDir },
    },
    daemonConfigSchema,
    'hv1.yaml',
  );
}

const AT = '2024-05-01T10:00:00.000Z';

function attach(params: unknown, current: readonly Attachment[] = [], cfg = config()) {
  return planAttach(parseAttachRequest(params), cfg, current, AT);
}

function refusal(f: () => unknown): { code: string; message: string } {
  try {
    f();
  } catch (e) {
    if (e instanceof AttachError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected an AttachError');
}

describe('attach requests', () => {
  it('a NIC by label name, and by VLAN; the libvirt name becomes the domain name, NAME.DEV for a second NIC', () => {
    const p = attach({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'red', macs: ['52:54:00:A1:B2:C3'] }, { interface: 'vnet6', vlan: 400, macs: ['52:54:00:a1:b2:c4'] }] });
    expect(p.added).toEqual([
      { name: 'db1', domain: 'db1', interface: 'vnet5', label: 'red', macs: ['52:54:00:a1:b2:c3'], attachedAt: AT },
      { name: 'db1.vnet6', domain: 'db1', interface: 'vnet6', label: 'audit', macs: ['52:54:00:a1:b2:c4'], attachedAt: AT },
    ]);
    expect(p.removed).toEqual([]);
    const cfg = mergeAttachments(config(), p.next);
    expect(cfg.domains.map((d) => [d.name, d.label, d.attach?.interface])).toEqual([
      ['web1', 'red', 'vnet3'],
      ['db1', 'red', 'vnet5'],
      ['db1.vnet6', 'audit', 'vnet6'],
    ]);
  });

  it('the same request again changes nothing; another label for the NIC replaces it; replace drops NICs it does not name', () => {
    const req = { domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'red', macs: ['52:54:00:a1:b2:c3'] }] };
    const first = attach(req);
    const again = planAttach(parseAttachRequest(req), config(), first.next, '2024-05-02T00:00:00.000Z');
    expect(again.added).toEqual([]);
    expect(again.unchanged).toEqual(first.added);
    expect(again.next).toEqual(first.next);

    const relabel = attach({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'audit', macs: ['52:54:00:a1:b2:c3'] }] }, first.next);
    expect(relabel.removed.map((a) => a.label)).toEqual(['red']);
    expect(relabel.next.map((a) => [a.name, a.label])).toEqual([['db1', 'audit']]);

    const two = attach({ domain: 'db1', interfaces: [{ interface: 'vnet6', label: 'blue', macs: ['52:54:00:a1:b2:c9'] }] }, first.next);
    expect(two.next.map((a) => a.interface)).toEqual(['vnet5', 'vnet6']);
    const replaced = attach({ domain: 'db1', interfaces: [{ interface: 'vnet6', label: 'blue', macs: ['52:54:00:a1:b2:c9'] }], replace: true }, two.next);
    expect(replaced.removed.map((a) => a.interface)).toEqual(['vnet5']);
    expect(replaced.unchanged.map((a) => a.interface)).toEqual(['vnet6']);
  });

  it('refuses an unknown label, a VLAN of no label or of two, and a label whose VLAN disagrees, naming field and value', () => {
    const nic = (x: object) => ({ domain: 'db1', interfaces: [{ interface: 'vnet5', macs: ['52:54:00:a1:b2:c3'], ...x }] });
    expect(refusal(() => attach(nic({ label: 'purple' })))).toEqual({ code: 'unknown_label', message: 'interfaces[0].label: "purple" is not a label of this host (labels: red, blue, blue2, audit)' });
    expect(refusal(() => attach(nic({ vlan: 300 })))).toEqual({ code: 'unknown_label', message: 'interfaces[0].vlan: no label has VLAN 300 (labels: red = 100, blue = 200, blue2 = 200, audit = 400)' });
    expect(refusal(() => attach(nic({ vlan: 200 })))).toEqual({ code: 'bad_params', message: 'interfaces[0].vlan: VLAN 200 is shared by labels blue and blue2 (different GRE keys); give the label by name' });
    expect(refusal(() => attach(nic({ label: 'red', vlan: 200 }))).message).toBe('interfaces[0].vlan: 200 is not label "red"\'s VLAN (100); give one of them');
    expect(refusal(() => attach(nic({})))).toEqual({ code: 'bad_params', message: 'interfaces[0].label: missing: give the label by name (label) or by VLAN (vlan); there is no default label' });
  });

  it('refuses a bad MAC, interface, domain or field, naming field and value', () => {
    const one = (x: object) => ({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'red', macs: ['52:54:00:a1:b2:c3'], ...x }] });
    expect(refusal(() => parseAttachRequest(one({ macs: ['52:54:00:zz:00:01'] })))).toEqual({
      code: 'bad_params',
      message: 'interfaces[0].macs[0]: "52:54:00:zz:00:01" is not valid: expected a unicast MAC address like "52:54:00:12:34:56"',
    });
    expect(refusal(() => parseAttachRequest(one({ macs: ['01:00:5e:00:00:01'] }))).message).toMatch(/^interfaces\[0\]\.macs\[0\]: "01:00:5e:00:00:01" is not valid: .*multicast/);
    expect(refusal(() => parseAttachRequest(one({ interface: 'vnet/5' }))).message).toBe(
      'interfaces[0].interface: "vnet/5" is not valid: expected an interface name of 1..15 characters without "/", ":" or white space (libvirt\'s vnetN)',
    );
    expect(refusal(() => parseAttachRequest(one({ interface: 'a-very-long-name0' }))).message).toMatch(/^interfaces\[0\]\.interface: "a-very-long-name0" is not valid/);
    expect(refusal(() => parseAttachRequest(one({ colour: 'red' }))).message).toBe('interfaces[0].colour: unknown field (known: interface, label, vlan, macs, name)');
    expect(refusal(() => parseAttachRequest({ domain: 'a/b', interfaces: [] })).message).toBe('domain: "a/b" is not valid: expected a libvirt domain name (1..255 characters, no "/")');
    expect(refusal(() => parseAttachRequest({ domain: 'db1', interfaces: [] })).message).toMatch(/^interfaces: \[\] is not valid: expected a list of 1\.\.64 interfaces/);
    expect(parseAttachRequest({ domain: 'db1', interfaces: [], replace: true }).interfaces).toEqual([]);
  });

  it('refuses an interface, MAC or name another domain has (the file config or another attachment)', () => {
    const mac = '52:54:00:a1:b2:c3';
    expect(refusal(() => attach({ domain: 'db1', interfaces: [{ interface: 'vnet3', label: 'red', macs: [mac] }] }))).toEqual({
      code: 'conflict',
      message: 'interfaces[0].interface: "vnet3" is already used by config domains[0] ("web1")',
    });
    expect(refusal(() => attach({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'red', macs: ['52:54:00:6b:3c:58'] }] })).message).toBe(
      'interfaces[0].macs: 52:54:00:6b:3c:58 is already owned by config domains[0] ("web1"); a MAC belongs to one domain',
    );
    // The libvirt name is taken by the file's domain: the default name moves aside, an explicit one is refused.
    expect(attach({ domain: 'web1', interfaces: [{ interface: 'vnet5', label: 'red', macs: [mac] }] }).added[0]!.name).toBe('web1.vnet5');
    expect(refusal(() => attach({ domain: 'web1', interfaces: [{ interface: 'vnet5', label: 'red', macs: [mac], name: 'web1' }] }))).toEqual({
      code: 'conflict',
      message: 'interfaces[0].name: "web1" is already the name of config domains[0] ("web1"); give another with name',
    });
    const db1 = attach({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'red', macs: [mac] }] }).next;
    expect(refusal(() => attach({ domain: 'app2', interfaces: [{ interface: 'vnet5', label: 'red', macs: ['52:54:00:00:00:02'] }] }, db1))).toEqual({
      code: 'conflict',
      message: 'interfaces[0].interface: "vnet5" is already attached to domain "db1" (attached as "db1"); detach it first',
    });
    expect(refusal(() => attach({ domain: 'app2', interfaces: [{ interface: 'vnet7', label: 'red', macs: [mac] }] }, db1)).message).toBe(
      'interfaces[0].macs: 52:54:00:a1:b2:c3 is already owned by domain "db1" (attached as "db1"); a MAC belongs to one domain',
    );
    expect(refusal(() => attach({ domain: 'app2', interfaces: [{ interface: 'vnet7', label: 'red', macs: ['52:54:00:00:00:02'], name: 'db1' }] }, db1)).message).toBe(
      'interfaces[0].name: "db1" is already the name of domain "db1" (attached as "db1"); give another with name',
    );
  });
});

describe('detach requests', () => {
  const current = attach({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'red', macs: ['52:54:00:a1:b2:c3'] }, { interface: 'vnet6', label: 'blue', macs: ['52:54:00:a1:b2:c4'] }] }).next;

  it('removes a domain, or one of its NICs', () => {
    expect(planDetach(parseDetachRequest({ domain: 'db1' }), current).next).toEqual([]);
    const one = planDetach(parseDetachRequest({ domain: 'db1', interface: 'vnet6' }), current);
    expect(one.removed.map((a) => a.interface)).toEqual(['vnet6']);
    expect(one.next.map((a) => a.interface)).toEqual(['vnet5']);
  });

  it('nothing attached by that name is an error unless missingOk', () => {
    expect(refusal(() => planDetach(parseDetachRequest({ domain: 'web9' }), current))).toEqual({
      code: 'not_attached',
      message: 'domain: domain "web9" is not attached at run time (attached: db1 (vnet5), db1 (vnet6)); domains of the config file are removed by editing it and reloading',
    });
    expect(planDetach(parseDetachRequest({ domain: 'web9', missingOk: true }), current).removed).toEqual([]);
    expect(refusal(() => parseDetachRequest({ domain: 'db1', interface: 'vnet 6' })).message).toMatch(/^interface: "vnet 6" is not valid/);
  });
});

describe('the overlay across reloads and restarts', () => {
  it('entries the config now contradicts are dropped with the reason', () => {
    const list = attach({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'audit', macs: ['52:54:00:a1:b2:c3'] }, { interface: 'vnet6', label: 'red', macs: ['52:54:00:a1:b2:c4'] }] }).next;
    const reloaded = validateConfig(
      {
        host: { name: 'hv1' },
        underlay: { address: '192.0.2.1' },
        labels: [{ name: 'red', vlan: 100 }],
        domains: [{ name: 'web1', label: 'red', macs: ['52:54:00:6b:3c:58'], attach: { interface: 'vnet6' } }],
      },
      daemonConfigSchema,
      'hv1.yaml',
    );
    const fit = fitAttachments(reloaded, list);
    expect(fit.ok).toEqual([]);
    expect(fit.dropped.map((d) => [d.attachment.interface, d.why])).toEqual([
      ['vnet5', 'label: "audit" is not a label of this host any more'],
      ['vnet6', 'interface: "vnet6" is already used by config domains[0] ("web1")'],
    ]);
  });

  it('are kept in state.dir as attachments-HOST.json (0600), read back the same; a broken file is refused naming it', () => {
    const dir = join(tempDir(), 'state');
    const cfg = config(dir);
    const file = attachmentsFile(cfg);
    expect(file).toBe(join(dir, 'attachments-hv1.json'));
    expect(readAttachments(file)).toEqual([]);
    const list = attach({ domain: 'db1', interfaces: [{ interface: 'vnet5', label: 'red', macs: ['52:54:00:a1:b2:c3'] }] }, [], cfg).next;
    writeAttachments(file, dir, list);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readAttachments(file)).toEqual(list);
    expect(JSON.parse(readFileSync(file, 'utf8')).format).toBe('sectunnel-attachments');

    writeFileSync(file, '{"format": "sectunnel-attachments", "version": 1, "attachments": [{"name": "db1", "domain": "db1", "interface": "vnet5", "label": "red", "macs": ["nope"]}]}');
    expect(refusal(() => readAttachments(file))).toEqual({ code: 'state_io', message: `${file}: attachments[0]: mac: "nope" is not valid: expected a unicast MAC address like "52:54:00:12:34:56"` });
    writeFileSync(file, 'garbage');
    expect(refusal(() => readAttachments(file)).message).toBe(`${file}: not JSON; move it aside to start without the runtime attachments it held`);
  });
});

describe('the daemon config from a network XML', () => {
  it('a .xml --config is a network definition; this host is the <peer> with a local address; its key is HOST.key next to the XML', async () => {
    expect(isLibvirtConfig('/etc/sectunnel/tvd.XML')).toBe(true);
    expect(isLibvirtConfig('/etc/sectunnel/hv1.yaml')).toBe(false);
    const dir = tempDir();
    cpSync(join(FIXTURES, 'network-tunnel.xml'), join(dir, 'tvd.xml'));
    const secrets = join(FIXTURES, 'secrets');
    const opts = { localAddresses: ['127.0.0.1', '192.0.2.2', 'fe80::1'], hostKeyDir: dir, requireHostKey: true, secretsDir: secrets };
    await expect(importLibvirt(join(dir, 'tvd.xml'), [], opts)).rejects.toThrow(
      `${join(dir, 'tvd.xml')}: network/tunnel/peer[2]: host "hv2" has no private key: ${join(dir, 'hv2.key')} does not exist, and the handshake with its peers needs it; create it with \`sectunnel keygen ${join(dir, 'hv2.key')}\``,
    );
    writeFileSync(join(dir, 'hv2.key'), 'x\n', { mode: 0o600 });
    const r = await importLibvirt(join(dir, 'tvd.xml'), [], opts);
    expect(r.config.host).toEqual({ name: 'hv2', privateKeyFile: join(dir, 'hv2.key') });
    expect(r.config.domains).toEqual([]);
    expect(r.config.peers.map((p) => p.name)).toEqual(['hv1', 'hv3']);
    // No peer has one of this machine's addresses (and none is named like it).
    const err = await importLibvirt(join(dir, 'tvd.xml'), [], { ...opts, localAddresses: ['127.0.0.1'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/which <peer> is this host\? none has one of this machine's addresses \(127\.0\.0\.1\) and none is named ".*" \(this machine's host name\)/);
    // loadHostConfig reads a YAML/JSON config as loadDaemonConfig does.
    const yaml = join(dir, 'hv1.json');
    writeFileSync(yaml, JSON.stringify({ host: { name: 'hv1' }, underlay: { address: '192.0.2.1' }, labels: [{ name: 'red', vlan: 100 }] }));
    expect((await loadHostConfig(yaml)).cfg.host.name).toBe('hv1');
  });
});
