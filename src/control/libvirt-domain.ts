/**
 * The guest NICs of a libvirt domain definition that belong to a sectunnel
 * network, each with its label (docs/libvirt.md "Domains").
 *
 * Stages: `<domain>` name and uuid → our `<metadata>` labels (per interface,
 * then for the whole domain) → the SELinux `<seclabel>` → each
 * `<devices>/<interface>`: on the network? (`<source network>` = the network's
 * name, `<source bridge>` = its bridge, or a `type='ethernet'` interface the
 * metadata labels) → target dev and MAC → label (metadata for the interface,
 * metadata for the domain, then the seclabel's `<label>`: a context looked up
 * in the labels' `context`, or a label name) → a sectunnel domain name.
 * There is no default label: an interface on the network without one is an
 * error (default deny). Only what sectunnel needs is read; the rest of the
 * domain XML (disks, CPUs, …) is not looked at, except our own metadata,
 * which is read strictly.
 */
import { attrOf, attrPath, checkShape, kid, kids, rootNode, XmlProblems, type XNode } from './libvirt-walk.js';
import { SECTUNNEL_XMLNS, unknownLabel, type NetworkLabel } from './libvirt-network.js';
import { macField, NAME_RE } from './replay-config.js';
import { childElements, directText, type XmlDocument } from './xml.js';

/** What a domain XML is read against: the network's name, bridge and labels. */
export interface LibvirtNetworkRef {
  readonly name: string;
  readonly bridge?: string;
  readonly labels: readonly NetworkLabel[];
}

/** Where an interface's label came from. */
export type LabelSource = 'metadata-interface' | 'metadata' | 'seclabel';

/** A guest NIC of a domain on the network: becomes one sectunnel domain. */
export interface LibvirtInterface {
  /** The sectunnel domain name: the libvirt name, plus ".N" when the domain has several NICs on the network. */
  readonly name: string;
  readonly label: string;
  readonly labelFrom: LabelSource;
  /** The libvirt domain's name and uuid. */
  readonly domain: string;
  readonly uuid?: string;
  /** 0-based position among the domain's `<interface>` elements. */
  readonly index: number;
  /** `<target dev>`: the host side of the NIC (libvirt's vnetN). */
  readonly dev: string;
  /** Lower case, ":"-separated. */
  readonly mac: string;
  readonly file: string;
  /** `domain/devices/interface[2]`. */
  readonly path: string;
}

/** What one domain XML contributes. */
export interface LibvirtDomain {
  readonly domain: string;
  readonly uuid?: string;
  readonly file: string;
  readonly interfaces: readonly LibvirtInterface[];
}

interface MetaLabel {
  readonly label: string;
  readonly node: XNode;
  /** The `interface` attribute: a MAC, target dev or alias name; undefined for the whole domain. */
  readonly spec?: string;
}

interface Nic {
  readonly node: XNode;
  readonly index: number;
  readonly type?: string;
  readonly network?: string;
  readonly bridge?: string;
  readonly dev?: string;
  readonly mac?: string;
  readonly alias?: string;
  readonly isolated: boolean;
}

const IFNAME_RE = /^[^/:\s]{1,15}$/;

/**
 * Reads a domain definition (live XML: `virsh dumpxml`, or what libvirt hands
 * its hooks) against a network. Throws ConfigError (CONFIG_INVALID) listing
 * every problem; appends notes (skipped interfaces, bridged ports) to `warnings`.
 */
