/**
 * The daemon's SAs and their sequence-number reservations.
 *
 * Static SA pairs (`--insecure-static-keys`) are created from the config's plans
 * (control/build.ts). A reload keeps every SA whose identity is unchanged (same
 * object: its counter, replay window and cipher context stay) and creates or
 * destroys the rest. Outbound counters are guarded by the sequence store
 * (control/seq-store.ts):
 *   1. create: the SA starts at the store's mark + 1 (1 for a new key), and a
 *      block is reserved (fsync'd) before it seals anything;
 *   2. per send batch, `guard(count)`: an SA that could pass its mark within the
 *      batch reserves the next block first, synchronously; if that write fails
 *      the batch is refused (the caller drops it), so no number is ever sent
 *      that is not durably reserved;
 *   3. periodically, `topUp()`: reserves ahead for SAs past half a block, so the
 *      guard rarely has to write.
 * A restart therefore resumes above every number sent before.
 */
import type { InboundSa as InboundSaT } from '../../core/sa.js';
import { InboundSa, OutboundSa, SEQ_MAX_32, SEQ_MAX_ESN } from '../../core/sa.js';
import type { AeadBackendName } from '../../crypto/aead.js';
import type { StaticSaPlan } from '../../control/build.js';
import type { Logger } from '../../control/log.js';
import { seqKeyOf, type SeqKey, type SeqStore } from '../../control/seq-store.js';
import { DaemonError } from './errors.js';

/** An outbound SA with its sequence reservation. */
export interface OutboundEntry {
  readonly sa: OutboundSa;
  readonly key: SeqKey;
  readonly peer: string;
  /** Highest sequence number durably reserved. */
  reserved: number;
  /** What the log has said about the SA's limits: 0 nothing, 1 rekey due, 2 expired. */
  logged: number;
}

/** An inbound SA and the peer it belongs to. */
export interface InboundEntry {
  readonly sa: InboundSaT;
  readonly peer: string;
}

/** One installed pair, for the tables. */
export interface SaPair {
  readonly plan: StaticSaPlan;
  readonly inbound: InboundSaT;
  readonly outbound: OutboundSa;
}

/** What `apply` did. */
export interface SaChanges {
  pairs: SaPair[];
  created: number;
  kept: number;
  destroyed: number;
}

