/**
 * From a validated daemon config to the dataplane's state, with no I/O: the
 * label, domain and policy tables, the peers as the pipelines see them, the
 * static SA pairs to install, and the MTU arithmetic of the header stack.
 *
 * Stages of a (re)build:
 *   1. tables: labels → domains → policy → peers (id = position in `peers[]`,
 *      carrying the labels they have SAs for) → Tables (empty FDB, no SAs);
 *   2. plan: one StaticSaPlan per `peers[].staticSas[]` entry, each half named by
 *      an identity (peer, direction, SPI, algorithm, ESN, labels, window, KEYMAT
 *      fingerprint) so a reload can keep the SA objects whose identity stays;
 *   3. install: point the tables' SPI route and (peer, label) slots at the SAs.
 * Every KEYMAT must be distinct across the host (checked here): a key shared by
 * two SAs would share one nonce space (RFC 4106 §3.1: IV = sequence number).
 */
import type { Auditor } from '../core/audit.js';
import { DomainTable, LabelTable } from '../core/labels.js';
import { Policy } from '../core/policy.js';
import type { InboundSa, OutboundSa } from '../core/sa.js';
import { Tables, type PeerInfo } from '../core/tables.js';
import type { AeadAlgorithm } from '../crypto/aead.js';
import {
  ESP_HEADER_BYTES,
  ESP_ICV_BYTES,
  ESP_IV_BYTES,
  ESP_MAX_PAD_BYTES,
  ESP_TRAILER_BYTES,
  ETH_HEADER_BYTES,
  GRE_BASE_BYTES,
  GRE_KEYED_BYTES,
  IPV4_HEADER_BYTES,
  IPV6_HEADER_BYTES,
  UDP_HEADER_BYTES,
  VLAN_TAG_BYTES,
} from '../wire/constants.js';
import { ConfigError, type ConfigProblem } from './config-errors.js';
import type { DaemonConfig } from './config.js';
import { effectiveGreKey } from './replay-config.js';
import { seqKeyId } from './seq-store.js';

/** What `buildTables` needs besides the config. */
export interface BuildOptions {
  /** Writes audit records of denials; kept across reloads by the daemon. */
  auditor?: Auditor | null;
  /** Install the config's static SAs (`--insecure-static-keys`); without them peers with a public key carry their labels (handshake SAs). */
  staticSas: boolean;
}

/**
 * Label names each peer (by id) carries: with static SAs, those of its SA pairs; else, for a peer
 * with a public key, its configured labels (the handshake installs SAs for those both sides grant;
 * a label without an SA drops as no_route); else none (no SA, no traffic).
 */
export function carriedLabels(cfg: DaemonConfig, staticSas: boolean): string[][] {
  return cfg.peers.map((p) => (staticSas ? [...new Set(p.staticSas.flatMap((s) => s.labels))] : p.publicKey !== undefined ? [...p.labels] : []));
}

/** Stage 1: the tables of a config, without SAs; throws the core's config errors (LabelConfigError, FdbConfigError). */
export function buildTables(cfg: DaemonConfig, o: BuildOptions): Tables {
  const labels = new LabelTable(cfg.labels.map((l) => ({ ...l })));
  const domains = new DomainTable(
    cfg.domains.map((d) => ({ name: d.name, label: d.label, macs: d.macs, interface: d.tap?.name ?? d.attach!.interface })),
    labels,
  );
  const policy = new Policy(
    labels,
    cfg.policy.map((r) => ({ from: r.from, to: r.to })),
  );
  const carried = carriedLabels(cfg, o.staticSas);
  const peers: PeerInfo[] = cfg.peers.map((p, id) => ({ id, name: p.name, labelIds: carried[id]!.map((l) => labels.idOf(l)) }));
  return new Tables({
    labels,
    domains,
    policy,
    peers,
    fdb: { ageMs: cfg.fdb.ageSeconds * 1000, maxMacsPerLabel: cfg.fdb.maxEntriesPerLabel },
    auditor: o.auditor ?? null,
  });
}

/** One half of a static SA pair as the daemon creates it. */
export interface SaHalfPlan {
  readonly spi: number;
  readonly keymat: Uint8Array;
  /** Equal identities = an SA that may be kept across a reload. */
  readonly identity: string;
  /** `seqKeyId(keymat)`: names the KEYMAT (revealing nothing of it) in identities and the sequence store. */
  readonly keyId: string;
}

/** A static SA pair with a peer. */
export interface StaticSaPlan {
  readonly peerId: number;
  readonly peerName: string;
  /** `peers[i].staticSas[j]`, for messages. */
  readonly path: string;
  readonly labels: readonly string[];
  readonly algorithm: AeadAlgorithm;
  readonly esn: boolean;
  readonly replayWindowPackets: number;
  readonly in: SaHalfPlan;
  readonly out: SaHalfPlan;
}

