import { describe, expect, it } from 'vitest';
import {
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_QINQ,
  ETHERTYPE_VLAN,
} from '../../src/wire/constants.js';
import {
  EthTag,
  EthernetFrame,
  type EthernetRepr,
  emitEthernet,
  ethernetBufferLen,
  insertVlanTag,
  parseEthernet,
  stripVlanTag,
  vlanTci,
} from '../../src/wire/ethernet.js';
import { WireError, wireErrorName } from '../../src/wire/errors.js';
import {
  formatMac,
  isBroadcastMac,
  isMulticastMac,
  macEquals,
  macFromNumber,
  macToNumber,
  parseMac,
  parseMacInto,
} from '../../src/wire/mac.js';
import { FILL, OFFSETS, filled, fuzzInputs, hex, placed, probeIsolated, snapshot, toHex } from '../helpers/hex.js';

// Golden frames built with scapy; decodes are `tshark -r F.pcap -V` (frame section omitted).

// Ethernet II, Src: 02:00:00:00:00:01, Dst: Broadcast (ff:ff:ff:ff:ff:ff)
//     Type: ARP (0x0806)
// Address Resolution Protocol (request)
//     Sender MAC address: 02:00:00:00:00:01, Sender IP address: 10.0.0.1, Target IP address: 10.0.0.2
const UNTAGGED_ARP = hex(`
  ff ff ff ff ff ff 02 00 00 00 00 01 08 06 00 01
  08 00 06 04 00 01 02 00 00 00 00 01 0a 00 00 01
  00 00 00 00 00 00 0a 00 00 02`);

// Ethernet II, Src: 02:00:00:00:00:01, Dst: 02:00:00:00:00:02
//     Type: 802.1Q Virtual LAN (0x8100)
// 802.1Q Virtual LAN, PRI: 5, DEI: 1, ID: 100
//     101. .... .... .... = Priority: Voice, < 10ms latency and jitter (5)
//     ...1 .... .... .... = DEI: Eligible
//     .... 0000 0110 0100 = ID: 100
//     Type: IPv4 (0x0800)
// Internet Protocol Version 4, Src: 10.0.0.1, Dst: 10.0.0.2
// Internet Control Message Protocol, Type: 8 (Echo (ping) request)
const DOT1Q = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 81 00 b0 64
  08 00 45 00 00 1c 00 01 00 00 40 01 66 de 0a 00
  00 01 0a 00 00 02 08 00 f7 ff 00 00 00 00`);

// Ethernet II, Src: 02:00:00:00:00:01, Dst: 02:00:00:00:00:02
//     Type: 802.1ad Provider Bridge (Q-in-Q) (0x88a8)
// IEEE 802.1ad, ID: 200
//     011. .... .... .... = Priority: 3
//     .... 0000 1100 1000 = ID: 200
//     Type: 802.1Q Virtual LAN (0x8100)
// 802.1Q Virtual LAN, PRI: 0, DEI: 0, ID: 100
//     Type: IPv4 (0x0800)
// Internet Protocol Version 4, Src: 10.0.0.1, Dst: 10.0.0.2
const QINQ = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 88 a8 60 c8
  81 00 00 64 08 00 45 00 00 1c 00 01 00 00 40 01
  66 de 0a 00 00 01 0a 00 00 02 08 00 f7 ff 00 00
  00 00`);

