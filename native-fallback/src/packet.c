/* Packet sockets: attach mode on an existing interface (a libvirt vnetN TAP, a
 * veth end) with an AF_PACKET SOCK_RAW socket bound to it, read and written in
 * batches through the fd handle of io.h (ioStart/ioResume/ioPause/ioClose/ioStats).
 *
 * Open (packetOpen), in this order so no frame of another interface or of the
 * wrong direction is ever queued: socket(AF_PACKET, SOCK_RAW, protocol 0 = no
 * frames yet) non-blocking and close-on-exec; PACKET_IGNORE_OUTGOING (Linux
 * >= 4.20; when refused, frames whose sll_pkttype is PACKET_OUTGOING are
 * skipped one by one); PACKET_AUXDATA; SO_RCVBUF(FORCE); bind to the ifindex
 * with ETH_P_ALL; PACKET_ADD_MEMBERSHIP PACKET_MR_PROMISC (released by the
 * kernel when the socket closes or the device goes away).
 *
 * Receive, per readable event:
 *   1. recvmmsg(MSG_TRUNC) into ring entries, at most 64 per call, until EAGAIN
 *      or the ring is used up; the kernel copies each frame into its slot (the
 *      only copy),
 *   2. a VLAN tag the kernel took out of the frame into auxdata (every received
 *      802.1Q/802.1ad frame: __netif_receive_skb_core untags before packet
 *      sockets see it; or rx VLAN offload) is put back after the MAC addresses
 *      (the frame moves 4 octets within its slot), so a slot always holds the
 *      frame as it was on the link and a guest's own tag stays visible,
 *   3. one meta row of PACKET_META_STRIDE int32 per frame:
 *      [0] length in the slot  [1] flags (PKT_F_*)  [2] sll_pkttype  [3] length on the link.
 *      A frame flagged PKT_F_TRUNCATED (larger than its slot; counted) or
 *      PKT_F_OUTGOING (the fallback filter) is not delivered: its slot stays in the ring.
 *   A link that goes down, is deleted or moves to another namespace sets
 *   ENETDOWN on the socket: libuv sees POLLERR (the callback then gets EBADF;
 *   packetTakeError() reads the socket's real error) or recvmmsg fails with it.
 *   Either way the handle stops reading and JS gets cb(0, errno) once; frames
 *   read in that same turn are discarded. Nothing aborts.
 * Send: packetSend(handle, slab, desc (offset, length)*, count) -> frames sent:
 *   sendmmsg in chunks of 64 out of the bound interface (one kernel copy per
 *   frame). Queue full (EAGAIN/ENOBUFS) drops the rest of the chunk; a link down
 *   or gone (ENETDOWN/ENXIO/ENODEV/EIO) drops the rest of the batch; any other
 *   failure (EMSGSIZE, EINVAL) counts that frame as an error and goes on.
 *
 * JS functions: packetOpen, packetSend, packetTakeError, packetKernelDrops.
 */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include "io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23 /* Linux 4.20 */
#endif
#ifndef TP_STATUS_VLAN_VALID
#define TP_STATUS_VLAN_VALID (1 << 4)
#endif
#ifndef TP_STATUS_VLAN_TPID_VALID
#define TP_STATUS_VLAN_TPID_VALID (1 << 6)
#endif

#define PACKET_META_STRIDE 4
#define PACKET_BATCH 64 /* frames per recvmmsg/sendmmsg call */

/* packetOpen flags */
#define PKT_OPEN_INBOUND_ONLY 1 /* skip frames the device sends (PACKET_OUTGOING) */
#define PKT_OPEN_PROMISC 2      /* PACKET_MR_PROMISC membership */

/* meta row flags */
#define PKT_F_TRUNCATED 1 /* larger than its slot: not delivered, counted in rxTruncated */
#define PKT_F_OUTGOING 2  /* an outgoing frame the fallback filter skipped: not delivered */
#define PKT_F_VLAN 4      /* a VLAN tag from auxdata was put back at octet 12 */
#define PKT_F_CSUM_PARTIAL 8 /* TP_STATUS_CSUMNOTREADY: the L4 checksum is not filled in yet (offload) */

