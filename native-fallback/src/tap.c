/* TAP devices, and the fd handle that TAP and UDP (udp.c) share.
 *
 * An fd handle is a non-blocking descriptor with a batch reader driven by
 * uv_poll. JS lends it a receive ring: (offset, capacity) pairs into a slab
 * (PacketPool.slab) and a meta Int32Array. When the fd is readable the reader
 * fills up to `ready` ring entries, writes one meta row per packet, and calls
 * the JS callback once per batch: cb(count, errno) -> the number of ring entries
 * ready for the next batch (0 stops reading until ioResume). Nothing is
 * allocated per packet and nothing throws on the hot path: errors are counters.
 *
 * Receive, per readable event:
 *   1. readv() (TAP) or recvmmsg() (UDP) into ring entries 0..ready-1, until
 *      EAGAIN or the ring is used up; a truncated frame is counted and its
 *      slot reused (TAP) or flagged (UDP, meta flags bit 0).
 *   2. one JS call with the count; its return value re-arms the ring.
 * Send: tapWrite() = one write() per frame (the kernel has no batched TAP
 * write); a full queue or a down link is a counted drop.
 *
 * JS functions (all handles): ioStart, ioResume, ioPause, ioClose, ioStats.
 * TAP: tapOpen, tapSetPersist, tapSetLink, tapWrite.
 */

#ifndef ST_IO_SHARED
#define ST_IO_SHARED
/* ---- Shared with udp.c, which includes this block with ST_IO_SHARED_ONLY
 * defined (there is no io.h yet). ---- */
#include "addon.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Counter slots reported by ioStats (same order as NATIVE_STAT_NAMES in src/io/tap.ts). */
enum {
  ST_RX_PACKETS,
  ST_RX_BYTES,
  ST_RX_BATCHES,
  ST_RX_TRUNCATED,
  ST_RX_ERRORS,
  ST_TX_PACKETS,
  ST_TX_BYTES,
  ST_TX_DROPPED, /* queue full (EAGAIN/ENOBUFS) or link down (EIO) */
  ST_TX_ERRORS,  /* any other failure, including a bad descriptor entry */
  ST_LAST_ERRNO, /* errno of the latest rx or tx error */
  ST_STAT_COUNT
};

enum { ST_KIND_TAP = 1, ST_KIND_UDP = 2 };

/* Most ring entries one batch may use. */
#define ST_RING_MAX 1024

typedef struct st_io st_io;
/* Reads at most `ready` packets into the ring; returns how many, or -errno on
 * an error that will repeat (reading stops). */
typedef int (*st_io_rx_fn)(st_io *h, int ready);

struct st_io {
  napi_env env;
  int kind;
  int fd;
  int meta_stride; /* int32 words per meta row */
  st_io_rx_fn rx;
  void *ext; /* kind-specific state (UDP peer table), freed by free_ext */
  void (*free_ext)(void *);
  uv_poll_t poll;
  int polling, closed, finalized, poll_closed, in_callback, hooked;
  napi_ref cb_ref, slab_ref, ring_ref, meta_ref;
  napi_async_context actx;
  uint8_t *slab;
  size_t slab_len;
  int32_t *ring;
  int ring_entries;
  int32_t *meta;
  int ready;
  double stats[ST_STAT_COUNT];
};

/* Creates a handle for fd (taking ownership) and returns it as a JS external. */
napi_value st_io_wrap(napi_env env, int kind, int fd, int meta_stride, st_io_rx_fn rx, st_io **out);
/* The open handle of `kind` behind a JS value; throws and returns NULL otherwise. */
st_io *st_io_unwrap(napi_env env, napi_value v, int kind);
/* Reads a Uint8Array or Int32Array argument; throws (and returns 0) on a type mismatch. */
int st_get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len);
int st_get_i32(napi_env env, napi_value v, const char *what, int32_t **data, size_t *len);
/* Reads an int32 argument; throws (and returns 0) if it is not a number. */
int st_get_int(napi_env env, napi_value v, const char *what, int32_t *out);

#define CHECK(call)                     \
  do {                                  \
    if ((call) != napi_ok) return NULL; \
  } while (0)
#endif /* ST_IO_SHARED */

#ifndef ST_IO_SHARED_ONLY

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

static const napi_type_tag st_io_tag = {0x5e37a6c1d2b94f10ULL, 0x8c41e2f7a9035b6dULL};

/* ---- handle life cycle ----
 * close: stop polling, close the fd, drop the JS references; the memory goes
 * when both the uv_close callback and the external's finalizer have run. */

