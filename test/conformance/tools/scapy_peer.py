#!/usr/bin/python3
"""scapy_peer: an ESP peer for sectunnel's conformance tests, built on scapy 2.5.

It shares no code with sectunnel: the ESP crypto is scapy's SecurityAssociation
(scapy.layers.ipsec, on python3-cryptography), the headers are scapy layers or
parsed here with struct, and the pcap files are read and written here.

  encrypt --sa SA.json --in INNER.pcap --out OUTER.pcap [--first-seq N]
          [--next-header N] [--eth-src MAC] [--eth-dst MAC]
      Each input record is an inner Ethernet frame *with* its 802.1Q tag. It is
      sent as outer IP | [UDP 4500] | ESP | GRE(0x6558[, key]) | frame, sealed
      with the SA; sequence numbers start at N (default 1; 64-bit with ESN) and
      the IV is the 64-bit sequence number, as sectunnel does. Output: a pcap of
      Ethernet frames (link type 1).

  decrypt --sa SA.json --in OUTER.pcap --out INNER.pcap --verdicts OUT.jsonl
          [--first-seq N] [--esn-window PACKETS]
      Opens each packet with scapy, then checks what scapy does not: pad length,
      pad contents 1, 2, 3, ... (RFC 4303 §2.4), next header 47, the GRE header
      (RFC 2784/2890) and its key, exactly one 802.1Q tag. Writes the inner
      tagged frames of good packets to INNER.pcap and one JSON line per input
      packet: {"frame", "ok", "spi", "seq", "seq_hi", "seq_lo", "gre_key", "vlan",
      "next_header", "pad_len", "error", "detail", "inner"}. "frame" counts from 1;
      "error" is null or a code: sectunnel's drop reason names where one fits
      (truncated, unknown_spi, icv_mismatch, bad_pad_length, bad_padding_content,
      unexpected_next_header, dummy_packet, gre_malformed, gre_checksum,
      gre_unknown_key, inner_untagged, inner_malformed, udp_zero_checksum_v6,
      not_esp, nat_keepalive, non_esp_marker), else the checker's own
      (wrong_address, wrong_encapsulation, udp_bad_length, udp_bad_checksum,
      ip_bad_checksum, fragment, checker_error). Input: Ethernet, raw IP or
      Linux cooked captures, pcap or pcapng; outer IP fragments are not
      reassembled (error "fragment").
      With ESN the high half is inferred as in RFC 4303 Appendix A2 from the
      highest authenticated number so far (initially --first-seq minus 1).
      No anti-replay: a duplicate is decrypted again.

SA.json: {"spi": "0x…", "algorithm": "aes-gcm-128|192|256|chacha20-poly1305",
  "keymat": hex (key ‖ 4-octet salt), "esn": bool, "src": ip, "dst": ip,
  "encapsulation": "udp"|"esp", "greKey": number|null}; greKey absent means the
  sectunnel default, VLAN id << 8. decrypt also takes a list of such objects
  and picks the SA by SPI (then by addresses).

scapy 2.5 quirks handled here (see /work/shared/conformance/README.md):
  * SecurityAssociation.encrypt uses `seq_num or self.seq_num` and
    `esn or self.esn`, so 0 means "the SA's default": both are set on the SA
    before each packet and never passed as arguments.
  * ESP-in-UDP comes out with UDP length 8 over IPv4 and checksum 0; the
    length is recomputed, and over IPv6 the checksum too (zero is not allowed
    there, RFC 8200 §8.1; over IPv4 it stays 0 as RFC 3948 §2.1 says).
  * CryptAlgo.decrypt slices the padding wrongly and never checks it; the
    padding is checked by sealing the expected plaintext (payload ‖ 1, 2, … ‖
    pad length ‖ next header) again with the same nonce and comparing it with
    the received ciphertext and ICV.
  * The IV is random by default; it is passed explicitly.
  * scapy re-serializes the packet it encrypts (split_for_transport dissects
    it); every packet is decrypted again after sealing and compared with the
    bytes that were meant to be inside.

Bad input (arguments, SA.json, capture files) is reported on stderr with exit
status 2, never as a traceback (SCAPY_PEER_TRACE=1 shows one for debugging).
A malformed packet in `decrypt` is not bad input: it gets a verdict.
"""

import argparse
import ipaddress
import json
import logging
import os
import struct
import sys

PROG = "scapy_peer"

# Spec constants.
ESP_HEADER_BYTES = 8  # SPI + sequence number (RFC 4303 §2)
IV_BYTES = 8  # RFC 4106 §3.1, RFC 7634 §2
ICV_BYTES = 16
SALT_BYTES = 4
TRAILER_BYTES = 2  # pad length + next header
NAT_T_PORT = 4500  # RFC 3948
ETH_HEADER_BYTES = 14
VLAN_TAG_BYTES = 4
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
ETHERTYPE_TEB = 0x6558
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_NONE = 59
IPV6_EXT_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options
IPPROTO_IPV6_FRAGMENT = 44
GRE_C = 0x8000
GRE_K = 0x2000
GRE_S = 0x1000
GRE_RESERVED_1_4_5 = 0x4C00  # RFC 2784 §2.5.1 bits 1-5 minus K (2) and S (3) of RFC 2890
GRE_VERSION_MASK = 0x0007
U32 = 1 << 32
U64 = 1 << 64

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229

