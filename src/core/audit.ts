/**
 * Audit records for denied frames (DESIGN.md "Data flow": a label drop also
 * writes an audit record) and the token bucket that keeps a flood of denials
 * from becoming a flood of log lines.
 *
 * Stages, per denied frame:
 *   1. the pipeline fills a preallocated AuditEvent (numbers only);
 *   2. AuditRateLimiter.admit(now, reason): refill the bucket, decide — O(1),
 *      no allocation; a suppressed record is only counted (by reason);
 *   3. only when admitted: build the JSON-serialisable record (names, hex,
 *      ISO time) and hand it to the sink. When emission resumes after a
 *      suppression, an "N records suppressed" summary goes out first.
 *
 * Every line written, summaries included, takes a token, so the log never
 * holds more than `burst + ratePerSec · t` lines over any t seconds.
 * The sink (the control layer's JSON-lines writer) does the I/O.
 */
import { REASON_COUNT, REASON_NAMES, reasonName, type ReasonName } from './reasons.js';
import type { DomainTable, LabelTable } from './labels.js';

/** Default sustained rate of audit lines. */
export const DEFAULT_AUDIT_RATE_PER_SEC = 100;
/** Default burst: lines that may be written at once after a quiet period. */
export const DEFAULT_AUDIT_BURST = 200;
/** Default shortest time between two "suppressed" summaries. */
export const DEFAULT_AUDIT_SUMMARY_INTERVAL_MS = 1000;

/** `admit` result bit: write the record. */
export const AUDIT_EMIT_RECORD = 1;
/** `admit` result bit: write a summary (`takeSummary`) before the record. */
export const AUDIT_EMIT_SUMMARY = 2;

/** One denied frame, as the audit log shows it. Absent values are null. */
export interface AuditRecord {
  type: 'drop';
  /** ISO 8601 time of the decision (from the caller's clock). */
  time: string;
  /** Reason name (null only for a code outside the table: a caller bug). */
  reason: ReasonName | null;
  /** Label the frame carried (or was sent with), and the label it tried to reach. */
  labelFrom: string | null;
  labelTo: string | null;
  /** SELinux contexts of those labels, when configured. */
  contextFrom: string | null;
  contextTo: string | null;
  domain: string | null;
  peer: string | null;
  /** SPI as "0x" + 8 hex digits. */
  spi: string | null;
  srcMac: string | null;
  dstMac: string | null;
  vlan: number | null;
  greKey: number | null;
}

/** "N records suppressed": written when emission resumes (or on flush) after the limiter dropped records. */
export interface AuditSummaryRecord {
  type: 'suppressed';
  time: string;
  /** Time of the first record this summary covers. */
  since: string;
  suppressed: number;
  /** Suppressed records per reason (reasons with none left out). */
  byReason: Partial<Record<ReasonName, number>>;
  message: string;
}

/**
 * The facts of one denial, filled in place by the pipeline (no allocation).
 * Ids are table indexes; -1 means absent. MACs are read from `frame` at
 * `ethOffset` (destination) and `ethOffset + 6` (source) only if the record
 * is emitted, so the frame must still hold them when `record` is called.
 */
export class AuditEvent {
  reason = 0;
  labelFrom = -1;
  labelTo = -1;
  domain = -1;
  peer = -1;
  /** SPI (uint32), or -1. */
  spi = -1;
  frame: Uint8Array | null = null;
  ethOffset = 0;
  vlan = -1;
  /** GRE key (uint32), or -1 for none/unknown. */
  greKey = -1;

  /** Resets every field to absent; returns this. */
  clear(): this {
    this.reason = 0;
    this.labelFrom = this.labelTo = this.domain = this.peer = this.spi = this.vlan = this.greKey = -1;
    this.frame = null;
    this.ethOffset = 0;
    return this;
  }

  /** clear(), then the fields every pipeline denial has: reason, labels, domain and the frame at ethOffset. */
  denial(reason: number, labelFrom: number, labelTo: number, domain: number, frame: Uint8Array, ethOffset: number): this {
    this.clear();
    this.reason = reason;
    this.labelFrom = labelFrom;
    this.labelTo = labelTo;
    this.domain = domain;
    this.frame = frame;
    this.ethOffset = ethOffset;
    return this;
  }
}

/** Tables that turn ids into names for the record. Any may be absent. */
export interface AuditNames {
  labels?: LabelTable;
  domains?: DomainTable;
  /** Peer display names (e.g. "host-b (192.0.2.1)") by peer id. */
  peerNames?: readonly (string | undefined)[];
}

export type AuditConfigErrorCode = 'audit_option_invalid';

