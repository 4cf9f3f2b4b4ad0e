/**
 * libvirt XML → the daemon config of one host (docs/libvirt.md): what
 * `sectunnel import-libvirt` prints and what the daemon can load directly.
 *
 * Stages:
 *   1. parse: the network definition (libvirt-network.ts, either form) and each
 *      domain definition (libvirt-domain.ts) against the network's name,
 *      bridge and labels; domain names, TAPs and MACs unique across files;
 *   2. this host: the `<peer>` named by hostName (else the one with the
 *      underlay address, else the one named like os.hostname());
 *   3. its peers: tunnel form — every other peer, carrying the labels both
 *      host; sectunnel form — the other end of each `<sa>` this host is in,
 *      carrying the SAs' labels (handshake SAs) and static SA pairs (`<inbound>`
 *      keys); pre-shared keys and KEYMATs read from their secrets and checked;
 *   4. the config file object (JSON/YAML-ready: SPIs "0x…", KEYMAT hex,
 *      policy "allow A -> B"), validated by daemonConfigSchema exactly as
 *      `sectunnel run --config` would.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { aeadKeymatBytes } from '../crypto/aead.js';
import { NOISE_PSKLEN } from '../core/noise.js';
import { DEFAULT_ALGORITHM, daemonConfigSchema, type DaemonConfig } from './config.js';
import { ConfigError } from './config-errors.js';
import { validateConfig } from './load.js';
import { readLibvirtDomain, type LibvirtDomain, type LibvirtInterface, type LibvirtNetworkRef } from './libvirt-domain.js';
import { parseLibvirtNetwork, type LibvirtNetwork, type NetworkPeer, type NetworkSa } from './libvirt-network.js';
import { DEFAULT_LIBVIRT_SECRETS_DIR, readSecret } from './libvirt-secret.js';
import { XmlProblems } from './libvirt-walk.js';
import { addressField, addressFamily } from './replay-config.js';
import { parseXml, readXmlFile, type XmlDocument } from './xml.js';

export { DEFAULT_LIBVIRT_SECRETS_DIR } from './libvirt-secret.js';
export { SECTUNNEL_XMLNS } from './libvirt-network.js';
export type { LibvirtDomain, LibvirtInterface, LibvirtNetworkRef } from './libvirt-domain.js';
export type { LibvirtNetwork } from './libvirt-network.js';

/** How a guest NIC is reached: `attach` (a packet socket on libvirt's vnetN, which QEMU holds open) or `tap` (open the TAP itself). */
export type PortKind = 'attach' | 'tap';

/** Options of the import; each is also a flag of `sectunnel import-libvirt`. */
export interface LibvirtImportOptions {
  /** This host's `<peer>` name (--host-name). Default: the peer with `underlay`'s address, else os.hostname() up to the first ".". */
  readonly hostName?: string;
  /** This host's underlay address (--underlay); must be its `<peer>`'s address when both are known. */
  readonly underlay?: string;
  /** Folder of libvirt secret values, UUID.base64 (--secrets). Default /etc/libvirt/secrets. */
  readonly secretsDir?: string;
  /** Default `attach`: see PortKind. */
  readonly port?: PortKind;
  /**
   * This machine's addresses: without hostName and underlay, the `<peer>` whose address is
   * one of them is this host (before os.hostname() is tried). The daemon passes its own.
   */
  readonly localAddresses?: readonly string[];
  /** host.privateKeyFile (--host-key): this host's X25519 private key. */
  readonly privateKeyFile?: string;
  /** Without privateKeyFile: use DIR/HOST.key (HOST = this host's name) when that file exists; else a note. */
  readonly hostKeyDir?: string;
  /** With hostKeyDir: a missing DIR/HOST.key is an error (the daemon), not a note (the import). */
  readonly requireHostKey?: boolean;
}

/** A document to read: its name for messages and its text. */
export interface XmlSource {
  readonly file: string;
  readonly text: string;
}

