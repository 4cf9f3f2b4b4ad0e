// Conformance cases for `sectunnel replay --direction decap`: each case is a REPLAY.json, an
// input pcap of outer packets, the expected verdict of every packet and the expected
// OUT.pcap, all known by construction (craft.ts). Every receive-side reason code of
// DESIGN.md appears at least once (the send-side ones, guest_vlan_tag, spoofed_src_mac
// and pool_exhausted, are covered by test/core/pipeline.test.ts).
import { describe, expect, it } from 'vitest';
import { DROP_REASONS, DISCARD_REASONS } from '../../src/core/reasons.js';
import { replay, type ReplayVerdict } from '../helpers/replay.js';
import {
  craftEsp,
  frame,
  gre,
  ipv4,
  ipv6,
  keymatFor,
  MACS,
  toHex,
  udp4Datagram,
  untag,
  type CraftSa,
} from './craft.js';

const RED: CraftSa = { spi: 0x1001, alg: 'aes-gcm-256', keymat: keymatFor('aes-gcm-256', 1), esn: true };
const BLUE: CraftSa = { spi: 0x1002, alg: 'chacha20-poly1305', keymat: keymatFor('chacha20-poly1305', 2), esn: false };
const PLAIN: CraftSa = { spi: 0x1003, alg: 'aes-gcm-128', keymat: keymatFor('aes-gcm-128', 3), esn: false };
const RED_KEY = 100 << 8;
const BLUE_KEY = 0xb10e;
const B_BLUE_MAC = [0x02, 0, 0, 0, 0x0b, 0x02];

function sa(s: CraftSa, labels: string[], encapsulation: 'udp' | 'esp' = 'udp') {
  return { spi: `0x${s.spi.toString(16)}`, direction: 'in', peer: '192.0.2.1', algorithm: s.alg, keymat: toHex(s.keymat), esn: s.esn, encapsulation, labels };
}

const BASE = {
  local: { ipv4: '192.0.2.2', ipv6: '2001:db8::2' },
  replayWindow: 64,
  labels: [
    { name: 'red', vlan: 100 },
    { name: 'blue', vlan: 200, greKey: BLUE_KEY },
    { name: 'plain', vlan: 300, greKey: null },
  ],
  sas: [sa(RED, ['red']), sa(BLUE, ['blue']), sa(PLAIN, ['plain'])],
};
const WITH_DOMAINS = {
  ...BASE,
  domains: [
    { name: 'b-red', label: 'red', macs: ['02:00:00:00:0b:01'] },
    { name: 'b-blue', label: 'blue', macs: ['02:00:00:00:0b:02'] },
  ],
};

// Inner frames (tagged as inside GRE) and the ESP packets carrying them.
const redFrame = frame([[0x8100, 100]], 46, 1);
const blueFrame = frame([[0x8100, 200]], 200, 2);
const plainFrame = frame([[0x8100, 300]], 1, 3);
const redEsp = (seq: number, f = redFrame) => craftEsp(RED, seq, gre(RED_KEY, f));

interface Expect {
  v: ReplayVerdict['verdict'];
  reason?: string;
  /** Delivered frames (hex). */
  d?: Uint8Array[];
}
const ok = (...d: Uint8Array[]): Expect => ({ v: 'accept', d });
const drop = (reason: string): Expect => ({ v: 'drop', reason });
const discard = (reason: string): Expect => ({ v: 'discard', reason });
const pending: Expect = { v: 'pending' };

interface Case {
  name: string;
  config: unknown;
  packets: Uint8Array[];
  expect: Expect[];
  args?: string[];
}

// An ESP-in-UDP datagram split into two IPv4 fragments (first 64 octets, then the rest).
const fragDatagram = udp4Datagram(redEsp(40));
const frag1 = ipv4(fragDatagram.subarray(0, 64), { frag: { offsetBytes: 0, more: true, id: 77 } });
const frag2 = ipv4(fragDatagram.subarray(64), { frag: { offsetBytes: 64, more: false, id: 77 } });
const overlap2 = ipv4(fragDatagram.subarray(56), { frag: { offsetBytes: 56, more: false, id: 78 } });
const overlap1 = ipv4(fragDatagram.subarray(0, 64), { frag: { offsetBytes: 0, more: true, id: 78 } });

