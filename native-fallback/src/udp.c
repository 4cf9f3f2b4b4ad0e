/* Batched UDP: recvmmsg into slab slots with the source address of every
 * datagram in a meta row, and sendmmsg of a batch whose entries name peers by
 * index in a table registered beforehand (no sockaddr per packet from JS).
 *
 * Receive (driven by the fd handle of io.h):
 *   1. recvmmsg() into ring entries, at most 64 per call, until EAGAIN or the
 *      ring is used up.
 *   2. per datagram, a meta row of UDP_META_STRIDE int32 words:
 *      [0] length  [1] family (4 or 6)  [2] source port  [3] flags (bit 0: truncated)
 *      [4] peer index whose address and port match the source, or -1
 *      [5..7] reserved (0)  octets 32..47: source address (IPv4 in the first 4)
 * Send: udpSend(handle, slab, desc (offset, length, peer)*, count) -> datagrams
 *   the kernel accepted. A full socket buffer drops the rest of the chunk
 *   (counted); an error on one datagram counts it and goes on with the next.
 *
 * Offloads (udpOpen's `offload` bits; Linux >= 4.18 / 5.0):
 *   - GSO send (UDP_SEGMENT): a run of consecutive datagrams to the same peer of
 *     equal length (the last may be shorter), at most 64 and 64 KB, goes out as one
 *     message whose iovecs point at each datagram (no copy); the kernel cuts it
 *     back into those datagrams. A run the kernel refuses is sent plainly; a refusal
 *     before any GSO send succeeded (EIO, ENOPROTOOPT, ...) turns GSO off for good,
 *     EINVAL/EMSGSIZE (a segment above the path MTU) lowers the largest segment
 *     size tried.
 *   - GRO receive (UDP_GRO): recvmmsg into a private 64 KB buffer per message;
 *     a datagram with a UDP_GRO cmsg (gso_size) is split into gso_size pieces,
 *     each copied into its own ring entry (slot + the ring's offset, so the
 *     headroom stays), each with its own meta row. Pieces that find no ring entry
 *     wait in the buffer and go first into the next batch (nothing is dropped);
 *     an unreferenced uv timer runs the reader again for them (via the poll
 *     handle's callback) as soon as the ring has room, whether or not more
 *     datagrams arrive.
 *   udpOffloadStats(handle, out: Float64Array(UDP_OSTAT_COUNT)) reads their counters.
 *
 * JS functions: udpOpen, udpSetPeer, udpClearPeer, udpSend, udpOffloadStats (and io* of io.c).
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include "io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h> /* UDP_SEGMENT, UDP_GRO */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDP_META_STRIDE 12
#define UDP_BATCH 64          /* datagrams per recvmmsg/sendmmsg call */
#define UDP_MAX_PEERS 65536   /* peer indices 0..65535 */
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define UDP_GSO_MAX_SEGS 64    /* the kernel's UDP_MAX_SEGMENTS (64 before Linux 6.12, 128 since) */
#define UDP_SEND_IOVS 512      /* iovecs per sendmmsg chunk */
#define UDP_GRO_BATCH 16       /* messages per recvmmsg call with GRO */
#define UDP_GRO_BUF_BYTES 65536 /* receive buffer per message with GRO: any UDP datagram fits */

enum { UDP_OFFLOAD_GSO = 1, UDP_OFFLOAD_GRO = 2 };

/* Offload counter slots reported by udpOffloadStats (same order as OFFLOAD_STAT_NAMES in src/io/udp.ts). */
enum {
  UO_GSO,          /* 1 while GSO is used */
  UO_GRO,          /* 1 while GRO is on */
  UO_GSO_SENDS,    /* messages sent with UDP_SEGMENT */
  UO_GSO_SEGMENTS, /* datagrams they carried */
  UO_GSO_FALLBACKS, /* runs the kernel refused, sent plainly */
  UO_GSO_ERRNO,    /* errno of the latest refusal (the one that turned GSO off, if it is off) */
  UO_GRO_DATAGRAMS, /* received datagrams that carried a UDP_GRO cmsg */
  UO_GRO_SEGMENTS, /* the pieces they were split into */
  UO_GRO_CARRIED,  /* times pieces waited for the next call because the ring was full */
  UO_COUNT
};

typedef struct {
  union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } addr;
  socklen_t addr_len; /* 0: empty entry */
  uint8_t family;     /* 4 or 6 */
  uint8_t bytes[16];  /* address, IPv4 in the first 4 */
  uint16_t port;
} udp_peer;

