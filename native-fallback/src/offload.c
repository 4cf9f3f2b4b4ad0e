/* TAP offloads: segmentation of super-frames the kernel hands a TAP reader, and
 * coalescing of TCP segments into super-frames for a TAP writer. See offload.h.
 * Checksums are RFC 1071 sums in the host's order, stored as they are (§2(B)). */
#include "offload.h"

#include <arpa/inet.h>
#include <string.h>

#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5
#define VNET_GSO_ECN 0x80

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80

#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6 0x86dd

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put32(uint8_t *p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v & 0xffff);
}
static inline uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void put_le16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

/* Adds n octets at p to a ones'-complement sum kept in 64 bits (32-bit words in host order). */
static uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t n) {
  while (n >= 16) {
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    sum += (a & 0xffffffffu) + (a >> 32) + (b & 0xffffffffu) + (b >> 32);
    p += 16;
    n -= 16;
  }
  while (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    sum += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    sum += w;
    p += 2;
    n -= 2;
  }
  if (n) {
    uint16_t w = 0; /* an odd last octet is the high octet of a word padded with zero (RFC 1071 §4.1) */
    memcpy(&w, p, 1);
    sum += w;
  }
  return sum;
}

/* Folds a sum to 16 bits (host order, not complemented). */
static uint16_t csum_fold(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}

/* The pseudo-header sum of RFC 793 §3.1 / RFC 768 (IPv4) or RFC 8200 §8.1 (IPv6). */
static uint64_t pseudo_sum(const uint8_t *ip, int v6, uint8_t proto, int l4len) {
  uint64_t s = v6 ? csum_add(0, ip + 8, 32) : csum_add(0, ip + 12, 8);
  return s + htons(proto) + htons((uint16_t)l4len);
}

/* Recomputes an IPv4 header checksum (RFC 791 §3.1). */
static void ipv4_checksum(uint8_t *ip, int ihl) {
  ip[10] = ip[11] = 0;
  uint16_t c = (uint16_t)~csum_fold(csum_add(0, ip, (size_t)ihl));
  memcpy(ip + 10, &c, 2);
}

/* Offset of the L3 header after Ethernet and at most two 802.1Q/802.1ad tags, with its EtherType; -1 if short. */
static int l3_offset(const uint8_t *f, int len, uint16_t *etype) {
  int off = 12;
  for (int tags = 0;; tags++) {
    if (off + 2 > len) return -1;
    uint16_t t = get16(f + off);
    if ((t == 0x8100 || t == 0x88a8) && tags < 2) {
      off += 4;
      continue;
    }
    *etype = t;
    return off + 2;
  }
}

void st_vnet_read(const uint8_t *p, st_vnet_hdr *h) {
  h->flags = p[0];
  h->gso_type = p[1];
  h->hdr_len = le16(p + 2);
  h->gso_size = le16(p + 4);
  h->csum_start = le16(p + 6);
  h->csum_offset = le16(p + 8);
}

void st_vnet_write(uint8_t *p, const st_vnet_hdr *h) {
  p[0] = h->flags;
  p[1] = h->gso_type;
  put_le16(p + 2, h->hdr_len);
  put_le16(p + 4, h->gso_size);
  put_le16(p + 6, h->csum_start);
  put_le16(p + 8, h->csum_offset);
}

int st_gso_parse(const st_vnet_hdr *vh, const uint8_t *f, int len, st_gso *g) {
  int type = vh->gso_type & ~VNET_GSO_ECN;
  if (type != VNET_GSO_TCPV4 && type != VNET_GSO_TCPV6 && type != VNET_GSO_UDP_L4) return ST_OFF_BAD_GSO_TYPE;
  if (vh->gso_size == 0) return ST_OFF_BAD_GSO_SIZE;
  if (vh->hdr_len > len) return ST_OFF_BAD_HDR_LEN;
  if ((vh->flags & VNET_F_NEEDS_CSUM) && (int)vh->csum_start + (int)vh->csum_offset + 2 > len) return ST_OFF_BAD_CSUM;
  uint16_t et;
  int l3 = l3_offset(f, len, &et), l4, proto;
  if (l3 < 0) return ST_OFF_BAD_FRAME;
  if (et == ETH_P_IPV4 && type != VNET_GSO_TCPV6) {
    if (l3 + 20 > len || f[l3] >> 4 != 4) return ST_OFF_BAD_FRAME;
    int ihl = (f[l3] & 15) * 4;
    if (ihl < 20 || l3 + ihl > len || (get16(f + l3 + 6) & 0x3fff) != 0) return ST_OFF_BAD_FRAME; /* no fragment */
    proto = f[l3 + 9];
    l4 = l3 + ihl;
    g->v6 = 0;
  } else if (et == ETH_P_IPV6 && type != VNET_GSO_TCPV4) {
    if (l3 + 40 > len || f[l3] >> 4 != 6) return ST_OFF_BAD_FRAME;
    proto = f[l3 + 6]; /* extension headers are not segmented here */
    l4 = l3 + 40;
    g->v6 = 1;
  } else {
    return ST_OFF_BAD_FRAME;
  }
  if (type == VNET_GSO_UDP_L4) {
    if (proto != 17 || l4 + 8 > len) return ST_OFF_BAD_FRAME;
    g->hdr = l4 + 8;
    g->udp = 1;
  } else {
    if (proto != 6 || l4 + 20 > len) return ST_OFF_BAD_FRAME;
    int doff = (f[l4 + 12] >> 4) * 4;
    if (doff < 20 || l4 + doff > len) return ST_OFF_BAD_FRAME;
    g->hdr = l4 + doff;
    g->udp = 0;
  }
  g->l3 = l3;
  g->l4 = l4;
  g->mss = vh->gso_size;
  g->len = len;
  int payload = len - g->hdr;
  g->segs = payload <= 0 ? 1 : (payload + g->mss - 1) / g->mss;
  return ST_OFF_OK;
}