/** A bad limiter option: `path` names it. */
export class AuditConfigError extends Error {
  override readonly name = 'AuditConfigError';
  constructor(
    readonly code: AuditConfigErrorCode,
    readonly path: string,
    readonly value: unknown,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** `aa:bb:cc:dd:ee:ff` from 6 octets at `off`, or null if they are not all there. */
function macText(b: Uint8Array | null, off: number): string | null {
  if (b === null || !(off >= 0 && off + 6 <= b.length)) return null;
  return `${HEX[b[off]!]}:${HEX[b[off + 1]!]}:${HEX[b[off + 2]!]}:${HEX[b[off + 3]!]}:${HEX[b[off + 4]!]}:${HEX[b[off + 5]!]}`;
}

/** ISO 8601 text of a time in ms since the epoch (the epoch itself for an unusable value). */
function isoTime(ms: number): string {
  return new Date(Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? ms : 0).toISOString();
}

function isUint32(v: number): boolean {
  return v >= 0 && v <= 0xffffffff && Math.floor(v) === v;
}

/** Builds the JSON-serialisable record of one denial at `nowMs` (allocates: call only for emitted records). */
export function buildAuditRecord(nowMs: number, ev: AuditEvent, names: AuditNames = {}): AuditRecord {
  const from = ev.labelFrom >= 0 ? names.labels?.get(ev.labelFrom) : undefined;
  const to = ev.labelTo >= 0 ? names.labels?.get(ev.labelTo) : undefined;
  return {
    type: 'drop',
    time: isoTime(nowMs),
    reason: reasonName(ev.reason),
    labelFrom: from?.name ?? null,
    labelTo: to?.name ?? null,
    contextFrom: from?.context ?? null,
    contextTo: to?.context ?? null,
    domain: ev.domain >= 0 ? (names.domains?.get(ev.domain)?.name ?? `#${ev.domain}`) : null,
    peer: ev.peer >= 0 ? (names.peerNames?.[ev.peer] ?? `#${ev.peer}`) : null,
    spi: isUint32(ev.spi) ? `0x${ev.spi.toString(16).padStart(8, '0')}` : null,
    dstMac: macText(ev.frame, ev.ethOffset),
    srcMac: macText(ev.frame, ev.ethOffset + 6),
    vlan: ev.vlan >= 0 ? ev.vlan : null,
    greKey: isUint32(ev.greKey) ? ev.greKey : null,
  };
}

export interface AuditLimiterOptions {
  /** Sustained lines per second; default 100. */
  ratePerSec?: number;
  /** Bucket size: lines at once after a quiet period; default 200. */
  burst?: number;
  /** Shortest time between two summaries; default 1000 ms. */
  summaryIntervalMs?: number;
}

/**
 * Token bucket over audit lines. `admit` is O(1) and allocation-free; while
 * the bucket is empty it only counts (total and by reason).
 */
export class AuditRateLimiter {
  readonly ratePerSec: number;
  readonly burst: number;
  readonly summaryIntervalMs: number;
  /** Records written (summaries not included). */
  emitted = 0;
  /** Summaries written. */
  summaries = 0;
  /** Records suppressed since the start. */
  suppressedTotal = 0;
  /** Records suppressed and not yet reported by a summary, in all and by reason code. */
  pending = 0;
  readonly pendingByReason = new Float64Array(REASON_COUNT);
  private pendingSinceMs = 0;
  private tokens: number;
  private lastRefillMs = Number.NaN;
  private lastSummaryMs = Number.NEGATIVE_INFINITY;

  /** Validates the options; throws AuditConfigError. */
  constructor(opts: AuditLimiterOptions = {}) {
    const { ratePerSec = DEFAULT_AUDIT_RATE_PER_SEC, burst = DEFAULT_AUDIT_BURST, summaryIntervalMs = DEFAULT_AUDIT_SUMMARY_INTERVAL_MS } = opts;
    if (typeof ratePerSec !== 'number' || !(ratePerSec >= 0) || !Number.isFinite(ratePerSec)) {
      throw new AuditConfigError('audit_option_invalid', 'audit.ratePerSec', ratePerSec, `${String(ratePerSec)} is not a finite number of records per second >= 0`);
    }
    if (typeof burst !== 'number' || !Number.isInteger(burst) || burst < 1) {
      throw new AuditConfigError('audit_option_invalid', 'audit.burst', burst, `${String(burst)} is not an integer >= 1`);
    }
    if (typeof summaryIntervalMs !== 'number' || !(summaryIntervalMs >= 0) || !Number.isFinite(summaryIntervalMs)) {
      throw new AuditConfigError('audit_option_invalid', 'audit.summaryIntervalMs', summaryIntervalMs, `${String(summaryIntervalMs)} is not a finite number of milliseconds >= 0`);
    }
    this.ratePerSec = ratePerSec;
    this.burst = burst;
    this.summaryIntervalMs = summaryIntervalMs;
    this.tokens = burst;
  }

  /**
   * Decides for one record of `reason` at `nowMs`: 0 = suppressed (counted),
   * else a mask of AUDIT_EMIT_SUMMARY (write `takeSummary(nowMs)` first) and
   * AUDIT_EMIT_RECORD. Never allocates.
   */
  admit(nowMs: number, reason: number): number {
    this.refill(nowMs);
    let out = 0;
    if (this.summaryDue(nowMs) && this.tokens >= 1) {
      this.tokens -= 1;
      out = AUDIT_EMIT_SUMMARY;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.emitted++;
      return out | AUDIT_EMIT_RECORD;
    }
    if (this.pending === 0) this.pendingSinceMs = nowMs;
    this.pending++;
    this.suppressedTotal++;
    if (reason >= 0 && reason < REASON_COUNT) this.pendingByReason[reason]!++;
    return out;
  }

  /**
   * For a periodic timer: true (and a token taken) if a summary is owed, its
   * interval has passed and the bucket has a token; then call `takeSummary`.
   */
  flushDue(nowMs: number): boolean {
    this.refill(nowMs);
    if (!this.summaryDue(nowMs) || this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Builds the "N records suppressed" summary of everything pending and resets the pending counts; null if nothing is pending. */
  takeSummary(nowMs: number): AuditSummaryRecord | null {
    if (this.pending === 0) return null;
    const byReason: Partial<Record<ReasonName, number>> = {};
    for (let i = 1; i < REASON_COUNT; i++) {
      if (this.pendingByReason[i]! > 0) byReason[REASON_NAMES[i] as ReasonName] = this.pendingByReason[i]!;
    }
    const n = this.pending;
    const rec: AuditSummaryRecord = {
      type: 'suppressed',
      time: isoTime(nowMs),
      since: isoTime(this.pendingSinceMs),
      suppressed: n,
      byReason,
      message: `${n} record${n === 1 ? '' : 's'} suppressed`,
    };
    this.pending = 0;
    this.pendingByReason.fill(0);
    this.lastSummaryMs = nowMs;
    this.summaries++;
    return rec;
  }

  private summaryDue(nowMs: number): boolean {
    return this.pending > 0 && !(nowMs - this.lastSummaryMs < this.summaryIntervalMs);
  }

  private refill(nowMs: number): void {
    if (Number.isNaN(this.lastRefillMs)) {
      this.lastRefillMs = nowMs;
      return;
    }
    if (!(nowMs > this.lastRefillMs)) return; // clock still or stepped back: no refill
    const t = this.tokens + ((nowMs - this.lastRefillMs) * this.ratePerSec) / 1000;
    this.tokens = t < this.burst ? t : this.burst;
    this.lastRefillMs = nowMs;
  }
}

export interface AuditorOptions extends AuditLimiterOptions {
  /** Receives each line to write (the control layer's JSON-lines writer). */
  sink: (record: AuditRecord | AuditSummaryRecord) => void;
  names?: AuditNames;
}

/** Limiter + builder + sink: what the pipelines call on a denial. */
export class Auditor {
  readonly limiter: AuditRateLimiter;
  /** Name tables; replace on config reload. */
  names: AuditNames;
  private readonly sink: AuditorOptions['sink'];

  constructor(opts: AuditorOptions) {
    this.limiter = new AuditRateLimiter(opts);
    this.names = opts.names ?? {};
    this.sink = opts.sink;
  }

  /** Audits one denial at `nowMs`: writes it (after a due summary) or counts it as suppressed. Returns true if the record was written. */
  record(nowMs: number, ev: AuditEvent): boolean {
    const r = this.limiter.admit(nowMs, ev.reason);
    if (r === 0) return false;
    if ((r & AUDIT_EMIT_SUMMARY) !== 0) {
      const s = this.limiter.takeSummary(nowMs);
      if (s !== null) this.sink(s);
    }
    if ((r & AUDIT_EMIT_RECORD) === 0) return false;
    this.sink(buildAuditRecord(nowMs, ev, this.names));
    return true;
  }

  /** For a periodic timer: writes the pending summary when one is owed and allowed. Returns true if it wrote one. */
  flush(nowMs: number): boolean {
    if (!this.limiter.flushDue(nowMs)) return false;
    const s = this.limiter.takeSummary(nowMs);
    if (s === null) return false;
    this.sink(s);
    return true;
  }
}
