/**
 * The daemon's side of the peer handshake (DESIGN.md "Keys and sessions"): a
 * core SessionHost driven by the UDP socket's control messages and a timer, its
 * actions performed against the SA database, the dataplane's tables and the
 * transport.
 *
 * Stages:
 *   1. start: host private key (loadPrivateKey: refuses a group/other-readable
 *      file) and each peer's pre-shared key → SessionHost with every peer that
 *      has a public key;
 *   2. events: a control message (non-ESP marker) from "addr:port" → receive,
 *      with the under-load flag (cookies) when more than UNDER_LOAD_MESSAGES
 *      arrived in the last second; ESP with an unknown SPI from a peer's address
 *      → unknownSpi (rate-limited by the host); `rekey PEER` → rekey; the timer
 *      → tick, at nextTimerMs() and at least every TICK_MAX_MS;
 *   3. actions, in order: send (one pool buffer per message, via the transport),
 *      install/remove SAs (SA database + tables routes: setInbound(sa, peerId),
 *      setOutbound(peerId, labelId, sa) per label, removeInbound), audit, log;
 *   4. reload: tables swapped → every route reinstalled; peers added, removed,
 *      updated (updatePeer keeps the session until the new one replaces it).
 *
 * Noise primitives: node:crypto's (OpenSSL) X25519, BLAKE2s and ChaCha20-Poly1305
 * replace the pure-JS defaults process-wide once they reproduce RFC 7748 §6.1 and
 * the noble results (nodeNoisePrimitives); the handshake then costs well under a
 * millisecond of the event loop instead of ~10 ms per side (bench/handshake.bench.ts).
 *
 * Sequence numbers: handshake SAs get fresh keys per session and are never
 * resumed after a restart (a restarted host handshakes again), so no nonce can
 * repeat across restarts; the sequence store only guards static SAs.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { HEADROOM_BYTES } from '../../buf/constants.js';
import type { PacketPool } from '../../buf/pool.js';
import type { AuditLog } from '../../control/audit-log.js';
import type { DaemonConfig, PeerConfig } from '../../control/config.js';
import { loadPresharedKey, loadPrivateKey } from '../../control/keys.js';
import type { Logger } from '../../control/log.js';
import type { InboundSa, OutboundSa } from '../../core/sa.js';
import { SaDatabase } from '../../core/sadb.js';
import { NOBLE_NOISE_PRIMITIVES, noisePrimitives, setNoisePrimitives, type NoisePrimitives } from '../../core/noise.js';
import { SessionHost, type PeerSessionStatus, type SessionAction, type SessionPeerConfig } from '../../core/session.js';
import type { Tables } from '../../core/tables.js';
import type { AeadBackendName } from '../../crypto/aead.js';
import type { EspTransport } from '../../io/raw-esp.js';
import { UDP_MAX_PEERS } from '../../io/udp.js';
import { DaemonError } from './errors.js';
import { endpointText } from './transport.js';

/** The timer runs at least this often (soft limits and first-data switches are polled). */
export const TICK_MAX_MS = 1000;
/** More handshake messages than this in the last second: answer initiations with cookies first. */
export const UNDER_LOAD_MESSAGES = 64;
/** Transport peer index used for sends to an address that is not a configured peer (cookie replies). */
const SCRATCH_PEER_INDEX = UDP_MAX_PEERS - 1;


function parseEndpoint(text: string): { address: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  return m === null ? null : { address: (m[1] ?? m[2])!, port: Number(m[3]) };
}

const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

function view(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function b64u(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
}

/**
 * An X25519 private KeyObject from 32 raw octets. JWK is node's fast import of a raw key (PKCS#8
 * DER takes ~10× longer); the JWK parser wants an `x` string but derives the public key from `d`
 * (checked by nodeNoisePrimitives' self-test, which falls back to noble if that ever changes).
 */
function x25519PrivateKeyObject(privateKey: Uint8Array): KeyObject {
  return createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: b64u(privateKey), x: '' }, format: 'jwk' });
}