/** The result of an import. */
export interface LibvirtImport {
  readonly network: LibvirtNetwork;
  /** This host's name (host.name). */
  readonly hostName: string;
  /** The daemon config as a file holds it (what --out writes). */
  readonly file: Record<string, unknown>;
  /** The same, validated and with every default resolved. */
  readonly config: DaemonConfig;
  readonly domains: readonly LibvirtDomain[];
  /** Notes for the operator: skipped interfaces, peers sharing no label, bridged ports, loose key file modes. */
  readonly warnings: readonly string[];
}

/** Problems in several files: a ConfigError (the first file's) whose message has every file's lines. */
export class LibvirtFilesError extends ConfigError {
  constructor(readonly errors: readonly ConfigError[]) {
    super(errors[0]!.code, errors[0]!.file, errors[0]!.problems);
    this.name = 'ConfigError';
    this.message = errors.map((e) => e.message).join('\n');
  }
}

/** Reads the XML files and builds this host's daemon config; throws ConfigError. */
export async function importLibvirt(networkXmlPath: string, domainXmlPaths: readonly string[], opts: LibvirtImportOptions = {}): Promise<LibvirtImport> {
  const network = await readXmlFile(networkXmlPath);
  const domains: { file: string; doc: XmlDocument }[] = [];
  const failed: ConfigError[] = [];
  for (const file of domainXmlPaths) {
    try {
      domains.push({ file, doc: await readXmlFile(file) });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      failed.push(e);
    }
  }
  if (failed.length > 0) throw failed.length === 1 ? failed[0]! : new LibvirtFilesError(failed);
  return importDocuments({ file: networkXmlPath, doc: network }, domains, opts);
}

/** importLibvirt over XML text already in memory (e.g. the domain XML libvirt hands a hook on stdin). */
export function importLibvirtXml(network: XmlSource, domains: readonly XmlSource[], opts: LibvirtImportOptions = {}): LibvirtImport {
  return importDocuments(
    { file: network.file, doc: parseXml(network.text, network.file) },
    domains.map((d) => ({ file: d.file, doc: parseXml(d.text, d.file) })),
    opts,
  );
}

/** The daemon config of this host from libvirt XML files, as loadDaemonConfig returns it; throws ConfigError. */
export async function loadLibvirtConfig(networkXmlPath: string, domainXmlPaths: readonly string[], opts: LibvirtImportOptions = {}): Promise<DaemonConfig> {
  return (await importLibvirt(networkXmlPath, domainXmlPaths, opts)).config;
}

/** What a domain XML is read against, from a parsed network. */
export function networkRef(net: LibvirtNetwork): LibvirtNetworkRef {
  return { name: net.name, ...(net.bridge !== undefined && { bridge: net.bridge }), labels: net.labels };
}

/** The `domains[]` entry of the config file for a guest NIC. */
export function domainEntry(i: LibvirtInterface, port: PortKind = 'attach'): Record<string, unknown> {
  return { name: i.name, label: i.label, macs: [i.mac], ...(port === 'attach' ? { attach: { interface: i.dev } } : { tap: { name: i.dev } }) };
}

