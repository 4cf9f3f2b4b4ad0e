/**
 * Verdict reason codes: stable names (DESIGN.md "pcap replay"), also the
 * metric labels. The hot path passes the numeric code; names are for output.
 * Code 0 is OK ("no reason"), so `if (r !== OK)` reads the same everywhere.
 * Two codes extend DESIGN.md's list: `sa_expired` (an outbound SA reached a hard
 * limit and refuses to seal until rekeyed) and `buffer_no_room` (a buffer lacked
 * head- or tailroom for the headers: a caller bug, counted rather than thrown).
 */

/** The code of a packet that was not dropped. */
export const OK = 0;

/** Every drop reason, in a fixed order: the index is the numeric code. */
export const DROP_REASONS = [
  'truncated',
  'unknown_spi',
  'seq_zero',
  'replay_duplicate',
  'replay_too_old',
  'icv_mismatch',
  'bad_pad_length',
  'bad_padding_content',
  'unexpected_next_header',
  'gre_malformed',
  'gre_checksum',
  'gre_unknown_key',
  'inner_malformed',
  'inner_untagged',
  'label_mismatch',
  'policy_denied',
  'udp_zero_checksum_v6',
  'not_esp',
  'guest_vlan_tag',
  'spoofed_src_mac',
  'no_route',
  'pool_exhausted',
  'reassembly_failed',
  'sa_expired',
  'buffer_no_room',
] as const;

/** Discards: packets consumed on purpose, not errors (RFC 3948 keepalives, control messages, RFC 4303 dummies). */
export const DISCARD_REASONS = ['nat_keepalive', 'non_esp_marker', 'dummy_packet'] as const;

export type DropReasonName = (typeof DROP_REASONS)[number];
export type DiscardReasonName = (typeof DISCARD_REASONS)[number];
export type ReasonName = DropReasonName | DiscardReasonName;

/** A reason name or 'ok' (the name of code 0). */
export type CodeName = ReasonName | 'ok';

/** Names by numeric code: 'ok' at 0, then the drops, then the discards. */
export const REASON_NAMES: readonly CodeName[] = ['ok', ...DROP_REASONS, ...DISCARD_REASONS];

/** Numeric code of each reason, for the hot path: `Reason.icv_mismatch` (never 0). */
export const Reason = Object.freeze(
  Object.fromEntries(REASON_NAMES.slice(1).map((n, i) => [n, i + 1])) as { [K in ReasonName]: number },
);

/** Number of codes including OK (size of a counter array indexed by code). */
export const REASON_COUNT = REASON_NAMES.length;

/** True if the numeric code is a drop (an error). */
export function isDrop(code: number): boolean {
  return code >= 1 && code <= DROP_REASONS.length;
}

/** True if the numeric code is a discard (not an error). */
export function isDiscard(code: number): boolean {
  return code > DROP_REASONS.length && code < REASON_COUNT;
}

/** The name of a code, or null for OK and for codes out of range. */
export function reasonName(code: number): ReasonName | null {
  return code >= 1 && code < REASON_COUNT ? (REASON_NAMES[code] as ReasonName) : null;
}

/** One counter per reason code, indexed by the numeric code. */
export class ReasonCounters {
  readonly counts = new Float64Array(REASON_COUNT);

  /** Adds n (default 1) to the counter of `code`. */
  add(code: number, n = 1): void {
    this.counts[code]! += n;
  }

  /** The counters as a plain object keyed by reason name (every reason present, zeros included; no 'ok'). */
  toJSON(): Record<ReasonName, number> {
    const out = {} as Record<ReasonName, number>;
    for (let i = 1; i < REASON_COUNT; i++) out[REASON_NAMES[i] as ReasonName] = this.counts[i]!;
    return out;
  }
}
