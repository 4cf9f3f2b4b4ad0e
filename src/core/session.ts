/**
 * Per-peer session lifecycle (DESIGN.md "Keys and sessions"): handshakes, child SAs per
 * label, make-before-break rekeys, retransmission, collisions and restarted peers.
 * Pure: driven by events with the time and a random source as arguments, it returns
 * actions for the caller (the daemon) to perform, in order.
 *
 * Stages of a rekey (I = initiator, R = responder), each safe on its own:
 *   1. I reserves an inbound SPI per label it carries with R and sends an initiation.
 *   2. R authenticates it, intersects labels, reserves its SPIs, derives the keys,
 *      INSTALLS ITS NEW INBOUND SAs, then sends the response. R's new outbound SAs are
 *      built but not installed: R does not know yet that I can decrypt them.
 *   3. I reads the response, INSTALLS ITS NEW INBOUND SAs, THEN SWITCHES ITS OUTBOUND SAs
 *      (R already holds the matching inbound ones) and sends a confirmation (type 4).
 *   4. R switches its outbound SAs on the confirmation, or on the first packet that
 *      authenticates under a new inbound SA (polled on tick), whichever comes first.
 *   5. Each side keeps older inbound SAs until the peer has visibly moved past them (a
 *      confirmation or packets on a newer generation) plus `graceMs`, or until they are so
 *      old that the peer's matching outbound SA has expired (`rejectAfterMs` + grace).
 * So at no time does a host send on an SA its peer lacks.
 *
 * Rekeys start on time (`rekeyAfterMs` after the session began, for the side that
 * initiated it; the responder waits `responderRekeyDelayMs` longer so the two do not
 * race), on an outbound SA's soft limit (`OutboundSa.rekeyDue`, polled), on demand
 * (`rekey`), and when the caller reports ESP with an unknown SPI from a peer's address
 * (`unknownSpi`, at most one per `unknownSpiIntervalMs`): a peer that restarted lost its
 * SAs. Initiations are retransmitted as fresh initiations after `rekeyTimeoutMs`, doubling
 * up to `maxRetransmitIntervalMs`, plus jitter. Simultaneous initiations settle on one
 * session: the host whose static public key is lower (bytewise) stays initiator; the other
 * abandons its own initiation and answers.
 *
 * SPIs are reserved with the caller's SpiAllocator (the SaDatabase) and installed by the
 * actions; everything else goes through actions.
 *
 * Time: `nowMs` is wall-clock milliseconds (Date.now()). Initiations carry it as a TAI64N
 * timestamp, and a peer refuses any initiation not newer than the last it accepted, so the
 * value must keep growing across a restart of this host (as WireGuard requires).
 */
import type { AeadAlgorithm, AeadBackendName } from '../crypto/aead.js';
import {
  CookieSecret,
  consumeCookieReply,
  consumeInitiation,
  consumeResponse,
  createConfirm,
  createIdentity,
  createInitiation,
  createPeerKeys,
  createResponse,
  destroySessionKeys,
  labelNameCarriable,
  negotiate,
  newCookieState,
  newFailureCounts,
  newReplayState,
  compareTimestamps,
  peekHandshake,
  tai64nFromMs,
  verifyConfirm,
  type CookieState,
  type HandshakeFailure,
  type HandshakeFailureCounts,
  type HandshakeIdentity,
  type PeerKeys,
  type PendingInitiation,
  type ReplayState,
  type SessionKeys,
  type Tai64n,
} from './handshake.js';
import { bytesEqual, type DhCounter, type RandomSource } from './noise.js';
import { InboundSa, OutboundSa, type SaLimits } from './sa.js';

// ---------------------------------------------------------------------------------------------
// Configuration

/** Default time-based rekey interval (issue 6: 10 minutes). */
export const DEFAULT_REKEY_AFTER_MS = 600_000;
/** First retransmission of an unanswered initiation (WireGuard REKEY_TIMEOUT). */
export const DEFAULT_REKEY_TIMEOUT_MS = 5_000;
/** Retransmission interval cap. */
export const DEFAULT_MAX_RETRANSMIT_INTERVAL_MS = 60_000;
/** Jitter added to each retransmission (WireGuard: up to 333 ms). */
export const DEFAULT_RETRANSMIT_JITTER_MS = 333;
/** How long an older inbound SA stays after the peer moved to a newer one. */
export const DEFAULT_GRACE_MS = 30_000;
/** Least interval between handshakes started by "ESP with unknown SPI". */
export const DEFAULT_UNKNOWN_SPI_INTERVAL_MS = 5_000;
/** Confirmation resends: interval and count. */
export const DEFAULT_CONFIRM_RETRY_MS = 1_000;
export const DEFAULT_CONFIRM_RETRIES = 3;
/** Most generations of inbound SAs kept per peer (current included). */
export const DEFAULT_MAX_GENERATIONS = 4;
/** Extra delay before the responder of a session rekeys it on time. */
export const DEFAULT_RESPONDER_REKEY_DELAY_MS = 30_000;
/** When the winner of a collision sees the peer initiate, it resends its own initiation if older than this. */
export const COLLISION_RESEND_AFTER_MS = 1_000;