int st_gso_segment(const st_gso *g, const uint8_t *f, int i, uint8_t *out) {
  int off = g->hdr + i * g->mss;
  int plen = g->len - off;
  if (plen > g->mss) plen = g->mss;
  if (plen < 0) plen = 0;
  memcpy(out, f, (size_t)g->hdr);
  memcpy(out + g->hdr, f + off, (size_t)plen);
  int l4len = g->hdr - g->l4 + plen;
  uint8_t *ip = out + g->l3, *th = out + g->l4;
  if (g->v6) {
    put16(ip + 4, (unsigned)(g->l4 - g->l3 - 40 + l4len));
  } else {
    put16(ip + 2, (unsigned)(g->l4 - g->l3 + l4len));
    put16(ip + 4, (unsigned)(get16(f + g->l3 + 4) + i)); /* the ID counts up, as tcp_gso_segment does */
    ipv4_checksum(ip, g->l4 - g->l3);
  }
  int csum_at;
  if (g->udp) {
    put16(th + 4, (unsigned)l4len);
    csum_at = 6;
  } else {
    put32(th + 4, get32(f + g->l4 + 4) + (uint32_t)i * (uint32_t)g->mss);
    uint8_t fl = th[13];
    if (i != g->segs - 1) fl &= (uint8_t)~(TCP_FIN | TCP_PSH);
    if (i != 0) fl &= (uint8_t)~TCP_CWR;
    th[13] = fl;
    csum_at = 16;
  }
  th[csum_at] = th[csum_at + 1] = 0;
  uint16_t c = (uint16_t)~csum_fold(csum_add(pseudo_sum(ip, g->v6, g->udp ? 17 : 6, l4len), th, (size_t)l4len));
  if (c == 0 && g->udp) c = 0xffff; /* RFC 768: 0 means no checksum */
  memcpy(th + csum_at, &c, 2);
  return g->hdr + plen;
}

int st_csum_complete(const st_vnet_hdr *vh, uint8_t *f, int len) {
  if (!(vh->flags & VNET_F_NEEDS_CSUM)) return ST_OFF_OK;
  int start = vh->csum_start, at = start + vh->csum_offset;
  if (start < 14 || at + 2 > len) return ST_OFF_BAD_CSUM;
  /* The field holds the pseudo-header sum: summing from csum_start over it gives the checksum (skb_checksum_help). */
  uint16_t c = (uint16_t)~csum_fold(csum_add(0, f + start, (size_t)(len - start)));
  if (c == 0) c = 0xffff;
  memcpy(f + at, &c, 2);
  return ST_OFF_OK;
}

/* ---- coalescing ---- */

/* A TCP segment that may join a super-frame. */
typedef struct {
  int l3, l4, hdr, v6, plen;
  uint32_t seq;
  uint8_t flags;
} tcp_seg;

/* 1 if f is IPv4 (no IP options, DF, not a fragment) or IPv6 (TCP next) carrying a TCP
 * segment with payload, only ACK (and PSH) set, and no options but NOP NOP timestamps. */
