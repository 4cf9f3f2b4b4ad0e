/**
 * The L2 forwarding table of each label (DESIGN.md "Data flow" step 3):
 * source MACs are learned against a local domain or a remote peer, destination
 * MACs are looked up, and everything not known (unknown unicast, broadcast,
 * multicast) is flooded within the label — never into another label.
 *
 * Stages as the pipelines use it:
 *   1. send path:   learn(label, src, FDB_LOCAL, domain)  → lookup(label, dst) → hit or flood(label, FDB_LOCAL, domain)
 *   2. receive path: learn(label, src, FDB_REMOTE, peer)  → lookup(label, dst) → hit or flood(label, FDB_REMOTE, peer)
 *   3. control:     setTopology on config change, addStatic/removeStatic, sweep(now) periodically.
 *
 * Each label has its own open-addressing table (linear probing, backward-shift
 * deletion, no tombstones) in preallocated typed arrays, at most half full: a
 * label holds at most `maxMacsPerLabel` entries; when it is full new MACs are
 * not learned (counted) and frames to them flood, the table never grows.
 * Static entries never age and learning never overwrites them. Entries age out
 * `ageMs` after they were last learned: lazily when a lookup or learn meets
 * them, and in bulk in `sweep(nowMs)`; there is no timer. learn, lookup and
 * flood never throw and never allocate.
 */
import { MAC_BYTES } from '../wire/constants.js';

/** Lookup results (also the endpoint kinds of learn/flood/addStatic). */
export const FDB_UNKNOWN = 0;
/** Destination is a local domain (id in `foundId`). */
export const FDB_LOCAL = 1;
/** Destination is behind a remote peer (id in `foundId`). */
export const FDB_REMOTE = 2;
/** Destination is a group (broadcast/multicast) address: flood. */
export const FDB_GROUP = 3;

/** What `learn` did. */
export const Learn = Object.freeze({
  /** Not learned: bad label/offset, group source MAC, or an endpoint that does not carry the label. */
  ignored: 0,
  /** New entry (or an aged-out entry reused). */
  added: 1,
  /** Same MAC at the same endpoint: age reset. */
  refreshed: 2,
  /** Same MAC at another endpoint: entry moved (counted by kind of move). */
  moved: 3,
  /** The label's table is full: not learned (counted). */
  full: 4,
  /** A static entry exists for the MAC: left as it is. */
  static: 5,
});

/** Default aging time: 300 s, as IEEE 802.1D's recommended ageing time and the Linux bridge. */
export const DEFAULT_FDB_AGE_MS = 300_000;
/** Default bound on MACs per label. */
export const DEFAULT_FDB_MAX_MACS_PER_LABEL = 4096;
/** Most slots over all labels (2 per MAC, about 22 octets each): 2^24 ≈ 370 MB. */
export const FDB_MAX_SLOTS = 1 << 24;
/** Largest domain or peer id the table accepts. */
export const FDB_MAX_ENDPOINT_ID = 0xffff;

export type FdbConfigErrorCode = 'fdb_option_invalid' | 'fdb_topology_invalid' | 'fdb_static_invalid' | 'fdb_label_full';