// Ethernet II, Src: 02:00:00:00:00:01, Dst: 02:00:00:00:00:02
//     Type: 802.1Q Virtual LAN (0x8100)
// 802.1Q Virtual LAN, PRI: 0, DEI: 0, ID: 7
//     Type: 802.1Q Virtual LAN (0x8100)
// 802.1Q Virtual LAN, PRI: 0, DEI: 0, ID: 4094
//     Type: IPv4 (0x0800)
const STACKED = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 81 00 00 07
  81 00 0f fe 08 00 45 00 00 1c 00 01 00 00 40 01
  66 de 0a 00 00 01 0a 00 00 02 08 00 f7 ff 00 00
  00 00`);

// Ethernet II, Src: 02:00:00:00:00:01, Dst: IPv6mcast_01 (33:33:00:00:00:01)
//     Type: Local Experimental Ethertype 1 (0x88b5)
// Data (4 bytes)
//     Data: 01020304
const UNKNOWN_TYPE = hex(`
  33 33 00 00 00 01 02 00 00 00 00 01 88 b5 01 02
  03 04`);

const GOLDENS = [UNTAGGED_ARP, DOT1Q, QINQ, STACKED, UNKNOWN_TYPE];

const MAC1 = hex('02 00 00 00 00 01');
const MAC2 = hex('02 00 00 00 00 02');

const REPRS: [Uint8Array, EthernetRepr][] = [
  [UNTAGGED_ARP, { dst: hex('ffffffffffff'), src: MAC1, tags: [], etherType: ETHERTYPE_ARP }],
  [DOT1Q, { dst: MAC2, src: MAC1, tags: [{ tpid: 0x8100, vid: 100, pcp: 5, dei: true }], etherType: ETHERTYPE_IPV4 }],
  [
    QINQ,
    {
      dst: MAC2,
      src: MAC1,
      tags: [
        { tpid: 0x88a8, vid: 200, pcp: 3, dei: false },
        { tpid: 0x8100, vid: 100, pcp: 0, dei: false },
      ],
      etherType: ETHERTYPE_IPV4,
    },
  ],
  [
    STACKED,
    {
      dst: MAC2,
      src: MAC1,
      tags: [
        { tpid: 0x8100, vid: 7, pcp: 0, dei: false },
        { tpid: 0x8100, vid: 4094, pcp: 0, dei: false },
      ],
      etherType: ETHERTYPE_IPV4,
    },
  ],
  [UNKNOWN_TYPE, { dst: hex('333300000001'), src: MAC1, tags: [], etherType: 0x88b5 }],
];

const VIEW_FIELDS = [
  'dstOffset',
  'srcOffset',
  'tagKind',
  'tagged',
  'tagCount',
  'outerTpid',
  'outerTci',
  'vid',
  'pcp',
  'dei',
  'innerTpid',
  'innerTci',
  'innerVid',
  'etherType',
  'headerLen',
  'payloadOffset',
  'payloadLen',
] as const;

describe('EthernetFrame view', () => {
  it('deconstructs an untagged, a 802.1Q, a QinQ, a stacked-0x8100 and an unknown-EtherType frame at offsets 0–7', () => {
    const f = new EthernetFrame();
    for (const off of OFFSETS) {
      expect(f.bind(placed(UNTAGGED_ARP, off, 4), off, UNTAGGED_ARP.length)).toBe(0);
      expect(f.dstOffset).toBe(off);
      expect(f.srcOffset).toBe(off + 6);
      expect(formatMac(f.bytes, f.dstOffset)).toBe('ff:ff:ff:ff:ff:ff');
      expect(formatMac(f.bytes, f.srcOffset)).toBe('02:00:00:00:00:01');
      expect([f.tagKind, f.tagged, f.tagCount, f.vid]).toEqual([EthTag.none, false, 0, 0]);
      expect(f.etherType).toBe(ETHERTYPE_ARP);
      expect([f.headerLen, f.payloadOffset, f.payloadLen]).toEqual([14, off + 14, 28]);

      expect(f.bind(placed(DOT1Q, off), off, DOT1Q.length)).toBe(0);
      expect([f.tagKind, f.tagged, f.tagCount, f.outerTpid]).toEqual([EthTag.dot1q, true, 1, ETHERTYPE_VLAN]);
      expect([f.vid, f.pcp, f.dei]).toEqual([100, 5, true]);
      expect(f.etherType).toBe(ETHERTYPE_IPV4);
      expect([f.headerLen, f.payloadOffset, f.payloadLen]).toEqual([18, off + 18, 28]);

      expect(f.bind(placed(QINQ, off), off, QINQ.length)).toBe(0);
      expect([f.tagKind, f.tagCount, f.outerTpid, f.vid, f.pcp]).toEqual([EthTag.qinq, 2, ETHERTYPE_QINQ, 200, 3]);
      expect([f.innerTpid, f.innerVid, f.etherType, f.headerLen]).toEqual([ETHERTYPE_VLAN, 100, ETHERTYPE_IPV4, 22]);

      expect(f.bind(placed(STACKED, off), off, STACKED.length)).toBe(0);
      expect([f.tagKind, f.tagCount, f.vid, f.innerVid, f.etherType]).toEqual([EthTag.qinq, 2, 7, 4094, ETHERTYPE_IPV4]);

      expect(f.bind(placed(UNKNOWN_TYPE, off), off, UNKNOWN_TYPE.length)).toBe(0);
      expect([f.tagKind, f.etherType, f.payloadLen]).toEqual([EthTag.none, 0x88b5, 4]);
    }
  });

  it('reports a lone 802.1ad service tag as QinQ and leaves a third tag as the EtherType', () => {
    const f = new EthernetFrame();
    expect(f.bind(hex('020000000002 020000000001 88a8 0064 0800 4500'), 0, 20)).toBe(0);
    expect([f.tagKind, f.tagged, f.vid, f.etherType]).toEqual([EthTag.qinq, true, 100, ETHERTYPE_IPV4]);
    expect(f.bind(hex('020000000002 020000000001 88a8 0001 8100 0002 8100 0003 0800'), 0, 26)).toBe(0);
    expect([f.tagCount, f.vid, f.innerVid, f.etherType, f.headerLen]).toEqual([2, 1, 2, ETHERTYPE_VLAN, 22]);
  });

  it('checks length: header and every tag must fit (check_len)', () => {
    const f = new EthernetFrame();
    for (const [frame, headerLen] of [
      [UNTAGGED_ARP, 14],
      [DOT1Q, 18],
      [QINQ, 22],
    ] as const) {
      for (let n = 0; n < headerLen; n++) expect(f.bind(frame, 0, n), `${n} octets`).toBe(WireError.truncated);
      expect(f.bind(frame, 0, headerLen)).toBe(0);
      expect(f.payloadLen).toBe(0);
    }
    // A window that claims more than the array holds is truncated too.
    expect(f.bind(DOT1Q, 4, DOT1Q.length)).toBe(WireError.truncated);
  });

  it('never throws or reads outside its window on truncated and random input (seeded)', () => {
    const f = new EthernetFrame();
    const inputs = fuzzInputs(0xe7e7, GOLDENS, 3000, 40);
    let accepted = 0;
    for (const input of inputs) {
      const off = input.length % 8;
      const [a, b] = probeIsolated(input, off, (bytes, o, l) => {
        const err = f.bind(bytes, o, l);
        if (err !== 0) return wireErrorName(err);
        const s = snapshot(f, VIEW_FIELDS);
        expect(f.payloadOffset + f.payloadLen).toBe(o + l);
        expect(f.payloadLen).toBeGreaterThanOrEqual(0);
        return s;
      });
      expect(a).toEqual(b);
      if (typeof a !== 'string') accepted++;
      else expect(a).toBe('truncated');
      const [pa, pb] = probeIsolated(input, off, parseEthernet);
      expect(pa).toEqual(pb);
    }
    expect(accepted).toBeGreaterThan(1000);
  });
});

describe('EthernetRepr', () => {
  it('parses every golden frame at offsets 0–7', () => {
    for (const [frame, repr] of REPRS) {
      for (const off of OFFSETS) expect(parseEthernet(placed(frame, off, 3), off, frame.length)).toEqual(repr);
    }
    expect(parseEthernet(DOT1Q, 0, 17)).toBe(WireError.truncated);
  });

  it('emits every golden header into a 0xa5 buffer at offsets 0–7', () => {
    for (const [frame, repr] of REPRS) {
      const n = ethernetBufferLen(repr);
      for (const off of OFFSETS) {
        const buf = filled(off + n + 4);
        expect(emitEthernet(repr, buf, off)).toBe(n);
        expect(toHex(buf, off, n)).toBe(toHex(frame, 0, n));
        expect([...buf.subarray(0, off), ...buf.subarray(off + n)].every((b) => b === FILL)).toBe(true);
      }
    }
  });

  it('gives the header length as buffer_len: 14 + 4 per tag', () => {
    expect(REPRS.map(([, r]) => ethernetBufferLen(r))).toEqual([14, 18, 22, 22, 14]);
  });

  it('round-trips parse → emit over random tags', () => {
    for (let vid = 0; vid < 4096; vid += 257) {
      const repr: EthernetRepr = { dst: MAC2, src: MAC1, tags: [{ tpid: 0x8100, vid, pcp: vid & 7, dei: (vid & 1) === 1 }], etherType: vid * 16 };
      const buf = filled(18);
      emitEthernet(repr, buf, 0);
      expect(parseEthernet(buf, 0, 18)).toEqual(repr);
    }
  });
});

describe('802.1Q tag insert and strip in place', () => {
  it('constructs the golden tagged frame from the untagged one by inserting into headroom, at offsets 4–11', () => {
    const untagged = new Uint8Array([...DOT1Q.subarray(0, 12), ...DOT1Q.subarray(16)]);
    for (const off of OFFSETS) {
      const start = off + 4;
      const buf = placed(untagged, start, 2);
      expect(insertVlanTag(buf, start, 100, 5, true)).toBe(off);
      expect(toHex(buf, off, DOT1Q.length)).toBe(toHex(DOT1Q));
      expect(buf[off + DOT1Q.length]).toBe(FILL);
      if (off > 0) expect(buf[off - 1]).toBe(FILL);
    }
  });

  it('strips the tag back to the untagged frame; strips the outer tag of QinQ', () => {
    const untagged = new Uint8Array([...DOT1Q.subarray(0, 12), ...DOT1Q.subarray(16)]);
    for (const off of OFFSETS) {
      const buf = placed(DOT1Q, off);
      const start = stripVlanTag(buf, off);
      expect(start).toBe(off + 4);
      expect(toHex(buf, start, untagged.length)).toBe(toHex(untagged));
    }
    const buf = QINQ.slice();
    const start = stripVlanTag(buf, 0);
    const f = new EthernetFrame();
    expect(f.bind(buf, start, buf.length - start)).toBe(0);
    expect([f.tagKind, f.vid, formatMac(buf, f.srcOffset)]).toEqual([EthTag.dot1q, 100, '02:00:00:00:00:01']);
  });

  it('refuses without headroom, without a tag, or past the end of the array', () => {
    expect(insertVlanTag(UNTAGGED_ARP.slice(), 3, 100)).toBe(-1);
    expect(insertVlanTag(filled(18), 4, 100)).toBe(0);
    expect(insertVlanTag(filled(17), 4, 100)).toBe(-1);
    expect(stripVlanTag(UNTAGGED_ARP.slice(), 0)).toBe(-1);
    expect(stripVlanTag(DOT1Q.slice(0, 17), 0)).toBe(-1);
    expect(stripVlanTag(DOT1Q.slice(), -1)).toBe(-1);
  });

  it('builds the TCI from PCP, DEI and VID', () => {
    expect(vlanTci(100, 5, true)).toBe(0xb064);
    expect(vlanTci(4094)).toBe(0x0ffe);
    expect(vlanTci(0x1fff, 9)).toBe(0x2fff); // masked to their widths
  });
});

describe('MAC helpers', () => {
  it('formats and parses "02:00:00:00:00:01"', () => {
    expect(formatMac(hex('0a1b2c3d4e5f'))).toBe('0a:1b:2c:3d:4e:5f');
    expect(formatMac(DOT1Q, 6)).toBe('02:00:00:00:00:01');
    expect(parseMac('0A:1b:2C:3d:4E:5f')).toEqual(hex('0a1b2c3d4e5f'));
    expect(parseMac('0a-1b-2c-3d-4e-5f')).toEqual(hex('0a1b2c3d4e5f'));
    for (const bad of ['', '0a:1b:2c:3d:4e', '0a:1b:2c:3d:4e:5g', '0a:1b-2c:3d:4e:5f', '0a:1b:2c:3d:4e:5f:', '0a1b2c3d4e5f', ' a:1b:2c:3d:4e:5f']) {
      expect(parseMac(bad), bad).toBeNull();
    }
    const out = filled(8);
    expect(parseMacInto('zz:00:00:00:00:00', out, 1)).toBe(false);
    expect(out.every((b) => b === FILL)).toBe(true);
    expect(parseMacInto('02:00:00:00:00:01', out, 1)).toBe(true);
    expect(toHex(out)).toBe('a5020000000001a5');
  });

  it('maps a MAC to a 48-bit number and back', () => {
    expect(macToNumber(hex('ffffffffffff'))).toBe(2 ** 48 - 1);
    expect(macToNumber(hex('020000000001'))).toBe(0x0200_0000_0001);
    expect(macToNumber(hex('00 00 80 00 00 00'))).toBe(0x8000_0000);
    expect(macToNumber(DOT1Q, 6)).toBe(0x0200_0000_0001);
    const out = filled(6);
    for (const n of [0, 1, 0x8000_0000, 0xffff_ffff, 0x1_0000_0000, 0x0200_0000_0001, 2 ** 48 - 1]) {
      macFromNumber(n, out, 0);
      expect(macToNumber(out, 0)).toBe(n);
    }
  });

  it('classifies group, broadcast and equal addresses', () => {
    expect(isMulticastMac(UNKNOWN_TYPE, 0)).toBe(true);
    expect(isMulticastMac(UNTAGGED_ARP, 0)).toBe(true);
    expect(isBroadcastMac(UNTAGGED_ARP, 0)).toBe(true);
    expect(isBroadcastMac(UNKNOWN_TYPE, 0)).toBe(false);
    expect(isMulticastMac(DOT1Q, 0)).toBe(false);
    expect(macEquals(DOT1Q, 6, QINQ, 6)).toBe(true);
    expect(macEquals(DOT1Q, 0, DOT1Q, 6)).toBe(false);
  });
});
