/**
 * Send pipeline (guest → wire), one batch at a time (DESIGN.md "Data flow"):
 *   1. domain: each frame arrived on a domain's port; its label is the domain's label
 *   2. guest checks: a guest-supplied 802.1Q/802.1ad tag → guest_vlan_tag; a source MAC
 *      the domain does not own → spoofed_src_mac
 *   3. forward: learn the source; a destination owned by a local domain of another label
 *      is delivered only if policy admits it (else policy_denied, audited); otherwise look
 *      the destination up in the label's table: a local domain, a peer, or flood (unknown
 *      unicast, broadcast, multicast) to the label's other local domains and every peer
 *      that carries the label
 *   4. encapsulate per peer: insert the label's 802.1Q tag, prepend GRE (0x6558, key),
 *      then ESP-seal in place with the peer's outbound SA for the label, batched per SA
 *   5. actions: send(peer, buf), deliver(domain, buf), drop(reason)
 * A unicast frame is never copied: headers go into its headroom and the trailer into its
 * tailroom. A flooded frame is copied once per target beyond the first (each peer's copy is
 * sealed under a different key); a copy that finds the pool empty is a pool_exhausted drop.
 *
 * `runTrunk` is the same path for frames whose label is already known (replay's encap
 * direction: a trunk port), without domains or forwarding: stages 4–5 to the peer whose
 * outbound SA carries the label.
 */
import type { PacketBuf } from '../buf/packet-buf.js';
import type { PacketPool } from '../buf/pool.js';
import { AeadBatch } from '../crypto/aead.js';
import { ETHERTYPE_TEB, ETH_HEADER_BYTES, GRE_BASE_BYTES, GRE_KEYED_BYTES, IP_PROTO_GRE } from '../wire/constants.js';
import { EthernetFrame, EthTag, insertVlanTag } from '../wire/ethernet.js';
import { emitGreKeyed } from '../wire/gre.js';
import { Actions } from './actions.js';
import { AuditEvent } from './audit.js';
import { SaGroups } from './sa-groups.js';
import { espSealBatch } from './esp.js';
import { FDB_LOCAL, FDB_REMOTE, Learn } from './fdb.js';
import { MacOwnerCache } from './labels.js';
import { OK, Reason } from './reasons.js';
import type { OutboundSa } from './sa.js';
import type { Tables } from './tables.js';

/** Default largest batch the pipeline seals with one AEAD call. */
export const ENCAP_AEAD_BATCH = 64;

export class EncapPipeline {
  private readonly eth = new EthernetFrame();
  private readonly audit = new AuditEvent();
  private readonly batch: AeadBatch;
  // Frames waiting for their ESP seal, in arrival order.
  private readonly pendBuf: PacketBuf[] = [];
  private readonly pendSa: OutboundSa[] = [];
  private readonly pendPeer: number[] = [];
  private readonly pendFrom: number[] = [];
  private readonly pendLabel: number[] = [];
  private pendCount = 0;
  private readonly groups: SaGroups<OutboundSa>;
  private results: Uint8Array;
  /** Inputs that produced at least one send or delivery. */
  private readonly sent: Uint8Array;
  /** First reason a flooded input lost a target for (already counted), 0 if none. */
  private readonly firstFail: Int32Array;
  // Per-run memos, reset in begin(): a TAP batch is mostly one guest talking to one host.
  /** Domain (-1: none) and source MAC (high 16, low 32 bits) last learned in this run. */
  private learnedDomain = -1;
  private learnedHi = 0;
  private learnedLo = 0;
  /** Owner of the last destination MAC of this run. */
  private readonly owners = new MacOwnerCache();

  constructor(
    readonly tables: Tables,
    readonly pool: PacketPool,
    readonly maxBatch = 256,
  ) {
    this.batch = new AeadBatch(ENCAP_AEAD_BATCH);
    this.results = new Uint8Array(maxBatch * 4);
    this.groups = new SaGroups(maxBatch * 4);
    this.sent = new Uint8Array(maxBatch);
    this.firstFail = new Int32Array(maxBatch);
  }