static void io_maybe_free(st_io *h) {
  if (!h->finalized || !h->poll_closed) return;
  if (h->free_ext) h->free_ext(h->ext);
  free(h);
}

static void io_on_poll_closed(uv_handle_t *p) {
  st_io *h = (st_io *)p->data;
  h->poll_closed = 1;
  io_maybe_free(h);
}

static void io_drop_ring(st_io *h) {
  napi_ref *refs[] = {&h->cb_ref, &h->slab_ref, &h->ring_ref, &h->meta_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    if (*refs[i]) napi_delete_reference(h->env, *refs[i]);
    *refs[i] = NULL;
  }
  h->slab = NULL;
  h->ring = NULL;
  h->meta = NULL;
  h->ready = 0;
}

static void io_cleanup_hook(void *arg);

static void io_close(st_io *h) {
  if (h->closed) return;
  h->closed = 1;
  h->polling = 0;
  uv_poll_stop(&h->poll);
  uv_close((uv_handle_t *)&h->poll, io_on_poll_closed);
  close(h->fd);
  h->fd = -1;
  io_drop_ring(h);
  if (h->actx && !h->in_callback) {
    napi_async_destroy(h->env, h->actx);
    h->actx = NULL;
  }
  if (h->hooked) {
    h->hooked = 0;
    napi_remove_env_cleanup_hook(h->env, io_cleanup_hook, h);
  }
}

static void io_cleanup_hook(void *arg) {
  st_io *h = (st_io *)arg;
  h->hooked = 0; /* being run: nothing to remove */
  io_close(h);
}

static void io_finalize(napi_env env, void *data, void *hint) {
  st_io *h = (st_io *)data;
  io_close(h);
  h->finalized = 1;
  io_maybe_free(h);
}

/* ---- receive ---- */

static void io_stop_polling(st_io *h) {
  if (!h->polling) return;
  h->polling = 0;
  uv_poll_stop(&h->poll);
}

/* One JS call per batch; its return value is the ring entries ready next. */
static void io_call_js(st_io *h, int count, int err) {
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], result;
  int ok = napi_get_reference_value(env, h->cb_ref, &cb) == napi_ok && cb != NULL &&
           napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, count, &argv[0]) == napi_ok &&
           napi_create_int32(env, err, &argv[1]) == napi_ok;
  int next = 0;
  if (ok) {
    h->in_callback = 1;
    napi_status st = napi_make_callback(env, h->actx, recv, cb, 2, argv, &result);
    h->in_callback = 0;
    if (st == napi_ok) {
      int32_t r;
      if (napi_get_value_int32(env, result, &r) == napi_ok) next = r;
    } else {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  if (h->closed) {
    if (h->actx) napi_async_destroy(env, h->actx);
    h->actx = NULL;
  } else {
    h->ready = next < 0 ? 0 : next > h->ring_entries ? h->ring_entries : next;
    if (h->ready == 0) io_stop_polling(h);
  }
  napi_close_handle_scope(env, scope);
}

static void io_on_readable(uv_poll_t *p, int status, int events) {
  st_io *h = (st_io *)p->data;
  if (h->closed || !h->ring) return;
  if (status < 0) {
    h->stats[ST_RX_ERRORS]++;
    h->stats[ST_LAST_ERRNO] = -status;
    io_stop_polling(h);
    io_call_js(h, 0, -status);
    return;
  }
  if (h->ready <= 0) {
    io_stop_polling(h);
    return;
  }
  int n = h->rx(h, h->ready);
  if (n == 0) return;
  if (n < 0) {
    h->stats[ST_RX_ERRORS]++;
    h->stats[ST_LAST_ERRNO] = -n;
    io_stop_polling(h);
    io_call_js(h, 0, -n);
    return;
  }
  h->stats[ST_RX_BATCHES]++;
  io_call_js(h, n, 0);
}

static void io_start_polling(st_io *h) {
  if (h->polling || h->closed || h->ready <= 0 || !h->ring) return;
  if (uv_poll_start(&h->poll, UV_READABLE, io_on_readable) == 0) h->polling = 1;
}

/* ---- argument helpers ---- */

int st_get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  napi_typedarray_type t;
  void *d;
  size_t n;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &t, &n, &d, NULL, NULL) != napi_ok || t != napi_uint8_array) {
    st_throw(env, "ST_NATIVE_ARG", what);
    return 0;
  }
  *data = (uint8_t *)d;
  *len = n;
  return 1;
}

