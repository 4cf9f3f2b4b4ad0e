// libvirt XML → daemon config (docs/libvirt.md): both network forms over
// recorded fixtures, labels from sVirt seclabels and our metadata, secrets,
// this host's selection, every class of error with its exact message, and the
// round trip through loadDaemonConfig.
import { chmodSync, cpSync, mkdtempSync, rmSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/control/config-errors.js';
import { loadDaemonConfig } from '../../src/control/config.js';
import { importLibvirt, importLibvirtXml, loadLibvirtConfig, LibvirtFilesError, type LibvirtImportOptions } from '../../src/control/libvirt.js';

const TEMP_DIRS: string[] = [];
/** A fresh folder under the system temp folder, removed after the file's tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  TEMP_DIRS.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of TEMP_DIRS) rmSync(d, { recursive: true, force: true });
});


const FIXTURES = resolve(__dirname, '..', 'fixtures', 'libvirt');
const fx = (name: string) => join(FIXTURES, name);
const DOMAINS = ['domain-web1.xml', 'domain-db1.xml', 'domain-log1.xml', 'domain-app2.xml'].map(fx);

const PSK = '6f1c0a4e-2b7d-4c55-9a3e-0d8e5b1f7c21';
const PSK_HV1_HV3 = '8a2d4f60-93b1-4e0c-b6f2-1c7e9d3a5b48';
const KEY_HV1 = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const KEY_HV2 = 'ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=';
const KEY_HV3 = 'QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=';

/** A copy of the fixture secrets folder with libvirt's modes (0600), which git does not keep. */
function secretsDir(): string {
  const dir = tempDir('st-libvirt-secrets-');
  cpSync(fx('secrets'), dir, { recursive: true });
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o600);
  return dir;
}

const LABELS_TUNNEL = [
  { name: 'red', vlan: 100, context: 'system_u:system_r:svirt_t:s0:c100' },
  { name: 'blue', vlan: 200, greKey: 51201, context: 'system_u:system_r:svirt_t:s0:c200' },
  { name: 'audit', vlan: 400 },
];

const DOMAIN_ENTRIES = [
  { name: 'web1', label: 'red', macs: ['52:54:00:6b:3c:58'], attach: { interface: 'vnet3' } },
  { name: 'db1.0', label: 'blue', macs: ['52:54:00:a1:b2:c3'], attach: { interface: 'vnet5' } },
  { name: 'db1.1', label: 'audit', macs: ['52:54:00:a1:b2:c4'], attach: { interface: 'st-db1-aud' } },
  { name: 'log1', label: 'audit', macs: ['52:54:00:c0:ff:ee'], attach: { interface: 'vnet8' } },
  { name: 'app2', label: 'blue', macs: ['52:54:00:0a:00:02'], attach: { interface: 'vnet9' } },
];

