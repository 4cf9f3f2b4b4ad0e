// Cross-check of the emitters against an independent decoder: build sectunnel's
// packet stacks with src/wire emitters only, write them to a pcap (writer in
// test/helpers/hex.ts), and compare tshark's JSON decode field by field. ESP is
// written with NULL encryption and a dummy 16-octet ICV so that tshark
// (esp.enable_null_encryption_decode_heuristic) decodes GRE and the inner frame too.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ESP_ICV_BYTES,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_TEB,
  IP_PROTO_ESP,
  IP_PROTO_GRE,
  IP_PROTO_ICMP,
  IP_PROTO_ICMPV6,
  IP_PROTO_IPV6_FRAGMENT,
  IP_PROTO_UDP,
  UDP_ENCAP_PORT,
} from '../../src/wire/constants.js';
import { EspPacket, EspTrailer, emitEspHeader, emitEspTrailerFields, espPadLength } from '../../src/wire/esp.js';
import { EthTag, EthernetFrame, emitEthernet, insertVlanTag, stripVlanTag } from '../../src/wire/ethernet.js';
import { GrePacket, emitGre, emitGreKeyed } from '../../src/wire/gre.js';
import { emitIcmpv4FragNeeded, emitIcmpv6PacketTooBig } from '../../src/wire/icmp.js';
import { Ipv4Packet, emitIpv4, parseIpv4Address } from '../../src/wire/ipv4.js';
import { Ipv6Packet, emitIpv6, emitIpv6Fragment, parseIpv6Address } from '../../src/wire/ipv6.js';
import { formatMac, parseMac } from '../../src/wire/mac.js';
import { UdpPacket, emitUdpHeader, fillUdpChecksumV4, fillUdpChecksumV6 } from '../../src/wire/udp.js';
import { LINKTYPE_ETHERNET, pcapFile } from '../helpers/hex.js';
import { itWith } from '../helpers/tools.js';

const HOST_MAC_A = parseMac('52:54:00:00:00:01')!;
const HOST_MAC_B = parseMac('52:54:00:00:00:02')!;
const GUEST_MAC_1 = parseMac('02:00:00:00:00:01')!;
const GUEST_MAC_2 = parseMac('02:00:00:00:00:02')!;
const HOST4_A = parseIpv4Address('192.0.2.1')!;
const HOST4_B = parseIpv4Address('192.0.2.2')!;
const HOST6_A = parseIpv6Address('2001:db8::1')!;
const HOST6_B = parseIpv6Address('2001:db8::2')!;
const GUEST4_1 = parseIpv4Address('10.0.0.1')!;
const GUEST4_2 = parseIpv4Address('10.0.0.2')!;
const PAYLOAD = new TextEncoder().encode('hello');
const FRAME_START = 160;

/** A packet under construction: bytes[start, end) of a 512-octet slot. */
interface Built {
  bytes: Uint8Array;
  start: number;
  end: number;
}

/** Guest frame Ethernet/IPv4/UDP 1234→5678 "hello" at FRAME_START, then the label's 802.1Q tag inserted in place. */
function guestFrame(vid: number, pcp: number): Built {
  const bytes = new Uint8Array(512);
  let at = FRAME_START;
  at += emitEthernet({ dst: GUEST_MAC_2, src: GUEST_MAC_1, tags: [], etherType: ETHERTYPE_IPV4 }, bytes, at);
  const ip = at;
  at += emitIpv4({ src: GUEST4_1, dst: GUEST4_2, protocol: IP_PROTO_UDP, payloadLen: 8 + PAYLOAD.length, ttl: 64, identification: 1 }, bytes, at);
  const udp = at;
  at += emitUdpHeader(bytes, at, 1234, 5678, PAYLOAD.length);
  bytes.set(PAYLOAD, at);
  at += PAYLOAD.length;
  fillUdpChecksumV4(bytes, udp, bytes, ip + 12, bytes, ip + 16);
  const start = insertVlanTag(bytes, FRAME_START, vid, pcp);
  return { bytes, start, end: at };
}

