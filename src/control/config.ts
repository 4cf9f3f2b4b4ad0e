/**
 * The daemon's per-host config file (`sectunnel run --config FILE`), JSON or
 * YAML; every field is documented in docs/config.md.
 *
 * Validation stages: shape and ranges per field → cross-field checks (label
 * references, names, MACs and interface names unique, static SA labels within
 * the peer's, SPIs unique, KEYMAT length for the SA's algorithm, peer address
 * family = underlay family, TAP MTU fits a pool slot) → output with every
 * default resolved (peer port, static SA algorithm, control socket path).
 */
import { Buffer } from 'node:buffer';
import * as z from 'zod';
import { DEFAULT_SLOT_BYTES, HEADROOM_BYTES, TAILROOM_BYTES } from '../buf/constants.js';
import { AEAD_BACKENDS, type AeadAlgorithm, type AeadBackendName } from '../crypto/aead.js';
import { ETH_HEADER_BYTES, UDP_ENCAP_PORT, VLAN_TAG_BYTES } from '../wire/constants.js';
import { addProblem, bool, field, intIn, isRecord, listOf, oneOf, strictObject, type PathSegment } from './config-errors.js';
import { loadConfigFile, loadConfigFileSync } from './load.js';
import {
  addressFamily,
  addressField,
  algorithmField,
  checkDomains,
  checkKeymat,
  checkLabelPairs,
  checkLabelRef,
  checkLabelRefs,
  checkPolicy,
  checkUniqueNames,
  domainShape,
  keymatField,
  labelRefsField,
  labelSchema,
  nameField,
  policyRuleField,
  replayWindowField,
  spiField,
  type DomainConfig,
  type LabelConfig,
  type PolicyRule,
} from './replay-config.js';

// ---------------------------------------------------------------------------
// Output types.

/** A TAP the daemon opens (`create: false`: it must already exist, as libvirt's vnetN do). */
export interface TapConfig {
  readonly name: string;
  readonly create: boolean;
  /** MTU to set on the TAP; absent: leave it as it is. */
  readonly mtu?: number;
  /** TAP offloads (TSO/GSO super-frames, checksum offload); absent: on for TAPs sectunnel creates. */
  readonly offload?: boolean;
}

/** An existing interface the daemon attaches to with an AF_PACKET socket (native addon), instead of a TAP. */
export interface AttachConfig {
  readonly interface: string;
}

/** A guest NIC of this host: exactly one of `tap` and `attach`. */
export type DaemonDomainConfig = DomainConfig & ({ readonly tap: TapConfig; readonly attach?: undefined } | { readonly attach: AttachConfig; readonly tap?: undefined });

/** One direction of a static SA: the SPI (as a number) and KEYMAT (key ‖ salt). */
export interface StaticSaHalfConfig {
  readonly spi: number;
  readonly keymat: Uint8Array;
}

/** A static SA pair with a peer, used only with `--insecure-static-keys`. */
export interface StaticSaConfig {
  readonly labels: readonly string[];
  /** Resolved: the pair's own, else crypto.algorithm. */
  readonly algorithm: AeadAlgorithm;
  readonly esn: boolean;
  /** The SA this host receives on (its SPI is this host's choice). */
  readonly in: StaticSaHalfConfig;
  /** The SA this host sends on (its SPI is the peer's choice). */
  readonly out: StaticSaHalfConfig;
}

