/**
 * A sectunnel network definition in libvirt style (docs/libvirt.md), in either
 * of the two forms of the Trusted Virtual Domains proposal:
 *
 *   <network type='tunneled'>  … <tunnel type='ipsec'> labels, peers (each
 *       with the labels it hosts), pre-shared key, policy </tunnel></network>
 *   <sectunnel type='ipsec'>   … labels, peers, <sa> (an SA pair between two
 *       peers: handshake-keyed, or static keys from secrets), <sp> (labels or
 *       VLANs → SA), policy </sectunnel>
 *
 * Stages: root → form → shared parts (name, uuid, bridge, algorithm, labels,
 * peers, secret, policy) → form-specific parts (peer label sets, or SAs and
 * SPs) → cross-checks (names, addresses, (GRE key, VLAN) pairs, contexts,
 * references). The result names hosts, not "this host": libvirt.ts picks the
 * local host and builds its daemon config. Every problem names the element
 * path and attribute; all problems of the file are reported together.
 */
import { AEAD_ALGORITHMS, type AeadAlgorithm } from '../crypto/aead.js';
import { didYouMean } from './config-errors.js';
import {
  attrOf,
  attrPath,
  attrValue,
  checkShape,
  kid,
  kids,
  requiredKid,
  rootNode,
  splitList,
  textValue,
  XmlProblems,
  type Parsed,
  type XNode,
} from './libvirt-walk.js';
import { addressFamily, addressField, defaultGreKey, NAME_RE, spiField } from './replay-config.js';
import type { XmlDocument, XmlPosition } from './xml.js';

/** Our XML namespace (domain `<metadata>`). */
export const SECTUNNEL_XMLNS = 'https://sectunnel.dev/xmlns/1';

/** Where a secret's bytes are: a libvirt secret (by UUID, in the secrets folder) or a file. */
export type SecretRef = ({ readonly kind: 'uuid'; readonly uuid: string } | { readonly kind: 'file'; readonly file: string }) & {
  /** Element path of the `<secret>`, for messages. */
  readonly path: string;
  readonly at: XmlPosition;
};

/** A label as written (greKey: number, null for "none", undefined for the default). */
export interface NetworkLabel {
  readonly name: string;
  readonly vlan: number;
  readonly greKey?: number | null;
  readonly context?: string;
}

/** A host of the network. */
export interface NetworkPeer {
  readonly name: string;
  /** Normalised (IPv6 in RFC 5952 form). */
  readonly address: string;
  readonly port?: number;
  /** Base64, as `sectunnel pubkey` prints it. */
  readonly publicKey?: string;
  /** Tunnel form: the labels this host carries (undefined: every label of the network). */
  readonly labels?: readonly string[];
  readonly path: string;
  readonly at: XmlPosition;
}

/** One direction of a static SA: the SPI `peer` receives on, and where its KEYMAT is. */
export interface NetworkInbound {
  readonly peer: string;
  readonly spi: number;
  readonly secret: SecretRef;
}

/** Sectunnel form: an SA pair between two peers. */
export interface NetworkSa {
  readonly id: string;
  /** The two peers' names. */
  readonly peers: readonly [string, string];
  /** Labels of the pair: its own `labels` plus those its `<sp>`s select, in network order. */
  readonly labels: readonly string[];
  /** Static SAs only (the handshake uses the network's). */
  readonly algorithm?: AeadAlgorithm;
  readonly esn?: boolean;
  /** Handshake SAs: the pre-shared key of this pair, instead of the network's. */
  readonly secret?: SecretRef;
  /** Static SAs: both directions; absent: keyed by the handshake. */
  readonly inbound?: readonly [NetworkInbound, NetworkInbound];
  readonly path: string;
  readonly at: XmlPosition;
}

