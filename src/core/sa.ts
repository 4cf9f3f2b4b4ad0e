/**
 * ESP security associations (RFC 4303 §3.3.3, §3.4.3; RFC 4301 §4.4.2.1 lifetimes):
 * the state the ESP stage (esp.ts) reads and updates per packet.
 *
 * - OutboundSa: SPI, keyed AEAD, the 64-bit sequence counter (starts at 1, never
 *   wraps: the SA refuses to seal before it would), and soft/hard limits on packets,
 *   octets and age. A soft limit sets `rekeyDue` (polled by the control layer's rekey
 *   scheduler; no callbacks); a hard limit sets `expired` and every later seal is
 *   refused with Reason.sa_expired.
 * - InboundSa: SPI, keyed AEAD, ESN flag, the replay window with ESN inference,
 *   the labels the SA is bound to, and per-SA counters.
 *
 * Time is always an argument (`nowMs`); nothing here reads a clock.
 */
import type { AeadAlgorithm, AeadBackendName, Aead } from '../crypto/aead.js';
import { createAead } from '../crypto/index.js';
import { ReasonCounters } from './reasons.js';
import { ReplayWindow, REPLAY_WINDOW_DEFAULT_PACKETS } from './replay-window.js';

/** Highest sequence number without ESN: the 32-bit counter must not wrap (RFC 4303 §3.3.3). */
export const SEQ_MAX_32 = 0xffffffff;
/**
 * Highest sequence number sectunnel sends with ESN. The protocol allows 2^64 − 1; we stop at
 * 2^53 − 1, where JS numbers stop being exact — unreachable in practice (2.8 years at 10^8
 * packets/s), and a hard limit all the same, so the counter can never silently round.
 */
export const SEQ_MAX_ESN = Number.MAX_SAFE_INTEGER;

/** Which limit fired (for logs and status). */
export type SaLimitKind = 'packets' | 'bytes' | 'age' | 'destroyed';

/**
 * Lifetimes of an outbound SA (RFC 4301 §4.4.2.1). Packets count sequence numbers used (the
 * packets sealed, when the counter starts at 1; a packet limit of N makes seq N the last), bytes count payload octets (the
 * GRE packets before padding), age counts ms since creation. Omitted limits are infinite, except
 * hardPackets, which defaults to the counter's maximum (SEQ_MAX_32, or SEQ_MAX_ESN with ESN), and
 * softPackets, which defaults to 7/8 of hardPackets so that a rekey starts before the counter ends.
 */
export interface SaLimits {
  softPackets?: number;
  hardPackets?: number;
  softBytes?: number;
  hardBytes?: number;
  softAgeMs?: number;
  hardAgeMs?: number;
}

/** What both SA directions are built from. */
export interface SaOptions {
  /** SPI as an unsigned 32-bit number (the sadb refuses 0 and 1–255; the SA itself stores what it is given). */
  spi: number;
  algorithm: AeadAlgorithm;
  /**
   * key ‖ 4-octet salt. The SA takes ownership: destroy() zeroes this array (the AEAD holds its
   * own copy, zeroed by aead.destroy()). Pass a copy if you need to keep the key.
   */
  keymat: Uint8Array;
  /** Crypto backend; default: the process-wide choice (crypto/index.ts). */
  backend?: AeadBackendName;
  /** 64-bit extended sequence numbers (RFC 4303 §2.2.1); default true. */
  esn?: boolean;
  /** Labels this SA carries (DESIGN.md "Labels and policy"); stored as given. */
  labels?: Iterable<string>;
  /** Creation time in ms (the caller's clock). */
  nowMs: number;
}

export interface OutboundSaOptions extends SaOptions {
  limits?: SaLimits;
  /** First sequence number to send; default 1 (RFC 4303 §3.3.3). For replaying captures and tests. */
  firstSeq?: number;
}

export interface InboundSaOptions extends SaOptions {
  /** Anti-replay window in packets (multiple of 32, 64..65536); default 4096. */
  replayWindowPackets?: number;
  /**
   * Accept any next header instead of only GRE (47). For published test vectors, which carry
   * IPv4 (4) or ICMP (1). Next header 59 (dummy packet) is discarded either way.
   */
  acceptAnyNextHeader?: boolean;
}

function limitOf(name: string, value: number | undefined, dflt: number, max: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0 || value > max) {
    throw new RangeError(`SA limit ${name} must be a number in 0..${max}, got ${String(value)}`);
  }
  return value;
}

