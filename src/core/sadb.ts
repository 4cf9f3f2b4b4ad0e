/**
 * The SA database (RFC 4301 §4.4.2): inbound SAs by SPI, outbound SAs by peer and label,
 * and SPI allocation for the receiver-chosen SPIs of DESIGN.md "Keys and sessions".
 * An SA leaves the database with its keys zeroed (sa.destroy()).
 *
 * Lookups (`inbound`, `outbound`) are per packet and allocate nothing; install, remove and
 * allocateSpi are control-path operations and throw SadbError on misuse.
 */
import { ESP_SPI_MIN } from '../wire/constants.js';
import type { InboundSa, OutboundSa } from './sa.js';

/** Stable codes of SadbError. */
export type SadbErrorCode = 'ST_SADB_BAD_SPI' | 'ST_SADB_SPI_IN_USE' | 'ST_SADB_NO_LABELS' | 'ST_SADB_SPI_EXHAUSTED' | 'ST_SADB_BAD_RANDOM';

/** A control-path error of the SA database, with a stable code. */
export class SadbError extends Error {
  constructor(
    readonly code: SadbErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SadbError';
  }
}

/** How many random draws allocateSpi makes before giving up (the space has 2^32 − 256 SPIs). */
export const SPI_ALLOCATION_ATTEMPTS = 64;

/** True if an SPI may be used for an SA on the wire: 256..2^32 − 1 (RFC 4303 §2.1; 0 is local-only, 1–255 reserved). */
export function spiUsable(spi: number): boolean {
  return Number.isInteger(spi) && spi >= ESP_SPI_MIN && spi <= 0xffffffff;
}

function hex(spi: number): string {
  return `0x${(spi >>> 0).toString(16).padStart(8, '0')}`;
}

export class SaDatabase {
  private readonly inboundBySpi = new Map<number, InboundSa>();
  /** peer → label → SA. */
  private readonly outboundByPeer = new Map<string, Map<string, OutboundSa>>();
  /** SPIs handed out by allocateSpi and not yet installed or released. */
  private readonly reservedSpis = new Set<number>();

  /** The inbound SA of an SPI (hot path). */
  inbound(spi: number): InboundSa | undefined {
    return this.inboundBySpi.get(spi);
  }

  /** The outbound SA for a label towards a peer (hot path). */
  outbound(peer: string, label: string): OutboundSa | undefined {
    return this.outboundByPeer.get(peer)?.get(label);
  }

  /** Number of inbound SAs. */
  get inboundCount(): number {
    return this.inboundBySpi.size;
  }

  /** Every inbound SA (for status and metrics). */
  inboundSas(): IterableIterator<InboundSa> {
    return this.inboundBySpi.values();
  }

  /** Every distinct outbound SA (for status and the rekey scheduler). */
  outboundSas(): OutboundSa[] {
    const seen = new Set<OutboundSa>();
    for (const byLabel of this.outboundByPeer.values()) for (const sa of byLabel.values()) seen.add(sa);
    return [...seen];
  }

  /**
   * Installs an inbound SA under its SPI. Refuses SPI 0 and 1–255 (RFC 4303 §2.1), an SPI already
   * installed, and an SA bound to no label. An SPI reserved by allocateSpi is taken out of reserve.
   */
  installInbound(sa: InboundSa): void {
    if (!spiUsable(sa.spi)) {
      throw new SadbError('ST_SADB_BAD_SPI', `inbound SA spi ${hex(sa.spi)} is not usable: SPIs 0 and 1–255 are reserved (RFC 4303 §2.1)`);
    }
    if (this.inboundBySpi.has(sa.spi)) {
      throw new SadbError('ST_SADB_SPI_IN_USE', `inbound SA spi ${hex(sa.spi)} is already installed`);
    }
    if (sa.labels.size === 0) {
      throw new SadbError('ST_SADB_NO_LABELS', `inbound SA spi ${hex(sa.spi)} is bound to no label; every SA carries at least one`);
    }
    this.reservedSpis.delete(sa.spi);
    this.inboundBySpi.set(sa.spi, sa);
  }