/** A parsed network definition, in either form. */
export interface LibvirtNetwork {
  readonly file: string;
  readonly form: 'tunnel' | 'sectunnel';
  /** The libvirt network name: domain interfaces with `<source network=…>` naming it belong to it. */
  readonly name: string;
  readonly uuid?: string;
  /** Interfaces with `<source bridge=…>` naming it belong to it. */
  readonly bridge?: string;
  readonly algorithm?: AeadAlgorithm;
  readonly transport?: 'udp' | 'esp';
  readonly port?: number;
  readonly labels: readonly NetworkLabel[];
  readonly peers: readonly NetworkPeer[];
  /** The network's pre-shared key (tunnel: every peer's default; sectunnel: every handshake SA's default). */
  readonly secret?: SecretRef;
  readonly sas: readonly NetworkSa[];
  readonly policy: readonly { readonly from: string; readonly to: string }[];
  /** Path of the element holding the peers (`network/tunnel` or `sectunnel`), for messages. */
  readonly peersPath: string;
}

// ---------------------------------------------------------------------------
// Value checks: each returns { value } or the text completing "expected …".

const NAME_TEXT = 'a name of 1..63 letters, digits, ".", "_" or "-", starting with a letter or digit';
const CONTEXT_RE = /^[^:\s]+:[^:\s]+:[^:\s]+:\S+$/;
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const PUBLIC_KEY_RE = /^[A-Za-z0-9+/]{43}=$/;

/** A sectunnel name (labels, peers, SA ids). */
export function nameP(v: string): Parsed<string> {
  return NAME_RE.test(v) ? { value: v } : NAME_TEXT;
}

function intP(min: number, max: number, extra = ''): (v: string) => Parsed<number> {
  return (v) => {
    const n = /^[0-9]{1,10}$/.test(v) ? Number(v) : NaN;
    return n >= min && n <= max ? { value: n } : `expected an integer in ${min}..${max}${extra}`;
  };
}

const vlanP = intP(1, 4094, ' (an 802.1Q VLAN id)');
const portP = intP(1, 65535);

function greKeyP(v: string): Parsed<number | null> {
  if (v === 'none') return { value: null };
  const n = /^[0-9]{1,10}$/.test(v) ? Number(v) : /^0x[0-9a-fA-F]{1,8}$/.test(v) ? parseInt(v.slice(2), 16) : NaN;
  return n >= 0 && n <= 0xffffffff ? { value: n } : 'expected an integer in 0..4294967295 (decimal or 0x hex), or "none" for no GRE key';
}

function contextP(v: string): Parsed<string> {
  return CONTEXT_RE.test(v) ? { value: v } : 'expected an SELinux context "user:role:type:level" like "system_u:system_r:svirt_t:s0:c100"';
}

function addressP(v: string): Parsed<string> {
  const r = addressField().safeParse(v);
  return r.success ? { value: r.data } : (r.error.issues[0]?.message ?? 'expected an IP address');
}

function publicKeyP(v: string): Parsed<string> {
  return PUBLIC_KEY_RE.test(v) ? { value: v } : 'expected an X25519 public key: 32 octets in base64 (44 characters ending in "=", as `sectunnel pubkey` prints)';
}

function algorithmP(v: string): Parsed<AeadAlgorithm> {
  return (AEAD_ALGORITHMS as readonly string[]).includes(v) ? { value: v as AeadAlgorithm } : `expected one of ${AEAD_ALGORITHMS.join(', ')}`;
}

function transportP(v: string): Parsed<'udp' | 'esp'> {
  return v === 'udp' || v === 'esp' ? { value: v } : 'expected "udp" (ESP in UDP, RFC 3948) or "esp" (IP protocol 50)';
}

function uuidP(v: string): Parsed<string> {
  return UUID_RE.test(v) ? { value: v.toLowerCase() } : 'expected a UUID like "0d5f4f57-4fd8-4d48-a0a2-5b8e8f5e0c31"';
}

/** yes/no, as libvirt writes booleans. */
export function yesNoP(v: string): Parsed<boolean> {
  return v === 'yes' ? { value: true } : v === 'no' ? { value: false } : 'expected "yes" or "no"';
}

