/* TAP devices (IFF_TAP | IFF_NO_PI) on the fd handle of io.h.
 *
 * Receive: tap_rx() = readv() into ring entries 0..ready-1 until EAGAIN or the
 * ring is used up; a truncated frame is counted and its slot reused.
 * Send: tapWrite() = one write() per frame (the kernel has no batched TAP
 * write); a full queue or a down link is a counted drop.
 *
 * JS functions: tapOpen, tapSetPersist, tapSetLink, tapWrite (and io* of io.c,
 * registered here too).
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TAP_PERSIST 1  /* tapOpen flags: TUNSETPERSIST on */
#define TAP_NOPERSIST 2 /* TUNSETPERSIST off (re-attaching to a persistent device) */
#define TAP_VNET_HDR 4 /* IFF_VNET_HDR: frames carry a virtio_net_hdr in front (not interpreted here) */
#define TAP_MULTI_QUEUE 8 /* IFF_MULTI_QUEUE: one more queue of a multi-queue device */

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

/* tapOpen(name: string ('' = kernel picks tapN), flags) -> { handle, name } */
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
  napi_value handle = st_io_wrap(env, ST_KIND_TAP, fd, 1, tap_rx, NULL, NULL);
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

/* tapWrite(handle, slab: Uint8Array, desc: Int32Array (offset, length)*, count) -> frames written.
 * Never throws on a per-frame failure: EAGAIN/ENOBUFS/EIO count as drops, others as errors. */
static napi_value js_tap_write(napi_env env, napi_callback_info info) {
  napi_value a[4];
  st_io *h = st_io_args(env, info, 4, a, "tapWrite(handle, slab, desc, count)", ST_KIND_TAP);
  if (!h) return NULL;
  st_tx_batch b;
  if (!st_get_tx_batch(env, a + 1, 2, &b)) return NULL;
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


napi_status st_tap_init(napi_env env, napi_value exports) {
  napi_status st = st_io_init(env, exports); /* addon.c calls st_tap_init only: the io* functions come first */
  if (st != napi_ok) return st;
  napi_property_descriptor fns[] = {
      ST_FN("tapOpen", js_tap_open), ST_FN("tapSetPersist", js_tap_set_persist),
      ST_FN("tapSetLink", js_tap_set_link), ST_FN("tapWrite", js_tap_write),
  };
  return ST_DEFINE(env, exports, fns);
}