const NODE_NOISE_PRIMITIVES: NoisePrimitives = {
  name: 'node',
  x25519PublicKey: (privateKey) => new Uint8Array(Buffer.from(createPublicKey(x25519PrivateKeyObject(privateKey)).export({ format: 'jwk' }).x!, 'base64url')),
  x25519: (privateKey, publicKey) => {
    try {
      const pub = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(publicKey) }, format: 'jwk' });
      return view(diffieHellman({ privateKey: x25519PrivateKeyObject(privateKey), publicKey: pub }));
    } catch {
      return null; // OpenSSL refuses a low-order point (all-zero output)
    }
  },
  hash: (parts) => {
    const h = createHash('blake2s256');
    for (const p of parts) h.update(p);
    return view(h.digest());
  },
  hmac: (key, parts) => {
    const m = createHmac('blake2s256', key);
    for (const p of parts) m.update(p);
    return view(m.digest());
  },
  seal: (key, nonce, ad, plaintext) => {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(ad, { plaintextLength: plaintext.length });
    return view(Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]));
  },
  open: (key, nonce, ad, ciphertext) => {
    if (ciphertext.length < 16) return null;
    try {
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      d.setAAD(ad, { plaintextLength: ciphertext.length - 16 });
      return view(Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - 16)), d.final()]));
    } catch {
      return null;
    }
  },
};

/** Installs node:crypto's Noise primitives process-wide if they pass the self-test (once); else keeps noble and warns. */
export function useNodeNoisePrimitives(log?: Logger): void {
  if (noisePrimitives().name === 'node') return;
  const n = nodeNoisePrimitives();
  if (n !== null) setNoisePrimitives(n);
  else log?.warn('node:crypto X25519/BLAKE2s/ChaCha20-Poly1305 missing or not matching the reference: the handshake uses the pure-JS primitives (about 10 ms of CPU per handshake side)');
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a !== null && b !== null && Buffer.compare(a, b) === 0;
}

/**
 * node:crypto's Noise primitives (OpenSSL X25519, BLAKE2s-256, HMAC, ChaCha20-Poly1305), or null
 * when this Node lacks one of them or any gives other octets than RFC 7748 §6.1 and the noble
 * implementation on a fixed input (then the caller keeps noble).
 */
export function nodeNoisePrimitives(): NoisePrimitives | null {
  const n = NODE_NOISE_PRIMITIVES;
  const ref = NOBLE_NOISE_PRIMITIVES;
  const h = (x: string) => new Uint8Array(Buffer.from(x, 'hex'));
  try {
    // RFC 7748 §6.1: Alice's private key, Bob's public key and their shared secret.
    const alice = h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bobPub = h('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    if (!sameBytes(n.x25519(alice, bobPub), h('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'))) return null;
    if (!sameBytes(n.x25519PublicKey(alice), h('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'))) return null;
    if (n.x25519(alice, new Uint8Array(32)) !== null) return null;
    const key = h('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    const nonce = h('000000000102030405060708');
    const parts = [h('6c6162656c'), new Uint8Array(100).fill(7)];
    if (!sameBytes(n.hash(parts), ref.hash(parts))) return null;
    if (!sameBytes(n.hmac(key, parts), ref.hmac(key, parts))) return null;
    const sealed = n.seal(key, nonce, parts[0]!, parts[1]!);
    if (!sameBytes(sealed, ref.seal(key, nonce, parts[0]!, parts[1]!))) return null;
    if (!sameBytes(n.open(key, nonce, parts[0]!, sealed), parts[1]!)) return null;
    sealed[0]! ^= 1;
    if (n.open(key, nonce, parts[0]!, sealed) !== null) return null;
    return n;
  } catch {
    return null;
  }
}

/** Pre-shared keys by peer name (peers with `presharedKeyFile`). */
export async function loadPsks(cfg: DaemonConfig): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const [i, p] of cfg.peers.entries()) {
    if (p.publicKey === undefined || p.presharedKeyFile === undefined) continue;
    try {
      out.set(p.name, await loadPresharedKey(p.presharedKeyFile));
    } catch (e) {
      throw new DaemonError('ST_DAEMON_KEYS', `peers[${i}].presharedKeyFile: ${(e as Error).message}`, e);
    }
  }
  return out;
}

function sessionPeer(cfg: DaemonConfig, p: PeerConfig, psks: ReadonlyMap<string, Uint8Array>): SessionPeerConfig {
  const psk = psks.get(p.name);
  return {
    id: p.name,
    endpoint: endpointText(p.address, p.port),
    publicKey: p.publicKey!,
    labels: [...p.labels],
    algorithms: [...(p.algorithms ?? [cfg.crypto.algorithm])],
    ...(psk !== undefined && { psk }),
  };
}