function spiP(v: string): Parsed<number> {
  const r = spiField().safeParse(/^[0-9]{1,10}$/.test(v) ? Number(v) : v);
  return r.success ? { value: r.data } : (r.error.issues[0]?.message ?? 'expected an SPI');
}

function absoluteFileP(v: string): Parsed<string> {
  return v.startsWith('/') && !v.includes('\0') ? { value: v } : 'expected an absolute path (starting with "/")';
}

function nonEmptyP(v: string): Parsed<string> {
  return v !== '' && !v.includes('/') ? { value: v } : 'expected a non-empty name without "/"';
}

/** A list of names, separated by white space or commas: non-empty, each once. */
function nameListP(v: string): Parsed<string[]> {
  const names = splitList(v);
  if (names.length === 0) return 'expected a non-empty list of names separated by spaces or commas';
  for (const n of names) if (!NAME_RE.test(n)) return `expected a list of names separated by spaces or commas; "${n}" is not ${NAME_TEXT}`;
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  return dup === undefined ? { value: names } : `expected each name once; "${dup}" is listed twice`;
}

// ---------------------------------------------------------------------------
// The definition.

/** Parses a network definition of either form; throws ConfigError (CONFIG_INVALID) listing every problem. */
export function parseLibvirtNetwork(doc: XmlDocument, file: string): LibvirtNetwork {
  const p = new XmlProblems(file);
  const root = rootNode(doc.root);
  const net = readNetwork(root, p, file);
  p.throwIfAny();
  return net!;
}

function readNetwork(root: XNode, p: XmlProblems, file: string): LibvirtNetwork | undefined {
  const type = attrOf(root, 'type');
  if (root.el.ns !== '' || (root.el.local !== 'network' && root.el.local !== 'sectunnel')) {
    p.add(root.path, `the root element is <${root.el.name}>; expected <network type='tunneled'> or <sectunnel type='ipsec'> (docs/libvirt.md)`, root.el);
    return undefined;
  }
  const tunnelForm = root.el.local === 'network';
  const wantType = tunnelForm ? 'tunneled' : 'ipsec';
  if (type?.value !== wantType) {
    const why = tunnelForm ? "; libvirt's own networks (NAT, routed, bridged) carry no labels: a sectunnel network is type='tunneled'" : '';
    if (type === undefined) p.add(attrPath(root, 'type'), `missing: expected type='${wantType}'${why}`, root.el);
    else p.invalid(root, type, `expected "${wantType}"${why}`);
    return undefined;
  }

  const common = ['name', 'uuid', 'title', 'description', 'bridge'];
  let body: XNode;
  if (tunnelForm) {
    checkShape(root, p, ['type'], [...common, 'tunnel']);
    const tunnel = requiredKid(root, 'tunnel', p, "a <tunnel type='ipsec'> element with the labels, peers and keys");
    if (tunnel === undefined) return undefined;
    const tt = attrOf(tunnel, 'type');
    if (tt?.value !== 'ipsec') {
      if (tt === undefined) p.add(attrPath(tunnel, 'type'), "missing: expected type='ipsec'", tunnel.el);
      else p.invalid(tunnel, tt, 'expected "ipsec"');
    }
    checkShape(tunnel, p, ['type', 'algorithm', 'transport', 'port'], ['secret', 'label', 'peer', 'policy']);
    body = tunnel;
  } else {
    checkShape(root, p, ['type', 'algorithm', 'transport', 'port'], [...common, 'secret', 'label', 'peer', 'sa', 'sp', 'policy']);
    body = root;
  }

  const nameNode = requiredKid(root, 'name', p, 'the network name, as domain interfaces name it in <source network=…/>');
  const name = nameNode === undefined ? undefined : textValue(nameNode, p, nonEmptyP);
  const uuidNode = kid(root, 'uuid', p);
  const uuid = uuidNode === undefined ? undefined : textValue(uuidNode, p, uuidP);
  for (const k of ['title', 'description']) {
    const n = kid(root, k, p);
    if (n !== undefined) checkShape(n, p, [], [], { text: true });
  }
  const bridgeNode = kid(root, 'bridge', p);
  let bridge: string | undefined;
  if (bridgeNode !== undefined) {
    checkShape(bridgeNode, p, ['name'], []);
    bridge = attrValue(bridgeNode, 'name', p, nonEmptyP, 'the bridge name, as domain interfaces name it in <source bridge=…/>');
  }

  const algorithm = attrValue(body, 'algorithm', p, algorithmP);
  const transport = attrValue(body, 'transport', p, transportP);
  const port = attrValue(body, 'port', p, portP);
  const secretNode = kid(body, 'secret', p);
  const secret = secretNode === undefined ? undefined : readSecret(secretNode, p);

  const { labels, declared } = readLabels(body, p);
  // References resolve against every declared name: a label with a bad vlan is reported once, at the label.
  const labelNames = new Map(declared.map((l, i) => [l, i]));
  const peers = readPeers(body, p, tunnelForm, labelNames);
  const sas = tunnelForm ? [] : readSas(body, p, labels, labelNames, peers, algorithm);
  const policy = readPolicy(body, p, labelNames);
  if (name === undefined) return undefined;
  return {
    file,
    form: tunnelForm ? 'tunnel' : 'sectunnel',
    name,
    ...(uuid !== undefined && { uuid }),
    ...(bridge !== undefined && { bridge }),
    ...(algorithm !== undefined && { algorithm }),
    ...(transport !== undefined && { transport }),
    ...(port !== undefined && { port }),
    labels,
    peers,
    ...(secret !== undefined && { secret }),
    sas,
    policy,
    peersPath: body.path,
  };
}

