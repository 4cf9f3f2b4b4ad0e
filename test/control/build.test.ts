// control/build.ts: a daemon config becomes tables, static SA plans and the MTU arithmetic.
import { describe, expect, it } from 'vitest';
import { buildTables, carriedLabels, checkKeymats, installSaPair, keymatProblems, mtuPlan, planStaticSas, staticSaPaths } from '../../src/control/build.js';
import { ConfigError } from '../../src/control/config-errors.js';
import { daemonConfigSchema, type DaemonConfig } from '../../src/control/config.js';
import { validateConfig } from '../../src/control/load.js';
import { seqKeyId } from '../../src/control/seq-store.js';
import { InboundSa, OutboundSa } from '../../src/core/sa.js';

const K = (b: number): string => Buffer.alloc(36, b).toString('hex');

/** A config object with two labels, two domains, two peers (one with two static SA pairs); `edit` changes it. */
function config(edit: (c: Record<string, any>) => void = () => {}): DaemonConfig {
  const c: Record<string, any> = {
    host: { name: 'hv1' },
    underlay: { address: '192.0.2.1' },
    labels: [
      { name: 'red', vlan: 100 },
      { name: 'blue', vlan: 200, greKey: 0xb10e },
    ],
    domains: [
      { name: 'web1', label: 'red', macs: ['52:54:00:00:01:01'], tap: { name: 'vnet0' } },
      { name: 'db1', label: 'blue', macs: ['52:54:00:00:02:01'], attach: { interface: 'vnet7' } },
    ],
    peers: [
      {
        name: 'hv2',
        address: '192.0.2.2',
        labels: ['red', 'blue'],
        staticSas: [
          { labels: ['red'], in: { spi: '0x00001001', keymat: K(1) }, out: { spi: '0x00002001', keymat: K(2) } },
          { labels: ['blue'], in: { spi: '0x00001002', keymat: K(3) }, out: { spi: '0x00002002', keymat: K(4) } },
        ],
      },
      { name: 'hv3', address: '192.0.2.3', labels: ['red'] },
    ],
  };
  edit(c);
  return validateConfig(c, daemonConfigSchema, 'test.json');
}

describe('mtuPlan', () => {
  it.each([
    // outer IP + UDP + ESP 8 + IV 8 + GRE 8 + tag 4 + Ethernet 14 + pad 3 + trailer 2 + ICV 16
    ['udp', '192.0.2.1', 1500, 91],
    ['esp', '192.0.2.1', 1500, 83],
    ['udp', '2001:db8::1', 1500, 111],
    ['esp', '2001:db8::1', 9000, 103],
  ] as const)('%s over %s with MTU %i: %i octets of overhead', (transport, address, mtu, overhead) => {
    const p = mtuPlan(
      config((c) => {
        c.underlay = { address, transport, mtu };
        c.peers = [];
      }),
    );
    expect(p.overheadBytes).toBe(overhead);
    expect(p.guestMtu).toBe(mtu - overhead);
    expect(p.underlayMtu).toBe(mtu);
    expect(p.outerHeaderBytes).toBe((address.includes(':') ? 40 : 20) + (transport === 'udp' ? 8 : 0));
    expect(Object.values(p.parts).reduce((a, b) => a + b, 0)).toBe(overhead);
  });

  it('counts a 4-octet GRE header when no label carries a key', () => {
    const p = mtuPlan(
      config((c) => {
        c.labels = [{ name: 'red', vlan: 100, greKey: null }, { name: 'blue', vlan: 200, greKey: null }];
      }),
    );
    expect(p.parts.gre).toBe(4);
    expect(p.overheadBytes).toBe(87);
    expect(p.guestMtu).toBe(1413);
  });
});

describe('buildTables', () => {
  it('builds labels, domains (by interface), policy and peers in config order', () => {
    const t = buildTables(config((c) => (c.policy = ['allow red -> blue'])), { staticSas: true });
    expect(t.labels.labels.map((l) => [l.name, l.vlan, l.greKey])).toEqual([
      ['red', 100, 100 << 8],
      ['blue', 200, 0xb10e],
    ]);
    expect(t.domains.idOfInterface('vnet0')).toBe(0);
    expect(t.domains.idOfInterface('vnet7')).toBe(1);
    expect(t.policy.admits(0, 1)).toBe(true);
    expect(t.policy.admits(1, 0)).toBe(false);
    expect(t.peers.map((p) => [p.id, p.name, p.labelIds])).toEqual([
      [0, 'hv2', [0, 1]],
      [1, 'hv3', []],
    ]);
    expect(t.fdb.ageMs).toBe(300_000);
  });

  it('gives peers no label without static keys: nothing is flooded to a peer without SAs', () => {
    const cfg = config();
    expect(carriedLabels(cfg, false)).toEqual([[], []]);
    expect(buildTables(cfg, { staticSas: false }).peers.map((p) => p.labelIds)).toEqual([[], []]);
    expect(carriedLabels(cfg, true)).toEqual([['red', 'blue'], []]);
  });
});