/** Soft limits of outbound handshake SAs from the config (handshake.rekeyAfterPackets/Bytes; absent: the SA's defaults). */
export function saLimitsOf(cfg: DaemonConfig): { softPackets?: number; softBytes?: number } {
  const h = cfg.handshake;
  return {
    ...(h.rekeyAfterPackets !== undefined && { softPackets: h.rekeyAfterPackets }),
    ...(h.rekeyAfterBytes !== undefined && { softBytes: h.rekeyAfterBytes }),
  };
}

function samePeer(a: SessionPeerConfig, b: SessionPeerConfig): boolean {
  const hex = (x: Uint8Array | undefined) => (x === undefined ? '' : Buffer.from(x).toString('hex'));
  return (
    a.endpoint === b.endpoint &&
    hex(a.psk) === hex(b.psk) &&
    JSON.stringify(a.labels) === JSON.stringify(b.labels) &&
    JSON.stringify(a.algorithms) === JSON.stringify(b.algorithms)
  );
}

export interface HandshakeOptions {
  cfg: DaemonConfig;
  privateKey: Uint8Array;
  psks: ReadonlyMap<string, Uint8Array>;
  backend: AeadBackendName | undefined;
  tables: Tables;
  pool: PacketPool;
  log: Logger;
  auditLog: () => AuditLog;
}