typedef struct {
  int family; /* of the socket */
  udp_peer *peers;
  int peer_cap;   /* entries allocated */
  int32_t *index; /* open-addressing hash of (family, address, port) -> peer index, -1 empty */
  uint32_t index_mask;
  int gso;          /* 1: runs go out with UDP_SEGMENT */
  int gso_ok;       /* a UDP_SEGMENT send has succeeded */
  int gso_max_seg;  /* runs of segments larger than this go plainly (lowered by EINVAL refusals) */
  int gso_max_total; /* most payload octets per GSO message */
  uint8_t *gro_buf; /* UDP_GRO_BATCH * UDP_GRO_BUF_BYTES, NULL without GRO */
  /* Received messages in gro_buf not yet (all) delivered: message carry_msg from piece carry_piece
   * on, up to carry_count; their length, piece size and source. */
  int carry_count, carry_msg, carry_piece;
  unsigned carry_len[UDP_GRO_BATCH], carry_seg[UDP_GRO_BATCH];
  struct sockaddr_storage carry_from[UDP_GRO_BATCH];
  uv_timer_t *carry_timer; /* wakes the reader for a carry (udp_carry_wake) */
  double ostats[UO_COUNT];
} udp_state;

static void udp_timer_free(uv_handle_t *t) { free(t); }

static void udp_free(void *p) {
  udp_state *u = (udp_state *)p;
  if (!u) return;
  if (u->carry_timer) uv_close((uv_handle_t *)u->carry_timer, udp_timer_free); /* stops it; freed by libuv's callback */
  free(u->peers);
  free(u->index);
  free(u->gro_buf);
  free(u);
}

static uint32_t udp_hash(int family, const uint8_t *bytes, uint16_t port) {
  uint32_t x = 2166136261u ^ (uint32_t)family;
  int n = family == 4 ? 4 : 16;
  for (int i = 0; i < n; i++) x = (x ^ bytes[i]) * 16777619u;
  x = (x ^ (port & 0xff)) * 16777619u;
  x = (x ^ (port >> 8)) * 16777619u;
  return x;
}

static int udp_lookup(const udp_state *u, int family, const uint8_t *bytes, uint16_t port) {
  if (!u->index) return -1;
  int n = family == 4 ? 4 : 16;
  for (uint32_t i = udp_hash(family, bytes, port) & u->index_mask;; i = (i + 1) & u->index_mask) {
    int32_t p = u->index[i];
    if (p < 0) return -1;
    const udp_peer *e = &u->peers[p];
    if (e->family == family && e->port == port && memcmp(e->bytes, bytes, n) == 0) return p;
  }
}

/* Rebuilds the source lookup after a peer change (control path). Returns 0 or ENOMEM. */
static int udp_reindex(udp_state *u) {
  int used = 0;
  for (int i = 0; i < u->peer_cap; i++) used += u->peers[i].addr_len != 0;
  free(u->index);
  u->index = NULL;
  u->index_mask = 0;
  if (used == 0) return 0;
  uint32_t size = 16;
  while (size < (uint32_t)used * 2) size <<= 1;
  u->index = (int32_t *)malloc(sizeof(int32_t) * size);
  if (!u->index) return ENOMEM;
  memset(u->index, 0xff, sizeof(int32_t) * size);
  u->index_mask = size - 1;
  for (int p = 0; p < u->peer_cap; p++) {
    const udp_peer *e = &u->peers[p];
    if (!e->addr_len || udp_lookup(u, e->family, e->bytes, e->port) >= 0) continue; /* first index wins */
    uint32_t i = udp_hash(e->family, e->bytes, e->port) & u->index_mask;
    while (u->index[i] >= 0) i = (i + 1) & u->index_mask;
    u->index[i] = p;
  }
  return 0;
}

static void udp_fill_meta(const udp_state *u, int32_t *row, const struct sockaddr_storage *ss, unsigned len,
                          int flags) {
  uint8_t *addr = (uint8_t *)(row + 8);
  row[0] = (int32_t)len;
  row[3] = (flags & MSG_TRUNC) ? 1 : 0;
  row[5] = row[6] = row[7] = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    row[1] = 4;
    row[2] = ntohs(s->sin_port);
    memcpy(addr, &s->sin_addr, 4);
    memset(addr + 4, 0, 12);
    row[4] = udp_lookup(u, 4, addr, (uint16_t)row[2]);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    row[1] = 6;
    row[2] = ntohs(s->sin6_port);
    memcpy(addr, &s->sin6_addr, 16);
    row[4] = udp_lookup(u, 6, addr, (uint16_t)row[2]);
  } else {
    row[1] = row[2] = 0;
    row[4] = -1;
    memset(addr, 0, 16);
  }
}