export function readLibvirtDomain(doc: XmlDocument, file: string, net: LibvirtNetworkRef, warnings: string[]): LibvirtDomain {
  const p = new XmlProblems(file);
  const root = rootNode(doc.root);
  if (root.el.local !== 'domain' || root.el.ns !== '') {
    p.add(root.path, `the root element is <${root.el.name}>; expected a libvirt <domain> definition`, root.el);
    p.throwIfAny();
  }
  const nameNode = kid(root, 'name', p);
  const domain = nameNode === undefined ? '' : directText(nameNode.el).trim();
  if (domain === '') p.add(`${root.path}/name`, 'missing: expected the domain name', nameNode?.el ?? root.el);
  const uuidNode = kid(root, 'uuid', p);
  const uuid = uuidNode === undefined ? undefined : directText(uuidNode.el).trim().toLowerCase();
  p.throwIfAny();

  const who = `domain "${domain}"`;
  const nics = readNics(root, p);
  const meta = readMetadata(root, p);
  const note = (msg: string) => warnings.push(`${file}: ${who}: ${msg}`);

  // Per-interface metadata names an interface by MAC, target dev or alias.
  const forNic = new Map<Nic, MetaLabel>();
  let forDomain: MetaLabel | undefined;
  for (const m of meta) {
    if (m.spec === undefined) {
      if (forDomain !== undefined) p.add(m.node.path, `${who}: a second domain-wide label (the first is at ${forDomain.node.path}); give per-interface labels an interface='MAC' attribute`, m.node.el);
      else forDomain = m;
      continue;
    }
    const spec = m.spec;
    const mac = macField().safeParse(spec);
    const matches = nics.filter((n) => (mac.success && n.mac === mac.data) || n.dev === spec || n.alias === spec);
    if (matches.length !== 1) {
      const list = nics.map(describeNic).join('; ') || 'none';
      p.add(attrPath(m.node, 'interface'), `"${spec}" is not valid: ${matches.length === 0 ? 'it names no interface' : 'it names several interfaces'} of ${who}; expected a MAC address, target dev or alias name (interfaces: ${list})`, attrOf(m.node, 'interface'));
      continue;
    }
    const first = forNic.get(matches[0]!);
    if (first !== undefined) p.add(m.node.path, `${who}: interface ${describeNic(matches[0]!)} already has a label at ${first.node.path}`, m.node.el);
    else forNic.set(matches[0]!, m);
  }

  const seclabel = readSeclabel(root, p);
  const labelNames = net.labels.map((l) => l.name);
  const on: { nic: Nic; label: string; labelFrom: LabelSource }[] = [];
  for (const nic of nics) {
    const onNetwork =
      (nic.type === 'network' && nic.network === net.name) ||
      (nic.type === 'bridge' && net.bridge !== undefined && nic.bridge === net.bridge) ||
      (nic.type === 'ethernet' && (forNic.has(nic) || forDomain !== undefined));
    if (!onNetwork) {
      const where = nic.network !== undefined ? `network '${nic.network}'` : nic.bridge !== undefined ? `bridge '${nic.bridge}'` : `type '${nic.type ?? '?'}'`;
      const why = nic.type === 'ethernet' ? ' and has no sectunnel label in <metadata>' : '';
      note(`interface ${describeNic(nic)} (${where}) is not on network ${net.name}${why}; skipped`);
      if (forNic.has(nic)) note(`the <metadata> label at ${forNic.get(nic)!.node.path} names interface ${describeNic(nic)}, which is not on network ${net.name}; ignored`);
      continue;
    }
    const what = `${who}, interface ${describeNic(nic)}`;
    if (nic.dev === undefined) {
      p.add(
        nic.node.path,
        `${what}: no <target dev='…'/>: libvirt names the host side (vnetN) when it starts the domain; use the live XML of the running domain (virsh dumpxml ${domain})`,
        nic.node.el,
      );
    } else if (!IFNAME_RE.test(nic.dev)) {
      p.add(`${nic.node.path}/target/@dev`, `"${nic.dev}" is not valid: expected an interface name of 1..15 characters without "/", ":" or white space`, nic.node.el);
    }
    if (nic.mac === undefined) p.add(nic.node.path, `${what}: no valid <mac address='…'/>: sectunnel admits frames only from the MACs a domain owns`, nic.node.el);

    const m = forNic.get(nic) ?? forDomain;
    if (m !== undefined) {
      if (!labelNames.includes(m.label)) {
        p.add(m.node.path, `${who}: ${unknownLabel(m.label, labelNames)}`, m.node.el);
        continue;
      }
      on.push({ nic, label: m.label, labelFrom: m === forDomain ? 'metadata' : 'metadata-interface' });
      continue;
    }
    if (seclabel === undefined) {
      const dacOnly = kids(root, 'seclabel').length > 0 ? " (its <seclabel>s have no SELinux <label>; model='dac' user:group labels name no label)" : '';
      p.add(
        nic.node.path,
        `${what}: no label: the domain has no <seclabel> with a <label>${dacOnly} and no <sectunnel:label xmlns:sectunnel='${SECTUNNEL_XMLNS}'> in its <metadata>; sectunnel has no default label (default deny)`,
        nic.node.el,
      );
      continue;
    }
    const label = labelOfSeclabel(seclabel, net.labels, who, p);
    if (label !== undefined) on.push({ nic, label, labelFrom: 'seclabel' });
  }
  p.throwIfAny();

  const base = domainName(domain);
  const interfaces = on.map(({ nic, label, labelFrom }): LibvirtInterface => {
    if (nic.type !== 'ethernet' && !nic.isolated) {
      note(
        `interface ${describeNic(nic)} is a port of a bridge without <port isolated='yes'/>: the bridge forwards between its ports by itself, around sectunnel's label checks; add <port isolated='yes'/> to the interface, or use <interface type='ethernet'>`,
      );
    }
    return {
      name: on.length > 1 ? `${base.slice(0, 63 - String(nic.index).length - 1)}.${nic.index}` : base,
      label,
      labelFrom,
      domain,
      ...(uuid !== undefined && { uuid }),
      index: nic.index,
      dev: nic.dev!,
      mac: nic.mac!,
      file,
      path: nic.node.path,
    };
  });
  if (interfaces.length === 0) note(`no interface on network ${net.name}; nothing to add`);
  return { domain, ...(uuid !== undefined && { uuid }), file, interfaces };
}