function checkSpi(spi: number): number {
  if (!Number.isInteger(spi) || spi < 0 || spi > SEQ_MAX_32) {
    throw new RangeError(`SA spi must be an unsigned 32-bit integer, got ${String(spi)}`);
  }
  return spi;
}

/** The state both directions share: SPI, keyed AEAD, ESN flag, labels, creation time. */
abstract class SaBase {
  readonly spi: number;
  readonly algorithm: AeadAlgorithm;
  readonly aead: Aead;
  readonly esn: boolean;
  readonly labels: ReadonlySet<string>;
  readonly createdMs: number;
  /** Payload packets and octets that went through this SA. */
  packets = 0;
  bytes = 0;
  /** Time of the last packet through the SA (ms), or -1. */
  lastPacketMs = -1;
  /** True once destroy() ran: the AEAD is gone, every packet is refused. */
  destroyed = false;
  /** AAD scratch, SPI ‖ seq_lo or SPI ‖ seq_hi ‖ seq_lo (RFC 4106 §5, RFC 7634 §3), reused per packet. */
  readonly aad: Uint8Array;
  private readonly keymat: Uint8Array;

  constructor(o: SaOptions) {
    this.spi = checkSpi(o.spi);
    this.algorithm = o.algorithm;
    this.esn = o.esn ?? true;
    this.labels = new Set(o.labels ?? []);
    this.createdMs = o.nowMs;
    this.aead = createAead(o.algorithm, o.keymat, o.backend);
    this.keymat = o.keymat;
    this.aad = new Uint8Array(this.esn ? 12 : 8);
    this.aad[0] = this.spi >>> 24;
    this.aad[1] = this.spi >>> 16;
    this.aad[2] = this.spi >>> 8;
    this.aad[3] = this.spi;
  }

  /** Writes the sequence number into the AAD scratch and returns it (RFC 4106 §5). */
  aadFor(seqHi: number, seqLo: number): Uint8Array {
    const a = this.aad;
    let p = 4;
    if (this.esn) {
      a[4] = seqHi >>> 24;
      a[5] = seqHi >>> 16;
      a[6] = seqHi >>> 8;
      a[7] = seqHi;
      p = 8;
    }
    a[p] = seqLo >>> 24;
    a[p + 1] = seqLo >>> 16;
    a[p + 2] = seqLo >>> 8;
    a[p + 3] = seqLo;
    return a;
  }

  /** Age in ms at `nowMs`. */
  ageMs(nowMs: number): number {
    return nowMs - this.createdMs;
  }

  /** Zeroes the keys: the KEYMAT this SA was given and the AEAD's copy. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.keymat.fill(0);
    this.aead.destroy();
  }
}

/** The sending half of an SA: sequence counter and lifetimes (RFC 4303 §3.3.3). */
export class OutboundSa extends SaBase {
  /** The next sequence number to send (a 64-bit counter as a number; see SEQ_MAX_ESN). */
  nextSeq = 0; // initialised so V8 keeps one field representation (no heap number per claim past 2^31)
  readonly softPackets: number;
  readonly hardPackets: number;
  readonly softBytes: number;
  readonly hardBytes: number;
  readonly softAgeMs: number;
  readonly hardAgeMs: number;
  /** Set when a soft limit is reached: the control layer should start a rekey. Stays set. */
  rekeyDue = false;
  /** Which soft limit fired first, or null. */
  rekeyReason: SaLimitKind | null = null;
  /** Set when a hard limit is reached: the SA seals nothing more. Stays set. */
  expired = false;
  /** Which hard limit fired first, or null. */
  expiredReason: SaLimitKind | null = null;

  constructor(o: OutboundSaOptions) {
    // Validate before the AEAD exists, so a bad option leaves no key behind.
    const esn = o.esn ?? true;
    const maxSeq = esn ? SEQ_MAX_ESN : SEQ_MAX_32;
    const l = o.limits ?? {};
    const hardPackets = limitOf('hardPackets', l.hardPackets, maxSeq, maxSeq);
    const softPackets = limitOf('softPackets', l.softPackets, Math.floor(hardPackets / 8) * 7, maxSeq);
    const softBytes = limitOf('softBytes', l.softBytes, Infinity, Infinity);
    const hardBytes = limitOf('hardBytes', l.hardBytes, Infinity, Infinity);
    const softAgeMs = limitOf('softAgeMs', l.softAgeMs, Infinity, Infinity);
    const hardAgeMs = limitOf('hardAgeMs', l.hardAgeMs, Infinity, Infinity);
    const first = o.firstSeq ?? 1;
    if (!Number.isInteger(first) || first < 1 || first > maxSeq) {
      throw new RangeError(`OutboundSa firstSeq must be an integer in 1..${maxSeq}${esn ? '' : ' without ESN'}, got ${String(first)}`);
    }
    super(o);
    this.hardPackets = hardPackets;
    this.softPackets = softPackets;
    this.softBytes = softBytes;
    this.hardBytes = hardBytes;
    this.softAgeMs = softAgeMs;
    this.hardAgeMs = hardAgeMs;
    this.nextSeq = first;
  }

