/**
 * Protocol constants from the specifications (sizes on the wire, type codes).
 * Implementation choices (headroom, pool sizes) live in buf/constants.ts.
 */

/** Ethernet II header: destination MAC, source MAC, EtherType (IEEE 802.3). */
export const ETH_HEADER_BYTES = 14;
/** Length of one MAC address. */
export const MAC_BYTES = 6;
/** One 802.1Q tag: TPID + TCI (IEEE 802.1Q). */
export const VLAN_TAG_BYTES = 4;
/** Minimum Ethernet payload-carrying frame without FCS. */
export const ETH_MIN_FRAME_BYTES = 60;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
/** Customer VLAN tag (IEEE 802.1Q). */
export const ETHERTYPE_VLAN = 0x8100;
/** Service VLAN tag, QinQ outer tag (IEEE 802.1ad). */
export const ETHERTYPE_QINQ = 0x88a8;
/** Transparent Ethernet Bridging: GRE carries a whole Ethernet frame (RFC 1701 registry). */
export const ETHERTYPE_TEB = 0x6558;

/** Lowest and highest usable VLAN id (0 = priority tag, 4095 reserved). */
export const VLAN_ID_MIN = 1;
export const VLAN_ID_MAX = 4094;

/** IPv4 header without options (RFC 791). */
export const IPV4_HEADER_BYTES = 20;
/** IPv6 fixed header (RFC 8200). */
export const IPV6_HEADER_BYTES = 40;
/** IPv6 fragment extension header (RFC 8200 §4.5). */
export const IPV6_FRAGMENT_HEADER_BYTES = 8;
/** UDP header (RFC 768). */
export const UDP_HEADER_BYTES = 8;
/** ICMP/ICMPv6 header: type, code, checksum, 4 octets of rest-of-header. */
export const ICMP_HEADER_BYTES = 8;

export const IP_PROTO_HOPOPTS = 0;
export const IP_PROTO_ICMP = 1;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;
export const IP_PROTO_IPV6_ROUTING = 43;
export const IP_PROTO_IPV6_FRAGMENT = 44;
export const IP_PROTO_GRE = 47;
export const IP_PROTO_ESP = 50;
export const IP_PROTO_AH = 51;
export const IP_PROTO_ICMPV6 = 58;
/** "No next header" (RFC 8200 §4.7); in ESP it marks a dummy packet (RFC 4303 §2.6). */
export const IP_PROTO_NONE = 59;
export const IP_PROTO_IPV6_DSTOPTS = 60;

/** Base GRE header: flags/version + protocol type (RFC 2784 §2). */
export const GRE_BASE_BYTES = 4;
/** Each optional GRE field (checksum+reserved1, key, sequence) is 4 octets (RFC 2890). */
export const GRE_OPTION_BYTES = 4;
/** GRE header as sectunnel emits it: base + key. */
export const GRE_KEYED_BYTES = GRE_BASE_BYTES + GRE_OPTION_BYTES;
/** Largest GRE header: base + checksum + key + sequence. */
export const GRE_MAX_BYTES = GRE_BASE_BYTES + 3 * GRE_OPTION_BYTES;

/** ESP header: SPI + sequence number (RFC 4303 §2). */
export const ESP_HEADER_BYTES = 8;
/** Explicit IV of AES-GCM (RFC 4106 §3.1) and ChaCha20-Poly1305 (RFC 7634 §2). */
export const ESP_IV_BYTES = 8;
/** ICV of the AEADs we use: 16 octets. */
export const ESP_ICV_BYTES = 16;
/** ESP trailer: pad length + next header (RFC 4303 §2.4–2.6). */
export const ESP_TRAILER_BYTES = 2;
/** Payload + padding + trailer is aligned to 4 octets (RFC 4303 §2.4). */
export const ESP_ALIGN_BYTES = 4;
/** Most padding we emit to reach ESP_ALIGN_BYTES. */
export const ESP_MAX_PAD_BYTES = ESP_ALIGN_BYTES - 1;
/** SPIs 1–255 are reserved by IANA; 0 is local use only (RFC 4303 §2.1). */
export const ESP_SPI_MIN = 256;

/** IKE/ESP-in-UDP port (RFC 3948). */
export const UDP_ENCAP_PORT = 4500;
/** Non-ESP marker: four zero octets in front of a non-ESP message on port 4500 (RFC 3948 §2.2). */
export const NON_ESP_MARKER_BYTES = 4;
/** NAT keepalive: a single 0xFF octet (RFC 3948 §2.3). */
export const NAT_KEEPALIVE_BYTE = 0xff;