int st_get_i32(napi_env env, napi_value v, const char *what, int32_t **data, size_t *len) {
  napi_typedarray_type t;
  void *d;
  size_t n;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &t, &n, &d, NULL, NULL) != napi_ok || t != napi_int32_array) {
    st_throw(env, "ST_NATIVE_ARG", what);
    return 0;
  }
  *data = (int32_t *)d;
  *len = n;
  return 1;
}

int st_get_int(napi_env env, napi_value v, const char *what, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    st_throw(env, "ST_NATIVE_ARG", what);
    return 0;
  }
  return 1;
}

napi_value st_io_wrap(napi_env env, int kind, int fd, int meta_stride, st_io_rx_fn rx, st_io **out) {
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    close(fd);
    return st_throw(env, "ST_NATIVE_LOOP", "napi_get_uv_event_loop failed");
  }
  st_io *h = (st_io *)calloc(1, sizeof *h);
  if (!h) {
    close(fd);
    return st_throw_errno(env, "calloc", ENOMEM);
  }
  int rc = uv_poll_init(loop, &h->poll, fd);
  if (rc != 0) {
    free(h);
    close(fd);
    return st_throw_errno(env, "uv_poll_init", -rc);
  }
  h->poll.data = h;
  h->env = env;
  h->kind = kind;
  h->fd = fd;
  h->meta_stride = meta_stride;
  h->rx = rx;
  napi_value ext;
  if (napi_create_external(env, h, io_finalize, NULL, &ext) != napi_ok) {
    io_close(h);
    h->finalized = 1; /* freed by the close callback */
    return NULL;
  }
  napi_type_tag_object(env, ext, &st_io_tag);
  if (napi_add_env_cleanup_hook(env, io_cleanup_hook, h) == napi_ok) h->hooked = 1;
  *out = h;
  return ext;
}

st_io *st_io_unwrap(napi_env env, napi_value v, int kind) {
  bool tagged = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, v, &st_io_tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, v, &data) != napi_ok) {
    st_throw(env, "ST_NATIVE_ARG", "handle: not a sectunnel I/O handle");
    return NULL;
  }
  st_io *h = (st_io *)data;
  if (kind && h->kind != kind) {
    st_throw(env, "ST_NATIVE_ARG", kind == ST_KIND_TAP ? "handle: not a TAP handle" : "handle: not a UDP handle");
    return NULL;
  }
  if (h->closed) {
    st_throw(env, "ST_NATIVE_CLOSED", "handle is closed");
    return NULL;
  }
  return h;
}

/* ---- JS: generic handle functions ---- */

/* ioStart(handle, slab: Uint8Array, ring: Int32Array (offset, capacity)*, meta: Int32Array, cb, ready) */
static napi_value js_io_start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value a[6];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc < 6) return st_throw(env, "ST_NATIVE_ARG", "ioStart(handle, slab, ring, meta, cb, ready)");
  st_io *h = st_io_unwrap(env, a[0], 0);
  if (!h) return NULL;
  uint8_t *slab;
  size_t slab_len, ring_len, meta_len;
  int32_t *ring, *meta, ready;
  if (!st_get_bytes(env, a[1], "slab must be a Uint8Array", &slab, &slab_len)) return NULL;
  if (!st_get_i32(env, a[2], "ring must be an Int32Array", &ring, &ring_len)) return NULL;
  if (!st_get_i32(env, a[3], "meta must be an Int32Array", &meta, &meta_len)) return NULL;
  napi_valuetype t;
  CHECK(napi_typeof(env, a[4], &t));
  if (t != napi_function) return st_throw(env, "ST_NATIVE_ARG", "cb must be a function");
  if (!st_get_int(env, a[5], "ready must be an integer", &ready)) return NULL;
  int entries = (int)(ring_len / 2);
  if (entries < 1 || entries > ST_RING_MAX)
    return st_throw(env, "ST_NATIVE_ARG", "ring must hold 1..1024 (offset, capacity) pairs");
  if (meta_len < (size_t)entries * (size_t)h->meta_stride)
    return st_throw(env, "ST_NATIVE_ARG", "meta is shorter than ring entries * meta stride");
  io_stop_polling(h);
  io_drop_ring(h);
  if (!h->actx) {
    napi_value name;
    CHECK(napi_create_string_utf8(env, h->kind == ST_KIND_TAP ? "sectunnel:tap" : "sectunnel:udp", NAPI_AUTO_LENGTH, &name));
    CHECK(napi_async_init(env, NULL, name, &h->actx));
  }
  CHECK(napi_create_reference(env, a[1], 1, &h->slab_ref));
  CHECK(napi_create_reference(env, a[2], 1, &h->ring_ref));
  CHECK(napi_create_reference(env, a[3], 1, &h->meta_ref));
  CHECK(napi_create_reference(env, a[4], 1, &h->cb_ref));
  h->slab = slab;
  h->slab_len = slab_len;
  h->ring = ring;
  h->ring_entries = entries;
  h->meta = meta;
  h->ready = ready < 0 ? 0 : ready > entries ? entries : ready;
  io_start_polling(h);
  return NULL;
}

