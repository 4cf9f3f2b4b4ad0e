/**
 * Runtime attachments: guest NICs added to a running daemon (`sectunnel attach`,
 * the libvirt hook) on top of its config file, without a restart. They are an
 * overlay: the daemon's config is the file's plus these, every reload (SIGHUP)
 * keeps them, and they are kept in `state.dir` so that a restarted daemon
 * attaches again the guests that are still running (docs/libvirt.md "Runtime attach").
 *
 * Stages of an attach: request shape (field and value named) → plan against the
 * file config and the current overlay (label by name or VLAN, MACs, interface
 * and name unique across both; the same request again changes nothing) → the
 * daemon applies the merged config through its reload path → the new overlay is
 * written (temporary file, fsync, rename). A detach removes entries by libvirt
 * domain (and interface).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonConfig, DaemonDomainConfig } from './config.js';
import { domainName } from './libvirt-domain.js';
import { macField, NAME_RE } from './replay-config.js';

/** A guest NIC attached at run time. */
export interface Attachment {
  /** The sectunnel domain name (status, audit, metrics). */
  readonly name: string;
  /** The libvirt domain it belongs to (what `detach --domain` names). */
  readonly domain: string;
  /** The host-side interface (libvirt's vnetN), reached with a packet socket. */
  readonly interface: string;
  readonly label: string;
  /** Lower case, ":"-separated. */
  readonly macs: readonly string[];
  /** ISO time of the attach (informational). */
  readonly attachedAt: string;
}

/** One NIC of an attach request: the label by name or by VLAN. */
export interface AttachNic {
  readonly interface: string;
  readonly label?: string;
  readonly vlan?: number;
  readonly macs: readonly string[];
  readonly name?: string;
}

/** `attach` control method parameters. `replace`: these NICs are the domain's whole set (others of it are detached). */
export interface AttachRequest {
  readonly domain: string;
  readonly interfaces: readonly AttachNic[];
  readonly replace: boolean;
}

/** `detach` control method parameters. `missingOk`: detaching nothing is not an error (the hook's `release`). */
export interface DetachRequest {
  readonly domain: string;
  readonly interface?: string;
  readonly missingOk: boolean;
}

export type AttachErrorCode = 'bad_params' | 'unknown_label' | 'conflict' | 'not_attached' | 'attach_failed' | 'state_io';

