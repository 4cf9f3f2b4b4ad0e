// The daemon's per-host config (docs/config.md): fixtures, defaults, every
// class of field and cross-field error, and the examples in the docs.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEADROOM_BYTES, TAILROOM_BYTES } from '../../src/buf/constants.js';
import { AEAD_ALGORITHMS, aeadKeymatBytes } from '../../src/crypto/aead.js';
import { ConfigError, editDistance, suggest } from '../../src/control/config-errors.js';
import { daemonConfigSchema, loadDaemonConfig, loadDaemonConfigSync, MIN_SLOT_BYTES, type DaemonConfig } from '../../src/control/config.js';
import { parseConfigText, validateConfig } from '../../src/control/load.js';
import { replayConfigSchema } from '../../src/control/replay-config.js';

const ROOT = resolve(__dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'config');
const FILE = '/etc/sectunnel/host.json';

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
}

const K36A = '404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263';
const K36B = '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3';

/** A valid daemon config object; tests break one thing at a time. */
function base(): Record<string, any> {
  return {
    host: { name: 'hv1' },
    underlay: { address: '192.0.2.1' },
    labels: [
      { name: 'red', vlan: 100 },
      { name: 'blue', vlan: 200 },
    ],
    domains: [{ name: 'web1', label: 'red', macs: ['52:54:00:00:01:01'], tap: { name: 'vnet0' } }],
    peers: [
      {
        name: 'hv2',
        address: '192.0.2.2',
        labels: ['red', 'blue'],
        staticSas: [{ labels: ['red'], in: { spi: '0x00001001', keymat: K36A }, out: { spi: '0x00002001', keymat: K36B } }],
      },
    ],
  };
}