/** Another host running sectunnel. */
export interface PeerConfig {
  readonly name: string;
  /** Underlay address, same family as underlay.address; IPv6 in RFC 5952 form. */
  readonly address: string;
  /** Resolved: the peer's own, else underlay.port. */
  readonly port: number;
  /** Labels this host may exchange with the peer. */
  readonly labels: readonly string[];
  /** The peer's static X25519 public key (32 octets). */
  readonly publicKey?: Uint8Array;
  readonly presharedKeyFile?: string;
  /** AEAD algorithms accepted in the handshake, in order of preference; absent: [crypto.algorithm]. */
  readonly algorithms?: readonly AeadAlgorithm[];
  readonly staticSas: readonly StaticSaConfig[];
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The validated daemon config, every default resolved. Field names are those of the file. */
export interface DaemonConfig {
  /** `privateKeyFile`: the host's X25519 private key (needed for handshakes, i.e. without --insecure-static-keys). */
  readonly host: { readonly name: string; readonly privateKeyFile?: string };
  /**
   * Session lifetimes of the peer handshake. `rekeyAfterPackets` / `rekeyAfterBytes`: soft limits of
   * each outbound handshake SA (absent: the SA's own, 7/8 of the 64-bit counter's usable range, and none).
   */
  readonly handshake: {
    readonly rekeyAfterSeconds: number;
    readonly graceSeconds: number;
    readonly rekeyAfterPackets?: number;
    readonly rekeyAfterBytes?: number;
  };
  readonly underlay: {
    readonly address: string;
    readonly family: 4 | 6;
    readonly port: number;
    readonly transport: 'udp' | 'esp';
    readonly mtu: number;
  };
  readonly crypto: { readonly algorithm: AeadAlgorithm; readonly backend: 'auto' | AeadBackendName };
  readonly replayWindowPackets: number;
  readonly pool: { readonly packets: number; readonly slotBytes: number };
  readonly labels: readonly LabelConfig[];
  readonly domains: readonly DaemonDomainConfig[];
  readonly peers: readonly PeerConfig[];
  readonly policy: readonly PolicyRule[];
  readonly fdb: { readonly ageSeconds: number; readonly maxEntriesPerLabel: number };
  readonly audit: { readonly path?: string; readonly ratePerSecond: number; readonly burst: number };
  /** `listen` absent: no metrics endpoint. */
  readonly metrics: { readonly listen?: { readonly address: string; readonly port: number } };
  readonly control: { readonly socket: string };
  readonly state: { readonly dir: string };
  readonly log: { readonly level: LogLevel };
}

// ---------------------------------------------------------------------------
// Defaults.

export const DEFAULT_UNDERLAY_MTU = 1500;
export const DEFAULT_ALGORITHM: AeadAlgorithm = 'aes-gcm-256';
export const DEFAULT_REPLAY_WINDOW_PACKETS = 4096;
export const DEFAULT_CONFIG_POOL_PACKETS = 4096;
export const DEFAULT_FDB_AGE_SECONDS = 300;
export const DEFAULT_FDB_MAX_ENTRIES_PER_LABEL = 4096;
export const DEFAULT_AUDIT_RATE_PER_SECOND = 100;
export const DEFAULT_AUDIT_BURST = 200;
export const DEFAULT_STATE_DIR = '/var/lib/sectunnel';
/** Time-based rekey of handshake sessions (issue 6: 10 minutes). */
export const DEFAULT_REKEY_AFTER_SECONDS = 600;
/** How long an older inbound SA stays after the peer moved to a newer one. */
export const DEFAULT_GRACE_SECONDS = 30;
/** Least soft packet limit of a handshake SA (a rekey per thousand packets is already absurd). */
export const MIN_REKEY_AFTER_PACKETS = 1000;
/** Least soft byte limit of a handshake SA (1 MiB). */
export const MIN_REKEY_AFTER_BYTES = 1 << 20;
/** Largest soft limit: handshake SAs use 64-bit ESN counters, exact up to 2^53 − 1 (core/sa.ts SEQ_MAX_ESN). */
const MAX_REKEY_AFTER = Number.MAX_SAFE_INTEGER;

/** Default control socket of a host: /run/sectunnel/<host>.sock. */
export function defaultControlSocket(hostName: string): string {
  return `/run/sectunnel/${hostName}.sock`;
}

/** Smallest pool slot: headroom + a 1500-octet payload + Ethernet header and tag + tailroom, rounded to 8. */
export const MIN_SLOT_BYTES = (HEADROOM_BYTES + 1500 + ETH_HEADER_BYTES + VLAN_TAG_BYTES + TAILROOM_BYTES + 7) & ~7;
const MAX_SLOT_BYTES = 1 << 17;
/** Largest TAP MTU: a 9000-octet jumbo frame. */
const MAX_TAP_MTU = 9000;

// ---------------------------------------------------------------------------
// Field schemas.

const IFNAME_TEXT = 'an interface name of 1..15 characters without "/", ":" or white space';

function ifnameField() {
  return field<string>((v) => {
    if (typeof v !== 'string' || v === '' || v === '.' || v === '..' || /[/:\s]/.test(v)) return `expected ${IFNAME_TEXT}`;
    if (Buffer.byteLength(v) > 15) return `expected ${IFNAME_TEXT} (Linux IFNAMSIZ); this one has ${Buffer.byteLength(v)}`;
    return { value: v };
  });
}

function absolutePathField(maxBytes = 4095, why = '') {
  const text = `expected an absolute path (starting with "/") of at most ${maxBytes} bytes${why}`;
  return field<string>((v) => (typeof v === 'string' && v.startsWith('/') && !v.includes('\0') && Buffer.byteLength(v) <= maxBytes ? { value: v } : text));
}

/** Longest unix socket path (sun_path is 108 bytes with the terminating NUL). */
const UNIX_PATH_MAX_BYTES = 107;

const PUBLIC_KEY_TEXT = 'expected an X25519 public key: 32 octets in base64 (44 characters ending in "=", as `sectunnel pubkey` prints)';

function publicKeyField() {
  return field<Uint8Array>((v) => {
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(v)) return PUBLIC_KEY_TEXT;
    return { value: new Uint8Array(Buffer.from(v, 'base64')) };
  });
}

