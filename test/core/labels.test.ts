import { describe, expect, it } from 'vitest';
import {
  DomainTable,
  LabelConfigError,
  LabelTable,
  NO_DOMAIN,
  NO_LABEL,
  defaultGreKey,
  macAt,
  type DomainSpec,
  type LabelSpec,
} from '../../src/core/labels.js';

/** Runs `fn`, expects a LabelConfigError, returns it. */
function configError(fn: () => unknown): LabelConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LabelConfigError);
    return e as LabelConfigError;
  }
  throw new Error('expected a LabelConfigError, nothing was thrown');
}

const RED: LabelSpec = { name: 'red', vlan: 100 };
const BLUE: LabelSpec = { name: 'blue', vlan: 200, greKey: 0xc8 };

describe('LabelTable validation', () => {
  it('builds labels with ids in order and the default key vlan << 8', () => {
    const t = new LabelTable([RED, BLUE, { name: 'plain', vlan: 300, greKey: null, context: 'system_u:system_r:svirt_t:s0:c1,c2' }]);
    expect(t.size).toBe(3);
    expect(t.get(0)).toEqual({ id: 0, name: 'red', vlan: 100, greKey: 0x6400, context: null });
    expect(t.get(1)!.greKey).toBe(0xc8);
    expect(t.get(2)).toEqual({ id: 2, name: 'plain', vlan: 300, greKey: null, context: 'system_u:system_r:svirt_t:s0:c1,c2' });
    expect(t.idOf('blue')).toBe(1);
    expect(t.idOf('green')).toBe(NO_LABEL);
    expect(defaultGreKey(4094)).toBe(0xffe00);
  });

  const cases: { what: string; specs: unknown[]; code: string; message: string }[] = [
    { what: 'vlan above 4094', specs: [RED, BLUE, { name: 'x', vlan: 5000 }], code: 'label_vlan_invalid', message: 'labels[2].vlan: 5000 is outside 1..4094 (label "x")' },
    { what: 'vlan 0 (priority tag)', specs: [{ name: 'x', vlan: 0 }], code: 'label_vlan_invalid', message: 'labels[0].vlan: 0 is outside 1..4094 (label "x")' },
    { what: 'vlan as a string', specs: [{ name: 'x', vlan: '100' }], code: 'label_vlan_invalid', message: 'labels[0].vlan: "100" is not an integer in 1..4094 (label "x")' },
    { what: 'fractional vlan', specs: [{ name: 'x', vlan: 10.5 }], code: 'label_vlan_invalid', message: 'labels[0].vlan: 10.5 is not an integer in 1..4094 (label "x")' },
    { what: 'duplicate name', specs: [RED, { name: 'red', vlan: 101 }], code: 'label_name_duplicate', message: 'labels[1].name: "red" is already the name of labels[0]' },
    { what: 'empty name', specs: [{ name: '', vlan: 1 }], code: 'label_name_invalid', message: 'labels[0].name: "" is not a valid label name' },
    { what: 'name with spaces', specs: [{ name: 'red team', vlan: 1 }], code: 'label_name_invalid', message: 'labels[0].name: "red team" is not a valid label name' },
    { what: 'name with an arrow', specs: [{ name: 'a->b', vlan: 1 }], code: 'label_name_invalid', message: 'labels[0].name: "a->b" is not a valid label name' },
    { what: 'negative key', specs: [{ name: 'x', vlan: 1, greKey: -1 }], code: 'label_gre_key_invalid', message: 'labels[0].greKey: -1 is not a 32-bit key' },
    { what: 'key above 32 bits', specs: [{ name: 'x', vlan: 1, greKey: 2 ** 32 }], code: 'label_gre_key_invalid', message: 'labels[0].greKey: 4294967296 is not a 32-bit key' },
    { what: 'key as hex text', specs: [{ name: 'x', vlan: 1, greKey: '0x10' }], code: 'label_gre_key_invalid', message: 'labels[0].greKey: "0x10" is not a 32-bit key' },
    { what: 'context with three parts', specs: [{ name: 'x', vlan: 1, context: 'system_u:system_r:svirt_t' }], code: 'label_context_invalid', message: 'labels[0].context: "system_u:system_r:svirt_t" is not an SELinux context' },
    { what: 'context with a bad level', specs: [{ name: 'x', vlan: 1, context: 'u:r:t:secret' }], code: 'label_context_invalid', message: 'labels[0].context: "u:r:t:secret" is not an SELinux context' },
    {
      what: 'same vlan, both default keys',
      specs: [RED, BLUE, { name: 'red2', vlan: 100 }],
      code: 'label_wire_id_duplicate',
      message: 'labels[2].vlan: (greKey 0x6400, vlan 100) already names labels[0] ("red")',
    },
    {
      what: 'same vlan, same explicit key',
      specs: [BLUE, { name: 'blue2', vlan: 200, greKey: 0xc8 }],
      code: 'label_wire_id_duplicate',
      message: 'labels[1].greKey: (greKey 0xc8, vlan 200) already names labels[0] ("blue")',
    },
    {
      what: 'same vlan, explicit key equal to the default of the other',
      specs: [RED, { name: 'red2', vlan: 100, greKey: 0x6400 }],
      code: 'label_wire_id_duplicate',
      message: 'labels[1].greKey: (greKey 0x6400, vlan 100) already names labels[0] ("red")',
    },
    {
      what: 'same vlan, both without a key',
      specs: [{ name: 'a', vlan: 7, greKey: null }, { name: 'b', vlan: 7, greKey: null }],
      code: 'label_wire_id_duplicate',
      message: 'labels[1].greKey: (no GRE key, vlan 7) already names labels[0] ("a")',
    },
    { what: 'an entry that is not an object', specs: [RED, 'blue'], code: 'label_list_invalid', message: 'labels[1]: "blue" is not an object' },
  ];
  for (const c of cases) {
    it(`rejects ${c.what} with ${c.code}`, () => {
      const e = configError(() => new LabelTable(c.specs as LabelSpec[]));
      expect(e.code).toBe(c.code);
      expect(e.message.startsWith(c.message), e.message).toBe(true);
    });
  }

  it('accepts MLS ranges in the context', () => {
    const t = new LabelTable([{ name: 'x', vlan: 1, context: 'system_u:object_r:svirt_image_t:s0-s15:c0.c1023' }]);
    expect(t.get(0)!.context).toBe('system_u:object_r:svirt_image_t:s0-s15:c0.c1023');
  });

  it('accepts a shared VLAN when keys differ, including a keyless label and key 0', () => {
    const t = new LabelTable([
      { name: 'a', vlan: 10 },
      { name: 'b', vlan: 10, greKey: 1 },
      { name: 'c', vlan: 10, greKey: null },
      { name: 'd', vlan: 10, greKey: 0 },
      { name: 'e', vlan: 11, greKey: 1 },
    ]);
    expect(t.size).toBe(5);
  });
});

