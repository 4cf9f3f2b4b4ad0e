// REPLAY.json (DESIGN.md "pcap replay") and the loader it shares with the daemon
// config: JSON/YAML parsing, positions, and one operator-readable line per problem.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AEAD_ALGORITHMS, aeadKeymatBytes } from '../../src/crypto/aead.js';
import { ConfigError } from '../../src/control/config-errors.js';
import { CONFIG_MAX_BYTES, loadConfigFile, loadConfigFileSync, parseConfigText, validateConfig } from '../../src/control/load.js';
import { effectiveGreKey, loadReplayConfig, replayConfigSchema, type ReplayConfig } from '../../src/control/replay-config.js';

const FIXTURES = resolve(__dirname, '..', 'fixtures', 'config');
const FILE = '/etc/sectunnel/replay.json';
const YFILE = '/etc/sectunnel/replay.yaml';

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
}

const KEY20 = '000102030405060708090a0b0c0d0e0f10111213';

/** A valid REPLAY object; tests break one thing at a time. */
function base(): Record<string, any> {
  return {
    local: { ipv4: '192.0.2.2' },
    labels: [{ name: 'red', vlan: 100 }],
    sas: [{ spi: '0x00001001', direction: 'in', peer: '192.0.2.1', algorithm: 'aes-gcm-128', keymat: KEY20, encapsulation: 'esp', labels: ['red'] }],
  };
}

