/**
 * REPLAY.json, the config of `sectunnel replay` (DESIGN.md "pcap replay"):
 * local addresses, labels, static SAs, and optionally domains and policy.
 * Also the field schemas the daemon config (config.ts) shares: labels, MACs,
 * addresses, SPIs, KEYMAT, policy rules, and their cross-field checks.
 *
 * Validation stages: shape and ranges per field → cross-field checks (names
 * unique, references resolve, (GRE key, VLAN) pairs unique, SPIs unique, KEYMAT
 * length per algorithm) → normalised output (SPI as number, KEYMAT as bytes,
 * MACs lower case, IPv6 addresses in RFC 5952 form).
 */
import { isIPv4, isIPv6 } from 'node:net';
import * as z from 'zod';
import { AEAD_ALGORITHMS, aeadKeyBytes, aeadKeymatBytes, AEAD_SALT_BYTES, type AeadAlgorithm } from '../crypto/aead.js';
import { ESP_SPI_MIN, VLAN_ID_MAX, VLAN_ID_MIN } from '../wire/constants.js';
import {
  addProblem,
  bool,
  didYouMean,
  field,
  intIn,
  isRecord,
  listOf,
  matching,
  oneOf,
  strictObject,
  type PathSegment,
} from './config-errors.js';
import { loadConfigFile } from './load.js';

// ---------------------------------------------------------------------------
// Types of the validated, normalised output.

/**
 * A label (DESIGN.md "Labels and policy"). `greKey` keeps what the file said:
 * a number, `null` (no GRE key on the wire, for plain gretap peers), or
 * `undefined` (key absent: the default, `defaultGreKey(vlan)`); use
 * `effectiveGreKey` for the key on the wire.
 */
export interface LabelConfig {
  readonly name: string;
  readonly vlan: number;
  readonly greKey?: number | null;
  readonly context?: string;
}

/** A guest NIC: one label, the unicast MACs it may send from (lower case, colon separated). */
export interface DomainConfig {
  readonly name: string;
  readonly label: string;
  readonly macs: readonly string[];
}

/** A one-way policy rule: frames of label `from` may be delivered to domains of label `to`. */
export interface PolicyRule {
  readonly from: string;
  readonly to: string;
}

/** A static SA of REPLAY.json. */
export interface ReplaySaConfig {
  readonly spi: number;
  readonly direction: 'in' | 'out';
  /** The remote host: IPv4 dotted quad or IPv6 in RFC 5952 form. */
  readonly peer: string;
  readonly algorithm: AeadAlgorithm;
  /** key ‖ 4-octet salt, exactly aeadKeymatBytes(algorithm) octets. */
  readonly keymat: Uint8Array;
  readonly esn: boolean;
  readonly encapsulation: 'esp' | 'udp';
  readonly labels: readonly string[];
}

/** REPLAY.json, validated. Field names are those of the file. */
export interface ReplayConfig {
  readonly local: { readonly ipv4?: string; readonly ipv6?: string };
  readonly replayWindow: number;
  readonly labels: readonly LabelConfig[];
  readonly sas: readonly ReplaySaConfig[];
  /** Empty when the file has none: then replay has no guests and no domain or policy checks. */
  readonly domains: readonly DomainConfig[];
  readonly policy: readonly PolicyRule[];
}

// ---------------------------------------------------------------------------
// Field schemas (shared with config.ts).

/** Default GRE key of a label: the VLAN id shifted left by 8 (NVGRE-style VSID, flow id 0; RFC 7637). */
export function defaultGreKey(vlan: number): number {
  return (vlan << 8) >>> 0;
}

/** The GRE key a label puts on the wire: its own, `null` for none, or the default for its VLAN. */
export function effectiveGreKey(label: LabelConfig): number | null {
  return label.greKey === undefined ? defaultGreKey(label.vlan) : label.greKey;
}

/** Names of labels, domains, peers, hosts. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NAME_TEXT = 'a name of 1..63 letters, digits, ".", "_" or "-", starting with a letter or digit';

/** A name (label, domain, peer, host). */
export function nameField() {
  return matching(NAME_RE, NAME_TEXT);
}