export interface SessionHostOptions {
  /** Our static X25519 private key (32 octets). */
  staticPrivateKey: Uint8Array;
  /** Noise prologue (default "sectunnel v1"); both sides must agree. */
  prologue?: Uint8Array;
  rekeyAfterMs?: number;
  /** Hard age of outbound SAs: no SA seals after this (default 1.5 × rekeyAfterMs). */
  rejectAfterMs?: number;
  responderRekeyDelayMs?: number;
  rekeyTimeoutMs?: number;
  maxRetransmitIntervalMs?: number;
  retransmitJitterMs?: number;
  graceMs?: number;
  unknownSpiIntervalMs?: number;
  confirmRetryMs?: number;
  confirmRetries?: number;
  maxGenerations?: number;
  minInitiationIntervalMs?: number;
  /** Reserves and releases receiver-chosen SPIs (an SaDatabase). */
  spis: SpiAllocator;
  /** How SAs are built: crypto backend, replay window, ESN (default on), packet/byte limits. */
  sa?: {
    backend?: AeadBackendName;
    replayWindowPackets?: number;
    esn?: boolean;
    /** Packet and byte limits of outbound SAs; the age limits are set from rejectAfterMs. */
    limits?: Pick<SaLimits, 'softPackets' | 'hardPackets' | 'softBytes' | 'hardBytes'>;
  };
}

/** What the session needs of the SA database for SPIs. */
export interface SpiAllocator {
  allocateSpi(randomUint32: () => number): number;
  releaseSpi(spi: number): void;
}

/** A configured peer host. */
export interface SessionPeerConfig {
  /** Peer name: the key of the peer in actions, status and the SA database. */
  id: string;
  /** Underlay endpoint as opaque text (e.g. "192.0.2.1:4500"): where handshakes go, what unknownSpi reports. */
  endpoint: string;
  /** The peer's static X25519 public key. */
  publicKey: Uint8Array;
  /** Pre-shared key (32 octets), optional. */
  psk?: Uint8Array;
  /** Labels this host carries with the peer (offered as initiator, granted as responder). */
  labels: readonly string[];
  /** Accepted AEAD algorithms in order of preference; default ['aes-gcm-256']. */
  algorithms?: readonly AeadAlgorithm[];
}

// ---------------------------------------------------------------------------------------------
// Actions

/** Why a handshake was started. */
export type RekeyReason = 'initial' | 'time' | 'soft_limit' | 'on_demand' | 'unknown_spi' | 'retry';

/** An event for the audit log. */
export type SessionAuditEvent =
  | { kind: 'label_not_granted'; peer: string; labels: string[]; timeMs: number }
  | { kind: 'label_refused_by_peer'; peer: string; labels: string[]; timeMs: number };

/** What the caller must do, in the order given. */
export type SessionAction =
  /** Send `bytes` (a UDP payload starting with the non-ESP marker) to `endpoint`. */
  | { type: 'send'; peer: string | null; endpoint: string; bytes: Uint8Array }
  /** sadb.installInbound(sa). Always precedes any send that lets the peer use it. */
  | { type: 'install_inbound'; peer: string; sa: InboundSa }
  /** sadb.installOutbound(peer, sa): switches the label to the new SA (the old one is destroyed by the sadb). */
  | { type: 'install_outbound'; peer: string; sa: OutboundSa }
  /** sadb.removeInbound(spi). */
  | { type: 'remove_inbound'; peer: string; spi: number }
  /** sadb.removeOutbound(sa): the label has no outbound SA any more. */
  | { type: 'remove_outbound'; peer: string; sa: OutboundSa }
  | { type: 'audit'; event: SessionAuditEvent }
  | { type: 'log'; level: 'debug' | 'info' | 'warn'; peer: string | null; message: string };

/** Status of one peer (for `sectunnel status`). */
export interface PeerSessionStatus {
  peer: string;
  endpoint: string;
  established: boolean;
  /** Our role in the current session. */
  role: 'initiator' | 'responder' | null;
  sessionAgeMs: number | null;
  lastHandshakeMs: number | null;
  nextRekeyMs: number | null;
  labels: string[];
  algorithm: AeadAlgorithm | null;
  handshakePending: boolean;
  handshakeAttempts: number;
  inboundSpis: number[];
  outboundSpis: number[];
  /** Handshake failures attributed to this peer, by reason (zeros left out). */
  failures: Partial<HandshakeFailureCounts>;
  rekeys: Record<RekeyReason, number>;
}

// ---------------------------------------------------------------------------------------------
// State

/** One handshake's SAs. */
interface Generation {
  readonly seq: number;
  readonly role: 'initiator' | 'responder';
  /** Our index: a confirmation from the peer names it (responder generations). */
  readonly localIndex: number;
  readonly algorithm: AeadAlgorithm;
  readonly labels: string[];
  readonly inbound: InboundSa[];
  readonly outbound: OutboundSa[];
  /** Responder: verifies the confirmation. */
  confirmKey: Uint8Array | null;
  readonly createdMs: number;
  /** When our outbound SAs switched to this generation, or -1. */
  activatedMs: number;
  /** When we saw the peer use this generation (confirmation or packets), or -1. */
  peerSwitchedMs: number;
  /** When the inbound SAs go, or Infinity. */
  retireAtMs: number;
}

interface Pending {
  hs: PendingInitiation;
  reason: RekeyReason;
  /** Reserved inbound SPI per label. */
  spis: Map<string, number>;
  attempt: number;
  sentMs: number;
  nextRetransmitMs: number;
}

interface ConfirmResend {
  bytes: Uint8Array;
  left: number;
  nextMs: number;
  gen: Generation;
}