/** The ConfigError thrown for `data` written as JSON to FILE. */
function errorOf(data: unknown, file = FILE): ConfigError {
  try {
    parseConfigText(JSON.stringify(data, null, 2), file, replayConfigSchema);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

function yamlErrorOf(text: string): ConfigError {
  try {
    parseConfigText(text, YFILE, replayConfigSchema);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const MINIMAL: ReplayConfig = {
  local: { ipv4: '192.0.2.2' },
  replayWindow: 4096,
  labels: [{ name: 'red', vlan: 100 }],
  sas: [
    { spi: 0x1001, direction: 'in', peer: '192.0.2.1', algorithm: 'aes-gcm-128', keymat: hex(KEY20), esn: true, encapsulation: 'esp', labels: ['red'] },
  ],
  domains: [],
  policy: [],
};

const FULL: ReplayConfig = {
  local: { ipv4: '192.0.2.2', ipv6: '2001:db8::2' },
  replayWindow: 64,
  labels: [
    { name: 'red', vlan: 100, greKey: null, context: 'system_u:system_r:svirt_t:s0:c100' },
    { name: 'blue', vlan: 200 },
    { name: 'audit', vlan: 300, greKey: 4096 },
  ],
  sas: [
    { spi: 0x1001, direction: 'in', peer: '192.0.2.1', algorithm: 'aes-gcm-128', keymat: hex(KEY20), esn: false, encapsulation: 'esp', labels: ['red'] },
    {
      spi: 8194,
      direction: 'out',
      peer: '192.0.2.1',
      algorithm: 'aes-gcm-192',
      keymat: hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b'),
      esn: true,
      encapsulation: 'udp',
      labels: ['red', 'blue'],
    },
    {
      spi: 0x3001,
      direction: 'in',
      peer: '2001:db8::1',
      algorithm: 'aes-gcm-256',
      keymat: hex('404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263'),
      esn: true,
      encapsulation: 'udp',
      labels: ['blue'],
    },
    {
      spi: 0x3002,
      direction: 'out',
      peer: '2001:db8::1',
      algorithm: 'chacha20-poly1305',
      keymat: hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3'),
      esn: true,
      encapsulation: 'esp',
      labels: ['audit'],
    },
  ],
  domains: [
    { name: 'web1', label: 'red', macs: ['52:54:00:00:01:01'] },
    { name: 'log1', label: 'audit', macs: ['52:54:00:00:03:01', '52:54:00:00:03:02'] },
  ],
  policy: [
    { from: 'red', to: 'audit' },
    { from: 'blue', to: 'audit' },
  ],
};

describe('REPLAY fixtures', () => {
  for (const ext of ['json', 'yaml']) {
    it(`replay-minimal.${ext} parses with every default filled in`, async () => {
      expect(await loadReplayConfig(join(FIXTURES, `replay-minimal.${ext}`))).toEqual(MINIMAL);
    });
    it(`replay-full.${ext} parses to normalised values (SPI numbers, KEYMAT bytes, RFC 5952 IPv6, lower-case MACs)`, async () => {
      expect(await loadReplayConfig(join(FIXTURES, `replay-full.${ext}`))).toEqual(FULL);
    });
  }

  it('the DESIGN.md example parses', () => {
    const design = {
      local: { ipv4: '192.0.2.2', ipv6: '2001:db8::2' },
      replayWindow: 64,
      labels: [{ name: 'red', vlan: 100, greKey: null }],
      sas: [{ spi: '0x00001001', direction: 'in', peer: '192.0.2.1', algorithm: 'aes-gcm-128', keymat: KEY20, esn: false, encapsulation: 'esp', labels: ['red'] }],
    };
    const cfg = validateConfig(design, replayConfigSchema, 'REPLAY.json');
    expect(cfg.sas[0]!.spi).toBe(0x1001);
    expect(cfg.sas[0]!.esn).toBe(false);
    expect(cfg.replayWindow).toBe(64);
  });

  it('keeps an absent greKey apart from null; effectiveGreKey resolves the default VLAN << 8', () => {
    const cfg = FULL;
    expect('greKey' in cfg.labels[1]!).toBe(false);
    expect(effectiveGreKey(cfg.labels[0]!)).toBeNull();
    expect(effectiveGreKey(cfg.labels[1]!)).toBe(200 << 8);
    expect(effectiveGreKey(cfg.labels[2]!)).toBe(4096);
  });

  it('loadConfigFileSync and loadConfigFile agree', async () => {
    const path = join(FIXTURES, 'replay-full.yaml');
    expect(loadConfigFileSync(path, replayConfigSchema)).toEqual(await loadConfigFile(path, replayConfigSchema));
  });
});

describe('REPLAY field errors name the file, the field and the value', () => {
  const cases: [string, (d: Record<string, any>) => void, string][] = [
    ['wrong type', (d) => (d.labels[0].vlan = '100'), `${FILE}: labels[0].vlan: "100" is not valid: expected an integer in 1..4094`],
    ['VLAN out of range', (d) => (d.labels[0].vlan = 5000), `${FILE}: labels[0].vlan: 5000 is not valid: expected an integer in 1..4094`],
    ['VLAN 0', (d) => (d.labels[0].vlan = 0), `${FILE}: labels[0].vlan: 0 is not valid: expected an integer in 1..4094`],
    ['fractional VLAN', (d) => (d.labels[0].vlan = 100.5), `${FILE}: labels[0].vlan: 100.5 is not valid: expected an integer in 1..4094`],
    ['GRE key too big', (d) => (d.labels[0].greKey = 2 ** 32), `${FILE}: labels[0].greKey: 4294967296 is not valid: expected an integer in 0..4294967295, or null for no GRE key`],
    ['GRE key as string', (d) => (d.labels[0].greKey = '0x10'), `${FILE}: labels[0].greKey: "0x10" is not valid: expected an integer in 0..4294967295, or null`],
    ['bad label name', (d) => (d.labels[0].name = 'red team'), `${FILE}: labels[0].name: "red team" is not valid: expected a name of 1..63 letters`],
    ['bad context', (d) => (d.labels[0].context = 'svirt_t'), `${FILE}: labels[0].context: "svirt_t" is not valid: expected an SELinux-style context "user:role:type:level"`],
    ['replay window not a multiple of 32', (d) => (d.replayWindow = 100), `${FILE}: replayWindow: 100 is not valid: expected an integer in 64..65536 that is a multiple of 32`],
    ['replay window too small', (d) => (d.replayWindow = 32), `${FILE}: replayWindow: 32 is not valid: expected an integer in 64..65536`],
    ['replay window too big', (d) => (d.replayWindow = 131072), `${FILE}: replayWindow: 131072 is not valid: expected an integer in 64..65536`],
    ['reserved SPI', (d) => (d.sas[0].spi = 255), `${FILE}: sas[0].spi: 255 is not valid: expected an SPI: an integer in 256..4294967295, or a hex string "0x00000100".."0xffffffff"`],
    ['reserved SPI in hex', (d) => (d.sas[0].spi = '0x000000ff'), `${FILE}: sas[0].spi: "0x000000ff" is not valid: expected an SPI`],
    ['SPI too long', (d) => (d.sas[0].spi = '0x100000000'), `${FILE}: sas[0].spi: "0x100000000" is not valid: expected an SPI`],
    ['SPI in decimal string', (d) => (d.sas[0].spi = '4097'), `${FILE}: sas[0].spi: "4097" is not valid: expected an SPI`],
    ['direction', (d) => (d.sas[0].direction = 'inbound'), `${FILE}: sas[0].direction: "inbound" is not valid: expected one of "in", "out"`],
    ['algorithm', (d) => (d.sas[0].algorithm = 'aes-256-gcm'), `${FILE}: sas[0].algorithm: "aes-256-gcm" is not valid: expected one of "aes-gcm-128", "aes-gcm-192", "aes-gcm-256", "chacha20-poly1305"`],
    ['encapsulation', (d) => (d.sas[0].encapsulation = 'tcp'), `${FILE}: sas[0].encapsulation: "tcp" is not valid: expected one of "esp", "udp"`],
    ['esn as string', (d) => (d.sas[0].esn = 'yes'), `${FILE}: sas[0].esn: "yes" is not valid: expected true or false`],
    ['peer not an address', (d) => (d.sas[0].peer = '192.0.2.300'), `${FILE}: sas[0].peer: "192.0.2.300" is not valid: expected an IPv4 or IPv6 address`],
    ['peer multicast', (d) => (d.sas[0].peer = '224.0.0.1'), `${FILE}: sas[0].peer: "224.0.0.1" is not valid: expected an IPv4 or IPv6 address of one host`],
    ['local ipv4 given IPv6', (d) => (d.local.ipv4 = '2001:db8::2'), `${FILE}: local.ipv4: "2001:db8::2" is not valid: expected an IPv4 address, not IPv6`],
    ['local ipv6 with zone', (d) => (d.local.ipv6 = 'fe80::1%eth0'), `${FILE}: local.ipv6: "fe80::1%eth0" is not valid: expected an IPv6 address without a zone index`],
    ['empty SA labels', (d) => (d.sas[0].labels = []), `${FILE}: sas[0].labels: [] is not valid: expected a non-empty list of label names`],
    ['label listed twice on an SA', (d) => (d.sas[0].labels = ['red', 'red']), `${FILE}: sas[0].labels[1]: "red" is not valid: "red" is already listed at [0]`],
    ['labels not a list', (d) => (d.labels = { name: 'red', vlan: 100 }), `${FILE}: labels: {"name":"red","vlan":100} is not valid: expected a non-empty list of labels`],
    ['label not an object', (d) => (d.labels[0] = 'red'), `${FILE}: labels[0]: "red" is not valid: expected a label {name, vlan, greKey?, context?}`],
    ['policy rule', (d) => (d.policy = ['deny red -> red']), `${FILE}: policy[0]: "deny red -> red" is not valid: expected a rule "allow FROM -> TO" or {from: FROM, to: TO}`],
    ['empty local', (d) => (d.local = {}), `${FILE}: local: {} is not valid: expected at least one of ipv4, ipv6`],
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

  it('one mistake is one problem', () => {
    const d = base();
    d.labels[0].vlan = 5000;
    expect(errorOf(d).problems).toHaveLength(1);
  });
});

describe('REPLAY missing and unknown keys', () => {
  it('names a missing required field and what it expects', () => {
    const d = base();
    delete d.sas[0].encapsulation;
    expect(errorOf(d).message).toContain(`${FILE}: sas[0].encapsulation: missing: expected one of "esp", "udp"`);
  });

  it('names a missing top-level section', () => {
    const d = base();
    delete d.local;
    expect(errorOf(d).message).toContain(`${FILE}: local: missing: expected an object {ipv4?, ipv6?}`);
  });

  it('rejects an unknown key with a "did you mean" for a near miss', () => {
    const d = base();
    d.labels[0].vlna = 7;
    const err = errorOf(d);
    expect(err.message).toContain(`${FILE}: labels[0].vlna: unknown key; did you mean "vlan"? (known keys: name, vlan, greKey, context)`);
  });

  it('suggests across case: replaywindow → replayWindow', () => {
    const d = base();
    d.replaywindow = 64;
    expect(errorOf(d).message).toContain(`${FILE}: replaywindow: unknown key; did you mean "replayWindow"?`);
  });

  it('gives no suggestion when nothing is close', () => {
    const d = base();
    d.sas[0].colour = 'red';
    const msg = errorOf(d).message;
    expect(msg).toContain(`${FILE}: sas[0].colour: unknown key (known keys: spi, direction, peer, algorithm, keymat, esn, encapsulation, labels)`);
    expect(msg).not.toContain('did you mean');
  });

  it('reports every problem, one per line, in file order', () => {
    const d = base();
    d.labels[0].vlan = 5000;
    d.sas[0].direction = 'sideways';
    d.extra = true;
    const err = errorOf(d);
    expect(err.problems.map((p) => p.path)).toEqual(['labels[0].vlan', 'sas[0].direction', 'extra']);
    expect(err.message.split('\n')).toHaveLength(3);
    for (const line of err.message.split('\n')) expect(line.startsWith(`${FILE}: `)).toBe(true);
  });
});

describe('REPLAY KEYMAT', () => {
  for (const alg of AEAD_ALGORITHMS) {
    const want = aeadKeymatBytes(alg);
    it(`${alg}: KEYMAT of ${want - 1} octets is rejected with the expected length, and the key is not printed`, () => {
      const d = base();
      const keymat = 'ab'.repeat(want - 1);
      d.sas[0].algorithm = alg;
      d.sas[0].keymat = keymat;
      const err = errorOf(d);
      expect(err.message).toContain(
        `${FILE}: sas[0].keymat: ${want - 1} octets (${(want - 1) * 2} hex digits) is not valid: expected ${want} octets (${want * 2} hex digits) for ${alg}`,
      );
      expect(err.message).not.toContain(keymat);
      expect(err.problems).toHaveLength(1);
    });
    it(`${alg}: KEYMAT of exactly ${want} octets is accepted`, () => {
      const d = base();
      d.sas[0].algorithm = alg;
      d.sas[0].keymat = 'ab'.repeat(want);
      expect(validateConfig(d, replayConfigSchema, FILE).sas[0]!.keymat).toEqual(new Uint8Array(want).fill(0xab));
    });
  }

  it('rejects non-hex KEYMAT without printing it', () => {
    const d = base();
    d.sas[0].keymat = 'secretsecretsecretsecretsecretsecretsecr';
    const msg = errorOf(d).message;
    expect(msg).toContain(`${FILE}: sas[0].keymat: a string of 40 characters (not shown) is not valid: expected a hex string`);
    expect(msg).not.toContain('secret');
  });

  it('rejects an odd number of hex digits', () => {
    const d = base();
    d.sas[0].keymat = KEY20.slice(1);
    expect(errorOf(d).message).toContain(`${FILE}: sas[0].keymat: 39 hex digits is not valid: expected a hex string: the key followed by the 4-octet salt, with an even number of hex digits`);
  });

  it('tells a YAML user to quote KEYMAT that YAML read as a number', () => {
    const text = `local: {ipv4: 192.0.2.2}\nlabels: [{name: red, vlan: 100}]\nsas:\n  - {spi: 0x1001, direction: in, peer: 192.0.2.1, algorithm: aes-gcm-128, keymat: 0x0001020304, encapsulation: esp, labels: [red]}\n`;
    const msg = yamlErrorOf(text).message;
    expect(msg).toContain(`${YFILE}: sas[0].keymat: a number (not shown) is not valid: expected a hex string: the key followed by the 4-octet salt; in YAML, put it in quotes (line 4, column`);
  });
});

describe('REPLAY cross-field checks', () => {
  it('an SA label must be a defined label, with a suggestion', () => {
    const d = base();
    d.sas[0].labels = ['rde'];
    expect(errorOf(d).message).toContain(`${FILE}: sas[0].labels[0]: "rde" is not valid: no label is named "rde"; did you mean "red"? (labels: red)`);
  });

  it('label names are unique', () => {
    const d = base();
    d.labels.push({ name: 'red', vlan: 200 });
    expect(errorOf(d).message).toContain(`${FILE}: labels[1].name: "red" is not valid: labels[0] is already named "red"; names must be unique`);
  });

  it('(GRE key, VLAN) pairs are unique: an explicit key equal to the default collides', () => {
    const d = base();
    d.labels.push({ name: 'blue', vlan: 100, greKey: 100 << 8 });
    expect(errorOf(d).message).toContain(`${FILE}: labels[1]: {"name":"blue","vlan":100,"greKey":25600} is not valid: labels[0] already uses GRE key 25600 with VLAN 100 (25600 is the default key for VLAN 100: vlan << 8); each (GRE key, VLAN) pair names one label`);
  });

  it('(GRE key, VLAN) pairs are unique: two keyless labels on one VLAN collide', () => {
    const d = base();
    d.labels = [
      { name: 'red', vlan: 100, greKey: null },
      { name: 'blue', vlan: 100, greKey: null },
    ];
    expect(errorOf(d).message).toContain(`${FILE}: labels[1]: {"name":"blue","vlan":100,"greKey":null} is not valid: labels[0] already uses no GRE key with VLAN 100`);
  });

  it('two labels may share a VLAN when their keys differ', () => {
    const d = base();
    d.labels = [
      { name: 'red', vlan: 100 },
      { name: 'blue', vlan: 100, greKey: 7 },
      { name: 'green', vlan: 100, greKey: null },
    ];
    expect(validateConfig(d, replayConfigSchema, FILE).labels).toHaveLength(3);
  });

  it('inbound SPIs are unique; an outbound SA may reuse an inbound SPI', () => {
    const d = base();
    d.sas.push({ ...d.sas[0], spi: 4097 });
    expect(errorOf(d).message).toContain(`${FILE}: sas[1].spi: 4097 is not valid: sas[0] is already an inbound SA with SPI 0x00001001; inbound SPIs must be unique`);
    d.sas[1].direction = 'out';
    expect(validateConfig(d, replayConfigSchema, FILE).sas).toHaveLength(2);
  });

  it("an SA's peer needs a local address of its family", () => {
    const d = base();
    d.sas[0].peer = '2001:db8::1';
    expect(errorOf(d).message).toContain(`${FILE}: sas[0].peer: "2001:db8::1" is not valid: expected a peer reachable from a local address, but local has no ipv6`);
  });

  it('domains: names unique, labels defined, MACs unicast and owned once', () => {
    const d = base();
    d.domains = [
      { name: 'web1', label: 'red', macs: ['52:54:00:00:00:01'] },
      { name: 'web1', label: 'blu', macs: ['52-54-00-00-00-01'] },
    ];
    const msg = errorOf(d).message;
    expect(msg).toContain(`${FILE}: domains[1].name: "web1" is not valid: domains[0] is already named "web1"`);
    expect(msg).toContain(`${FILE}: domains[1].label: "blu" is not valid: no label is named "blu" (labels: red)`);
    expect(msg).toContain(`${FILE}: domains[1].macs[0]: "52:54:00:00:00:01" is not valid: domains[0].macs[0] has the same MAC; a MAC belongs to one domain`);
  });

  for (const [mac, why] of [
    ['01:00:5e:00:00:01', 'this is a multicast address'],
    ['ff:ff:ff:ff:ff:ff', 'this is a multicast address'],
    ['00:00:00:00:00:00', 'not all zeros'],
    ['52:54:00:00:01', ''],
    ['52:54:00-00:00:01', ''],
    ['5254.0000.0001', ''],
  ] as const) {
    it(`rejects MAC ${mac}`, () => {
      const d = base();
      d.domains = [{ name: 'web1', label: 'red', macs: [mac] }];
      const msg = errorOf(d).message;
      expect(msg).toContain(`${FILE}: domains[0].macs[0]: "${mac}" is not valid: expected a unicast MAC address like "52:54:00:12:34:56"`);
      expect(msg).toContain(why);
    });
  }

  it('policy rules name defined labels', () => {
    const d = base();
    d.policy = ['allow red -> audti', { from: 'redd', to: 'red' }];
    const msg = errorOf(d).message;
    expect(msg).toContain(`${FILE}: policy[0]: "audti" is not valid: no label is named "audti"`);
    expect(msg).toContain(`${FILE}: policy[1]: "redd" is not valid: no label is named "redd"; did you mean "red"?`);
  });

  it('cross-field checks report alongside field errors', () => {
    const d = base();
    d.labels[0].vlan = 9999;
    d.sas[0].labels = ['blue'];
    const msg = errorOf(d).message;
    expect(msg).toContain('labels[0].vlan: 9999 is not valid');
    expect(msg).toContain('sas[0].labels[0]: "blue" is not valid: no label is named "blue"');
  });
});

describe('parsing and positions', () => {
  it('YAML syntax errors give line and column', () => {
    const err = yamlErrorOf('local:\n  ipv4: 192.0.2.2\nlabels:\n  - [unclosed\nsas: []\n');
    expect(err.code).toBe('CONFIG_SYNTAX');
    expect(err.message).toMatch(new RegExp(`^${YFILE}:\\d+:\\d+: syntax error: `));
  });

  it('duplicate YAML keys are syntax errors at the second key', () => {
    const err = yamlErrorOf('local:\n  ipv4: 192.0.2.2\n  ipv4: 192.0.2.3\n');
    expect(err.code).toBe('CONFIG_SYNTAX');
    expect(err.message).toBe(`${YFILE}:3:3: syntax error: Map keys must be unique`);
  });

  it('custom YAML tags are syntax errors', () => {
    const err = yamlErrorOf('local: !include other.yaml\n');
    expect(err.code).toBe('CONFIG_SYNTAX');
    expect(err.message).toContain(`${YFILE}:1:8: syntax error: `);
    expect(err.message).toContain('custom tags are not supported');
  });

  it('YAML merge keys are not YAML 1.2: "<<" is an unknown key', () => {
    const err = yamlErrorOf('x: &a {ipv4: 192.0.2.2}\nlocal:\n  <<: *a\n');
    expect(err.message).toContain(`${YFILE}: local["<<"]: unknown key`);
  });

  it('YAML 1.2 core schema: yes is a string, not true', () => {
    const msg = yamlErrorOf('local: {ipv4: 192.0.2.2}\nlabels: [{name: red, vlan: 100}]\nsas:\n  - spi: 4097\n    direction: in\n    peer: 192.0.2.1\n    algorithm: aes-gcm-128\n    keymat: "' + KEY20 + '"\n    esn: yes\n    encapsulation: esp\n    labels: [red]\n').message;
    expect(msg).toBe(`${YFILE}: sas[0].esn: "yes" is not valid: expected true or false (line 9, column 10)`);
  });

  it('validation problems in YAML carry the line and column of the value', () => {
    const msg = yamlErrorOf('local: {ipv4: 192.0.2.2}\nlabels:\n  - name: red\n    vlan: 5000\nsas: []\n').message;
    expect(msg).toContain(`${YFILE}: labels[0].vlan: 5000 is not valid: expected an integer in 1..4094 (line 4, column 11)`);
  });

  it('an unknown key is located at the key', () => {
    const msg = yamlErrorOf('local: {ipv4: 192.0.2.2}\nlabels:\n  - name: red\n    vlan: 100\n    vlna: 100\n').message;
    expect(msg).toContain(`${YFILE}: labels[0].vlna: unknown key; did you mean "vlan"? (known keys: name, vlan, greKey, context) (line 5, column 5)`);
  });

  it('JSON syntax errors give line and column', () => {
    let err: ConfigError | undefined;
    try {
      parseConfigText('{\n  "local": {"ipv4": "192.0.2.2"},\n  "labels": [{"name": "red", "vlan": 100,}]\n}\n', FILE, replayConfigSchema);
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err?.code).toBe('CONFIG_SYNTAX');
    expect(err?.message).toBe(`${FILE}:3:42: syntax error: unexpected "}"; expected another key (no comma after the last member)`);
  });

  for (const [what, text, message] of [
    ['a duplicate key', '{"local": {}, "local": {}}', `${FILE}:1:15: syntax error: duplicate key "local"`],
    ['a comment', '{\n  // note\n}', `${FILE}:2:3: syntax error: unexpected "/"; expected a quoted key`],
    ['an unterminated string', '{"local": "abc', `${FILE}:1:11: syntax error: unterminated string`],
    ['trailing garbage', '{}\n}', `${FILE}:2:1: syntax error: unexpected "}"; expected end of file after the JSON value`],
    ['an empty file', '', `${FILE}:1:1: syntax error: unexpected end of file; expected a value`],
    ['a bad number', '{"replayWindow": 01}', `${FILE}:1:19: syntax error: unexpected "1"; expected "," or "}"`],
  ] as const) {
    it(`JSON with ${what} is a syntax error`, () => {
      expect(() => parseConfigText(text, FILE, replayConfigSchema)).toThrow(message);
    });
  }

  it('validation problems in JSON carry the line and column of the value', () => {
    const d = base();
    d.sas[0].spi = 12;
    expect(errorOf(d).message).toContain(`${FILE}: sas[0].spi: 12 is not valid: expected an SPI: an integer in 256..4294967295, or a hex string "0x00000100".."0xffffffff" (line 13, column 14)`);
  });

  it('a JSON key "__proto__" is an unknown key, not a prototype', () => {
    const msg = (() => {
      try {
        parseConfigText('{"__proto__": {"x": 1}, "local": {"ipv4": "192.0.2.2"}}', FILE, replayConfigSchema);
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(msg).toBe(`${FILE}: __proto__: unknown key; "__proto__" is never a config key (line 1, column 2)`);
  });

  it('an empty YAML file says so', () => {
    const err = yamlErrorOf('# nothing here\n');
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toBe(`${YFILE}: (top level): the file is empty: expected a replay config object {local, replayWindow?, labels, sas, domains?, policy?}`);
  });

  it('a file of the wrong shape names the top level', () => {
    expect(errorOf([1, 2]).message).toContain(`${FILE}: (top level): [1,2] is not valid: expected a replay config object`);
  });

  it('without a known extension, JSON and then YAML are tried', () => {
    const json = JSON.stringify(base());
    expect(parseConfigText(json, '/etc/replay.conf', replayConfigSchema).sas[0]!.spi).toBe(0x1001);
    const yaml = 'local: {ipv4: 192.0.2.2}\nlabels: [{name: red, vlan: 100}]\nsas:\n  - {spi: 4097, direction: in, peer: 192.0.2.1, algorithm: aes-gcm-128, keymat: "' + KEY20 + '", encapsulation: esp, labels: [red]}\n';
    expect(parseConfigText(yaml, '/etc/replay.conf', replayConfigSchema).sas[0]!.spi).toBe(0x1001);
  });

  it('validateConfig names its source for data built in code', () => {
    expect(() => validateConfig({ ...base(), replayWindow: 7 }, replayConfigSchema, '<libvirt network hv1>')).toThrow(
      '<libvirt network hv1>: replayWindow: 7 is not valid',
    );
  });
});

describe('reading files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sectunnel-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a missing file is CONFIG_READ naming the file', async () => {
    const path = join(dir, 'missing.json');
    await expect(loadReplayConfig(path)).rejects.toMatchObject({ code: 'CONFIG_READ', message: `${path}: cannot read config file: no such file` });
    expect(() => loadConfigFileSync(path, replayConfigSchema)).toThrow(`${path}: cannot read config file: no such file`);
  });

  it('a directory is CONFIG_READ', async () => {
    const path = join(dir, 'sub.yaml');
    mkdirSync(path);
    await expect(loadReplayConfig(path)).rejects.toMatchObject({ code: 'CONFIG_READ', message: `${path}: cannot read config file: is a directory, expected a file` });
  });

  it('a file over 1 MiB is CONFIG_READ with its size and the limit', async () => {
    const path = join(dir, 'big.yaml');
    writeFileSync(path, `# ${'x'.repeat(CONFIG_MAX_BYTES)}\n`);
    const message = `${path}: cannot read config file: it is ${CONFIG_MAX_BYTES + 3} bytes; the limit is 1048576 bytes (1 MiB)`;
    await expect(loadReplayConfig(path)).rejects.toMatchObject({ code: 'CONFIG_READ', message });
    expect(() => loadConfigFileSync(path, replayConfigSchema)).toThrow(message);
  });

  it('a file that is not UTF-8 is CONFIG_SYNTAX', async () => {
    const path = join(dir, 'latin1.yaml');
    writeFileSync(path, Buffer.from([0x61, 0x3a, 0x20, 0xe9, 0x0a]));
    await expect(loadReplayConfig(path)).rejects.toMatchObject({ code: 'CONFIG_SYNTAX', message: `${path}: syntax error: the file is not UTF-8 text` });
  });

  it('a UTF-8 byte order mark is accepted', async () => {
    const path = join(dir, 'bom.json');
    writeFileSync(path, '\ufeff' + JSON.stringify(base()));
    expect((await loadReplayConfig(path)).labels[0]!.name).toBe('red');
  });

  it('errors from a file carry its path', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, 'local: {ipv4: 192.0.2.2}\nlabels: [{name: red, vlan: 5000}]\nsas: []\n');
    await expect(loadReplayConfig(path)).rejects.toMatchObject({ code: 'CONFIG_INVALID', file: path });
    await expect(loadReplayConfig(path)).rejects.toThrow(`${path}: labels[0].vlan: 5000 is not valid: expected an integer in 1..4094 (line 2, column 28)`);
  });
});
