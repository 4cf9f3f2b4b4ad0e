/* The fd handle of io.h: life cycle, the uv_poll batch reader, argument
 * helpers, and the JS functions every handle has (ioStart, ioResume, ioPause,
 * ioClose, ioStats). The kinds (tap.c, udp.c, packet.c) bring their reader. */
#include "io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void io_on_readable(uv_poll_t *p, int status, int events);

/* Readable, and writable too while the reader holds data it has not delivered (io.h rx_pending). */
static int io_wanted_events(const st_io *h) { return UV_READABLE | (h->rx_pending ? UV_WRITABLE : 0); }

/* While polling: asks for the events io_wanted_events names now. */
static void io_update_events(st_io *h) {
  if (!h->polling || h->closed) return;
  int want = io_wanted_events(h);
  if (want != h->poll_events && uv_poll_start(&h->poll, want, io_on_readable) == 0) h->poll_events = want;
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
    st_io_count(h, ST_RX_ERRORS, -status);
    io_stop_polling(h);
    io_call_js(h, 0, -status);
    return;
  }
  if (h->ready <= 0) {
    io_stop_polling(h);
    return;
  }
  int n = h->rx(h, h->ready);
  if (n == 0) {
    io_update_events(h);
    return;
  }
  if (n < 0) {
    st_io_count(h, ST_RX_ERRORS, -n);
    io_stop_polling(h);
    io_call_js(h, 0, -n);
    return;
  }
  h->stats[ST_RX_BATCHES]++;
  io_call_js(h, n, 0);
  io_update_events(h);
}

static void io_start_polling(st_io *h) {
  if (h->polling || h->closed || h->ready <= 0 || !h->ring) return;
  int want = io_wanted_events(h);
  if (uv_poll_start(&h->poll, want, io_on_readable) == 0) {
    h->polling = 1;
    h->poll_events = want;
  }
}

/* ---- argument helpers ---- */

/* Reads a typed array of element type `type`; throws `what` (and returns 0) otherwise. */
static int get_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *what, void **data, size_t *len) {
  napi_typedarray_type t;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &t, len, data, NULL, NULL) != napi_ok || t != type) {
    st_throw(env, "ST_NATIVE_ARG", what);
    return 0;
  }
  return 1;
}

int st_get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  return get_typed(env, v, napi_uint8_array, what, (void **)data, len);
}

int st_get_i32(napi_env env, napi_value v, const char *what, int32_t **data, size_t *len) {
  return get_typed(env, v, napi_int32_array, what, (void **)data, len);
}

napi_value st_int32(napi_env env, int32_t v) {
  napi_value out;
  return napi_create_int32(env, v, &out) == napi_ok ? out : NULL;
}

int st_get_int(napi_env env, napi_value v, const char *what, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    st_throw(env, "ST_NATIVE_ARG", what);
    return 0;
  }
  return 1;
}

int st_get_ifname(napi_env env, napi_value v, char *name, size_t size, size_t *len, size_t min_len,
                  const char *not_string, const char *bad_length) {
  if (napi_get_value_string_utf8(env, v, name, size, len) != napi_ok) {
    st_throw(env, "ST_NATIVE_ARG", not_string);
    return 0;
  }
  if (*len < min_len || *len >= size - 1) {
    st_throw(env, "ST_NATIVE_ARG", bad_length);
    return 0;
  }
  return 1;
}

int st_get_tx_batch(napi_env env, const napi_value *a, int stride, st_tx_batch *out) {
  size_t desc_len;
  if (!st_get_bytes(env, a[0], "slab must be a Uint8Array", &out->slab, &out->slab_len)) return 0;
  if (!st_get_i32(env, a[1], "desc must be an Int32Array", &out->desc, &desc_len)) return 0;
  if (!st_get_int(env, a[2], "count must be an integer", &out->count)) return 0;
  if (out->count < 0 || (size_t)out->count * (size_t)stride > desc_len) {
    char msg[32];
    snprintf(msg, sizeof msg, "count exceeds desc / %d", stride);
    st_throw(env, "ST_NATIVE_ARG", msg);
    return 0;
  }
  return 1;
}

/* Closes fd and frees ext after a failed st_io_wrap; returns NULL. */
static napi_value io_wrap_failed(int fd, void *ext, void (*free_ext)(void *)) {
  close(fd);
  if (free_ext) free_ext(ext);
  return NULL;
}

napi_value st_io_wrap(napi_env env, int kind, int fd, int meta_stride, st_io_rx_fn rx, void *ext,
                      void (*free_ext)(void *)) {
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    st_throw(env, "ST_NATIVE_LOOP", "napi_get_uv_event_loop failed");
    return io_wrap_failed(fd, ext, free_ext);
  }
  st_io *h = (st_io *)calloc(1, sizeof *h);
  if (!h) {
    st_throw_errno(env, "calloc", ENOMEM);
    return io_wrap_failed(fd, ext, free_ext);
  }
  int rc = uv_poll_init(loop, &h->poll, fd);
  if (rc != 0) {
    free(h);
    st_throw_errno(env, "uv_poll_init", -rc);
    return io_wrap_failed(fd, ext, free_ext);
  }
  h->poll.data = h;
  h->env = env;
  h->kind = kind;
  h->fd = fd;
  h->meta_stride = meta_stride;
  h->rx = rx;
  h->ext = ext;
  h->free_ext = free_ext;
  napi_value handle;
  if (napi_create_external(env, h, io_finalize, NULL, &handle) != napi_ok) {
    io_close(h);
    h->finalized = 1; /* freed (ext too) by the close callback */
    return NULL;
  }
  napi_type_tag_object(env, handle, &st_io_tag);
  if (napi_add_env_cleanup_hook(env, io_cleanup_hook, h) == napi_ok) h->hooked = 1;
  return handle;
}