enum { UDP_RECV_RETRY = 1, UDP_RECV_STOP = 2 };

/*
 * What a failed recvmmsg means for the read loop: UDP_RECV_RETRY (interrupted), UDP_RECV_STOP
 * (nothing more now; errors queued on the socket — ICMP unreachable and the like — and memory
 * pressure are counted once and reading goes on at the next wake-up), else -errno (fatal).
 */
static int udp_recv_failed(st_io *h, int e) {
  if (e == EINTR) return UDP_RECV_RETRY;
  if (e == EAGAIN || e == EWOULDBLOCK) return UDP_RECV_STOP;
  if (e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == ENOMEM || e == ENOBUFS) {
    st_io_count(h, ST_RX_ERRORS, e);
    return UDP_RECV_STOP;
  }
  return -e;
}

static int udp_rx(st_io *h, int ready) {
  udp_state *u = (udp_state *)h->ext;
  struct mmsghdr msgs[UDP_BATCH];
  struct iovec iov[UDP_BATCH];
  struct sockaddr_storage from[UDP_BATCH];
  int n = 0;
  while (n < ready) {
    int want = ready - n < UDP_BATCH ? ready - n : UDP_BATCH;
    if (!st_io_recv_prepare(h, n, want, msgs, iov, from, sizeof from[0])) return n ? n : -EINVAL;
    int k = recvmmsg(h->fd, msgs, (unsigned)want, MSG_DONTWAIT, NULL);
    if (k < 0) {
      int r = udp_recv_failed(h, errno);
      if (r == UDP_RECV_RETRY) continue;
      if (r == UDP_RECV_STOP) break;
      return n ? n : r;
    }
    for (int j = 0; j < k; j++) {
      int32_t *row = h->meta + (size_t)(n + j) * UDP_META_STRIDE;
      udp_fill_meta(u, row, &from[j], msgs[j].msg_len, msgs[j].msg_hdr.msg_flags);
      if (row[3]) {
        h->stats[ST_RX_TRUNCATED]++;
      } else {
        h->stats[ST_RX_PACKETS]++;
        h->stats[ST_RX_BYTES] += msgs[j].msg_len;
      }
    }
    n += k;
    if (k < want) break;
  }
  return n;
}

/* The UDP_GRO segment size of a received message, 0 if it carries none. */
static int udp_gro_size(struct msghdr *m) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int v;
      memcpy(&v, CMSG_DATA(c), sizeof v);
      return v;
    }
  }
  return 0;
}

/* Copies the pieces of the received messages, from piece `piece` of message `msg` on, into ring
 * entries n..ready-1; what does not fit stays for the next call (u->carry_*). Returns the new n. */
static int udp_gro_deliver(st_io *h, udp_state *u, int n, int ready) {
  while (u->carry_msg < u->carry_count) {
    int j = u->carry_msg;
    unsigned len = u->carry_len[j], seg = u->carry_seg[j];
    int pieces = seg == 0 ? 1 : (int)((len + seg - 1) / seg);
    const uint8_t *src = u->gro_buf + (size_t)j * UDP_GRO_BUF_BYTES;
    for (int p = u->carry_piece; p < pieces; p++) {
      struct iovec slot;
      if (n >= ready || !st_io_ring_iov(h, n, &slot)) {
        u->carry_piece = p;
        return n;
      }
      unsigned plen = len - (unsigned)p * seg < seg ? len - (unsigned)p * seg : seg;
      int32_t *row = h->meta + (size_t)n * UDP_META_STRIDE;
      udp_fill_meta(u, row, &u->carry_from[j], plen, 0);
      if (plen > slot.iov_len) { /* larger than a slot: flagged, its slot stays in the ring */
        row[3] = 1;
        h->stats[ST_RX_TRUNCATED]++;
      } else {
        memcpy(slot.iov_base, src + (size_t)p * seg, plen);
        h->stats[ST_RX_PACKETS]++;
        h->stats[ST_RX_BYTES] += plen;
      }
      n++;
    }
    u->carry_msg++;
    u->carry_piece = 0;
  }
  u->carry_msg = u->carry_count = 0;
  return n;
}