async function errorOf(run: () => Promise<unknown> | unknown): Promise<ConfigError> {
  try {
    await run();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('the tunnel form (<network type="tunneled">)', () => {
  it('gives hv1 its labels, its domains from sVirt labels and metadata, its peers with the network key, and the policy', async () => {
    const secrets = secretsDir();
    const r = await importLibvirt(fx('network-tunnel.xml'), DOMAINS, { hostName: 'hv1', secretsDir: secrets });
    expect(r.hostName).toBe('hv1');
    expect(r.network).toMatchObject({ form: 'tunnel', name: 'tvd-finance', uuid: '0d5f4f57-4fd8-4d48-a0a2-5b8e8f5e0c31', bridge: 'virbr-fin' });
    expect(r.file).toEqual({
      host: { name: 'hv1' },
      underlay: { address: '192.0.2.1', port: 4500, transport: 'udp' },
      crypto: { algorithm: 'aes-gcm-256' },
      labels: LABELS_TUNNEL,
      domains: DOMAIN_ENTRIES,
      peers: [
        { name: 'hv2', address: '192.0.2.2', labels: ['red', 'blue', 'audit'], publicKey: KEY_HV2, presharedKeyFile: join(secrets, `${PSK}.base64`) },
        { name: 'hv3', address: '192.0.2.3', port: 14500, labels: ['red'], publicKey: KEY_HV3, presharedKeyFile: join(secrets, `${PSK}.base64`) },
      ],
      policy: ['allow red -> audit', 'allow blue -> audit'],
    });
    expect(r.warnings).toEqual([
      `${fx('domain-web1.xml')}: domain "web1": interface vnet4 52:54:00:11:22:33 (network 'default') is not on network tvd-finance; skipped`,
      `${fx('domain-app2.xml')}: domain "app2": interface vnet9 52:54:00:0a:00:02 is a port of a bridge without <port isolated='yes'/>: the bridge forwards between its ports by itself, around sectunnel's label checks; add <port isolated='yes'/> to the interface, or use <interface type='ethernet'>`,
    ]);
    // Where each label came from, for the hook and for status.
    expect(r.domains.flatMap((d) => d.interfaces.map((i) => [i.name, i.domain, i.index, i.dev, i.label, i.labelFrom, i.path]))).toEqual([
      ['web1', 'web1', 0, 'vnet3', 'red', 'seclabel', 'domain/devices/interface[1]'],
      ['db1.0', 'db1', 0, 'vnet5', 'blue', 'metadata', 'domain/devices/interface[1]'],
      ['db1.1', 'db1', 1, 'st-db1-aud', 'audit', 'metadata-interface', 'domain/devices/interface[2]'],
      ['log1', 'log1', 0, 'vnet8', 'audit', 'metadata', 'domain/devices/interface'],
      ['app2', 'app2', 0, 'vnet9', 'blue', 'seclabel', 'domain/devices/interface'],
    ]);
  });

  it('gives hv3 only the labels both ends carry, and says which local domains then reach no other host', async () => {
    const r = await importLibvirt(fx('network-tunnel.xml'), [fx('domain-web1.xml'), fx('domain-log1.xml')], { hostName: 'hv3', secretsDir: secretsDir() });
    expect(r.config.peers.map((p) => [p.name, p.labels, p.port])).toEqual([
      ['hv1', ['red'], 4500],
      ['hv2', ['red'], 4500],
    ]);
    expect(r.warnings).toContain(`${fx('domain-log1.xml')}: domain "log1", interface vnet8: label "audit" travels to no other host from hv3; the interface reaches only domains of this host`);
  });

  it('skips a peer that shares no label with this host, saying so', () => {
    const r = importLibvirtXml(
      {
        file: 'net.xml',
        text: `<network type='tunneled'><name>n</name><tunnel type='ipsec'>
          <label name='red' vlan='100'/><label name='blue' vlan='200'/>
          <peer name='a' address='10.0.0.1' labels='red'/>
          <peer name='b' address='10.0.0.2' labels='blue' publicKey='${KEY_HV2}'/>
          <peer name='c' address='10.0.0.3' publicKey='${KEY_HV3}'/>
        </tunnel></network>`,
      },
      [],
      { hostName: 'a' },
    );
    expect(r.config.peers.map((p) => [p.name, p.labels])).toEqual([['c', ['red']]]);
    expect(r.warnings).toEqual(['net.xml: network/tunnel/peer[2]: b shares no label with this host (a); no tunnel to it']);
    expect(r.config.crypto.algorithm).toBe('aes-gcm-256');
    expect(r.config.underlay).toMatchObject({ address: '10.0.0.1', port: 4500, transport: 'udp' });
  });
});

describe('the sectunnel form (<sectunnel type="ipsec"> with <sa> and <sp>)', () => {
  it('gives hv1 handshake peers with per-pair keys and a static SA pair whose KEYMATs come from secrets', async () => {
    const secrets = secretsDir();
    const r = await importLibvirt(fx('network-sectunnel.xml'), [fx('domain-web1.xml')], { hostName: 'hv1', secretsDir: secrets });
    expect(r.file.labels).toEqual([
      { name: 'red', vlan: 100, context: 'system_u:system_r:svirt_t:s0:c100' },
      { name: 'blue', vlan: 200, greKey: 0xc801, context: 'system_u:system_r:svirt_t:s0:c200' },
      { name: 'legacy', vlan: 300, greKey: null },
      { name: 'audit', vlan: 400 },
    ]);
    expect(r.file.peers).toEqual([
      { name: 'hv2', address: '192.0.2.2', labels: ['red', 'blue', 'audit'], publicKey: KEY_HV2, presharedKeyFile: join(secrets, `${PSK}.base64`) },
      {
        name: 'hv3',
        address: '192.0.2.3',
        port: 14500,
        labels: ['red', 'legacy'],
        publicKey: KEY_HV3,
        presharedKeyFile: join(secrets, `${PSK_HV1_HV3}.base64`),
        staticSas: [
          {
            labels: ['legacy'],
            algorithm: 'aes-gcm-128',
            esn: false,
            in: { spi: '0x00001002', keymat: '000102030405060708090a0b0c0d0e0f10111213' },
            out: { spi: '0x00002002', keymat: 'a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3' },
          },
        ],
      },
    ]);
    expect(r.file.policy).toEqual(['allow red -> audit']);
    expect(r.file.underlay).toEqual({ address: '192.0.2.1' });
  });

  it('gives hv3 the mirror image: its inbound SPI and KEYMAT are hv1\'s outbound ones', async () => {
    const r = await importLibvirt(fx('network-sectunnel.xml'), [], { underlay: '192.0.2.3', secretsDir: secretsDir() });
    expect(r.hostName).toBe('hv3');
    const hv1 = r.config.peers.find((p) => p.name === 'hv1')!;
    expect(hv1.staticSas.map((s) => [s.labels, s.algorithm, s.esn, s.in.spi, s.out.spi, Buffer.from(s.in.keymat).toString('hex')])).toEqual([
      [['legacy'], 'aes-gcm-128', false, 0x2002, 0x1002, 'a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3'],
    ]);
    expect(r.config.peers.map((p) => [p.name, p.labels])).toEqual([
      ['hv1', ['red', 'legacy']],
      ['hv2', ['red']],
    ]);
  });
});

describe('this host', () => {
  const opts = (o: LibvirtImportOptions) => ({ secretsDir: secretsDir(), ...o });

  it('is found by --underlay (normalised), and --host-name and --underlay must agree', async () => {
    expect((await importLibvirt(fx('network-tunnel.xml'), [], opts({ underlay: '192.0.2.2' }))).hostName).toBe('hv2');
    const e = await errorOf(() => importLibvirt(fx('network-tunnel.xml'), [], opts({ hostName: 'hv1', underlay: '192.0.2.2' })));
    expect(e.message).toBe(`${fx('network-tunnel.xml')}: network/tunnel: host "hv1" has address 192.0.2.1 in network/tunnel/peer[1], not 192.0.2.2 (--underlay)`);
  });

  it('must be a <peer> of the network', async () => {
    const e = await errorOf(() => importLibvirt(fx('network-tunnel.xml'), [], opts({ hostName: 'hv9' })));
    expect(e.message).toBe(
      `${fx('network-tunnel.xml')}: network/tunnel: host "hv9" (--host-name) is not a <peer> of network tvd-finance (peers: hv1 (192.0.2.1), hv2 (192.0.2.2), hv3 (192.0.2.3)); add <peer name='hv9' address='…'/> so that the other hosts know it too`,
    );
    const u = await errorOf(() => importLibvirt(fx('network-tunnel.xml'), [], opts({ underlay: '192.0.2.77' })));
    expect(u.message).toMatch(/no <peer> of network tvd-finance has address 192\.0\.2\.77 \(--underlay\)/);
    const bad = await errorOf(() => importLibvirt(fx('network-tunnel.xml'), [], opts({ underlay: 'hv1' })));
    expect(bad.message).toMatch(/underlay address "hv1" \(--underlay\) is not valid: expected an IPv4 or IPv6 address/);
  });

  it('defaults to the peer named like this machine, and says how to choose otherwise', async () => {
    const short = hostname().split('.')[0]!;
    const e = await errorOf(() => importLibvirt(fx('network-tunnel.xml'), [], opts({})));
    expect(e.message).toContain(`which <peer> is this host? none is named "${short}" (this machine's host name)`);
    expect(e.message).toContain('pass --host-name NAME or --underlay ADDRESS');
  });
});

describe('secrets', () => {
  const net = (secret: string) => ({
    file: 'net.xml',
    text: `<network type='tunneled'><name>n</name><tunnel type='ipsec'>
      ${secret}
      <label name='red' vlan='100'/>
      <peer name='a' address='10.0.0.1'/><peer name='b' address='10.0.0.2' publicKey='${KEY_HV2}'/>
    </tunnel></network>`,
  });

  it('<secret file=…/> names the key file itself', () => {
    const dir = tempDir('st-libvirt-');
    const file = join(dir, 'psk');
    writeFileSync(file, Buffer.alloc(32, 7).toString('base64') + '\n', { mode: 0o600 });
    const r = importLibvirtXml(net(`<secret file='${file}'/>`), [], { hostName: 'a' });
    expect(r.config.peers[0]!.presharedKeyFile).toBe(file);
    expect(r.warnings).toEqual([]);
  });

  it('a key file others may read is used, with a warning', () => {
    const dir = tempDir('st-libvirt-');
    const file = join(dir, 'psk');
    writeFileSync(file, Buffer.alloc(32, 7).toString('base64'));
    chmodSync(file, 0o644);
    const r = importLibvirtXml(net(`<secret file='${file}'/>`), [], { hostName: 'a' });
    expect(r.warnings).toEqual([`net.xml: network/tunnel/secret/@file: ${file} may be read by group or others (mode 0644); a key file should be 0600`]);
  });

  it('refuses a missing value, a defined secret without a value, a wrong length and text that is not base64 — never printing the key', async () => {
    const secrets = secretsDir();
    const e1 = await errorOf(() => importLibvirtXml(net(`<secret uuid='01234567-89ab-4def-8123-456789abcdef'/>`), [], { hostName: 'a', secretsDir: secrets }));
    expect(e1.message).toBe(
      `net.xml: network/tunnel/secret/@uuid: secret 01234567-89ab-4def-8123-456789abcdef: ${secrets}/01234567-89ab-4def-8123-456789abcdef.base64: no such file: libvirt keeps the value of secret UUID in ${secrets}/UUID.base64 (pass --secrets DIR for another folder, or use <secret file='…'/>) (line 2, column 7)`,
    );
    const e2 = await errorOf(() => importLibvirtXml(net(`<secret uuid='E5A3D9C4-7F86-412A-A03B-9C4D8E6FB023'/>`), [], { hostName: 'a', secretsDir: secrets }));
    expect(e2.message).toContain(
      'no such file: the secret is defined but has no value; set one with `virsh secret-set-value --secret e5a3d9c4-7f86-412a-a03b-9c4d8e6fb023 --base64 "$(head -c 32 /dev/urandom | base64)"`',
    );
    const e3 = await errorOf(() => importLibvirtXml(net(`<secret uuid='f6b4ead5-8097-423b-b14c-ad5e9f70c134'/>`), [], { hostName: 'a', secretsDir: secrets }));
    expect(e3.message).toBe(
      `net.xml: network/tunnel/secret/@uuid: secret f6b4ead5-8097-423b-b14c-ad5e9f70c134: ${secrets}/f6b4ead5-8097-423b-b14c-ad5e9f70c134.base64 holds 16 octets; expected 32 (the handshake's pre-shared key is 32 octets) (line 2, column 7)`,
    );
    const dir = tempDir('st-libvirt-');
    const raw = join(dir, 'raw');
    writeFileSync(raw, 'correct horse battery staple!', { mode: 0o600 });
    const e4 = await errorOf(() => importLibvirtXml(net(`<secret file='${raw}'/>`), [], { hostName: 'a' }));
    expect(e4.message).toBe(`net.xml: network/tunnel/secret/@file: ${raw} does not hold base64 text (libvirt's .base64 format, as \`virsh secret-get-value\` prints it) (line 2, column 7)`);
    expect(e4.message).not.toContain('horse');
  });

  it('a static KEYMAT must have the length of the SA\'s algorithm', async () => {
    const secrets = secretsDir();
    const text = readFileSync(fx('network-sectunnel.xml'), 'utf8').replace("algorithm='aes-gcm-128' esn='no'", "algorithm='chacha20-poly1305' esn='no'");
    const e = await errorOf(() => importLibvirtXml({ file: 'st.xml', text }, [], { hostName: 'hv1', secretsDir: secrets }));
    expect(e.problems.map((p) => [p.path, p.message])).toEqual([
      ['sectunnel/sa[4]/inbound[1]/secret/@uuid', `secret c3e1b7a2-5d64-4f08-8e19-7a2b6c4d9e01: ${secrets}/c3e1b7a2-5d64-4f08-8e19-7a2b6c4d9e01.base64 holds 20 octets; expected 36 (the KEYMAT of chacha20-poly1305: key and 4-octet salt)`],
      ['sectunnel/sa[4]/inbound[2]/secret/@uuid', `secret d4f2c8b3-6e75-4019-9f2a-8b3c7d5eaf12: ${secrets}/d4f2c8b3-6e75-4019-9f2a-8b3c7d5eaf12.base64 holds 20 octets; expected 36 (the KEYMAT of chacha20-poly1305: key and 4-octet salt)`],
    ]);
  });
});

describe('network XML errors name the element path and the attribute', () => {
  const tunnel = (inner: string, attrs = "type='ipsec'") => ({ file: 'tvd.xml', text: `<network type='tunneled'>\n<name>n</name>\n<tunnel ${attrs}>\n${inner}\n</tunnel>\n</network>\n` });
  const peers = `<peer name='a' address='10.0.0.1'/>\n<peer name='b' address='10.0.0.2' publicKey='${KEY_HV2}'/>`;
  const err = (src: { file: string; text: string }, o: LibvirtImportOptions = { hostName: 'a' }) => errorOf(() => importLibvirtXml(src, [], o));

  it('a bad attribute of the second peer', async () => {
    const e = await err(tunnel(`<label name='red' vlan='100'/>\n<peer name='a' address='10.0.0.1'/>\n<peer name='b' address='10.0.0.2' publicKey='not-a-key'/>`));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toBe(
      'tvd.xml: network/tunnel/peer[2]/@publicKey: "not-a-key" is not valid: expected an X25519 public key: 32 octets in base64 (44 characters ending in "=", as `sectunnel pubkey` prints) (line 6, column 35)',
    );
  });

  it('every problem of the file at once, in file order', async () => {
    const e = await err(
      tunnel(
        [
          "<lable name='x' vlan='1'/>",
          "<label name='red' vlna='100'/>",
          "<label name='blue' vlan='5000'/>",
          "<label name='blue' vlan='200'/>",
          "<label name='green' vlan='300' greKey='76800'/>",
          "<label name='teal' vlan='300'/>",
          "<peer name='a' address='10.0.0.1' labels='red bleu'/>",
          "<peer name='b' address='10.0.0.256'/>",
          "<policy><allow from='red' to='purple'/><deny from='red' to='blue'/></policy>",
        ].join('\n'),
        "type='ipsec' algorithm='aes-128-cbc'",
      ),
    );
    expect(e.problems.map((p) => `${p.path}: ${p.message} @${p.line}`)).toEqual([
      'network/tunnel/@algorithm: "aes-128-cbc" is not valid: expected one of aes-gcm-128, aes-gcm-192, aes-gcm-256, chacha20-poly1305 @3',
      'network/tunnel/lable: unknown element <lable>; did you mean "label"? (known elements here: <secret>, <label>, <peer>, <policy>) @4',
      'network/tunnel/label[1]/@vlan: missing: expected an integer in 1..4094 (an 802.1Q VLAN id) @5',
      'network/tunnel/label[1]/@vlna: unknown attribute; did you mean "vlan"? (known attributes: name, vlan, greKey, context) @5',
      'network/tunnel/label[2]/@vlan: "5000" is not valid: expected an integer in 1..4094 (an 802.1Q VLAN id) @6',
      'network/tunnel/label[5]: network/tunnel/label[4] already uses GRE key 76800 (the default for this VLAN: vlan << 8) with VLAN 300; each (GRE key, VLAN) pair names one label, so give one of them another greKey or vlan @9',
      'network/tunnel/peer[1]/@labels: no label is named "bleu"; did you mean "blue"? (labels: red, blue, green, teal) @10',
      'network/tunnel/peer[2]/@address: "10.0.0.256" is not valid: expected an IPv4 or IPv6 address of one host (not unspecified, broadcast or multicast) @11',
      'network/tunnel/policy/allow/@to: no label is named "purple" (labels: red, blue, green, teal) @12',
      'network/tunnel/policy/deny: unknown element <deny> (known elements here: <allow>) @12',
    ]);
  });

  it('the root and its type', async () => {
    expect((await err({ file: 'x.xml', text: "<network><name>n</name></network>" })).message).toBe(
      "x.xml: network/@type: missing: expected type='tunneled'; libvirt's own networks (NAT, routed, bridged) carry no labels: a sectunnel network is type='tunneled' (line 1, column 1)",
    );
    expect((await err({ file: 'x.xml', text: "<domain type='kvm'/>" })).message).toBe(
      "x.xml: domain: the root element is <domain>; expected <network type='tunneled'> or <sectunnel type='ipsec'> (docs/libvirt.md) (line 1, column 1)",
    );
    expect((await err({ file: 'x.xml', text: "<network type='tunneled'><name>n</name><tunnel type='gre'><label name='r' vlan='1'/></tunnel></network>" })).message).toBe(
      'x.xml: network/tunnel/@type: "gre" is not valid: expected "ipsec" (line 1, column 48)',
    );
  });

  it('a remote peer without a public key, a second peer with the same name or address', async () => {
    const e = await err(tunnel(`<label name='red' vlan='100'/>\n<peer name='a' address='10.0.0.1'/>\n<peer name='b' address='10.0.0.2'/>`));
    expect(e.message).toBe(
      'tvd.xml: network/tunnel/peer[2]/@publicKey: missing: expected the X25519 public key of b (as `sectunnel pubkey` prints it on that host): the handshake authenticates it (line 6, column 1)',
    );
    const d = await err(tunnel(`<label name='red' vlan='100'/>\n${peers}\n<peer name='b' address='10.0.0.3'/>\n<peer address='10.0.0.1'/>`));
    expect(d.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'network/tunnel/peer[3]/@name: network/tunnel/peer[2] is already named "b"; peer names must be unique',
      'network/tunnel/peer[4]/@address: network/tunnel/peer[1] already has address 10.0.0.1',
    ]);
  });

  it('peers of both address families, two labels with one context', async () => {
    const e = await err(
      tunnel(
        `<label name='red' vlan='100' context='system_u:system_r:svirt_t:s0:c1'/>\n<label name='blue' vlan='200' context='system_u:system_r:svirt_t:s0:c1'/>\n<peer name='a' address='10.0.0.1'/>\n<peer name='b' address='2001:db8::2' publicKey='${KEY_HV2}'/>`,
      ),
    );
    expect(e.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'network/tunnel/label[2]/@context: network/tunnel/label[1] already has context "system_u:system_r:svirt_t:s0:c1"; a <seclabel> context must name one label',
      'network/tunnel/peer[2]/@address: "2001:db8::2" is not valid: expected an IPv4 address like network/tunnel/peer[1] (10.0.0.1); all hosts of a network use one address family',
    ]);
  });

  const st = (inner: string) => ({
    file: 'st.xml',
    text: `<sectunnel type='ipsec'>\n<name>n</name>\n<label name='red' vlan='100'/>\n<label name='blue' vlan='200'/>\n<label name='blue2' vlan='200' greKey='7'/>\n<peer name='a' address='10.0.0.1' publicKey='${KEY_HV1}'/>\n<peer name='b' address='10.0.0.2' publicKey='${KEY_HV2}'/>\n${inner}\n</sectunnel>\n`,
  });

  it('SAs and SPs: references, selectors, label sets', async () => {
    const e = await err(
      st(
        [
          "<sa id='ab' peers='a b'/>",
          "<sa id='ab2' peers='a b' labels='red' esn='no' algorithm='aes-gcm-128'/>",
          "<sa id='aa' peers='a a'/>",
          "<sa id='ac' peers='a c'/>",
          "<sp sa='abb' labels='red'/>",
          "<sp sa='ab' vlans='200'/>",
          "<sp sa='ab' vlans='999'/>",
          "<sp sa='ab2'/>",
          "<sp sa='ab' labels='red'/>",
        ].join('\n'),
      ),
    );
    expect(e.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'sectunnel/sa[2]: label "red" between a and b is already carried by SA "ab"; a label travels through one SA pair per pair of hosts',
      'sectunnel/sa[2]/@esn: "no" is not valid: esn applies to static SAs (with <inbound> keys) only; SAs of the handshake always use extended sequence numbers',
      'sectunnel/sa[2]/@algorithm: "aes-gcm-128" is not valid: the handshake uses the network\'s algorithm: set algorithm=\'aes-gcm-128\' on <sectunnel>; algorithm on an <sa> applies to static SAs (with <inbound> keys) only',
      'sectunnel/sa[3]/@peers: "a a" is not valid: expected two different peers',
      'sectunnel/sa[4]/@peers: "a c" is not valid: "c": expected the name or address of a <peer> (peers: a, b)',
      'sectunnel/sp[1]/@sa: "abb" is not valid: expected the id of an <sa>; did you mean "ab"? (SAs: ab, ab2)',
      'sectunnel/sp[2]/@vlans: "200" is not valid: VLAN 200 is the VLAN of several labels (blue, blue2); select them by labels=\'…\'',
      'sectunnel/sp[3]/@vlans: "999" is not valid: VLAN 999 is not the VLAN of any label (VLANs: 100, 200)',
      "sectunnel/sp[4]: missing: expected a selector: labels='red blue' or vlans='100 200'",
    ]);
  });

  it('an SA with no label, a static SA with one <inbound>', async () => {
    const dir = tempDir('st-libvirt-');
    const k = join(dir, 'k');
    writeFileSync(k, Buffer.alloc(36).toString('base64'), { mode: 0o600 });
    const e = await err(st(`<sa id='ab' peers='a b'/>\n<sa id='s' peers='a b' labels='blue'><inbound peer='a' spi='0x1000'><secret file='${k}'/></inbound></sa>`));
    expect(e.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'sectunnel/sa[1]: SA "ab" carries no label: give it labels=\'…\' or select labels for it with <sp sa=\'ab\' labels=\'…\'/>',
      'sectunnel/sa[2]/inbound: expected two <inbound> elements (one per peer: the SPI it receives on and its KEYMAT), found 1',
    ]);
  });

  it('a DOCTYPE is refused before anything is read (no external entity)', async () => {
    const e = await errorOf(() => importLibvirt(fx('network-doctype.xml'), []));
    expect(e.code).toBe('CONFIG_SYNTAX');
    expect(e.message).toBe(`${fx('network-doctype.xml')}:2:1: syntax error: DOCTYPE is not accepted: no DTDs, entity declarations or external entities (libvirt XML never needs one)`);
  });
});

