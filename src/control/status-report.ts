/**
 * The reply of the control method `status`: what `sectunnel status` prints.
 * The daemon fills it; every section is optional and the printer shows what
 * is present, so a daemon may grow the report without breaking older clients.
 * Counts are plain numbers (they stay below 2^53); times are ISO 8601 text;
 * ages are milliseconds at `time`.
 */
import type { ReasonName } from '../core/reasons.js';

/** The shape version; bumped only for incompatible changes. */
export const STATUS_REPORT_VERSION = 1;

/** The whole report. */
export interface StatusReport {
  reportVersion: typeof STATUS_REPORT_VERSION;
  /** sectunnel version, e.g. "0.1.0". */
  version: string;
  /** config `host.name`. */
  host: string;
  pid?: number;
  /** When the report was made (ages are relative to it). */
  time: string;
  /** When the daemon started. */
  startedAt?: string;
  /** The config file the daemon runs with. */
  configFile?: string;
  crypto?: { algorithm: string; backend: string };
  underlay?: UnderlayStatus;
  mtu?: MtuStatus;
  pool?: PoolStatus;
  peers?: PeerStatus[];
  sas?: SaStatus[];
  labels?: LabelStatus[];
  domains?: DomainStatus[];
  /** Counters by reason name, drops and discards (ReasonCounters.toJSON()); zeros may be present. */
  reasons?: Partial<Record<ReasonName, number>>;
  /** Frames whose encapsulation exceeded the underlay MTU, sent as outer IP fragments. */
  fragmented?: number;
  audit?: AuditStatus;
  /** The peer handshake, host-wide; absent with static keys. */
  handshake?: HandshakeStatus;
  /** Domains attached at run time (`sectunnel attach`, the libvirt hook), in attach order. */
  attachments?: AttachmentStatus[];
}

/** A runtime attachment (control/libvirt-attach.ts's Attachment). */
export interface AttachmentStatus {
  /** The sectunnel domain name. */
  name: string;
  /** The libvirt domain it belongs to. */
  domain: string;
  interface: string;
  label: string;
  macs: readonly string[];
  /** ISO time of the attach. */
  attachedAt: string;
}

export interface HandshakeStatus {
  /** Handshakes completed (either role). */
  completed: number;
  /** Failures by reason over all peers and unattributable messages (zeros left out). */
  failures: Record<string, number>;
}

export interface UnderlayStatus {
  address: string;
  port: number;
  transport: 'udp' | 'esp';
  /** UDP GSO/GRO (io/udp.ts UdpOffloadStats); absent for raw ESP. */
  offload?: Record<string, number>;
}

/** The MTU arithmetic: a guest MTU of at most `guestMtu` never makes the underlay fragment. */
export interface MtuStatus {
  underlayMtu: number;
  /** Outer IP + (UDP) + ESP header, IV, GRE, 802.1Q tag, worst-case padding, trailer and ICV. */
  overheadBytes: number;
  guestMtu: number;
}

export interface PoolStatus {
  free: number;
  total: number;
}

export interface PeerStatus {
  name: string;
  address: string;
  port?: number;
  /** Labels this host may exchange with the peer. */
  labels: string[];
  /** 'static' (config SAs), 'handshaking', 'established', 'down', … */
  state: string;
  /** Last completed handshake, or null if none yet; absent with static SAs. */
  lastHandshake?: string | null;
  /** Age of the current session (ms), null without one; absent with static SAs. */
  sessionAgeMs?: number | null;
  /** When the next time-based rekey starts, or null. */
  nextRekey?: string | null;
  /** Labels the current session negotiated (both sides grant them). */
  negotiatedLabels?: string[];
  /** AEAD algorithm of the current session. */
  algorithm?: string | null;
  /** Handshake failures attributed to this peer, by reason (zeros left out). */
  handshakeFailures?: Record<string, number>;
  /** Handshakes started with this peer, by reason. */
  rekeys?: Record<string, number>;
  /** Handshake peers: ESP packets sealed to the peer, and accepted from it, over all labels (survive rekeys and reloads). */
  txPackets?: number;
  rxPackets?: number;
}

export interface SaStatus {
  /** "0x" + 8 hex digits. */
  spi: string;
  direction: 'in' | 'out';
  labels: string[];
  /** Peer name. */
  peer: string;
  algorithm?: string;
  ageMs: number;
  /** Packets sealed (out) or opened and accepted (in). */
  packets: number;
  /** Payload octets of those packets. */
  bytes: number;
  /** Inbound only: packets the anti-replay window dropped. */
  replayDrops?: number;
  /** 'active', 'soft-expired', 'expired', … */
  state?: string;
}

export interface LabelStatus {
  name: string;
  vlan: number;
  /** null: the label is carried without a GRE key. */
  greKey: number | null;
  context?: string | null;
  /** Learned MACs in the label's forwarding table. */
  fdbEntries?: number;
}

export interface DomainStatus {
  name: string;
  label: string;
  /** TAP or attached interface name. */
  interface: string;
  kind?: 'tap' | 'attach';
  macs: string[];
  /** Frames read from the guest's interface. */
  framesFromGuest: number;
  /** Frames written to the guest's interface. */
  framesToGuest: number;
  /** TAP offloads (io/tap.ts TapOffloadStats): super-frames, segments, drops by reason; absent without offloads. */
  offload?: Record<string, number>;
}

export interface AuditStatus {
  /** The audit file, or null for standard output. */
  path: string | null;
  written: number;
  /** Suppressed by the rate limit. */
  suppressed: number;
  /** Lost: queue full or write failed. */
  lost: number;
}

/**
 * The drop counters of a domain's TAP offload stats as [reason, count] pairs, reason in
 * snake case without the `drop` prefix (dropNoRoom → no_room, dropBadGsoSize → bad_gso_size).
 */
export function tapOffloadDrops(offload: Record<string, number>): [string, number][] {
  return Object.entries(offload)
    .filter(([k]) => k.startsWith('drop'))
    .map(([k, n]) => [k.slice(4).replace(/[A-Z]/g, (c: string, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`)), n]);
}