describe('LabelTable.lookup (receive path)', () => {
  const t = new LabelTable([
    { name: 'a', vlan: 10 },
    { name: 'b', vlan: 10, greKey: 1 },
    { name: 'c', vlan: 10, greKey: null },
    { name: 'd', vlan: 10, greKey: 0 },
    { name: 'e', vlan: 11, greKey: 1 },
    { name: 'f', vlan: 4094, greKey: 0xffffffff },
    { name: 'g', vlan: 1, greKey: null },
  ]);

  it('finds each label by its (key, vlan) pair', () => {
    expect(t.lookup(0xa00, 10)).toBe(0);
    expect(t.lookup(1, 10)).toBe(1);
    expect(t.lookup(null, 10)).toBe(2);
    expect(t.lookup(0, 10)).toBe(3);
    expect(t.lookup(1, 11)).toBe(4);
    expect(t.lookup(0xffffffff, 4094)).toBe(5);
    expect(t.lookup(null, 1)).toBe(6);
  });

  it('finds nothing for a key of another VLAN, a missing key, or a VLAN out of range', () => {
    expect(t.lookup(0xa00, 11)).toBe(NO_LABEL); // key of 'a' on the wrong VLAN
    expect(t.lookup(null, 11)).toBe(NO_LABEL); // 'e' has a key: a keyless frame is not 'e'
    expect(t.lookup(2, 10)).toBe(NO_LABEL);
    expect(t.lookup(0, 1)).toBe(NO_LABEL); // 'g' is keyless: key 0 is not "no key"
    expect(t.lookup(0xa00, 0)).toBe(NO_LABEL);
    expect(t.lookup(null, 4095)).toBe(NO_LABEL);
    expect(t.lookup(1, -1)).toBe(NO_LABEL);
    expect(t.lookup(-1, 10)).toBe(NO_LABEL);
    expect(t.lookup(2 ** 32 + 1, 10)).toBe(NO_LABEL);
  });

  it('agrees with a naive search over random tables', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 50; round++) {
      const specs: LabelSpec[] = [];
      const seen = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const vlan = 1 + rnd(5);
        const r = rnd(4);
        const greKey = r === 0 ? null : r === 1 ? undefined : rnd(4);
        const k = `${greKey === undefined ? vlan << 8 : greKey}/${vlan}`;
        if (seen.has(k)) continue;
        seen.add(k);
        specs.push({ name: `l${i}`, vlan, greKey });
      }
      const table = new LabelTable(specs);
      for (let vlan = 0; vlan <= 6; vlan++) {
        for (const key of [null, 0, 1, 2, 3, 0x100, 0x200, 0x300, 0x400, 0x500]) {
          const want = table.labels.find((l) => l.vlan === vlan && l.greKey === key)?.id ?? NO_LABEL;
          expect(table.lookup(key, vlan)).toBe(want);
        }
      }
    }
  });
});