describe('static SA plans', () => {
  it('plans one pair per staticSas entry with its peer, labels and halves', () => {
    const plans = planStaticSas(config(), true);
    expect(plans.map((p) => [p.path, p.peerId, p.peerName, p.labels, p.in.spi, p.out.spi, p.algorithm, p.esn])).toEqual([
      ['peers[0].staticSas[0]', 0, 'hv2', ['red'], 0x1001, 0x2001, 'aes-gcm-256', true],
      ['peers[0].staticSas[1]', 0, 'hv2', ['blue'], 0x1002, 0x2002, 'aes-gcm-256', true],
    ]);
    expect(plans[0]!.out.keyId).toBe(seqKeyId(Buffer.alloc(36, 2)));
    expect(planStaticSas(config(), false)).toEqual([]);
    expect(staticSaPaths(config())).toEqual(['peers[0].staticSas[0]', 'peers[0].staticSas[1]']);
  });

  it('keeps an identity across identical configs and changes it with the key, SPI, labels or window', () => {
    const id = (cfg: DaemonConfig, dir: 'in' | 'out' = 'out'): string => planStaticSas(cfg, true)[0]![dir].identity;
    expect(id(config())).toBe(id(config()));
    expect(id(config((c) => (c.peers[0].staticSas[0].out.keymat = K(9))))).not.toBe(id(config()));
    expect(id(config((c) => (c.peers[0].staticSas[0].out.spi = '0x00003001')))).not.toBe(id(config()));
    const bothLabels = config((c) => {
      c.peers[0].staticSas[0].labels = ['red', 'blue'];
      c.peers[0].staticSas.pop();
    });
    expect(id(bothLabels)).not.toBe(id(config()));
    expect(id(config((c) => (c.replayWindowPackets = 64)), 'in')).not.toBe(id(config(), 'in'));
    // The outbound half does not depend on the replay window; neither half on the peer's address.
    expect(id(config((c) => (c.replayWindowPackets = 64)))).toBe(id(config()));
    expect(id(config((c) => (c.peers[0].address = '192.0.2.9')))).toBe(id(config()));
    // No identity, and nothing in a plan's text, shows the key.
    expect(JSON.stringify(planStaticSas(config(), true).map((p) => [p.in.identity, p.out.identity]))).not.toContain(K(2).slice(0, 16));
  });

  it('refuses a KEYMAT used by two SA halves, naming both', () => {
    const cfg = config((c) => (c.peers[0].staticSas[1].out.keymat = K(1)));
    expect(keymatProblems(planStaticSas(cfg, true))).toEqual([
      {
        path: 'peers[0].staticSas[1].out.keymat',
        message: 'the same KEYMAT as peers[0].staticSas[0].in.keymat is not valid: expected a distinct key per SA (two SAs under one key would repeat AES-GCM/ChaCha20 nonces)',
      },
    ]);
    expect(() => checkKeymats('/etc/sectunnel/hv1.json', planStaticSas(cfg, true))).toThrow(ConfigError);
    expect(() => checkKeymats('x', planStaticSas(config(), true))).not.toThrow();
  });

  it('installs a pair: SPI route with the label mask, outbound slot per label', () => {
    const cfg = config((c) => (c.peers[0].staticSas = [{ labels: ['red', 'blue'], in: { spi: 4097, keymat: K(1) }, out: { spi: 8193, keymat: K(2) } }]));
    const t = buildTables(cfg, { staticSas: true });
    const [plan] = planStaticSas(cfg, true);
    const common = { algorithm: plan!.algorithm, labels: plan!.labels, nowMs: 0 };
    const inbound = new InboundSa({ ...common, spi: plan!.in.spi, keymat: plan!.in.keymat.slice() });
    const outbound = new OutboundSa({ ...common, spi: plan!.out.spi, keymat: plan!.out.keymat.slice() });
    installSaPair(t, plan!, inbound, outbound);
    const route = t.inbound(4097)!;
    expect(route.sa).toBe(inbound);
    expect(route.peerId).toBe(0);
    expect([...route.labelMask]).toEqual([1, 1]);
    expect(t.outbound(0, 0)).toBe(outbound);
    expect(t.outbound(0, 1)).toBe(outbound);
    expect(t.outbound(1, 0)).toBe(null);
    inbound.destroy();
    outbound.destroy();
  });
});