const LISTEN_TEXT = 'expected "ADDRESS:PORT" like "127.0.0.1:9273" or "[::1]:9273"';

function listenField() {
  return field<{ address: string; port: number }>((v) => {
    if (typeof v !== 'string') return LISTEN_TEXT;
    const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(v);
    if (m === null) return LISTEN_TEXT;
    const port = Number(m[3]);
    const inner = addressField(undefined, false).safeParse(m[1] ?? m[2]);
    if (!inner.success || port < 1 || port > 65535) return LISTEN_TEXT;
    if ((m[1] !== undefined) !== (addressFamily(inner.data) === 6)) return LISTEN_TEXT;
    return { value: { address: inner.data, port } };
  });
}

const tapSchema = strictObject(
  { name: ifnameField(), create: bool().default(false), mtu: intIn(68, MAX_TAP_MTU).optional(), offload: bool().optional() },
  'a TAP {name, create?, mtu?, offload?}',
);

const attachSchema = strictObject({ interface: ifnameField() }, 'an attachment {interface}');

const domainSchema = strictObject(
  { ...domainShape, tap: tapSchema.optional(), attach: attachSchema.optional() },
  'a domain {name, label, macs, tap or attach}',
  (d, ctx) => {
    if ((d.tap === undefined) === (d.attach === undefined)) {
      addProblem(ctx, [], d, 'expected exactly one of tap (a TAP device) or attach (an existing interface, via an AF_PACKET socket)');
    }
  },
);

const staticSaHalfSchema = strictObject({ spi: spiField(), keymat: keymatField() }, 'an SA {spi, keymat}');

const staticSaSchema = strictObject(
  {
    labels: labelRefsField(),
    algorithm: algorithmField().optional(),
    esn: bool().default(true),
    in: staticSaHalfSchema,
    out: staticSaHalfSchema,
  },
  'a static SA pair {labels, algorithm?, esn?, in, out}',
);