describe('domain XML', () => {
  const net = () => fx('network-tunnel.xml');
  const run = (domains: string[], o: LibvirtImportOptions = {}) => importLibvirt(net(), domains.map(fx), { hostName: 'hv1', secretsDir: secretsDir(), ...o });

  it('an interface without a label is an error naming the domain and the interface: no default label', async () => {
    const e = await errorOf(() => run(['domain-no-seclabel.xml']));
    expect(e.message).toBe(
      `${fx('domain-no-seclabel.xml')}: domain/devices/interface: domain "scratch", interface vnet12 52:54:00:de:ad:01: no label: the domain has no <seclabel> with a <label> (its <seclabel>s have no SELinux <label>; model='dac' user:group labels name no label) and no <sectunnel:label xmlns:sectunnel='https://sectunnel.dev/xmlns/1'> in its <metadata>; sectunnel has no default label (default deny) (line 10, column 5)`,
    );
  });

  it('an unknown label is an error naming it and the known ones', async () => {
    const e = await errorOf(() => run(['domain-unknown-label.xml']));
    expect(e.message).toBe(`${fx('domain-unknown-label.xml')}: domain/metadata/st:label: domain "hr1": no label is named "purple" (labels: red, blue, audit) (line 5, column 5)`);
  });

  it('a dynamic sVirt context names no label, and the message says why', async () => {
    const e = await errorOf(() => run(['domain-dynamic-seclabel.xml']));
    expect(e.message).toBe(
      `${fx('domain-dynamic-seclabel.xml')}: domain/seclabel/label: domain "batch7": no label has context "system_u:system_r:svirt_t:s0:c45,c901" (contexts: red = system_u:system_r:svirt_t:s0:c100; blue = system_u:system_r:svirt_t:s0:c200); this seclabel is type='dynamic': libvirt picks its categories at random at each start, so no label table can name it — give the domain a type='static' seclabel or a sectunnel label in <metadata> (line 13, column 5)`,
    );
  });

  it('an interface without a target dev (an inactive definition) is an error', async () => {
    const e = await errorOf(() => run(['domain-inactive.xml']));
    expect(e.message).toBe(
      `${fx('domain-inactive.xml')}: domain/devices/interface: domain "web2", interface 52:54:00:6b:3c:59: no <target dev='…'/>: libvirt names the host side (vnetN) when it starts the domain; use the live XML of the running domain (virsh dumpxml web2) (line 5, column 5)`,
    );
  });

  it('malformed XML: an unclosed tag and a bad entity, each with line and column — every file reported', async () => {
    const e = await errorOf(() => run(['domain-unclosed.xml', 'domain-bad-entity.xml']));
    expect(e).toBeInstanceOf(LibvirtFilesError);
    expect(e.message).toBe(
      [
        `${fx('domain-unclosed.xml')}:8:3: syntax error: end tag </devices> does not match the start tag <interface> (opened at line 4, column 5); expected </interface>`,
        `${fx('domain-bad-entity.xml')}:3:38: syntax error: unknown entity &nbsp;: only &lt; &gt; &amp; &apos; &quot; and character references like &#38; are accepted (no DTD entities)`,
      ].join('\n'),
    );
  });

  it('label problems of several domain files are reported together', async () => {
    const e = await errorOf(() => run(['domain-no-seclabel.xml', 'domain-web1.xml', 'domain-unknown-label.xml']));
    expect((e as LibvirtFilesError).errors.map((x) => x.file)).toEqual([fx('domain-no-seclabel.xml'), fx('domain-unknown-label.xml')]);
    expect(e.message.split('\n')).toHaveLength(2);
  });

  const dom = (name: string, body: string) => ({ file: `${name}.xml`, text: `<domain type='kvm'><name>${name}</name>${body}</domain>` });
  const iface = (mac: string, dev: string, extra = '') => `<interface type='network'><mac address='${mac}'/><source network='tvd-finance'/><target dev='${dev}'/><port isolated='yes'/>${extra}</interface>`;
  const meta = (inner: string) => `<metadata><st:labels xmlns:st='https://sectunnel.dev/xmlns/1'>${inner}</st:labels></metadata>`;
  const netSource = () => ({ file: 'net.xml', text: readFileSync(net(), 'utf8') });
  const xmlErr = (domains: { file: string; text: string }[]) => errorOf(() => importLibvirtXml(netSource(), domains, { hostName: 'hv1', secretsDir: secretsDir() }));

  it('per-interface metadata by MAC, target dev or alias; per-interface beats domain-wide beats seclabel', () => {
    const r = importLibvirtXml(
      netSource(),
      [
        dom(
          'multi',
          meta("<st:label>blue</st:label><st:label interface='vnet21'>audit</st:label><st:label interface='net2'>red</st:label>") +
            `<devices>${iface('52:54:00:00:00:01', 'vnet20')}${iface('52:54:00:00:00:02', 'vnet21')}${iface('52:54:00:00:00:03', 'vnet22', "<alias name='net2'/>")}</devices>` +
            "<seclabel type='static' model='selinux'><label>system_u:system_r:svirt_t:s0:c100</label></seclabel>",
        ),
      ],
      { hostName: 'hv1', secretsDir: secretsDir(), port: 'tap' },
    );
    expect(r.file.domains).toEqual([
      { name: 'multi.0', label: 'blue', macs: ['52:54:00:00:00:01'], tap: { name: 'vnet20' } },
      { name: 'multi.1', label: 'audit', macs: ['52:54:00:00:00:02'], tap: { name: 'vnet21' } },
      { name: 'multi.2', label: 'red', macs: ['52:54:00:00:00:03'], tap: { name: 'vnet22' } },
    ]);
    expect(r.config.domains.map((d) => d.tap)).toEqual([
      { name: 'vnet20', create: false },
      { name: 'vnet21', create: false },
      { name: 'vnet22', create: false },
    ]);
  });

  it('metadata errors: an interface it does not name, two labels for one interface, two domain-wide labels, unknown elements', async () => {
    const e = await xmlErr([
      dom(
        'm',
        meta(
          "<st:label interface='52:54:00:99:99:99'>red</st:label><st:label interface='vnet30'>red</st:label><st:label interface='vnet30'>blue</st:label><st:label>red</st:label><st:label>blue</st:label><st:lable>red</st:lable><st:label colour='x'>red</st:label>",
        ) + `<devices>${iface('52:54:00:00:00:30', 'vnet30')}</devices>`,
      ),
    ]);
    expect(e.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'domain/metadata/st:labels/st:label[1]/@interface: "52:54:00:99:99:99" is not valid: it names no interface of domain "m"; expected a MAC address, target dev or alias name (interfaces: vnet30 52:54:00:00:00:30)',
      'domain/metadata/st:labels/st:label[3]: domain "m": interface vnet30 52:54:00:00:00:30 already has a label at domain/metadata/st:labels/st:label[2]',
      'domain/metadata/st:labels/st:label[5]: domain "m": a second domain-wide label (the first is at domain/metadata/st:labels/st:label[4]); give per-interface labels an interface=\'MAC\' attribute',
      'domain/metadata/st:labels/st:lable: unknown element <st:lable>; did you mean "label"? (known elements here: <label>)',
      'domain/metadata/st:labels/st:label[6]: domain "m": a second domain-wide label (the first is at domain/metadata/st:labels/st:label[4]); give per-interface labels an interface=\'MAC\' attribute',
      'domain/metadata/st:labels/st:label[6]/@colour: unknown attribute (known attributes: interface)',
    ]);
  });

  it('other applications\' metadata is ignored; foreign elements in our namespace are not', async () => {
    const ok = importLibvirtXml(
      netSource(),
      [dom('o', `<metadata><app:label xmlns:app='urn:other'>anything</app:label><st:label xmlns:st='https://sectunnel.dev/xmlns/1'>red</st:label></metadata><devices>${iface('52:54:00:00:00:40', 'vnet40')}</devices>`)],
      { hostName: 'hv1', secretsDir: secretsDir() },
    );
    expect(ok.config.domains.map((d) => [d.name, d.label])).toEqual([['o', 'red']]);
    const e = await xmlErr([dom('o', `<metadata><st:colour xmlns:st='https://sectunnel.dev/xmlns/1'>red</st:colour></metadata><devices>${iface('52:54:00:00:00:40', 'vnet40')}</devices>`)]);
    expect(e.problems[0]!.message).toBe('unknown element <st:colour> in the sectunnel namespace (known elements: <label>, <labels>)');
  });

  it('the same domain, TAP or MAC in two files is an error naming both', async () => {
    const web = readFileSync(fx('domain-web1.xml'), 'utf8');
    const twice = await xmlErr([
      { file: 'a.xml', text: web },
      { file: 'b.xml', text: web },
    ]);
    expect(twice.message).toBe('b.xml: domain: a.xml is already the domain named "web1"; give each domain once');
    const sameMac = await xmlErr([
      { file: 'a.xml', text: web },
      dom('other', `<metadata><st:label xmlns:st='https://sectunnel.dev/xmlns/1'>red</st:label></metadata><devices>${iface('52:54:00:6b:3c:58', 'vnet50')}</devices>`),
    ]);
    expect(sameMac.message).toBe('other.xml: domain/devices/interface: domain "other": MAC 52:54:00:6b:3c:58 is already used by domain "web1" (a.xml: domain/devices/interface[1]); each guest NIC needs its own');
  });

  it('names that are not sectunnel names are made into ones', () => {
    const r = importLibvirtXml(netSource(), [dom('my vm (test)', `<metadata><st:label xmlns:st='https://sectunnel.dev/xmlns/1'>red</st:label></metadata><devices>${iface('52:54:00:00:00:60', 'vnet60')}</devices>`)], {
      hostName: 'hv1',
      secretsDir: secretsDir(),
    });
    expect(r.config.domains.map((d) => d.name)).toEqual(['my-vm-test-']);
  });
});

