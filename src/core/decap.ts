/**
 * Receive pipeline (wire → guest), one batch at a time (DESIGN.md "Data flow"):
 *   1. outer: for link-layer or IP input, Ethernet → IPv4/IPv6 (fragments reassembled,
 *      bounded) → UDP 4500 (checksum; zero over IPv6 → udp_zero_checksum_v6) or ESP
 *      (protocol 50), anything else → not_esp; on UDP a single 0xFF is a NAT keepalive and
 *      four zero octets a non-ESP marker (control message): both discarded here
 *   2. SA: SPI → inbound route (unknown_spi)
 *   3. ESP: replay quick check, open in place, replay commit, trailer (core/esp.ts),
 *      one AEAD batch per SA
 *   4. GRE: version, reserved bits, checksum (gre_malformed, gre_checksum); protocol 0x6558
 *   5. inner frame: exactly one 802.1Q tag (inner_untagged, inner_malformed)
 *   6. labels: (GRE key, VLAN) names a label (gre_unknown_key) that the SA is bound to
 *      (label_mismatch); the destination domain's label admits it (policy_denied); both
 *      denials audited
 *   7. learn the source MAC against the peer, strip the tag, deliver to the destination
 *      domain, or flood to the label's local domains; nowhere to go → no_route
 * The payload is never copied: ESP is opened in place and headers are dropped by moving
 * `start`. Only reassembly copies, because fragments arrive in separate buffers.
 */
import type { PacketBuf } from '../buf/packet-buf.js';
import { AeadBatch } from '../crypto/aead.js';
import {
  ESP_HEADER_BYTES,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_TEB,
  IP_PROTO_ESP,
  IP_PROTO_UDP,
  NAT_KEEPALIVE_BYTE,
  NON_ESP_MARKER_BYTES,
  UDP_ENCAP_PORT,
} from '../wire/constants.js';
import { WireError } from '../wire/errors.js';
import { EthernetFrame, EthTag, stripVlanTag } from '../wire/ethernet.js';
import { GrePacket } from '../wire/gre.js';
import { Ipv4Packet } from '../wire/ipv4.js';
import { Ipv6Packet } from '../wire/ipv6.js';
import { UdpPacket } from '../wire/udp.js';
import { Actions, DELIVER_TO_LABEL, VERDICT_PENDING } from './actions.js';
import { AuditEvent } from './audit.js';
import { SaGroups } from './sa-groups.js';
import { espOpenBatch } from './esp.js';
import { FDB_LOCAL, FDB_REMOTE, Learn } from './fdb.js';
import { MacOwnerCache, NO_LABEL } from './labels.js';
import { REASM_DONE, REASM_PENDING, Reassembler } from './reassembly.js';
import { OK, Reason } from './reasons.js';
import type { InboundRoute, Tables } from './tables.js';

/** What an input buffer holds. */
export const DecapInput = Object.freeze({
  /** An Ethernet frame carrying the outer IP packet (pcap, packet socket). */
  ethernet: 0,
  /** An outer IP packet (raw IPv4/IPv6 socket with header). */
  ip: 1,
  /** A UDP payload from the ESP-in-UDP socket: ESP, keepalive or non-ESP marker. */
  udpPayload: 2,
  /** A bare ESP packet (raw protocol-50 socket without IP header). */
  esp: 3,
});

export interface DecapOptions {
  /** UDP port carrying ESP (RFC 3948); default 4500. */
  udpPort?: number;
  /** Keep the 802.1Q tag on delivered frames (replay --keep-tag). */
  keepTag?: boolean;
  /** No domains: accepted frames are delivered to their label (replay without `domains`). */
  deliverToLabel?: boolean;
  /** Largest batch. */
  maxBatch?: number;
  /** Reassembly bounds. */
  reassembler?: Reassembler;
}

