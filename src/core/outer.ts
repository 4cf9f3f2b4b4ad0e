/**
 * Outer headers in front of a sealed ESP packet, for outputs that carry whole
 * packets (replay's OUT.pcap, packet sockets): Ethernet | IPv4 or IPv6 |
 * [UDP 4500, RFC 3948] | ESP. Sockets build the IP (and UDP) header themselves
 * and never need this.
 */
import type { PacketBuf } from '../buf/packet-buf.js';
import {
  ETH_HEADER_BYTES,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  IP_PROTO_ESP,
  IP_PROTO_UDP,
  IPV4_HEADER_BYTES,
  IPV6_HEADER_BYTES,
  UDP_ENCAP_PORT,
  UDP_HEADER_BYTES,
} from '../wire/constants.js';
import { emitIpv4 } from '../wire/ipv4.js';
import { emitIpv6 } from '../wire/ipv6.js';
import { emitUdpHeader, fillUdpChecksumV4, fillUdpChecksumV6 } from '../wire/udp.js';
import { OK, Reason } from './reasons.js';

/** Addresses and encapsulation of one outer path. */
export interface OuterPath {
  family: 4 | 6;
  /** Local address: 4 or 16 octets. */
  src: Uint8Array;
  /** Peer address: 4 or 16 octets. */
  dst: Uint8Array;
  /** ESP-in-UDP (RFC 3948) rather than IP protocol 50. */
  udp: boolean;
  /** UDP ports (default 4500 both). */
  srcPort?: number;
  dstPort?: number;
  srcMac: Uint8Array;
  dstMac: Uint8Array;
  /** TTL / hop limit; default 64. */
  ttl?: number;
}

/** Octets the outer headers take for a path. */
export function outerBytes(p: OuterPath): number {
  return ETH_HEADER_BYTES + (p.family === 4 ? IPV4_HEADER_BYTES : IPV6_HEADER_BYTES) + (p.udp ? UDP_HEADER_BYTES : 0);
}

/**
 * Prepends Ethernet, IP and (for ESP-in-UDP) UDP with a computed checksum in front of the
 * ESP packet at buf [start,end). `ipId` is the IPv4 identification. OK or buffer_no_room.
 */
export function prependOuter(buf: PacketBuf, p: OuterPath, ipId: number): number {
  const espLen = buf.end - buf.start;
  const ipLen = p.family === 4 ? IPV4_HEADER_BYTES : IPV6_HEADER_BYTES;
  const udpLen = p.udp ? UDP_HEADER_BYTES : 0;
  if (buf.prepend(ETH_HEADER_BYTES + ipLen + udpLen) < 0) return Reason.buffer_no_room;
  const b = buf.bytes;
  const eth = buf.start;
  const ip = eth + ETH_HEADER_BYTES;
  const l4 = ip + ipLen;
  b.set(p.dstMac, eth);
  b.set(p.srcMac, eth + 6);
  const type = p.family === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
  b[eth + 12] = type >>> 8;
  b[eth + 13] = type & 0xff;
  const proto = p.udp ? IP_PROTO_UDP : IP_PROTO_ESP;
  const ttl = p.ttl ?? 64;
  if (p.family === 4) {
    emitIpv4({ src: p.src, dst: p.dst, protocol: proto, payloadLen: udpLen + espLen, ttl, identification: ipId & 0xffff }, b, ip);
  } else {
    emitIpv6({ src: p.src, dst: p.dst, nextHeader: proto, payloadLen: udpLen + espLen, hopLimit: ttl }, b, ip);
  }
  if (p.udp) {
    emitUdpHeader(b, l4, p.srcPort ?? UDP_ENCAP_PORT, p.dstPort ?? UDP_ENCAP_PORT, espLen);
    if (p.family === 4) fillUdpChecksumV4(b, l4, b, ip + 12, b, ip + 16);
    else fillUdpChecksumV6(b, l4, b, ip + 8, b, ip + 24);
  }
  return OK;
}
