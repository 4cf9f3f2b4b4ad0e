/**
 * The world of `sectunnel demo`, as data: two hosts on a veth underlay, a
 * `red` and a `blue` guest on each, their names, addresses, MACs and TAPs,
 * the guest MTU that keeps the underlay from fragmenting, and each host's
 * daemon config (docs/config.md) with fresh random static SAs.
 *
 * Nothing here touches the system; world.ts builds what the plan says.
 */
import { join } from 'node:path';
import { daemonConfigSchema } from '../../control/config.js';
import { encodeKey, generatePrivateKey, publicKeyOf, writeSecretKeyFile } from '../../control/keys.js';
import { validateConfig } from '../../control/load.js';
import type { AeadAlgorithm } from '../../crypto/aead.js';
import { guestAddresses, guestMac } from '../../io/netns.js';
import {
  ESP_ALIGN_BYTES,
  ESP_HEADER_BYTES,
  ESP_ICV_BYTES,
  ESP_IV_BYTES,
  ESP_MAX_PAD_BYTES,
  ESP_TRAILER_BYTES,
  ETH_HEADER_BYTES,
  GRE_KEYED_BYTES,
  IPV4_HEADER_BYTES,
  UDP_ENCAP_PORT,
  UDP_HEADER_BYTES,
  VLAN_TAG_BYTES,
} from '../../wire/constants.js';

/** Every namespace of the demo starts with this (removed first if a crashed run left some). */
export const DEMO_PREFIX = 'st-demo-';
/** Temporary folders are `<tmpdir>/sectunnel-demo-XXXXXX`, marked by this file. */
export const DEMO_TMP_PREFIX = 'sectunnel-demo-';
export const DEMO_TMP_MARKER = '.sectunnel-demo';

/** MTU of the underlay veth. */
export const DEMO_UNDERLAY_MTU_BYTES = 1500;
/** AEAD of the demo's SAs (the daemon's default). */
export const DEMO_ALGORITHM: AeadAlgorithm = 'aes-gcm-256';
/** Metrics ports (127.0.0.1 inside each host namespace). */
export const DEMO_METRICS_PORTS = [9273, 9274] as const;

export type LabelName = 'red' | 'blue';

/** A label of the demo. */
export interface DemoLabel {
  name: LabelName;
  vlan: number;
  /** SELinux-style context for the audit records. */
  context: string;
}

export const DEMO_LABELS: readonly DemoLabel[] = [
  { name: 'red', vlan: 100, context: 'system_u:system_r:svirt_t:s0:c100' },
  { name: 'blue', vlan: 200, context: 'system_u:system_r:svirt_t:s0:c200' },
];

/** A guest: a namespace whose only NIC is the TAP its host's daemon created. */
export interface DemoGuest {
  /** Display name and domain name, e.g. `a-red`. */
  name: string;
  /** Namespace, e.g. `st-demo-a-red`. */
  ns: string;
  hostLetter: 'a' | 'b';
  label: LabelName;
  mac: string;
  /** Address without prefix length. */
  ipv4: string;
  ipv4PrefixBits: number;
  /** The TAP the daemon creates in the host namespace and the demo moves into the guest. */
  tap: string;
}

/** A host: a namespace with the underlay end `ul0`, a daemon and its files. */
export interface DemoHost {
  /** `host-a` / `host-b`: the daemon's host.name. */
  name: string;
  letter: 'a' | 'b';
  ns: string;
  /** Underlay address (RFC 5737 documentation range). */
  ipv4: string;
  underlayDev: 'ul0';
  guests: DemoGuest[];
  configFile: string;
  socket: string;
  auditFile: string;
  logFile: string;
  stateDir: string;
  /** The host's X25519 private key file (mode 0600), written by `writeHostKeys`. */
  keyFile: string;
  metricsPort: number;
}

/** Everything the demo builds. */
export interface DemoPlan {
  prefix: string;
  tmpDir: string;
  underlayMtuBytes: number;
  /** Bytes the tunnel adds to a guest IP packet (worst-case padding). */
  overheadBytes: number;
  /** The largest guest MTU whose frames never make the underlay fragment. */
  guestMtuBytes: number;
  udpPort: number;
  algorithm: AeadAlgorithm;
  hosts: [DemoHost, DemoHost];
}

/**
 * Bytes ESP-in-UDP over IPv4 adds to a guest IP packet: outer IPv4 + UDP + ESP
 * header + IV + keyed GRE + Ethernet header + 802.1Q tag + worst-case padding +
 * trailer + ICV (DESIGN.md "Wire format"; RFC 3948, 4303 §2, 2890, 4106).
 */
export function tunnelOverheadBytes(): number {
  return (
    IPV4_HEADER_BYTES +
    UDP_HEADER_BYTES +
    ESP_HEADER_BYTES +
    ESP_IV_BYTES +
    GRE_KEYED_BYTES +
    ETH_HEADER_BYTES +
    VLAN_TAG_BYTES +
    ESP_MAX_PAD_BYTES +
    ESP_TRAILER_BYTES +
    ESP_ICV_BYTES
  );
}

