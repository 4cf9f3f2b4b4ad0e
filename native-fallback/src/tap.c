/* TAP devices (IFF_TAP | IFF_NO_PI) on the fd handle of io.h.
 *
 * Receive: tap_rx() = readv() into ring entries 0..ready-1 until EAGAIN or the
 * ring is used up; a truncated frame is counted and its slot reused.
 * Send: tapWrite() = one write() per frame; a full queue or a down link is a
 * counted drop.
 *
 * With offloads (tapOpen flag TAP_OFFLOAD: IFF_VNET_HDR, TUNSETVNETHDRSZ 10,
 * TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN[|USO4|USO6]) the kernel hands over TCP
 * (and UDP) super-frames of up to 64 KB, and takes them; see offload.h.
 * Receive (tap_rx_offload), per frame:
 *   1. readv(virtio_net_hdr, the ring entry's slot, the rest of a scratch buffer),
 *   2. no GSO: the frame is in its slot; a partial checksum is completed there,
 *   3. GSO: the part in the slot is copied to the front of the scratch buffer, so
 *      the super-frame lies whole there, and each segment is written as an
 *      ordinary frame into the next ring entry's slot (at the ring's offset, so
 *      the pool's headroom is kept): JS sees a batch of normal frames.
 *      A super-frame with more segments than ring entries left waits in the
 *      scratch buffer for the next batch (rx_pending); one with more segments
 *      than a whole batch's entries, or malformed, is dropped whole and counted
 *      by reason (tapOffloadStats), never delivered in part.
 * Send (tapWrite), per run of frames: st_gro_group coalesces exact TCP
 *   continuations into one super-frame, written with one writev(vnet header,
 *   rewritten copy of the first frame's headers, every frame's payload); any
 *   other frame goes alone behind a zero vnet header. No frame is changed: one
 *   buffer may be delivered to several TAPs (decap's flood).
 *
 * JS functions: tapOpen, tapSetPersist, tapSetLink, tapWrite, tapOffloadStats,
 * and for tests offloadSegment, offloadCoalesce (and io* of io.c, registered
 * here too).
 */
#include "io.h"
#include "offload.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20 /* Linux 6.2 */
#define TUN_F_USO6 0x40
#endif

#define TAP_PERSIST 1  /* tapOpen flags: TUNSETPERSIST on */
#define TAP_NOPERSIST 2 /* TUNSETPERSIST off (re-attaching to a persistent device) */
#define TAP_VNET_HDR 4 /* IFF_VNET_HDR: frames carry a virtio_net_hdr in front (not interpreted here) */
#define TAP_MULTI_QUEUE 8 /* IFF_MULTI_QUEUE: one more queue of a multi-queue device */
#define TAP_OFFLOAD 16 /* IFF_VNET_HDR + TUNSETOFFLOAD, headers interpreted: segmentation and coalescing here */

#define VNET_F_NEEDS_CSUM 1

/* Offload counters (tapOffloadStats), same order as OFFLOAD_STAT_NAMES in src/io/tap.ts;
 * then one drop counter per reason ST_OFF_BAD_FRAME..ST_OFF_NO_ROOM. */
enum {
  TAP_GSO_FRAMES,    /* super-frames read */
  TAP_GSO_SEGMENTS,  /* frames delivered out of them */
  TAP_CSUM_DONE,     /* partial checksums completed (frames without GSO) */
  TAP_GRO_FRAMES,    /* super-frames written */
  TAP_GRO_SEGMENTS,  /* frames that went into them */
  TAP_DROP_BASE,     /* + reason - 1 */
  TAP_OSTAT_COUNT = TAP_DROP_BASE + ST_OFF_REASONS - 1
};