describe('round trip: the generated config is what loadDaemonConfig reads', () => {
  for (const [net, host] of [
    ['network-tunnel.xml', 'hv1'],
    ['network-tunnel.xml', 'hv2'],
    ['network-sectunnel.xml', 'hv1'],
    ['network-sectunnel.xml', 'hv3'],
  ] as const) {
    it(`${net} as ${host}, through JSON and YAML files`, async () => {
      const secrets = secretsDir();
      const r = await importLibvirt(fx(net), DOMAINS, { hostName: host, secretsDir: secrets });
      const dir = tempDir('st-libvirt-rt-');
      const { stringify } = await import('yaml');
      writeFileSync(join(dir, 'c.json'), JSON.stringify(r.file, null, 2));
      writeFileSync(join(dir, 'c.yaml'), stringify(r.file, { version: '1.2', lineWidth: 0 }));
      expect(await loadDaemonConfig(join(dir, 'c.json'))).toEqual(r.config);
      expect(await loadDaemonConfig(join(dir, 'c.yaml'))).toEqual(r.config);
      expect(await loadLibvirtConfig(fx(net), DOMAINS, { hostName: host, secretsDir: secrets })).toEqual(r.config);
      // What a user checks: the labels, the guests and the peers.
      expect(r.config.labels.map((l) => l.name)).toEqual(net === 'network-tunnel.xml' ? ['red', 'blue', 'audit'] : ['red', 'blue', 'legacy', 'audit']);
      expect(r.config.domains.map((d) => `${d.name}:${d.label}:${d.attach?.interface}:${d.macs.join(',')}`)).toEqual(DOMAIN_ENTRIES.map((d) => `${d.name}:${d.label}:${d.attach.interface}:${d.macs.join(',')}`));
      expect(r.config.host.name).toBe(host);
      expect(r.config.peers.map((p) => p.name)).not.toContain(host);
      for (const p of r.config.peers) expect(p.publicKey).toHaveLength(32);
    });
  }
});