/** A configuration error of the forwarding table: `path` names the option or entry. */
export class FdbConfigError extends Error {
  override readonly name = 'FdbConfigError';
  constructor(
    readonly code: FdbConfigErrorCode,
    readonly path: string,
    readonly value: unknown,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

export interface FdbOptions {
  /** Number of labels (label ids are 0..labelCount-1). */
  labelCount: number;
  /** Entries (learned + static) per label at most; default 4096. */
  maxMacsPerLabel?: number;
  /** A learned entry expires this long after it was last learned; default 300 000 ms. */
  ageMs?: number;
  /** Seed of the MAC hash, so guests cannot aim at one probe chain; default fixed. */
  hashSeed?: number;
}

/** Which local domains have which label, and which labels each peer carries. */
export interface FdbTopology {
  domains: readonly { readonly id: number; readonly labelId: number }[];
  peers: readonly { readonly id: number; readonly labelIds: readonly number[] }[];
}

/** Where a flooded frame goes: `domains[0..domainCount)` and `peers[0..peerCount)`. Reused by every `flood` call. */
export class FloodTargets {
  domainCount = 0;
  peerCount = 0;
  constructor(
    readonly domains: Int32Array,
    readonly peers: Int32Array,
  ) {}
}

/** Counters for status and metrics. */
export class FdbCounters {
  added = 0;
  movesLocalToRemote = 0;
  movesRemoteToLocal = 0;
  movesRemoteToRemote = 0;
  movesLocalToLocal = 0;
  /** New MACs not learned because the label's table was full. */
  refusedFull = 0;
  /** Learn attempts for an endpoint that does not carry the label. */
  refusedForeign = 0;
  /** Learned entries removed by aging (lazily or by sweep). */
  expired = 0;

  /** Sum of the four move counters. */
  get moves(): number {
    return this.movesLocalToRemote + this.movesRemoteToLocal + this.movesRemoteToRemote + this.movesLocalToLocal;
  }
}

/** One entry as shown by `entries` (control path). */
export interface FdbEntry {
  mac: number;
  kind: typeof FDB_LOCAL | typeof FDB_REMOTE;
  id: number;
  static: boolean;
  /** Time since last learned (0 for static entries). */
  ageMs: number;
}

const NONE = -1;

function isIndex(v: unknown, limit: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < limit;
}

/** L2 forwarding tables of all labels, with per-label flood sets. */
export class Fdb {
  readonly labelCount: number;
  readonly maxMacsPerLabel: number;
  readonly ageMs: number;
  readonly counters = new FdbCounters();
  /** MACs refused because the table was full, per label. */
  readonly refusedFullByLabel: Float64Array;
  /** Endpoint id of the last `lookup` hit (NONE = -1 otherwise). */
  foundId = NONE;

  private readonly capBits: number;
  private readonly mask: number;
  private readonly seed: number;
  /** Slot arrays: label L owns [L << capBits, (L + 1) << capBits). kind 0 = empty. */
  private readonly slotKind: Uint8Array;
  private readonly slotStatic: Uint8Array;
  private readonly slotHi: Int32Array;
  private readonly slotLo: Int32Array;
  private readonly slotId: Int32Array;
  private readonly slotSeenMs: Float64Array;
  private readonly count: Int32Array;

  /** Label of each domain id, NONE if unknown. */
  private domainLabel = new Int32Array(0);
  /** peerCarries[peer * labelCount + label] = 1 if the peer carries the label. */
  private peerCarries = new Uint8Array(0);
  /** One more than the largest peer id. */
  private peerLimit = 0;
  /** Flood sets: label L's domains are floodDomains[domainStart[L]..domainStart[L+1]). */
  private floodDomains = new Int32Array(0);
  private domainStart: Int32Array;
  private floodPeers = new Int32Array(0);
  private peerStart: Int32Array;
  private floodOut = new FloodTargets(new Int32Array(0), new Int32Array(0));

  /** Allocates every label's table up front (about 22 octets × 2 × maxMacsPerLabel per label); throws FdbConfigError. */
  constructor(opts: FdbOptions, topology?: FdbTopology) {
    const { labelCount, maxMacsPerLabel = DEFAULT_FDB_MAX_MACS_PER_LABEL, ageMs = DEFAULT_FDB_AGE_MS, hashSeed = 0x2545f491 } = opts;
    if (!isIndex(labelCount, 4097)) throw new FdbConfigError('fdb_option_invalid', 'labelCount', labelCount, `${String(labelCount)} is not an integer in 0..4096`);
    if (!isIndex(maxMacsPerLabel, (1 << 20) + 1) || maxMacsPerLabel < 1) {
      throw new FdbConfigError('fdb_option_invalid', 'maxMacsPerLabel', maxMacsPerLabel, `${String(maxMacsPerLabel)} is not an integer in 1..1048576`);
    }
    if (typeof ageMs !== 'number' || !(ageMs > 0)) throw new FdbConfigError('fdb_option_invalid', 'ageMs', ageMs, `${String(ageMs)} is not a positive number of milliseconds`);
    if (!Number.isInteger(hashSeed)) throw new FdbConfigError('fdb_option_invalid', 'hashSeed', hashSeed, `${String(hashSeed)} is not an integer`);
    this.labelCount = labelCount;
    this.maxMacsPerLabel = maxMacsPerLabel;
    this.ageMs = ageMs;
    this.seed = hashSeed | 0;
    let bits = 1;
    while (1 << bits < 2 * maxMacsPerLabel) bits++;
    if (labelCount * 2 ** bits > FDB_MAX_SLOTS) {
      throw new FdbConfigError(
        'fdb_option_invalid',
        'maxMacsPerLabel',
        maxMacsPerLabel,
        `${maxMacsPerLabel} MACs per label for ${labelCount} labels needs ${labelCount * 2 ** bits} slots; at most ${FDB_MAX_SLOTS} (lower maxMacsPerLabel)`,
      );
    }
    this.capBits = bits;
    this.mask = (1 << bits) - 1;
    const slots = labelCount << bits;
    this.slotKind = new Uint8Array(slots);
    this.slotStatic = new Uint8Array(slots);
    this.slotHi = new Int32Array(slots);
    this.slotLo = new Int32Array(slots);
    this.slotId = new Int32Array(slots);
    this.slotSeenMs = new Float64Array(slots);
    this.count = new Int32Array(labelCount);
    this.refusedFullByLabel = new Float64Array(labelCount);
    this.domainStart = new Int32Array(labelCount + 1);
    this.peerStart = new Int32Array(labelCount + 1);
    if (topology) this.setTopology(topology);
  }

  /**
   * Installs which domains and peers carry which labels: rebuilds the flood
   * sets and removes every entry (learned or static) whose endpoint no longer
   * carries the entry's label. Returns the number of entries removed.
   */
  setTopology(topology: FdbTopology): number {
    const L = this.labelCount;
    const { domains, peers } = topology;
    if (!Array.isArray(domains)) throw new FdbConfigError('fdb_topology_invalid', 'domains', domains, 'is not a list');
    if (!Array.isArray(peers)) throw new FdbConfigError('fdb_topology_invalid', 'peers', peers, 'is not a list');
    let maxDomain = -1;
    const seenDomain = new Set<number>();
    for (let i = 0; i < domains.length; i++) {
      const d = domains[i] as { id?: unknown; labelId?: unknown } | undefined;
      const id = d?.id;
      if (!isIndex(id, FDB_MAX_ENDPOINT_ID + 1)) throw new FdbConfigError('fdb_topology_invalid', `domains[${i}].id`, id, `${String(id)} is not an integer in 0..${FDB_MAX_ENDPOINT_ID}`);
      if (seenDomain.has(id)) throw new FdbConfigError('fdb_topology_invalid', `domains[${i}].id`, id, `${id} appears twice`);
      if (!isIndex(d?.labelId, L)) throw new FdbConfigError('fdb_topology_invalid', `domains[${i}].labelId`, d?.labelId, `${String(d?.labelId)} is not a label id in 0..${L - 1}`);
      seenDomain.add(id);
      if (id > maxDomain) maxDomain = id;
    }
    let maxPeer = -1;
    const seenPeer = new Set<number>();
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i] as { id?: unknown; labelIds?: unknown } | undefined;
      const id = p?.id;
      if (!isIndex(id, FDB_MAX_ENDPOINT_ID + 1)) throw new FdbConfigError('fdb_topology_invalid', `peers[${i}].id`, id, `${String(id)} is not an integer in 0..${FDB_MAX_ENDPOINT_ID}`);
      if (seenPeer.has(id)) throw new FdbConfigError('fdb_topology_invalid', `peers[${i}].id`, id, `${id} appears twice`);
      const labelIds: unknown = p?.labelIds;
      if (!Array.isArray(labelIds)) throw new FdbConfigError('fdb_topology_invalid', `peers[${i}].labelIds`, labelIds, 'is not a list of label ids');
      for (let j = 0; j < labelIds.length; j++) {
        const l: unknown = labelIds[j];
        if (!isIndex(l, L)) throw new FdbConfigError('fdb_topology_invalid', `peers[${i}].labelIds[${j}]`, l, `${String(l)} is not a label id in 0..${L - 1}`);
      }
      seenPeer.add(id);
      if (id > maxPeer) maxPeer = id;
    }

    const domainLabel = new Int32Array(maxDomain + 1).fill(NONE);
    for (const d of domains) domainLabel[d.id] = d.labelId;
    const peerCarries = new Uint8Array((maxPeer + 1) * L);
    for (const p of peers) for (const l of p.labelIds) peerCarries[p.id * L + l] = 1;

    const byLabelDomains: number[][] = Array.from({ length: L }, () => []);
    for (const d of domains) byLabelDomains[d.labelId]!.push(d.id);
    const byLabelPeers: number[][] = Array.from({ length: L }, () => []);
    for (const p of peers) for (const l of new Set<number>(p.labelIds)) byLabelPeers[l]!.push(p.id);
    const domainStart = new Int32Array(L + 1);
    const peerStart = new Int32Array(L + 1);
    let maxD = 0;
    let maxP = 0;
    for (let l = 0; l < L; l++) {
      domainStart[l + 1] = domainStart[l]! + byLabelDomains[l]!.length;
      peerStart[l + 1] = peerStart[l]! + byLabelPeers[l]!.length;
      maxD = Math.max(maxD, byLabelDomains[l]!.length);
      maxP = Math.max(maxP, byLabelPeers[l]!.length);
    }
    this.floodDomains = Int32Array.from(byLabelDomains.flat());
    this.floodPeers = Int32Array.from(byLabelPeers.flat());
    this.domainStart = domainStart;
    this.peerStart = peerStart;
    this.domainLabel = domainLabel;
    this.peerCarries = peerCarries;
    this.peerLimit = maxPeer + 1;
    this.floodOut = new FloodTargets(new Int32Array(maxD), new Int32Array(maxP));

    let removed = 0;
    for (let label = 0; label < L; label++) {
      const base = label << this.capBits;
      for (let i = 0; i <= this.mask; i++) {
        const s = base + i;
        if (this.slotKind[s] !== 0 && !this.carries(label, this.slotKind[s]!, this.slotId[s]!)) {
          this.removeAt(label, i);
          removed++;
          i--; // the slot may now hold a shifted entry: look at it again
        }
      }
    }
    return removed;
  }

