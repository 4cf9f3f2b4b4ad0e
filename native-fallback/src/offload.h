/* TAP offloads (virtio_net_hdr, IFF_VNET_HDR): pure functions over bytes, no
 * system calls, no allocation; used by tap.c and exported to tests through it.
 *
 * Send side (what the kernel hands a TAP reader): a frame behind a 10-octet
 * virtio_net_hdr may be a TCP (TSO) or UDP (USO) super-frame up to 64 KB with
 * gso_size octets of payload per segment, and its L4 checksum may be partial
 * (VIRTIO_NET_HDR_F_NEEDS_CSUM: the field holds the pseudo-header sum, the rest
 * is to be summed from csum_start). st_gso_parse checks the header against the
 * frame and st_gso_segment writes segment i as an ordinary Ethernet frame, as
 * the kernel's tcp_gso_segment/__udp_gso_segment would: headers copied, IPv4
 * total length/ID/header checksum or IPv6 payload length, TCP sequence number,
 * FIN/PSH on the last segment only, CWR on the first only, full L4 checksum.
 *
 * Receive side (what a TAP writer may hand the kernel): st_gro_group finds how
 * many frames from frames[0] are exact continuations of one TCP flow (the
 * conditions are at st_gro_group) and turns them into one super-frame: a
 * copy of frames[0]'s headers, rewritten, followed by the payloads of all,
 * behind the virtio_net_hdr it fills (GSO_TCPV4/6, NEEDS_CSUM with
 * the pseudo-header sum, gso_size = the first segment's payload).
 */
#ifndef SECTUNNEL_OFFLOAD_H
#define SECTUNNEL_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#define ST_VNET_HDR_BYTES 10 /* struct virtio_net_hdr (TUNSETVNETHDRSZ 10) */
#define ST_GSO_MAX_BYTES 65536 /* largest frame a TAP hands over (tso_max_size of tun, L2 headers aside) */
#define ST_GRO_MAX_FRAMES 64 /* frames one super-frame may join */

/* Why a frame behind a vnet header is dropped (0: not dropped). Same order as OFFLOAD_DROP_NAMES in src/io/tap.ts. */
enum {
  ST_OFF_OK = 0,
  ST_OFF_BAD_FRAME,     /* shorter than its headers, or not IPv4/IPv6 + TCP/UDP where the GSO type says so */
  ST_OFF_BAD_GSO_TYPE,  /* a gso_type other than none, TCPv4, TCPv6, UDP L4 */
  ST_OFF_BAD_GSO_SIZE,  /* gso_size 0 */
  ST_OFF_BAD_HDR_LEN,   /* hdr_len beyond the frame */
  ST_OFF_BAD_CSUM,      /* csum_start/csum_offset beyond the frame */
  ST_OFF_TOO_BIG,       /* a segment larger than a pool slot, or a super-frame larger than the scratch buffer */
  ST_OFF_NO_ROOM,       /* more segments than free pool buffers in the ring: dropped whole */
  ST_OFF_REASONS
};

/* The parsed virtio_net_hdr (little-endian on the wire: legacy TAP on a little-endian host). */
typedef struct {
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset;
} st_vnet_hdr;

/* A super-frame ready to be segmented. */
typedef struct {
  int l3;      /* IP header offset (after Ethernet and up to two VLAN tags) */
  int l4;      /* TCP/UDP header offset */
  int hdr;     /* first payload octet */
  int v6;      /* IPv6 (else IPv4) */
  int udp;     /* UDP L4 (else TCP) */
  int mss;     /* payload octets per segment */
  int segs;    /* segments (≥ 1) */
  int len;     /* frame length */
} st_gso;

/* Reads a virtio_net_hdr from 10 octets. */
void st_vnet_read(const uint8_t *p, st_vnet_hdr *h);
/* Writes one. */
void st_vnet_write(uint8_t *p, const st_vnet_hdr *h);

/* Checks a frame with GSO (gso_type != NONE) against its header and fills g; returns ST_OFF_*. */
int st_gso_parse(const st_vnet_hdr *vh, const uint8_t *frame, int len, st_gso *g);
/* Writes segment i (0 ≤ i < g->segs) of frame to out (room for g->hdr + g->mss octets); returns its length. */
int st_gso_segment(const st_gso *g, const uint8_t *frame, int i, uint8_t *out);
/* Completes a partial checksum (NEEDS_CSUM without GSO) in place; returns ST_OFF_*. */
int st_csum_complete(const st_vnet_hdr *vh, uint8_t *frame, int len);

#define ST_GRO_MAX_HDR_BYTES 128 /* room for a super-frame's headers: Ethernet + 2 tags + IPv6 + TCP with timestamps is 106 */

/* How many of frames[0..n) (n ≥ 1) form one super-frame, and its header in vh. 1: frames[0]
 * goes alone, vh all zero. k > 1: hdr[0..*payload_at) are the super-frame's headers (lengths,
 * PSH of the last, checksum fields), and its payload is frames[j][*payload_at..lens[j]) for
 * 0 ≤ j < k. The frames are never changed (one buffer may be delivered to several TAPs). */
int st_gro_group(const uint8_t *const *frames, const int *lens, int n, st_vnet_hdr *vh, uint8_t hdr[ST_GRO_MAX_HDR_BYTES],
                 int *payload_at);

#endif /* SECTUNNEL_OFFLOAD_H */