ALGORITHMS = {
    # name: (scapy crypt_algo, key octets without the salt)
    "aes-gcm-128": ("AES-GCM", 16),
    "aes-gcm-192": ("AES-GCM", 24),
    "aes-gcm-256": ("AES-GCM", 32),
    "chacha20-poly1305": ("CHACHA20-POLY1305", 32),
}

DEFAULT_ETH_SRC = "02:00:00:00:00:01"
DEFAULT_ETH_DST = "02:00:00:00:00:02"
DEFAULT_ESN_WINDOW = 4096  # sectunnel's default replay window


class PeerError(Exception):
    """Bad input: reported on stderr, exit status 2."""


class Drop(Exception):
    """A packet that fails a check: code (sectunnel's reason name where one fits) and detail."""

    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


# ---------------------------------------------------------------------------
# scapy, imported late so a missing package is an error message, not a traceback


class Scapy:
    """The few scapy names used here."""

    def __init__(self):
        logging.getLogger("scapy").setLevel(logging.ERROR)
        try:
            from scapy.config import conf
            from scapy.compat import raw
            from scapy.packet import Raw
            from scapy.layers.l2 import Ether, GRE
            from scapy.layers.inet import IP, UDP
            from scapy.layers.inet6 import IPv6
            from scapy.layers import ipsec
        except ImportError as e:
            raise PeerError("scapy is not importable (%s); install python3-scapy and run with /usr/bin/python3" % e)
        conf.verb = 0
        if not conf.crypto_valid:
            raise PeerError("scapy cannot use python3-cryptography, so it has no ESP crypto")
        self.raw, self.Raw = raw, Raw
        self.Ether, self.GRE, self.IP, self.UDP, self.IPv6 = Ether, GRE, IP, UDP, IPv6
        self.ESP, self.ESPPlain = ipsec.ESP, ipsec._ESPPlain
        self.SecurityAssociation = ipsec.SecurityAssociation
        self.IntegrityError = ipsec.IPSecIntegrityError


# ---------------------------------------------------------------------------
# SA.json


class Sa:
    """One SA from SA.json, checked."""

    def __init__(self, spi, algorithm, keymat, esn, src, dst, udp, gre_key):
        self.spi = spi
        self.algorithm = algorithm
        self.scapy_algo = ALGORITHMS[algorithm][0]
        self.keymat = keymat
        self.esn = esn
        self.src = src
        self.dst = dst
        self.family = src.version
        self.udp = udp
        # None: no key; an int: that key; "default": the frame's VLAN id << 8.
        self.gre_key = gre_key
        self.scapy_sa = None
        # Highest authenticated 64-bit sequence number (decrypt, RFC 4303 App. A2 "T").
        self.highest_seq = 0

    def spi_text(self):
        return "0x%08x" % self.spi