const peerSchema = strictObject(
  {
    name: nameField(),
    address: addressField(),
    port: intIn(1, 65535).optional(),
    labels: labelRefsField(),
    publicKey: publicKeyField().optional(),
    presharedKeyFile: absolutePathField().optional(),
    algorithms: listOf(algorithmField(), 'AEAD algorithms', true).optional(),
    staticSas: listOf(staticSaSchema, 'static SA pairs').default([]),
  },
  'a peer {name, address, port?, labels, publicKey?, presharedKeyFile?, algorithms?, staticSas?}',
);

const hostSchema = strictObject({ name: nameField(), privateKeyFile: absolutePathField().optional() }, 'an object {name, privateKeyFile?}');

const handshakeSchema = strictObject(
  {
    rekeyAfterSeconds: intIn(1, 86400).default(DEFAULT_REKEY_AFTER_SECONDS),
    graceSeconds: intIn(1, 3600).default(DEFAULT_GRACE_SECONDS),
    rekeyAfterPackets: intIn(MIN_REKEY_AFTER_PACKETS, MAX_REKEY_AFTER).optional(),
    rekeyAfterBytes: intIn(MIN_REKEY_AFTER_BYTES, MAX_REKEY_AFTER).optional(),
  },
  'an object {rekeyAfterSeconds?, graceSeconds?, rekeyAfterPackets?, rekeyAfterBytes?}',
);

const underlaySchema = strictObject(
  {
    address: addressField(),
    port: intIn(1, 65535).default(UDP_ENCAP_PORT),
    transport: oneOf(['udp', 'esp']).default('udp'),
    mtu: intIn(576, 65535).default(DEFAULT_UNDERLAY_MTU),
  },
  'an object {address, port?, transport?, mtu?}',
  (u, ctx) => {
    if (typeof u.address === 'string' && addressFamily(u.address) === 6 && typeof u.mtu === 'number' && u.mtu < 1280) {
      addProblem(ctx, ['mtu'], u.mtu, 'expected at least 1280 with an IPv6 underlay (RFC 8200 §5)');
    }
  },
);

const cryptoSchema = strictObject(
  { algorithm: algorithmField().default(DEFAULT_ALGORITHM), backend: oneOf(['auto', ...AEAD_BACKENDS]).default('auto') },
  'an object {algorithm?, backend?}',
);

const SLOT_TEXT = ` that is a multiple of 8`;
const poolSchema = strictObject(
  {
    packets: intIn(64, 1 << 20).default(DEFAULT_CONFIG_POOL_PACKETS),
    slotBytes: intIn(MIN_SLOT_BYTES, MAX_SLOT_BYTES, SLOT_TEXT)
      .refine((n) => n % 8 === 0, { error: `expected an integer in ${MIN_SLOT_BYTES}..${MAX_SLOT_BYTES}${SLOT_TEXT}` })
      .optional(),
  },
  'an object {packets?, slotBytes?}',
);

const fdbSchema = strictObject(
  {
    ageSeconds: intIn(1, 86400).default(DEFAULT_FDB_AGE_SECONDS),
    maxEntriesPerLabel: intIn(1, 1 << 20).default(DEFAULT_FDB_MAX_ENTRIES_PER_LABEL),
  },
  'an object {ageSeconds?, maxEntriesPerLabel?}',
);

const auditSchema = strictObject(
  {
    path: absolutePathField().optional(),
    ratePerSecond: intIn(1, 1_000_000).default(DEFAULT_AUDIT_RATE_PER_SECOND),
    burst: intIn(1, 1_000_000).default(DEFAULT_AUDIT_BURST),
  },
  'an object {path?, ratePerSecond?, burst?}',
);

const metricsSchema = strictObject({ listen: listenField().optional() }, 'an object {listen?}');
const controlSchema = strictObject(
  { socket: absolutePathField(UNIX_PATH_MAX_BYTES, ' (the unix socket path limit)').optional() },
  'an object {socket?}',
);
const stateSchema = strictObject({ dir: absolutePathField().default(DEFAULT_STATE_DIR) }, 'an object {dir?}');
const logSchema = strictObject({ level: oneOf(['debug', 'info', 'warn', 'error']).default('info') }, 'an object {level?}');