/* ioResume(handle, ready): re-arms reading after the ring ran empty. */
static napi_value js_io_resume(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  st_io *h = st_io_unwrap(env, a[0], 0);
  if (!h) return NULL;
  int32_t ready;
  if (!st_get_int(env, a[1], "ready must be an integer", &ready)) return NULL;
  if (!h->ring) return st_throw(env, "ST_NATIVE_STATE", "ioResume before ioStart");
  h->ready = ready < 0 ? 0 : ready > h->ring_entries ? h->ring_entries : ready;
  if (h->ready == 0)
    io_stop_polling(h);
  else
    io_start_polling(h);
  return NULL;
}

/* ioPause(handle): stops reading; the ring stays registered. */
static napi_value js_io_pause(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  st_io *h = st_io_unwrap(env, a[0], 0);
  if (!h) return NULL;
  io_stop_polling(h);
  return NULL;
}

/* ioClose(handle): idempotent; never throws for an already closed handle. */
static napi_value js_io_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  bool tagged = false;
  void *data = NULL;
  if (argc < 1 || napi_check_object_type_tag(env, a[0], &st_io_tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, a[0], &data) != napi_ok)
    return st_throw(env, "ST_NATIVE_ARG", "handle: not a sectunnel I/O handle");
  io_close((st_io *)data);
  return NULL;
}

/* ioStats(handle, out: Float64Array(ST_STAT_COUNT)): copies the counters (also after close). */
static napi_value js_io_stats(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  bool tagged = false;
  void *data = NULL;
  if (argc < 2 || napi_check_object_type_tag(env, a[0], &st_io_tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, a[0], &data) != napi_ok)
    return st_throw(env, "ST_NATIVE_ARG", "handle: not a sectunnel I/O handle");
  napi_typedarray_type t;
  size_t n;
  void *d;
  if (napi_get_typedarray_info(env, a[1], &t, &n, &d, NULL, NULL) != napi_ok || t != napi_float64_array ||
      n < ST_STAT_COUNT)
    return st_throw(env, "ST_NATIVE_ARG", "out must be a Float64Array of at least 10 entries");
  memcpy(d, ((st_io *)data)->stats, sizeof(double) * ST_STAT_COUNT);
  return NULL;
}

/* ---- TAP ---- */

#define TAP_PERSIST 1  /* tapOpen flags: TUNSETPERSIST on */
#define TAP_NOPERSIST 2 /* TUNSETPERSIST off (re-attaching to a persistent device) */
#define TAP_VNET_HDR 4 /* IFF_VNET_HDR: frames carry a virtio_net_hdr in front (not interpreted here) */
#define TAP_MULTI_QUEUE 8 /* IFF_MULTI_QUEUE: one more queue of a multi-queue device */

static int tap_rx(st_io *h, int ready) {
  int n = 0;
  uint8_t scratch;
  while (n < ready) {
    int32_t off = h->ring[2 * n], cap = h->ring[2 * n + 1];
    if (off < 0 || cap <= 0 || (size_t)off + (size_t)cap > h->slab_len) return n ? n : -EINVAL;
    /* The scratch octet tells a frame that did not fit (readv returns cap + 1) from one that did. */
    struct iovec iov[2] = {{h->slab + off, (size_t)cap}, {&scratch, 1}};
    ssize_t r = readv(h->fd, iov, 2);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return n ? n : -errno;
    }
    if (r == 0) break;
    if (r > cap) {
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

/* tapOpen(name: string ('' = kernel picks tapN), flags) -> { handle, name } */
static napi_value js_tap_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc < 2) return st_throw(env, "ST_NATIVE_ARG", "tapOpen(name, flags)");
  char name[IFNAMSIZ + 1];
  size_t name_len;
  if (napi_get_value_string_utf8(env, a[0], name, sizeof name, &name_len) != napi_ok)
    return st_throw(env, "ST_NATIVE_ARG", "tapOpen: name must be a string");
  if (name_len >= IFNAMSIZ) return st_throw(env, "ST_NATIVE_ARG", "tapOpen: name must be at most 15 octets");
  int32_t flags;
  if (!st_get_int(env, a[1], "tapOpen: flags must be an integer", &flags)) return NULL;

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return st_throw_errno(env, "open /dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (flags & TAP_VNET_HDR) ifr.ifr_flags |= IFF_VNET_HDR;
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
  st_io *h;
  napi_value handle = st_io_wrap(env, ST_KIND_TAP, fd, 1, tap_rx, &h);
  if (!handle) return NULL;
  napi_value out, actual;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &actual));
  CHECK(napi_set_named_property(env, out, "handle", handle));
  CHECK(napi_set_named_property(env, out, "name", actual));
  return out;
}