typedef struct {
  int vnet;             /* frames carry a vnet header that this file interprets (TAP_OFFLOAD) */
  uint8_t *scratch;     /* super-frames: [slot-capacity octets][the rest of the read] */
  size_t scratch_bytes;
  int scratch_cap;      /* the slot capacity the scratch buffer was laid out for */
  int pending_len;      /* a super-frame in scratch waiting for ring entries (0: none) */
  st_vnet_hdr pending_vh;
  double ostats[TAP_OSTAT_COUNT];
} tap_state;

static void tap_free(void *p) {
  tap_state *ts = (tap_state *)p;
  if (!ts) return;
  free(ts->scratch);
  free(ts);
}

static void tap_drop(tap_state *ts, int why) { ts->ostats[TAP_DROP_BASE + why - 1]++; }

static int tap_rx(st_io *h, int ready) {
  int n = 0;
  uint8_t scratch;
  while (n < ready) {
    /* The scratch octet tells a frame that did not fit (readv returns capacity + 1) from one that did. */
    struct iovec iov[2] = {{NULL, 0}, {&scratch, 1}};
    if (!st_io_ring_iov(h, n, &iov[0])) return n ? n : -EINVAL;
    ssize_t r = readv(h->fd, iov, 2);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return n ? n : -errno;
    }
    if (r == 0) break;
    if ((size_t)r > iov[0].iov_len) {
      h->stats[ST_RX_TRUNCATED]++;
      continue;
    }
    h->meta[n] = (int32_t)r;
    h->stats[ST_RX_PACKETS]++;
    h->stats[ST_RX_BYTES] += (double)r;
    n++;
  }
  return n;
}

/* Lays the scratch buffer out for slots of cap octets (allocates only when cap grows); 0 if out of memory. */
static int tap_scratch(tap_state *ts, int cap) {
  if (ts->scratch && cap <= ts->scratch_cap) return 1;
  free(ts->scratch);
  ts->scratch_bytes = (size_t)cap + ST_GSO_MAX_BYTES + 256; /* 64 KB beyond L2 headers, and a spare octet */
  ts->scratch = (uint8_t *)malloc(ts->scratch_bytes);
  ts->scratch_cap = ts->scratch ? cap : 0;
  return ts->scratch != NULL;
}

/* Segments the super-frame scratch[0..len) into ring entries n..; returns the segments
 * written, 0 if fewer than that are left (nothing written), or -reason (dropped). */
static int tap_segment(st_io *h, tap_state *ts, const st_vnet_hdr *vh, int len, int n, int ready) {
  st_gso g;
  int why = st_gso_parse(vh, ts->scratch, len, &g);
  if (why) return -why;
  if (g.segs > ready - n) return 0;
  struct iovec iov;
  for (int j = 0; j < g.segs; j++) {
    if (!st_io_ring_iov(h, n + j, &iov) || iov.iov_len < (size_t)(g.hdr + g.mss)) return -ST_OFF_TOO_BIG;
  }
  double bytes = 0;
  for (int j = 0; j < g.segs; j++) {
    st_io_ring_iov(h, n + j, &iov);
    int seg = st_gso_segment(&g, ts->scratch, j, (uint8_t *)iov.iov_base);
    h->meta[n + j] = seg;
    bytes += seg;
  }
  ts->ostats[TAP_GSO_FRAMES]++;
  ts->ostats[TAP_GSO_SEGMENTS] += g.segs;
  h->stats[ST_RX_PACKETS] += g.segs;
  h->stats[ST_RX_BYTES] += bytes;
  return g.segs;
}