static int tcp_seg_parse(const uint8_t *f, int len, tcp_seg *t) {
  uint16_t et;
  int l3 = l3_offset(f, len, &et), l4;
  if (l3 < 0) return 0;
  if (et == ETH_P_IPV4) {
    if (l3 + 20 > len || f[l3] != 0x45 || f[l3 + 6] != 0x40 || f[l3 + 7] != 0 || f[l3 + 9] != 6) return 0;
    if (l3 + get16(f + l3 + 2) != len) return 0; /* no Ethernet padding */
    l4 = l3 + 20;
    t->v6 = 0;
  } else if (et == ETH_P_IPV6) {
    if (l3 + 40 > len || f[l3] >> 4 != 6 || f[l3 + 6] != 6 || l3 + 40 + get16(f + l3 + 4) != len) return 0;
    l4 = l3 + 40;
    t->v6 = 1;
  } else {
    return 0;
  }
  if (l4 + 20 > len || (f[l4 + 12] & 0x0f) != 0) return 0;
  int doff = (f[l4 + 12] >> 4) * 4;
  if (doff != 20 && !(doff == 32 && get32(f + l4 + 20) == 0x0101080a)) return 0;
  if (l4 + doff >= len) return 0;
  uint8_t fl = f[l4 + 13];
  if ((fl & ~(TCP_ACK | TCP_PSH)) != 0 || !(fl & TCP_ACK)) return 0;
  t->l3 = l3;
  t->l4 = l4;
  t->hdr = l4 + doff;
  t->plen = len - t->hdr;
  t->seq = get32(f + l4 + 4);
  t->flags = fl;
  return 1;
}

/* 1 if segment c (frame fc) continues the super-frame begun by a (frame fa) whose last segment is p. */
static int tcp_seg_continues(const tcp_seg *a, const uint8_t *fa, const tcp_seg *p, const tcp_seg *c, const uint8_t *fc) {
  if (c->l3 != a->l3 || c->hdr != a->hdr || c->v6 != a->v6) return 0;
  if (p->plen != a->plen || c->plen > a->plen || (p->flags & TCP_PSH)) return 0; /* only the last may be short or pushed */
  if (c->seq != p->seq + (uint32_t)p->plen || (c->flags & ~TCP_PSH) != (a->flags & ~TCP_PSH)) return 0;
  if (memcmp(fa, fc, (size_t)a->l3) != 0) return 0; /* MACs, tags, EtherType */
  const uint8_t *ia = fa + a->l3, *ic = fc + a->l3;
  if (a->v6) {
    if (memcmp(ia, ic, 4) != 0 || ia[7] != ic[7] || memcmp(ia + 8, ic + 8, 32) != 0) return 0; /* class, flow, hops, addresses */
  } else {
    if (ia[1] != ic[1] || ia[8] != ic[8] || memcmp(ia + 12, ic + 12, 8) != 0) return 0; /* TOS (ECN), TTL, addresses */
  }
  const uint8_t *ta = fa + a->l4, *tc = fc + a->l4;
  /* ports, ACK number, data offset, window; options (timestamps) */
  return memcmp(ta, tc, 4) == 0 && memcmp(ta + 8, tc + 8, 5) == 0 && memcmp(ta + 14, tc + 14, 2) == 0 &&
         memcmp(ta + 20, tc + 20, (size_t)(a->hdr - a->l4 - 20)) == 0;
}

int st_gro_group(const uint8_t *const *frames, const int *lens, int n, st_vnet_hdr *vh, uint8_t hdr[ST_GRO_MAX_HDR_BYTES],
                 int *payload_at) {
  memset(vh, 0, sizeof *vh);
  *payload_at = 0;
  tcp_seg a, p, c;
  if (n < 2 || !tcp_seg_parse(frames[0], lens[0], &a)) return 1;
  int limit = n < ST_GRO_MAX_FRAMES ? n : ST_GRO_MAX_FRAMES;
  int k = 1, total = a.plen;
  int room = 65535 - (a.v6 ? a.hdr - a.l4 : a.hdr - a.l3); /* the IP length field */
  p = a;
  while (k < limit && tcp_seg_parse(frames[k], lens[k], &c) && total + c.plen <= room &&
         tcp_seg_continues(&a, frames[0], &p, &c, frames[k])) {
    total += c.plen;
    p = c;
    k++;
  }
  if (k == 1 || a.hdr > ST_GRO_MAX_HDR_BYTES) return 1;
  memcpy(hdr, frames[0], (size_t)a.hdr);
  uint8_t *ip = hdr + a.l3, *th = hdr + a.l4;
  int l4len = a.hdr - a.l4 + total;
  if (a.v6) {
    put16(ip + 4, (unsigned)l4len);
  } else {
    put16(ip + 2, (unsigned)(a.l4 - a.l3 + l4len));
    ipv4_checksum(ip, 20);
  }
  th[13] = (uint8_t)(a.flags | (p.flags & TCP_PSH));
  uint16_t ps = csum_fold(pseudo_sum(ip, a.v6, 6, l4len)); /* CHECKSUM_PARTIAL: the pseudo-header sum, not complemented */
  memcpy(th + 16, &ps, 2);
  vh->flags = VNET_F_NEEDS_CSUM;
  vh->gso_type = a.v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4;
  vh->hdr_len = (uint16_t)a.hdr;
  vh->gso_size = (uint16_t)a.plen;
  vh->csum_start = (uint16_t)a.l4;
  vh->csum_offset = 16;
  *payload_at = a.hdr;
  return k;
}
