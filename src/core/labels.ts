/**
 * Security labels and the local domains that carry them (DESIGN.md "Labels and policy").
 *
 * A label is named on the wire by the pair (GRE key, VLAN id): the GRE key of
 * RFC 2890 §2.1 (by default the VLAN id shifted left by 8, an NVGRE-style
 * virtual subnet id with flow id 0, RFC 7637 §3.2) and the 802.1Q VID. Each pair
 * names at most one label; a label without a key ("none") is a distinct key value.
 *
 * Built once per configuration (control path, throws `LabelConfigError`);
 * the lookups used per packet (`LabelTable.lookup`, `DomainTable.ownerOfMac`,
 * `DomainTable.ownsMac`) read typed arrays only: they never throw or allocate.
 */
import { MAC_BYTES, VLAN_ID_MAX, VLAN_ID_MIN } from '../wire/constants.js';

/** Returned by lookups that find no label or domain. */
export const NO_LABEL = -1;
export const NO_DOMAIN = -1;

/** Most labels one table holds (bounds the policy matrix at MAX_LABELS² octets). */
export const MAX_LABELS = 4096;
/** Largest GRE key (32 bits, RFC 2890 §2.1). */
export const GRE_KEY_MAX = 0xffffffff;

/** Stable codes of configuration errors about labels, domains and policy. */
export type LabelConfigErrorCode =
  | 'label_list_invalid'
  | 'label_name_invalid'
  | 'label_name_duplicate'
  | 'label_vlan_invalid'
  | 'label_gre_key_invalid'
  | 'label_context_invalid'
  | 'label_wire_id_duplicate'
  | 'domain_list_invalid'
  | 'domain_name_invalid'
  | 'domain_name_duplicate'
  | 'domain_label_unknown'
  | 'domain_macs_invalid'
  | 'domain_mac_invalid'
  | 'domain_mac_duplicate'
  | 'domain_interface_invalid'
  | 'domain_interface_duplicate'
  | 'policy_rule_invalid'
  | 'policy_label_unknown';