static int tap_rx_offload(st_io *h, int ready) {
  tap_state *ts = (tap_state *)h->ext;
  int n = 0;
  h->rx_pending = 0;
  if (ts->pending_len) { /* first the super-frame that did not fit the last batch */
    int k = tap_segment(h, ts, &ts->pending_vh, ts->pending_len, 0, ready);
    ts->pending_len = 0;
    if (k > 0) n = k;
    else tap_drop(ts, k == 0 ? ST_OFF_NO_ROOM : -k);
  }
  while (n < ready) {
    uint8_t vhb[ST_VNET_HDR_BYTES];
    struct iovec iov[3];
    iov[0].iov_base = vhb;
    iov[0].iov_len = sizeof vhb;
    if (!st_io_ring_iov(h, n, &iov[1])) return n ? n : -EINVAL;
    int cap = (int)iov[1].iov_len;
    uint8_t spare;
    if (tap_scratch(ts, cap)) {
      iov[2].iov_base = ts->scratch + cap;
      iov[2].iov_len = ts->scratch_bytes - (size_t)cap;
    } else { /* no memory for super-frames: they count as truncated */
      iov[2].iov_base = &spare;
      iov[2].iov_len = 1;
    }
    ssize_t r = readv(h->fd, iov, 3);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return n ? n : -errno;
    }
    if (r == 0) break;
    if (r < (ssize_t)sizeof vhb) {
      tap_drop(ts, ST_OFF_BAD_FRAME);
      continue;
    }
    int len = (int)(r - (ssize_t)sizeof vhb);
    st_vnet_hdr vh;
    st_vnet_read(vhb, &vh);
    if ((size_t)r == sizeof vhb + iov[1].iov_len + iov[2].iov_len) { /* filled every octet: cut short */
      h->stats[ST_RX_TRUNCATED]++;
      continue;
    }
    if (vh.gso_type == 0) {
      if (len > cap) {
        h->stats[ST_RX_TRUNCATED]++;
        continue;
      }
      int why = st_csum_complete(&vh, (uint8_t *)iov[1].iov_base, len);
      if (why) {
        tap_drop(ts, why);
        continue;
      }
      if (vh.flags & VNET_F_NEEDS_CSUM) ts->ostats[TAP_CSUM_DONE]++;
      h->meta[n] = len;
      h->stats[ST_RX_PACKETS]++;
      h->stats[ST_RX_BYTES] += (double)len;
      n++;
      continue;
    }
    if (!ts->scratch) {
      tap_drop(ts, ST_OFF_TOO_BIG);
      continue;
    }
    memcpy(ts->scratch, iov[1].iov_base, (size_t)(len < cap ? len : cap)); /* the whole super-frame in scratch */
    int k = tap_segment(h, ts, &vh, len, n, ready);
    if (k > 0) {
      n += k;
    } else if (k < 0) {
      tap_drop(ts, -k);
    } else if (n == 0) { /* more segments than a whole batch: never fits */
      tap_drop(ts, ST_OFF_NO_ROOM);
    } else { /* deliver this batch first; the frame waits in scratch */
      ts->pending_len = len;
      ts->pending_vh = vh;
      h->rx_pending = 1;
      break;
    }
  }
  return n;
}