function hex8(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

export class SaRegistry {
  private inbound = new Map<string, InboundEntry>();
  private outbound = new Map<string, OutboundEntry>();
  /** The outbound entries as an array, for the per-batch guard. */
  private outList: OutboundEntry[] = [];
  private guardFailed = false;

  constructor(
    private readonly store: SeqStore,
    private readonly backend: AeadBackendName | undefined,
    private readonly log: Logger,
  ) {}

  /** Every outbound SA with its peer and reservation (status, metrics). */
  outboundEntries(): readonly OutboundEntry[] {
    return this.outList;
  }

  /** Every inbound SA with its peer. */
  inboundEntries(): IterableIterator<InboundEntry> {
    return this.inbound.values();
  }

  /**
   * Makes the registry hold exactly the plans' SAs: keeps those whose identity is unchanged,
   * creates the others (outbound ones resumed above their reserved mark). Nothing is destroyed
   * until `commit`; `abort` (or a throw) destroys what was created and leaves the registry unchanged.
   */
  prepare(plans: readonly StaticSaPlan[], nowMs: number): { changes: SaChanges; commit: () => void; abort: () => void } {
    const nextIn = new Map<string, InboundEntry>();
    const nextOut = new Map<string, OutboundEntry>();
    const created: (InboundSaT | OutboundSa)[] = [];
    const pairs: SaPair[] = [];
    let kept = 0;
    try {
      for (const p of plans) {
        let i = this.inbound.get(p.in.identity) ?? nextIn.get(p.in.identity);
        if (i === undefined) {
          const sa = new InboundSa({
            spi: p.in.spi,
            algorithm: p.algorithm,
            keymat: p.in.keymat.slice(),
            esn: p.esn,
            labels: p.labels,
            replayWindowPackets: p.replayWindowPackets,
            nowMs,
            ...(this.backend !== undefined && { backend: this.backend }),
          });
          created.push(sa);
          i = { sa, peer: p.peerName };
        } else kept++;
        nextIn.set(p.in.identity, i);

        let o = this.outbound.get(p.out.identity) ?? nextOut.get(p.out.identity);
        if (o === undefined) {
          o = this.createOutbound(p, nowMs);
          created.push(o.sa);
        } else kept++;
        nextOut.set(p.out.identity, o);
        pairs.push({ plan: p, inbound: i.sa, outbound: o.sa });
      }
    } catch (e) {
      for (const sa of created) sa.destroy();
      throw e;
    }
    const doomed = [
      ...[...this.inbound].filter(([id]) => !nextIn.has(id)).map(([, e]) => e.sa),
      ...[...this.outbound].filter(([id]) => !nextOut.has(id)).map(([, e]) => e.sa),
    ];
    return {
      changes: { pairs, created: created.length, kept, destroyed: doomed.length },
      commit: () => {
        this.inbound = nextIn;
        this.outbound = nextOut;
        this.outList = [...nextOut.values()];
        for (const sa of doomed) sa.destroy();
      },
      abort: () => {
        for (const sa of created) sa.destroy();
      },
    };
  }

  /** Creates an outbound SA at its resume point with a block reserved; throws DaemonError. */
  private createOutbound(p: StaticSaPlan, nowMs: number): OutboundEntry {
    const key = seqKeyOf(p.out.spi, p.out.keymat);
    const first = this.store.resumeFrom(key);
    const max = p.esn ? SEQ_MAX_ESN : SEQ_MAX_32;
    if (first > max) {
      throw new DaemonError(
        'ST_DAEMON_SEQ_STORE',
        `${p.path}.out: SPI ${hex8(p.out.spi)} has used every sequence number under this key (${this.store.file} reserves up to ${first - 1}); configure a new keymat`,
      );
    }
    let reserved: number;
    try {
      reserved = this.store.reserveAhead(key, first);
    } catch (e) {
      throw new DaemonError('ST_DAEMON_SEQ_STORE', `${p.path}.out: cannot reserve sequence numbers: ${(e as Error).message}`, e);
    }
    const sa = new OutboundSa({
      spi: p.out.spi,
      algorithm: p.algorithm,
      keymat: p.out.keymat.slice(),
      esn: p.esn,
      labels: p.labels,
      firstSeq: first,
      nowMs,
      ...(this.backend !== undefined && { backend: this.backend }),
    });
    if (first > 1) this.log.info('outbound SA resumes above its reserved sequence numbers', { peer: p.peerName, spi: hex8(p.out.spi), firstSeq: first });
    return { sa, key, peer: p.peerName, reserved, logged: 0 };
  }

  /**
   * Per send batch: true if every outbound SA may seal `count` more packets within its durable
   * reservation, reserving the next block synchronously where needed; false if a reservation
   * failed (the batch must not be sent). Allocation-free unless it writes.
   */
  guard(count: number): boolean {
    const list = this.outList;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.sa.nextSeq + count - 1 <= e.reserved) continue;
      if (!this.reserve(e)) return false;
      if (e.sa.nextSeq + count - 1 > e.reserved) return false;
    }
    return true;
  }

  /** Timer: reserves ahead for every SA that has used half of its block. */
  topUp(): void {
    for (const e of this.outList) {
      if (!e.sa.expired && this.store.needsReserve(e.key, e.sa.nextSeq)) this.reserve(e);
    }
  }

  private reserve(e: OutboundEntry): boolean {
    try {
      e.reserved = this.store.reserveAhead(e.key, e.sa.nextSeq);
      if (this.guardFailed) {
        this.guardFailed = false;
        this.log.info('sequence-number reservations work again', { file: this.store.file });
      }
      return true;
    } catch (err) {
      if (!this.guardFailed) {
        this.guardFailed = true;
        this.log.error('cannot reserve outbound sequence numbers: sending stops until the state file can be written', {
          file: this.store.file,
          spi: hex8(e.sa.spi),
          peer: e.peer,
          error: (err as Error).message,
        });
      }
      return false;
    }
  }

  /** Per timer tick: re-evaluates age limits; returns the SAs that became rekey-due or expired since the last call. */
  tick(nowMs: number): OutboundEntry[] {
    const changed: OutboundEntry[] = [];
    for (const e of this.outList) {
      e.sa.tick(nowMs);
      const now = e.sa.expired ? 2 : e.sa.rekeyDue ? 1 : 0;
      if (now > e.logged) {
        e.logged = now;
        changed.push(e);
      }
    }
    return changed;
  }

  /** Destroys every SA (keys zeroed); the sequence marks stay on disk. */
  destroyAll(): void {
    for (const e of this.inbound.values()) e.sa.destroy();
    for (const e of this.outbound.values()) e.sa.destroy();
    this.inbound.clear();
    this.outbound.clear();
    this.outList = [];
  }
}