function importDocuments(network: { file: string; doc: XmlDocument }, domainDocs: readonly { file: string; doc: XmlDocument }[], opts: LibvirtImportOptions): LibvirtImport {
  const net = parseLibvirtNetwork(network.doc, network.file);
  const warnings: string[] = [];
  const ref = networkRef(net);
  const domains: LibvirtDomain[] = [];
  const failed: ConfigError[] = [];
  for (const d of domainDocs) {
    try {
      domains.push(readLibvirtDomain(d.doc, d.file, ref, warnings));
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      failed.push(e);
    }
  }
  if (failed.length > 0) throw failed.length === 1 ? failed[0]! : new LibvirtFilesError(failed);
  checkAcrossDomains(domains);

  const p = new XmlProblems(net.file);
  const local = selectHost(net, opts);
  const secretsDir = opts.secretsDir ?? DEFAULT_LIBVIRT_SECRETS_DIR;
  const peers = net.form === 'tunnel' ? tunnelPeers(net, local, secretsDir, p, warnings) : saPeers(net, local, secretsDir, p, warnings);
  p.throwIfAny();
  const carried = new Set(peers.flatMap((x) => x.labels));
  for (const i of domains.flatMap((d) => d.interfaces)) {
    if (!carried.has(i.label)) {
      warnings.push(`${i.file}: domain "${i.domain}", interface ${i.dev}: label "${i.label}" travels to no other host from ${local.name}; the interface reaches only domains of this host`);
    }
  }

  const port = opts.port ?? 'attach';
  const keyFile = opts.privateKeyFile ?? conventionalKeyFile(opts.hostKeyDir, local.name);
  if (keyFile === undefined && opts.hostKeyDir !== undefined && peers.some((x) => x.publicKey !== undefined)) {
    const want = resolve(opts.hostKeyDir, `${local.name}.key`);
    const why = `host "${local.name}" has no private key: ${want} does not exist, and the handshake with its peers needs it; create it with \`sectunnel keygen ${want}\` and put what \`sectunnel pubkey ${want}\` prints in this <peer>'s publicKey on every host`;
    if (opts.requireHostKey === true) throw new ConfigError('CONFIG_INVALID', net.file, [{ path: local.path, message: why }]);
    warnings.push(`${net.file}: ${local.path}: ${why} (or pass --host-key FILE)`);
  }
  const file: Record<string, unknown> = {
    host: { name: local.name, ...(keyFile !== undefined && { privateKeyFile: keyFile }) },
    underlay: { address: local.address, ...(net.port !== undefined && { port: net.port }), ...(net.transport !== undefined && { transport: net.transport }) },
    ...(net.algorithm !== undefined && { crypto: { algorithm: net.algorithm } }),
    labels: net.labels.map((l) => ({ name: l.name, vlan: l.vlan, ...(l.greKey !== undefined && { greKey: l.greKey }), ...(l.context !== undefined && { context: l.context }) })),
    domains: domains.flatMap((d) => d.interfaces.map((i) => domainEntry(i, port))),
    peers,
    policy: net.policy.map((r) => `allow ${r.from} -> ${r.to}`),
  };
  const config = validateConfig(file, daemonConfigSchema, `${net.file} (as a daemon config)`);
  return { network: net, hostName: local.name, file, config, domains, warnings };
}

/** DIR/HOST.key if it exists (the daemon's default when it reads the network XML itself). */
function conventionalKeyFile(dir: string | undefined, host: string): string | undefined {
  if (dir === undefined) return undefined;
  const f = resolve(dir, `${host}.key`);
  return existsSync(f) ? f : undefined;
}

/** Domain names, TAPs and MACs are each one domain's, across all domain files. */
function checkAcrossDomains(domains: readonly LibvirtDomain[]): void {
  const seen = new Map<string, LibvirtInterface | LibvirtDomain>();
  const byDomain = new Map<string, LibvirtDomain>();
  for (const d of domains) {
    const first = byDomain.get(d.domain) ?? (d.uuid !== undefined ? domains.find((o) => o !== d && o.uuid === d.uuid && domains.indexOf(o) < domains.indexOf(d)) : undefined);
    if (first !== undefined) {
      const same = first.domain === d.domain ? `named "${d.domain}"` : `with uuid ${d.uuid}`;
      throw new ConfigError('CONFIG_INVALID', d.file, [{ path: 'domain', message: `${first.file} is already the domain ${same}; give each domain once` }]);
    }
    byDomain.set(d.domain, d);
    for (const i of d.interfaces) {
      for (const [key, what] of [
        [`name\u0000${i.name}`, `sectunnel domain name "${i.name}"`],
        [`dev\u0000${i.dev}`, `target dev "${i.dev}"`],
        [`mac\u0000${i.mac}`, `MAC ${i.mac}`],
      ] as const) {
        const other = seen.get(key) as LibvirtInterface | undefined;
        if (other !== undefined) {
          throw new ConfigError('CONFIG_INVALID', i.file, [
            { path: i.path, message: `domain "${i.domain}": ${what} is already used by domain "${other.domain}" (${other.file}: ${other.path}); each guest NIC needs its own` },
          ]);
        }
        seen.set(key, i);
      }
    }
  }
}