  /**
   * Learns the source MAC at `bytes[macOffset..+6]` in `labelId`'s table as
   * reachable at endpoint (`kind` FDB_LOCAL domain | FDB_REMOTE peer, `id`).
   * Returns a `Learn` code; never throws or allocates.
   */
  learn(labelId: number, bytes: Uint8Array, macOffset: number, kind: number, id: number, nowMs: number): number {
    if (!(labelId >= 0 && labelId < this.labelCount) || (labelId | 0) !== labelId) return Learn.ignored;
    if (!(macOffset >= 0 && macOffset + MAC_BYTES <= bytes.length)) return Learn.ignored;
    if ((bytes[macOffset]! & 1) !== 0) return Learn.ignored; // group address as a source: never learned
    if (!this.carries(labelId, kind, id)) {
      this.counters.refusedForeign++;
      return Learn.ignored;
    }
    const hi = (bytes[macOffset]! << 8) | bytes[macOffset + 1]!;
    const lo = (bytes[macOffset + 2]! << 24) | (bytes[macOffset + 3]! << 16) | (bytes[macOffset + 4]! << 8) | bytes[macOffset + 5]!;
    const base = labelId << this.capBits;
    let i = this.home(hi, lo);
    for (;;) {
      const s = base + i;
      const k = this.slotKind[s]!;
      if (k === 0) break;
      if (this.slotLo[s] === lo && this.slotHi[s] === hi) {
        if (this.slotStatic[s] === 1) return Learn.static;
        if (nowMs - this.slotSeenMs[s]! >= this.ageMs) {
          this.counters.expired++;
          this.counters.added++;
        } else if (k === kind && this.slotId[s] === id) {
          this.slotSeenMs[s] = nowMs;
          return Learn.refreshed;
        } else {
          this.countMove(k, kind);
          this.slotKind[s] = kind;
          this.slotId[s] = id;
          this.slotSeenMs[s] = nowMs;
          return Learn.moved;
        }
        this.slotKind[s] = kind;
        this.slotId[s] = id;
        this.slotSeenMs[s] = nowMs;
        return Learn.added;
      }
      i = (i + 1) & this.mask;
    }
    if (this.count[labelId]! >= this.maxMacsPerLabel) {
      this.counters.refusedFull++;
      this.refusedFullByLabel[labelId]!++;
      return Learn.full;
    }
    const s = base + i;
    this.slotKind[s] = kind;
    this.slotStatic[s] = 0;
    this.slotHi[s] = hi;
    this.slotLo[s] = lo;
    this.slotId[s] = id;
    this.slotSeenMs[s] = nowMs;
    this.count[labelId]!++;
    this.counters.added++;
    return Learn.added;
  }