// A flipped ciphertext bit, made before the UDP checksum is computed (else: not_esp).
const tampered = (() => {
  const esp = redEsp(30);
  esp[esp.length - 20] ^= 0x01;
  return ipv4(esp);
})();

const CASES: Case[] = [
  {
    name: 'each label, IPv4 and IPv6, UDP and raw ESP',
    config: BASE,
    packets: [ipv4(redEsp(1)), ipv4(craftEsp(BLUE, 1, gre(BLUE_KEY, blueFrame))), ipv6(craftEsp(PLAIN, 1, gre(null, plainFrame))), ipv4(redEsp(2), { udp: false }), ipv6(redEsp(3), { udp: false })],
    expect: [ok(untag(redFrame)), ok(untag(blueFrame)), ok(untag(plainFrame)), ok(untag(redFrame)), ok(untag(redFrame))],
  },
  {
    name: '--keep-tag delivers the frame as it was inside GRE',
    config: BASE,
    args: ['--keep-tag'],
    packets: [ipv4(redEsp(1))],
    expect: [ok(redFrame)],
  },
  {
    name: 'truncated and unknown SPI',
    config: BASE,
    packets: [ipv4(Uint8Array.of(0, 0, 0x10, 1, 0, 0)), ipv4(redEsp(1).subarray(0, 30)), ipv4(craftEsp({ ...RED, spi: 0x9999 }, 1, gre(RED_KEY, redFrame)))],
    expect: [drop('truncated'), drop('truncated'), drop('unknown_spi')],
  },
  {
    name: 'sequence zero, duplicates, too old, tampering (window 64)',
    config: BASE,
    packets: [
      ipv4(craftEsp(PLAIN, 0, gre(null, plainFrame))),
      ipv4(craftEsp(PLAIN, 5, gre(null, plainFrame))),
      ipv4(craftEsp(PLAIN, 5, gre(null, plainFrame))),
      ipv4(craftEsp(PLAIN, 100, gre(null, plainFrame))),
      ipv4(craftEsp(PLAIN, 10, gre(null, plainFrame))),
      tampered,
      ipv4(redEsp(30)),
    ],
    expect: [drop('seq_zero'), ok(untag(plainFrame)), drop('replay_duplicate'), ok(untag(plainFrame)), drop('replay_too_old'), drop('icv_mismatch'), ok(untag(redFrame))],
  },
  {
    name: 'ESP trailer: pad length, padding content, next header, dummy packet',
    config: BASE,
    packets: [
      ipv4(craftEsp(RED, 1, gre(RED_KEY, redFrame), { padLength: 250 })),
      ipv4(craftEsp(RED, 2, gre(RED_KEY, frame([[0x8100, 100]], 45, 1)), { pad: [1, 2, 9] })),
      ipv4(craftEsp(RED, 3, gre(RED_KEY, redFrame), { nextHeader: 4 })),
      ipv4(craftEsp(RED, 4, new Uint8Array(8), { nextHeader: 59 })),
    ],
    expect: [drop('bad_pad_length'), drop('bad_padding_content'), drop('unexpected_next_header'), discard('dummy_packet')],
  },
  {
    name: 'GRE: version, reserved bits, protocol, checksum, sequence, unknown key',
    config: BASE,
    packets: [
      ipv4(craftEsp(RED, 1, gre(RED_KEY, redFrame, { version: 1 }))),
      ipv4(craftEsp(RED, 2, gre(RED_KEY, redFrame, { flags: 0x4000 }))),
      ipv4(craftEsp(RED, 3, gre(RED_KEY, redFrame, { protocol: 0x0800 }))),
      ipv4(craftEsp(RED, 4, gre(RED_KEY, redFrame, { checksum: 'bad' }))),
      ipv4(craftEsp(RED, 5, gre(RED_KEY, redFrame, { checksum: 'good' }))),
      ipv4(craftEsp(RED, 6, gre(RED_KEY, redFrame, { sequence: 12345 }))),
      ipv4(craftEsp(RED, 7, gre(0x1234, redFrame))),
      ipv4(craftEsp(RED, 8, gre(null, redFrame))),
    ],
    expect: [drop('gre_malformed'), drop('gre_malformed'), drop('gre_malformed'), drop('gre_checksum'), ok(untag(redFrame)), ok(untag(redFrame)), drop('gre_unknown_key'), drop('gre_unknown_key')],
  },
  {
    name: 'inner frame: untagged, QinQ, too short; label of another SA',
    config: BASE,
    packets: [
      ipv4(redEsp(1, frame([], 46))),
      ipv4(redEsp(2, frame([[0x88a8, 100], [0x8100, 100]], 46))),
      ipv4(craftEsp(RED, 3, gre(RED_KEY, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)))),
      ipv4(craftEsp(RED, 4, gre(BLUE_KEY, blueFrame))),
      ipv4(craftEsp(BLUE, 1, gre(RED_KEY, redFrame))),
    ],
    expect: [drop('inner_untagged'), drop('inner_malformed'), drop('inner_malformed'), drop('label_mismatch'), drop('label_mismatch')],
  },
  {
    name: 'outer: UDP zero checksum over IPv6, other ports and protocols, keepalive, non-ESP marker',
    config: BASE,
    packets: [
      ipv6(redEsp(1), { zeroUdpChecksumV6: true }),
      ipv4(redEsp(2), { dport: 53 }),
      ipv4(new Uint8Array(20), { udp: false, protocol: 6 }),
      Uint8Array.from([...MACS.bcast, ...MACS.guestA, 0x08, 0x06, ...new Uint8Array(28)]),
      ipv4(Uint8Array.of(0xff)),
      ipv4(Uint8Array.of(0, 0, 0, 0, 1, 2, 3, 4)),
      ipv4(redEsp(3)),
    ],
    expect: [drop('udp_zero_checksum_v6'), drop('not_esp'), drop('not_esp'), drop('not_esp'), discard('nat_keepalive'), discard('non_esp_marker'), ok(untag(redFrame))],
  },
  {
    name: 'outer IPv4 fragments: reassembled; overlapping fragments fail',
    config: BASE,
    packets: [frag1, frag2, overlap1, overlap2],
    expect: [pending, ok(untag(redFrame)), pending, drop('reassembly_failed')],
  },
  {
    name: 'domains: delivery by destination MAC, policy_denied across labels, no_route',
    config: WITH_DOMAINS,
    // The plain frame goes to a MAC no domain owns, and no domain has label plain: nowhere to go.
    packets: [ipv4(redEsp(1)), ipv4(redEsp(2, frame([[0x8100, 100]], 46, 1, B_BLUE_MAC))), ipv4(craftEsp(PLAIN, 1, gre(null, frame([[0x8100, 300]], 1, 3, [0x02, 0, 0, 0, 0x0c, 0x01]))))],
    expect: [ok(untag(redFrame)), drop('policy_denied'), drop('no_route')],
  },
  {
    name: 'domains: an explicit one-way rule lets red reach blue',
    config: { ...WITH_DOMAINS, policy: ['allow red -> blue'] },
    packets: [ipv4(redEsp(1, frame([[0x8100, 100]], 46, 1, B_BLUE_MAC))), ipv4(craftEsp(BLUE, 1, gre(BLUE_KEY, frame([[0x8100, 200]], 46, 1, MACS.guestB))))],
    expect: [ok(untag(frame([[0x8100, 100]], 46, 1, B_BLUE_MAC))), drop('policy_denied')],
  },
];