static void udp_carry_timer_cb(uv_timer_t *t);

/* Pieces left over when the ring was full must not wait for the next datagram: a timer runs the
 * handle's readable callback (io.c) again as soon as its ring has room. */
static void udp_carry_wake(st_io *h, udp_state *u) {
  if (!u->carry_timer || u->carry_msg >= u->carry_count) return;
  u->carry_timer->data = h;
  uv_timer_start(u->carry_timer, udp_carry_timer_cb, h->polling && h->ready > 0 ? 0 : 1, 0);
}

static void udp_carry_timer_cb(uv_timer_t *t) {
  st_io *h = (st_io *)t->data;
  udp_state *u = (udp_state *)h->ext;
  if (h->closed || u->carry_msg >= u->carry_count) return;
  if (h->polling && h->ready > 0) h->poll.poll_cb(&h->poll, 0, UV_READABLE);
  if (!h->closed) udp_carry_wake(h, u);
}

/* The reader with UDP_GRO: recvmmsg into gro_buf, then every datagram, or each gso_size piece
 * of a coalesced one, copied into its own ring entry with its own meta row. Pieces that find
 * no ring entry are delivered first on the next call. */
static int udp_rx_gro(st_io *h, int ready) {
  udp_state *u = (udp_state *)h->ext;
  struct mmsghdr msgs[UDP_GRO_BATCH];
  struct iovec iov[UDP_GRO_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl[UDP_GRO_BATCH];
  int n = udp_gro_deliver(h, u, 0, ready);
  while (n < ready && u->carry_count == 0) {
    int want = ready - n < UDP_GRO_BATCH ? ready - n : UDP_GRO_BATCH;
    for (int j = 0; j < want; j++) {
      iov[j].iov_base = u->gro_buf + (size_t)j * UDP_GRO_BUF_BYTES;
      iov[j].iov_len = UDP_GRO_BUF_BYTES;
      st_mmsg_set(&msgs[j], &iov[j], &u->carry_from[j], sizeof u->carry_from[j]);
      msgs[j].msg_hdr.msg_control = ctl[j].buf;
      msgs[j].msg_hdr.msg_controllen = sizeof ctl[j].buf;
    }
    int k = recvmmsg(h->fd, msgs, (unsigned)want, MSG_DONTWAIT, NULL);
    if (k < 0) {
      int r = udp_recv_failed(h, errno);
      if (r == UDP_RECV_RETRY) continue;
      if (r == UDP_RECV_STOP) break;
      return n ? n : r;
    }
    int c = 0;
    for (int j = 0; j < k; j++) {
      unsigned len = msgs[j].msg_len;
      if (msgs[j].msg_hdr.msg_flags & MSG_TRUNC) { /* cannot happen with 64 KB buffers; counted if it does */
        h->stats[ST_RX_TRUNCATED]++;
        continue;
      }
      int gso = udp_gro_size(&msgs[j].msg_hdr);
      unsigned seg = gso > 0 && (unsigned)gso < len ? (unsigned)gso : len;
      if (gso > 0) {
        u->ostats[UO_GRO_DATAGRAMS]++;
        u->ostats[UO_GRO_SEGMENTS] += seg == 0 ? 1 : (len + seg - 1) / seg;
      }
      if (c != j) { /* pack after a skipped message */
        memmove(u->gro_buf + (size_t)c * UDP_GRO_BUF_BYTES, iov[j].iov_base, len);
        u->carry_from[c] = u->carry_from[j];
      }
      u->carry_len[c] = len;
      u->carry_seg[c] = seg;
      c++;
    }
    u->carry_count = c;
    u->carry_msg = u->carry_piece = 0;
    n = udp_gro_deliver(h, u, n, ready);
    if (k < want) break;
  }
  if (u->carry_msg < u->carry_count) u->ostats[UO_GRO_CARRIED]++;
  udp_carry_wake(h, u);
  return n;
}

/* udpOpen(family 4|6, address, port, rcvbufBytes, sndbufBytes, reuseAddr[, offload bits: 1 GSO, 2 GRO])
 *   -> { handle, family, address, port } (the bound address; port 0 picks one). IPv6 sockets are IPv6-only. */
static napi_value js_udp_open(napi_env env, napi_callback_info info) {
  napi_value a[7];
  int argc = st_args(env, info, 7, a, NULL);
  if (argc < 0) return NULL;
  if (argc < 6) return st_throw(env, "ST_NATIVE_ARG", "udpOpen(family, address, port, rcvbufBytes, sndbufBytes, reuseAddr[, offload])");
  int32_t family, port, rcvbuf, sndbuf, offload = 0;
  bool reuse;
  char address[INET6_ADDRSTRLEN + 1];
  size_t alen;
  if (!st_get_int(env, a[0], "family must be 4 or 6", &family)) return NULL;
  if (family != 4 && family != 6) return st_throw(env, "ST_NATIVE_ARG", "family must be 4 or 6");
  if (napi_get_value_string_utf8(env, a[1], address, sizeof address, &alen) != napi_ok)
    return st_throw(env, "ST_NATIVE_ARG", "address must be a string");
  if (!st_get_int(env, a[2], "port must be an integer", &port)) return NULL;
  if (port < 0 || port > 65535) return st_throw(env, "ST_NATIVE_ARG", "port must be 0..65535");
  if (!st_get_int(env, a[3], "rcvbufBytes must be an integer", &rcvbuf)) return NULL;
  if (!st_get_int(env, a[4], "sndbufBytes must be an integer", &sndbuf)) return NULL;
  if (napi_get_value_bool(env, a[5], &reuse) != napi_ok) return st_throw(env, "ST_NATIVE_ARG", "reuseAddr must be a boolean");
  if (argc > 6 && !st_get_int(env, a[6], "offload must be an integer (1: GSO, 2: GRO)", &offload)) return NULL;

  union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } sa;
  memset(&sa, 0, sizeof sa);
  socklen_t sa_len;
  int ok;
  if (family == 4) {
    sa.v4.sin_family = AF_INET;
    sa.v4.sin_port = htons((uint16_t)port);
    ok = inet_pton(AF_INET, alen ? address : "0.0.0.0", &sa.v4.sin_addr) == 1;
    sa_len = sizeof sa.v4;
  } else {
    sa.v6.sin6_family = AF_INET6;
    sa.v6.sin6_port = htons((uint16_t)port);
    ok = inet_pton(AF_INET6, alen ? address : "::", &sa.v6.sin6_addr) == 1;
    sa_len = sizeof sa.v6;
  }
  if (!ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "udpOpen: address %s is not an IPv%d address", address, family);
    return st_throw(env, "ST_NATIVE_ARG", msg);
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return st_throw_errno(env, "socket(SOCK_DGRAM)", errno);
  int one = 1;
  if (reuse) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == 6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  /* Outer packets above the path MTU are sent as IP fragments, never dropped for DF:
   * IPv4 without DF (IP_PMTUDISC_DONT), IPv6 fragmented by the sender (IPV6_DONTFRAG 0).
   * The daemon counts frames whose encapsulation exceeds the underlay MTU. */
  if (family == 4) {
    int dont = IP_PMTUDISC_DONT;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont);
  } else {
    int zero = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &zero, sizeof zero);
  }
  st_set_sockbuf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);
  st_set_sockbuf(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf);
  if (bind(fd, &sa.sa, sa_len) < 0) {
    int e = errno;
    close(fd);
    char msg[96];
    snprintf(msg, sizeof msg, "bind %s%s%s:%d", family == 6 ? "[" : "", alen ? address : family == 4 ? "0.0.0.0" : "::",
             family == 6 ? "]" : "", port);
    return st_throw_errno(env, msg, e);
  }
  sa_len = sizeof sa;
  getsockname(fd, &sa.sa, &sa_len);
  char bound[INET6_ADDRSTRLEN];
  inet_ntop(family == 4 ? AF_INET : AF_INET6, family == 4 ? (void *)&sa.v4.sin_addr : (void *)&sa.v6.sin6_addr, bound,
            sizeof bound);
  int bound_port = ntohs(family == 4 ? sa.v4.sin_port : sa.v6.sin6_port);

  udp_state *u = (udp_state *)calloc(1, sizeof *u);
  if (!u) {
    close(fd);
    return st_throw_errno(env, "calloc", ENOMEM);
  }
  u->family = family;
  u->gso_max_seg = 65535;
  u->gso_max_total = family == 4 ? 65535 - 20 - 8 : 65535 - 8; /* IP and UDP length fields */
  /* UDP_SEGMENT 0 on the socket is a no-op where GSO exists (ENOPROTOOPT before Linux 4.18). */
  int zero = 0;
  if ((offload & UDP_OFFLOAD_GSO) && setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0) u->gso = 1;
  else if (offload & UDP_OFFLOAD_GSO) u->ostats[UO_GSO_ERRNO] = errno;
  uv_loop_t *loop;
  if ((offload & UDP_OFFLOAD_GRO) && napi_get_uv_event_loop(env, &loop) == napi_ok) {
    u->gro_buf = (uint8_t *)malloc((size_t)UDP_GRO_BATCH * UDP_GRO_BUF_BYTES);
    u->carry_timer = (uv_timer_t *)malloc(sizeof *u->carry_timer);
    int timer_ok = u->carry_timer && uv_timer_init(loop, u->carry_timer) == 0;
    if (!u->gro_buf || !timer_ok || setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) != 0) {
      free(u->gro_buf);
      u->gro_buf = NULL;
      if (timer_ok)
        uv_close((uv_handle_t *)u->carry_timer, udp_timer_free);
      else
        free(u->carry_timer);
      u->carry_timer = NULL;
    } else {
      uv_unref((uv_handle_t *)u->carry_timer); /* never keeps the process alive */
    }
  }
  u->ostats[UO_GSO] = u->gso;
  u->ostats[UO_GRO] = u->gro_buf != NULL;
  napi_value handle = st_io_wrap(env, ST_KIND_UDP, fd, UDP_META_STRIDE, u->gro_buf ? udp_rx_gro : udp_rx, u, udp_free);
  if (!handle) return NULL;
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_set_named_property(env, out, "handle", handle));
  CHECK(napi_create_int32(env, family, &v));
  CHECK(napi_set_named_property(env, out, "family", v));
  CHECK(napi_create_string_utf8(env, bound, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, out, "address", v));
  CHECK(napi_create_int32(env, bound_port, &v));
  CHECK(napi_set_named_property(env, out, "port", v));
  return out;
}

