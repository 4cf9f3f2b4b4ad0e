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
 * JS functions: udpOpen, udpSetPeer, udpClearPeer, udpSend (and io* of io.c).
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include "io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDP_META_STRIDE 12
#define UDP_BATCH 64          /* datagrams per recvmmsg/sendmmsg call */
#define UDP_MAX_PEERS 65536   /* peer indices 0..65535 */

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
} udp_state;

static void udp_free(void *p) {
  udp_state *u = (udp_state *)p;
  if (!u) return;
  free(u->peers);
  free(u->index);
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
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      /* Errors queued on the socket (ICMP unreachable and the like) are reported once: count, go on. */
      if (e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == ENOMEM || e == ENOBUFS) {
        st_io_count(h, ST_RX_ERRORS, e);
        break;
      }
      return n ? n : -e;
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

/* udpOpen(family 4|6, address, port, rcvbufBytes, sndbufBytes, reuseAddr)
 *   -> { handle, family, address, port } (the bound address; port 0 picks one). IPv6 sockets are IPv6-only. */
static napi_value js_udp_open(napi_env env, napi_callback_info info) {
  napi_value a[6];
  if (st_args(env, info, 6, a, "udpOpen(family, address, port, rcvbufBytes, sndbufBytes, reuseAddr)") < 0) return NULL;
  int32_t family, port, rcvbuf, sndbuf;
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
  napi_value handle = st_io_wrap(env, ST_KIND_UDP, fd, UDP_META_STRIDE, udp_rx, u, udp_free);
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

/* udpSend(handle, slab: Uint8Array, desc: Int32Array (offset, length, peer)*, count) -> datagrams sent. */
static napi_value js_udp_send(napi_env env, napi_callback_info info) {
  napi_value a[4];
  st_io *h = st_io_args(env, info, 4, a, "udpSend(handle, slab, desc, count)", ST_KIND_UDP);
  if (!h) return NULL;
  udp_state *u = (udp_state *)h->ext;
  st_tx_batch b;
  if (!st_get_tx_batch(env, a + 1, 3, &b)) return NULL;

  struct mmsghdr msgs[UDP_BATCH];
  struct iovec iov[UDP_BATCH];
  int sent = 0, i = 0;
  while (i < b.count) {
    int m = 0;
    for (; m < UDP_BATCH && i < b.count; i++) {
      int32_t off = b.desc[3 * i], len = b.desc[3 * i + 1], peer = b.desc[3 * i + 2];
      if (off < 0 || len < 0 || (size_t)off + (size_t)len > b.slab_len || peer < 0 || peer >= u->peer_cap ||
          !u->peers[peer].addr_len) {
        st_io_count(h, ST_TX_ERRORS, EINVAL);
        continue;
      }
      iov[m].iov_base = b.slab + off;
      iov[m].iov_len = (size_t)len;
      st_mmsg_set(&msgs[m], &iov[m], &u->peers[peer].addr.sa, u->peers[peer].addr_len);
      m++;
    }
    st_io_send_chunk(h, msgs, iov, m, NULL, &sent); /* a datagram that fails (EMSGSIZE, unreachable, ...) is skipped */
  }
  return st_int32(env, sent);
}

napi_status st_udp_init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      ST_FN("udpOpen", js_udp_open), ST_FN("udpSetPeer", js_udp_set_peer),
      ST_FN("udpClearPeer", js_udp_clear_peer), ST_FN("udpSend", js_udp_send),
  };
  return ST_DEFINE(env, exports, fns);
}