// ---------------------------------------------------------------------------
// The file.

/** The schema of the daemon config; use with loadConfigFile or validateConfig. */
export const daemonConfigSchema = strictObject(
  {
    host: hostSchema,
    underlay: underlaySchema,
    crypto: cryptoSchema.prefault({}),
    handshake: handshakeSchema.prefault({}),
    replayWindowPackets: replayWindowField().default(DEFAULT_REPLAY_WINDOW_PACKETS),
    pool: poolSchema.prefault({}),
    labels: listOf(labelSchema, 'labels {name, vlan, greKey?, context?}', true),
    domains: listOf(domainSchema, 'domains').default([]),
    peers: listOf(peerSchema, 'peers').default([]),
    policy: listOf(policyRuleField(), 'policy rules').default([]),
    fdb: fdbSchema.prefault({}),
    audit: auditSchema.prefault({}),
    metrics: metricsSchema.prefault({}),
    control: controlSchema.prefault({}),
    state: stateSchema.prefault({}),
    log: logSchema.prefault({}),
  },
  'a config object {host, underlay, labels, …}',
  (cfg, ctx) => {
    const labels = checkUniqueNames(ctx, cfg.labels, ['labels'], 'named');
    checkLabelPairs(ctx, cfg.labels);
    checkDomains(ctx, cfg.domains, labels);
    checkInterfaces(ctx, cfg.domains, cfg.pool);
    checkPeers(ctx, cfg, labels);
    checkPolicy(ctx, cfg.policy, labels);
  },
).transform((cfg): DaemonConfig => {
  const algorithm = cfg.crypto.algorithm;
  return {
    host: { name: cfg.host.name, ...(cfg.host.privateKeyFile !== undefined && { privateKeyFile: cfg.host.privateKeyFile }) },
    handshake: {
      rekeyAfterSeconds: cfg.handshake.rekeyAfterSeconds,
      graceSeconds: cfg.handshake.graceSeconds,
      ...(cfg.handshake.rekeyAfterPackets !== undefined && { rekeyAfterPackets: cfg.handshake.rekeyAfterPackets }),
      ...(cfg.handshake.rekeyAfterBytes !== undefined && { rekeyAfterBytes: cfg.handshake.rekeyAfterBytes }),
    },
    underlay: { ...cfg.underlay, family: addressFamily(cfg.underlay.address) },
    crypto: { algorithm, backend: cfg.crypto.backend },
    replayWindowPackets: cfg.replayWindowPackets,
    pool: { packets: cfg.pool.packets, slotBytes: cfg.pool.slotBytes ?? DEFAULT_SLOT_BYTES },
    labels: cfg.labels,
    domains: cfg.domains.map((d): DaemonDomainConfig => {
      const base = { name: d.name, label: d.label, macs: d.macs };
      if (d.tap !== undefined) {
        const tap = { name: d.tap.name, create: d.tap.create, ...(d.tap.mtu !== undefined && { mtu: d.tap.mtu }), ...(d.tap.offload !== undefined && { offload: d.tap.offload }) };
        return { ...base, tap };
      }
      return { ...base, attach: { interface: d.attach!.interface } };
    }),
    peers: cfg.peers.map(
      (p): PeerConfig => ({
        name: p.name,
        address: p.address,
        port: p.port ?? cfg.underlay.port,
        labels: p.labels,
        ...(p.publicKey !== undefined && { publicKey: p.publicKey }),
        ...(p.presharedKeyFile !== undefined && { presharedKeyFile: p.presharedKeyFile }),
        ...(p.algorithms !== undefined && { algorithms: [...new Set(p.algorithms)] }),
        staticSas: p.staticSas.map((s) => ({
          labels: s.labels,
          algorithm: s.algorithm ?? algorithm,
          esn: s.esn,
          in: { spi: s.in.spi, keymat: s.in.keymat },
          out: { spi: s.out.spi, keymat: s.out.keymat },
        })),
      }),
    ),
    policy: cfg.policy,
    fdb: { ageSeconds: cfg.fdb.ageSeconds, maxEntriesPerLabel: cfg.fdb.maxEntriesPerLabel },
    audit: {
      ...(cfg.audit.path !== undefined && { path: cfg.audit.path }),
      ratePerSecond: cfg.audit.ratePerSecond,
      burst: cfg.audit.burst,
    },
    metrics: cfg.metrics.listen !== undefined ? { listen: cfg.metrics.listen } : {},
    control: { socket: cfg.control.socket ?? defaultControlSocket(cfg.host.name) },
    state: { dir: cfg.state.dir },
    log: { level: cfg.log.level },
  };
});