typedef struct {
  int ifindex;
  int filter_outgoing; /* PACKET_IGNORE_OUTGOING was refused: skip PACKET_OUTGOING frames here */
  double kernel_drops; /* PACKET_STATISTICS tp_drops, summed (the kernel resets them on read) */
} packet_state;

static void packet_free(void *p) { free(p); }

/* Puts a VLAN tag the kernel moved into auxdata back in front of the EtherType
 * (the caller checked len >= 12 and that the slot has 4 more octets); returns the new length. */
static int packet_put_tag(uint8_t *frame, int len, const struct tpacket_auxdata *aux) {
  uint16_t tpid = (aux->tp_status & TP_STATUS_VLAN_TPID_VALID) && aux->tp_vlan_tpid ? aux->tp_vlan_tpid : ETH_P_8021Q;
  memmove(frame + 16, frame + 12, (size_t)len - 12);
  frame[12] = (uint8_t)(tpid >> 8);
  frame[13] = (uint8_t)tpid;
  frame[14] = (uint8_t)(aux->tp_vlan_tci >> 8);
  frame[15] = (uint8_t)aux->tp_vlan_tci;
  return len + 4;
}

static const struct tpacket_auxdata *packet_auxdata(struct msghdr *m) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA &&
        c->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata)))
      return (const struct tpacket_auxdata *)CMSG_DATA(c);
  }
  return NULL;
}