def parse_sa(obj, where):
    if not isinstance(obj, dict):
        raise PeerError("%s: an SA must be a JSON object, got %s" % (where, type(obj).__name__))

    def field(name, required=True):
        if name not in obj:
            if required:
                raise PeerError("%s: field '%s' is missing" % (where, name))
            return None
        return obj[name]

    known = {"spi", "algorithm", "keymat", "esn", "src", "dst", "encapsulation", "greKey"}
    extra = sorted(set(obj) - known)
    if extra:
        raise PeerError("%s: unknown field '%s' (known: %s)" % (where, extra[0], ", ".join(sorted(known))))

    spi_v = field("spi")
    if isinstance(spi_v, bool):
        spi_v = None
    if isinstance(spi_v, str):
        try:
            spi = int(spi_v, 16) if spi_v.lower().startswith("0x") else int(spi_v, 10)
        except ValueError:
            spi = None
    elif isinstance(spi_v, int):
        spi = spi_v
    else:
        spi = None
    if spi is None or not 0 <= spi < U32:
        raise PeerError("%s: field 'spi' must be a 32-bit number like \"0x00001001\", got %s" % (where, json.dumps(spi_v)))

    algorithm = field("algorithm")
    if algorithm not in ALGORITHMS:
        raise PeerError("%s: field 'algorithm' must be one of %s, got %s" % (where, ", ".join(ALGORITHMS), json.dumps(algorithm)))

    keymat_v = field("keymat")
    if not isinstance(keymat_v, str):
        raise PeerError("%s: field 'keymat' must be a hex string, got %s" % (where, json.dumps(keymat_v)))
    text = keymat_v[2:] if keymat_v.lower().startswith("0x") else keymat_v
    try:
        keymat = bytes.fromhex(text)
    except ValueError:
        raise PeerError("%s: field 'keymat' is not hex: %s" % (where, json.dumps(keymat_v)))
    key_bytes = ALGORITHMS[algorithm][1]
    if len(keymat) != key_bytes + SALT_BYTES:
        raise PeerError(
            "%s: field 'keymat': %s needs %d octets (%d-octet key ‖ 4-octet salt), got %d"
            % (where, algorithm, key_bytes + SALT_BYTES, key_bytes, len(keymat))
        )

    esn = field("esn")
    if not isinstance(esn, bool):
        raise PeerError("%s: field 'esn' must be true or false, got %s" % (where, json.dumps(esn)))

    addrs = []
    for name in ("src", "dst"):
        v = field(name)
        try:
            addrs.append(ipaddress.ip_address(v))
        except (ValueError, TypeError):
            raise PeerError("%s: field '%s' must be an IPv4 or IPv6 address, got %s" % (where, name, json.dumps(v)))
    if addrs[0].version != addrs[1].version:
        raise PeerError("%s: fields 'src' (%s) and 'dst' (%s) are of different IP versions" % (where, addrs[0], addrs[1]))

    encap = field("encapsulation")
    if encap not in ("udp", "esp"):
        raise PeerError("%s: field 'encapsulation' must be \"udp\" or \"esp\", got %s" % (where, json.dumps(encap)))

    if "greKey" not in obj:
        gre_key = "default"
    else:
        gk = obj["greKey"]
        if gk is None:
            gre_key = None
        elif isinstance(gk, int) and not isinstance(gk, bool) and 0 <= gk < U32:
            gre_key = gk
        else:
            raise PeerError("%s: field 'greKey' must be a 32-bit number or null, got %s" % (where, json.dumps(gk)))

    return Sa(spi, algorithm, keymat, esn, addrs[0], addrs[1], encap == "udp", gre_key)