/** Picks this host's `<peer>`: by name, else by underlay address, else by os.hostname(). */
function selectHost(net: LibvirtNetwork, opts: LibvirtImportOptions): NetworkPeer {
  const fail = (message: string): never => {
    throw new ConfigError('CONFIG_INVALID', net.file, [{ path: net.peersPath, message }]);
  };
  const list = net.peers.map((x) => `${x.name} (${x.address})`).join(', ') || 'none';
  let underlay: string | undefined;
  if (opts.underlay !== undefined) {
    const r = addressField().safeParse(opts.underlay);
    if (!r.success) fail(`underlay address ${JSON.stringify(opts.underlay)} (--underlay) is not valid: ${r.error.issues[0]?.message ?? 'expected an IP address'}`);
    else underlay = r.data;
  }
  let host: NetworkPeer | undefined;
  if (opts.hostName !== undefined) {
    host = net.peers.find((x) => x.name === opts.hostName);
    if (host === undefined) fail(`host "${opts.hostName}" (--host-name) is not a <peer> of network ${net.name} (peers: ${list}); add <peer name='${opts.hostName}' address='…'/> so that the other hosts know it too`);
  } else if (underlay !== undefined) {
    host = net.peers.find((x) => x.address === underlay);
    if (host === undefined) fail(`no <peer> of network ${net.name} has address ${underlay} (--underlay) (peers: ${list}); add this host as a <peer> so that the other hosts know it too`);
  } else if (opts.localAddresses !== undefined && net.peers.filter((x) => opts.localAddresses!.includes(x.address)).length === 1) {
    host = net.peers.find((x) => opts.localAddresses!.includes(x.address));
  } else {
    const short = hostname().split('.')[0]!;
    host = net.peers.find((x) => x.name === short);
    if (host === undefined) {
      const addrs = opts.localAddresses !== undefined ? `has one of this machine's addresses (${opts.localAddresses.join(', ') || 'none'}) and none ` : '';
      fail(`which <peer> is this host? none ${addrs}is named "${short}" (this machine's host name) (peers: ${list}); pass --host-name NAME or --underlay ADDRESS`);
    }
  }
  if (underlay !== undefined && host!.address !== underlay) {
    fail(`host "${host!.name}" has address ${host!.address} in ${host!.path}, not ${underlay} (--underlay)`);
  }
  return host!;
}

/** Checks a pre-shared key secret; returns its file (the config names the file, never the key). */
function pskFile(sec: NetworkSa['secret'], secretsDir: string, p: XmlProblems, warnings: string[]): string | undefined {
  if (sec === undefined) return undefined;
  const r = readSecret(sec, secretsDir, NOISE_PSKLEN, `the handshake's pre-shared key is ${NOISE_PSKLEN} octets`, p, warnings);
  if (r === undefined) return undefined;
  r.bytes.fill(0);
  return r.file;
}

function missingPublicKey(peer: NetworkPeer, why: string, p: XmlProblems): void {
  p.add(`${peer.path}/@publicKey`, `missing: expected the X25519 public key of ${peer.name} (as \`sectunnel pubkey\` prints it on that host): ${why}`, peer.at);
}

/** Tunnel form: every other peer, carrying the labels both hosts list (all, for a peer without `labels`). */
function tunnelPeers(net: LibvirtNetwork, local: NetworkPeer, secretsDir: string, p: XmlProblems, warnings: string[]): PeerEntry[] {
  const all = net.labels.map((l) => l.name);
  const mine = new Set(local.labels ?? all);
  const psk = pskFile(net.secret, secretsDir, p, warnings);
  const out: PeerEntry[] = [];
  for (const peer of net.peers) {
    if (peer === local) continue;
    const theirs = new Set(peer.labels ?? all);
    const labels = all.filter((l) => mine.has(l) && theirs.has(l));
    if (labels.length === 0) {
      warnings.push(`${net.file}: ${peer.path}: ${peer.name} shares no label with this host (${local.name}); no tunnel to it`);
      continue;
    }
    if (peer.publicKey === undefined) missingPublicKey(peer, 'the handshake authenticates it', p);
    out.push(peerEntry(peer, labels, psk, []));
  }
  return out;
}