/** Size of the outer IPv4 packet that carries a guest IP packet of `ipBytes` (exact padding, RFC 4303 §2.4). */
export function outerPacketBytes(ipBytes: number): number {
  const espPayload = GRE_KEYED_BYTES + ETH_HEADER_BYTES + VLAN_TAG_BYTES + ipBytes + ESP_TRAILER_BYTES;
  const padded = Math.ceil(espPayload / ESP_ALIGN_BYTES) * ESP_ALIGN_BYTES;
  return IPV4_HEADER_BYTES + UDP_HEADER_BYTES + ESP_HEADER_BYTES + ESP_IV_BYTES + padded + ESP_ICV_BYTES;
}

/** The plan of the demo's world, its files in `tmpDir`. */
export function demoPlan(tmpDir: string, prefix = DEMO_PREFIX): DemoPlan {
  const overheadBytes = tunnelOverheadBytes();
  const hosts = (['a', 'b'] as const).map((letter, i): DemoHost => {
    const index = i + 1;
    const name = `host-${letter}`;
    const guests = DEMO_LABELS.map((label, g): DemoGuest => {
      const guestIndex = g + 1;
      return {
        name: `${letter}-${label.name}`,
        ns: `${prefix}${letter}-${label.name}`,
        hostLetter: letter,
        label: label.name,
        mac: guestMac(index, guestIndex),
        ipv4: guestAddresses(index, guestIndex).ipv4,
        ipv4PrefixBits: 24,
        tap: `tap-${label.name}`,
      };
    });
    return {
      name,
      letter,
      ns: `${prefix}${name}`,
      ipv4: `192.0.2.${index}`,
      underlayDev: 'ul0',
      guests,
      configFile: join(tmpDir, `${name}.json`),
      socket: join(tmpDir, `${name}.sock`),
      auditFile: join(tmpDir, `${name}-audit.jsonl`),
      logFile: join(tmpDir, `${name}.log`),
      stateDir: join(tmpDir, `${name}-state`),
      keyFile: join(tmpDir, `${name}.key`),
      metricsPort: DEMO_METRICS_PORTS[i]!,
    };
  }) as [DemoHost, DemoHost];
  return {
    prefix,
    tmpDir,
    underlayMtuBytes: DEMO_UNDERLAY_MTU_BYTES,
    overheadBytes,
    guestMtuBytes: DEMO_UNDERLAY_MTU_BYTES - overheadBytes,
    udpPort: UDP_ENCAP_PORT,
    algorithm: DEMO_ALGORITHM,
    hosts,
  };
}

/** The guest of `label` on host `letter`. */
export function guestOf(plan: DemoPlan, letter: 'a' | 'b', label: LabelName): DemoGuest {
  const g = plan.hosts[letter === 'a' ? 0 : 1].guests.find((x) => x.label === label);
  if (g === undefined) throw new Error(`demo plan has no ${label} guest on host ${letter}`);
  return g;
}

/** The public keys of both hosts (base64, as `sectunnel pubkey` prints them). */
export type DemoKeys = Record<'a' | 'b', string>;

/**
 * Fresh host identities for one run: a private key per host from the system CSPRNG,
 * written to the host's 0600 key file (as `sectunnel keygen` does); returns the public keys.
 */
export async function writeHostKeys(plan: DemoPlan): Promise<DemoKeys> {
  const out: Partial<DemoKeys> = {};
  for (const h of plan.hosts) {
    const key = generatePrivateKey();
    try {
      await writeSecretKeyFile(h.keyFile, key);
      out[h.letter] = encodeKey(publicKeyOf(key));
    } finally {
      key.fill(0);
    }
  }
  return out as DemoKeys;
}

/** The daemon config of `host` (docs/config.md), as a JSON-serialisable object: the peer is named by its public key. */
export function hostConfig(plan: DemoPlan, host: DemoHost, keys: DemoKeys): Record<string, unknown> {
  const peer = plan.hosts[host.letter === 'a' ? 1 : 0];
  return {
    host: { name: host.name, privateKeyFile: host.keyFile },
    underlay: { address: host.ipv4, port: plan.udpPort, transport: 'udp', mtu: plan.underlayMtuBytes },
    crypto: { algorithm: plan.algorithm },
    labels: DEMO_LABELS.map((l) => ({ name: l.name, vlan: l.vlan, context: l.context })),
    domains: host.guests.map((g) => ({
      name: g.name,
      label: g.label,
      macs: [g.mac],
      tap: { name: g.tap, create: true, mtu: plan.guestMtuBytes },
    })),
    peers: [
      {
        name: peer.name,
        address: peer.ipv4,
        labels: DEMO_LABELS.map((l) => l.name),
        publicKey: keys[peer.letter],
        algorithms: [plan.algorithm],
      },
    ],
    audit: { path: host.auditFile },
    metrics: { listen: `127.0.0.1:${host.metricsPort}` },
    control: { socket: host.socket },
    state: { dir: host.stateDir },
    log: { level: 'info' },
  };
}

/** The config file text of `host`, checked against the daemon's schema first (a mistake here is the demo's, named as such). */
export function hostConfigText(plan: DemoPlan, host: DemoHost, keys: DemoKeys): string {
  const cfg = hostConfig(plan, host, keys);
  validateConfig(cfg, daemonConfigSchema, `<demo config of ${host.name}>`);
  return JSON.stringify(cfg, null, 2) + '\n';
}