type Ctx = z.core.$RefinementCtx<unknown>;

/** TAP and attached interface names are unique; a TAP MTU fits a pool slot. */
function checkInterfaces(ctx: Ctx, domains: unknown, pool: unknown): void {
  if (!Array.isArray(domains)) return;
  const slotBytes = isRecord(pool) && typeof pool.slotBytes === 'number' ? pool.slotBytes : DEFAULT_SLOT_BYTES;
  const users = new Map<string, string>();
  domains.forEach((d, i) => {
    if (!isRecord(d)) return;
    for (const [kind, key] of [
      ['tap', 'name'],
      ['attach', 'interface'],
    ] as const) {
      const io = d[kind];
      if (!isRecord(io) || typeof io[key] !== 'string') continue;
      const name = io[key] as string;
      const here = `domains[${i}].${kind}.${key}`;
      const first = users.get(name);
      if (first === undefined) users.set(name, here);
      else addProblem(ctx, ['domains', i, kind, key], name, `${first} already uses interface "${name}"; each domain needs its own`);
      const mtu = io.mtu;
      if (kind === 'tap' && typeof mtu === 'number' && HEADROOM_BYTES + mtu + ETH_HEADER_BYTES + VLAN_TAG_BYTES + TAILROOM_BYTES > slotBytes) {
        addProblem(
          ctx,
          ['domains', i, 'tap', 'mtu'],
          mtu,
          `expected at most ${slotBytes - HEADROOM_BYTES - ETH_HEADER_BYTES - VLAN_TAG_BYTES - TAILROOM_BYTES} so that a frame fits a pool slot of ${slotBytes} bytes (pool.slotBytes)`,
        );
      }
    }
  });
}

