/**
 * Verdict reason codes: stable names (DESIGN.md "pcap replay"), also the
 * metric labels. The hot path passes the numeric code; names are for output.
 */

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
] as const;

/** Discards: packets consumed on purpose, not errors (RFC 3948 keepalives, control messages, RFC 4303 dummies). */
export const DISCARD_REASONS = ['nat_keepalive', 'non_esp_marker', 'dummy_packet'] as const;

export type DropReasonName = (typeof DROP_REASONS)[number];
export type DiscardReasonName = (typeof DISCARD_REASONS)[number];
export type ReasonName = DropReasonName | DiscardReasonName;

/** All reason names; drops first, then discards. Index = numeric code. */
export const REASON_NAMES: readonly ReasonName[] = [...DROP_REASONS, ...DISCARD_REASONS];

/** Numeric code of each reason, for the hot path: `Reason.icv_mismatch`. */
export const Reason = Object.freeze(
  Object.fromEntries(REASON_NAMES.map((n, i) => [n, i])) as { [K in ReasonName]: number },
);

/** Number of distinct reason codes (size of a counter array). */
export const REASON_COUNT = REASON_NAMES.length;

/** True if the numeric code is a discard (not an error). */
export function isDiscard(code: number): boolean {
  return code >= DROP_REASONS.length && code < REASON_COUNT;
}

/** One counter per reason code, indexed by the numeric code. */
export class ReasonCounters {
  readonly counts = new Float64Array(REASON_COUNT);

  /** Adds n (default 1) to the counter of `code`. */
  add(code: number, n = 1): void {
    this.counts[code]! += n;
  }

  /** The counters as a plain object keyed by reason name (every reason present, zeros included). */
  toJSON(): Record<ReasonName, number> {
    const out = {} as Record<ReasonName, number>;
    for (let i = 0; i < REASON_COUNT; i++) out[REASON_NAMES[i]!] = this.counts[i]!;
    return out;
  }
}