/* udpSetPeer(handle, index, family 4|6, address: Uint8Array(4|16), port) */
static napi_value js_udp_set_peer(napi_env env, napi_callback_info info) {
  napi_value a[5];
  st_io *h = st_io_args(env, info, 5, a, "udpSetPeer(handle, index, family, address, port)", ST_KIND_UDP);
  if (!h) return NULL;
  udp_state *u = (udp_state *)h->ext;
  int32_t idx, family, port;
  uint8_t *bytes;
  size_t blen;
  if (!st_get_int(env, a[1], "index must be an integer", &idx)) return NULL;
  if (idx < 0 || idx >= UDP_MAX_PEERS) return st_throw(env, "ST_NATIVE_ARG", "peer index must be 0..65535");
  if (!st_get_int(env, a[2], "family must be 4 or 6", &family)) return NULL;
  if (family != u->family) return st_throw(env, "ST_NATIVE_ARG", "peer family differs from the socket's family");
  if (!st_get_bytes(env, a[3], "address must be a Uint8Array", &bytes, &blen)) return NULL;
  if (blen != (family == 4 ? 4u : 16u)) return st_throw(env, "ST_NATIVE_ARG", "address must be 4 (IPv4) or 16 (IPv6) octets");
  if (!st_get_int(env, a[4], "port must be an integer", &port)) return NULL;
  if (port < 1 || port > 65535) return st_throw(env, "ST_NATIVE_ARG", "peer port must be 1..65535");
  if (idx >= u->peer_cap) {
    int cap = u->peer_cap ? u->peer_cap : 16;
    while (cap <= idx) cap *= 2;
    if (cap > UDP_MAX_PEERS) cap = UDP_MAX_PEERS;
    udp_peer *p = (udp_peer *)realloc(u->peers, sizeof(udp_peer) * (size_t)cap);
    if (!p) return st_throw_errno(env, "realloc", ENOMEM);
    memset(p + u->peer_cap, 0, sizeof(udp_peer) * (size_t)(cap - u->peer_cap));
    u->peers = p;
    u->peer_cap = cap;
  }
  udp_peer *e = &u->peers[idx];
  memset(e, 0, sizeof *e);
  e->family = (uint8_t)family;
  e->port = (uint16_t)port;
  memcpy(e->bytes, bytes, blen);
  if (family == 4) {
    e->addr.v4.sin_family = AF_INET;
    e->addr.v4.sin_port = htons((uint16_t)port);
    memcpy(&e->addr.v4.sin_addr, bytes, 4);
    e->addr_len = sizeof e->addr.v4;
  } else {
    e->addr.v6.sin6_family = AF_INET6;
    e->addr.v6.sin6_port = htons((uint16_t)port);
    memcpy(&e->addr.v6.sin6_addr, bytes, 16);
    e->addr_len = sizeof e->addr.v6;
  }
  if (udp_reindex(u) != 0) return st_throw_errno(env, "udpSetPeer index", ENOMEM);
  return NULL;
}