  /**
   * Looks up the destination MAC at `bytes[macOffset..+6]` in `labelId`'s table:
   * FDB_LOCAL / FDB_REMOTE with the endpoint id in `foundId`, FDB_GROUP for a
   * group address, FDB_UNKNOWN otherwise (both flood). An aged-out entry is
   * removed and reported unknown. Never throws or allocates.
   */
  lookup(labelId: number, bytes: Uint8Array, macOffset: number, nowMs: number): number {
    this.foundId = NONE;
    if (!(labelId >= 0 && labelId < this.labelCount) || (labelId | 0) !== labelId) return FDB_UNKNOWN;
    if (!(macOffset >= 0 && macOffset + MAC_BYTES <= bytes.length)) return FDB_UNKNOWN;
    if ((bytes[macOffset]! & 1) !== 0) return FDB_GROUP;
    const hi = (bytes[macOffset]! << 8) | bytes[macOffset + 1]!;
    const lo = (bytes[macOffset + 2]! << 24) | (bytes[macOffset + 3]! << 16) | (bytes[macOffset + 4]! << 8) | bytes[macOffset + 5]!;
    const i = this.find(labelId, hi, lo);
    if (i < 0) return FDB_UNKNOWN;
    const s = (labelId << this.capBits) + i;
    if (this.slotStatic[s] === 0 && nowMs - this.slotSeenMs[s]! >= this.ageMs) {
      this.removeAt(labelId, i);
      this.counters.expired++;
      return FDB_UNKNOWN;
    }
    this.foundId = this.slotId[s]!;
    return this.slotKind[s]!;
  }