const CONTEXT_RE = /^[^:\s]+:[^:\s]+:[^:\s]+:\S+$/;
const REPLAY_WINDOW_TEXT = 'expected an integer in 64..65536 that is a multiple of 32';

/** Anti-replay window size in packets: 64..65536, a multiple of 32 (RFC 4303 §3.4.3, RFC 6479 bitmap words). */
export function replayWindowField() {
  return intIn(64, 65536, ' that is a multiple of 32').refine((n) => n % 32 === 0, { error: REPLAY_WINDOW_TEXT });
}

const GRE_KEY_TEXT = 'expected an integer in 0..4294967295, or null for no GRE key';

/** One label: {name, vlan, greKey?, context?}. */
export const labelSchema = strictObject(
  {
    name: nameField(),
    vlan: intIn(VLAN_ID_MIN, VLAN_ID_MAX),
    greKey: z
      .union([z.number({ error: GRE_KEY_TEXT }).int({ error: GRE_KEY_TEXT }).min(0, { error: GRE_KEY_TEXT }).max(0xffffffff, { error: GRE_KEY_TEXT }), z.null()], {
        error: GRE_KEY_TEXT,
      })
      .optional(),
    context: matching(CONTEXT_RE, 'an SELinux-style context "user:role:type:level"').optional(),
  },
  'a label {name, vlan, greKey?, context?}',
).transform(
  (l): LabelConfig => ({
    name: l.name,
    vlan: l.vlan,
    ...(l.greKey !== undefined && { greKey: l.greKey }),
    ...(l.context !== undefined && { context: l.context }),
  }),
);