/** Prepends GRE (key = vid << 8) and wraps in ESP with NULL encryption: header, trailer (nh 47), dummy ICV c0…cf. */
function sealNull(p: Built, vid: number, spi: number, seq: number): void {
  p.start -= emitGreKeyed(p.bytes, p.start - 8, ETHERTYPE_TEB, vid << 8);
  const pad = espPadLength(p.end - p.start);
  p.end += emitEspTrailerFields(p.bytes, p.end, pad, IP_PROTO_GRE);
  for (let i = 0; i < ESP_ICV_BYTES; i++) p.bytes[p.end + i] = 0xc0 + i;
  p.end += ESP_ICV_BYTES;
  p.start -= emitEspHeader(p.bytes, p.start - 8, spi, seq);
}

/** Outer Ethernet (host A → B). */
function outerEthernet(p: Built, etherType: number): Uint8Array {
  p.start -= 14;
  emitEthernet({ dst: HOST_MAC_B, src: HOST_MAC_A, tags: [], etherType }, p.bytes, p.start);
  return p.bytes.slice(p.start, p.end);
}

/** Ethernet/IPv4/UDP 4500/ESP/GRE/Ethernet/802.1Q(100)/IPv4/UDP. */
function espInUdpV4(): Uint8Array {
  const p = guestFrame(100, 5);
  sealNull(p, 100, 0x00001001, 1);
  p.start -= 8;
  emitUdpHeader(p.bytes, p.start, UDP_ENCAP_PORT, UDP_ENCAP_PORT, p.end - p.start - 8);
  const udp = p.start;
  p.start -= 20;
  emitIpv4({ src: HOST4_A, dst: HOST4_B, protocol: IP_PROTO_UDP, payloadLen: p.end - p.start - 20, ttl: 64, identification: 0x1234, dontFragment: true }, p.bytes, p.start);
  fillUdpChecksumV4(p.bytes, udp, p.bytes, p.start + 12, p.bytes, p.start + 16);
  return outerEthernet(p, ETHERTYPE_IPV4);
}

/** Ethernet/IPv6/ESP (raw, next header 50)/GRE/Ethernet/802.1Q(200)/IPv4/UDP. */
function rawEspV6(): Uint8Array {
  const p = guestFrame(200, 0);
  sealNull(p, 200, 0x00002002, 7);
  p.start -= 40;
  emitIpv6({ src: HOST6_A, dst: HOST6_B, nextHeader: IP_PROTO_ESP, payloadLen: p.end - p.start - 40, hopLimit: 64, flowLabel: 0xbeef }, p.bytes, p.start);
  return outerEthernet(p, ETHERTYPE_IPV6);
}

/** Ethernet/IPv4/GRE (checksum, key, sequence)/Ethernet/802.1Q(300)/IPv4/UDP: a plain gretap frame. */
function gretapV4(): Uint8Array {
  const p = guestFrame(300, 3);
  const repr = { protocolType: ETHERTYPE_TEB, key: 300 << 8, sequence: 42, checksum: true };
  p.start -= 16;
  emitGre(repr, p.bytes, p.start, p.end - p.start - 16);
  p.start -= 20;
  emitIpv4({ src: HOST4_A, dst: HOST4_B, protocol: IP_PROTO_GRE, payloadLen: p.end - p.start - 20, ttl: 64 }, p.bytes, p.start);
  return outerEthernet(p, ETHERTYPE_IPV4);
}

/** Ethernet/IPv4/ICMP fragmentation needed (MTU 1400) quoting the IPv4 packet of `frame`. */
function fragNeeded(frame: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(14 + 20 + 8 + frame.length);
  const n = emitIcmpv4FragNeeded(bytes, 34, 1400, frame, 14, frame.length - 14);
  emitIpv4({ src: HOST4_B, dst: HOST4_A, protocol: IP_PROTO_ICMP, payloadLen: n, ttl: 64 }, bytes, 14);
  emitEthernet({ dst: HOST_MAC_A, src: HOST_MAC_B, tags: [], etherType: ETHERTYPE_IPV4 }, bytes, 0);
  return bytes.slice(0, 34 + n);
}