st_io *st_io_lookup(napi_env env, napi_value v) {
  bool tagged = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, v, &st_io_tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, v, &data) != napi_ok)
    return NULL;
  return (st_io *)data;
}

st_io *st_io_unwrap(napi_env env, napi_value v, int kind) {
  st_io *h = st_io_lookup(env, v);
  if (!h) {
    st_throw(env, "ST_NATIVE_ARG", "handle: not a sectunnel I/O handle");
    return NULL;
  }
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

int st_args(napi_env env, napi_callback_info info, size_t n, napi_value *a, const char *usage) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok) return -1;
  if (usage && argc < n) {
    st_throw(env, "ST_NATIVE_ARG", usage);
    return -1;
  }
  return (int)argc;
}

st_io *st_io_args(napi_env env, napi_callback_info info, size_t n, napi_value *a, const char *usage, int kind) {
  return st_args(env, info, n, a, usage) < 0 ? NULL : st_io_unwrap(env, a[0], kind);
}

/* Reads n arguments and returns the handle behind a[0], open or closed; throws (and returns
 * NULL) when fewer than n were passed or a[0] is not a handle. */
static st_io *io_args_any(napi_env env, napi_callback_info info, size_t n, napi_value *a) {
  int argc = st_args(env, info, n, a, NULL);
  if (argc < 0) return NULL;
  st_io *h = (size_t)argc < n ? NULL : st_io_lookup(env, a[0]);
  if (!h) st_throw(env, "ST_NATIVE_ARG", "handle: not a sectunnel I/O handle");
  return h;
}

/* ---- batched sockets (UDP, packet) ---- */

int st_io_send_chunk(st_io *h, struct mmsghdr *msgs, const struct iovec *iov, int m, int (*link_gone)(int e),
                     int *sent) {
  int k = 0;
  while (k < m) {
    int r = sendmmsg(h->fd, msgs + k, (unsigned)(m - k), MSG_DONTWAIT);
    if (r > 0) {
      for (int j = k; j < k + r; j++) h->stats[ST_TX_BYTES] += (double)iov[j].iov_len;
      h->stats[ST_TX_PACKETS] += r;
      *sent += r;
      k += r;
      continue;
    }
    int e = r < 0 ? errno : EIO;
    if (e == EINTR) continue;
    h->stats[ST_LAST_ERRNO] = e;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      h->stats[ST_TX_DROPPED] += m - k; /* the socket buffer is full: the rest of this chunk is dropped */
      return 0;
    }
    if (link_gone && link_gone(e)) {
      h->stats[ST_TX_DROPPED] += m - k;
      return 1;
    }
    h->stats[ST_TX_ERRORS]++; /* this message fails (EMSGSIZE, unreachable, ...): skip it */
    k++;
  }
  return 0;
}

void st_set_sockbuf(int fd, int force_opt, int opt, int bytes) {
  if (bytes <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) < 0) setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
}

/* ---- JS: generic handle functions ---- */

/* ioStart(handle, slab: Uint8Array, ring: Int32Array (offset, capacity)*, meta: Int32Array, cb, ready) */
static napi_value js_io_start(napi_env env, napi_callback_info info) {
  napi_value a[6];
  st_io *h = st_io_args(env, info, 6, a, "ioStart(handle, slab, ring, meta, cb, ready)", 0);
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
  napi_value a[2];
  st_io *h = st_io_args(env, info, 2, a, NULL, 0);
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
  napi_value a[1];
  st_io *h = st_io_args(env, info, 1, a, NULL, 0);
  if (!h) return NULL;
  io_stop_polling(h);
  return NULL;
}

/* ioClose(handle): idempotent; never throws for an already closed handle. */
static napi_value js_io_close(napi_env env, napi_callback_info info) {
  napi_value a[1];
  st_io *h = io_args_any(env, info, 1, a);
  if (!h) return NULL;
  io_close(h);
  return NULL;
}

/* ioStats(handle, out: Float64Array(ST_STAT_COUNT)): copies the counters (also after close). */
static napi_value js_io_stats(napi_env env, napi_callback_info info) {
  napi_value a[2];
  st_io *h = io_args_any(env, info, 2, a);
  if (!h) return NULL;
  const char *what = "out must be a Float64Array of at least 10 entries";
  void *out;
  size_t n;
  if (!get_typed(env, a[1], napi_float64_array, what, &out, &n)) return NULL;
  if (n < ST_STAT_COUNT) return st_throw(env, "ST_NATIVE_ARG", what);
  memcpy(out, h->stats, sizeof(double) * ST_STAT_COUNT);
  return NULL;
}

napi_status st_io_init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      ST_FN("ioStart", js_io_start), ST_FN("ioResume", js_io_resume), ST_FN("ioPause", js_io_pause),
      ST_FN("ioClose", js_io_close), ST_FN("ioStats", js_io_stats),
  };
  return ST_DEFINE(env, exports, fns);
}