describe('DomainTable', () => {
  const labels = new LabelTable([RED, BLUE]);
  const specs: DomainSpec[] = [
    { name: 'web1', label: 'red', macs: ['52:54:00:00:00:01', '52:54:00:00:00:11'], interface: 'vnet0' },
    { name: 'db1', label: 'blue', macs: ['52-54-00-00-00-02'], interface: 'vnet1' },
    { name: 'web2', label: 'red', macs: ['52:54:00:AB:CD:EF'] },
  ];
  const t = new DomainTable(specs, labels);
  const frame = (mac: string, off = 0) => {
    const b = new Uint8Array(off + 6 + 3).fill(0xa5);
    b.set(mac.split(':').map((x) => parseInt(x, 16)), off);
    return b;
  };

  it('indexes domains by name, interface and label', () => {
    expect(t.idOf('db1')).toBe(1);
    expect(t.idOf('nope')).toBe(NO_DOMAIN);
    expect(t.idOfInterface('vnet0')).toBe(0);
    expect(t.idOfInterface('vnet9')).toBe(NO_DOMAIN);
    expect(t.get(2)).toEqual({ id: 2, name: 'web2', labelId: 0, macs: [0x525400abcdef], interface: null });
    expect(t.domainsOfLabel(0)).toEqual([0, 2]);
    expect(t.domainsOfLabel(1)).toEqual([1]);
    expect(t.domainsOfLabel(7)).toEqual([]);
    expect([...t.labelOf]).toEqual([0, 1, 0]);
  });

  it('finds the owner of a MAC at any offset', () => {
    for (let off = 0; off < 8; off++) {
      expect(t.ownerOfMac(frame('52:54:00:00:00:01', off), off)).toBe(0);
      expect(t.ownerOfMac(frame('52:54:00:00:00:11', off), off)).toBe(0);
      expect(t.ownerOfMac(frame('52:54:00:00:00:02', off), off)).toBe(1);
      expect(t.ownerOfMac(frame('52:54:00:ab:cd:ef', off), off)).toBe(2);
      expect(t.ownerOfMac(frame('52:54:00:00:00:03', off), off)).toBe(NO_DOMAIN);
      expect(t.ownerOfMac(frame('ff:ff:ff:ff:ff:ff', off), off)).toBe(NO_DOMAIN);
    }
    expect(t.ownerOfMac(frame('52:54:00:00:00:01'), 4)).toBe(NO_DOMAIN); // would read past the end
  });

  it('checks that a domain owns a source MAC', () => {
    expect(t.ownsMac(0, frame('52:54:00:00:00:11', 3), 3)).toBe(true);
    expect(t.ownsMac(2, frame('52:54:00:ab:cd:ef'), 0)).toBe(true);
    expect(t.ownsMac(0, frame('52:54:00:00:00:02'), 0)).toBe(false); // db1's MAC
    expect(t.ownsMac(1, frame('52:54:00:00:00:01'), 0)).toBe(false);
    expect(t.ownsMac(5, frame('52:54:00:00:00:01'), 0)).toBe(false);
    expect(t.ownsMac(-1, frame('52:54:00:00:00:01'), 0)).toBe(false);
  });

  it('macAt reads 48 bits, first octet most significant', () => {
    expect(macAt(frame('ff:ff:ff:ff:ff:fe', 2), 2)).toBe(0xfffffffffffe);
    expect(macAt(frame('00:00:00:00:00:01'), 0)).toBe(1);
  });

  const bad: { what: string; specs: unknown[]; code: string; message: string }[] = [
    { what: 'unknown label', specs: [{ name: 'x', label: 'green', macs: ['02:00:00:00:00:01'] }], code: 'domain_label_unknown', message: 'domains[0].label: "green" is not a configured label (labels: red, blue)' },
    { what: 'duplicate name', specs: [specs[0], { ...specs[1], name: 'web1' }], code: 'domain_name_duplicate', message: 'domains[1].name: "web1" is already the name of domains[0]' },
    { what: 'malformed MAC', specs: [{ name: 'x', label: 'red', macs: ['02:00:00:00:01'] }], code: 'domain_mac_invalid', message: 'domains[0].macs[0]: "02:00:00:00:01" is not a MAC address' },
    { what: 'multicast MAC', specs: [{ name: 'x', label: 'red', macs: ['02:00:00:00:00:01', '01:00:5e:00:00:01'] }], code: 'domain_mac_invalid', message: 'domains[0].macs[1]: "01:00:5e:00:00:01" is a group' },
    { what: 'all-zero MAC', specs: [{ name: 'x', label: 'red', macs: ['00:00:00:00:00:00'] }], code: 'domain_mac_invalid', message: 'domains[0].macs[0]: "00:00:00:00:00:00" is the all-zero MAC' },
    { what: 'empty MAC list', specs: [{ name: 'x', label: 'red', macs: [] }], code: 'domain_macs_invalid', message: 'domains[0].macs: [] is not a non-empty list' },
    {
      what: 'MAC owned by two domains',
      specs: [specs[0], { name: 'y', label: 'blue', macs: ['52:54:00:00:00:11'] }],
      code: 'domain_mac_duplicate',
      message: 'domains[1].macs[0]: 52:54:00:00:00:11 is already owned by domains[0].macs[1] ("web1")',
    },
    { what: 'shared interface', specs: [specs[0], { ...specs[1], interface: 'vnet0' }], code: 'domain_interface_duplicate', message: 'domains[1].interface: "vnet0" is already the interface of domains[0]' },
    { what: 'interface name too long', specs: [{ ...specs[0], interface: 'a-very-long-ifname' }], code: 'domain_interface_invalid', message: 'domains[0].interface: "a-very-long-ifname" is not an interface name' },
  ];
  for (const c of bad) {
    it(`rejects ${c.what} with ${c.code}`, () => {
      const e = configError(() => new DomainTable(c.specs as DomainSpec[], labels));
      expect(e.code).toBe(c.code);
      expect(e.message.startsWith(c.message), e.message).toBe(true);
    });
  }
});