/* udpClearPeer(handle, index): later sends naming it count as errors. */
static napi_value js_udp_clear_peer(napi_env env, napi_callback_info info) {
  napi_value a[2];
  st_io *h = st_io_args(env, info, 2, a, NULL, ST_KIND_UDP);
  if (!h) return NULL;
  udp_state *u = (udp_state *)h->ext;
  int32_t idx;
  if (!st_get_int(env, a[1], "index must be an integer", &idx)) return NULL;
  if (idx >= 0 && idx < u->peer_cap) {
    memset(&u->peers[idx], 0, sizeof u->peers[idx]);
    if (udp_reindex(u) != 0) return st_throw_errno(env, "udpClearPeer index", ENOMEM);
  }
  return NULL;
}

/* The kernel refused GSO message k (error e): note why, and send its datagrams plainly. */
static void udp_gso_refused(st_io *h, udp_state *u, const struct msghdr *m, int e, int *sent) {
  u->ostats[UO_GSO_FALLBACKS]++;
  u->ostats[UO_GSO_ERRNO] = e;
  int seg = (int)m->msg_iov[0].iov_len;
  if (e == EINVAL || e == EMSGSIZE) {
    /* A segment above the path MTU (or a limit of this kernel): try only smaller ones. */
    u->gso_max_seg = seg - 1;
    if (u->gso_max_seg < 64) u->gso = 0;
  } else if (!u->gso_ok) {
    u->gso = 0; /* refused at first use (EIO: no checksum offload on the route, ...): off for good */
  }
  u->ostats[UO_GSO] = u->gso;
  struct mmsghdr one[UDP_GSO_MAX_SEGS];
  int c = (int)m->msg_iovlen;
  for (int j = 0; j < c; j++) st_mmsg_set(&one[j], &m->msg_iov[j], m->msg_name, m->msg_namelen);
  st_io_send_chunk(h, one, m->msg_iov, c, NULL, sent);
}

