/**
 * The state both pipelines read and update: labels, domains, policy, the L2
 * forwarding tables, peers, the SA routes (SPI → inbound SA with its peer and
 * label set; (peer, label) → outbound SA), counters and the auditor.
 * The control layer builds and changes it; the pipelines only look up and count.
 */
import type { Auditor } from './audit.js';
import { Fdb, type FdbOptions } from './fdb.js';
import type { DomainTable, LabelTable } from './labels.js';
import type { Policy } from './policy.js';
import { ReasonCounters } from './reasons.js';
import type { InboundSa, OutboundSa } from './sa.js';

/** A peer host as the pipelines see it. */
export interface PeerInfo {
  readonly id: number;
  readonly name: string;
  /** Label ids this peer may carry (its configured set, or the negotiated one). */
  readonly labelIds: readonly number[];
}

/** What the receive path needs per inbound SPI. */
export interface InboundRoute {
  readonly sa: InboundSa;
  readonly peerId: number;
  /** labelMask[labelId] = 1 if the SA is bound to that label. */
  readonly labelMask: Uint8Array;
}

/** Traffic counters per (peer, label) and per domain, for status and metrics. */
export class TrafficCounters {
  readonly txPackets: Float64Array;
  readonly txBytes: Float64Array;
  readonly rxPackets: Float64Array;
  readonly rxBytes: Float64Array;
  /** Frames read from / written to each domain's port. */
  readonly domainIn: Float64Array;
  readonly domainOut: Float64Array;

  constructor(
    readonly peerCount: number,
    readonly labelCount: number,
    domainCount: number,
  ) {
    const n = Math.max(1, peerCount * labelCount);
    this.txPackets = new Float64Array(n);
    this.txBytes = new Float64Array(n);
    this.rxPackets = new Float64Array(n);
    this.rxBytes = new Float64Array(n);
    this.domainIn = new Float64Array(Math.max(1, domainCount));
    this.domainOut = new Float64Array(Math.max(1, domainCount));
  }
}

export interface TablesOptions {
  labels: LabelTable;
  domains: DomainTable;
  policy: Policy;
  peers: readonly PeerInfo[];
  fdb?: Omit<FdbOptions, 'labelCount'>;
  auditor?: Auditor | null;
}

export class Tables {
  readonly labels: LabelTable;
  readonly domains: DomainTable;
  readonly policy: Policy;
  readonly peers: readonly PeerInfo[];
  readonly fdb: Fdb;
  readonly auditor: Auditor | null;
  /** Drops and discards by reason code, both directions. */
  readonly counters = new ReasonCounters();
  readonly traffic: TrafficCounters;
  private readonly inboundBySpi = new Map<number, InboundRoute>();
  private readonly outboundSas: (OutboundSa | null)[];

  constructor(o: TablesOptions) {
    this.labels = o.labels;
    this.domains = o.domains;
    this.policy = o.policy;
    this.peers = o.peers;
    this.auditor = o.auditor ?? null;
    this.fdb = new Fdb(
      { ...o.fdb, labelCount: Math.max(1, o.labels.size) },
      {
        domains: o.domains.domains.map((d) => ({ id: d.id, labelId: d.labelId })),
        peers: o.peers.map((p) => ({ id: p.id, labelIds: p.labelIds })),
      },
    );
    this.outboundSas = new Array<OutboundSa | null>(Math.max(1, o.peers.length * o.labels.size)).fill(null);
    this.traffic = new TrafficCounters(o.peers.length, o.labels.size, o.domains.size);
  }

  /** The inbound route of an SPI (hot path). */
  inbound(spi: number): InboundRoute | undefined {
    return this.inboundBySpi.get(spi);
  }

  /** Installs (or replaces) the route of an inbound SA received from `peerId`; its label names must exist. */
  setInbound(sa: InboundSa, peerId: number): void {
    const labelMask = new Uint8Array(Math.max(1, this.labels.size));
    for (const name of sa.labels) {
      const id = this.labels.idOf(name);
      if (id < 0) throw new Error(`inbound SA 0x${sa.spi.toString(16)}: unknown label "${name}"`);
      labelMask[id] = 1;
    }
    this.inboundBySpi.set(sa.spi, { sa, peerId, labelMask });
  }

  /** Removes the route of an inbound SPI (the SA itself is destroyed by its owner). */
  removeInbound(spi: number): boolean {
    return this.inboundBySpi.delete(spi);
  }

  /** Every inbound route (status, metrics). */
  inboundRoutes(): IterableIterator<InboundRoute> {
    return this.inboundBySpi.values();
  }

  /** The outbound SA for (peer, label), or null (hot path). */
  outbound(peerId: number, labelId: number): OutboundSa | null {
    return this.outboundSas[peerId * this.labels.size + labelId] ?? null;
  }

  /** Points (peer, label) at an outbound SA, or clears it with null. */
  setOutbound(peerId: number, labelId: number, sa: OutboundSa | null): void {
    this.outboundSas[peerId * this.labels.size + labelId] = sa;
  }
}