/* tapSetPersist(handle, on: boolean) */
static napi_value js_tap_set_persist(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  st_io *h = st_io_unwrap(env, a[0], ST_KIND_TAP);
  if (!h) return NULL;
  bool on;
  if (napi_get_value_bool(env, a[1], &on) != napi_ok) return st_throw(env, "ST_NATIVE_ARG", "on must be a boolean");
  if (ioctl(h->fd, TUNSETPERSIST, on ? 1 : 0) < 0) return st_throw_errno(env, "TUNSETPERSIST", errno);
  return NULL;
}

/* tapSetLink(name, mtuBytes (0 = leave), up (1 up, 0 down, -1 leave)): SIOCSIFMTU / SIOCSIFFLAGS. */
static napi_value js_tap_set_link(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value a[3];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  char name[IFNAMSIZ + 1];
  size_t name_len;
  int32_t mtu, up;
  if (argc < 3 || napi_get_value_string_utf8(env, a[0], name, sizeof name, &name_len) != napi_ok || name_len == 0 ||
      name_len >= IFNAMSIZ)
    return st_throw(env, "ST_NATIVE_ARG", "tapSetLink(name: 1..15 octets, mtu, up)");
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

/* tapWrite(handle, slab: Uint8Array, desc: Int32Array (offset, length)*, count) -> frames written.
 * Never throws on a per-frame failure: EAGAIN/ENOBUFS/EIO count as drops, others as errors. */
static napi_value js_tap_write(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value a[4];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc < 4) return st_throw(env, "ST_NATIVE_ARG", "tapWrite(handle, slab, desc, count)");
  st_io *h = st_io_unwrap(env, a[0], ST_KIND_TAP);
  if (!h) return NULL;
  uint8_t *slab;
  size_t slab_len, desc_len;
  int32_t *desc, count;
  if (!st_get_bytes(env, a[1], "slab must be a Uint8Array", &slab, &slab_len)) return NULL;
  if (!st_get_i32(env, a[2], "desc must be an Int32Array", &desc, &desc_len)) return NULL;
  if (!st_get_int(env, a[3], "count must be an integer", &count)) return NULL;
  if (count < 0 || (size_t)count * 2 > desc_len) return st_throw(env, "ST_NATIVE_ARG", "count exceeds desc / 2");
  int written = 0;
  for (int i = 0; i < count; i++) {
    int32_t off = desc[2 * i], len = desc[2 * i + 1];
    if (off < 0 || len <= 0 || (size_t)off + (size_t)len > slab_len) {
      h->stats[ST_TX_ERRORS]++;
      h->stats[ST_LAST_ERRNO] = EINVAL;
      continue;
    }
    ssize_t r;
    do r = write(h->fd, slab + off, (size_t)len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      int e = errno;
      h->stats[(e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EIO) ? ST_TX_DROPPED : ST_TX_ERRORS]++;
      h->stats[ST_LAST_ERRNO] = e;
      continue;
    }
    written++;
    h->stats[ST_TX_PACKETS]++;
    h->stats[ST_TX_BYTES] += (double)len;
  }
  napi_value out;
  CHECK(napi_create_int32(env, written, &out));
  return out;
}

napi_status st_tap_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ioStart", NULL, js_io_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ioResume", NULL, js_io_resume, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ioPause", NULL, js_io_pause, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ioClose", NULL, js_io_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ioStats", NULL, js_io_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapOpen", NULL, js_tap_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapSetPersist", NULL, js_tap_set_persist, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapSetLink", NULL, js_tap_set_link, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tapWrite", NULL, js_tap_write, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

#endif /* ST_IO_SHARED_ONLY */