/** Peers: names unique and not the host's, address family = underlay's, labels known, static SAs consistent. */
function checkPeers(ctx: Ctx, cfg: Record<string, unknown>, labels: ReadonlyMap<string, number>): void {
  const peers = cfg.peers;
  if (!Array.isArray(peers)) return;
  checkUniqueNames(ctx, peers, ['peers'], 'named');
  const host = isRecord(cfg.host) && typeof cfg.host.name === 'string' ? cfg.host.name : undefined;
  const underlay = isRecord(cfg.underlay) ? cfg.underlay : {};
  const local = typeof underlay.address === 'string' ? underlay.address : undefined;
  const defaultPort = typeof underlay.port === 'number' ? underlay.port : UDP_ENCAP_PORT;
  const defaultAlg = isRecord(cfg.crypto) && typeof cfg.crypto.algorithm === 'string' ? cfg.crypto.algorithm : DEFAULT_ALGORITHM;
  const endpoints = new Map<string, number>();
  const inbound = new Map<number, string>();
  const publicKeys = new Map<string, number>();

  peers.forEach((p, i) => {
    if (!isRecord(p)) return;
    if (typeof p.name === 'string' && p.name === host) addProblem(ctx, ['peers', i, 'name'], p.name, 'this is host.name; a peer is another host');
    checkLabelRefs(ctx, ['peers', i, 'labels'], p.labels, labels);
    if (typeof p.address === 'string' && local !== undefined) {
      const fam = addressFamily(p.address);
      if (fam !== addressFamily(local)) {
        addProblem(ctx, ['peers', i, 'address'], p.address, `expected an IPv${addressFamily(local)} address like underlay.address (${local})`);
      } else if (p.address === local) {
        addProblem(ctx, ['peers', i, 'address'], p.address, 'this is underlay.address; a peer is another host');
      }
      const endpoint = `${p.address} port ${typeof p.port === 'number' ? p.port : defaultPort}`;
      const first = endpoints.get(endpoint);
      if (first === undefined) endpoints.set(endpoint, i);
      else addProblem(ctx, ['peers', i, 'address'], p.address, `peers[${first}] already has address ${endpoint}`);
    }
    const pk = p.publicKey instanceof Uint8Array ? Buffer.from(p.publicKey).toString('base64') : typeof p.publicKey === 'string' ? p.publicKey : undefined;
    if (pk !== undefined) {
      const first = publicKeys.get(pk);
      if (first === undefined) publicKeys.set(pk, i);
      else addProblem(ctx, ['peers', i, 'publicKey'], pk, `peers[${first}] already has this public key; a public key names one host`);
    }
    if (!Array.isArray(p.staticSas)) return;
    const peerLabels = new Set(Array.isArray(p.labels) ? p.labels.filter((l): l is string => typeof l === 'string') : []);
    const saOfLabel = new Map<string, number>();
    const outbound = new Map<number, number>();
    p.staticSas.forEach((s, j) => {
      if (!isRecord(s)) return;
      const at: PathSegment[] = ['peers', i, 'staticSas', j];
      if (Array.isArray(s.labels)) {
        s.labels.forEach((l, k) => {
          if (typeof l !== 'string') return;
          if (!labels.has(l)) checkLabelRef(ctx, [...at, 'labels', k], l, labels);
          else if (!peerLabels.has(l)) {
            addProblem(ctx, [...at, 'labels', k], l, `peer "${String(p.name)}" does not carry label "${l}" (peers[${i}].labels: ${[...peerLabels].join(', ')})`);
          }
          const other = saOfLabel.get(l);
          if (other === undefined) saOfLabel.set(l, j);
          else addProblem(ctx, [...at, 'labels', k], l, `staticSas[${other}] of this peer already carries "${l}"; a label has one SA pair per peer`);
        });
      }
      const alg = typeof s.algorithm === 'string' ? s.algorithm : defaultAlg;
      for (const dir of ['in', 'out'] as const) {
        const half = s[dir];
        if (!isRecord(half)) continue;
        checkKeymat(ctx, [...at, dir, 'keymat'], half.keymat, alg);
        if (typeof half.spi !== 'number') continue;
        const spiText = `0x${half.spi.toString(16).padStart(8, '0')}`;
        if (dir === 'in') {
          const first = inbound.get(half.spi);
          if (first === undefined) inbound.set(half.spi, `peers[${i}].staticSas[${j}].in`);
          else addProblem(ctx, [...at, 'in', 'spi'], half.spi, `${first} already receives on SPI ${spiText}; inbound SPIs must be unique on a host`);
        } else {
          const first = outbound.get(half.spi);
          if (first === undefined) outbound.set(half.spi, j);
          else addProblem(ctx, [...at, 'out', 'spi'], half.spi, `staticSas[${first}] of this peer already sends on SPI ${spiText}`);
        }
      }
    });
  });
}

/** Reads and validates a daemon config file; rejects with ConfigError. */
export function loadDaemonConfig(path: string): Promise<DaemonConfig> {
  return loadConfigFile(path, daemonConfigSchema);
}

/** Synchronous loadDaemonConfig. */
export function loadDaemonConfigSync(path: string): DaemonConfig {
  return loadConfigFileSync(path, daemonConfigSchema);
}
