/**
 * Error codes of the wire views. `bind()` returns 0 or one of these; `parseX()`
 * returns a Repr or one of these. Never thrown: the hot path maps them to the
 * drop reasons of core/reasons.ts (e.g. any GRE code but `badChecksum` →
 * `gre_malformed`, `badChecksum` → `gre_checksum`).
 */

/** Numeric error codes; 0 (success) is not among them. */
export const WireError = Object.freeze({
  /** Fewer octets than the header or one of its length fields needs. */
  truncated: 1,
  /** Version field is not the one the view parses (IPv4 4, IPv6 6, GRE 0). */
  badVersion: 2,
  /** A length field is impossible: IPv4 IHL < 5 or total length < header; UDP length < 8. */
  badLength: 3,
  /** Checksum does not verify. */
  badChecksum: 4,
  /** Reserved bits set or a structure the RFC forbids (GRE bits 1, 4, 5; IPv6 hop-by-hop not first). */
  malformed: 5,
  /** More IPv6 extension headers than IPV6_MAX_EXT_HEADERS. */
  tooManyHeaders: 6,
  /** UDP checksum 0 over IPv6, which RFC 8200 §8.1 forbids. */
  zeroChecksum: 7,
  /** ESP pad length reaches past the start of the payload (RFC 4303 §2.5). */
  badPadLength: 8,
  /** ESP pad bytes are not 1, 2, 3, … (RFC 4303 §2.4). */
  badPadding: 9,
});

/** One of the WireError codes. */
export type WireError = (typeof WireError)[keyof typeof WireError];

/** Name of each code, indexed by the code (index 0 is success). */
export const WIRE_ERROR_NAMES: readonly string[] = [
  'ok',
  ...Object.entries(WireError)
    .sort((a, b) => a[1] - b[1])
    .map(([name]) => name),
];

/** Name of a WireError code for messages and tests ("truncated"); "unknown(N)" for others. */
export function wireErrorName(code: number): string {
  return WIRE_ERROR_NAMES[code] ?? `unknown(${code})`;
}

/** True if a parse result is an error code rather than a Repr. */
export function isWireError(result: unknown): result is WireError {
  return typeof result === 'number';
}