/* tapOpen(name: string ('' = kernel picks tapN), flags) -> { handle, name, offload (TUN_F_* set; 0 without TAP_OFFLOAD) } */
static napi_value js_tap_open(napi_env env, napi_callback_info info) {
  napi_value a[2];
  if (st_args(env, info, 2, a, "tapOpen(name, flags)") < 0) return NULL;
  char name[IFNAMSIZ + 1];
  size_t name_len;
  if (!st_get_ifname(env, a[0], name, sizeof name, &name_len, 0, "tapOpen: name must be a string",
                     "tapOpen: name must be at most 15 octets"))
    return NULL;
  int32_t flags;
  if (!st_get_int(env, a[1], "tapOpen: flags must be an integer", &flags)) return NULL;

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return st_throw_errno(env, "open /dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (flags & (TAP_VNET_HDR | TAP_OFFLOAD)) ifr.ifr_flags |= IFF_VNET_HDR;
  if (flags & TAP_MULTI_QUEUE) ifr.ifr_flags |= IFF_MULTI_QUEUE;
  memcpy(ifr.ifr_name, name, name_len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    char what[64];
    snprintf(what, sizeof what, "TUNSETIFF %s", name_len ? name : "tap%d");
    return st_throw_errno(env, what, e);
  }
  if ((flags & (TAP_PERSIST | TAP_NOPERSIST)) && ioctl(fd, TUNSETPERSIST, (flags & TAP_PERSIST) ? 1 : 0) < 0) {
    int e = errno;
    close(fd);
    return st_throw_errno(env, "TUNSETPERSIST", e);
  }
  int offload = 0;
  if (flags & TAP_OFFLOAD) {
    int hdr = ST_VNET_HDR_BYTES;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
      int e = errno;
      close(fd);
      return st_throw_errno(env, "TUNSETVNETHDRSZ 10", e);
    }
    /* The most the kernel takes: USO since Linux 6.2, then TSO, then only checksums, then nothing. */
    const unsigned tries[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6,
                              TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN, TUN_F_CSUM};
    for (size_t i = 0; i < sizeof tries / sizeof tries[0] && !offload; i++)
      if (ioctl(fd, TUNSETOFFLOAD, tries[i]) == 0) offload = (int)tries[i];
  }
  tap_state *ts = (tap_state *)calloc(1, sizeof *ts);
  if (!ts) {
    close(fd);
    return st_throw_errno(env, "calloc", ENOMEM);
  }
  ts->vnet = (flags & TAP_OFFLOAD) != 0;
  napi_value handle = st_io_wrap(env, ST_KIND_TAP, fd, 1, ts->vnet ? tap_rx_offload : tap_rx, ts, tap_free);
  if (!handle) return NULL;
  napi_value out, actual, off;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &actual));
  CHECK(napi_set_named_property(env, out, "handle", handle));
  CHECK(napi_set_named_property(env, out, "name", actual));
  CHECK(napi_create_int32(env, offload, &off));
  CHECK(napi_set_named_property(env, out, "offload", off));
  return out;
}

/* tapSetPersist(handle, on: boolean) */
static napi_value js_tap_set_persist(napi_env env, napi_callback_info info) {
  napi_value a[2];
  st_io *h = st_io_args(env, info, 2, a, NULL, ST_KIND_TAP);
  if (!h) return NULL;
  bool on;
  if (napi_get_value_bool(env, a[1], &on) != napi_ok) return st_throw(env, "ST_NATIVE_ARG", "on must be a boolean");
  if (ioctl(h->fd, TUNSETPERSIST, on ? 1 : 0) < 0) return st_throw_errno(env, "TUNSETPERSIST", errno);
  return NULL;
}

/* tapSetLink(name, mtuBytes (0 = leave), up (1 up, 0 down, -1 leave)): SIOCSIFMTU / SIOCSIFFLAGS. */
static napi_value js_tap_set_link(napi_env env, napi_callback_info info) {
  const char *usage = "tapSetLink(name: 1..15 octets, mtu, up)";
  napi_value a[3];
  char name[IFNAMSIZ + 1];
  size_t name_len;
  int32_t mtu, up;
  if (st_args(env, info, 3, a, usage) < 0) return NULL;
  if (!st_get_ifname(env, a[0], name, sizeof name, &name_len, 1, usage, usage)) return NULL;
  if (!st_get_int(env, a[1], "mtu must be an integer", &mtu)) return NULL;
  if (!st_get_int(env, a[2], "up must be an integer", &up)) return NULL;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return st_throw_errno(env, "socket(AF_INET)", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, name_len);
  const char *what = NULL;
  if (mtu > 0) {
    ifr.ifr_mtu = mtu;
    if (ioctl(s, SIOCSIFMTU, &ifr) < 0) what = "SIOCSIFMTU";
  }
  if (!what && up >= 0) {
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
      what = "SIOCGIFFLAGS";
    } else {
      if (up)
        ifr.ifr_flags |= IFF_UP;
      else
        ifr.ifr_flags &= ~IFF_UP;
      if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) what = "SIOCSIFFLAGS";
    }
  }
  int e = errno;
  close(s);
  if (what) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s %s", what, name);
    return st_throw_errno(env, msg, e);
  }
  return NULL;
}