export class DecapPipeline {
  private readonly eth = new EthernetFrame();
  private readonly inner = new EthernetFrame();
  private readonly ip4 = new Ipv4Packet();
  private readonly ip6 = new Ipv6Packet();
  private readonly udp = new UdpPacket();
  private readonly gre = new GrePacket();
  private readonly audit = new AuditEvent();
  private readonly batch = new AeadBatch(64);
  readonly reassembler: Reassembler;
  readonly udpPort: number;
  readonly keepTag: boolean;
  readonly deliverToLabel: boolean;
  readonly maxBatch: number;
  // ESP packets waiting for their open, grouped per route afterwards.
  private readonly espBuf: PacketBuf[] = [];
  private readonly espRoute: InboundRoute[] = [];
  private readonly espFrom: number[] = [];
  private espCount = 0;
  // The SPI looked up last in this run and its route: the tables do not change during a run,
  // and a batch mostly holds one SA's packets. Besides the Map lookup this saves boxing an SPI
  // of 2^31 or more into a new heap number for the Map key, per packet.
  private lastSpi = -1;
  private lastRoute: InboundRoute | undefined = undefined;
  // More per-run memos, reset in run(): a batch is mostly one peer's guest talking to one guest.
  /** Label (-1: none), peer and source MAC (high 16, low 32 bits) last learned in this run. */
  private learnedLabel = -1;
  private learnedPeer = -1;
  private learnedHi = 0;
  private learnedLo = 0;
  /** Owner of the last destination MAC of this run. */
  private readonly owners = new MacOwnerCache();
  private readonly groups: SaGroups<InboundRoute>;
  private results: Uint8Array;
  /** Control messages (non-ESP marker) seen in the last run: input indexes, for the control plane. */
  readonly controlFrom: number[] = [];
  controlCount = 0;

  constructor(
    readonly tables: Tables,
    o: DecapOptions = {},
  ) {
    this.udpPort = o.udpPort ?? UDP_ENCAP_PORT;
    this.keepTag = o.keepTag ?? false;
    this.deliverToLabel = o.deliverToLabel ?? false;
    this.maxBatch = o.maxBatch ?? 256;
    this.reassembler = o.reassembler ?? new Reassembler();
    this.groups = new SaGroups(this.maxBatch);
    this.results = new Uint8Array(this.maxBatch);
  }

  /**
   * Runs the receive path over bufs[0, count), each holding an input of kind `kinds[i]`
   * (DecapInput). Fills `out` (reset first); every buffer ends up in out.release.
   */
  run(bufs: readonly PacketBuf[], kinds: ArrayLike<number>, count: number, nowMs: number, out: Actions): void {
    if (count > this.maxBatch) throw new RangeError(`DecapPipeline: batch of ${count} exceeds maxBatch ${this.maxBatch}`);
    out.reset(count);
    this.espCount = 0;
    this.controlCount = 0;
    this.lastSpi = -1;
    this.learnedLabel = -1;
    this.owners.reset();
    for (let i = 0; i < count; i++) {
      const buf = bufs[i]!;
      out.releaseBuf(buf);
      const r = this.outer(buf, kinds[i]!, i, nowMs, out);
      if (r !== OK) this.drop(out, i, r);
    }
    this.lastRoute = undefined;
    this.openPending(nowMs, out);
  }

  /** Stage 1–2: leaves buf [start,end) = the ESP packet and queues it; OK, a reason, or VERDICT_PENDING. */
  private outer(buf: PacketBuf, kind: number, i: number, nowMs: number, out: Actions): number {
    let r: number;
    switch (kind) {
      case DecapInput.ethernet: {
        if (this.eth.bind(buf.bytes, buf.start, buf.end - buf.start) !== 0) return Reason.truncated;
        if (this.eth.tagKind === EthTag.qinq) return Reason.not_esp;
        const type = this.eth.etherType;
        if (type !== ETHERTYPE_IPV4 && type !== ETHERTYPE_IPV6) return Reason.not_esp;
        buf.start = this.eth.payloadOffset;
        r = this.ipLayer(buf, nowMs);
        break;
      }
      case DecapInput.ip:
        r = this.ipLayer(buf, nowMs);
        break;
      case DecapInput.udpPayload:
        r = this.udpPayload(buf);
        break;
      case DecapInput.esp:
        r = OK;
        break;
      default:
        return Reason.not_esp;
    }
    if (r === CONTROL) {
      this.controlFrom[this.controlCount++] = i;
      return Reason.non_esp_marker;
    }
    if (r !== OK) return r;
    return this.queueEsp(buf, i, out);
  }