/** Ethernet/IPv6/ICMPv6 packet too big (MTU 1280) quoting the IPv6 packet of `frame`. */
function packetTooBig(frame: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(14 + 40 + 8 + frame.length);
  const n = emitIcmpv6PacketTooBig(bytes, 54, 1280, frame, 14, frame.length - 14, HOST6_B, 0, HOST6_A, 0);
  emitIpv6({ src: HOST6_B, dst: HOST6_A, nextHeader: IP_PROTO_ICMPV6, payloadLen: n, hopLimit: 64 }, bytes, 14);
  emitEthernet({ dst: HOST_MAC_A, src: HOST_MAC_B, tags: [], etherType: ETHERTYPE_IPV6 }, bytes, 0);
  return bytes.slice(0, 54 + n);
}

/** Ethernet/IPv6/fragment header (offset 1232, M, id 0xabcdef01)/16 octets of ESP fragment data. */
function ipv6Fragment(): Uint8Array {
  const bytes = new Uint8Array(14 + 40 + 8 + 16).fill(0x5a);
  emitEthernet({ dst: HOST_MAC_B, src: HOST_MAC_A, tags: [], etherType: ETHERTYPE_IPV6 }, bytes, 0);
  emitIpv6({ src: HOST6_A, dst: HOST6_B, nextHeader: IP_PROTO_IPV6_FRAGMENT, payloadLen: 24, hopLimit: 64 }, bytes, 14);
  emitIpv6Fragment({ nextHeader: IP_PROTO_ESP, fragmentOffsetBytes: 1232, moreFragments: true, identification: 0xabcdef01 }, bytes, 54);
  return bytes;
}

/** A QinQ frame: 802.1ad service tag 3000 (PCP 6) over customer tag 100, IPv4 header only. */
function qinq(): Uint8Array {
  const bytes = new Uint8Array(22 + 20);
  emitEthernet(
    {
      dst: GUEST_MAC_2,
      src: GUEST_MAC_1,
      tags: [
        { tpid: 0x88a8, vid: 3000, pcp: 6, dei: true },
        { tpid: 0x8100, vid: 100, pcp: 0, dei: false },
      ],
      etherType: ETHERTYPE_IPV4,
    },
    bytes,
    0,
  );
  emitIpv4({ src: GUEST4_1, dst: GUEST4_2, protocol: 253, payloadLen: 0, ttl: 1 }, bytes, 22);
  return bytes;
}

/** Checks the inner guest frame (tagged) at bytes[off, off + len) with our views; returns the VID. */
function checkInner(bytes: Uint8Array, off: number, len: number): number {
  const eth = new EthernetFrame();
  expect(eth.bind(bytes, off, len)).toBe(0);
  expect([eth.tagKind, formatMac(bytes, eth.srcOffset), eth.etherType]).toEqual([EthTag.dot1q, '02:00:00:00:00:01', ETHERTYPE_IPV4]);
  const vid = eth.vid;
  const copy = bytes.slice(0, off + len);
  const start = stripVlanTag(copy, off);
  expect(eth.bind(copy, start, off + len - start)).toBe(0);
  expect([eth.tagKind, eth.etherType]).toEqual([EthTag.none, ETHERTYPE_IPV4]);
  const ip = new Ipv4Packet();
  expect(ip.bind(copy, eth.payloadOffset, eth.payloadLen)).toBe(0);
  const udp = new UdpPacket();
  expect(udp.bind(copy, ip.payloadOffset, ip.payloadLen)).toBe(0);
  expect(udp.checkChecksumV4(copy, ip.srcOffset, copy, ip.dstOffset)).toBe(0);
  expect(new TextDecoder().decode(copy.subarray(udp.payloadOffset, udp.payloadOffset + udp.payloadLen))).toBe('hello');
  return vid;
}