function errorOf(data: unknown): ConfigError {
  try {
    parseConfigText(JSON.stringify(data, null, 2), FILE, daemonConfigSchema);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const DEFAULTS = {
  crypto: { algorithm: 'aes-gcm-256', backend: 'auto' },
  handshake: { rekeyAfterSeconds: 600, graceSeconds: 30 },
  replayWindowPackets: 4096,
  pool: { packets: 4096, slotBytes: 9160 },
  domains: [],
  peers: [],
  policy: [],
  fdb: { ageSeconds: 300, maxEntriesPerLabel: 4096 },
  audit: { ratePerSecond: 100, burst: 200 },
  metrics: {},
  state: { dir: '/var/lib/sectunnel' },
  log: { level: 'info' },
} as const;

const MINIMAL: DaemonConfig = {
  ...DEFAULTS,
  host: { name: 'hv1' },
  underlay: { address: '192.0.2.1', family: 4, port: 4500, transport: 'udp', mtu: 1500 },
  labels: [{ name: 'red', vlan: 100 }],
  control: { socket: '/run/sectunnel/hv1.sock' },
};

const FULL: DaemonConfig = {
  host: { name: 'hv1' },
  underlay: { address: '192.0.2.1', family: 4, port: 4500, transport: 'udp', mtu: 9000 },
  crypto: { algorithm: 'aes-gcm-256', backend: 'auto' },
  replayWindowPackets: 8192,
  pool: { packets: 8192, slotBytes: 1656 },
  labels: [
    { name: 'red', vlan: 100, context: 'system_u:system_r:svirt_t:s0:c100' },
    { name: 'blue', vlan: 200, greKey: 51201 },
    { name: 'legacy', vlan: 300, greKey: null },
    { name: 'audit', vlan: 400 },
  ],
  domains: [
    { name: 'web1', label: 'red', macs: ['52:54:00:00:01:01'], tap: { name: 'vnet0', create: false } },
    { name: 'db1', label: 'blue', macs: ['52:54:00:00:02:01', '52:54:00:00:02:02'], tap: { name: 'st-db1', create: true, mtu: 1500 } },
    { name: 'logger', label: 'audit', macs: ['52:54:00:00:04:01'], attach: { interface: 'vnet7' } },
  ],
  peers: [
    {
      name: 'hv2',
      address: '192.0.2.2',
      port: 4500,
      labels: ['red', 'blue', 'audit'],
      publicKey: Uint8Array.from({ length: 32 }, (_, i) => i),
      presharedKeyFile: '/etc/sectunnel/psk/hv2',
      staticSas: [],
    },
    {
      name: 'hv3',
      address: '192.0.2.3',
      port: 14500,
      labels: ['red', 'legacy'],
      publicKey: Uint8Array.from({ length: 32 }, (_, i) => 32 + i),
      staticSas: [
        { labels: ['red'], algorithm: 'aes-gcm-256', esn: true, in: { spi: 0x1001, keymat: hex(K36A) }, out: { spi: 0x2001, keymat: hex(K36B) } },
        {
          labels: ['legacy'],
          algorithm: 'aes-gcm-128',
          esn: false,
          in: { spi: 4098, keymat: hex('000102030405060708090a0b0c0d0e0f10111213') },
          out: { spi: 8194, keymat: hex('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3') },
        },
      ],
    },
  ],
  policy: [
    { from: 'red', to: 'audit' },
    { from: 'blue', to: 'audit' },
  ],
  fdb: { ageSeconds: 600, maxEntriesPerLabel: 8192 },
  handshake: { rekeyAfterSeconds: 600, graceSeconds: 30 },
  audit: { path: '/var/log/sectunnel/audit.jsonl', ratePerSecond: 50, burst: 100 },
  metrics: { listen: { address: '::1', port: 9273 } },
  control: { socket: '/run/sectunnel/hv1-ctl.sock' },
  state: { dir: '/srv/sectunnel/state' },
  log: { level: 'debug' },
};

describe('daemon config fixtures', () => {
  for (const ext of ['json', 'yaml']) {
    it(`host-minimal.${ext} parses with every default resolved`, async () => {
      expect(await loadDaemonConfig(join(FIXTURES, `host-minimal.${ext}`))).toEqual(MINIMAL);
    });
    it(`host-full.${ext} parses to the expected object`, async () => {
      expect(await loadDaemonConfig(join(FIXTURES, `host-full.${ext}`))).toEqual(FULL);
    });
  }

  it('loadDaemonConfigSync agrees with loadDaemonConfig', async () => {
    const path = join(FIXTURES, 'host-full.yaml');
    expect(loadDaemonConfigSync(path)).toEqual(await loadDaemonConfig(path));
  });
});

describe('docs/config.md examples load', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'config.md'), 'utf8');
  const blocks = [...doc.matchAll(/```(yaml|json)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, text: m[2]! }));

  it('the complete daemon example validates and uses every section', () => {
    const cfg = parseConfigText(blocks[0]!.text, 'docs/config.md (daemon)', daemonConfigSchema, 'yaml');
    expect(Object.keys(cfg).sort()).toEqual(Object.keys(FULL).sort());
    expect(cfg.domains.map((d) => d.name)).toEqual(['web1', 'db1', 'logger']);
    expect(cfg.peers[1]!.staticSas[0]!.in.spi).toBe(0x1002);
  });

  it('the smallest daemon example validates', () => {
    expect(parseConfigText(blocks[1]!.text, 'docs/config.md (minimal)', daemonConfigSchema, 'yaml')).toEqual(MINIMAL);
  });

  it('the complete REPLAY example validates', () => {
    const json = blocks.find((b) => b.lang === 'json')!;
    const cfg = parseConfigText(json.text, 'docs/config.md (replay)', replayConfigSchema, 'json');
    expect(cfg.sas.map((s) => s.spi)).toEqual([0x1001, 0x2001]);
  });
});

describe('defaults that depend on other fields', () => {
  it('a peer without a port takes underlay.port', () => {
    const d = base();
    d.underlay.port = 14500;
    expect(validateConfig(d, daemonConfigSchema, FILE).peers[0]!.port).toBe(14500);
  });

  it('a static SA without an algorithm takes crypto.algorithm, and its KEYMAT length follows', () => {
    const d = base();
    d.crypto = { algorithm: 'aes-gcm-128' };
    d.peers[0].staticSas[0].in.keymat = '00'.repeat(20);
    d.peers[0].staticSas[0].out.keymat = '11'.repeat(20);
    expect(validateConfig(d, daemonConfigSchema, FILE).peers[0]!.staticSas[0]!.algorithm).toBe('aes-gcm-128');
  });

  it('the control socket is named after the host', () => {
    const d = base();
    d.host.name = 'rack7-hv12';
    expect(validateConfig(d, daemonConfigSchema, FILE).control.socket).toBe('/run/sectunnel/rack7-hv12.sock');
  });

  it('tap.offload is kept when given (and absent otherwise: the daemon then decides by tap.create)', () => {
    const d = base();
    d.domains[0].tap.offload = false;
    const cfg = validateConfig(d, daemonConfigSchema, FILE);
    expect(cfg.domains[0]!.tap).toEqual({ name: 'vnet0', create: false, offload: false });
    expect(validateConfig(base(), daemonConfigSchema, FILE).domains[0]!.tap).not.toHaveProperty('offload');
  });

  it('an IPv6 underlay is family 6, normalised', () => {
    const d = base();
    d.underlay.address = '2001:DB8:0:0::1';
    d.peers[0].address = '2001:db8::2';
    const cfg = validateConfig(d, daemonConfigSchema, FILE);
    expect(cfg.underlay).toMatchObject({ address: '2001:db8::1', family: 6 });
  });
});

describe('daemon field errors name the file, the field and the value', () => {
  const cases: [string, (d: Record<string, any>) => void, string][] = [
    ['port 0', (d) => (d.underlay.port = 0), `${FILE}: underlay.port: 0 is not valid: expected an integer in 1..65535`],
    ['port 65536', (d) => (d.underlay.port = 65536), `${FILE}: underlay.port: 65536 is not valid: expected an integer in 1..65535`],
    ['peer port as string', (d) => (d.peers[0].port = '4500'), `${FILE}: peers[0].port: "4500" is not valid: expected an integer in 1..65535`],
    ['transport', (d) => (d.underlay.transport = 'tcp'), `${FILE}: underlay.transport: "tcp" is not valid: expected one of "udp", "esp"`],
    ['underlay unspecified', (d) => (d.underlay.address = '0.0.0.0'), `${FILE}: underlay.address: "0.0.0.0" is not valid: expected an IPv4 or IPv6 address of one host`],
    ['underlay MTU too small', (d) => (d.underlay.mtu = 500), `${FILE}: underlay.mtu: 500 is not valid: expected an integer in 576..65535`],
    ['IPv6 underlay MTU under 1280', (d) => {
      d.underlay = { address: '2001:db8::1', mtu: 1000 };
      d.peers = [];
    }, `${FILE}: underlay.mtu: 1000 is not valid: expected at least 1280 with an IPv6 underlay`],
    ['crypto algorithm', (d) => (d.crypto = { algorithm: 'aes-128-gcm' }), `${FILE}: crypto.algorithm: "aes-128-gcm" is not valid: expected one of "aes-gcm-128", "aes-gcm-192", "aes-gcm-256", "chacha20-poly1305"`],
    ['crypto backend', (d) => (d.crypto = { backend: 'openssl' }), `${FILE}: crypto.backend: "openssl" is not valid: expected one of "auto", "native", "node", "noble"`],
    ['replay window', (d) => (d.replayWindowPackets = 1000), `${FILE}: replayWindowPackets: 1000 is not valid: expected an integer in 64..65536 that is a multiple of 32`],
    ['pool packets', (d) => (d.pool = { packets: 10 }), `${FILE}: pool.packets: 10 is not valid: expected an integer in 64..1048576`],
    ['slot too small', (d) => (d.pool = { slotBytes: 1024 }), `${FILE}: pool.slotBytes: 1024 is not valid: expected an integer in ${MIN_SLOT_BYTES}..131072 that is a multiple of 8`],
    ['slot not a multiple of 8', (d) => (d.pool = { slotBytes: 2001 }), `${FILE}: pool.slotBytes: 2001 is not valid: expected an integer in ${MIN_SLOT_BYTES}..131072 that is a multiple of 8`],
    ['TAP MTU larger than a slot', (d) => {
      d.pool = { slotBytes: MIN_SLOT_BYTES };
      d.domains[0].tap.mtu = 9000;
    }, `${FILE}: domains[0].tap.mtu: 9000 is not valid: expected at most ${MIN_SLOT_BYTES - HEADROOM_BYTES - 18 - TAILROOM_BYTES} so that a frame fits a pool slot of ${MIN_SLOT_BYTES} bytes (pool.slotBytes)`],
    ['TAP name too long', (d) => (d.domains[0].tap.name = 'sectunnel-web1-0'), `${FILE}: domains[0].tap.name: "sectunnel-web1-0" is not valid: expected an interface name of 1..15 characters without "/", ":" or white space (Linux IFNAMSIZ); this one has 16`],
    ['TAP name with a slash', (d) => (d.domains[0].tap.name = 'vnet/0'), `${FILE}: domains[0].tap.name: "vnet/0" is not valid: expected an interface name of 1..15 characters`],
    ['TAP name with a space', (d) => (d.domains[0].tap.name = 'vnet 0'), `${FILE}: domains[0].tap.name: "vnet 0" is not valid: expected an interface name`],
    ['TAP offload not a boolean', (d) => (d.domains[0].tap.offload = 'yes'), `${FILE}: domains[0].tap.offload: "yes" is not valid: expected true or false`],
    ['TAP name empty', (d) => (d.domains[0].tap.name = ''), `${FILE}: domains[0].tap.name: "" is not valid: expected an interface name`],
    ['TAP create not boolean', (d) => (d.domains[0].tap.create = 'no'), `${FILE}: domains[0].tap.create: "no" is not valid: expected true or false`],
    ['tap and attach', (d) => (d.domains[0].attach = { interface: 'eth1' }), `${FILE}: domains[0]: {"name":"web1","label":"red","macs":["52:54:00:00:01:01"],"… is not valid: expected exactly one of tap (a TAP device) or attach`],
    ['neither tap nor attach', (d) => delete d.domains[0].tap, `${FILE}: domains[0]: {"name":"web1","label":"red","macs":["52:54:00:00:01:01"]} is not valid: expected exactly one of tap (a TAP device) or attach`],
    ['no MACs', (d) => (d.domains[0].macs = []), `${FILE}: domains[0].macs: [] is not valid: expected a non-empty list of MAC addresses`],
    ['bad MAC', (d) => (d.domains[0].macs = ['52:54:00:00:01']), `${FILE}: domains[0].macs[0]: "52:54:00:00:01" is not valid: expected a unicast MAC address like "52:54:00:12:34:56"`],
    ['multicast MAC', (d) => (d.domains[0].macs = ['33:33:00:00:00:01']), `${FILE}: domains[0].macs[0]: "33:33:00:00:00:01" is not valid: expected a unicast MAC address like "52:54:00:12:34:56"; this is a multicast address`],
    ['public key length', (d) => (d.peers[0].publicKey = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=='), `${FILE}: peers[0].publicKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==" is not valid: expected an X25519 public key: 32 octets in base64`],
    ['relative PSK path', (d) => (d.peers[0].presharedKeyFile = 'psk/hv2'), `${FILE}: peers[0].presharedKeyFile: "psk/hv2" is not valid: expected an absolute path (starting with "/")`],
    ['metrics listen without port', (d) => (d.metrics = { listen: '127.0.0.1' }), `${FILE}: metrics.listen: "127.0.0.1" is not valid: expected "ADDRESS:PORT" like "127.0.0.1:9273" or "[::1]:9273"`],
    ['metrics listen IPv6 without brackets', (d) => (d.metrics = { listen: '::1:9273' }), `${FILE}: metrics.listen: "::1:9273" is not valid: expected "ADDRESS:PORT"`],
    ['control socket too long', (d) => (d.control = { socket: `/run/${'s'.repeat(110)}.sock` }), `is not valid: expected an absolute path (starting with "/") of at most 107 bytes (the unix socket path limit)`],
    ['log level', (d) => (d.log = { level: 'verbose' }), `${FILE}: log.level: "verbose" is not valid: expected one of "debug", "info", "warn", "error"`],
    ['fdb age', (d) => (d.fdb = { ageSeconds: 0 }), `${FILE}: fdb.ageSeconds: 0 is not valid: expected an integer in 1..86400`],
    ['audit rate', (d) => (d.audit = { ratePerSecond: -1 }), `${FILE}: audit.ratePerSecond: -1 is not valid: expected an integer in 1..1000000`],
    ['section of the wrong type', (d) => (d.log = 'debug'), `${FILE}: log: "debug" is not valid: expected an object {level?}`],
    ['missing host', (d) => delete d.host, `${FILE}: host: missing: expected an object {name, privateKeyFile?}`],
    ['missing underlay address', (d) => (d.underlay = {}), `${FILE}: underlay.address: missing: expected an IPv4 or IPv6 address of one host`],
    ['missing SA half', (d) => delete d.peers[0].staticSas[0].out, `${FILE}: peers[0].staticSas[0].out: missing: expected an SA {spi, keymat}`],
    ['unknown nested key with suggestion', (d) => (d.underlay.prot = 4500), `${FILE}: underlay.prot: unknown key; did you mean "port"? (known keys: address, port, transport, mtu)`],
    ['unknown top-level key with suggestion', (d) => (d.peer = []), `${FILE}: peer: unknown key; did you mean "peers"?`],
    ['unknown key in a static SA', (d) => (d.peers[0].staticSas[0].in.key = 'x'), `${FILE}: peers[0].staticSas[0].in.key: unknown key (known keys: spi, keymat)`],
  ];
  for (const [what, mutate, message] of cases) {
    it(what, () => {
      const d = base();
      mutate(d);
      const err = errorOf(d);
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain(message);
    });
  }
});

describe('daemon static SA KEYMAT per algorithm', () => {
  for (const alg of AEAD_ALGORITHMS) {
    const want = aeadKeymatBytes(alg);
    it(`${alg}: ${want + 1} octets are rejected with the expected length, not printed`, () => {
      const d = base();
      d.peers[0].staticSas[0].algorithm = alg;
      d.peers[0].staticSas[0].in.keymat = 'cd'.repeat(want + 1);
      d.peers[0].staticSas[0].out.keymat = 'ef'.repeat(want);
      const err = errorOf(d);
      expect(err.message).toContain(
        `${FILE}: peers[0].staticSas[0].in.keymat: ${want + 1} octets (${(want + 1) * 2} hex digits) is not valid: expected ${want} octets (${want * 2} hex digits) for ${alg}`,
      );
      expect(err.message).not.toContain('cdcd');
      expect(err.problems).toHaveLength(1);
    });
  }

  it('the default algorithm (crypto.algorithm) sets the expected length', () => {
    const d = base();
    d.peers[0].staticSas[0].out.keymat = '00'.repeat(20);
    expect(errorOf(d).message).toContain(`${FILE}: peers[0].staticSas[0].out.keymat: 20 octets (40 hex digits) is not valid: expected 36 octets (72 hex digits) for aes-gcm-256`);
  });
});

describe('daemon cross-field checks', () => {
  it('a domain label must exist', () => {
    const d = base();
    d.domains[0].label = 'reed';
    expect(errorOf(d).message).toContain(`${FILE}: domains[0].label: "reed" is not valid: no label is named "reed"; did you mean "red"? (labels: red, blue)`);
  });

  it('a peer label must exist', () => {
    const d = base();
    d.peers[0].labels = ['red', 'green'];
    expect(errorOf(d).message).toContain(`${FILE}: peers[0].labels[1]: "green" is not valid: no label is named "green" (labels: red, blue)`);
  });

  it("static SA labels must be among the peer's labels", () => {
    const d = base();
    d.peers[0].labels = ['red'];
    d.peers[0].staticSas[0].labels = ['red', 'blue'];
    expect(errorOf(d).message).toContain(`${FILE}: peers[0].staticSas[0].labels[1]: "blue" is not valid: peer "hv2" does not carry label "blue" (peers[0].labels: red)`);
  });

  it('a label is in at most one static SA pair per peer', () => {
    const d = base();
    d.peers[0].staticSas.push({ labels: ['red'], in: { spi: 0x1002, keymat: K36A }, out: { spi: 0x2002, keymat: K36B } });
    expect(errorOf(d).message).toContain(`${FILE}: peers[0].staticSas[1].labels[0]: "red" is not valid: staticSas[0] of this peer already carries "red"`);
  });

  it('inbound SPIs are unique across all peers', () => {
    const d = base();
    d.peers.push({ name: 'hv3', address: '192.0.2.3', labels: ['red'], staticSas: [{ labels: ['red'], in: { spi: 4097, keymat: K36A }, out: { spi: '0x00002001', keymat: K36B } }] });
    const err = errorOf(d);
    expect(err.message).toContain(`${FILE}: peers[1].staticSas[0].in.spi: 4097 is not valid: peers[0].staticSas[0].in already receives on SPI 0x00001001; inbound SPIs must be unique on a host`);
    // The outbound SPI is the other host's choice: the same number at two peers is fine.
    expect(err.problems).toHaveLength(1);
  });

  it('outbound SPIs are unique per peer', () => {
    const d = base();
    d.peers[0].staticSas.push({ labels: ['blue'], in: { spi: 0x1002, keymat: K36A }, out: { spi: 0x2001, keymat: K36B } });
    expect(errorOf(d).message).toContain(`${FILE}: peers[0].staticSas[1].out.spi: 8193 is not valid: staticSas[0] of this peer already sends on SPI 0x00002001`);
  });

  it('MACs are unique across domains', () => {
    const d = base();
    d.domains.push({ name: 'web2', label: 'blue', macs: ['52:54:00:00:01:01'], tap: { name: 'vnet1' } });
    expect(errorOf(d).message).toContain(`${FILE}: domains[1].macs[0]: "52:54:00:00:01:01" is not valid: domains[0].macs[0] has the same MAC; a MAC belongs to one domain`);
  });

  it('interface names are unique across domains, TAP or attached', () => {
    const d = base();
    d.domains.push({ name: 'web2', label: 'blue', macs: ['52:54:00:00:01:02'], attach: { interface: 'vnet0' } });
    expect(errorOf(d).message).toContain(`${FILE}: domains[1].attach.interface: "vnet0" is not valid: domains[0].tap.name already uses interface "vnet0"; each domain needs its own`);
  });

  it('domain, peer and label names are unique', () => {
    const d = base();
    d.domains.push({ name: 'web1', label: 'red', macs: ['52:54:00:00:01:02'], tap: { name: 'vnet1' } });
    d.peers.push({ name: 'hv2', address: '192.0.2.3', labels: ['red'] });
    d.labels.push({ name: 'blue', vlan: 300 });
    const msg = errorOf(d).message;
    expect(msg).toContain(`${FILE}: domains[1].name: "web1" is not valid: domains[0] is already named "web1"`);
    expect(msg).toContain(`${FILE}: peers[1].name: "hv2" is not valid: peers[0] is already named "hv2"`);
    expect(msg).toContain(`${FILE}: labels[2].name: "blue" is not valid: labels[1] is already named "blue"`);
  });

  it('(GRE key, VLAN) pairs are unique', () => {
    const d = base();
    d.labels[1] = { name: 'blue', vlan: 100 };
    expect(errorOf(d).message).toContain(`${FILE}: labels[1]: {"name":"blue","vlan":100} is not valid: labels[0] already uses GRE key 25600 with VLAN 100`);
  });

  it("a peer's address family matches the underlay's", () => {
    const d = base();
    d.peers[0].address = '2001:db8::2';
    expect(errorOf(d).message).toContain(`${FILE}: peers[0].address: "2001:db8::2" is not valid: expected an IPv4 address like underlay.address (192.0.2.1)`);
  });

  it('a peer is not this host', () => {
    const d = base();
    d.peers[0].address = '192.0.2.1';
    d.peers[0].name = 'hv1';
    const msg = errorOf(d).message;
    expect(msg).toContain(`${FILE}: peers[0].address: "192.0.2.1" is not valid: this is underlay.address; a peer is another host`);
    expect(msg).toContain(`${FILE}: peers[0].name: "hv1" is not valid: this is host.name; a peer is another host`);
  });

  it('two peers may share an address only on different ports', () => {
    const d = base();
    d.peers.push({ name: 'hv3', address: '192.0.2.2', labels: ['red'] });
    expect(errorOf(d).message).toContain(`${FILE}: peers[1].address: "192.0.2.2" is not valid: peers[0] already has address 192.0.2.2 port 4500`);
    d.peers[1].port = 4501;
    expect(validateConfig(d, daemonConfigSchema, FILE).peers).toHaveLength(2);
  });

  it('policy rules name defined labels', () => {
    const d = base();
    d.policy = ['allow red -> bleu'];
    expect(errorOf(d).message).toContain(`${FILE}: policy[0]: "bleu" is not valid: no label is named "bleu"; did you mean "blue"?`);
  });
});

describe('suggestions', () => {
  it('counts a swap of neighbours as one edit', () => {
    expect(editDistance('vlna', 'vlan')).toBe(1);
    expect(editDistance('replaywindow', 'replayWindow')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  it('suggests within 2 edits and never for a word mostly wrong', () => {
    expect(suggest('prot', ['address', 'port', 'transport', 'mtu'])).toBe('port');
    expect(suggest('labl', ['labels', 'label'])).toBe('label');
    expect(suggest('a', ['sas', 'local'])).toBeUndefined();
    expect(suggest('colour', ['spi', 'direction', 'peer'])).toBeUndefined();
  });
});

describe('daemon handshake fields', () => {
  const PK = Buffer.alloc(32, 7).toString('base64');
  it('host.privateKeyFile, peers[].algorithms and handshake lifetimes are read; handshake defaults to 600 s / 30 s', () => {
    const d = base();
    d.host.privateKeyFile = '/etc/sectunnel/hv1.key';
    d.peers[0].publicKey = PK;
    d.peers[0].algorithms = ['chacha20-poly1305', 'aes-gcm-256'];
    const cfg = validateConfig(d, daemonConfigSchema, FILE);
    expect(cfg.host.privateKeyFile).toBe('/etc/sectunnel/hv1.key');
    expect(cfg.peers[0]!.algorithms).toEqual(['chacha20-poly1305', 'aes-gcm-256']);
    expect(cfg.handshake).toEqual({ rekeyAfterSeconds: 600, graceSeconds: 30 });
    d.handshake = { rekeyAfterSeconds: 120, graceSeconds: 5 };
    expect(validateConfig(d, daemonConfigSchema, FILE).handshake).toEqual({ rekeyAfterSeconds: 120, graceSeconds: 5 });
  });

  it('handshake soft limits rekeyAfterPackets / rekeyAfterBytes are absent by default and read when given', () => {
    const d = base();
    expect(validateConfig(d, daemonConfigSchema, FILE).handshake).not.toHaveProperty('rekeyAfterPackets');
    expect(validateConfig(d, daemonConfigSchema, FILE).handshake).not.toHaveProperty('rekeyAfterBytes');
    d.handshake = { rekeyAfterPackets: 1_000_000, rekeyAfterBytes: 2 ** 40 };
    expect(validateConfig(d, daemonConfigSchema, FILE).handshake).toEqual({ rekeyAfterSeconds: 600, graceSeconds: 30, rekeyAfterPackets: 1_000_000, rekeyAfterBytes: 2 ** 40 });
    d.handshake = { rekeyAfterPackets: 1000 };
    expect(validateConfig(d, daemonConfigSchema, FILE).handshake).toEqual({ rekeyAfterSeconds: 600, graceSeconds: 30, rekeyAfterPackets: 1000 });
  });

  it.each<[string, (d: Record<string, any>) => void, string]>([
    ['relative key file', (d) => (d.host.privateKeyFile = 'hv1.key'), `${FILE}: host.privateKeyFile: "hv1.key" is not valid: expected an absolute path`],
    ['unknown algorithm', (d) => (d.peers[0].algorithms = ['des']), `${FILE}: peers[0].algorithms[0]: "des" is not valid`],
    ['empty algorithms', (d) => (d.peers[0].algorithms = []), `${FILE}: peers[0].algorithms: [] is not valid: expected a non-empty list of AEAD algorithms`],
    ['rekey interval 0', (d) => (d.handshake = { rekeyAfterSeconds: 0 }), `${FILE}: handshake.rekeyAfterSeconds: 0 is not valid: expected an integer in 1..86400`],
    ['unknown handshake field', (d) => (d.handshake = { rekeyAfter: 5 }), `${FILE}: handshake.rekeyAfter`],
    ['soft packet limit too small', (d) => (d.handshake = { rekeyAfterPackets: 999 }), `${FILE}: handshake.rekeyAfterPackets: 999 is not valid: expected an integer in 1000..9007199254740991`],
    ['soft packet limit not an integer', (d) => (d.handshake = { rekeyAfterPackets: 1e3 + 0.5 }), `${FILE}: handshake.rekeyAfterPackets: 1000.5 is not valid: expected an integer in 1000..`],
    ['soft byte limit as text', (d) => (d.handshake = { rekeyAfterBytes: '1G' }), `${FILE}: handshake.rekeyAfterBytes: "1G" is not valid: expected an integer in 1048576..9007199254740991`],
    ['soft byte limit too small', (d) => (d.handshake = { rekeyAfterBytes: 4096 }), `${FILE}: handshake.rekeyAfterBytes: 4096 is not valid: expected an integer in 1048576..`],
    ['misspelt soft limit', (d) => (d.handshake = { rekeyAfterPacket: 5000 }), `${FILE}: handshake.rekeyAfterPacket: unknown key; did you mean "rekeyAfterPackets"?`],
    [
      'two peers with one public key',
      (d) => {
        d.peers[0].publicKey = PK;
        d.peers.push({ name: 'hv3', address: '192.0.2.3', labels: ['red'], publicKey: PK });
      },
      `${FILE}: peers[1].publicKey: "${PK}" is not valid: peers[0] already has this public key`,
    ],
  ])('%s', (_name, edit, message) => {
    const d = base();
    edit(d);
    const err = errorOf(d);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain(message);
  });
});