  /**
   * The flood set of `labelId` for a frame from (`srcKind`, `srcId`): the
   * label's local domains except the source and, for a frame from a local
   * domain, every peer that carries the label. A frame from a peer is not
   * flooded back to peers (split horizon: every host floods to all peers
   * itself). Returns a FloodTargets reused by the next call; never allocates.
   */
  flood(labelId: number, srcKind: number, srcId: number): FloodTargets {
    const out = this.floodOut;
    out.domainCount = 0;
    out.peerCount = 0;
    if (!(labelId >= 0 && labelId < this.labelCount) || (labelId | 0) !== labelId) return out;
    const skip = srcKind === FDB_LOCAL ? srcId : NONE;
    for (let k = this.domainStart[labelId]!, end = this.domainStart[labelId + 1]!; k < end; k++) {
      const d = this.floodDomains[k]!;
      if (d !== skip) out.domains[out.domainCount++] = d;
    }
    if (srcKind === FDB_LOCAL) {
      for (let k = this.peerStart[labelId]!, end = this.peerStart[labelId + 1]!; k < end; k++) out.peers[out.peerCount++] = this.floodPeers[k]!;
    }
    return out;
  }

  /** True if endpoint (kind, id) carries `labelId`: a domain of that label, or a peer configured with it. */
  carries(labelId: number, kind: number, id: number): boolean {
    if (kind === FDB_LOCAL) return id >= 0 && id < this.domainLabel.length && this.domainLabel[id] === labelId;
    if (kind === FDB_REMOTE) return id >= 0 && id < this.peerLimit && (id | 0) === id && this.peerCarries[id * this.labelCount + labelId] === 1;
    return false;
  }