/** A sectunnel name for a libvirt domain name: characters outside [A-Za-z0-9._-] become "-", at most 63. */
export function domainName(libvirtName: string): string {
  let n = libvirtName.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  if (n === '') n = 'domain';
  n = n.slice(0, 63);
  return NAME_RE.test(n) ? n : 'domain';
}

function describeNic(n: Nic): string {
  const parts = [n.dev, n.mac].filter((x) => x !== undefined);
  return parts.length === 0 ? `#${n.index + 1}` : parts.join(' ');
}

function readNics(root: XNode, p: XmlProblems): Nic[] {
  const devices = kid(root, 'devices', p);
  if (devices === undefined) return [];
  return kids(devices, 'interface').map((node, index): Nic => {
    const one = (local: string) => kids(node, local)[0];
    const source = one('source');
    const target = one('target');
    const macNode = one('mac');
    const alias = one('alias');
    const port = one('port');
    const macText = macNode === undefined ? undefined : attrOf(macNode, 'address')?.value;
    let mac: string | undefined;
    if (macText !== undefined) {
      const r = macField().safeParse(macText);
      if (r.success) mac = r.data;
      else p.add(`${macNode!.path}/@address`, `${JSON.stringify(macText)} is not valid: ${r.error.issues[0]?.message ?? 'expected a MAC address'}`, attrOf(macNode!, 'address'));
    }
    const str = (n: XNode | undefined, a: string) => (n === undefined ? undefined : attrOf(n, a)?.value);
    return {
      node,
      index,
      ...(attrOf(node, 'type') !== undefined && { type: attrOf(node, 'type')!.value }),
      ...(str(source, 'network') !== undefined && { network: str(source, 'network') }),
      ...(str(source, 'bridge') !== undefined && { bridge: str(source, 'bridge') }),
      ...(str(target, 'dev') !== undefined && { dev: str(target, 'dev') }),
      ...(mac !== undefined && { mac }),
      ...(str(alias, 'name') !== undefined && { alias: str(alias, 'name') }),
      isolated: str(port, 'isolated') === 'yes',
    };
  });
}