static int packet_rx(st_io *h, int ready) {
  packet_state *ps = (packet_state *)h->ext;
  struct mmsghdr msgs[PACKET_BATCH];
  struct iovec iov[PACKET_BATCH];
  struct sockaddr_ll from[PACKET_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    struct cmsghdr align;
  } ctl[PACKET_BATCH];
  double packets = 0, bytes = 0, truncated = 0;
  int n = 0;
  while (n < ready) {
    int want = ready - n < PACKET_BATCH ? ready - n : PACKET_BATCH;
    if (!st_io_recv_prepare(h, n, want, msgs, iov, from, sizeof from[0])) return n ? n : -EINVAL;
    for (int j = 0; j < want; j++) {
      msgs[j].msg_hdr.msg_control = ctl[j].buf;
      msgs[j].msg_hdr.msg_controllen = sizeof ctl[j].buf;
    }
    /* MSG_TRUNC: msg_len is the frame's full length, so a truncated one is known as such. */
    int k = recvmmsg(h->fd, msgs, (unsigned)want, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (k < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      if (e == ENOMEM || e == ENOBUFS) { /* transient: count, try again on the next event */
        st_io_count(h, ST_RX_ERRORS, e);
        break;
      }
      return -e; /* ENETDOWN (link down, deleted, moved away) and anything unexpected: stop for good */
    }
    for (int j = 0; j < k; j++) {
      int32_t *row = h->meta + (size_t)(n + j) * PACKET_META_STRIDE;
      int cap = (int)iov[j].iov_len;
      int len = (int)msgs[j].msg_len; /* the full frame (MSG_TRUNC), tag not counted */
      int flags = 0;
      const struct tpacket_auxdata *aux = packet_auxdata(&msgs[j].msg_hdr);
      int tagged = aux && len >= 12 && (aux->tp_vlan_tci != 0 || (aux->tp_status & TP_STATUS_VLAN_VALID));
      if (aux && (aux->tp_status & TP_STATUS_CSUMNOTREADY)) flags |= PKT_F_CSUM_PARTIAL;
      if (tagged) flags |= PKT_F_VLAN;
      row[3] = tagged ? len + 4 : len;
      if (row[3] > cap || (msgs[j].msg_hdr.msg_flags & MSG_TRUNC)) {
        flags |= PKT_F_TRUNCATED;
        truncated++;
        len = 0;
      } else if (ps->filter_outgoing && from[j].sll_pkttype == PACKET_OUTGOING) {
        flags |= PKT_F_OUTGOING;
        len = 0;
      } else {
        if (tagged) len = packet_put_tag((uint8_t *)iov[j].iov_base, len, aux);
        packets++;
        bytes += len;
      }
      row[0] = len;
      row[1] = flags;
      row[2] = from[j].sll_pkttype;
    }
    n += k;
    if (k < want) break;
  }
  h->stats[ST_RX_PACKETS] += packets;
  h->stats[ST_RX_BYTES] += bytes;
  h->stats[ST_RX_TRUNCATED] += truncated;
  return n;
}

/* st_io_args for a packet-socket handle (an open handle of another kind throws). */
static st_io *packet_args(napi_env env, napi_callback_info info, size_t n, napi_value *a, const char *usage) {
  st_io *h = st_io_args(env, info, n, a, usage, 0);
  if (!h) return NULL;
  if (h->kind != ST_KIND_PACKET) {
    st_throw(env, "ST_NATIVE_ARG", "handle: not a packet-socket handle");
    return NULL;
  }
  return h;
}

/* Throws an Error "what IFNAME: strerror (errno N)" with code ST_NATIVE_ERRNO. */
static napi_value packet_throw(napi_env env, const char *what, const char *ifname, int err) {
  char msg[96];
  snprintf(msg, sizeof msg, "%s %s", what, ifname);
  return st_throw_errno(env, msg, err);
}

/* packetOpen(ifname, flags (1 inbound only, 2 promiscuous), rcvbufBytes (0 = leave))
 *   -> { handle, name, ifindex, ignoreOutgoing (the kernel filters outgoing frames) } */
static napi_value js_packet_open(napi_env env, napi_callback_info info) {
  napi_value a[3];
  if (st_args(env, info, 3, a, "packetOpen(ifname, flags, rcvbufBytes)") < 0) return NULL;
  char name[IFNAMSIZ + 1];
  size_t name_len;
  if (!st_get_ifname(env, a[0], name, sizeof name, &name_len, 1, "packetOpen: ifname must be a string",
                     "packetOpen: ifname must be 1..15 octets"))
    return NULL;
  int32_t flags, rcvbuf;
  if (!st_get_int(env, a[1], "packetOpen: flags must be an integer", &flags)) return NULL;
  if (!st_get_int(env, a[2], "packetOpen: rcvbufBytes must be an integer", &rcvbuf)) return NULL;

  /* Protocol 0: no frame is queued before bind() names the interface. */
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return st_throw_errno(env, "socket(AF_PACKET, SOCK_RAW) (needs CAP_NET_RAW)", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, name_len);
  const char *what = NULL;
  int err = 0;
  int ifindex = 0;
  if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
    what = "no such interface in this network namespace:";
  } else {
    ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
      what = "SIOCGIFHWADDR";
    } else if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
      char msg[96];
      snprintf(msg, sizeof msg, "interface %s has link type %d (ARPHRD_*), not Ethernet", name, ifr.ifr_hwaddr.sa_family);
      close(fd);
      return st_throw(env, "ST_NATIVE_LINKTYPE", msg);
    } else if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
      what = "SIOCGIFFLAGS";
    } else if (!(ifr.ifr_flags & IFF_UP)) {
      what = "interface is down:";
      errno = ENETDOWN;
    }
  }
  if (what) {
    err = errno;
    close(fd);
    return packet_throw(env, what, name, err);
  }

  int one = 1;
  int filter_outgoing = 0;
  if ((flags & PKT_OPEN_INBOUND_ONLY) && setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0)
    filter_outgoing = 1; /* older kernel: skip them per frame */
  if (setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) < 0) {
    err = errno;
    close(fd);
    return packet_throw(env, "PACKET_AUXDATA on", name, err);
  }
  st_set_sockbuf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf); /* unprivileged: capped at rmem_max */

  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    err = errno;
    close(fd);
    return packet_throw(env, "bind(AF_PACKET) to", name, err);
  }
  if (flags & PKT_OPEN_PROMISC) {
    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = ifindex;
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
      err = errno;
      close(fd);
      return packet_throw(env, "PACKET_MR_PROMISC on", name, err);
    }
  }
  /* The link went down (or away) between the flags check and bind: the socket holds ENETDOWN. */
  socklen_t elen = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err != 0) {
    close(fd);
    return packet_throw(env, "interface went down while attaching:", name, err);
  }

  packet_state *ps = (packet_state *)calloc(1, sizeof *ps);
  if (!ps) {
    close(fd);
    return st_throw_errno(env, "calloc", ENOMEM);
  }
  ps->ifindex = ifindex;
  ps->filter_outgoing = filter_outgoing;
  napi_value handle = st_io_wrap(env, ST_KIND_PACKET, fd, PACKET_META_STRIDE, packet_rx, ps, packet_free);
  if (!handle) return NULL;
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_set_named_property(env, out, "handle", handle));
  CHECK(napi_create_string_utf8(env, name, name_len, &v));
  CHECK(napi_set_named_property(env, out, "name", v));
  CHECK(napi_create_int32(env, ifindex, &v));
  CHECK(napi_set_named_property(env, out, "ifindex", v));
  CHECK(napi_get_boolean(env, (flags & PKT_OPEN_INBOUND_ONLY) && !filter_outgoing, &v));
  CHECK(napi_set_named_property(env, out, "ignoreOutgoing", v));
  return out;
}