/** IP address family of a normalised address string. */
export function addressFamily(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

function parseAddress(input: unknown, family: 4 | 6 | undefined, unicast: boolean): { value: string } | string {
  const want = family === 4 ? 'an IPv4 address' : family === 6 ? 'an IPv6 address' : 'an IPv4 or IPv6 address';
  const plain = `expected ${want}${unicast ? ' of one host (not unspecified, broadcast or multicast)' : ''}`;
  if (typeof input !== 'string') return plain;
  if (isIPv4(input)) {
    if (family === 6) return `expected ${want}, not IPv4`;
    if (unicast && (input === '0.0.0.0' || input === '255.255.255.255' || ((Number(input.split('.')[0]) & 0xf0) === 0xe0))) return plain;
    return { value: input };
  }
  if (isIPv6(input)) {
    if (family === 4) return `expected ${want}, not IPv6`;
    if (input.includes('%')) return `expected ${want} without a zone index (%…)`;
    const canonical = new URL(`http://[${input}]/`).hostname.slice(1, -1);
    if (canonical.startsWith('::ffff:')) return `expected ${want}; write an IPv4-mapped address as plain IPv4`;
    if (unicast && (canonical === '::' || canonical.startsWith('ff'))) return plain;
    return { value: canonical };
  }
  return plain;
}

/** An IP address, normalised (IPv6 in RFC 5952 form); `unicast` rejects unspecified, broadcast and multicast. */
export function addressField(family?: 4 | 6, unicast = true) {
  return field<string>((v) => parseAddress(v, family, unicast));
}

const SPI_TEXT = `expected an SPI: an integer in ${ESP_SPI_MIN}..4294967295, or a hex string "0x00000100".."0xffffffff"`;

/** An ESP SPI (RFC 4303 §2.1; 0..255 reserved): a number or a "0x…" hex string; output a number. */
export function spiField() {
  return field<number>((v) => {
    let n: number;
    if (typeof v === 'number') n = v;
    else if (typeof v === 'string' && /^0x[0-9a-fA-F]{1,8}$/.test(v)) n = parseInt(v.slice(2), 16);
    else return SPI_TEXT;
    return Number.isInteger(n) && n >= ESP_SPI_MIN && n <= 0xffffffff ? { value: n } : SPI_TEXT;
  });
}

const KEYMAT_TEXT = 'expected a hex string: the key followed by the 4-octet salt';

/** KEYMAT as a hex string (optionally "0x"-prefixed); output bytes. Its length is checked against the algorithm by checkKeymat. */
export function keymatField() {
  return field<Uint8Array>((v) => {
    if (typeof v === 'number') return `${KEYMAT_TEXT}; in YAML, put it in quotes`;
    if (typeof v !== 'string') return KEYMAT_TEXT;
    const hex = v.replace(/^0x/i, '');
    if (hex.length === 0 || !/^[0-9a-fA-F]*$/.test(hex)) return KEYMAT_TEXT;
    if (hex.length % 2 !== 0) return `${KEYMAT_TEXT}, with an even number of hex digits`;
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    return { value: bytes };
  });
}

/** The AEAD algorithm (DESIGN.md "Wire format"). */
export function algorithmField() {
  return oneOf(AEAD_ALGORITHMS);
}

/** Checks that KEYMAT at `path` has the length `algorithm` needs; a no-op when either is not valid yet. */
export function checkKeymat(ctx: z.core.$RefinementCtx<unknown>, path: PathSegment[], keymat: unknown, algorithm: unknown): void {
  if (!(keymat instanceof Uint8Array) || typeof algorithm !== 'string' || !(AEAD_ALGORITHMS as readonly string[]).includes(algorithm)) return;
  const alg = algorithm as AeadAlgorithm;
  const want = aeadKeymatBytes(alg);
  if (keymat.length !== want) {
    addProblem(
      ctx,
      path,
      keymat,
      `expected ${want} octets (${want * 2} hex digits) for ${alg}: a ${aeadKeyBytes(alg)}-octet key and a ${AEAD_SALT_BYTES}-octet salt`,
    );
  }
}

const MAC_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;
const MAC_TEXT = 'expected a unicast MAC address like "52:54:00:12:34:56"';

/** A unicast MAC address ("52:54:00:12:34:56" or with "-"); output lower case with ":". */
export function macField() {
  return field<string>((v) => {
    if (typeof v !== 'string' || !MAC_RE.test(v)) return MAC_TEXT;
    const mac = v.toLowerCase().replace(/-/g, ':');
    if (mac === '00:00:00:00:00:00') return `${MAC_TEXT}, not all zeros`;
    if ((parseInt(mac.slice(0, 2), 16) & 1) !== 0) return `${MAC_TEXT}; this is a multicast address (the low bit of the first octet is set)`;
    return { value: mac };
  });
}

/** A list of label names: non-empty, no name twice. References are checked by checkLabelRef. */
export function labelRefsField() {
  return listOf(nameField(), 'label names', true).superRefine((names, ctx) => {
    names.forEach((n, i) => {
      const first = names.indexOf(n);
      if (first !== i) addProblem(ctx, [i], n, `"${n}" is already listed at [${first}]`);
    });
  });
}

const RULE_RE = /^\s*allow\s+([A-Za-z0-9][A-Za-z0-9._-]{0,62})\s*->\s*([A-Za-z0-9][A-Za-z0-9._-]{0,62})\s*$/;
const RULE_TEXT = 'expected a rule "allow FROM -> TO" or {from: FROM, to: TO} naming two labels';

/** A policy rule: "allow red -> audit" or {from: "red", to: "audit"}. */
export function policyRuleField() {
  return field<PolicyRule>((v) => {
    if (typeof v === 'string') {
      const m = RULE_RE.exec(v);
      return m === null ? RULE_TEXT : { value: { from: m[1]!, to: m[2]! } };
    }
    if (isRecord(v)) {
      const keys = Object.keys(v);
      if (keys.length === 2 && typeof v.from === 'string' && typeof v.to === 'string' && NAME_RE.test(v.from) && NAME_RE.test(v.to)) {
        return { value: { from: v.from, to: v.to } };
      }
    }
    return RULE_TEXT;
  });
}

/** A domain as REPLAY.json has it: {name, label, macs}. */
export const domainShape = {
  name: nameField(),
  label: nameField(),
  macs: listOf(macField(), 'MAC addresses', true),
};

// ---------------------------------------------------------------------------
// Cross-field checks (shared with config.ts). Each runs even when other fields
// are invalid, so it looks only at entries that are already well-formed.

/** Reports entries of `list` (at `base`) whose `name` repeats an earlier entry's; returns the names (first index each). */
export function checkUniqueNames(ctx: z.core.$RefinementCtx<unknown>, list: unknown, base: PathSegment[], what: string): Map<string, number> {
  const names = new Map<string, number>();
  if (!Array.isArray(list)) return names;
  list.forEach((item, i) => {
    if (!isRecord(item) || typeof item.name !== 'string') return;
    const first = names.get(item.name);
    if (first === undefined) names.set(item.name, i);
    else addProblem(ctx, [...base, i, 'name'], item.name, `${base.join('.')}[${first}] is already ${what} "${item.name}"; names must be unique`);
  });
  return names;
}

/** Reports labels whose (effective GRE key, VLAN) pair is already another label's: the pair names the label on the wire. */
export function checkLabelPairs(ctx: z.core.$RefinementCtx<unknown>, labels: unknown): void {
  if (!Array.isArray(labels)) return;
  const pairs = new Map<string, number>();
  labels.forEach((l, i) => {
    if (!isRecord(l) || typeof l.vlan !== 'number') return;
    const key = l.greKey === undefined ? defaultGreKey(l.vlan) : l.greKey;
    if (key !== null && typeof key !== 'number') return;
    const id = `${key}/${l.vlan}`;
    const first = pairs.get(id);
    if (first === undefined) {
      pairs.set(id, i);
      return;
    }
    const defaulted = l.greKey === undefined || (isRecord(labels[first]) && labels[first].greKey === undefined);
    const keyText = key === null ? 'no GRE key' : `GRE key ${key}`;
    const note = defaulted && key !== null ? ` (${key} is the default key for VLAN ${l.vlan}: vlan << 8)` : '';
    addProblem(
      ctx,
      [`labels`, i],
      l,
      `labels[${first}] already uses ${keyText} with VLAN ${l.vlan}${note}; each (GRE key, VLAN) pair names one label, so give one of them another greKey or vlan`,
    );
  });
}

/** Reports `name` at `path` when it is not one of `labels` (with a "did you mean"). */
export function checkLabelRef(ctx: z.core.$RefinementCtx<unknown>, path: PathSegment[], name: unknown, labels: ReadonlyMap<string, number>): void {
  if (typeof name !== 'string' || labels.has(name)) return;
  const known = [...labels.keys()];
  const hint = didYouMean(name, known);
  addProblem(ctx, path, name, `no label is named "${name}"${hint === '' ? '' : `;${hint}`} (labels: ${known.join(', ') || 'none'})`);
}

/** Reports each label reference in a list at `path`. */
export function checkLabelRefs(ctx: z.core.$RefinementCtx<unknown>, path: PathSegment[], names: unknown, labels: ReadonlyMap<string, number>): void {
  if (Array.isArray(names)) names.forEach((n, i) => checkLabelRef(ctx, [...path, i], n, labels));
}

/** Checks domains: names unique, labels exist, each MAC owned by one domain only. */
export function checkDomains(ctx: z.core.$RefinementCtx<unknown>, domains: unknown, labels: ReadonlyMap<string, number>): void {
  if (!Array.isArray(domains)) return;
  checkUniqueNames(ctx, domains, ['domains'], 'named');
  const owners = new Map<string, string>();
  domains.forEach((d, i) => {
    if (!isRecord(d)) return;
    checkLabelRef(ctx, ['domains', i, 'label'], d.label, labels);
    if (!Array.isArray(d.macs)) return;
    d.macs.forEach((mac, j) => {
      if (typeof mac !== 'string' || !MAC_RE.test(mac)) return;
      const norm = mac.toLowerCase().replace(/-/g, ':');
      const here = `domains[${i}].macs[${j}]`;
      const owner = owners.get(norm);
      if (owner === undefined) owners.set(norm, here);
      else addProblem(ctx, ['domains', i, 'macs', j], mac, `${owner} has the same MAC; a MAC belongs to one domain`);
    });
  });
}

/** Checks that policy rules name known labels. */
export function checkPolicy(ctx: z.core.$RefinementCtx<unknown>, policy: unknown, labels: ReadonlyMap<string, number>): void {
  if (!Array.isArray(policy)) return;
  policy.forEach((r, i) => {
    if (!isRecord(r)) return;
    checkLabelRef(ctx, ['policy', i], r.from, labels);
    checkLabelRef(ctx, ['policy', i], r.to, labels);
  });
}

// ---------------------------------------------------------------------------
// REPLAY.json

const replaySaSchema = strictObject(
  {
    spi: spiField(),
    direction: oneOf(['in', 'out']),
    peer: addressField(),
    algorithm: algorithmField(),
    keymat: keymatField(),
    esn: bool().default(true),
    encapsulation: oneOf(['esp', 'udp']),
    labels: labelRefsField(),
  },
  'an SA {spi, direction, peer, algorithm, keymat, esn?, encapsulation, labels}',
  (sa, ctx) => checkKeymat(ctx, ['keymat'], sa.keymat, sa.algorithm),
);

const localSchema = strictObject(
  { ipv4: addressField(4).optional(), ipv6: addressField(6).optional() },
  'an object {ipv4?, ipv6?}',
  (local, ctx) => {
    if (local.ipv4 === undefined && local.ipv6 === undefined) addProblem(ctx, [], local, 'expected at least one of ipv4, ipv6');
  },
);

/** The schema of REPLAY.json (DESIGN.md "pcap replay"); use with loadConfigFile or validateConfig. */
export const replayConfigSchema = strictObject(
  {
    local: localSchema,
    replayWindow: replayWindowField().default(4096),
    labels: listOf(labelSchema, 'labels {name, vlan, greKey?, context?}', true),
    sas: listOf(replaySaSchema, 'SAs', true),
    domains: listOf(strictObject(domainShape, 'a domain {name, label, macs}'), 'domains').default([]),
    policy: listOf(policyRuleField(), 'policy rules').default([]),
  },
  'a replay config object {local, replayWindow?, labels, sas, domains?, policy?}',
  (cfg, ctx) => {
    const labels = checkUniqueNames(ctx, cfg.labels, ['labels'], 'named');
    checkLabelPairs(ctx, cfg.labels);
    checkReplaySas(ctx, cfg.sas, labels, isRecord(cfg.local) ? cfg.local : {});
    checkDomains(ctx, cfg.domains, labels);
    checkPolicy(ctx, cfg.policy, labels);
  },
).transform(
    (cfg): ReplayConfig => ({
      local: { ...(cfg.local.ipv4 !== undefined && { ipv4: cfg.local.ipv4 }), ...(cfg.local.ipv6 !== undefined && { ipv6: cfg.local.ipv6 }) },
      replayWindow: cfg.replayWindow,
      labels: cfg.labels,
      sas: cfg.sas.map((sa) => ({
        spi: sa.spi,
        direction: sa.direction,
        peer: sa.peer,
        algorithm: sa.algorithm,
        keymat: sa.keymat,
        esn: sa.esn,
        encapsulation: sa.encapsulation,
        labels: sa.labels,
      })),
      domains: cfg.domains.map((d) => ({ name: d.name, label: d.label, macs: d.macs })),
      policy: cfg.policy,
    }),
  );

function checkReplaySas(ctx: z.core.$RefinementCtx<unknown>, sas: unknown, labels: ReadonlyMap<string, number>, local: Record<string, unknown>): void {
  if (!Array.isArray(sas)) return;
  const inbound = new Map<number, number>();
  sas.forEach((sa, i) => {
    if (!isRecord(sa)) return;
    checkLabelRefs(ctx, ['sas', i, 'labels'], sa.labels, labels);
    if (typeof sa.peer === 'string') {
      const fam = addressFamily(sa.peer);
      const mine = fam === 4 ? local.ipv4 : local.ipv6;
      if (mine === undefined && (isIPv4(sa.peer) || isIPv6(sa.peer))) {
        addProblem(ctx, ['sas', i, 'peer'], sa.peer, `expected a peer reachable from a local address, but local has no ipv${fam}`);
      }
    }
    if (sa.direction === 'in' && typeof sa.spi === 'number') {
      const first = inbound.get(sa.spi);
      if (first === undefined) inbound.set(sa.spi, i);
      else addProblem(ctx, ['sas', i, 'spi'], sa.spi, `sas[${first}] is already an inbound SA with SPI 0x${hex32(sa.spi)}; inbound SPIs must be unique`);
    }
  });
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** Reads and validates a REPLAY.json (or .yaml) file; rejects with ConfigError. */
export function loadReplayConfig(path: string): Promise<ReplayConfig> {
  return loadConfigFile(path, replayConfigSchema);
}