/** `<secret uuid='…'/>` (a libvirt secret) or `<secret file='/…'/>`. */
function readSecret(n: XNode, p: XmlProblems): SecretRef | undefined {
  checkShape(n, p, ['uuid', 'file'], []);
  const hasUuid = attrOf(n, 'uuid') !== undefined;
  const hasFile = attrOf(n, 'file') !== undefined;
  if (hasUuid === hasFile) {
    p.add(n.path, `expected exactly one of uuid (a libvirt secret) or file (an absolute path), found ${hasUuid ? 'both' : 'neither'}`, n.el);
    return undefined;
  }
  if (hasUuid) {
    const uuid = attrValue(n, 'uuid', p, uuidP);
    return uuid === undefined ? undefined : { kind: 'uuid', uuid, path: n.path, at: n.el };
  }
  const file = attrValue(n, 'file', p, absoluteFileP);
  return file === undefined ? undefined : { kind: 'file', file, path: n.path, at: n.el };
}

/** The labels (well-formed ones), and every name declared by a `<label>` (also those with other problems). */
function readLabels(body: XNode, p: XmlProblems): { labels: NetworkLabel[]; declared: string[] } {
  const nodes = kids(body, 'label');
  if (nodes.length === 0) p.add(`${body.path}/label`, "missing: expected at least one <label name='…' vlan='…'/>", body.el);
  const labels: NetworkLabel[] = [];
  const byName = new Map<string, string>();
  const byPair = new Map<string, string>();
  const byContext = new Map<string, string>();
  const declared: string[] = [];
  for (const n of nodes) {
    checkShape(n, p, ['name', 'vlan', 'greKey', 'context'], []);
    const name = attrValue(n, 'name', p, nameP, NAME_TEXT);
    if (name !== undefined && !declared.includes(name)) declared.push(name);
    const vlan = attrValue(n, 'vlan', p, vlanP, 'an integer in 1..4094 (an 802.1Q VLAN id)');
    const greKey = attrValue(n, 'greKey', p, greKeyP);
    const context = attrValue(n, 'context', p, contextP);
    if (name === undefined || vlan === undefined) continue;
    const first = byName.get(name);
    if (first !== undefined) {
      p.add(attrPath(n, 'name'), `${first} is already named "${name}"; label names must be unique`, attrOf(n, 'name'));
      continue;
    }
    byName.set(name, n.path);
    if (attrOf(n, 'greKey') === undefined || greKey !== undefined) {
      const key = greKey === undefined ? defaultGreKey(vlan) : greKey;
      const pair = `${key}/${vlan}`;
      const other = byPair.get(pair);
      if (other !== undefined) {
        const keyText = key === null ? 'no GRE key' : `GRE key ${key}${greKey === undefined ? ' (the default for this VLAN: vlan << 8)' : ''}`;
        p.add(n.path, `${other} already uses ${keyText} with VLAN ${vlan}; each (GRE key, VLAN) pair names one label, so give one of them another greKey or vlan`, n.el);
      } else byPair.set(pair, n.path);
    }
    if (context !== undefined) {
      const other = byContext.get(context);
      if (other !== undefined) p.add(attrPath(n, 'context'), `${other} already has context "${context}"; a <seclabel> context must name one label`, attrOf(n, 'context'));
      else byContext.set(context, n.path);
    }
    labels.push({ name, vlan, ...(greKey !== undefined && { greKey }), ...(context !== undefined && { context }) });
  }
  return { labels, declared };
}