/** Our elements in `<metadata>`: `<sectunnel:label [interface='…']>NAME</…>`, directly or inside one `<sectunnel:labels>`. */
function readMetadata(root: XNode, p: XmlProblems): MetaLabel[] {
  const metadata = kid(root, 'metadata', p);
  if (metadata === undefined) return [];
  const out: MetaLabel[] = [];
  const readLabel = (n: XNode) => {
    checkShape(n, p, ['interface'], [], { ns: n.el.ns, text: true });
    const label = directText(n.el).trim();
    if (!NAME_RE.test(label)) {
      p.add(n.path, `${JSON.stringify(label)} is not valid: expected a label name (1..63 letters, digits, ".", "_" or "-")`, n.el);
      return;
    }
    const spec = attrOf(n, 'interface')?.value;
    out.push({ label, node: n, ...(spec !== undefined && { spec }) });
  };
  for (const c of childElements(metadata.el)) {
    if (c.ns !== SECTUNNEL_XMLNS) continue; // other applications' metadata
    if (c.local === 'label') continue;
    if (c.local === 'labels') continue;
    p.add(`${metadata.path}/${c.name}`, `unknown element <${c.name}> in the sectunnel namespace (known elements: <label>, <labels>)`, c);
  }
  for (const n of kids(metadata, 'label', SECTUNNEL_XMLNS)) readLabel(n);
  const wrappers = kids(metadata, 'labels', SECTUNNEL_XMLNS);
  for (const w of wrappers.slice(1)) p.add(w.path, `a second <${w.el.name}>; <metadata> has at most one`, w.el);
  const w = wrappers[0];
  if (w !== undefined) {
    // `virsh metadata --set` puts only the element it stores in our namespace: its <label>s may have none.
    checkShape(w, p, [], ['label'], { ns: SECTUNNEL_XMLNS, skip: (c) => c.local === 'label' && c.ns === '' });
    const labels = childElements(w.el).filter((c) => c.local === 'label' && (c.ns === SECTUNNEL_XMLNS || c.ns === ''));
    labels.forEach((el, k) => readLabel({ el, path: `${w.path}/${el.name}${labels.length > 1 ? `[${k + 1}]` : ''}` }));
  }
  return out;
}

interface Seclabel {
  readonly node: XNode;
  readonly labelNode: XNode;
  readonly value: string;
  readonly dynamic: boolean;
}

/** The SELinux seclabel with a `<label>`: model 'selinux' (or no model), type not 'none'. */
function readSeclabel(root: XNode, p: XmlProblems): Seclabel | undefined {
  for (const n of kids(root, 'seclabel')) {
    const model = attrOf(n, 'model')?.value;
    const type = attrOf(n, 'type')?.value;
    if ((model !== undefined && model !== 'selinux') || type === 'none') continue;
    const labelNode = kid(n, 'label', p);
    if (labelNode === undefined) continue;
    const value = directText(labelNode.el).trim();
    if (value === '') {
      p.add(labelNode.path, 'missing: expected an SELinux context or a label name', labelNode.el);
      continue;
    }
    return { node: n, labelNode, value, dynamic: type === 'dynamic' || type === undefined };
  }
  return undefined;
}

/** The label a seclabel names: by context (it has ":") or by name. */
function labelOfSeclabel(s: Seclabel, labels: readonly NetworkLabel[], who: string, p: XmlProblems): string | undefined {
  if (s.value.includes(':')) {
    const l = labels.find((x) => x.context === s.value);
    if (l !== undefined) return l.name;
    const known = labels.filter((x) => x.context !== undefined).map((x) => `${x.name} = ${x.context}`);
    const dynamic = s.dynamic
      ? `; this seclabel is type='dynamic': libvirt picks its categories at random at each start, so no label table can name it — give the domain a type='static' seclabel or a sectunnel label in <metadata>`
      : '';
    p.add(s.labelNode.path, `${who}: no label has context "${s.value}" (contexts: ${known.join('; ') || 'no label has a context'})${dynamic}`, s.labelNode.el);
    return undefined;
  }
  const names = labels.map((x) => x.name);
  if (names.includes(s.value)) return s.value;
  p.add(s.labelNode.path, `${who}: ${unknownLabel(s.value, names)}`, s.labelNode.el);
  return undefined;
}