def load_sas(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise PeerError("%s: cannot read: %s" % (path, e.strerror or e))
    except (ValueError, UnicodeDecodeError) as e:
        raise PeerError("%s: not JSON: %s" % (path, e))
    if isinstance(doc, list):
        if not doc:
            raise PeerError("%s: the SA list is empty" % path)
        return [parse_sa(o, "%s: SA #%d" % (path, i)) for i, o in enumerate(doc)]
    return [parse_sa(doc, path)]


def make_scapy_sa(sc, sa):
    nat_t = sc.UDP(sport=NAT_T_PORT, dport=NAT_T_PORT) if sa.udp else None
    return sc.SecurityAssociation(
        sc.ESP,
        spi=sa.spi,
        crypt_algo=sa.scapy_algo,
        crypt_key=sa.keymat,
        esn_en=sa.esn,
        esn=0,
        nat_t_header=nat_t,
    )


# ---------------------------------------------------------------------------
# Capture files (classic pcap and pcapng read, classic pcap written, all here)


def read_capture(path):
    """Returns [(linktype, data, ts_sec, ts_usec)]."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PeerError("%s: cannot read: %s" % (path, e.strerror or e))
    if len(data) < 4:
        raise PeerError("%s: not a capture file (%d bytes)" % (path, len(data)))
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        return read_pcapng(path, data)
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if endian is None:
        raise PeerError("%s: not a pcap or pcapng file (magic %s)" % (path, magic.hex()))
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    if len(data) < 24:
        raise PeerError("%s: truncated pcap file header" % path)
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
    out = []
    at = 24
    while at < len(data):
        if at + 16 > len(data):
            raise PeerError("%s: truncated record header at byte offset %d" % (path, at))
        sec, frac, caplen, _orig = struct.unpack(endian + "IIII", data[at : at + 16])
        if at + 16 + caplen > len(data):
            raise PeerError("%s: record of %d bytes at byte offset %d runs past the end of the file" % (path, caplen, at))
        out.append((linktype, data[at + 16 : at + 16 + caplen], sec, (frac // 1000 if nano else frac) % 1000000))
        at += 16 + caplen
    return out


def read_pcapng(path, data):
    """pcapng (SHB, IDB, EPB, SPB; other blocks skipped by their length); bad structure is PeerError."""
    out = []
    at = 0
    endian = "<"
    ifaces = []  # (linktype, snaplen, units per second)
    while at < len(data):
        if at + 12 > len(data):
            raise PeerError("%s: truncated block header at byte offset %d" % (path, at))
        if data[at : at + 4] == b"\x0a\x0d\x0d\x0a":
            bom = data[at + 8 : at + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else None
            if endian is None:
                raise PeerError("%s: bad pcapng byte-order magic at byte offset %d" % (path, at + 8))
            ifaces = []
        btype, blen = struct.unpack(endian + "II", data[at : at + 8])
        if blen < 12 or blen % 4 or at + blen > len(data):
            raise PeerError("%s: block of length %d at byte offset %d is cut off or malformed" % (path, blen, at))
        body = data[at + 8 : at + blen - 4]
        if btype == 1:  # IDB: link type, reserved, snaplen, options (if_tsresol = 9)
            if len(body) < 8:
                raise PeerError("%s: short interface description block at byte offset %d" % (path, at))
            linktype, _res, snaplen = struct.unpack(endian + "HHI", body[:8])
            units = 1000000
            opt = 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack(endian + "HH", body[opt : opt + 4])
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    v = body[opt + 4]
                    units = (1 << (v & 0x7F)) if v & 0x80 else 10 ** v
                opt += 4 + ((olen + 3) & ~3)
            ifaces.append((linktype, snaplen, units))
        elif btype in (3, 6):  # SPB, EPB
            if btype == 6:
                if len(body) < 20:
                    raise PeerError("%s: short enhanced packet block at byte offset %d" % (path, at))
                iface, tshigh, tslow, caplen, _orig = struct.unpack(endian + "IIIII", body[:20])
                pkt = body[20 : 20 + caplen]
            else:
                iface, tshigh, tslow = 0, 0, 0
                if len(body) < 4:
                    raise PeerError("%s: short simple packet block at byte offset %d" % (path, at))
                caplen = struct.unpack(endian + "I", body[:4])[0]
                pkt = body[4 : 4 + caplen]
            if iface >= len(ifaces):
                raise PeerError("%s: packet at byte offset %d names interface %d, the section has %d" % (path, at, iface, len(ifaces)))
            if len(pkt) != caplen:
                raise PeerError("%s: packet of %d bytes overruns its block at byte offset %d" % (path, caplen, at))
            linktype, _snap, units = ifaces[iface]
            ts = (tshigh << 32) | tslow
            out.append((linktype, pkt, ts // units, (ts % units) * 1000000 // units))
        at += blen
    return out


def write_pcap(path, records, linktype=LINKTYPE_ETHERNET):
    """Classic pcap, little-endian, microseconds; records are (data, ts_sec, ts_usec)."""
    chunks = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for data, sec, usec in records:
        chunks.append(struct.pack("<IIII", sec, usec, len(data), len(data)))
        chunks.append(data)
    try:
        with open(path, "wb") as f:
            f.write(b"".join(chunks))
    except OSError as e:
        raise PeerError("%s: cannot write: %s" % (path, e.strerror or e))


# ---------------------------------------------------------------------------
# Small helpers


def ones_complement_sum(data):
    """RFC 1071 sum, folded to 16 bits (0xffff over a buffer with a correct checksum)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def parse_mac(text, name):
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise PeerError("--%s must be a MAC address like 02:00:00:00:00:01, got %r" % (name, text))
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise PeerError("--%s must be a MAC address like 02:00:00:00:00:01, got %r" % (name, text))


def parse_uint(text, name, limit):
    try:
        v = int(text, 0)
    except (TypeError, ValueError):
        raise PeerError("--%s must be an integer, got %r" % (name, text))
    if not 0 <= v < limit:
        raise PeerError("--%s must be in 0..%d, got %d" % (name, limit - 1, v))
    return v


def frame_vlan(frame):
    """VLAN id of a frame's first 802.1Q tag, or None if it has none."""
    if len(frame) >= ETH_HEADER_BYTES + VLAN_TAG_BYTES and struct.unpack("!H", frame[12:14])[0] == ETHERTYPE_VLAN:
        return struct.unpack("!H", frame[14:16])[0] & 0x0FFF
    return None


# ---------------------------------------------------------------------------
# encrypt


def esp_open(sc, sa, esp_bytes, seq_hi):
    """scapy's CryptAlgo.decrypt of one ESP packet: an _ESPPlain, or IPSecIntegrityError."""
    ssa = sa.scapy_sa
    pkt = sc.ESP(esp_bytes)
    ssa.check_spi(pkt)
    return ssa.crypt_algo.decrypt(ssa, pkt, ssa.crypt_key, ICV_BYTES, esn_en=sa.esn, esn=seq_hi)


def cmd_encrypt(args):
    sas = load_sas(args.sa)
    if len(sas) != 1:
        raise PeerError("%s: encrypt takes exactly one SA, the file has %d" % (args.sa, len(sas)))
    sa = sas[0]
    seq_limit = U64 if sa.esn else U32
    first = parse_uint(args.first_seq, "first-seq", seq_limit)
    next_header = None if args.next_header is None else parse_uint(args.next_header, "next-header", 256)
    eth_src = parse_mac(args.eth_src, "eth-src")
    eth_dst = parse_mac(args.eth_dst, "eth-dst")
    sc = Scapy()
    records = read_capture(args.input)
    if first + len(records) > seq_limit:
        raise PeerError(
            "--first-seq %d: %d packets would pass the %d-bit sequence number space (esn is %s)"
            % (first, len(records), 64 if sa.esn else 32, "on" if sa.esn else "off")
        )
    sa.scapy_sa = make_scapy_sa(sc, sa)
    out = []
    for i, (linktype, frame, sec, usec) in enumerate(records):
        where = "%s: record %d" % (args.input, i + 1)
        if linktype != LINKTYPE_ETHERNET:
            raise PeerError("%s: link type %d; inner frames must be Ethernet (link type 1)" % (where, linktype))
        out.append((encrypt_frame(sc, sa, frame, first + i, next_header, eth_src, eth_dst, where), sec, usec))
    write_pcap(args.output, out)
    return 0


def encrypt_frame(sc, sa, frame, seq, next_header, eth_src, eth_dst, where):
    key = sa.gre_key
    if key == "default":
        vid = frame_vlan(frame)
        if vid is None:
            raise PeerError("%s: frame has no 802.1Q tag, so the default GRE key (VLAN << 8) is undefined; set greKey in the SA" % where)
        key = vid << 8
    gre = sc.GRE(proto=ETHERTYPE_TEB) if key is None else sc.GRE(key_present=1, key=key, proto=ETHERTYPE_TEB)
    payload = sc.raw(gre / sc.Raw(frame))
    nh = IPPROTO_GRE if next_header is None else next_header
    ip_cls = sc.IP if sa.family == 4 else sc.IPv6
    if sa.family == 4:
        plain_ip = sc.IP(src=str(sa.src), dst=str(sa.dst), proto=nh) / sc.Raw(payload)
    else:
        plain_ip = sc.IPv6(src=str(sa.src), dst=str(sa.dst), nh=nh) / sc.Raw(payload)

    # Quirk: encrypt() reads `seq_num or self.seq_num` and `esn or self.esn`, so 0 cannot be
    # passed; put both halves on the SA and pass neither.
    hi, lo = seq >> 32, seq & (U32 - 1)
    ssa = sa.scapy_sa
    ssa.seq_num = lo
    ssa.esn = hi
    enc = ssa.encrypt(plain_ip, iv=struct.pack("!Q", seq))
    if enc[sc.ESP].seq != lo or enc[sc.ESP].spi != sa.spi:
        raise PeerError("%s: scapy sealed seq %d spi 0x%08x, expected %d 0x%08x" % (where, enc[sc.ESP].seq, enc[sc.ESP].spi, lo, sa.spi))

    if sa.udp:
        # Quirk: the UDP length is left at 8 and the checksum at 0. Recompute the length;
        # over IPv6 also the checksum (RFC 8200 §8.1); over IPv4 0 is what RFC 3948 §2.1 asks.
        udp = enc[sc.UDP]
        udp.len = None
        udp.chksum = None if sa.family == 6 else 0
    outer = ip_cls(sc.raw(enc))

    # scapy dissected and re-serialized the packet; open it again and compare.
    esp_bytes = sc.raw(outer[sc.ESP])
    try:
        back = esp_open(sc, sa, esp_bytes, hi)
    except sc.IntegrityError:
        raise PeerError("%s: scapy cannot open the packet it just sealed" % where)
    if sc.raw(back.data) != payload or back.nh != nh:
        raise PeerError("%s: scapy changed the plaintext while sealing it" % where)

    ethertype = ETHERTYPE_IPV4 if sa.family == 4 else ETHERTYPE_IPV6
    return eth_dst + eth_src + struct.pack("!H", ethertype) + sc.raw(outer)


# ---------------------------------------------------------------------------
# decrypt


def parse_outer(linktype, data):
    """(family, src, dst, is_udp, esp_bytes) of an outer packet, or Drop."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < ETH_HEADER_BYTES:
            raise Drop("truncated", "Ethernet frame of %d octets" % len(data))
        at = 12
        ethertype = struct.unpack("!H", data[at : at + 2])[0]
        while ethertype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ):
            at += VLAN_TAG_BYTES
            if len(data) < at + 2:
                raise Drop("truncated", "outer VLAN tag cut off")
            ethertype = struct.unpack("!H", data[at : at + 2])[0]
        ip = data[at + 2 :]
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            raise Drop("truncated", "Linux cooked header cut off")
        ethertype = struct.unpack("!H", data[14:16])[0]
        ip = data[16:]
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        ip = data
        version = ip[0] >> 4 if ip else 0
        ethertype = ETHERTYPE_IPV4 if version == 4 else ETHERTYPE_IPV6 if version == 6 else 0
    else:
        raise Drop("not_esp", "link type %d is not supported" % linktype)

    if ethertype == ETHERTYPE_IPV4:
        return parse_ipv4(ip)
    if ethertype == ETHERTYPE_IPV6:
        return parse_ipv6(ip)
    raise Drop("not_esp", "EtherType 0x%04x is not IP" % ethertype)


def parse_ipv4(ip):
    if len(ip) < 20 or ip[0] >> 4 != 4:
        raise Drop("truncated", "IPv4 header cut off or not version 4")
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ihl < 20 or len(ip) < ihl or total < ihl or total > len(ip):
        raise Drop("truncated", "IPv4 header length %d, total length %d, %d octets captured" % (ihl, total, len(ip)))
    if ones_complement_sum(ip[:ihl]) != 0xFFFF:
        raise Drop("ip_bad_checksum", "IPv4 header checksum 0x%04x is wrong" % struct.unpack("!H", ip[10:12])[0])
    frag = struct.unpack("!H", ip[6:8])[0]
    if frag & 0x3FFF:
        raise Drop("fragment", "outer IPv4 fragment (offset %d, MF %d); reassemble first" % ((frag & 0x1FFF) * 8, (frag >> 13) & 1))
    src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
    return upper_layer(4, src, dst, ip[9], ip[ihl:total])


def parse_ipv6(ip):
    if len(ip) < 40 or ip[0] >> 4 != 6:
        raise Drop("truncated", "IPv6 header cut off or not version 6")
    plen = struct.unpack("!H", ip[4:6])[0]
    if 40 + plen > len(ip):
        raise Drop("truncated", "IPv6 payload length %d, %d octets captured" % (plen, len(ip) - 40))
    src, dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
    nh = ip[6]
    rest = ip[40 : 40 + plen]
    while nh in IPV6_EXT_HEADERS or nh == IPPROTO_IPV6_FRAGMENT:
        if nh == IPPROTO_IPV6_FRAGMENT:
            raise Drop("fragment", "outer IPv6 fragment; reassemble first")
        if len(rest) < 8 or len(rest) < (rest[1] + 1) * 8:
            raise Drop("truncated", "IPv6 extension header %d cut off" % nh)
        nh, rest = rest[0], rest[(rest[1] + 1) * 8 :]
    return upper_layer(6, src, dst, nh, rest)


def upper_layer(family, src, dst, proto, payload):
    if proto == IPPROTO_ESP:
        return family, src, dst, False, payload
    if proto != IPPROTO_UDP:
        raise Drop("not_esp", "IP protocol %d is neither ESP nor UDP" % proto)
    if len(payload) < 8:
        raise Drop("truncated", "UDP header cut off")
    sport, dport, ulen, csum = struct.unpack("!HHHH", payload[:8])
    if NAT_T_PORT not in (sport, dport):
        raise Drop("not_esp", "UDP %d -> %d is not port %d" % (sport, dport, NAT_T_PORT))
    if ulen != len(payload):
        raise Drop("udp_bad_length", "UDP length field %d, but the IP payload is %d octets" % (ulen, len(payload)))
    if csum == 0 and family == 6:
        raise Drop("udp_zero_checksum_v6", "UDP checksum 0 over IPv6 (RFC 8200 §8.1)")
    if csum != 0:
        pseudo = src.packed + dst.packed
        pseudo += struct.pack("!HH", IPPROTO_UDP, ulen) if family == 4 else struct.pack("!IxxxB", ulen, IPPROTO_UDP)
        if ones_complement_sum(pseudo + payload) != 0xFFFF:
            raise Drop("udp_bad_checksum", "UDP checksum 0x%04x is wrong" % csum)
    body = payload[8:]
    if body == b"\xff":
        raise Drop("nat_keepalive", "NAT keepalive (RFC 3948 §2.3)")
    if body[:4] == b"\x00\x00\x00\x00":
        raise Drop("non_esp_marker", "non-ESP marker (RFC 3948 §2.2)")
    return family, src, dst, True, body


def infer_seq_hi(highest, seq_lo, window):
    """RFC 4303 Appendix A2: the high half of a received ESN from T (highest) and window W."""
    th, tl = highest >> 32, highest & (U32 - 1)
    if tl >= window - 1:
        return th if seq_lo >= tl - window + 1 else th + 1
    if seq_lo >= (tl - window + 1) % U32:
        return th - 1 if th > 0 else 0
    return th


def pick_sa(sas, spi, family, src, dst, is_udp):
    same_spi = [s for s in sas if s.spi == spi]
    if not same_spi:
        raise Drop("unknown_spi", "no SA with SPI 0x%08x" % spi)
    matching = [s for s in same_spi if s.family == family and s.src == src and s.dst == dst]
    if not matching:
        s = same_spi[0]
        raise Drop("wrong_address", "packet %s -> %s, but SA 0x%08x is %s -> %s" % (src, dst, spi, s.src, s.dst))
    sa = matching[0]
    if sa.udp != is_udp:
        raise Drop(
            "wrong_encapsulation",
            "packet is %s, SA 0x%08x says %s" % ("ESP-in-UDP" if is_udp else "raw ESP", spi, "udp" if sa.udp else "esp"),
        )
    return sa


def check_packet(sc, sas, linktype, data, window, verdict):
    """Fills verdict; returns the inner tagged frame of a good packet, or raises Drop."""
    family, src, dst, is_udp, esp = parse_outer(linktype, data)
    if len(esp) < ESP_HEADER_BYTES:
        raise Drop("truncated", "ESP header cut off (%d octets)" % len(esp))
    spi, seq_lo = struct.unpack("!II", esp[:8])
    verdict["spi"] = "0x%08x" % spi
    verdict["seq_lo"] = seq_lo
    verdict["seq"] = seq_lo
    sa = pick_sa(sas, spi, family, src, dst, is_udp)
    text_len = len(esp) - ESP_HEADER_BYTES - IV_BYTES - ICV_BYTES
    if text_len < TRAILER_BYTES:
        raise Drop("truncated", "ESP packet of %d octets has no room for IV, trailer and ICV" % len(esp))

    seq_hi = infer_seq_hi(sa.highest_seq, seq_lo, window) if sa.esn else 0
    seq = (seq_hi << 32) | seq_lo
    if sa.esn:
        verdict["seq_hi"] = seq_hi
        verdict["seq"] = seq
    try:
        plain = esp_open(sc, sa, esp, seq_hi)
    except sc.IntegrityError:
        raise Drop("icv_mismatch", "ICV does not verify (seq %d%s)" % (seq, ", ESN high half inferred %d" % seq_hi if sa.esn else ""))
    sa.highest_seq = max(sa.highest_seq, seq)

    pad_len, nh = plain.padlen, plain.nh
    verdict["pad_len"] = pad_len
    verdict["next_header"] = nh
    if pad_len + TRAILER_BYTES > text_len:
        raise Drop("bad_pad_length", "pad length %d in %d octets of plaintext" % (pad_len, text_len))
    payload = sc.raw(plain.data)
    if len(payload) != text_len - pad_len - TRAILER_BYTES:
        raise Drop("bad_pad_length", "pad length %d does not fit %d octets of plaintext" % (pad_len, text_len))
    # RFC 4303 §2.4: pad bytes 1, 2, 3, ... scapy slices the padding wrongly and never looks at
    # it, so seal what the plaintext must be with the same nonce and compare the ciphertext.
    expected = sc.ESPPlain(spi=spi, seq=seq_lo, iv=plain.iv, data=sc.Raw(payload), padding=bytes(range(1, pad_len + 1)), padlen=pad_len, nh=nh)
    ssa = sa.scapy_sa
    resealed = ssa.crypt_algo.encrypt(ssa, expected, ssa.crypt_key, ICV_BYTES, esn_en=sa.esn, esn=seq_hi)
    if sc.raw(resealed.data) != esp[ESP_HEADER_BYTES:]:
        raise Drop("bad_padding_content", "pad bytes are not 1, 2, ..., %d" % pad_len)
    if nh == IPPROTO_NONE:
        raise Drop("dummy_packet", "next header 59: a dummy packet (RFC 4303 §2.6)")
    if nh != IPPROTO_GRE:
        raise Drop("unexpected_next_header", "next header %d, expected 47 (GRE)" % nh)

    frame, key = check_gre(payload)
    verdict["gre_key"] = key
    if sa.gre_key is None and key is not None:
        raise Drop("gre_unknown_key", "GRE key 0x%08x present, the SA's label has none" % key)
    if isinstance(sa.gre_key, int) and key != sa.gre_key:
        raise Drop("gre_unknown_key", "GRE key %s, expected 0x%08x" % ("absent" if key is None else "0x%08x" % key, sa.gre_key))
    vid = check_inner(frame)
    verdict["vlan"] = vid
    if sa.gre_key == "default" and key != vid << 8:
        raise Drop("gre_unknown_key", "GRE key %s, expected the default VLAN %d << 8 = 0x%08x" % ("absent" if key is None else "0x%08x" % key, vid, vid << 8))
    return frame


def check_gre(payload):
    """RFC 2784 §2 / RFC 2890: (inner frame, key or None), or Drop."""
    if len(payload) < 4:
        raise Drop("gre_malformed", "GRE header cut off (%d octets)" % len(payload))
    flags, proto = struct.unpack("!HH", payload[:4])
    if flags & GRE_RESERVED_1_4_5:
        raise Drop("gre_malformed", "GRE reserved bits 1-5 set (flags 0x%04x)" % flags)
    if flags & GRE_VERSION_MASK:
        raise Drop("gre_malformed", "GRE version %d, expected 0" % (flags & GRE_VERSION_MASK))
    if proto != ETHERTYPE_TEB:
        raise Drop("gre_malformed", "GRE protocol 0x%04x, expected 0x6558" % proto)
    header = 4 + 4 * sum(1 for bit in (GRE_C, GRE_K, GRE_S) if flags & bit)
    if len(payload) < header:
        raise Drop("gre_malformed", "GRE header of %d octets cut off (%d)" % (header, len(payload)))
    if flags & GRE_C and ones_complement_sum(payload) != 0xFFFF:
        raise Drop("gre_checksum", "GRE checksum 0x%04x is wrong" % struct.unpack("!H", payload[4:6])[0])
    key = None
    if flags & GRE_K:
        at = 8 if flags & GRE_C else 4
        key = struct.unpack("!I", payload[at : at + 4])[0]
    return payload[header:], key


def check_inner(frame):
    """Exactly one 802.1Q tag with VID 1-4094; returns the VID, or Drop."""
    if len(frame) < ETH_HEADER_BYTES:
        raise Drop("inner_malformed", "inner frame of %d octets" % len(frame))
    ethertype = struct.unpack("!H", frame[12:14])[0]
    if ethertype != ETHERTYPE_VLAN:
        raise Drop("inner_untagged", "inner EtherType 0x%04x, expected an 802.1Q tag (0x8100)" % ethertype)
    if len(frame) < ETH_HEADER_BYTES + VLAN_TAG_BYTES:
        raise Drop("inner_malformed", "inner 802.1Q tag cut off")
    tci, inner_type = struct.unpack("!HH", frame[14:18])
    vid = tci & 0x0FFF
    if inner_type in (ETHERTYPE_VLAN, ETHERTYPE_QINQ):
        raise Drop("inner_malformed", "more than one tag (0x%04x after the first)" % inner_type)
    if vid == 0 or vid == 0x0FFF:
        raise Drop("inner_malformed", "VLAN id %d is not in 1..4094" % vid)
    return vid


def cmd_decrypt(args):
    sas = load_sas(args.sa)
    first = parse_uint(args.first_seq, "first-seq", U64)
    window = parse_uint(args.esn_window, "esn-window", U32)
    if window < 1:
        raise PeerError("--esn-window must be at least 1")
    sc = Scapy()
    for sa in sas:
        sa.scapy_sa = make_scapy_sa(sc, sa)
        sa.highest_seq = max(first - 1, 0)
    records = read_capture(args.input)
    frames = []
    lines = []
    for n, (linktype, data, sec, usec) in enumerate(records, start=1):
        verdict = {
            "frame": n,
            "ok": False,
            "spi": None,
            "seq": None,
            "seq_hi": None,
            "seq_lo": None,
            "gre_key": None,
            "vlan": None,
            "next_header": None,
            "pad_len": None,
            "error": None,
            "detail": None,
            "inner": None,
        }
        try:
            frame = check_packet(sc, sas, linktype, data, window, verdict)
            verdict["ok"] = True
            verdict["inner"] = frame.hex()
            frames.append((frame, sec, usec))
        except Drop as d:
            verdict["error"] = d.code
            verdict["detail"] = d.detail
        except Exception as e:  # scapy on hostile bytes: a verdict, never a crash
            if os.environ.get("SCAPY_PEER_TRACE"):
                raise
            verdict["error"] = "checker_error"
            verdict["detail"] = "%s: %s" % (type(e).__name__, e)
        lines.append(json.dumps(verdict))
    write_pcap(args.output, frames)
    try:
        with open(args.verdicts, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    except OSError as e:
        raise PeerError("%s: cannot write: %s" % (args.verdicts, e.strerror or e))
    return 0


# ---------------------------------------------------------------------------


def main(argv):
    parser = argparse.ArgumentParser(prog=PROG, description="ESP peer built on scapy, for sectunnel conformance tests")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encrypt", help="seal inner tagged frames into outer ESP packets")
    enc.add_argument("--sa", required=True, help="SA.json")
    enc.add_argument("--in", dest="input", required=True, help="pcap of inner Ethernet frames with their 802.1Q tag")
    enc.add_argument("--out", dest="output", required=True, help="pcap of outer Ethernet frames to write")
    enc.add_argument("--first-seq", default="1", help="sequence number of the first packet (default 1; 64-bit with ESN)")
    enc.add_argument("--next-header", default=None, help="ESP next header to send instead of 47 (negative tests)")
    enc.add_argument("--eth-src", default=DEFAULT_ETH_SRC, help="outer Ethernet source MAC")
    enc.add_argument("--eth-dst", default=DEFAULT_ETH_DST, help="outer Ethernet destination MAC")
    dec = sub.add_parser("decrypt", help="open outer ESP packets and check them")
    dec.add_argument("--sa", required=True, help="SA.json (an object or a list)")
    dec.add_argument("--in", dest="input", required=True, help="pcap or pcapng of outer packets")
    dec.add_argument("--out", dest="output", required=True, help="pcap of the inner tagged frames of good packets")
    dec.add_argument("--verdicts", required=True, help="JSON lines, one per input packet")
    dec.add_argument("--first-seq", default="1", help="the first sequence number expected (ESN inference starts below it)")
    dec.add_argument("--esn-window", default=str(DEFAULT_ESN_WINDOW), help="window W of RFC 4303 Appendix A2")
    args = parser.parse_args(argv)
    if args.command == "encrypt":
        return cmd_encrypt(args)
    return cmd_decrypt(args)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except PeerError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if os.environ.get("SCAPY_PEER_TRACE"):
            raise
        print("%s: internal error: %s: %s (SCAPY_PEER_TRACE=1 shows where)" % (PROG, type(e).__name__, e), file=sys.stderr)
        sys.exit(2)