function hex8(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

/** Stage 2: every static SA pair of the config (empty when staticSas is false). */
export function planStaticSas(cfg: DaemonConfig, staticSas: boolean): StaticSaPlan[] {
  if (!staticSas) return [];
  const out: StaticSaPlan[] = [];
  cfg.peers.forEach((p, peerId) => {
    p.staticSas.forEach((s, j) => {
      const labels = [...s.labels];
      const half = (dir: 'in' | 'out'): SaHalfPlan => {
        const h = s[dir];
        const keyId = seqKeyId(h.keymat);
        const window = dir === 'in' ? `/w${cfg.replayWindowPackets}` : '';
        return {
          spi: h.spi,
          keymat: h.keymat,
          keyId,
          identity: `${p.name}/${dir}/${hex8(h.spi)}/${s.algorithm}/esn=${s.esn}/${[...labels].sort().join(',')}${window}/${keyId}`,
        };
      };
      out.push({
        peerId,
        peerName: p.name,
        path: `peers[${peerId}].staticSas[${j}]`,
        labels,
        algorithm: s.algorithm,
        esn: s.esn,
        replayWindowPackets: cfg.replayWindowPackets,
        in: half('in'),
        out: half('out'),
      });
    });
  });
  return out;
}

/**
 * Problems that make a config unusable for the daemon beyond its schema: two SA halves with
 * the same KEYMAT (one nonce space, two counters). Returns [] when there are none.
 */
export function keymatProblems(plans: readonly StaticSaPlan[]): ConfigProblem[] {
  const seen = new Map<string, string>();
  const problems: ConfigProblem[] = [];
  for (const p of plans) {
    for (const dir of ['in', 'out'] as const) {
      const at = `${p.path}.${dir}.keymat`;
      const first = seen.get(p[dir].keyId);
      if (first === undefined) seen.set(p[dir].keyId, at);
      else {
        problems.push({
          path: at,
          message: `the same KEYMAT as ${first} is not valid: expected a distinct key per SA (two SAs under one key would repeat AES-GCM/ChaCha20 nonces)`,
        });
      }
    }
  }
  return problems;
}

/** Throws ConfigError(CONFIG_INVALID) for `file` if `keymatProblems` finds any. */
export function checkKeymats(file: string, plans: readonly StaticSaPlan[]): void {
  const problems = keymatProblems(plans);
  if (problems.length > 0) throw new ConfigError('CONFIG_INVALID', file, problems);
}

/** Paths of the config's static SA pairs: with any, `run` needs --insecure-static-keys. */
export function staticSaPaths(cfg: DaemonConfig): string[] {
  return cfg.peers.flatMap((p, i) => p.staticSas.map((_, j) => `peers[${i}].staticSas[${j}]`));
}

/** Stage 3: routes SPI → inbound SA and (peer, label) → outbound SA for one pair. */
export function installSaPair(tables: Tables, plan: StaticSaPlan, inbound: InboundSa, outbound: OutboundSa): void {
  tables.setInbound(inbound, plan.peerId);
  for (const l of plan.labels) tables.setOutbound(plan.peerId, tables.labels.idOf(l), outbound);
}

/** The MTU arithmetic of a config's header stack (DESIGN.md "Wire format"). */
export interface MtuPlan {
  underlayMtu: number;
  /** Every octet a guest's IP packet gains on the underlay, inner Ethernet header included. */
  overheadBytes: number;
  /** The largest guest (IP) MTU whose frames never make the underlay fragment. */
  guestMtu: number;
  /** Outer IP + (UDP) header: added by the kernel to each ESP packet we send. */
  outerHeaderBytes: number;
  /** The parts of overheadBytes, for the log line. */
  parts: Readonly<Record<string, number>>;
}

/**
 * Overhead = outer IPv4 20 / IPv6 40 + UDP 8 (ESP-in-UDP only) + ESP header 8 + IV 8
 * + GRE (8 with a key, 4 without; the largest over the labels) + 802.1Q 4 + inner Ethernet 14
 * + worst-case pad 3 + pad length/next header 2 + ICV 16 (RFC 4303 §2, RFC 4106 §3, RFC 2890).
 */
export function mtuPlan(cfg: DaemonConfig): MtuPlan {
  const ip = cfg.underlay.family === 4 ? IPV4_HEADER_BYTES : IPV6_HEADER_BYTES;
  const udp = cfg.underlay.transport === 'udp' ? UDP_HEADER_BYTES : 0;
  const gre = cfg.labels.some((l) => effectiveGreKey(l) !== null) ? GRE_KEYED_BYTES : GRE_BASE_BYTES;
  const parts = {
    outerIp: ip,
    udp,
    espHeader: ESP_HEADER_BYTES,
    iv: ESP_IV_BYTES,
    gre,
    vlanTag: VLAN_TAG_BYTES,
    innerEthernet: ETH_HEADER_BYTES,
    maxPad: ESP_MAX_PAD_BYTES,
    trailer: ESP_TRAILER_BYTES,
    icv: ESP_ICV_BYTES,
  };
  const overheadBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  return {
    underlayMtu: cfg.underlay.mtu,
    overheadBytes,
    guestMtu: cfg.underlay.mtu - overheadBytes,
    outerHeaderBytes: ip + udp,
    parts: Object.freeze(parts),
  };
}