  /**
   * Takes the next sequence number for a packet of `payloadBytes`, or returns 0 (never a valid
   * sequence number) if a hard limit forbids sending it: the SA is then `expired`. Updates the
   * counters and raises `rekeyDue` at a soft limit. Hot path: no allocation.
   */
  claim(payloadBytes: number, nowMs: number): number {
    if (this.expired) return 0;
    const seq = this.nextSeq;
    const age = nowMs - this.createdMs;
    if (this.destroyed) this.expire('destroyed');
    else if (seq > this.hardPackets) this.expire('packets');
    else if (this.bytes + payloadBytes > this.hardBytes) this.expire('bytes');
    else if (age >= this.hardAgeMs) this.expire('age');
    if (this.expired) return 0;
    this.nextSeq = seq + 1;
    this.packets++;
    this.bytes += payloadBytes;
    this.lastPacketMs = nowMs;
    if (!this.rekeyDue) {
      if (seq >= this.softPackets) this.soft('packets');
      else if (this.bytes >= this.softBytes) this.soft('bytes');
      else if (age >= this.softAgeMs) this.soft('age');
    }
    return seq;
  }

  /**
   * Re-evaluates the age limits at `nowMs`, so an idle SA still asks for a rekey and expires.
   * The control layer calls it when it polls `rekeyDue`/`expired`.
   */
  tick(nowMs: number): void {
    const age = nowMs - this.createdMs;
    if (!this.rekeyDue && age >= this.softAgeMs) this.soft('age');
    if (!this.expired && age >= this.hardAgeMs) this.expire('age');
  }

  /** Sequence numbers left before the hard packet limit. */
  get remainingPackets(): number {
    return Math.max(0, this.hardPackets - this.nextSeq + 1);
  }

  override destroy(): void {
    super.destroy();
    this.expire('destroyed');
  }

  private soft(kind: SaLimitKind): void {
    this.rekeyDue = true;
    this.rekeyReason = kind;
  }

  private expire(kind: SaLimitKind): void {
    if (this.expired) return;
    this.expired = true;
    this.expiredReason = kind;
    if (!this.rekeyDue) this.soft(kind);
  }
}

/** The receiving half of an SA: replay window, ESN inference, labels and counters (RFC 4303 §3.4). */
export class InboundSa extends SaBase {
  readonly replay: ReplayWindow;
  readonly acceptAnyNextHeader: boolean;
  /** Drops and discards of packets that reached this SA, by reason code. */
  readonly drops = new ReasonCounters();
  /** Next header of the last accepted packet (47 unless acceptAnyNextHeader). */
  lastNextHeader = -1;
  /** Halves of the sequence number of the last accepted packet. */
  lastSeqHi = 0;
  lastSeqLo = 0;

  constructor(o: InboundSaOptions) {
    const replay = new ReplayWindow(o.replayWindowPackets ?? REPLAY_WINDOW_DEFAULT_PACKETS); // validates first
    super(o);
    this.replay = replay;
    this.acceptAnyNextHeader = o.acceptAnyNextHeader ?? false;
  }

  /** High half of the sequence number whose low half (int32 or uint32) arrived: inferred with ESN (RFC 4303 App. A2.1), else 0. */
  inferSeqHi(seqLo: number): number {
    return this.esn ? this.replay.inferHi(seqLo) : 0;
  }

  /** Sequence number of the last accepted packet as a number (exact below 2^53). */
  get lastSeq(): number {
    return this.lastSeqHi * 4294967296 + this.lastSeqLo;
  }

  /** Counts an accepted packet of `payloadBytes` with sequence number hi/lo (lo as int32 or uint32). */
  recordAccept(payloadBytes: number, seqHi: number, seqLo: number, nextHeader: number, nowMs: number): void {
    this.packets++;
    this.bytes += payloadBytes;
    this.lastPacketMs = nowMs;
    this.lastSeqHi = seqHi;
    this.lastSeqLo = seqLo >>> 0;
    this.lastNextHeader = nextHeader;
  }
}