/** The SessionHost of a daemon and what it drives (see the file comment). */
export class Handshakes {
  readonly host: SessionHost;
  readonly sadb = new SaDatabase();
  /** Action errors (an action that could not be performed; logged). */
  actionErrors = 0;
  private cfg: DaemonConfig;
  private tables: Tables;
  private transport: EspTransport | null = null;
  private readonly pool: PacketPool;
  private readonly log: Logger;
  private readonly auditLog: () => AuditLog;
  private readonly inboundPeer = new Map<number, { sa: InboundSa; peer: string }>();
  private readonly outboundPeer = new Map<OutboundSa, string>();
  private endpointIndex = new Map<string, number>();
  private peerEndpoint: string[] = [];
  private peerCfg = new Map<string, SessionPeerConfig>();
  private readonly recentMs: number[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAtMs = Infinity;
  private stopped = false;
  private readonly sendBufs = [null as unknown as import('../../buf/packet-buf.js').PacketBuf];
  private readonly sendPeer = [0];

  /** Reads the host private key and builds the session host; throws DaemonError naming the file. */
  static async create(o: Omit<HandshakeOptions, 'privateKey'>): Promise<Handshakes> {
    useNodeNoisePrimitives(o.log);
    const file = o.cfg.host.privateKeyFile!;
    let key: Uint8Array;
    try {
      key = await loadPrivateKey(file);
    } catch (e) {
      throw new DaemonError('ST_DAEMON_KEYS', `host.privateKeyFile: ${(e as Error).message}`, e);
    }
    try {
      return new Handshakes({ ...o, privateKey: key });
    } finally {
      key.fill(0);
    }
  }

  private constructor(o: HandshakeOptions) {
    this.cfg = o.cfg;
    this.tables = o.tables;
    this.pool = o.pool;
    this.log = o.log;
    this.auditLog = o.auditLog;
    this.host = new SessionHost({
      staticPrivateKey: o.privateKey,
      spis: this.sadb,
      rekeyAfterMs: o.cfg.handshake.rekeyAfterSeconds * 1000,
      graceMs: o.cfg.handshake.graceSeconds * 1000,
      sa: {
        ...(o.backend !== undefined && { backend: o.backend }),
        esn: true,
        replayWindowPackets: o.cfg.replayWindowPackets,
        limits: saLimitsOf(o.cfg),
      },
    });
    for (const [i, p] of o.cfg.peers.entries()) {
      if (p.publicKey === undefined) continue;
      const sp = sessionPeer(o.cfg, p, o.psks);
      try {
        this.host.addPeer(sp);
      } catch (e) {
        throw new DaemonError('ST_DAEMON_KEYS', `peers[${i}]: ${(e as Error).message}`, e);
      }
      this.peerCfg.set(p.name, sp);
    }
    this.indexPeers(o.cfg);
  }

  /** Sets the transport handshakes are sent on and starts the timer. */
  start(transport: EspTransport): void {
    this.transport = transport;
    this.arm(0);
  }

  /** Stops the timer; SAs are destroyed (keys zeroed). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.sadb.clear();
    this.inboundPeer.clear();
    this.outboundPeer.clear();
  }

  /** Inbound SAs with their peers (status, metrics). */
  inboundEntries(): { sa: InboundSa; peer: string }[] {
    return [...this.inboundPeer.values()];
  }

  /** Outbound SAs in use with their peers. */
  outboundEntries(): { sa: OutboundSa; peer: string }[] {
    return [...this.outboundPeer].map(([sa, peer]) => ({ sa, peer }));
  }

  /** Per-peer session status. */
  status(nowMs: number): PeerSessionStatus[] {
    return this.host.status(nowMs);
  }

  /** A control message (UDP payload starting with the non-ESP marker) from `source` ("addr:port"). */
  receive(payload: Uint8Array, source: string): void {
    if (this.stopped) return;
    const nowMs = Date.now();
    const r = this.recentMs;
    while (r.length > 0 && nowMs - r[0]! > 1000) r.shift();
    r.push(nowMs);
    this.perform(this.host.receive(source, payload, nowMs, random, r.length > UNDER_LOAD_MESSAGES));
  }

  /** ESP with an unknown SPI arrived from configured peer `peerIndex` (position in peers[]). */
  unknownSpi(peerIndex: number): void {
    const endpoint = this.peerEndpoint[peerIndex];
    if (endpoint === undefined || this.stopped) return;
    this.perform(this.host.unknownSpi(endpoint, Date.now(), random));
  }

  /** `sectunnel rekey PEER`; throws RangeError for an unknown peer. */
  rekey(peer: string): { peer: string; started: boolean } {
    if (!this.peerCfg.has(peer)) throw new RangeError(`no peer "${peer}" with a publicKey in the config`);
    const acts = this.host.rekey(peer, Date.now(), random);
    this.perform(acts);
    return { peer, started: acts.some((a) => a.type === 'send') };
  }

  /** Reload, part 1: the new tables get every route of the current SAs (peers of the new config only). */
  setTables(tables: Tables): void {
    this.tables = tables;
    for (const { sa, peer } of this.inboundPeer.values()) {
      const id = this.peerId(peer);
      if (id >= 0) tables.setInbound(sa, id);
    }
    for (const [sa, peer] of this.outboundPeer) this.routeOutbound(peer, sa);
  }

  /** Reload, part 2: peers removed, added or updated to match `cfg`. */
  reconfigure(cfg: DaemonConfig, psks: ReadonlyMap<string, Uint8Array>): void {
    const nowMs = Date.now();
    const next = new Map<string, SessionPeerConfig>();
    for (const p of cfg.peers) if (p.publicKey !== undefined) next.set(p.name, sessionPeer(cfg, p, psks));
    for (const [name, old] of this.peerCfg) {
      const n = next.get(name);
      if (n === undefined || Buffer.compare(n.publicKey, old.publicKey) !== 0) {
        this.perform(this.host.removePeer(name));
        this.peerCfg.delete(name);
      }
    }
    this.cfg = cfg;
    this.indexPeers(cfg);
    for (const [name, n] of next) {
      const old = this.peerCfg.get(name);
      if (old === undefined) this.host.addPeer(n);
      else if (!samePeer(old, n)) this.perform(this.host.updatePeer(n, nowMs, random));
      this.peerCfg.set(name, n);
    }
    this.arm(0);
  }

  private indexPeers(cfg: DaemonConfig): void {
    this.endpointIndex = new Map(cfg.peers.map((p, i) => [endpointText(p.address, p.port), i]));
    this.peerEndpoint = cfg.peers.map((p) => endpointText(p.address, p.port));
  }

  private peerId(name: string): number {
    return this.tables.peers.findIndex((p) => p.name === name);
  }

  private routeOutbound(peer: string, sa: OutboundSa): void {
    const id = this.peerId(peer);
    if (id < 0) return;
    for (const l of sa.labels) {
      const lid = this.tables.labels.idOf(l);
      if (lid >= 0 && this.sadb.outbound(peer, l) === sa) this.tables.setOutbound(id, lid, sa);
    }
  }

  private onTimer = (): void => {
    this.timer = null;
    this.timerAtMs = Infinity;
    if (this.stopped) return;
    this.perform(this.host.tick(Date.now(), random));
    this.arm(TICK_MAX_MS);
  };

  /** (Re)arms the timer for min(nextTimerMs, now + maxMs). */
  private arm(maxMs: number): void {
    if (this.stopped) return;
    const nowMs = Date.now();
    const at = Math.min(this.host.nextTimerMs(), nowMs + maxMs);
    if (this.timer !== null && at >= this.timerAtMs) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAtMs = Math.max(at, nowMs);
    this.timer = setTimeout(this.onTimer, Math.max(0, at - nowMs));
    this.timer.unref();
  }

  /** Performs actions in order (see the file comment); a failing action is logged and the rest go on. */
  private perform(actions: readonly SessionAction[]): void {
    for (const a of actions) {
      try {
        this.performOne(a);
      } catch (e) {
        this.actionErrors++;
        this.log.error('handshake action failed', { action: a.type, error: (e as Error).message });
      }
    }
    if (this.timer === null || this.host.nextTimerMs() < this.timerAtMs) this.arm(TICK_MAX_MS);
  }

  private performOne(a: SessionAction): void {
    switch (a.type) {
      case 'send':
        this.send(a.endpoint, a.bytes);
        return;
      case 'install_inbound': {
        this.sadb.installInbound(a.sa);
        this.inboundPeer.set(a.sa.spi, { sa: a.sa, peer: a.peer });
        const id = this.peerId(a.peer);
        if (id >= 0) this.tables.setInbound(a.sa, id);
        return;
      }
      case 'install_outbound': {
        for (const old of this.sadb.installOutbound(a.peer, a.sa)) this.outboundPeer.delete(old);
        this.outboundPeer.set(a.sa, a.peer);
        this.routeOutbound(a.peer, a.sa);
        return;
      }
      case 'remove_inbound':
        this.tables.removeInbound(a.spi);
        this.inboundPeer.delete(a.spi);
        this.sadb.removeInbound(a.spi);
        return;
      case 'remove_outbound': {
        const id = this.peerId(a.peer);
        if (id >= 0) {
          for (const l of a.sa.labels) {
            const lid = this.tables.labels.idOf(l);
            if (lid >= 0 && this.tables.outbound(id, lid) === a.sa) this.tables.setOutbound(id, lid, null);
          }
        }
        this.outboundPeer.delete(a.sa);
        this.sadb.removeOutbound(a.sa);
        return;
      }
      case 'audit':
        this.auditLog().write({ ...a.event, time: new Date(a.event.timeMs).toISOString(), host: this.cfg.host.name });
        return;
      case 'log': {
        const fields = a.peer !== null ? { peer: a.peer } : {};
        if (a.level === 'debug') this.log.debug(a.message, fields);
        else if (a.level === 'info') this.log.info(a.message, fields);
        else this.log.warn(a.message, fields);
        return;
      }
    }
  }

  private send(endpoint: string, bytes: Uint8Array): void {
    const t = this.transport;
    if (t === null) return;
    let index = this.endpointIndex.get(endpoint);
    if (index === undefined) {
      const ep = parseEndpoint(endpoint);
      if (ep === null) throw new Error(`cannot send a handshake message to ${endpoint}: not "addr:port"`);
      t.setPeer(SCRATCH_PEER_INDEX, ep.address, ep.port);
      index = SCRATCH_PEER_INDEX;
    }
    const buf = this.pool.get();
    if (buf === null) {
      this.log.warn('pool exhausted: a handshake message was not sent (it is retransmitted)', { endpoint });
      return;
    }
    try {
      const at = HEADROOM_BYTES;
      if (at + bytes.length > buf.bytes.length) throw new Error(`handshake message of ${bytes.length} octets does not fit a pool slot`);
      buf.bytes.set(bytes, at);
      buf.start = at;
      buf.end = at + bytes.length;
      this.sendBufs[0] = buf;
      this.sendPeer[0] = index;
      t.sendBatch(this.sendBufs, this.sendPeer, 1);
    } finally {
      this.pool.put(buf);
    }
  }
}