describe('docs/libvirt.md: the examples import, to the configs shown', () => {
  const md = readFileSync(resolve(__dirname, '..', '..', 'docs', 'libvirt.md'), 'utf8');
  const blocks = (lang: string) => [...md.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
  const xml = blocks('xml');
  const yamls = blocks('yaml');
  const pick = (list: string[], test: (b: string) => boolean) => {
    const found = list.filter(test);
    expect(found).toHaveLength(1);
    return found[0]!;
  };
  const tunnel = pick(xml, (b) => b.includes("<network type='tunneled'>"));
  const sectunnel = pick(xml, (b) => b.includes("<sectunnel type='ipsec'"));
  const web1 = pick(xml, (b) => b.includes('<name>web1</name>'));
  const db1 = pick(xml, (b) => b.includes('<name>db1</name>'));
  /** The config file with the test's secrets folder written as the default one, as the docs show it. */
  const asDocs = (file: unknown, secrets: string) => JSON.parse(JSON.stringify(file).replaceAll(secrets, '/etc/libvirt/secrets'));

  it('the tunnel form, with the two domain examples and log1', async () => {
    const { parse } = await import('yaml');
    const secrets = secretsDir();
    const r = importLibvirtXml(
      { file: 'tvd-finance.xml', text: tunnel },
      [
        { file: 'web1.xml', text: web1 },
        { file: 'db1.xml', text: db1 },
        { file: 'log1.xml', text: readFileSync(fx('domain-log1.xml'), 'utf8') },
      ],
      { hostName: 'hv1', secretsDir: secrets },
    );
    expect(asDocs(r.file, secrets)).toEqual(parse(pick(yamls, (b) => b.startsWith('host:'))));
  });

  it('the sectunnel form, as hv1', async () => {
    const { parse } = await import('yaml');
    const secrets = secretsDir();
    const r = importLibvirtXml({ file: 'tvd-finance.xml', text: sectunnel }, [], { hostName: 'hv1', secretsDir: secrets });
    expect({ peers: asDocs(r.file.peers, secrets) }).toEqual(parse(pick(yamls, (b) => b.startsWith('peers:'))));
  });

  it('both metadata snippets', () => {
    const snippets = xml.filter((b) => b.startsWith('<metadata>'));
    expect(snippets).toHaveLength(2);
    const labels = snippets.map((m) => {
      const r = importLibvirtXml(
        { file: 'tvd.xml', text: tunnel },
        [{ file: 'd.xml', text: `<domain><name>d</name>${m}<devices><interface type='ethernet'><mac address='52:54:00:a1:b2:c4'/><target dev='vnet1'/></interface></devices></domain>` }],
        { hostName: 'hv1', secretsDir: secretsDir() },
      );
      return r.config.domains.map((d) => d.label);
    });
    expect(labels).toEqual([['red'], ['audit']]);
  });
});

describe('metadata stored by virsh', () => {
  it('<label>s without a namespace inside our <labels> (virsh metadata --set namespaces only the element it stores)', () => {
    const r = importLibvirtXml(
      { file: 'tvd.xml', text: readFileSync(fx('network-tunnel.xml'), 'utf8') },
      [
        {
          file: 'd.xml',
          text: `<domain><name>d</name><metadata><sectunnel:labels xmlns:sectunnel="https://sectunnel.dev/xmlns/1"><label>blue</label><label interface="vnet2">audit</label></sectunnel:labels></metadata>
            <devices><interface type='ethernet'><mac address='52:54:00:00:00:71'/><target dev='vnet1'/></interface><interface type='ethernet'><mac address='52:54:00:00:00:72'/><target dev='vnet2'/></interface></devices></domain>`,
        },
      ],
      { hostName: 'hv1', secretsDir: secretsDir() },
    );
    expect(r.config.domains.map((d) => [d.name, d.label])).toEqual([
      ['d.0', 'blue'],
      ['d.1', 'audit'],
    ]);
  });
});