/** Reports label names in attribute `attr` of `n` that are not labels of the network; returns the known ones. */
function checkLabelRefs(n: XNode, attr: string, names: readonly string[], labels: ReadonlyMap<string, number>, p: XmlProblems): string[] {
  const ok: string[] = [];
  for (const name of names) {
    if (labels.has(name)) ok.push(name);
    else p.add(attrPath(n, attr), unknownLabel(name, [...labels.keys()]), attrOf(n, attr));
  }
  return ok;
}

/** "no label is named "x"; did you mean "y"? (labels: …)". */
export function unknownLabel(name: string, known: readonly string[]): string {
  const hint = didYouMean(name, known);
  return `no label is named "${name}"${hint === '' ? '' : `;${hint}`} (labels: ${known.join(', ') || 'none'})`;
}

function readPeers(body: XNode, p: XmlProblems, tunnelForm: boolean, labels: ReadonlyMap<string, number>): NetworkPeer[] {
  const peers: NetworkPeer[] = [];
  const byName = new Map<string, string>();
  const byEndpoint = new Map<string, string>();
  for (const n of kids(body, 'peer')) {
    checkShape(n, p, tunnelForm ? ['name', 'address', 'port', 'publicKey', 'labels'] : ['name', 'address', 'port', 'publicKey'], []);
    const address = attrValue(n, 'address', p, addressP, "the host's underlay address (IPv4 or IPv6)");
    const explicitName = attrValue(n, 'name', p, nameP);
    const port = attrValue(n, 'port', p, portP);
    const publicKey = attrValue(n, 'publicKey', p, publicKeyP);
    const listed = tunnelForm ? attrValue(n, 'labels', p, nameListP) : undefined;
    if (address === undefined) continue;
    // Without a name, the address names the host (":" is not allowed in names).
    const name = explicitName ?? (attrOf(n, 'name') === undefined ? address.replace(/:/g, '-') : undefined);
    if (name === undefined) continue;
    const first = byName.get(name);
    if (first !== undefined) {
      p.add(attrOf(n, 'name') ? attrPath(n, 'name') : n.path, `${first} is already named "${name}"; peer names must be unique`, attrOf(n, 'name') ?? n.el);
      continue;
    }
    byName.set(name, n.path);
    const endpoint = `${address} port ${port ?? 'default'}`;
    const other = byEndpoint.get(endpoint);
    if (other !== undefined) p.add(attrPath(n, 'address'), `${other} already has address ${address}${port === undefined ? '' : ` port ${port}`}`, attrOf(n, 'address'));
    else byEndpoint.set(endpoint, n.path);
    const peerLabels = listed === undefined ? undefined : checkLabelRefs(n, 'labels', listed, labels, p);
    peers.push({
      name,
      address,
      ...(port !== undefined && { port }),
      ...(publicKey !== undefined && { publicKey }),
      ...(peerLabels !== undefined && { labels: peerLabels }),
      path: n.path,
      at: n.el,
    });
  }
  if (peers.length > 0) {
    const family = addressFamily(peers[0]!.address);
    for (const peer of peers.slice(1)) {
      if (addressFamily(peer.address) !== family) {
        p.add(`${peer.path}/@address`, `"${peer.address}" is not valid: expected an IPv${family} address like ${peers[0]!.path} (${peers[0]!.address}); all hosts of a network use one address family`, peer.at);
      }
    }
  }
  return peers;
}