  /**
   * Runs the send path over frames[0, count): frames[i] arrived on domain domainIds[i].
   * Fills `out` (reset first); every buffer ends up in out.release.
   */
  run(frames: readonly PacketBuf[], domainIds: ArrayLike<number>, count: number, nowMs: number, out: Actions): void {
    this.begin(count, out);
    const t = this.tables;
    for (let i = 0; i < count; i++) {
      const buf = frames[i]!;
      out.releaseBuf(buf);
      const d = domainIds[i]!;
      const r = this.forward(buf, d, i, nowMs, out);
      if (r !== OK) this.drop(out, i, r);
      else t.traffic.domainIn[d]!++;
    }
    this.sealPending(nowMs, out);
  }

  /**
   * Sends frames[0, count) whose labels are known (labelIds[i]): stage 4 only, to the one peer
   * whose outbound SA carries the label (`peerOfLabel[label]`, -1 if none → no_route).
   */
  runTrunk(
    frames: readonly PacketBuf[],
    labelIds: ArrayLike<number>,
    peerOfLabel: ArrayLike<number>,
    count: number,
    nowMs: number,
    out: Actions,
  ): void {
    this.begin(count, out);
    for (let i = 0; i < count; i++) {
      const buf = frames[i]!;
      out.releaseBuf(buf);
      const label = labelIds[i]!;
      const peer = label >= 0 ? peerOfLabel[label]! : -1;
      if (peer < 0) {
        this.drop(out, i, Reason.no_route);
        continue;
      }
      if (this.eth.bind(buf.bytes, buf.start, buf.end - buf.start) !== 0) {
        this.drop(out, i, Reason.inner_malformed);
        continue;
      }
      const r = this.encapsulate(buf, peer, label, this.eth.pcp, this.eth.tagKind, i);
      if (r !== OK) this.drop(out, i, r);
    }
    this.sealPending(nowMs, out);
  }

  private begin(count: number, out: Actions): void {
    if (count > this.maxBatch) throw new RangeError(`EncapPipeline: batch of ${count} exceeds maxBatch ${this.maxBatch}`);
    out.reset(count);
    this.pendCount = 0;
    this.sent.fill(0, 0, count);
    this.firstFail.fill(0, 0, count);
    this.learnedDomain = -1;
    this.owners.reset();
  }