/** A `peers[]` entry of the config file. */
type PeerEntry = Record<string, unknown> & { labels: readonly string[] };

function peerEntry(peer: NetworkPeer, labels: readonly string[], psk: string | undefined, staticSas: readonly Record<string, unknown>[]): PeerEntry {
  return {
    name: peer.name,
    address: peer.address,
    ...(peer.port !== undefined && { port: peer.port }),
    labels,
    ...(peer.publicKey !== undefined && { publicKey: peer.publicKey }),
    ...(psk !== undefined && { presharedKeyFile: psk }),
    ...(staticSas.length > 0 && { staticSas }),
  };
}

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** Sectunnel form: the other end of each `<sa>` this host is in. */
function saPeers(net: LibvirtNetwork, local: NetworkPeer, secretsDir: string, p: XmlProblems, warnings: string[]): PeerEntry[] {
  const order = new Map(net.labels.map((l, i) => [l.name, i]));
  const out: PeerEntry[] = [];
  const mine = net.sas.filter((sa) => sa.peers.includes(local.name));
  if (mine.length === 0) warnings.push(`${net.file}: ${net.peersPath}: no <sa> has ${local.name} as a peer; it exchanges no traffic with other hosts`);
  for (const peer of net.peers) {
    if (peer === local) continue;
    const sas = mine.filter((sa) => sa.peers.includes(peer.name));
    if (sas.length === 0) continue;
    const labels = [...new Set(sas.flatMap((sa) => sa.labels))].sort((a, b) => order.get(a)! - order.get(b)!);
    const handshake = sas.filter((sa) => sa.inbound === undefined);
    let psk: string | undefined;
    if (handshake.length > 0) {
      if (peer.publicKey === undefined) missingPublicKey(peer, `SA "${handshake[0]!.id}" is keyed by the handshake, which authenticates it`, p);
      let first: NetworkSa | undefined;
      for (const sa of handshake) {
        const file = pskFile(sa.secret ?? net.secret, secretsDir, p, warnings);
        if (first === undefined) {
          first = sa;
          psk = file;
        } else if (file !== psk) {
          p.add(sa.path, `SAs "${first.id}" and "${sa.id}" between ${local.name} and ${peer.name} use different pre-shared keys; one handshake serves a pair of hosts, so give them one <secret>`, sa.at);
        }
      }
    }
    const staticSas: Record<string, unknown>[] = [];
    for (const sa of sas) {
      if (sa.inbound === undefined) continue;
      const algorithm = sa.algorithm ?? net.algorithm ?? DEFAULT_ALGORITHM;
      const want = aeadKeymatBytes(algorithm);
      const halves = sa.inbound.map((ib) => {
        const r = readSecret(ib.secret, secretsDir, want, `the KEYMAT of ${algorithm}: key and 4-octet salt`, p, warnings);
        if (r === undefined) return undefined;
        const keymat = hexOf(r.bytes);
        r.bytes.fill(0);
        return { peer: ib.peer, spi: `0x${ib.spi.toString(16).padStart(8, '0')}`, keymat };
      });
      const into = halves.find((h) => h?.peer === local.name);
      const from = halves.find((h) => h?.peer === peer.name);
      if (into === undefined || from === undefined) continue;
      staticSas.push({
        labels: sa.labels,
        ...(sa.algorithm !== undefined && { algorithm: sa.algorithm }),
        ...(sa.esn !== undefined && { esn: sa.esn }),
        in: { spi: into.spi, keymat: into.keymat },
        out: { spi: from.spi, keymat: from.keymat },
      });
    }
    if (addressFamily(peer.address) !== addressFamily(local.address)) continue; // reported by the network reader
    out.push(peerEntry(peer, labels, psk, staticSas));
  }
  return out;
}