/** A refused attach or detach; the message names the field and the value. */
export class AttachError extends Error {
  override readonly name = 'AttachError';
  constructor(
    readonly code: AttachErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const IFNAME_RE = /^[^/:\s]{1,15}$/;
/** libvirt domain names: anything printable but "/" (virDomainDefParse refuses "/"); we bound the length. */
const LIBVIRT_NAME_RE = /^[^/\u0000-\u001f]{1,255}$/;
/** Upper bound on NICs per request and MACs per NIC. */
const MAX_NICS = 64;
const MAX_MACS = 64;

function bad(field: string, value: unknown, expected: string): AttachError {
  return new AttachError('bad_params', `${field}: ${JSON.stringify(value) ?? String(value)} is not valid: expected ${expected}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, known: readonly string[], where: string): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new AttachError('bad_params', `${where}${k}: unknown field (known: ${known.join(', ')})`);
}

/** Checks an interface name (1..15 octets, no "/", ":" or white space). */
export function checkInterfaceName(v: unknown, field = 'interface'): string {
  if (typeof v !== 'string' || !IFNAME_RE.test(v) || v === '.' || v === '..' || Buffer.byteLength(v) > 15) {
    throw bad(field, v, 'an interface name of 1..15 characters without "/", ":" or white space (libvirt\'s vnetN)');
  }
  return v;
}

/** Checks a MAC address; returns it lower case with ":". */
export function checkMac(v: unknown, field = 'mac'): string {
  const r = macField().safeParse(v);
  if (!r.success) throw bad(field, v, r.error.issues[0]?.message.replace(/^expected /, '') ?? 'a MAC address');
  return r.data;
}

/** Checks a libvirt domain name. */
export function checkDomainName(v: unknown, field = 'domain'): string {
  if (typeof v !== 'string' || !LIBVIRT_NAME_RE.test(v)) throw bad(field, v, 'a libvirt domain name (1..255 characters, no "/")');
  return v;
}

/** The shape of `attach` params; throws AttachError('bad_params'). */
export function parseAttachRequest(params: unknown): AttachRequest {
  if (!isRecord(params)) throw new AttachError('bad_params', 'attach: expected {"domain": NAME, "interfaces": [{"interface", "label" or "vlan", "macs"}], "replace"?}');
  onlyKeys(params, ['domain', 'interfaces', 'replace'], '');
  const domain = checkDomainName(params.domain);
  if (params.replace !== undefined && typeof params.replace !== 'boolean') throw bad('replace', params.replace, 'true or false');
  const list = params.interfaces;
  if (!Array.isArray(list) || list.length > MAX_NICS || (list.length === 0 && params.replace !== true)) {
    throw bad('interfaces', list, `a list of 1..${MAX_NICS} interfaces (empty only with replace)`);
  }
  const interfaces = list.map((n, i): AttachNic => {
    const at = `interfaces[${i}].`;
    if (!isRecord(n)) throw bad(`interfaces[${i}]`, n, 'an object {interface, label or vlan, macs, name?}');
    onlyKeys(n, ['interface', 'label', 'vlan', 'macs', 'name'], at);
    const iface = checkInterfaceName(n.interface, `${at}interface`);
    if (n.label === undefined && n.vlan === undefined) throw new AttachError('bad_params', `${at}label: missing: give the label by name (label) or by VLAN (vlan); there is no default label`);
    if (n.label !== undefined && (typeof n.label !== 'string' || !NAME_RE.test(n.label))) throw bad(`${at}label`, n.label, 'a label name (1..63 letters, digits, ".", "_" or "-")');
    if (n.vlan !== undefined && (typeof n.vlan !== 'number' || !Number.isInteger(n.vlan) || n.vlan < 1 || n.vlan > 4094)) throw bad(`${at}vlan`, n.vlan, 'a VLAN id in 1..4094');
    if (!Array.isArray(n.macs) || n.macs.length === 0 || n.macs.length > MAX_MACS) throw bad(`${at}macs`, n.macs, `a list of 1..${MAX_MACS} MAC addresses`);
    const macs = n.macs.map((m, j) => checkMac(m, `${at}macs[${j}]`));
    const dup = macs.find((m, j) => macs.indexOf(m) !== j);
    if (dup !== undefined) throw bad(`${at}macs`, dup, 'each MAC once');
    if (n.name !== undefined && (typeof n.name !== 'string' || !NAME_RE.test(n.name))) throw bad(`${at}name`, n.name, 'a domain name (1..63 letters, digits, ".", "_" or "-", starting with a letter or digit)');
    return {
      interface: iface,
      ...(n.label !== undefined && { label: n.label as string }),
      ...(n.vlan !== undefined && { vlan: n.vlan as number }),
      macs,
      ...(n.name !== undefined && { name: n.name as string }),
    };
  });
  const seen = new Set<string>();
  for (const [i, n] of interfaces.entries()) {
    if (seen.has(n.interface)) throw bad(`interfaces[${i}].interface`, n.interface, 'each interface once per request');
    seen.add(n.interface);
  }
  return { domain, interfaces, replace: params.replace === true };
}

/** The shape of `detach` params; throws AttachError('bad_params'). */
export function parseDetachRequest(params: unknown): DetachRequest {
  if (!isRecord(params)) throw new AttachError('bad_params', 'detach: expected {"domain": NAME, "interface"?: DEV, "missingOk"?: true}');
  onlyKeys(params, ['domain', 'interface', 'missingOk'], '');
  const domain = checkDomainName(params.domain);
  if (params.missingOk !== undefined && typeof params.missingOk !== 'boolean') throw bad('missingOk', params.missingOk, 'true or false');
  return { domain, ...(params.interface !== undefined && { interface: checkInterfaceName(params.interface) }), missingOk: params.missingOk === true };
}

/** What an attach or detach changes. */
export interface AttachPlan {
  /** The overlay after the change. */
  readonly next: readonly Attachment[];
  readonly added: readonly Attachment[];
  readonly removed: readonly Attachment[];
  /** Already attached exactly so (a repeated hook call). */
  readonly unchanged: readonly Attachment[];
}

function labelOf(n: AttachNic, cfg: DaemonConfig, at: string): string {
  const names = cfg.labels.map((l) => l.name);
  if (n.label !== undefined) {
    if (!names.includes(n.label)) throw new AttachError('unknown_label', `${at}label: "${n.label}" is not a label of this host (labels: ${names.join(', ')})`);
    if (n.vlan !== undefined) {
      const l = cfg.labels.find((x) => x.name === n.label)!;
      if (l.vlan !== n.vlan) throw new AttachError('bad_params', `${at}vlan: ${n.vlan} is not label "${n.label}"'s VLAN (${l.vlan}); give one of them`);
    }
    return n.label;
  }
  const by = cfg.labels.filter((l) => l.vlan === n.vlan);
  if (by.length === 0) throw new AttachError('unknown_label', `${at}vlan: no label has VLAN ${n.vlan} (labels: ${cfg.labels.map((l) => `${l.name} = ${l.vlan}`).join(', ')})`);
  if (by.length > 1) throw new AttachError('bad_params', `${at}vlan: VLAN ${n.vlan} is shared by labels ${by.map((l) => l.name).join(' and ')} (different GRE keys); give the label by name`);
  return by[0]!.name;
}

function sameAttachment(a: Attachment, b: Omit<Attachment, 'attachedAt'>): boolean {
  return a.name === b.name && a.domain === b.domain && a.interface === b.interface && a.label === b.label && a.macs.join() === b.macs.join();
}

/** A free sectunnel domain name for a NIC: the libvirt name, else NAME.INTERFACE. */
function nameFor(domain: string, iface: string, taken: (n: string) => boolean): string {
  const base = domainName(domain);
  if (!taken(base)) return base;
  return `${base.slice(0, 62 - iface.length)}.${iface}`;
}

/**
 * Plans an attach against the file config and the current overlay; throws AttachError naming
 * the field and value (unknown label, interface/MAC/name used by another domain).
 */
export function planAttach(req: AttachRequest, fileCfg: DaemonConfig, current: readonly Attachment[], attachedAt: string): AttachPlan {
  const mine = current.filter((a) => a.domain === req.domain);
  const others = current.filter((a) => a.domain !== req.domain);
  // Entries of this domain that the request does not name stay, unless `replace`.
  const keepMine = req.replace ? [] : mine.filter((a) => !req.interfaces.some((n) => n.interface === a.interface));
  const fixed = [...others, ...keepMine];
  const result: Attachment[] = [];
  const taken = (n: string) => fileCfg.domains.some((d) => d.name === n) || fixed.some((a) => a.name === n) || result.some((a) => a.name === n);
  for (const [i, n] of req.interfaces.entries()) {
    const at = `interfaces[${i}].`;
    const label = labelOf(n, fileCfg, at);
    const before = mine.find((a) => a.interface === n.interface);
    const name = n.name ?? (before !== undefined && !fixed.some((a) => a.name === before.name) ? before.name : nameFor(req.domain, n.interface, taken));
    const want = { name, domain: req.domain, interface: n.interface, label, macs: n.macs };
    checkFree(want, fileCfg, [...fixed, ...result], at);
    result.push(before !== undefined && sameAttachment(before, want) ? before : { ...want, attachedAt });
  }
  const next = [...others, ...keepMine, ...result];
  return {
    next,
    added: result.filter((a) => !current.includes(a)),
    removed: current.filter((a) => !next.includes(a)),
    unchanged: result.filter((a) => current.includes(a)),
  };
}

/** Plans a detach; throws AttachError('not_attached') when it names nothing (unless missingOk). */
export function planDetach(req: DetachRequest, current: readonly Attachment[]): AttachPlan {
  const removed = current.filter((a) => a.domain === req.domain && (req.interface === undefined || a.interface === req.interface));
  if (removed.length === 0 && !req.missingOk) {
    const attached = [...new Set(current.map((a) => `${a.domain} (${a.interface})`))].join(', ') || 'none';
    const what = req.interface === undefined ? `domain "${req.domain}"` : `interface "${req.interface}" of domain "${req.domain}"`;
    throw new AttachError('not_attached', `${req.interface === undefined ? 'domain' : 'interface'}: ${what} is not attached at run time (attached: ${attached}); domains of the config file are removed by editing it and reloading`);
  }
  return { next: current.filter((a) => !removed.includes(a)), added: [], removed, unchanged: [] };
}

/** Name, interface and MACs of `a` are not used by the file config or the other attachments. */
function checkFree(a: Omit<Attachment, 'attachedAt'>, fileCfg: DaemonConfig, others: readonly Attachment[], at: string): void {
  const fileIface = (d: DaemonDomainConfig) => d.attach?.interface ?? d.tap?.name;
  for (const [i, d] of fileCfg.domains.entries()) {
    const where = `config domains[${i}] ("${d.name}")`;
    if (d.name === a.name) throw new AttachError('conflict', `${at}name: "${a.name}" is already the name of ${where}; give another with name`);
    if (fileIface(d) === a.interface) throw new AttachError('conflict', `${at}interface: "${a.interface}" is already used by ${where}`);
    const mac = a.macs.find((m) => d.macs.includes(m));
    if (mac !== undefined) throw new AttachError('conflict', `${at}macs: ${mac} is already owned by ${where}; a MAC belongs to one domain`);
  }
  for (const o of others) {
    const where = `domain "${o.domain}" (attached as "${o.name}")`;
    if (o.interface === a.interface) throw new AttachError('conflict', `${at}interface: "${a.interface}" is already attached to ${where}; detach it first`);
    if (o.name === a.name) throw new AttachError('conflict', `${at}name: "${a.name}" is already the name of ${where}; give another with name`);
    const mac = a.macs.find((m) => o.macs.includes(m));
    if (mac !== undefined) throw new AttachError('conflict', `${at}macs: ${mac} is already owned by ${where}; a MAC belongs to one domain`);
  }
}

/**
 * Splits an overlay into the entries that fit `fileCfg` and those that no longer do (label
 * gone, interface/MAC/name taken by the file), with why — at start and after a reload.
 */
export function fitAttachments(fileCfg: DaemonConfig, list: readonly Attachment[]): { ok: Attachment[]; dropped: { attachment: Attachment; why: string }[] } {
  const ok: Attachment[] = [];
  const dropped: { attachment: Attachment; why: string }[] = [];
  for (const a of list) {
    try {
      if (!fileCfg.labels.some((l) => l.name === a.label)) throw new AttachError('unknown_label', `label: "${a.label}" is not a label of this host any more`);
      checkFree(a, fileCfg, ok, '');
      ok.push(a);
    } catch (e) {
      dropped.push({ attachment: a, why: (e as Error).message });
    }
  }
  return { ok, dropped };
}

/** The daemon config with the overlay's domains after the file's (packet-socket attachments). */
export function mergeAttachments(fileCfg: DaemonConfig, list: readonly Attachment[]): DaemonConfig {
  if (list.length === 0) return fileCfg;
  const extra = list.map((a): DaemonDomainConfig => ({ name: a.name, label: a.label, macs: a.macs, attach: { interface: a.interface } }));
  return { ...fileCfg, domains: [...fileCfg.domains, ...extra] };
}

/** The file an overlay is kept in: `attachments-HOST.json` in state.dir (per host, so hosts may share a folder). */
export function attachmentsFile(cfg: DaemonConfig): string {
  return join(cfg.state.dir, `attachments-${cfg.host.name}.json`);
}

const FORMAT = 'sectunnel-attachments';

/** Reads a kept overlay; a missing file is an empty one. Throws AttachError('state_io') naming the file. */
export function readAttachments(file: string): Attachment[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new AttachError('state_io', `${file}: cannot read the runtime attachments: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new AttachError('state_io', `${file}: not JSON; move it aside to start without the runtime attachments it held`);
  }
  if (!isRecord(doc) || doc.format !== FORMAT || doc.version !== 1 || !Array.isArray(doc.attachments)) {
    throw new AttachError('state_io', `${file}: not a sectunnel attachments file (expected {"format": "${FORMAT}", "version": 1, "attachments": […]})`);
  }
  return doc.attachments.map((a, i): Attachment => {
    try {
      if (!isRecord(a) || typeof a.name !== 'string' || !NAME_RE.test(a.name) || typeof a.label !== 'string' || !Array.isArray(a.macs)) throw new Error('expected {name, domain, interface, label, macs, attachedAt}');
      return {
        name: a.name,
        domain: checkDomainName(a.domain),
        interface: checkInterfaceName(a.interface),
        label: a.label,
        macs: a.macs.map((m) => checkMac(m)),
        attachedAt: typeof a.attachedAt === 'string' ? a.attachedAt : '',
      };
    } catch (e) {
      throw new AttachError('state_io', `${file}: attachments[${i}]: ${(e as Error).message}`);
    }
  });
}

/** Writes an overlay durably (temporary file, fsync, rename, fsync of the folder); throws AttachError('state_io'). */
export function writeAttachments(file: string, dir: string, list: readonly Attachment[]): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const text = JSON.stringify({ format: FORMAT, version: 1, attachments: list }, null, 2) + '\n';
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing written
    }
    throw new AttachError('state_io', `${file}: cannot write the runtime attachments: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