/* Hands frames to emit: one call per super-frame (coalesced TCP segments) or lone frame,
 * with the iovecs to write (vnet header first), the frames in it and their octets. */
typedef void (*gro_emit_fn)(void *ctx, const struct iovec *iov, int iovcnt, int frames, double bytes);

#define GRO_CHUNK 256

/* Coalesces the frames of a send batch in runs (see offload.h st_gro_group); a bad
 * descriptor entry counts as a tx error (on h, if not NULL) and ends a run. */
static void gro_batch(st_io *h, const st_tx_batch *b, gro_emit_fn emit, void *ctx) {
  const uint8_t *ptr[GRO_CHUNK];
  int len[GRO_CHUNK];
  struct iovec iov[ST_GRO_MAX_FRAMES + 2];
  uint8_t vhb[ST_VNET_HDR_BYTES], hdr[ST_GRO_MAX_HDR_BYTES];
  for (int base = 0; base < b->count; base += GRO_CHUNK) {
    int m = b->count - base < GRO_CHUNK ? b->count - base : GRO_CHUNK;
    for (int i = 0; i < m; i++) {
      int32_t off = b->desc[2 * (base + i)], l = b->desc[2 * (base + i) + 1];
      int ok = off >= 0 && l > 0 && (size_t)off + (size_t)l <= b->slab_len;
      ptr[i] = ok ? b->slab + off : NULL;
      len[i] = ok ? l : -1;
    }
    int i = 0;
    while (i < m) {
      if (len[i] < 0) {
        if (h) st_io_count(h, ST_TX_ERRORS, EINVAL);
        i++;
        continue;
      }
      int run = 1;
      while (i + run < m && len[i + run] >= 0) run++;
      st_vnet_hdr vh;
      int at;
      int k = st_gro_group(ptr + i, len + i, run, &vh, hdr, &at);
      st_vnet_write(vhb, &vh);
      iov[0].iov_base = vhb;
      iov[0].iov_len = sizeof vhb;
      int v = 1;
      if (k > 1) { /* the rewritten headers, then every frame's payload */
        iov[v].iov_base = hdr;
        iov[v++].iov_len = (size_t)at;
      }
      double bytes = 0;
      for (int j = 0; j < k; j++) {
        iov[v].iov_base = (void *)(ptr[i + j] + at);
        iov[v++].iov_len = (size_t)(len[i + j] - at);
        bytes += len[i + j];
      }
      emit(ctx, iov, v, k, bytes);
      i += k;
    }
  }
}

typedef struct {
  st_io *h;
  tap_state *ts;
  int written;
} tap_emit_ctx;

static void tap_emit(void *p, const struct iovec *iov, int iovcnt, int frames, double bytes) {
  tap_emit_ctx *c = (tap_emit_ctx *)p;
  st_io *h = c->h;
  ssize_t r;
  do r = writev(h->fd, iov, iovcnt);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    int slot = (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EIO) ? ST_TX_DROPPED : ST_TX_ERRORS;
    h->stats[slot] += frames;
    h->stats[ST_LAST_ERRNO] = e;
    return;
  }
  c->written += frames;
  h->stats[ST_TX_PACKETS] += frames;
  h->stats[ST_TX_BYTES] += bytes;
  if (frames > 1) {
    c->ts->ostats[TAP_GRO_FRAMES]++;
    c->ts->ostats[TAP_GRO_SEGMENTS] += frames;
  }
}

/* tapWrite(handle, slab: Uint8Array, desc: Int32Array (offset, length)*, count) -> frames written.
 * Never throws on a per-frame failure: EAGAIN/ENOBUFS/EIO count as drops, others as errors.
 * With offloads, frames that join a super-frame count one each, and the first one's headers
 * are rewritten in its buffer (it describes the super-frame afterwards). */