  /** IPv4/IPv6 → (reassembly) → UDP or ESP; leaves buf at the ESP packet. */
  private ipLayer(buf: PacketBuf, nowMs: number): number {
    const b = buf.bytes;
    const len = buf.end - buf.start;
    if (len < 1) return Reason.truncated;
    const version = b[buf.start]! >>> 4;
    let proto: number;
    let payloadOff: number;
    let payloadLen: number;
    let v6 = false;
    if (version === 4) {
      const e = this.ip4.bind(b, buf.start, len);
      if (e === WireError.truncated) return Reason.truncated;
      if (e !== 0) return Reason.not_esp;
      const ip = this.ip4;
      proto = ip.protocol;
      if (ip.isFragment) {
        const res = this.reassembler.add(4, b, ip.srcOffset, ip.dstOffset, ip.identification, proto, ip.fragmentOffsetBytes, ip.moreFragments, b, ip.payloadOffset, ip.payloadLen, nowMs);
        return this.afterFragment(buf, res, ip.srcOffset, ip.dstOffset, false);
      }
      payloadOff = ip.payloadOffset;
      payloadLen = ip.payloadLen;
    } else if (version === 6) {
      const e = this.ip6.bind(b, buf.start, len);
      if (e === WireError.truncated) return Reason.truncated;
      if (e !== 0) return Reason.not_esp;
      const ip = this.ip6;
      v6 = true;
      if (ip.isFragment) {
        const res = this.reassembler.add(6, b, ip.srcOffset, ip.dstOffset, ip.fragmentId, ip.fragmentNextHeader, ip.fragmentOffsetBytes, ip.moreFragments, b, ip.upperOffset, ip.upperLen, nowMs);
        return this.afterFragment(buf, res, ip.srcOffset, ip.dstOffset, true);
      }
      proto = ip.upperProtocol;
      payloadOff = ip.upperOffset;
      payloadLen = ip.upperLen;
    } else {
      return Reason.not_esp;
    }
    return this.transport(buf, proto, payloadOff, payloadLen, v6, buf.start + (v6 ? 8 : 12), buf.start + (v6 ? 24 : 16));
  }

  /** After a fragment: pending, failed, or the whole datagram copied into this buffer. */
  private afterFragment(buf: PacketBuf, res: number, srcOff: number, dstOff: number, v6: boolean): number {
    if (res === REASM_PENDING) return VERDICT_PENDING;
    if (res !== REASM_DONE) return Reason.reassembly_failed;
    const r = this.reassembler;
    const slot = r.doneSlot;
    // Keep the addresses (for the UDP pseudo-header) in front of the payload we copy in.
    const addrLen = v6 ? 16 : 4;
    const addrAt = buf.start;
    const b = buf.bytes;
    if (addrAt !== srcOff) b.copyWithin(addrAt, srcOff, srcOff + addrLen);
    b.copyWithin(addrAt + addrLen, dstOff, dstOff + addrLen);
    const payAt = addrAt + 2 * addrLen;
    const n = r.copyOut(slot, b, payAt);
    const proto = r.doneProto(slot);
    r.release(slot);
    if (n < 0) return Reason.reassembly_failed;
    buf.end = payAt + n;
    return this.transport(buf, proto, payAt, n, v6, addrAt, addrAt + addrLen);
  }

  /** UDP 4500 or ESP; leaves buf at the ESP packet. */
  private transport(buf: PacketBuf, proto: number, off: number, len: number, v6: boolean, srcOff: number, dstOff: number): number {
    if (proto === IP_PROTO_ESP) {
      buf.start = off;
      buf.end = off + len;
      return OK;
    }
    if (proto !== IP_PROTO_UDP) return Reason.not_esp;
    const u = this.udp;
    const e = u.bind(buf.bytes, off, len);
    if (e === WireError.truncated) return Reason.truncated;
    if (e !== 0) return Reason.not_esp;
    if (u.dstPort !== this.udpPort) return Reason.not_esp;
    const c = v6 ? u.checkChecksumV6(buf.bytes, srcOff, buf.bytes, dstOff) : u.checkChecksumV4(buf.bytes, srcOff, buf.bytes, dstOff);
    if (c === WireError.zeroChecksum) return Reason.udp_zero_checksum_v6;
    if (c !== 0) return Reason.not_esp;
    buf.start = u.payloadOffset;
    buf.end = u.payloadOffset + u.payloadLen;
    return this.udpPayload(buf);
  }