describe('conformance: replay decap cases', () => {
  it.each(CASES)('$name', async (c) => {
    const r = await replay(c.config, c.packets, c.args ?? []);
    expect(r.status).toBe(0);
    const got = r.verdicts.map((v) => ({ frame: v.frame, v: v.verdict, reason: v.reason, d: v.delivered }));
    const want = c.expect.map((e, i) => ({ frame: i + 1, v: e.v, reason: e.reason ?? null, d: (e.d ?? []).map(toHex) }));
    expect(got, `replay files in ${r.dir} (kept with ST_KEEP_REPLAY_FILES=1)`).toEqual(want);
    expect(r.out.map(toHex)).toEqual(c.expect.flatMap((e) => (e.d ?? []).map(toHex)));
  });

  it('covers every receive-side reason code of DESIGN.md', () => {
    const sendSide = new Set(['guest_vlan_tag', 'spoofed_src_mac', 'pool_exhausted', 'sa_expired', 'buffer_no_room']);
    const seen = new Set(CASES.flatMap((c) => c.expect.map((e) => e.reason).filter((r): r is string => r !== undefined)));
    const missing = [...DROP_REASONS, ...DISCARD_REASONS].filter((r) => !sendSide.has(r) && !seen.has(r));
    expect(missing).toEqual([]);
  });
});