/** A configuration error: `path` names the entry and field (`labels[2].vlan`), `value` is what was given. */
export class LabelConfigError extends Error {
  override readonly name = 'LabelConfigError';
  constructor(
    readonly code: LabelConfigErrorCode,
    readonly path: string,
    readonly value: unknown,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

/** A label as configured: `greKey` absent = the default key, `null` = no GRE key. */
export interface LabelSpec {
  name: string;
  vlan: number;
  greKey?: number | null;
  context?: string;
}

/** A validated label; `id` is its index in the table (a small integer used on the hot path). */
export interface Label {
  readonly id: number;
  readonly name: string;
  readonly vlan: number;
  /** 32-bit GRE key, or null: frames carry no key (plain gretap interop). */
  readonly greKey: number | null;
  /** SELinux-style `user:role:type:level`, or null. */
  readonly context: string | null;
}

/** Default GRE key of a VLAN: VID << 8, the RFC 7637 §3.2 VSID with flow id 0. */
export function defaultGreKey(vlan: number): number {
  return (vlan << 8) >>> 0;
}

/** Names of labels and domains: usable in `allow a -> b`, metric labels and JSON without quoting. */
const NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$/;
const NAME_RULE = '1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit, not ending in - or .';

/** MLS level or range: `s0`, `s0:c1,c5.c9`, `s0-s15:c0.c1023` (SELinux raw form). */
const SENSITIVITY = 's\\d{1,4}(?::c\\d{1,4}(?:[.,]c\\d{1,4})*)?';
const CONTEXT_RE = new RegExp(`^[A-Za-z0-9_.]+:[A-Za-z0-9_.]+:[A-Za-z0-9_.]+:${SENSITIVITY}(?:-${SENSITIVITY})?$`);

/** Shows a configured value in an error message. */
function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The label's wire name as text: `(greKey 0x6400, vlan 100)` or `(no GRE key, vlan 100)`. */
function wireName(greKey: number | null, vlan: number): string {
  return greKey === null ? `(no GRE key, vlan ${vlan})` : `(greKey 0x${greKey.toString(16)}, vlan ${vlan})`;
}

/** Validates one label spec (control path); throws LabelConfigError. */
function checkLabel(spec: unknown, i: number): Omit<Label, 'id'> {
  const at = `labels[${i}]`;
  if (!isRecord(spec)) throw new LabelConfigError('label_list_invalid', at, spec, `${show(spec)} is not an object {name, vlan, greKey?, context?}`);
  const { name, vlan, greKey, context } = spec;
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new LabelConfigError('label_name_invalid', `${at}.name`, name, `${show(name)} is not a valid label name (${NAME_RULE})`);
  }
  const who = ` (label ${JSON.stringify(name)})`;
  if (typeof vlan !== 'number' || !Number.isInteger(vlan) || vlan < VLAN_ID_MIN || vlan > VLAN_ID_MAX) {
    const what = typeof vlan === 'number' && Number.isInteger(vlan) ? 'is outside' : 'is not an integer in';
    throw new LabelConfigError('label_vlan_invalid', `${at}.vlan`, vlan, `${show(vlan)} ${what} ${VLAN_ID_MIN}..${VLAN_ID_MAX}${who}`);
  }
  let key: number | null;
  if (greKey === undefined) key = defaultGreKey(vlan);
  else if (greKey === null) key = null;
  else if (typeof greKey === 'number' && Number.isInteger(greKey) && greKey >= 0 && greKey <= GRE_KEY_MAX) key = greKey;
  else {
    throw new LabelConfigError(
      'label_gre_key_invalid',
      `${at}.greKey`,
      greKey,
      `${show(greKey)} is not a 32-bit key (an integer in 0..4294967295), null for no key, or absent for the default vlan << 8${who}`,
    );
  }
  let ctx: string | null = null;
  if (context !== undefined && context !== null) {
    if (typeof context !== 'string' || !CONTEXT_RE.test(context)) {
      throw new LabelConfigError(
        'label_context_invalid',
        `${at}.context`,
        context,
        `${show(context)} is not an SELinux context user:role:type:level (e.g. "system_u:system_r:svirt_t:s0:c1,c2")${who}`,
      );
    }
    ctx = context;
  }
  return { name, vlan, greKey: key, context: ctx };
}

/**
 * The configured labels with an allocation-free (GRE key, VLAN) → label id
 * lookup for the receive path: a head index per VLAN and a short chain over the
 * labels sharing that VLAN (usually one).
 */
export class LabelTable {
  /** Labels by id (= position in the configured list). */
  readonly labels: readonly Label[];
  private readonly byName = new Map<string, number>();
  /** First label id on each VLAN, NO_LABEL if none (index = VID). */
  private readonly vlanHead = new Int32Array(VLAN_ID_MAX + 1).fill(NO_LABEL);
  /** Next label id on the same VLAN. */
  private readonly vlanNext: Int32Array;
  private readonly keyOf: Uint32Array;
  private readonly keyed: Uint8Array;

  /** Validates the list (names unique, VLAN 1–4094, key uint32/null, each (key, VLAN) pair unique); throws LabelConfigError. */
  constructor(specs: readonly LabelSpec[]) {
    if (!Array.isArray(specs)) throw new LabelConfigError('label_list_invalid', 'labels', specs, `${show(specs)} is not a list of labels`);
    if (specs.length > MAX_LABELS) {
      throw new LabelConfigError('label_list_invalid', 'labels', specs.length, `${specs.length} labels; at most ${MAX_LABELS} are supported`);
    }
    const n = specs.length;
    this.vlanNext = new Int32Array(n).fill(NO_LABEL);
    this.keyOf = new Uint32Array(n);
    this.keyed = new Uint8Array(n);
    const labels: Label[] = [];
    for (let i = 0; i < n; i++) {
      const l = checkLabel(specs[i], i);
      const prev = this.byName.get(l.name);
      if (prev !== undefined) {
        throw new LabelConfigError('label_name_duplicate', `labels[${i}].name`, l.name, `${show(l.name)} is already the name of labels[${prev}]`);
      }
      const clash = this.lookup(l.greKey, l.vlan);
      if (clash !== NO_LABEL) {
        const field = l.greKey === null ? 'greKey' : specs[i]!.greKey === undefined ? 'vlan' : 'greKey';
        const value = field === 'vlan' ? l.vlan : l.greKey;
        throw new LabelConfigError(
          'label_wire_id_duplicate',
          `labels[${i}].${field}`,
          value,
          `${wireName(l.greKey, l.vlan)} already names labels[${clash}] (${JSON.stringify(labels[clash]!.name)}); ` +
            `labels on one VLAN need different GRE keys (label ${JSON.stringify(l.name)})`,
        );
      }
      this.byName.set(l.name, i);
      this.keyOf[i] = l.greKey ?? 0;
      this.keyed[i] = l.greKey === null ? 0 : 1;
      this.vlanNext[i] = this.vlanHead[l.vlan]!;
      this.vlanHead[l.vlan] = i;
      labels.push(Object.freeze({ id: i, ...l }));
    }
    this.labels = Object.freeze(labels);
  }

