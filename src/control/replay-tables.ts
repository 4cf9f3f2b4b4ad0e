/**
 * Builds the pipeline tables of `sectunnel replay` from a validated REPLAY.json:
 * labels, optional domains and policy, one peer per distinct SA peer address,
 * the static SAs (inbound by SPI, outbound per (peer, label)), and for the encap
 * direction the peer and outer path of each label.
 */
import { DomainTable, LabelTable } from '../core/labels.js';
import type { OuterPath } from '../core/outer.js';
import { Policy } from '../core/policy.js';
import { InboundSa, OutboundSa } from '../core/sa.js';
import { Tables, type PeerInfo } from '../core/tables.js';
import type { Auditor } from '../core/audit.js';
import { parseIpv4Address } from '../wire/ipv4.js';
import { parseIpv6Address } from '../wire/ipv6.js';
import { parseMac } from '../wire/mac.js';
import { ConfigError } from './config-errors.js';
import type { ReplayConfig } from './replay-config.js';

/** MAC addresses replay puts on the outer Ethernet header of encap output. */
export const REPLAY_LOCAL_MAC = '02:00:00:00:00:01';
export const REPLAY_PEER_MAC = '02:00:00:00:00:02';

export interface ReplayTables {
  tables: Tables;
  /** peerOfLabel[labelId] = the peer whose outbound SA carries the label, or -1. */
  peerOfLabel: Int32Array;
  /** Outer path per peer id (local address of the peer's family → peer, UDP or raw ESP). */
  outer: OuterPath[];
  /** Label id by VLAN for trunk input; -1 none, -2 ambiguous (several labels share the VLAN). */
  labelOfVlan: Int32Array;
  /** Every SA created, for destroy(). */
  sas: (InboundSa | OutboundSa)[];
}

/** Builds the tables; `file` names REPLAY.json in errors. */
export function buildReplayTables(cfg: ReplayConfig, file: string, nowMs: number, auditor: Auditor | null = null): ReplayTables {
  const labels = new LabelTable(cfg.labels.map((l) => ({ ...l })));
  const domains = new DomainTable(
    cfg.domains.map((d) => ({ name: d.name, label: d.label, macs: d.macs })),
    labels,
  );
  const policy = new Policy(
    labels,
    cfg.policy.map((r) => ({ from: r.from, to: r.to })),
  );

  // Peers: each distinct SA peer address, in file order.
  const peerIds = new Map<string, number>();
  const peerLabels: Set<number>[] = [];
  const peerEncap: ('udp' | 'esp')[] = [];
  cfg.sas.forEach((sa) => {
    let id = peerIds.get(sa.peer);
    if (id === undefined) {
      id = peerIds.size;
      peerIds.set(sa.peer, id);
      peerLabels.push(new Set());
      peerEncap.push(sa.encapsulation);
    }
    for (const l of sa.labels) peerLabels[id]!.add(labels.idOf(l));
    if (sa.direction === 'out') peerEncap[id] = sa.encapsulation;
  });
  const peers: PeerInfo[] = [...peerIds.keys()].map((name, id) => ({ id, name, labelIds: [...peerLabels[id]!] }));
  const tables = new Tables({ labels, domains, policy, peers, auditor });

  const peerOfLabel = new Int32Array(Math.max(1, labels.size)).fill(-1);
  const sas: (InboundSa | OutboundSa)[] = [];
  cfg.sas.forEach((s, i) => {
    const peer = peerIds.get(s.peer)!;
    const common = { spi: s.spi, algorithm: s.algorithm, keymat: s.keymat.slice(), esn: s.esn, labels: s.labels, nowMs };
    if (s.direction === 'in') {
      const sa = new InboundSa({ ...common, replayWindowPackets: cfg.replayWindow });
      tables.setInbound(sa, peer);
      sas.push(sa);
    } else {
      const sa = new OutboundSa(common);
      for (const l of s.labels) {
        const id = labels.idOf(l);
        if (peerOfLabel[id]! >= 0) {
          throw new ConfigError('CONFIG_INVALID', file, [
            { path: `sas[${i}].labels`, message: `"${l}" is already carried by an earlier outbound SA: expected one outbound SA per label` },
          ]);
        }
        peerOfLabel[id] = peer;
        tables.setOutbound(peer, id, sa);
      }
      sas.push(sa);
    }
  });

  const outer: OuterPath[] = peers.map((p) => {
    const v4 = parseIpv4Address(p.name);
    const family = v4 !== null ? 4 : 6;
    const localText = family === 4 ? cfg.local.ipv4 : cfg.local.ipv6;
    const dst = v4 ?? parseIpv6Address(p.name);
    const src = localText === undefined ? null : family === 4 ? parseIpv4Address(localText) : parseIpv6Address(localText);
    if (src === null || dst === null) {
      throw new ConfigError('CONFIG_INVALID', file, [
        { path: `local.${family === 4 ? 'ipv4' : 'ipv6'}`, message: `missing: expected a local IPv${family} address for peer ${p.name}` },
      ]);
    }
    return { family, src, dst, udp: peerEncap[p.id] === 'udp', srcMac: parseMac(REPLAY_LOCAL_MAC)!, dstMac: parseMac(REPLAY_PEER_MAC)! };
  });

  const labelOfVlan = new Int32Array(4096).fill(-1);
  for (const l of labels.labels) labelOfVlan[l.vlan] = labelOfVlan[l.vlan] === -1 ? l.id : -2;
  return { tables, peerOfLabel, outer, labelOfVlan, sas };
}