function peerRefP(peers: readonly NetworkPeer[]): (v: string) => Parsed<NetworkPeer> {
  return (v) => {
    const address = addressP(v);
    const found = peers.find((x) => x.name === v) ?? (typeof address === 'string' ? undefined : peers.find((x) => x.address === address.value));
    if (found !== undefined) return { value: found };
    const hint = didYouMean(v, peers.map((x) => x.name));
    return `expected the name or address of a <peer>${hint === '' ? '' : `;${hint}`} (peers: ${peers.map((x) => x.name).join(', ') || 'none'})`;
  };
}

function readSas(
  body: XNode,
  p: XmlProblems,
  labels: readonly NetworkLabel[],
  labelIndex: ReadonlyMap<string, number>,
  peers: readonly NetworkPeer[],
  algorithm: AeadAlgorithm | undefined,
): NetworkSa[] {
  interface Draft {
    id: string;
    node: XNode;
    peers: [string, string];
    labels: Set<string>;
    algorithm?: AeadAlgorithm;
    esn?: boolean;
    secret?: SecretRef;
    inbound?: [NetworkInbound, NetworkInbound];
  }
  const drafts = new Map<string, Draft>();
  const spis = new Map<string, string>();
  for (const n of kids(body, 'sa')) {
    checkShape(n, p, ['id', 'peers', 'algorithm', 'esn', 'labels'], ['secret', 'inbound']);
    const id = attrValue(n, 'id', p, nameP, `an id for <sp sa=…> to refer to: ${NAME_TEXT}`);
    const pair = attrValue(n, 'peers', p, (v) => {
      const refs = splitList(v);
      if (refs.length !== 2) return 'expected the two peers of the SA pair, by name or address, like "hv1 hv2"';
      const found: NetworkPeer[] = [];
      for (const r of refs) {
        const x = peerRefP(peers)(r);
        if (typeof x === 'string') return `"${r}": ${x}`;
        found.push(x.value);
      }
      if (found[0] === found[1]) return 'expected two different peers';
      return { value: [found[0]!.name, found[1]!.name] as [string, string] };
    }, 'the two peers of the SA pair, like "hv1 hv2"');
    const saAlgorithm = attrValue(n, 'algorithm', p, algorithmP);
    const esn = attrValue(n, 'esn', p, yesNoP);
    const listed = attrValue(n, 'labels', p, nameListP);
    const secretNode = kid(n, 'secret', p);
    const secret = secretNode === undefined ? undefined : readSecret(secretNode, p);
    const inboundNodes = kids(n, 'inbound');
    let inbound: [NetworkInbound, NetworkInbound] | undefined;
    if (inboundNodes.length > 0) {
      // Static keys: one <inbound> per peer of the pair.
      if (secretNode !== undefined) {
        p.add(secretNode.path, 'a static SA pair (with <inbound> keys) has no pre-shared key; <secret> here would be the handshake\'s: put it on a handshake <sa> or on <sectunnel>', secretNode.el);
      }
      const read: NetworkInbound[] = [];
      for (const ib of inboundNodes) {
        checkShape(ib, p, ['peer', 'spi'], ['secret']);
        const peer = attrValue(ib, 'peer', p, peerRefP(peers), 'the peer that receives on this SPI');
        const spi = attrValue(ib, 'spi', p, spiP, 'the SPI this peer receives on, like "0x00001002"');
        const sNode = requiredKid(ib, 'secret', p, 'a <secret uuid=…/> or <secret file=…/> holding the KEYMAT (key and salt, base64)');
        const s = sNode === undefined ? undefined : readSecret(sNode, p);
        if (peer === undefined || spi === undefined || s === undefined) continue;
        if (pair !== undefined && !pair.includes(peer.name)) {
          p.add(attrPath(ib, 'peer'), `"${peer.name}" is not valid: expected one of the SA's peers (${pair.join(', ')})`, attrOf(ib, 'peer'));
          continue;
        }
        if (read.some((r) => r.peer === peer.name)) {
          p.add(attrPath(ib, 'peer'), `"${peer.name}" already has an <inbound> in this SA; expected one per peer`, attrOf(ib, 'peer'));
          continue;
        }
        const spiKey = `${peer.name}\u0000${spi}`;
        const spiText = `0x${spi.toString(16).padStart(8, '0')}`;
        const other = spis.get(spiKey);
        if (other !== undefined) {
          p.add(attrPath(ib, 'spi'), `${other} already has ${peer.name} receive on SPI ${spiText}; the SPIs a host receives on must be unique`, attrOf(ib, 'spi'));
        } else spis.set(spiKey, ib.path);
        read.push({ peer: peer.name, spi, secret: s });
      }
      if (inboundNodes.length !== 2) {
        p.add(`${n.path}/inbound`, `expected two <inbound> elements (one per peer: the SPI it receives on and its KEYMAT), found ${inboundNodes.length}`, n.el);
      } else if (read.length === 2 && pair !== undefined) {
        inbound = (read[0]!.peer === pair[0] ? [read[0]!, read[1]!] : [read[1]!, read[0]!]) as [NetworkInbound, NetworkInbound];
      }
    } else {
      // Keyed by the handshake: one algorithm (the network's), ESN always.
      if (saAlgorithm !== undefined && saAlgorithm !== (algorithm ?? saAlgorithm)) {
        p.invalid(n, attrOf(n, 'algorithm')!, `the handshake uses the network's algorithm (${algorithm}); algorithm on an <sa> applies to static SAs (with <inbound> keys) only`);
      } else if (saAlgorithm !== undefined && algorithm === undefined) {
        p.invalid(n, attrOf(n, 'algorithm')!, `the handshake uses the network's algorithm: set algorithm='${saAlgorithm}' on <sectunnel>; algorithm on an <sa> applies to static SAs (with <inbound> keys) only`);
      }
      if (esn !== undefined) p.invalid(n, attrOf(n, 'esn')!, 'esn applies to static SAs (with <inbound> keys) only; SAs of the handshake always use extended sequence numbers');
    }
    if (id === undefined || pair === undefined) continue;
    if (drafts.has(id)) {
      p.add(attrPath(n, 'id'), `${drafts.get(id)!.node.path} already has id "${id}"; SA ids must be unique`, attrOf(n, 'id'));
      continue;
    }
    const own = listed === undefined ? [] : checkLabelRefs(n, 'labels', listed, labelIndex, p);
    drafts.set(id, {
      id,
      node: n,
      peers: pair,
      labels: new Set(own),
      ...(inbound !== undefined && saAlgorithm !== undefined && { algorithm: saAlgorithm }),
      ...(inbound !== undefined && esn !== undefined && { esn }),
      ...(secret !== undefined && inbound === undefined && { secret }),
      ...(inbound !== undefined && { inbound }),
    });
  }

  // <sp sa='ID' labels='…' vlans='…'/>: the selected labels travel through that SA pair.
  for (const n of kids(body, 'sp')) {
    checkShape(n, p, ['sa', 'labels', 'vlans'], []);
    const sa = attrValue(n, 'sa', p, (v) => {
      const d = drafts.get(v);
      if (d !== undefined) return { value: d };
      const hint = didYouMean(v, drafts.keys());
      return `expected the id of an <sa>${hint === '' ? '' : `;${hint}`} (SAs: ${[...drafts.keys()].join(', ') || 'none'})`;
    }, 'the id of the <sa> the selected labels travel through');
    const listed = attrValue(n, 'labels', p, nameListP);
    const vlans = attrValue(n, 'vlans', p, (v) => {
      const ids = splitList(v);
      if (ids.length === 0) return 'expected a list of VLAN ids separated by spaces or commas';
      const out: NetworkLabel[] = [];
      for (const s of ids) {
        const r = vlanP(s);
        if (typeof r === 'string') return `expected VLAN ids in 1..4094 separated by spaces or commas; "${s}" is not one`;
        const matches = labels.filter((l) => l.vlan === r.value);
        if (matches.length === 0) return `VLAN ${r.value} is not the VLAN of any label (VLANs: ${[...new Set(labels.map((l) => l.vlan))].join(', ')})`;
        if (matches.length > 1) return `VLAN ${r.value} is the VLAN of several labels (${matches.map((l) => l.name).join(', ')}); select them by labels='…'`;
        out.push(matches[0]!);
      }
      return { value: out };
    });
    if (attrOf(n, 'labels') === undefined && attrOf(n, 'vlans') === undefined) {
      p.add(n.path, "missing: expected a selector: labels='red blue' or vlans='100 200'", n.el);
    }
    if (sa === undefined) continue;
    for (const l of listed === undefined ? [] : checkLabelRefs(n, 'labels', listed, labelIndex, p)) sa.labels.add(l);
    for (const l of vlans ?? []) sa.labels.add(l.name);
  }

  // Per pair of hosts, a label travels through one SA pair.
  const carried = new Map<string, string>();
  const out: NetworkSa[] = [];
  for (const d of drafts.values()) {
    if (d.labels.size === 0) {
      p.add(d.node.path, `SA "${d.id}" carries no label: give it labels='…' or select labels for it with <sp sa='${d.id}' labels='…'/>`, d.node.el);
      continue;
    }
    const hosts = [...d.peers].sort().join(' and ');
    for (const l of d.labels) {
      const key = `${hosts}\u0000${l}`;
      const other = carried.get(key);
      if (other !== undefined) p.add(d.node.path, `label "${l}" between ${hosts} is already carried by SA "${other}"; a label travels through one SA pair per pair of hosts`, d.node.el);
      else carried.set(key, d.id);
    }
    const ordered = [...d.labels].sort((a, b) => labelIndex.get(a)! - labelIndex.get(b)!);
    out.push({
      id: d.id,
      peers: d.peers,
      labels: ordered,
      ...(d.algorithm !== undefined && { algorithm: d.algorithm }),
      ...(d.esn !== undefined && { esn: d.esn }),
      ...(d.secret !== undefined && { secret: d.secret }),
      ...(d.inbound !== undefined && { inbound: d.inbound }),
      path: d.node.path,
      at: d.node.el,
    });
  }
  return out;
}

function readPolicy(body: XNode, p: XmlProblems, labels: ReadonlyMap<string, number>): { from: string; to: string }[] {
  const node = kid(body, 'policy', p);
  if (node === undefined) return [];
  checkShape(node, p, [], ['allow']);
  const rules: { from: string; to: string }[] = [];
  for (const n of kids(node, 'allow')) {
    checkShape(n, p, ['from', 'to'], []);
    const from = attrValue(n, 'from', p, nameP, 'the label whose frames may be delivered');
    const to = attrValue(n, 'to', p, nameP, 'the label of the domains that may receive them');
    if (from === undefined || to === undefined) continue;
    const known = checkLabelRefs(n, 'from', [from], labels, p).length + checkLabelRefs(n, 'to', [to], labels, p).length;
    if (known < 2) continue;
    if (from === to) {
      p.add(n.path, `allow ${from} -> ${to} is always true: a label reaches its own domains; a rule names two labels`, n.el);
      continue;
    }
    if (rules.some((r) => r.from === from && r.to === to)) continue;
    rules.push({ from, to });
  }
  return rules;
}
