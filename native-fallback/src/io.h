/* The fd handle that TAP (tap.c), UDP (udp.c) and packet sockets (packet.c)
 * share, implemented in io.c. Include it first: it asks for the GNU
 * declarations (struct mmsghdr, recvmmsg, sendmmsg) before any system header.
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
 *   1. the kind's reader (st_io_rx_fn: readv for TAP, recvmmsg for UDP and
 *      packet sockets) fills ring entries 0..ready-1, until EAGAIN or the ring
 *      is used up; a frame larger than its slot is counted (and its slot reused
 *      or flagged in its meta row),
 *   2. one JS call with the count; its return value re-arms the ring.
 *
 * JS functions (all handles; registered by st_io_init, which st_tap_init
 * calls): ioStart, ioResume, ioPause, ioClose, ioStats.
 */
#ifndef SECTUNNEL_IO_H
#define SECTUNNEL_IO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* struct mmsghdr, recvmmsg, sendmmsg */
#endif

#include "addon.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
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

enum { ST_KIND_TAP = 1, ST_KIND_UDP = 2, ST_KIND_PACKET = 3 };

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
  /* Set by a reader that holds read data it could not deliver yet (a TAP super-frame with more
   * segments than ring entries left): the handle then also polls for writable, which a TAP
   * always is, so the reader runs again as soon as the ring is re-armed. */
  int rx_pending;
  int poll_events; /* the uv_poll events asked for while polling */
};

/* Registers ioStart, ioResume, ioPause, ioClose and ioStats on exports. */
napi_status st_io_init(napi_env env, napi_value exports);

/* Creates a handle for fd and the kind's state ext (may be NULL; freed with free_ext), taking
 * ownership of both (also on failure), and returns it as a JS external. */
napi_value st_io_wrap(napi_env env, int kind, int fd, int meta_stride, st_io_rx_fn rx, void *ext,
                      void (*free_ext)(void *));
/* The open handle of `kind` (0: any) behind a JS value; throws and returns NULL otherwise. */
st_io *st_io_unwrap(napi_env env, napi_value v, int kind);
/* The handle behind a JS value, open or closed; NULL (nothing thrown) if it is none. */
st_io *st_io_lookup(napi_env env, napi_value v);
/* st_args, then st_io_unwrap(a[0], kind). Returns NULL after throwing (or when N-API fails). */
st_io *st_io_args(napi_env env, napi_callback_info info, size_t n, napi_value *a, const char *usage, int kind);

/* Reads up to n arguments of a JS call into a (missing ones are undefined); returns how many
 * were passed. -1 when N-API fails or, with a `usage` text, fewer than n were passed (then
 * usage is thrown). */
int st_args(napi_env env, napi_callback_info info, size_t n, napi_value *a, const char *usage);
/* A JS number for a function's result, or NULL (N-API failed). */
napi_value st_int32(napi_env env, int32_t v);
/* Reads a Uint8Array or Int32Array argument; throws (and returns 0) on a type mismatch. */
int st_get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len);
int st_get_i32(napi_env env, napi_value v, const char *what, int32_t **data, size_t *len);
/* Reads an int32 argument; throws (and returns 0) if it is not a number. */
int st_get_int(napi_env env, napi_value v, const char *what, int32_t *out);
/* Reads an interface name of min_len..size-2 octets into name[size] and its length; throws
 * not_string or bad_length (and returns 0) otherwise. */
int st_get_ifname(napi_env env, napi_value v, char *name, size_t size, size_t *len, size_t min_len,
                  const char *not_string, const char *bad_length);

/* The arguments of a send call: slab, desc (`stride` int32 per entry) and the entry count. */
typedef struct {
  uint8_t *slab;
  size_t slab_len;
  int32_t *desc;
  int32_t count;
} st_tx_batch;

/* Reads a[0..2] as (slab: Uint8Array, desc: Int32Array, count); throws (and returns 0) on a
 * bad argument or a count beyond desc / stride. */
int st_get_tx_batch(napi_env env, const napi_value *a, int stride, st_tx_batch *out);

/* Sends msgs[0..m) (message j over the single buffer iov[j]) with sendmmsg, adding the
 * messages sent to *sent and to the handle's tx counters. A full queue (EAGAIN/ENOBUFS)
 * drops the rest of the chunk; an errno for which link_gone (may be NULL) holds drops the
 * rest and returns 1: nothing more can go. Any other errno counts one tx error and skips
 * that message. Returns 0 otherwise. */
int st_io_send_chunk(st_io *h, struct mmsghdr *msgs, const struct iovec *iov, int m, int (*link_gone)(int e),
                     int *sent);

/* Best effort: the privileged *FORCE socket option first (beyond [rw]mem_max), then the plain one. */
void st_set_sockbuf(int fd, int force_opt, int opt, int bytes);

/* Counts one event in stats[slot] and records its errno. */
static inline void st_io_count(st_io *h, int slot, int err) {
  h->stats[slot]++;
  h->stats[ST_LAST_ERRNO] = err;
}

/* Points iov at ring entry i; 0 if the entry does not lie inside the slab. */
static inline int st_io_ring_iov(const st_io *h, int i, struct iovec *iov) {
  int32_t off = h->ring[2 * i], cap = h->ring[2 * i + 1];
  if (off < 0 || cap <= 0 || (size_t)off + (size_t)cap > h->slab_len) return 0;
  iov->iov_base = h->slab + off;
  iov->iov_len = (size_t)cap;
  return 1;
}

/* A message header over the single buffer iov, to or from the address `name` (may be NULL). */
static inline void st_mmsg_set(struct mmsghdr *m, struct iovec *iov, void *name, socklen_t name_len) {
  memset(&m->msg_hdr, 0, sizeof m->msg_hdr);
  m->msg_hdr.msg_name = name;
  m->msg_hdr.msg_namelen = name_len;
  m->msg_hdr.msg_iov = iov;
  m->msg_hdr.msg_iovlen = 1;
}

/* Points msgs[0..want) at ring entries n..n+want-1 for recvmmsg, message j with the source
 * address buffer names + j * name_bytes. Returns 0 if an entry does not lie inside the slab. */
static inline int st_io_recv_prepare(const st_io *h, int n, int want, struct mmsghdr *msgs, struct iovec *iov,
                                     void *names, socklen_t name_bytes) {
  for (int j = 0; j < want; j++) {
    if (!st_io_ring_iov(h, n + j, &iov[j])) return 0;
    st_mmsg_set(&msgs[j], &iov[j], (char *)names + (size_t)j * name_bytes, name_bytes);
  }
  return 1;
}

/* One entry of an init table: an enumerable JS function. */
#define ST_FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
/* Defines every function of an init table (an array of ST_FN) on exports. */
#define ST_DEFINE(env, exports, table) napi_define_properties(env, exports, sizeof table / sizeof table[0], table)

#define CHECK(call)                     \
  do {                                  \
    if ((call) != napi_ok) return NULL; \
  } while (0)

#endif /* SECTUNNEL_IO_H */
