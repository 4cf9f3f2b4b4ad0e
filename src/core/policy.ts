/**
 * Label policy (DESIGN.md "Labels and policy"): as in Deuterium's Type
 * Enforcement, a frame is admitted into a domain only when the domain's label
 * is the label the frame was sent with, or an explicit one-way rule
 * `allow FROM -> TO` admits FROM's frames into TO's domains. Everything else is
 * denied (and audited by the caller). `admits` is one octet read from an
 * n×n matrix: O(1), never throws, never allocates.
 */
import { LabelConfigError, type LabelTable } from './labels.js';

/** One rule: frames of label `from` may be delivered to domains of label `to` (one way). */
export interface PolicyRuleSpec {
  from: string;
  to: string;
}

/** A rule as configured: `"allow red -> audit"` or `{from: "red", to: "audit"}`. */
export type PolicyRule = string | PolicyRuleSpec;

const RULE_RE = /^\s*allow\s+(\S+?)\s*->\s*(\S+)\s*$/;

/** Parses `allow FROM -> TO` (or an object {from, to}) without checking the names; throws LabelConfigError. */
export function parsePolicyRule(rule: unknown, path = 'policy[0]'): PolicyRuleSpec {
  if (typeof rule === 'string') {
    const m = RULE_RE.exec(rule);
    if (m) return { from: m[1]!, to: m[2]! };
  } else if (typeof rule === 'object' && rule !== null && !Array.isArray(rule)) {
    const { from, to } = rule as Record<string, unknown>;
    if (typeof from === 'string' && typeof to === 'string') return { from, to };
  }
  let shown: string;
  try {
    shown = JSON.stringify(rule) ?? String(rule);
  } catch {
    shown = String(rule);
  }
  throw new LabelConfigError('policy_rule_invalid', path, rule, `${shown} is not a rule "allow FROM -> TO" or {from, to}`);
}

/** The admission matrix over one LabelTable: default deny across labels, same label always admitted. */
export class Policy {
  /** The rules in effect, names resolved, in configured order. */
  readonly rules: readonly Readonly<PolicyRuleSpec>[];
  private readonly n: number;
  /** matrix[from * n + to] = 1 when frames of `from` may enter domains of `to`. */
  private readonly matrix: Uint8Array;

  /** Builds the matrix; each rule's labels must exist in `labels` (throws LabelConfigError naming `policy[i]`). */
  constructor(
    readonly labels: LabelTable,
    rules: readonly PolicyRule[] = [],
  ) {
    if (!Array.isArray(rules)) throw new LabelConfigError('policy_rule_invalid', 'policy', rules, `${String(rules)} is not a list of rules`);
    const n = labels.size;
    this.n = n;
    this.matrix = new Uint8Array(n * n);
    for (let i = 0; i < n; i++) this.matrix[i * n + i] = 1;
    const resolved: Readonly<PolicyRuleSpec>[] = [];
    for (let i = 0; i < rules.length; i++) {
      const at = `policy[${i}]`;
      const r = parsePolicyRule(rules[i], at);
      const from = labels.idOf(r.from);
      const to = labels.idOf(r.to);
      const known = labels.labels.map((l) => l.name).join(', ') || 'none';
      if (from < 0) throw new LabelConfigError('policy_label_unknown', `${at}.from`, r.from, `${JSON.stringify(r.from)} is not a configured label (labels: ${known})`);
      if (to < 0) throw new LabelConfigError('policy_label_unknown', `${at}.to`, r.to, `${JSON.stringify(r.to)} is not a configured label (labels: ${known})`);
      this.matrix[from * n + to] = 1;
      resolved.push(Object.freeze({ from: r.from, to: r.to }));
    }
    this.rules = Object.freeze(resolved);
  }

  /** True if a frame sent with label `fromLabelId` may be delivered to a domain of label `toLabelId`; false for ids out of range. */
  admits(fromLabelId: number, toLabelId: number): boolean {
    const n = this.n;
    if (!(fromLabelId >= 0 && fromLabelId < n && toLabelId >= 0 && toLabelId < n)) return false;
    if ((fromLabelId | 0) !== fromLabelId || (toLabelId | 0) !== toLabelId) return false;
    return this.matrix[fromLabelId * n + toLabelId] === 1;
  }

  /** Rules as `allow FROM -> TO` lines (for status output and round trips). */
  toStrings(): string[] {
    return this.rules.map((r) => `allow ${r.from} -> ${r.to}`);
  }
}