/** Opens NULL ESP at bytes[off, off + len) with our views: returns [spi, seq, GRE key, inner VID]. */
function openNull(bytes: Uint8Array, off: number, len: number): number[] {
  const esp = new EspPacket();
  expect(esp.bind(bytes, off, len)).toBe(0);
  const trailer = new EspTrailer();
  expect(trailer.bind(bytes, esp.payloadOffset, esp.payloadLen - ESP_ICV_BYTES)).toBe(0);
  expect(trailer.nextHeader).toBe(IP_PROTO_GRE);
  const gre = new GrePacket();
  expect(gre.bind(bytes, trailer.payloadOffset, trailer.payloadLen)).toBe(0);
  expect(gre.protocolType).toBe(ETHERTYPE_TEB);
  return [esp.spi, esp.sequence, gre.key, checkInner(bytes, gre.payloadOffset, gre.payloadLen)];
}

describe('emitted stacks decode with our own views', () => {
  it('IPv4/UDP 4500/ESP/GRE/802.1Q/Ethernet/IPv4/UDP', () => {
    const f = espInUdpV4();
    const eth = new EthernetFrame();
    expect(eth.bind(f, 0, f.length)).toBe(0);
    const ip = new Ipv4Packet();
    expect(ip.bind(f, eth.payloadOffset, eth.payloadLen)).toBe(0);
    expect([ip.protocol, ip.dontFragment, ip.identification]).toEqual([IP_PROTO_UDP, true, 0x1234]);
    const udp = new UdpPacket();
    expect(udp.bind(f, ip.payloadOffset, ip.payloadLen)).toBe(0);
    expect([udp.dstPort, udp.checkChecksumV4(f, ip.srcOffset, f, ip.dstOffset)]).toEqual([4500, 0]);
    expect(openNull(f, udp.payloadOffset, udp.payloadLen)).toEqual([0x1001, 1, 100 << 8, 100]);
  });

  it('IPv6/ESP/GRE/802.1Q/Ethernet/IPv4/UDP', () => {
    const f = rawEspV6();
    const ip6 = new Ipv6Packet();
    expect(ip6.bind(f, 14, f.length - 14)).toBe(0);
    expect([ip6.upperProtocol, ip6.flowLabel]).toEqual([IP_PROTO_ESP, 0xbeef]);
    expect(openNull(f, ip6.upperOffset, ip6.upperLen)).toEqual([0x2002, 7, 200 << 8, 200]);
  });

  it('IPv4/GRE with checksum, key and sequence/802.1Q/Ethernet/IPv4/UDP', () => {
    const f = gretapV4();
    const ip = new Ipv4Packet();
    expect(ip.bind(f, 14, f.length - 14)).toBe(0);
    const gre = new GrePacket();
    expect(gre.bind(f, ip.payloadOffset, ip.payloadLen)).toBe(0); // checksum verified
    expect([gre.hasChecksum, gre.key, gre.sequence]).toEqual([true, 300 << 8, 42]);
    expect(checkInner(f, gre.payloadOffset, gre.payloadLen)).toBe(300);
  });

  it('a UDP checksum over IPv6 is filled and verifies', () => {
    const bytes = new Uint8Array(40 + 8 + 5);
    emitIpv6({ src: HOST6_A, dst: HOST6_B, nextHeader: IP_PROTO_UDP, payloadLen: 13, hopLimit: 64 }, bytes, 0);
    emitUdpHeader(bytes, 40, 4500, 4500, 5);
    bytes.set(PAYLOAD, 48);
    fillUdpChecksumV6(bytes, 40, bytes, 8, bytes, 24);
    const udp = new UdpPacket();
    expect(udp.bind(bytes, 40, 13)).toBe(0);
    expect(udp.checkChecksumV6(bytes, 8, bytes, 24)).toBe(0);
  });
});

/** tshark's JSON for one packet: layer name → object, or an array of objects when the layer repeats. */
type Layers = Record<string, unknown>;

/** The value(s) of a layer as an array. */
function all(layers: Layers, name: string): Record<string, unknown>[] {
  const v = layers[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]) as Record<string, unknown>[];
}