class PeerState {
  keys: PeerKeys;
  readonly replay: ReplayState = newReplayState();
  readonly cookie: CookieState = newCookieState();
  pending: Pending | null = null;
  /** Oldest first. */
  gens: Generation[] = [];
  current: Generation | null = null;
  confirm: ConfirmResend | null = null;
  lastTimestamp: Tai64n | null = null;
  /** The peer's timestamp in its last response to us: its initiations older than this crossed ours. */
  answeredAt: Uint8Array | null = null;
  nextRekeyMs = Infinity;
  /** Earliest time of the next attempt when nothing is established or pending. */
  nextAttemptMs = -Infinity;
  lastHandshakeMs = -1;
  lastUnknownSpiMs = -Infinity;
  readonly failures = newFailureCounts();
  readonly rekeys: Record<RekeyReason, number> = { initial: 0, time: 0, soft_limit: 0, on_demand: 0, unknown_spi: 0, retry: 0 };

  constructor(public cfg: SessionPeerConfig) {
    this.keys = createPeerKeys(cfg.publicKey, cfg.psk);
  }
}

type IndexEntry = { kind: 'pending'; peer: PeerState } | { kind: 'gen'; peer: PeerState; gen: Generation };

function hexKey(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function positive(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new RangeError(`SessionHost option ${name} must be a finite number ≥ 0, got ${String(v)}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// The host

/** Sessions with every configured peer of one host. */
export class SessionHost {
  readonly identity: HandshakeIdentity;
  /** Handshake failures by reason, over all peers and unattributable messages. */
  readonly failures: HandshakeFailureCounts = newFailureCounts();
  /** DH operations performed (DoS accounting). */
  readonly dh: DhCounter = { dhOperations: 0 };
  /** Handshakes completed (either role). */
  handshakesCompleted = 0;

  private readonly peers = new Map<string, PeerState>();
  private readonly byPublicKey = new Map<string, PeerState>();
  private readonly byEndpoint = new Map<string, PeerState>();
  private readonly indexes = new Map<number, IndexEntry>();
  private readonly cookieSecret = new CookieSecret();
  private genSeq = 0;

  readonly rekeyAfterMs: number;
  readonly rejectAfterMs: number;
  readonly responderRekeyDelayMs: number;
  readonly rekeyTimeoutMs: number;
  readonly maxRetransmitIntervalMs: number;
  readonly retransmitJitterMs: number;
  readonly graceMs: number;
  readonly unknownSpiIntervalMs: number;
  readonly confirmRetryMs: number;
  readonly confirmRetries: number;
  readonly maxGenerations: number;
  readonly minInitiationIntervalMs: number | undefined;
  private readonly spis: SpiAllocator;
  private readonly saOpts: NonNullable<SessionHostOptions['sa']>;

  constructor(o: SessionHostOptions) {
    this.identity = createIdentity(o.staticPrivateKey, o.prologue);
    this.rekeyAfterMs = positive('rekeyAfterMs', o.rekeyAfterMs, DEFAULT_REKEY_AFTER_MS);
    this.rejectAfterMs = positive('rejectAfterMs', o.rejectAfterMs, Math.round(this.rekeyAfterMs * 1.5));
    this.responderRekeyDelayMs = positive('responderRekeyDelayMs', o.responderRekeyDelayMs, DEFAULT_RESPONDER_REKEY_DELAY_MS);
    this.rekeyTimeoutMs = positive('rekeyTimeoutMs', o.rekeyTimeoutMs, DEFAULT_REKEY_TIMEOUT_MS);
    this.maxRetransmitIntervalMs = positive('maxRetransmitIntervalMs', o.maxRetransmitIntervalMs, DEFAULT_MAX_RETRANSMIT_INTERVAL_MS);
    this.retransmitJitterMs = positive('retransmitJitterMs', o.retransmitJitterMs, DEFAULT_RETRANSMIT_JITTER_MS);
    this.graceMs = positive('graceMs', o.graceMs, DEFAULT_GRACE_MS);
    this.unknownSpiIntervalMs = positive('unknownSpiIntervalMs', o.unknownSpiIntervalMs, DEFAULT_UNKNOWN_SPI_INTERVAL_MS);
    this.confirmRetryMs = positive('confirmRetryMs', o.confirmRetryMs, DEFAULT_CONFIRM_RETRY_MS);
    this.confirmRetries = positive('confirmRetries', o.confirmRetries, DEFAULT_CONFIRM_RETRIES);
    this.maxGenerations = Math.max(2, positive('maxGenerations', o.maxGenerations, DEFAULT_MAX_GENERATIONS));
    this.minInitiationIntervalMs = o.minInitiationIntervalMs;
    if (this.rejectAfterMs <= this.rekeyAfterMs) {
      throw new RangeError(`SessionHost: rejectAfterMs (${this.rejectAfterMs}) must exceed rekeyAfterMs (${this.rekeyAfterMs}) so a rekey can finish before SAs expire`);
    }
    this.spis = o.spis;
    this.saOpts = o.sa ?? {};
  }

  /** Our static public key. */
  get publicKey(): Uint8Array {
    return this.identity.staticKey.publicKey;
  }

  // -------------------------------------------------------------------------------------------
  // Peers

  /** Adds a peer. Its first handshake starts on the next tick. */
  addPeer(cfg: SessionPeerConfig): void {
    if (this.peers.has(cfg.id)) throw new RangeError(`SessionHost.addPeer: peer ${cfg.id} exists`);
    const pk = hexKey(cfg.publicKey);
    if (this.byPublicKey.has(pk)) throw new RangeError(`SessionHost.addPeer: peer ${cfg.id} has the public key of peer ${this.byPublicKey.get(pk)!.cfg.id}`);
    if (bytesEqual(cfg.publicKey, this.publicKey)) throw new RangeError(`SessionHost.addPeer: peer ${cfg.id} has our own public key`);
    for (const l of cfg.labels) if (!labelNameCarriable(l)) throw new RangeError(`SessionHost.addPeer: peer ${cfg.id} label ${JSON.stringify(l)} cannot be carried in a handshake`);
    if (cfg.labels.length === 0) throw new RangeError(`SessionHost.addPeer: peer ${cfg.id} carries no label`);
    const p = new PeerState({ ...cfg, labels: [...cfg.labels], algorithms: [...(cfg.algorithms ?? ['aes-gcm-256'])] });
    this.peers.set(cfg.id, p);
    this.byPublicKey.set(pk, p);
    this.byEndpoint.set(cfg.endpoint, p);
  }

  /**
   * Replaces a peer's labels, algorithms, pre-shared key or endpoint (config reload) and starts a
   * rekey so the new settings apply; established SAs stay until the new ones replace them.
   */
  updatePeer(cfg: SessionPeerConfig, nowMs: number, random: RandomSource): SessionAction[] {
    const p = this.peers.get(cfg.id);
    if (p === undefined) throw new RangeError(`SessionHost.updatePeer: no peer ${cfg.id}`);
    if (!bytesEqual(cfg.publicKey, p.cfg.publicKey)) throw new RangeError(`SessionHost.updatePeer: peer ${cfg.id} changed its public key; remove and add it`);
    this.byEndpoint.delete(p.cfg.endpoint);
    p.cfg = { ...cfg, labels: [...cfg.labels], algorithms: [...(cfg.algorithms ?? ['aes-gcm-256'])] };
    p.keys = createPeerKeys(cfg.publicKey, cfg.psk);
    this.byEndpoint.set(cfg.endpoint, p);
    const out: SessionAction[] = [];
    this.abandonPending(p);
    this.initiate(p, 'on_demand', nowMs, random, out);
    return out;
  }

  /** Removes a peer and all its SAs. */
  removePeer(id: string): SessionAction[] {
    const p = this.peers.get(id);
    if (p === undefined) return [];
    const out: SessionAction[] = [];
    this.abandonPending(p);
    for (const g of [...p.gens]) this.dropGeneration(p, g, out, true);
    this.peers.delete(id);
    this.byPublicKey.delete(hexKey(p.cfg.publicKey));
    this.byEndpoint.delete(p.cfg.endpoint);
    return out;
  }

  /** Names of the configured peers. */
  peerIds(): string[] {
    return [...this.peers.keys()];
  }

  // -------------------------------------------------------------------------------------------
  // Events

  /**
   * A handshake message (UDP payload starting with the non-ESP marker) from `source`
   * ("address:port" text). `underLoad`: require cookies (mac2) before any DH.
   */
  receive(source: string, msg: Uint8Array, nowMs: number, random: RandomSource, underLoad = false): SessionAction[] {
    const out: SessionAction[] = [];
    const peek = peekHandshake(msg);
    if (!peek.ok) {
      this.fail(null, peek.reason, out, `from ${source}`);
      return out;
    }
    switch (peek.type) {
      case 1:
        this.onInitiation(source, msg, nowMs, random, underLoad, out);
        break;
      case 2:
      case 3: {
        const e = this.indexes.get(peek.receiverIndex);
        if (e === undefined || e.kind !== 'pending' || e.peer.pending === null || e.peer.pending.hs.senderIndex !== peek.receiverIndex) {
          this.fail(null, 'unknown_index', out, `type ${peek.type} from ${source}`);
          break;
        }
        if (peek.type === 2) this.onResponse(e.peer, msg, nowMs, out);
        else {
          const r = consumeCookieReply(e.peer.keys, e.peer.pending.hs, msg, e.peer.cookie, nowMs);
          if (!r.ok) this.fail(e.peer, r.reason, out);
          else out.push({ type: 'log', level: 'debug', peer: e.peer.cfg.id, message: 'cookie reply: the peer is under load; the next initiation carries mac2' });
        }
        break;
      }
      case 4: {
        const e = this.indexes.get(peek.receiverIndex);
        if (e === undefined || e.kind !== 'gen' || e.gen.confirmKey === null) {
          this.fail(null, 'unknown_index', out, `confirmation from ${source}`);
          break;
        }
        if (!verifyConfirm(msg, e.gen.confirmKey)) {
          this.fail(e.peer, 'bad_confirm', out);
          break;
        }
        this.peerUses(e.peer, e.gen, nowMs, out, 'confirmation');
        break;
      }
    }
    return out;
  }

  /** Timers and polls: retransmissions, rekeys (time, soft limits), switches on first data, retirement. */
  tick(nowMs: number, random: RandomSource): SessionAction[] {
    const out: SessionAction[] = [];
    for (const p of this.peers.values()) this.tickPeer(p, nowMs, random, out);
    return out;
  }

  /** Starts a rekey with a peer now (`sectunnel rekey PEER`); a handshake already pending is kept. */
  rekey(peerId: string, nowMs: number, random: RandomSource): SessionAction[] {
    const p = this.peers.get(peerId);
    if (p === undefined) throw new RangeError(`SessionHost.rekey: no peer ${peerId}`);
    const out: SessionAction[] = [];
    if (p.pending === null) this.initiate(p, 'on_demand', nowMs, random, out);
    return out;
  }

  /**
   * The data plane saw ESP with an unknown SPI from `endpoint`. If that is a peer's address, it may
   * have restarted and lost its SAs: start a handshake, at most one per unknownSpiIntervalMs, and
   * not right after a completed one (late packets of retired SAs look the same).
   */
  unknownSpi(endpoint: string, nowMs: number, random: RandomSource): SessionAction[] {
    const p = this.byEndpoint.get(endpoint);
    const out: SessionAction[] = [];
    if (p === undefined || p.pending !== null) return out;
    if (nowMs - p.lastUnknownSpiMs < this.unknownSpiIntervalMs) return out;
    if (p.lastHandshakeMs >= 0 && nowMs - p.lastHandshakeMs < this.unknownSpiIntervalMs) return out;
    p.lastUnknownSpiMs = nowMs;
    this.initiate(p, 'unknown_spi', nowMs, random, out);
    return out;
  }

  /** The earliest time tick() has something to do (soft limits and first-data switches are polled: tick at least every second as well). */
  nextTimerMs(): number {
    let t = Infinity;
    for (const p of this.peers.values()) {
      if (p.pending) t = Math.min(t, p.pending.nextRetransmitMs);
      else if (p.current === null) t = Math.min(t, p.nextAttemptMs);
      else t = Math.min(t, p.nextRekeyMs);
      if (p.confirm) t = Math.min(t, p.confirm.nextMs);
      for (const g of p.gens) {
        t = Math.min(t, g.retireAtMs, g.createdMs + this.rejectAfterMs + this.graceMs);
        if (g === p.current) t = Math.min(t, g.createdMs + this.rejectAfterMs);
      }
    }
    return t;
  }

  /** Per-peer status. */
  status(nowMs: number): PeerSessionStatus[] {
    const out: PeerSessionStatus[] = [];
    for (const p of this.peers.values()) {
      const c = p.current;
      const failures: Partial<HandshakeFailureCounts> = {};
      for (const [k, v] of Object.entries(p.failures)) if (v > 0) failures[k as HandshakeFailure] = v;
      out.push({
        peer: p.cfg.id,
        endpoint: p.cfg.endpoint,
        established: c !== null,
        role: c?.role ?? null,
        sessionAgeMs: c ? nowMs - c.activatedMs : null,
        lastHandshakeMs: p.lastHandshakeMs >= 0 ? p.lastHandshakeMs : null,
        nextRekeyMs: c && Number.isFinite(p.nextRekeyMs) ? p.nextRekeyMs : null,
        labels: c ? [...c.labels] : [],
        algorithm: c?.algorithm ?? null,
        handshakePending: p.pending !== null,
        handshakeAttempts: p.pending ? p.pending.attempt + 1 : 0,
        inboundSpis: p.gens.flatMap((g) => g.inbound.map((s) => s.spi)),
        outboundSpis: c ? c.outbound.map((s) => s.spi) : [],
        failures,
        rekeys: { ...p.rekeys },
      });
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Initiator side

  private randomUint32(random: RandomSource): () => number {
    return () => {
      const b = random(4);
      return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    };
  }

  private newIndex(random: RandomSource): number {
    const next = this.randomUint32(random);
    for (;;) {
      const i = next();
      if (i !== 0 && !this.indexes.has(i)) return i;
    }
  }

  private nextTimestamp(p: PeerState, nowMs: number): Tai64n {
    let t = tai64nFromMs(nowMs);
    const last = p.lastTimestamp;
    if (last !== null && (t.seconds < last.seconds || (t.seconds === last.seconds && t.nanoseconds <= last.nanoseconds))) {
      t = last.nanoseconds + 1 < 1_000_000_000 ? { seconds: last.seconds, nanoseconds: last.nanoseconds + 1 } : { seconds: last.seconds + 1, nanoseconds: 0 };
    }
    p.lastTimestamp = t;
    return t;
  }

  private retransmitDelay(attempt: number, random: RandomSource): number {
    const base = Math.min(this.maxRetransmitIntervalMs, this.rekeyTimeoutMs * 2 ** Math.min(attempt, 30));
    if (this.retransmitJitterMs <= 0) return base;
    const b = random(2);
    return base + ((((b[0]! << 8) | b[1]!) % (Math.floor(this.retransmitJitterMs) + 1)) | 0);
  }

  /** Sends a (fresh) initiation; reuses the pending handshake's reserved SPIs when retransmitting. */
  private initiate(p: PeerState, reason: RekeyReason, nowMs: number, random: RandomSource, out: SessionAction[]): void {
    let spis: Map<string, number>;
    let attempt = 0;
    if (p.pending !== null) {
      spis = p.pending.spis;
      attempt = p.pending.attempt + 1;
      reason = p.pending.reason;
      this.indexes.delete(p.pending.hs.senderIndex);
      p.pending.hs.noise.destroy();
    } else {
      spis = new Map();
      const next = this.randomUint32(random);
      for (const l of p.cfg.labels) spis.set(l, this.spis.allocateSpi(next));
      p.rekeys[reason]++;
    }
    const senderIndex = this.newIndex(random);
    const r = createInitiation(this.identity, p.keys, {
      senderIndex,
      offer: { algorithms: p.cfg.algorithms!, labels: [...spis].map(([name, spi]) => ({ name, spi })) },
      timestamp: this.nextTimestamp(p, nowMs),
      cookie: p.cookie,
      nowMs,
      random,
      dhCounter: this.dh,
    });
    if (!r.ok) {
      for (const spi of spis.values()) this.spis.releaseSpi(spi);
      p.pending = null;
      this.fail(p, r.reason, out, 'our configured public key for the peer is unusable');
      p.nextAttemptMs = nowMs + this.maxRetransmitIntervalMs;
      return;
    }
    p.pending = { hs: r.pending, reason, spis, attempt, sentMs: nowMs, nextRetransmitMs: nowMs + this.retransmitDelay(attempt, random) };
    this.indexes.set(senderIndex, { kind: 'pending', peer: p });
    out.push({ type: 'log', level: attempt === 0 ? 'info' : 'debug', peer: p.cfg.id, message: `handshake initiation (${reason}${attempt > 0 ? `, attempt ${attempt + 1}` : ''})` });
    out.push({ type: 'send', peer: p.cfg.id, endpoint: p.cfg.endpoint, bytes: r.message });
  }

  /** Drops the pending initiation and releases its SPIs. */
  private abandonPending(p: PeerState): void {
    const pd = p.pending;
    if (pd === null) return;
    this.indexes.delete(pd.hs.senderIndex);
    pd.hs.noise.destroy();
    for (const spi of pd.spis.values()) this.spis.releaseSpi(spi);
    p.pending = null;
  }

  private onResponse(p: PeerState, msg: Uint8Array, nowMs: number, out: SessionAction[]): void {
    const pd = p.pending!;
    const r = consumeResponse(this.identity, pd.hs, msg);
    if (!r.ok) {
      this.fail(p, r.reason, out);
      if (r.reason === 'no_common_labels' || r.reason === 'no_common_algorithm') {
        // An authenticated refusal: stop this attempt, try again later (a config reload may fix it).
        this.abandonPending(p);
        p.nextAttemptMs = nowMs + this.maxRetransmitIntervalMs;
        out.push({ type: 'log', level: 'warn', peer: p.cfg.id, message: `the peer refused the handshake: ${r.reason === 'no_common_labels' ? 'no label in common' : 'no algorithm in common'}` });
      }
      return;
    }
    // Labels the peer did not agree to: their SPIs go back.
    for (const l of r.refusedByPeer) this.spis.releaseSpi(pd.spis.get(l)!);
    if (r.refusedByPeer.length > 0) out.push({ type: 'audit', event: { kind: 'label_refused_by_peer', peer: p.cfg.id, labels: r.refusedByPeer, timeMs: nowMs } });
    this.indexes.delete(pd.hs.senderIndex);
    p.pending = null;
    p.answeredAt = r.responderTimestamp;
    const gen = this.buildGeneration('initiator', pd.hs.senderIndex, r.keys, nowMs);
    p.gens.push(gen);
    // Stage 3: inbound first, then switch outbound (the responder installed its inbound before answering).
    for (const sa of gen.inbound) out.push({ type: 'install_inbound', peer: p.cfg.id, sa });
    this.activate(p, gen, nowMs, out);
    const confirm = createConfirm(r.responderIndex, r.keys.confirmKey);
    destroySessionKeys(r.keys);
    out.push({ type: 'send', peer: p.cfg.id, endpoint: p.cfg.endpoint, bytes: confirm });
    p.confirm = this.confirmRetries > 0 ? { bytes: confirm, left: this.confirmRetries, nextMs: nowMs + this.confirmRetryMs, gen } : null;
    this.completed(p, gen, nowMs, out);
    this.enforceGenerationCap(p, out);
  }

  // -------------------------------------------------------------------------------------------
  // Responder side

  private onInitiation(source: string, msg: Uint8Array, nowMs: number, random: RandomSource, underLoad: boolean, out: SessionAction[]): void {
    const r = consumeInitiation(this.identity, msg, {
      source,
      underLoad,
      cookieSecret: this.cookieSecret,
      lookupPeer: (pub) => {
        const p = this.byPublicKey.get(hexKey(pub));
        return p === undefined ? undefined : { keys: p.keys, replay: p.replay, state: p };
      },
      nowMs,
      random,
      dhCounter: this.dh,
      ...(this.minInitiationIntervalMs !== undefined && { minInitiationIntervalMs: this.minInitiationIntervalMs }),
    });
    if (r.kind === 'cookie') {
      this.failures.cookie_required++;
      out.push({ type: 'send', peer: null, endpoint: source, bytes: r.reply });
      return;
    }
    if (r.kind === 'fail') {
      this.fail(r.peer?.state ?? null, r.reason, out, `initiation from ${source}`);
      return;
    }
    const init = r.initiation;
    const p = init.peer.state;
    // Collision: both sides initiated. The lower static public key stays initiator.
    const weWin = compareBytes(this.publicKey, p.cfg.publicKey) < 0;
    if (p.answeredAt !== null && compareTimestamps(init.timestamp, p.answeredAt) < 0) {
      // Older than the peer's response to our last initiation: the peer's half of a collision,
      // abandoned when it answered ours, arriving late. Not an error, nothing to do.
      init.noise.destroy();
      out.push({ type: 'log', level: 'debug', peer: p.cfg.id, message: 'initiation older than the peer\'s last response (crossed in a collision): ignored' });
      return;
    }
    if (p.pending !== null) {
      if (weWin) {
        init.noise.destroy();
        out.push({ type: 'log', level: 'debug', peer: p.cfg.id, message: 'simultaneous initiations: ours wins (lower static key); the peer will answer it' });
        if (nowMs - p.pending.sentMs >= COLLISION_RESEND_AFTER_MS) this.initiate(p, p.pending.reason, nowMs, random, out);
        return;
      }
      out.push({ type: 'log', level: 'debug', peer: p.cfg.id, message: 'simultaneous initiations: the peer wins (lower static key); answering it' });
      this.abandonPending(p);
    }
    const n = negotiate(init.offer, { labels: p.cfg.labels, algorithms: p.cfg.algorithms! });
    if (n.notGranted.length > 0) out.push({ type: 'audit', event: { kind: 'label_not_granted', peer: p.cfg.id, labels: n.notGranted, timeMs: nowMs } });
    const next = this.randomUint32(random);
    const mine = n.agreed.map((name) => ({ name, spi: this.spis.allocateSpi(next) }));
    const localIndex = this.newIndex(random);
    const resp = createResponse(init, { senderIndex: localIndex, algorithm: n.algorithm, labels: mine, timestamp: this.nextTimestamp(p, nowMs), nowMs, random });
    if (!resp.ok || resp.keys === null) {
      for (const l of mine) this.spis.releaseSpi(l.spi);
      if (!resp.ok) {
        this.fail(p, resp.reason, out);
        return;
      }
      this.fail(p, n.algorithm === null ? 'no_common_algorithm' : 'no_common_labels', out, 'refusal sent');
      out.push({ type: 'send', peer: p.cfg.id, endpoint: source, bytes: resp.message });
      return;
    }
    const gen = this.buildGeneration('responder', localIndex, resp.keys, nowMs);
    gen.confirmKey = resp.keys.confirmKey.slice();
    destroySessionKeys(resp.keys);
    p.gens.push(gen);
    this.indexes.set(localIndex, { kind: 'gen', peer: p, gen });
    // Stage 2: our inbound SAs exist before the initiator can use them.
    for (const sa of gen.inbound) out.push({ type: 'install_inbound', peer: p.cfg.id, sa });
    out.push({ type: 'send', peer: p.cfg.id, endpoint: source, bytes: resp.message });
    out.push({ type: 'log', level: 'info', peer: p.cfg.id, message: `handshake answered: labels ${gen.labels.join(', ')} (${gen.algorithm}); switching when the peer confirms` });
    this.enforceGenerationCap(p, out);
  }

  // -------------------------------------------------------------------------------------------
  // Generations

  private buildGeneration(role: 'initiator' | 'responder', localIndex: number, keys: SessionKeys, nowMs: number): Generation {
    const so = this.saOpts;
    const inbound: InboundSa[] = [];
    const outbound: OutboundSa[] = [];
    for (const l of keys.labels) {
      inbound.push(
        new InboundSa({
          spi: l.inboundSpi,
          algorithm: keys.algorithm,
          keymat: l.inboundKeymat.slice(),
          labels: [l.label],
          nowMs,
          ...(so.backend !== undefined && { backend: so.backend }),
          ...(so.esn !== undefined && { esn: so.esn }),
          ...(so.replayWindowPackets !== undefined && { replayWindowPackets: so.replayWindowPackets }),
        }),
      );
      outbound.push(
        new OutboundSa({
          spi: l.outboundSpi,
          algorithm: keys.algorithm,
          keymat: l.outboundKeymat.slice(),
          labels: [l.label],
          nowMs,
          limits: { ...so.limits, hardAgeMs: this.rejectAfterMs },
          ...(so.backend !== undefined && { backend: so.backend }),
          ...(so.esn !== undefined && { esn: so.esn }),
        }),
      );
    }
    return {
      seq: ++this.genSeq,
      role,
      localIndex,
      algorithm: keys.algorithm,
      labels: keys.labels.map((l) => l.label),
      inbound,
      outbound,
      confirmKey: null,
      createdMs: nowMs,
      activatedMs: -1,
      peerSwitchedMs: -1,
      retireAtMs: Infinity,
    };
  }

  /** Switches our outbound SAs to `gen` (labels it no longer carries lose their outbound SA). */
  private activate(p: PeerState, gen: Generation, nowMs: number, out: SessionAction[]): void {
    const old = p.current;
    for (const sa of gen.outbound) out.push({ type: 'install_outbound', peer: p.cfg.id, sa });
    if (old !== null) {
      const carried = new Set(gen.labels);
      for (const sa of old.outbound) {
        const label = sa.labels.values().next().value as string;
        if (!carried.has(label) && !sa.destroyed) out.push({ type: 'remove_outbound', peer: p.cfg.id, sa });
      }
    }
    gen.activatedMs = nowMs;
    p.current = gen;
  }

  private completed(p: PeerState, gen: Generation, nowMs: number, out: SessionAction[]): void {
    this.handshakesCompleted++;
    p.lastHandshakeMs = nowMs;
    p.nextRekeyMs = nowMs + this.rekeyAfterMs + (gen.role === 'responder' ? this.responderRekeyDelayMs : 0);
    out.push({ type: 'log', level: 'info', peer: p.cfg.id, message: `session up as ${gen.role}: labels ${gen.labels.join(', ')} (${gen.algorithm}), SPIs in ${gen.inbound.map((s) => hexSpi(s.spi)).join(' ')} out ${gen.outbound.map((s) => hexSpi(s.spi)).join(' ')}` });
  }

  /** The peer sends on `gen` (confirmation or packets): switch to it if it is a newer responder generation; schedule older ones to go. */
  private peerUses(p: PeerState, gen: Generation, nowMs: number, out: SessionAction[], how: string): void {
    if (gen.peerSwitchedMs < 0) gen.peerSwitchedMs = nowMs;
    if (gen.role === 'responder' && gen.activatedMs < 0 && (p.current === null || gen.seq > p.current.seq)) {
      out.push({ type: 'log', level: 'debug', peer: p.cfg.id, message: `peer switched (${how}): switching our outbound SAs` });
      this.activate(p, gen, nowMs, out);
      this.completed(p, gen, nowMs, out);
      // The index and confirm key stay until the generation goes: resent confirmations are quietly ignored.
    }
    for (const g of p.gens) if (g.seq < gen.seq) g.retireAtMs = Math.min(g.retireAtMs, nowMs + this.graceMs);
  }

  private dropGeneration(p: PeerState, g: Generation, out: SessionAction[], withOutbound: boolean): void {
    for (const sa of g.inbound) out.push({ type: 'remove_inbound', peer: p.cfg.id, spi: sa.spi });
    if (withOutbound && p.current === g) for (const sa of g.outbound) if (!sa.destroyed) out.push({ type: 'remove_outbound', peer: p.cfg.id, sa });
    // Outbound SAs never installed are ours to zero.
    if (g.activatedMs < 0) for (const sa of g.outbound) sa.destroy();
    g.confirmKey?.fill(0);
    g.confirmKey = null;
    if (this.indexes.get(g.localIndex)?.kind === 'gen') this.indexes.delete(g.localIndex);
    p.gens = p.gens.filter((x) => x !== g);
    if (p.current === g) p.current = null;
    if (p.confirm?.gen === g) p.confirm = null;
  }

  /** Keeps at most maxGenerations: the oldest go first (never the current one). */
  private enforceGenerationCap(p: PeerState, out: SessionAction[]): void {
    while (p.gens.length > this.maxGenerations) {
      const victim = p.gens.find((g) => g !== p.current);
      if (victim === undefined) return;
      out.push({ type: 'log', level: 'warn', peer: p.cfg.id, message: `more than ${this.maxGenerations} SA generations: retiring the oldest (inbound SPIs ${victim.inbound.map((s) => hexSpi(s.spi)).join(' ')})` });
      this.dropGeneration(p, victim, out, false);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Timers

  private tickPeer(p: PeerState, nowMs: number, random: RandomSource, out: SessionAction[]): void {
    // First data under a newer generation: the peer switched.
    for (const g of p.gens) {
      if (g.peerSwitchedMs < 0 && g.inbound.some((sa) => sa.packets > 0)) this.peerUses(p, g, nowMs, out, 'first packet');
    }
    // Retirement of old inbound SAs.
    for (const g of [...p.gens]) {
      if (g === p.current) continue;
      if (nowMs >= g.retireAtMs || nowMs - g.createdMs >= this.rejectAfterMs + this.graceMs) {
        out.push({ type: 'log', level: 'debug', peer: p.cfg.id, message: `retiring inbound SPIs ${g.inbound.map((s) => hexSpi(s.spi)).join(' ')}` });
        this.dropGeneration(p, g, out, false);
      }
    }
    // The current generation past its hard age: nothing may be sent on it any more. Its inbound
    // SAs stay for the grace period: the peer's twin outbound SAs may be a little younger.
    const c = p.current;
    if (c !== null && nowMs - c.createdMs >= this.rejectAfterMs) {
      out.push({ type: 'log', level: 'warn', peer: p.cfg.id, message: 'session expired without a rekey: removing its outbound SAs' });
      for (const sa of c.outbound) if (!sa.destroyed) out.push({ type: 'remove_outbound', peer: p.cfg.id, sa });
      c.retireAtMs = Math.min(c.retireAtMs, nowMs + this.graceMs);
      p.current = null;
      p.nextAttemptMs = Math.min(p.nextAttemptMs, nowMs);
    }
    // Confirmation resends until the peer is seen on the new generation.
    const cf = p.confirm;
    if (cf !== null && nowMs >= cf.nextMs) {
      if (cf.gen.peerSwitchedMs >= 0 || cf.left <= 0 || p.current !== cf.gen) p.confirm = null;
      else {
        out.push({ type: 'send', peer: p.cfg.id, endpoint: p.cfg.endpoint, bytes: cf.bytes });
        cf.left--;
        cf.nextMs = nowMs + this.confirmRetryMs;
      }
    }
    // Handshakes.
    if (p.pending !== null) {
      if (nowMs >= p.pending.nextRetransmitMs) this.initiate(p, p.pending.reason, nowMs, random, out);
      return;
    }
    if (p.current === null) {
      if (nowMs >= p.nextAttemptMs) this.initiate(p, p.lastHandshakeMs < 0 && p.rekeys.initial === 0 ? 'initial' : 'retry', nowMs, random, out);
      return;
    }
    if (nowMs >= p.nextRekeyMs) {
      this.initiate(p, 'time', nowMs, random, out);
      return;
    }
    for (const sa of p.current.outbound) {
      sa.tick(nowMs);
      if (sa.rekeyDue) {
        this.initiate(p, 'soft_limit', nowMs, random, out);
        return;
      }
    }
  }

  // -------------------------------------------------------------------------------------------

  private fail(p: PeerState | null, reason: HandshakeFailure, out: SessionAction[], detail?: string): void {
    this.failures[reason]++;
    if (p !== null) p.failures[reason]++;
    out.push({ type: 'log', level: 'debug', peer: p?.cfg.id ?? null, message: `handshake message refused: ${reason}${detail ? ` (${detail})` : ''}` });
  }
}

function hexSpi(spi: number): string {
  return `0x${(spi >>> 0).toString(16).padStart(8, '0')}`;
}