  /** Number of labels. */
  get size(): number {
    return this.labels.length;
  }

  /** Label id of a name, or NO_LABEL. */
  idOf(name: string): number {
    return this.byName.get(name) ?? NO_LABEL;
  }

  /** The label with this id (undefined if out of range). */
  get(id: number): Label | undefined {
    return this.labels[id];
  }

  /** Label named on the wire by (GRE key or null when the K bit is clear, VLAN id), or NO_LABEL; never allocates. */
  lookup(greKey: number | null, vlan: number): number {
    if (!(vlan >= VLAN_ID_MIN && vlan <= VLAN_ID_MAX)) return NO_LABEL;
    if (greKey === null) {
      for (let id = this.vlanHead[vlan | 0]!; id !== NO_LABEL; id = this.vlanNext[id]!) {
        if (this.keyed[id] === 0) return id;
      }
    } else {
      const key = greKey >>> 0;
      if (key !== greKey) return NO_LABEL;
      for (let id = this.vlanHead[vlan | 0]!; id !== NO_LABEL; id = this.vlanNext[id]!) {
        if (this.keyed[id] === 1 && this.keyOf[id] === key) return id;
      }
    }
    return NO_LABEL;
  }
}

/** A guest NIC as configured: its label (by name), the MACs it owns, optionally its TAP/interface name. */
export interface DomainSpec {
  name: string;
  label: string;
  macs: readonly string[];
  interface?: string;
}

/** A validated domain; `macs` are 48-bit numbers (first octet most significant). */
export interface Domain {
  readonly id: number;
  readonly name: string;
  readonly labelId: number;
  readonly macs: readonly number[];
  readonly interface: string | null;
}

const MAC_TEXT_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}$/;
/** Linux interface names: at most 15 octets (IFNAMSIZ - 1), no '/', ':' or whitespace. */
const IFNAME_RE = /^[^\s/:]{1,15}$/;

/** Parses `aa:bb:cc:dd:ee:ff` (or with '-') into a 48-bit number; null if malformed. */
function parseMacText(text: string): number | null {
  if (!MAC_TEXT_RE.test(text)) return null;
  return parseInt(text.replace(/[:-]/g, ''), 16);
}

/** Formats a 48-bit number as `aa:bb:cc:dd:ee:ff` (control path). */
function formatMacNumber(mac: number): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