/* Sends msgs[0..m) (message j carries segs[j] datagrams over its iovecs, with UDP_SEGMENT when
 * segs[j] > 1), counting datagrams. As st_io_send_chunk otherwise; a refused GSO message goes plainly. */
static void udp_send_chunk(st_io *h, udp_state *u, struct mmsghdr *msgs, const int *segs, int m, int *sent) {
  int k = 0;
  while (k < m) {
    int r = sendmmsg(h->fd, msgs + k, (unsigned)(m - k), MSG_DONTWAIT);
    if (r > 0) {
      for (int j = k; j < k + r; j++) {
        const struct msghdr *mh = &msgs[j].msg_hdr;
        for (size_t v = 0; v < mh->msg_iovlen; v++) h->stats[ST_TX_BYTES] += (double)mh->msg_iov[v].iov_len;
        h->stats[ST_TX_PACKETS] += segs[j];
        *sent += segs[j];
        if (segs[j] > 1) {
          u->gso_ok = 1;
          u->ostats[UO_GSO_SENDS]++;
          u->ostats[UO_GSO_SEGMENTS] += segs[j];
        }
      }
      k += r;
      continue;
    }
    int e = r < 0 ? errno : EIO;
    if (e == EINTR) continue;
    h->stats[ST_LAST_ERRNO] = e;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      for (int j = k; j < m; j++) h->stats[ST_TX_DROPPED] += segs[j]; /* socket buffer full: the rest of this chunk */
      return;
    }
    if (segs[k] > 1 && (e == EIO || e == EINVAL || e == EMSGSIZE || e == ENOPROTOOPT || e == EOPNOTSUPP)) {
      udp_gso_refused(h, u, &msgs[k].msg_hdr, e, sent);
    } else {
      h->stats[ST_TX_ERRORS] += segs[k]; /* this message fails (EMSGSIZE, unreachable, ...): skip it */
    }
    k++;
  }
}