/* The link is down or gone (ENXIO: unbound after the device was deleted): nothing more can go. */
static int packet_link_gone(int e) { return e == ENETDOWN || e == ENXIO || e == ENODEV || e == EIO; }

/* packetSend(handle, slab: Uint8Array, desc: Int32Array (offset, length)*, count) -> frames sent. */
static napi_value js_packet_send(napi_env env, napi_callback_info info) {
  napi_value a[4];
  st_io *h = packet_args(env, info, 4, a, "packetSend(handle, slab, desc, count)");
  if (!h) return NULL;
  st_tx_batch b;
  if (!st_get_tx_batch(env, a + 1, 2, &b)) return NULL;

  struct mmsghdr msgs[PACKET_BATCH];
  struct iovec iov[PACKET_BATCH];
  int sent = 0, i = 0, gone = 0;
  while (i < b.count && !gone) {
    int m = 0;
    for (; m < PACKET_BATCH && i < b.count; i++) {
      int32_t off = b.desc[2 * i], len = b.desc[2 * i + 1];
      if (off < 0 || len <= 0 || (size_t)off + (size_t)len > b.slab_len) {
        st_io_count(h, ST_TX_ERRORS, EINVAL);
        continue;
      }
      iov[m].iov_base = b.slab + off;
      iov[m].iov_len = (size_t)len;
      st_mmsg_set(&msgs[m], &iov[m], NULL, 0); /* no address: out of the bound interface */
      m++;
    }
    /* A frame that fails (EMSGSIZE, EINVAL for one shorter than 14 octets) is skipped. */
    if (st_io_send_chunk(h, msgs, iov, m, packet_link_gone, &sent)) {
      h->stats[ST_TX_DROPPED] += b.count - i; /* the rest of the batch too */
      gone = 1;
    }
  }
  return st_int32(env, sent);
}

/* packetTakeError(handle) -> the socket's pending error (SO_ERROR, which clears it), 0 if none.
 * Recorded as the handle's lastErrno. libuv reports a socket error (POLLERR) as EBADF; this says which. */
static napi_value js_packet_take_error(napi_env env, napi_callback_info info) {
  napi_value a[1];
  st_io *h = packet_args(env, info, 1, a, NULL);
  if (!h) return NULL;
  int err = 0;
  socklen_t elen = sizeof err;
  if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) err = errno;
  if (err) h->stats[ST_LAST_ERRNO] = err;
  return st_int32(env, err);
}

/* packetKernelDrops(handle) -> frames the kernel dropped because the receive buffer was full, since open. */
static napi_value js_packet_kernel_drops(napi_env env, napi_callback_info info) {
  napi_value a[1];
  st_io *h = packet_args(env, info, 1, a, NULL);
  if (!h) return NULL;
  packet_state *ps = (packet_state *)h->ext;
  struct tpacket_stats st;
  socklen_t len = sizeof st;
  if (getsockopt(h->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) ps->kernel_drops += st.tp_drops;
  napi_value out;
  CHECK(napi_create_double(env, ps->kernel_drops, &out));
  return out;
}

napi_status st_packet_init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      ST_FN("packetOpen", js_packet_open), ST_FN("packetSend", js_packet_send),
      ST_FN("packetTakeError", js_packet_take_error), ST_FN("packetKernelDrops", js_packet_kernel_drops),
  };
  return ST_DEFINE(env, exports, fns);
}