  /** Removes the inbound SA of an SPI and zeroes its keys; false if there was none. */
  removeInbound(spi: number): boolean {
    const sa = this.inboundBySpi.get(spi);
    if (sa === undefined) return false;
    this.inboundBySpi.delete(spi);
    sa.destroy();
    return true;
  }

  /**
   * Installs an outbound SA towards `peer` for each of its labels. An SA it replaces for a label
   * (make-before-break: the new one takes over at once) is destroyed once no label uses it any
   * more; those SAs are returned.
   */
  installOutbound(peer: string, sa: OutboundSa): OutboundSa[] {
    if (sa.labels.size === 0) {
      throw new SadbError('ST_SADB_NO_LABELS', `outbound SA spi ${hex(sa.spi)} to ${peer} is bound to no label; every SA carries at least one`);
    }
    let byLabel = this.outboundByPeer.get(peer);
    if (byLabel === undefined) {
      byLabel = new Map();
      this.outboundByPeer.set(peer, byLabel);
    }
    const replaced = new Set<OutboundSa>();
    for (const label of sa.labels) {
      const old = byLabel.get(label);
      if (old !== undefined && old !== sa) replaced.add(old);
      byLabel.set(label, sa);
    }
    const destroyed: OutboundSa[] = [];
    for (const old of replaced) {
      if (!this.outboundInUse(old)) {
        old.destroy();
        destroyed.push(old);
      }
    }
    return destroyed;
  }

  /** Removes an outbound SA from every peer and label it serves and zeroes its keys; false if it was not installed. */
  removeOutbound(sa: OutboundSa): boolean {
    let found = false;
    for (const [peer, byLabel] of this.outboundByPeer) {
      for (const [label, s] of byLabel) {
        if (s === sa) {
          byLabel.delete(label);
          found = true;
        }
      }
      if (byLabel.size === 0) this.outboundByPeer.delete(peer);
    }
    if (found) sa.destroy();
    return found;
  }

  /**
   * Picks a fresh SPI for a new inbound SA: never 0 or 1–255, never one installed or reserved.
   * The SPI stays reserved until installInbound or releaseSpi. `randomUint32` returns uniformly
   * random integers in 0..2^32 − 1 (e.g. from crypto.getRandomValues).
   */
  allocateSpi(randomUint32: () => number): number {
    for (let attempt = 0; attempt < SPI_ALLOCATION_ATTEMPTS; attempt++) {
      const spi = randomUint32();
      if (!Number.isInteger(spi) || spi < 0 || spi > 0xffffffff) {
        throw new SadbError('ST_SADB_BAD_RANDOM', `allocateSpi: the random source returned ${String(spi)}, not an integer in 0..2^32-1`);
      }
      if (spi < ESP_SPI_MIN || this.inboundBySpi.has(spi) || this.reservedSpis.has(spi)) continue;
      this.reservedSpis.add(spi);
      return spi;
    }
    throw new SadbError(
      'ST_SADB_SPI_EXHAUSTED',
      `allocateSpi: no free SPI in ${SPI_ALLOCATION_ATTEMPTS} random draws (${this.inboundBySpi.size} installed, ${this.reservedSpis.size} reserved); is the random source random?`,
    );
  }

  /** Returns a reserved SPI that will not be installed after all. */
  releaseSpi(spi: number): void {
    this.reservedSpis.delete(spi);
  }

  /** Removes every SA and zeroes every key (shutdown). */
  clear(): void {
    for (const sa of this.inboundBySpi.values()) sa.destroy();
    for (const sa of this.outboundSas()) sa.destroy();
    this.inboundBySpi.clear();
    this.outboundByPeer.clear();
    this.reservedSpis.clear();
  }

  private outboundInUse(sa: OutboundSa): boolean {
    for (const byLabel of this.outboundByPeer.values()) for (const s of byLabel.values()) if (s === sa) return true;
    return false;
  }
}