  /** Stages 2–3 for one frame; queues sends and records deliveries. OK or a drop reason. */
  private forward(buf: PacketBuf, d: number, i: number, nowMs: number, out: Actions): number {
    const t = this.tables;
    const b = buf.bytes;
    const eth = this.eth;
    if (d < 0 || d >= t.domains.size) return Reason.no_route;
    if (eth.bind(b, buf.start, buf.end - buf.start) !== 0) return Reason.inner_malformed;
    if (eth.tagKind !== EthTag.none) return Reason.guest_vlan_tag;
    const srcOff = eth.srcOffset;
    const dstOff = eth.dstOffset;
    if (!t.domains.ownsMac(d, b, srcOff)) {
      this.auditDenial(Reason.spoofed_src_mac, nowMs, buf, d, -1, -1);
      return Reason.spoofed_src_mac;
    }
    const label = t.domains.labelOf[d]!;
    // Learning the same source of the same domain again in this run (same time) changes nothing,
    // so it is learned once per run; a refused learn (table full) counts, and is repeated.
    const srcHi = (b[srcOff]! << 8) | b[srcOff + 1]!;
    const srcLo = (b[srcOff + 2]! << 24) | (b[srcOff + 3]! << 16) | (b[srcOff + 4]! << 8) | b[srcOff + 5]!;
    if (d !== this.learnedDomain || srcHi !== this.learnedHi || srcLo !== this.learnedLo) {
      const learned = t.fdb.learn(label, b, srcOff, FDB_LOCAL, d, nowMs);
      if (learned === Learn.added || learned === Learn.refreshed || learned === Learn.moved || learned === Learn.static) {
        this.learnedDomain = d;
        this.learnedHi = srcHi;
        this.learnedLo = srcLo;
      }
    }

    // A destination MAC owned by a local domain of another label: only an allow rule lets it through.
    // (Domains do not change during a run: the owner of the last destination is remembered.)
    const owner = this.owners.ownerOf(t.domains, b, dstOff);
    if (owner >= 0 && t.domains.labelOf[owner] !== label) {
      const toLabel = t.domains.labelOf[owner]!;
      if (!t.policy.admits(label, toLabel)) {
        this.auditDenial(Reason.policy_denied, nowMs, buf, d, label, toLabel);
        return Reason.policy_denied;
      }
      this.deliverLocal(buf, owner, i, out);
      return OK;
    }

    const kind = t.fdb.lookup(label, b, dstOff, nowMs);
    if (kind === FDB_LOCAL) {
      const to = t.fdb.foundId;
      if (to === d) return Reason.no_route; // the guest's own MAC: nothing to do on the wire
      this.deliverLocal(buf, to, i, out);
      return OK;
    }
    if (kind === FDB_REMOTE) return this.encapsulate(buf, t.fdb.foundId, label, 0, EthTag.none, i);

    // Unknown unicast, broadcast, multicast: flood within the label. Targets that fail are
    // counted one by one; the input's verdict is a drop only if no target at all got the frame.
    const f = t.fdb.flood(label, FDB_LOCAL, d);
    if (f.domainCount + f.peerCount === 0) return Reason.no_route;
    // Local copies first: the original stays plain until the last peer's seal, or is itself
    // the first local delivery when no peer carries the label.
    for (let k = 0; k < f.domainCount; k++) {
      const copy = k === 0 && f.peerCount === 0 ? buf : this.copyOf(buf, out);
      if (copy === null) this.fail(i, Reason.pool_exhausted);
      else this.deliverLocal(copy, f.domains[k]!, i, out);
    }
    for (let k = 0; k < f.peerCount; k++) {
      const copy = k === f.peerCount - 1 ? buf : this.copyOf(buf, out);
      if (copy === null) {
        this.fail(i, Reason.pool_exhausted);
        continue;
      }
      const r = this.encapsulate(copy, f.peers[k]!, label, 0, EthTag.none, i);
      if (r !== OK) this.fail(i, r);
    }
    return OK;
  }

  /** Counts a lost flood target of input i and remembers the first reason. */
  private fail(i: number, reason: number): void {
    this.tables.counters.add(reason);
    if (this.firstFail[i] === 0) this.firstFail[i] = reason;
  }

  private deliverLocal(buf: PacketBuf, domain: number, i: number, out: Actions): void {
    out.deliver(buf, domain, this.tables.domains.labelOf[domain]!, i);
    this.tables.traffic.domainOut[domain]!++;
    this.sent[i] = 1;
  }

  /** A pool copy of buf's live bytes at the same offset, listed for release; null if the pool is empty. */
  private copyOf(buf: PacketBuf, out: Actions): PacketBuf | null {
    const c = this.pool.get();
    if (c === null) return null;
    c.bytes.set(buf.bytes.subarray(buf.start, buf.end), buf.start);
    c.start = buf.start;
    c.end = buf.end;
    out.releaseBuf(c);
    return c;
  }