  /** RFC 3948 §2.2–2.3: keepalive, non-ESP marker, or ESP. */
  private udpPayload(buf: PacketBuf): number {
    const b = buf.bytes;
    const s = buf.start;
    const len = buf.end - s;
    if (len === 1 && b[s] === NAT_KEEPALIVE_BYTE) return Reason.nat_keepalive;
    if (len >= NON_ESP_MARKER_BYTES && b[s] === 0 && b[s + 1] === 0 && b[s + 2] === 0 && b[s + 3] === 0) return CONTROL;
    return OK;
  }

  /** Stage 2: SPI → route; queues the packet for the batched open. */
  private queueEsp(buf: PacketBuf, i: number, out: Actions): number {
    const b = buf.bytes;
    const s = buf.start;
    if (buf.end - s < ESP_HEADER_BYTES) return Reason.truncated;
    const spi = ((b[s]! << 24) | (b[s + 1]! << 16) | (b[s + 2]! << 8) | b[s + 3]!) >>> 0;
    out.spi[i] = spi;
    const lo = ((b[s + 4]! << 24) | (b[s + 5]! << 16) | (b[s + 6]! << 8) | b[s + 7]!) >>> 0;
    out.seq[i] = lo;
    let route = this.lastRoute;
    if (spi !== this.lastSpi) {
      route = this.tables.inbound(spi);
      this.lastSpi = spi;
      this.lastRoute = route;
    }
    if (route === undefined) return Reason.unknown_spi;
    // With ESN, report the 64-bit number as inferred against the window before this batch.
    if (route.sa.esn) out.seq[i] = route.sa.inferSeqHi(lo) * 4294967296 + lo;
    const k = this.espCount++;
    this.espBuf[k] = buf;
    this.espRoute[k] = route;
    this.espFrom[k] = i;
    return OK;
  }

  /** Stage 3, one AEAD batch per SA, then stages 4–7 in arrival order. */
  private openPending(nowMs: number, out: Actions): void {
    const n = this.espCount;
    if (n === 0) return;
    if (this.results.length < n) this.results = new Uint8Array(n);
    const verdictOf = this.results;
    const groups = this.groups;
    groups.start(n);
    for (let g = groups.next(this.espRoute, this.espBuf, n); g > 0; g = groups.next(this.espRoute, this.espBuf, n)) {
      const route = this.espRoute[groups.idx[0]!]!;
      espOpenBatch(route.sa, groups.bufs, g, this.batch, this.groupResults(g), nowMs);
      for (let x = 0; x < g; x++) verdictOf[groups.idx[x]!] = this.groupRes[x]!;
    }
    for (let k = 0; k < n; k++) {
      const i = this.espFrom[k]!;
      const buf = this.espBuf[k]!;
      const route = this.espRoute[k]!;
      let r = verdictOf[k]!;
      if (r === OK) r = this.inner6(buf, route, i, nowMs, out);
      if (r !== OK) this.drop(out, i, r);
    }
    this.espCount = 0;
  }

  private groupRes = new Uint8Array(64);
  private groupResults(g: number): Uint8Array {
    if (this.groupRes.length < g) this.groupRes = new Uint8Array(g);
    return this.groupRes;
  }