/* udpSend(handle, slab: Uint8Array, desc: Int32Array (offset, length, peer)*, count) -> datagrams sent. */
static napi_value js_udp_send(napi_env env, napi_callback_info info) {
  napi_value a[4];
  st_io *h = st_io_args(env, info, 4, a, "udpSend(handle, slab, desc, count)", ST_KIND_UDP);
  if (!h) return NULL;
  udp_state *u = (udp_state *)h->ext;
  st_tx_batch b;
  if (!st_get_tx_batch(env, a + 1, 3, &b)) return NULL;

  struct mmsghdr msgs[UDP_BATCH];
  struct iovec iov[UDP_SEND_IOVS];
  int segs[UDP_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl[UDP_BATCH];
  int sent = 0, i = 0;
  const int32_t *d = b.desc;
#define DESC_OK(x)                                                                                          \
  (d[3 * (x)] >= 0 && d[3 * (x) + 1] >= 0 && (size_t)d[3 * (x)] + (size_t)d[3 * (x) + 1] <= b.slab_len && \
   d[3 * (x) + 2] >= 0 && d[3 * (x) + 2] < u->peer_cap && u->peers[d[3 * (x) + 2]].addr_len)
  while (i < b.count) {
    int m = 0, v = 0;
    while (m < UDP_BATCH && i < b.count && v < UDP_SEND_IOVS) {
      if (!DESC_OK(i)) {
        st_io_count(h, ST_TX_ERRORS, EINVAL);
        i++;
        continue;
      }
      int32_t len = d[3 * i + 1], peer = d[3 * i + 2];
      int first = v, c = 1, total = len;
      iov[v].iov_base = b.slab + d[3 * i];
      iov[v++].iov_len = (size_t)len;
      i++;
      /* The run: same peer, same length (the last may be shorter), within the kernel's limits. */
      if (u->gso && len > 0 && len <= u->gso_max_seg) {
        while (i < b.count && c < UDP_GSO_MAX_SEGS && v < UDP_SEND_IOVS && d[3 * i + 2] == peer && DESC_OK(i)) {
          int32_t l = d[3 * i + 1];
          if (l > len || l == 0 || total + l > u->gso_max_total) break;
          iov[v].iov_base = b.slab + d[3 * i];
          iov[v++].iov_len = (size_t)l;
          total += l;
          c++;
          i++;
          if (l < len) break;
        }
      }
      st_mmsg_set(&msgs[m], &iov[first], &u->peers[peer].addr.sa, u->peers[peer].addr_len);
      msgs[m].msg_hdr.msg_iovlen = (size_t)c;
      if (c > 1) {
        struct msghdr *mh = &msgs[m].msg_hdr;
        mh->msg_control = ctl[m].buf;
        mh->msg_controllen = sizeof ctl[m].buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t gso_size = (uint16_t)len;
        memcpy(CMSG_DATA(cm), &gso_size, sizeof gso_size);
      }
      segs[m++] = c;
    }
    udp_send_chunk(h, u, msgs, segs, m, &sent);
  }
#undef DESC_OK
  return st_int32(env, sent);
}

/* udpOffloadStats(handle, out: Float64Array(UO_COUNT)): copies the offload counters. */
static napi_value js_udp_offload_stats(napi_env env, napi_callback_info info) {
  napi_value a[2];
  st_io *h = st_io_args(env, info, 2, a, "udpOffloadStats(handle, out)", ST_KIND_UDP);
  if (!h) return NULL;
  udp_state *u = (udp_state *)h->ext;
  napi_typedarray_type t;
  size_t n;
  void *out;
  bool is;
  if (napi_is_typedarray(env, a[1], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, a[1], &t, &n, &out, NULL, NULL) != napi_ok || t != napi_float64_array || n < UO_COUNT)
    return st_throw(env, "ST_NATIVE_ARG", "out must be a Float64Array of at least 9 entries");
  memcpy(out, u->ostats, sizeof(double) * UO_COUNT);
  return NULL;
}

napi_status st_udp_init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      ST_FN("udpOpen", js_udp_open), ST_FN("udpSetPeer", js_udp_set_peer),
      ST_FN("udpClearPeer", js_udp_clear_peer), ST_FN("udpSend", js_udp_send),
      ST_FN("udpOffloadStats", js_udp_offload_stats),
  };
  return ST_DEFINE(env, exports, fns);
}