describe('tshark decodes what the emitters build', () => {
  itWith(['tshark'], 'fields of every stack match (tshark -T json)', () => {
    const v4 = espInUdpV4();
    const v6 = rawEspV6();
    const frames = [v4, v6, gretapV4(), fragNeeded(v4), packetTooBig(v6), ipv6Fragment(), qinq()];
    const dir = mkdtempSync(join(tmpdir(), 'sectunnel-wire-'));
    try {
      const file = join(dir, 'stacks.pcap');
      writeFileSync(file, pcapFile(frames, LINKTYPE_ETHERNET));
      const out = execFileSync(
        'tshark',
        [
          '-r', file, '-T', 'json', '--no-duplicate-keys',
          '-o', 'esp.enable_null_encryption_decode_heuristic:TRUE',
          '-o', 'ip.check_checksum:TRUE',
          '-o', 'udp.check_checksum:TRUE',
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 },
      );
      const packets = (JSON.parse(out) as { _source: { layers: Layers } }[]).map((p) => p._source.layers);
      expect(packets).toHaveLength(frames.length);
      const [espUdp, esp6, gretap, icmp4, icmp6, frag6, qq] = packets as [Layers, Layers, Layers, Layers, Layers, Layers, Layers];

      // 1. IPv4/UDP 4500/ESP/GRE/802.1Q/Ethernet/IPv4/UDP
      expect((all(espUdp, 'frame')[0]!['frame.protocols'] as string)).toBe('eth:ethertype:ip:udp:udpencap:esp:gre:eth:ethertype:vlan:ethertype:ip:udp:data');
      const [outerEth, innerEth] = all(espUdp, 'eth');
      expect([outerEth!['eth.src'], outerEth!['eth.dst'], outerEth!['eth.type']]).toEqual(['52:54:00:00:00:01', '52:54:00:00:00:02', '0x0800']);
      expect([innerEth!['eth.src'], innerEth!['eth.dst'], innerEth!['eth.type']]).toEqual(['02:00:00:00:00:01', '02:00:00:00:00:02', '0x8100']);
      const [outerIp, innerIp] = all(espUdp, 'ip');
      expect([outerIp!['ip.src'], outerIp!['ip.dst'], outerIp!['ip.proto'], outerIp!['ip.id'], outerIp!['ip.checksum.status']]).toEqual(['192.0.2.1', '192.0.2.2', '17', '0x1234', '1']);
      expect((outerIp!['ip.flags_tree'] as Record<string, string>)['ip.flags.df']).toBe('1');
      expect([innerIp!['ip.src'], innerIp!['ip.dst'], innerIp!['ip.checksum.status']]).toEqual(['10.0.0.1', '10.0.0.2', '1']);
      const [outerUdp, innerUdp] = all(espUdp, 'udp');
      expect([outerUdp!['udp.srcport'], outerUdp!['udp.dstport'], outerUdp!['udp.checksum.status']]).toEqual(['4500', '4500', '1']);
      expect([innerUdp!['udp.srcport'], innerUdp!['udp.dstport'], innerUdp!['udp.length'], innerUdp!['udp.checksum.status']]).toEqual(['1234', '5678', '13', '1']);
      const esp = all(espUdp, 'esp')[0]!;
      expect([esp['esp.spi'], esp['esp.sequence'], esp['esp.pad_len'], esp['esp.pad'], esp['esp.protocol']]).toEqual(['0x00001001', '1', '3', '01:02:03', '0x2f']);
      const gre = all(espUdp, 'gre')[0]!;
      expect([gre['gre.proto'], gre['gre.key']]).toEqual(['0x6558', '0x00006400']);
      expect((gre['gre.flags_and_version_tree'] as Record<string, string>)['gre.flags.key']).toBe('1');
      const vlan = all(espUdp, 'vlan')[0]!;
      expect([vlan['vlan.id'], vlan['vlan.priority'], vlan['vlan.dei'], vlan['vlan.etype']]).toEqual(['100', '5', '0', '0x0800']);
      expect(all(espUdp, 'data')[0]!['data.data']).toBe('68:65:6c:6c:6f');

      // 2. IPv6/ESP/GRE/802.1Q/Ethernet/IPv4/UDP
      expect(all(esp6, 'frame')[0]!['frame.protocols']).toBe('eth:ethertype:ipv6:esp:gre:eth:ethertype:vlan:ethertype:ip:udp:data');
      const ip6 = all(esp6, 'ipv6')[0]!;
      expect([ip6['ipv6.src'], ip6['ipv6.dst'], ip6['ipv6.nxt'], ip6['ipv6.flow'], ip6['ipv6.plen']]).toEqual(['2001:db8::1', '2001:db8::2', '50', '0x00beef', String(v6.length - 54)]);
      const esp2 = all(esp6, 'esp')[0]!;
      expect([esp2['esp.spi'], esp2['esp.sequence'], esp2['esp.protocol']]).toEqual(['0x00002002', '7', '0x2f']);
      expect(all(esp6, 'gre')[0]!['gre.key']).toBe('0x0000c800');
      expect(all(esp6, 'vlan')[0]!['vlan.id']).toBe('200');
      expect(all(esp6, 'eth')[1]!['eth.src']).toBe('02:00:00:00:00:01');
      expect(all(esp6, 'udp')[0]!['udp.checksum.status']).toBe('1');

      // 3. IPv4/GRE (C, K, S)/802.1Q/Ethernet/IPv4/UDP
      const g = all(gretap, 'gre')[0]!;
      const gflags = g['gre.flags_and_version_tree'] as Record<string, string>;
      expect([gflags['gre.flags.checksum'], gflags['gre.flags.key'], gflags['gre.flags.sequence_number'], gflags['gre.flags.version']]).toEqual(['1', '1', '1', '0']);
      expect([g['gre.proto'], g['gre.key'], g['gre.sequence_number'], g['gre.checksum.status']]).toEqual(['0x6558', '0x00012c00', '42', '1']);
      expect(all(gretap, 'ip')[0]!['ip.proto']).toBe('47');
      expect(all(gretap, 'vlan')[0]!['vlan.id']).toBe('300');
      expect(all(gretap, 'vlan')[0]!['vlan.priority']).toBe('3');
      expect(all(gretap, 'udp')[0]!['udp.checksum.status']).toBe('1');

      // 4. ICMPv4 fragmentation needed quoting packet 1
      const icmp = all(icmp4, 'icmp')[0]!;
      expect([icmp['icmp.type'], icmp['icmp.code'], icmp['icmp.mtu'], icmp['icmp.checksum.status']]).toEqual(['3', '4', '1400', '1']);
      const quoted = icmp['ip'] as Record<string, string>;
      expect([quoted['ip.src'], quoted['ip.dst'], quoted['ip.id']]).toEqual(['192.0.2.1', '192.0.2.2', '0x1234']);
      expect(all(icmp4, 'ip')[0]!['ip.src']).toBe('192.0.2.2');

      // 5. ICMPv6 packet too big quoting packet 2
      const icmpv6 = all(icmp6, 'icmpv6')[0]!;
      expect([icmpv6['icmpv6.type'], icmpv6['icmpv6.code'], icmpv6['icmpv6.mtu'], icmpv6['icmpv6.checksum.status']]).toEqual(['2', '0', '1280', '1']);
      expect((icmpv6['ipv6'] as Record<string, string>)['ipv6.src']).toBe('2001:db8::1');
      expect(((icmpv6['esp'] as Record<string, string>) ?? {})['esp.spi']).toBe('0x00002002');

      // 6. IPv6 fragment header
      const fh = (all(frag6, 'ipv6')[0]!['ipv6.fraghdr'] as Record<string, string>);
      expect([fh['ipv6.fraghdr.nxt'], fh['ipv6.fraghdr.offset'], fh['ipv6.fraghdr.more'], fh['ipv6.fraghdr.ident']]).toEqual(['50', '154', '1', '0xabcdef01']);

      // 7. QinQ
      const ad = all(qq, 'ieee8021ad')[0]!;
      expect([ad['ieee8021ad.id'], ad['ieee8021ad.priority'], ad['ieee8021ad.dei']]).toEqual(['3000', '6', '1']);
      expect(all(qq, 'vlan')[0]!['vlan.id']).toBe('100');
      expect(all(qq, 'ip')[0]!['ip.checksum.status']).toBe('1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