  /** Stages 4–7 for an opened packet whose payload (GRE) is at buf [start,end). */
  private inner6(buf: PacketBuf, route: InboundRoute, i: number, nowMs: number, out: Actions): number {
    const t = this.tables;
    const b = buf.bytes;
    const gre = this.gre;
    const ge = gre.bind(b, buf.start, buf.end - buf.start);
    if (ge === WireError.badChecksum) return Reason.gre_checksum;
    if (ge !== 0) return Reason.gre_malformed;
    if (gre.protocolType !== ETHERTYPE_TEB) return Reason.gre_malformed;
    const key = gre.hasKey ? gre.key : null;
    buf.start = gre.payloadOffset;

    const eth = this.inner;
    if (eth.bind(b, buf.start, buf.end - buf.start) !== 0) return Reason.inner_malformed;
    if (eth.tagKind === EthTag.none) return Reason.inner_untagged;
    if (eth.tagKind !== EthTag.dot1q) return Reason.inner_malformed;
    const vid = eth.vid;
    const label = t.labels.lookup(key, vid);
    if (label === NO_LABEL) return Reason.gre_unknown_key;
    if (route.labelMask[label] !== 1) {
      this.auditDenial(Reason.label_mismatch, nowMs, buf, route, label, -1, key, vid);
      return Reason.label_mismatch;
    }
    const srcOff = eth.srcOffset;
    const dstOff = eth.dstOffset;
    const peer = route.peerId;

    if (this.deliverToLabel) {
      // Replay without domains: an accepted frame goes to its label.
      this.finish(buf, route, label);
      out.deliver(buf, DELIVER_TO_LABEL, label, i);
      return OK;
    }

    // Learning the same source from the same peer again in this run (same time) changes nothing,
    // so it is learned once per run; a refused learn (table full) counts, and is repeated.
    const srcHi = (b[srcOff]! << 8) | b[srcOff + 1]!;
    const srcLo = (b[srcOff + 2]! << 24) | (b[srcOff + 3]! << 16) | (b[srcOff + 4]! << 8) | b[srcOff + 5]!;
    if (label !== this.learnedLabel || peer !== this.learnedPeer || srcHi !== this.learnedHi || srcLo !== this.learnedLo) {
      const learned = t.fdb.learn(label, b, srcOff, FDB_REMOTE, peer, nowMs);
      if (learned === Learn.added || learned === Learn.refreshed || learned === Learn.moved || learned === Learn.static) {
        this.learnedLabel = label;
        this.learnedPeer = peer;
        this.learnedHi = srcHi;
        this.learnedLo = srcLo;
      }
    }
    // A destination MAC owned by a local domain: that domain's label must admit the frame's.
    // (Domains do not change during a run: the owner of the last destination is remembered.)
    const owner = this.owners.ownerOf(t.domains, b, dstOff);
    if (owner >= 0) {
      const toLabel = t.domains.labelOf[owner]!;
      if (toLabel !== label && !t.policy.admits(label, toLabel)) {
        this.auditDenial(Reason.policy_denied, nowMs, buf, route, label, toLabel, key, vid, owner);
        return Reason.policy_denied;
      }
      this.finish(buf, route, label);
      out.deliver(buf, owner, label, i);
      t.traffic.domainOut[owner]!++;
      return OK;
    }
    const kind = t.fdb.lookup(label, b, dstOff, nowMs);
    if (kind === FDB_LOCAL) {
      this.finish(buf, route, label);
      out.deliver(buf, t.fdb.foundId, label, i);
      t.traffic.domainOut[t.fdb.foundId]!++;
      return OK;
    }
    if (kind === FDB_REMOTE) return Reason.no_route; // another peer's guest: we never relay between peers
    const f = t.fdb.flood(label, FDB_REMOTE, peer);
    if (f.domainCount === 0) return Reason.no_route;
    this.finish(buf, route, label);
    // One buffer serves every domain: a TAP write copies into the kernel and leaves it intact.
    for (let k = 0; k < f.domainCount; k++) {
      out.deliver(buf, f.domains[k]!, label, i);
      t.traffic.domainOut[f.domains[k]!]!++;
    }
    return OK;
  }

  /** Strips the tag (unless keepTag) and counts the accepted frame. */
  private finish(buf: PacketBuf, route: InboundRoute, label: number): void {
    const t = this.tables;
    const ti = route.peerId * t.labels.size + label;
    t.traffic.rxPackets[ti]!++;
    t.traffic.rxBytes[ti]! += buf.end - buf.start;
    if (!this.keepTag) {
      const s = stripVlanTag(buf.bytes, buf.start);
      if (s >= 0) buf.start = s;
    }
  }

  private drop(out: Actions, i: number, reason: number): void {
    out.verdict[i] = reason;
    if (reason !== VERDICT_PENDING) this.tables.counters.add(reason);
  }

  private auditDenial(
    reason: number,
    nowMs: number,
    buf: PacketBuf,
    route: InboundRoute,
    from: number,
    to: number,
    key: number | null,
    vid: number,
    domain = -1,
  ): void {
    const a = this.tables.auditor;
    if (a === null) return;
    const ev = this.audit.denial(reason, from, to, domain, buf.bytes, buf.start);
    ev.peer = route.peerId;
    ev.spi = route.sa.spi;
    ev.vlan = vid;
    ev.greKey = key === null ? -1 : key;
    a.record(nowMs, ev);
  }
}

/** Internal result of the UDP stage: a control message behind the non-ESP marker. */
const CONTROL = -2;