static napi_value js_tap_write(napi_env env, napi_callback_info info) {
  napi_value a[4];
  st_io *h = st_io_args(env, info, 4, a, "tapWrite(handle, slab, desc, count)", ST_KIND_TAP);
  if (!h) return NULL;
  st_tx_batch b;
  if (!st_get_tx_batch(env, a + 1, 2, &b)) return NULL;
  tap_state *ts = (tap_state *)h->ext;
  if (ts->vnet) {
    tap_emit_ctx c = {h, ts, 0};
    gro_batch(h, &b, tap_emit, &c);
    return st_int32(env, c.written);
  }
  int written = 0;
  for (int i = 0; i < b.count; i++) {
    int32_t off = b.desc[2 * i], len = b.desc[2 * i + 1];
    if (off < 0 || len <= 0 || (size_t)off + (size_t)len > b.slab_len) {
      st_io_count(h, ST_TX_ERRORS, EINVAL);
      continue;
    }
    ssize_t r;
    do r = write(h->fd, b.slab + off, (size_t)len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      int e = errno;
      st_io_count(h, (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EIO) ? ST_TX_DROPPED : ST_TX_ERRORS, e);
      continue;
    }
    written++;
    h->stats[ST_TX_PACKETS]++;
    h->stats[ST_TX_BYTES] += (double)len;
  }
  return st_int32(env, written);
}

/* tapOffloadStats(handle, out: Float64Array(TAP_OSTAT_COUNT)): the offload counters (also after close). */
static napi_value js_tap_offload_stats(napi_env env, napi_callback_info info) {
  napi_value a[2];
  if (st_args(env, info, 2, a, "tapOffloadStats(handle, out)") < 0) return NULL;
  st_io *h = st_io_lookup(env, a[0]);
  if (!h || h->kind != ST_KIND_TAP) return st_throw(env, "ST_NATIVE_ARG", "handle: not a TAP handle");
  double *out;
  size_t n;
  napi_typedarray_type t;
  bool is;
  if (napi_is_typedarray(env, a[1], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, a[1], &t, &n, (void **)&out, NULL, NULL) != napi_ok || t != napi_float64_array ||
      n < TAP_OSTAT_COUNT)
    return st_throw(env, "ST_NATIVE_ARG", "out must be a Float64Array of at least 12 entries");
  memcpy(out, ((tap_state *)h->ext)->ostats, sizeof(double) * TAP_OSTAT_COUNT);
  return NULL;
}

/* offloadSegment(input: Uint8Array (vnet header + frame), out: Uint8Array, capBytes, lens: Int32Array)
 * -> segments written (segment j at out[j * capBytes], lens[j] octets), or -reason (ST_OFF_*).
 * The receive path of tap_rx_offload without a device, for tests. */