  /**
   * Installs a static entry (never aged, never replaced by learning) for the
   * 48-bit `mac` in `labelId`, replacing any learned entry; throws
   * FdbConfigError if the endpoint does not carry the label or the table is full.
   */
  addStatic(labelId: number, mac: number, kind: number, id: number): void {
    const where = `static[label ${labelId}, mac ${formatMac(mac)}]`;
    if (!isIndex(labelId, this.labelCount)) throw new FdbConfigError('fdb_static_invalid', where, labelId, `label id ${String(labelId)} is not in 0..${this.labelCount - 1}`);
    if (!isMac(mac)) throw new FdbConfigError('fdb_static_invalid', where, mac, `${String(mac)} is not a 48-bit MAC address`);
    if (Math.floor(mac / 0x100_0000_0000) & 1) throw new FdbConfigError('fdb_static_invalid', where, mac, 'is a group address; static entries are unicast');
    if (kind !== FDB_LOCAL && kind !== FDB_REMOTE) throw new FdbConfigError('fdb_static_invalid', where, kind, `kind ${String(kind)} is neither FDB_LOCAL nor FDB_REMOTE`);
    if (!this.carries(labelId, kind, id)) {
      throw new FdbConfigError('fdb_static_invalid', where, id, `${kind === FDB_LOCAL ? 'domain' : 'peer'} ${String(id)} does not carry label ${labelId}`);
    }
    const hi = Math.floor(mac / 0x1_0000_0000);
    const lo = mac | 0;
    const base = labelId << this.capBits;
    let i = this.find(labelId, hi, lo);
    if (i < 0) {
      if (this.count[labelId]! >= this.maxMacsPerLabel) {
        throw new FdbConfigError('fdb_label_full', where, mac, `label ${labelId} already holds maxMacsPerLabel = ${this.maxMacsPerLabel} entries`);
      }
      i = this.home(hi, lo);
      while (this.slotKind[base + i] !== 0) i = (i + 1) & this.mask;
      this.count[labelId]!++;
    }
    const s = base + i;
    this.slotKind[s] = kind;
    this.slotStatic[s] = 1;
    this.slotHi[s] = hi;
    this.slotLo[s] = lo;
    this.slotId[s] = id;
    this.slotSeenMs[s] = 0;
  }

  /** Removes the static entry for `mac` in `labelId`; false if there was none. */
  removeStatic(labelId: number, mac: number): boolean {
    if (!isIndex(labelId, this.labelCount) || !isMac(mac)) return false;
    const i = this.find(labelId, Math.floor(mac / 0x1_0000_0000), mac | 0);
    if (i < 0 || this.slotStatic[(labelId << this.capBits) + i] !== 1) return false;
    this.removeAt(labelId, i);
    return true;
  }

  /** Removes every learned entry older than `ageMs` at `nowMs`; returns how many. */
  sweep(nowMs: number): number {
    let removed = 0;
    for (let label = 0; label < this.labelCount; label++) {
      if (this.count[label] === 0) continue;
      const base = label << this.capBits;
      for (let i = 0; i <= this.mask; i++) {
        const s = base + i;
        if (this.slotKind[s] !== 0 && this.slotStatic[s] === 0 && nowMs - this.slotSeenMs[s]! >= this.ageMs) {
          this.removeAt(label, i);
          removed++;
          i--; // look again at the entry shifted into this slot
        }
      }
    }
    this.counters.expired += removed;
    return removed;
  }