/** High 16 bits of the MAC at `off` (octets 0–1). */
function macHi(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

/** Low 32 bits of the MAC at `off` (octets 2–5) as a signed int32 (stays a small integer). */
function macLo(b: Uint8Array, off: number): number {
  return (b[off + 2]! << 24) | (b[off + 3]! << 16) | (b[off + 4]! << 8) | b[off + 5]!;
}

/** The 6 octets at `off` as a 48-bit number (control path and tests; may box a double). */
export function macAt(bytes: Uint8Array, off: number): number {
  return macHi(bytes, off) * 0x1_0000_0000 + (macLo(bytes, off) >>> 0);
}

/**
 * Local domains: id by name and interface, label of each, and the owner of
 * each MAC. MACs are unique across all local domains, so "MAC → owning
 * domain" has one answer; the MAC index is sorted (hi, lo) arrays searched
 * by bisection, allocation-free.
 */
export class DomainTable {
  readonly domains: readonly Domain[];
  /** Label id of each domain (index = domain id). */
  readonly labelOf: Int32Array;
  private readonly byName = new Map<string, number>();
  private readonly byInterface = new Map<string, number>();
  private readonly ofLabel: (readonly number[])[];
  /** Sorted MAC index: high 16 bits, low 32 bits (int32), owning domain. */
  private readonly macHiSorted: Int32Array;
  private readonly macLoSorted: Int32Array;
  private readonly macOwner: Int32Array;
  /** Per-domain MAC ranges in the per-domain arrays below (first index, count). */
  private readonly ownFirst: Int32Array;
  private readonly ownCount: Int32Array;
  private readonly ownHi: Int32Array;
  private readonly ownLo: Int32Array;

  /** Validates domains against the label table (names/interfaces unique, label known, MACs unicast and unique); throws LabelConfigError. */
  constructor(specs: readonly DomainSpec[], labels: LabelTable) {
    if (!Array.isArray(specs)) throw new LabelConfigError('domain_list_invalid', 'domains', specs, `${show(specs)} is not a list of domains`);
    const domains: Domain[] = [];
    const macOwner = new Map<number, { d: number; j: number }>();
    for (let i = 0; i < specs.length; i++) {
      const at = `domains[${i}]`;
      const s: unknown = specs[i];
      if (!isRecord(s)) throw new LabelConfigError('domain_list_invalid', at, s, `${show(s)} is not an object {name, label, macs, interface?}`);
      if (typeof s.name !== 'string' || !NAME_RE.test(s.name)) {
        throw new LabelConfigError('domain_name_invalid', `${at}.name`, s.name, `${show(s.name)} is not a valid domain name (${NAME_RULE})`);
      }
      const name = s.name;
      const who = ` (domain ${JSON.stringify(name)})`;
      const prev = this.byName.get(name);
      if (prev !== undefined) {
        throw new LabelConfigError('domain_name_duplicate', `${at}.name`, name, `${show(name)} is already the name of domains[${prev}]`);
      }
      const labelId = typeof s.label === 'string' ? labels.idOf(s.label) : NO_LABEL;
      if (labelId === NO_LABEL) {
        const known = labels.labels.map((l) => l.name).join(', ') || 'none';
        throw new LabelConfigError('domain_label_unknown', `${at}.label`, s.label, `${show(s.label)} is not a configured label (labels: ${known})${who}`);
      }
      if (!Array.isArray(s.macs) || s.macs.length === 0) {
        throw new LabelConfigError('domain_macs_invalid', `${at}.macs`, s.macs, `${show(s.macs)} is not a non-empty list of MAC addresses${who}`);
      }
      const macs: number[] = [];
      for (let j = 0; j < s.macs.length; j++) {
        const text: unknown = s.macs[j];
        const mac = typeof text === 'string' ? parseMacText(text) : null;
        if (mac === null) {
          throw new LabelConfigError('domain_mac_invalid', `${at}.macs[${j}]`, text, `${show(text)} is not a MAC address aa:bb:cc:dd:ee:ff${who}`);
        }
        if (Math.floor(mac / 0x100_0000_0000) & 1) {
          throw new LabelConfigError('domain_mac_invalid', `${at}.macs[${j}]`, text, `${show(text)} is a group (multicast/broadcast) address; a guest NIC owns unicast MACs only${who}`);
        }
        if (mac === 0) {
          throw new LabelConfigError('domain_mac_invalid', `${at}.macs[${j}]`, text, `${show(text)} is the all-zero MAC${who}`);
        }
        const other = macOwner.get(mac);
        if (other !== undefined) {
          throw new LabelConfigError(
            'domain_mac_duplicate',
            `${at}.macs[${j}]`,
            text,
            `${formatMacNumber(mac)} is already owned by domains[${other.d}].macs[${other.j}] (${JSON.stringify(domains[other.d]?.name ?? name)})${who}`,
          );
        }
        macOwner.set(mac, { d: i, j });
        macs.push(mac);
      }
      let ifname: string | null = null;
      if (s.interface !== undefined && s.interface !== null) {
        if (typeof s.interface !== 'string' || !IFNAME_RE.test(s.interface)) {
          throw new LabelConfigError(
            'domain_interface_invalid',
            `${at}.interface`,
            s.interface,
            `${show(s.interface)} is not an interface name (1-15 characters, no '/', ':' or spaces)${who}`,
          );
        }
        const usedBy = this.byInterface.get(s.interface);
        if (usedBy !== undefined) {
          throw new LabelConfigError('domain_interface_duplicate', `${at}.interface`, s.interface, `${show(s.interface)} is already the interface of domains[${usedBy}]${who}`);
        }
        ifname = s.interface;
        this.byInterface.set(ifname, i);
      }
      this.byName.set(name, i);
      domains.push(Object.freeze({ id: i, name, labelId, macs: Object.freeze(macs), interface: ifname }));
    }
    this.domains = Object.freeze(domains);

    const n = domains.length;
    this.labelOf = new Int32Array(n);
    this.ofLabel = labels.labels.map(() => []);
    this.ownFirst = new Int32Array(n);
    this.ownCount = new Int32Array(n);
    const total = macOwner.size;
    this.ownHi = new Int32Array(total);
    this.ownLo = new Int32Array(total);
    let k = 0;
    for (const d of domains) {
      this.labelOf[d.id] = d.labelId;
      (this.ofLabel[d.labelId] as number[]).push(d.id);
      this.ownFirst[d.id] = k;
      this.ownCount[d.id] = d.macs.length;
      for (const m of d.macs) {
        this.ownHi[k] = Math.floor(m / 0x1_0000_0000);
        this.ownLo[k] = m | 0;
        k++;
      }
    }
    for (const list of this.ofLabel) Object.freeze(list);
    const sorted = [...macOwner.entries()].sort((a, b) => a[0] - b[0]);
    this.macHiSorted = new Int32Array(total);
    this.macLoSorted = new Int32Array(total);
    this.macOwner = new Int32Array(total);
    sorted.forEach(([mac, o], i) => {
      this.macHiSorted[i] = Math.floor(mac / 0x1_0000_0000);
      this.macLoSorted[i] = mac | 0;
      this.macOwner[i] = o.d;
    });
  }

  /** Number of domains. */
  get size(): number {
    return this.domains.length;
  }

  /** Domain id of a name, or NO_DOMAIN. */
  idOf(name: string): number {
    return this.byName.get(name) ?? NO_DOMAIN;
  }

  /** Domain id attached to an interface (TAP) name, or NO_DOMAIN. */
  idOfInterface(ifname: string): number {
    return this.byInterface.get(ifname) ?? NO_DOMAIN;
  }

  /** The domain with this id (undefined if out of range). */
  get(id: number): Domain | undefined {
    return this.domains[id];
  }

  /** Ids of the local domains that carry a label (empty if none or out of range). */
  domainsOfLabel(labelId: number): readonly number[] {
    return this.ofLabel[labelId] ?? EMPTY;
  }

  /** Local domain owning the MAC at `bytes[macOffset..+6]`, or NO_DOMAIN; bisection, never allocates. */
  ownerOfMac(bytes: Uint8Array, macOffset: number): number {
    if (!(macOffset >= 0 && macOffset + MAC_BYTES <= bytes.length)) return NO_DOMAIN;
    const hi = macHi(bytes, macOffset);
    const lo = macLo(bytes, macOffset) >>> 0;
    let a = 0;
    let b = this.macOwner.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      const mh = this.macHiSorted[m]!;
      const ml = this.macLoSorted[m]! >>> 0;
      if (mh < hi || (mh === hi && ml < lo)) a = m + 1;
      else b = m;
    }
    return a < this.macOwner.length && this.macHiSorted[a] === hi && this.macLoSorted[a]! >>> 0 === lo ? this.macOwner[a]! : NO_DOMAIN;
  }

  /** True if domain `domainId` owns the MAC at `bytes[macOffset..+6]` (the send path's source check); never allocates. */
  ownsMac(domainId: number, bytes: Uint8Array, macOffset: number): boolean {
    if (!(domainId >= 0 && domainId < this.ownFirst.length)) return false;
    if (!(macOffset >= 0 && macOffset + MAC_BYTES <= bytes.length)) return false;
    const hi = macHi(bytes, macOffset);
    const lo = macLo(bytes, macOffset);
    const end = this.ownFirst[domainId]! + this.ownCount[domainId]!;
    for (let k = this.ownFirst[domainId]!; k < end; k++) {
      if (this.ownLo[k] === lo && this.ownHi[k] === hi) return true;
    }
    return false;
  }
}

const EMPTY: readonly number[] = Object.freeze([]);

/**
 * The owner of the last destination MAC looked up, for one pipeline run: domains do not
 * change during a run, so consecutive frames to the same MAC skip the lookup. reset() at
 * the start of every run.
 */
export class MacOwnerCache {
  private hi = -1; // no 16-bit MAC half is -1: nothing remembered
  private lo = 0;
  private id = NO_DOMAIN;

  /** Forgets the remembered MAC. */
  reset(): void {
    this.hi = -1;
  }

  /** domains.ownerOfMac(b, off), from the cache when the MAC is the last one asked for. */
  ownerOf(domains: DomainTable, b: Uint8Array, off: number): number {
    const hi = (b[off]! << 8) | b[off + 1]!;
    const lo = (b[off + 2]! << 24) | (b[off + 3]! << 16) | (b[off + 4]! << 8) | b[off + 5]!;
    if (hi !== this.hi || lo !== this.lo) {
      this.id = domains.ownerOfMac(b, off);
      this.hi = hi;
      this.lo = lo;
    }
    return this.id;
  }
}