static napi_value js_offload_segment(napi_env env, napi_callback_info info) {
  napi_value a[4];
  if (st_args(env, info, 4, a, "offloadSegment(input, out, capBytes, lens)") < 0) return NULL;
  uint8_t *in, *out;
  size_t in_len, out_len, lens_len;
  int32_t cap, *lens;
  if (!st_get_bytes(env, a[0], "input must be a Uint8Array", &in, &in_len)) return NULL;
  if (!st_get_bytes(env, a[1], "out must be a Uint8Array", &out, &out_len)) return NULL;
  if (!st_get_int(env, a[2], "capBytes must be an integer", &cap)) return NULL;
  if (!st_get_i32(env, a[3], "lens must be an Int32Array", &lens, &lens_len)) return NULL;
  if (cap < 1 || lens_len < 1 || (size_t)cap * lens_len > out_len || in_len > ST_GSO_MAX_BYTES * 2)
    return st_throw(env, "ST_NATIVE_ARG", "need 1 ≤ capBytes, lens.length ≥ 1, capBytes * lens.length ≤ out.length, input ≤ 128 KB");
  if (in_len < ST_VNET_HDR_BYTES) return st_int32(env, -ST_OFF_BAD_FRAME);
  st_vnet_hdr vh;
  st_vnet_read(in, &vh);
  int len = (int)in_len - ST_VNET_HDR_BYTES;
  const uint8_t *f = in + ST_VNET_HDR_BYTES;
  if (vh.gso_type == 0) {
    if (len > cap) return st_int32(env, -ST_OFF_TOO_BIG);
    memcpy(out, f, (size_t)len);
    int why = st_csum_complete(&vh, out, len);
    if (why) return st_int32(env, -why);
    lens[0] = len;
    return st_int32(env, 1);
  }
  st_gso g;
  int why = st_gso_parse(&vh, f, len, &g);
  if (why) return st_int32(env, -why);
  if (g.hdr + g.mss > cap) return st_int32(env, -ST_OFF_TOO_BIG);
  if ((size_t)g.segs > lens_len) return st_int32(env, -ST_OFF_NO_ROOM);
  for (int j = 0; j < g.segs; j++) lens[j] = st_gso_segment(&g, f, j, out + (size_t)j * (size_t)cap);
  return st_int32(env, g.segs);
}

typedef struct {
  uint8_t *out;
  size_t out_len, used;
  int32_t *desc;
  size_t desc_len;
  int m, overflow;
} copy_emit_ctx;

static void copy_emit(void *p, const struct iovec *iov, int iovcnt, int frames, double bytes) {
  copy_emit_ctx *c = (copy_emit_ctx *)p;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
  if (c->overflow || c->used + total > c->out_len || (size_t)(c->m + 1) * 3 > c->desc_len) {
    c->overflow = 1;
    return;
  }
  c->desc[3 * c->m] = (int32_t)c->used;
  c->desc[3 * c->m + 1] = (int32_t)total;
  c->desc[3 * c->m + 2] = frames;
  for (int i = 0; i < iovcnt; i++) {
    memcpy(c->out + c->used, iov[i].iov_base, iov[i].iov_len);
    c->used += iov[i].iov_len;
  }
  c->m++;
}

/* offloadCoalesce(slab, desc: Int32Array (offset, length)*, count, out: Uint8Array, outDesc: Int32Array)
 * -> writes tapWrite would make (each: vnet header + frame, at outDesc (offset, length, frames)*),
 * or -1 when out or outDesc is too small. For tests. */
static napi_value js_offload_coalesce(napi_env env, napi_callback_info info) {
  napi_value a[5];
  if (st_args(env, info, 5, a, "offloadCoalesce(slab, desc, count, out, outDesc)") < 0) return NULL;
  st_tx_batch b;
  if (!st_get_tx_batch(env, a, 2, &b)) return NULL;
  copy_emit_ctx c;
  memset(&c, 0, sizeof c);
  if (!st_get_bytes(env, a[3], "out must be a Uint8Array", &c.out, &c.out_len)) return NULL;
  if (!st_get_i32(env, a[4], "outDesc must be an Int32Array", &c.desc, &c.desc_len)) return NULL;
  gro_batch(NULL, &b, copy_emit, &c);
  return st_int32(env, c.overflow ? -1 : c.m);
}

napi_status st_tap_init(napi_env env, napi_value exports) {
  napi_status st = st_io_init(env, exports); /* addon.c calls st_tap_init only: the io* functions come first */
  if (st != napi_ok) return st;
  napi_property_descriptor fns[] = {
      ST_FN("tapOpen", js_tap_open), ST_FN("tapSetPersist", js_tap_set_persist),
      ST_FN("tapSetLink", js_tap_set_link), ST_FN("tapWrite", js_tap_write),
      ST_FN("tapOffloadStats", js_tap_offload_stats), ST_FN("offloadSegment", js_offload_segment),
      ST_FN("offloadCoalesce", js_offload_coalesce),
  };
  return ST_DEFINE(env, exports, fns);
}