  /** Entries in `labelId`'s table (learned and static, aged ones included until swept). */
  size(labelId: number): number {
    return this.count[labelId] ?? 0;
  }

  /** The live entries of a label, for status output (allocates). */
  entries(labelId: number, nowMs: number): FdbEntry[] {
    const out: FdbEntry[] = [];
    if (!isIndex(labelId, this.labelCount)) return out;
    const base = labelId << this.capBits;
    for (let i = 0; i <= this.mask; i++) {
      const s = base + i;
      const k = this.slotKind[s]!;
      if (k === 0) continue;
      const isStatic = this.slotStatic[s] === 1;
      const ageMs = isStatic ? 0 : nowMs - this.slotSeenMs[s]!;
      if (!isStatic && ageMs >= this.ageMs) continue;
      out.push({
        mac: (this.slotHi[s]! & 0xffff) * 0x1_0000_0000 + (this.slotLo[s]! >>> 0),
        kind: k as typeof FDB_LOCAL | typeof FDB_REMOTE,
        id: this.slotId[s]!,
        static: isStatic,
        ageMs,
      });
    }
    return out;
  }

  /** Home slot (0..mask) of a MAC: a seeded 32-bit mix of both halves. */
  private home(hi: number, lo: number): number {
    let h = Math.imul(lo ^ this.seed, 0x85ebca6b);
    h ^= Math.imul(hi + 0x165667b1, 0xc2b2ae35);
    h ^= h >>> 15;
    h = Math.imul(h, 0x27d4eb2f);
    h ^= h >>> 13;
    return h & this.mask;
  }

  /** Slot (0..mask) holding the MAC in the label's table, or -1. */
  private find(labelId: number, hi: number, lo: number): number {
    const base = labelId << this.capBits;
    let i = this.home(hi, lo);
    for (;;) {
      const s = base + i;
      if (this.slotKind[s] === 0) return -1;
      if (this.slotLo[s] === lo && this.slotHi[s] === hi) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** Empties slot i of the label and shifts later entries of its probe chain back (no tombstones). */
  private removeAt(labelId: number, i: number): void {
    const base = labelId << this.capBits;
    const mask = this.mask;
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const s = base + j;
      if (this.slotKind[s] === 0) break;
      const h = this.home(this.slotHi[s]!, this.slotLo[s]!);
      // The entry at j may fill the hole if the hole lies on its probe path h..j.
      if (((j - h) & mask) >= ((j - hole) & mask)) {
        const d = base + hole;
        this.slotKind[d] = this.slotKind[s]!;
        this.slotStatic[d] = this.slotStatic[s]!;
        this.slotHi[d] = this.slotHi[s]!;
        this.slotLo[d] = this.slotLo[s]!;
        this.slotId[d] = this.slotId[s]!;
        this.slotSeenMs[d] = this.slotSeenMs[s]!;
        hole = j;
      }
    }
    this.slotKind[base + hole] = 0;
    this.slotStatic[base + hole] = 0;
    this.count[labelId]!--;
  }

  private countMove(from: number, to: number): void {
    const c = this.counters;
    if (from === FDB_LOCAL) {
      if (to === FDB_REMOTE) c.movesLocalToRemote++;
      else c.movesLocalToLocal++;
    } else if (to === FDB_LOCAL) c.movesRemoteToLocal++;
    else c.movesRemoteToRemote++;
  }
}

function isMac(mac: unknown): mac is number {
  return typeof mac === 'number' && Number.isInteger(mac) && mac >= 0 && mac < 2 ** 48;
}

/** `aa:bb:cc:dd:ee:ff` for error messages (control path). */
function formatMac(mac: number): string {
  if (!isMac(mac)) return String(mac);
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}