  /**
   * Stage 4 up to the seal: tag, GRE; queues the ESP seal. OK or a drop reason. `tagKind` is what
   * the caller's bind of this frame found (guest frames are untagged by then; a flood copy is
   * the same bytes), so the frame is not parsed again.
   */
  private encapsulate(buf: PacketBuf, peer: number, label: number, pcp: number, tagKind: EthTag, i: number): number {
    const t = this.tables;
    const sa = t.outbound(peer, label);
    if (sa === null) return Reason.no_route;
    const lab = t.labels.labels[label]!;
    if (buf.end - buf.start < ETH_HEADER_BYTES) return Reason.inner_malformed;
    // The frame arrives untagged (guest) or with its trunk tag (replay): (re)write exactly one tag.
    let start = buf.start;
    if (tagKind !== EthTag.none) {
      if (tagKind !== EthTag.dot1q) return Reason.guest_vlan_tag;
      // Rewrite the VID in place (PCP/DEI kept).
      const tciOff = start + 14;
      const tci = (buf.bytes[tciOff]! << 8) | buf.bytes[tciOff + 1]!;
      const nt = (tci & 0xf000) | lab.vlan;
      buf.bytes[tciOff] = nt >>> 8;
      buf.bytes[tciOff + 1] = nt & 0xff;
    } else {
      start = insertVlanTag(buf.bytes, start, lab.vlan, pcp);
      if (start < 0) return Reason.buffer_no_room;
      buf.start = start;
    }
    // GRE: K set with the label's key, or the 4-octet base header for a keyless label.
    if (lab.greKey === null) {
      if (buf.prepend(GRE_BASE_BYTES) < 0) return Reason.buffer_no_room;
      const b = buf.bytes;
      const s = buf.start;
      b[s] = 0;
      b[s + 1] = 0;
      b[s + 2] = ETHERTYPE_TEB >>> 8;
      b[s + 3] = ETHERTYPE_TEB & 0xff;
    } else {
      if (buf.prepend(GRE_KEYED_BYTES) < 0) return Reason.buffer_no_room;
      emitGreKeyed(buf.bytes, buf.start, ETHERTYPE_TEB, lab.greKey);
    }
    const k = this.pendCount++;
    this.pendBuf[k] = buf;
    this.pendSa[k] = sa;
    this.pendPeer[k] = peer;
    this.pendFrom[k] = i;
    this.pendLabel[k] = label;
    return OK;
  }

  /** Stage 4's seal, one AEAD batch per SA; then the send actions and the final verdicts. */
  private sealPending(nowMs: number, out: Actions): void {
    const n = this.pendCount;
    const t = this.tables;
    if (this.results.length < n) this.results = new Uint8Array(n * 2);
    const groups = this.groups;
    groups.start(n);
    for (let g = groups.next(this.pendSa, this.pendBuf, n); g > 0; g = groups.next(this.pendSa, this.pendBuf, n)) {
      const sa = this.pendSa[groups.idx[0]!]!;
      espSealBatch(sa, groups.bufs, g, this.batch, this.results, nowMs, IP_PROTO_GRE);
      for (let x = 0; x < g; x++) {
        const j = groups.idx[x]!;
        const from = this.pendFrom[j]!;
        const r = this.results[x]!;
        if (r !== OK) {
          this.fail(from, r);
          continue;
        }
        const buf = this.pendBuf[j]!;
        const peer = this.pendPeer[j]!;
        out.send(buf, peer, from);
        this.sent[from] = 1;
        out.spi[from] = sa.spi;
        // The 64-bit sequence number is the IV (RFC 4106 §3.1), read in place: not through a
        // helper, whose return value V8 would box into a heap number when it is 2^31 or more.
        const b = buf.bytes;
        const iv = buf.start + 8;
        out.seq[from] =
          (((b[iv]! << 24) | (b[iv + 1]! << 16) | (b[iv + 2]! << 8) | b[iv + 3]!) >>> 0) * 4294967296 +
          (((b[iv + 4]! << 24) | (b[iv + 5]! << 16) | (b[iv + 6]! << 8) | b[iv + 7]!) >>> 0);
        const ti = peer * t.labels.size + this.pendLabel[j]!;
        t.traffic.txPackets[ti]!++;
        t.traffic.txBytes[ti]! += buf.end - buf.start;
      }
    }
    this.pendCount = 0;
    // An input that reached no target at all takes the reason of its first lost target.
    for (let i = 0; i < out.inputCount; i++) {
      if (out.verdict[i] === OK && this.sent[i] === 0 && this.firstFail[i] !== 0) out.verdict[i] = this.firstFail[i]!;
    }
  }

  /** Counts a drop of input i and records its verdict. */
  private drop(out: Actions, i: number, reason: number): void {
    out.verdict[i] = reason;
    this.tables.counters.add(reason);
  }

  private auditDenial(reason: number, nowMs: number, buf: PacketBuf, domain: number, from: number, to: number): void {
    const a = this.tables.auditor;
    if (a === null) return;
    const labelFrom = from >= 0 ? from : this.tables.domains.labelOf[domain] ?? -1;
    const ev = this.audit.denial(reason, labelFrom, to, domain, buf.bytes, buf.start);
    a.record(nowMs, ev);
  }
}
