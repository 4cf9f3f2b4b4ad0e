/**
 * sectunnel's handshake messages (DESIGN.md "Keys and sessions"): Noise IKpsk2
 * (core/noise.ts) framed like WireGuard's (wireguard.com/protocol, §5.4), carried
 * on the ESP-in-UDP port behind the RFC 3948 §2.2 non-ESP marker (four zero octets),
 * so one port carries ESP and control. Every multi-octet integer is big-endian.
 *
 *   type 1 initiation   marker(4) type(1)=1 reserved(3) sender(4) ephemeral(32)
 *                       static(32+16) payload(P+16) mac1(16) mac2(16)        = 140 + P
 *   type 2 response     marker(4) type(1)=2 reserved(3) sender(4) receiver(4)
 *                       ephemeral(32) payload(P+16) mac1(16) mac2(16)        =  96 + P
 *   type 3 cookie reply marker(4) type(1)=3 reserved(3) receiver(4) nonce(24)
 *                       cookie(16+16)                                        =  68
 *   type 4 confirmation marker(4) type(1)=4 reserved(3) receiver(4) tag(16)  =  28
 *
 * Initiation payload (plaintext P): TAI64N timestamp(12) version(1)=1 flags(1)
 *   nAlgorithms(1) algorithm(1)×n nLabels(1) {nameLen(1) name spi(4)}×nLabels
 *   — the algorithms the initiator accepts (preference order) and, per label it
 *   will carry with this peer, the inbound SPI it chose (receiver-chosen SPIs).
 * Response payload: version(1)=1 flags(1) algorithm(1) TAI64N timestamp(12) nLabels(1)
 *   {nameLen name spi}×n — the algorithm chosen (0 = none in common), the responder's
 *   timestamp (from the same per-peer sequence as its initiations, so an initiation it
 *   abandoned in a collision is older: the winner recognises it when it arrives late), and
 *   the agreed labels with the responder's inbound SPIs (none = nothing in common).
 *
 * Receiving an initiation, in order (a flood costs no DH):
 *   1. marker, type, length                 → truncated / bad_length / unknown_type
 *   2. mac1 = MAC(HASH(LABEL_MAC1 ‖ our static public), msg[4, mac1))  → bad_mac1
 *   3. under load: mac2 = MAC(cookie(source), msg[4, mac2)), else a cookie reply → cookie_required
 *   4. Noise message 1 (DH es, decrypt static, DH ss, decrypt payload)
 *                                           → bad_public_key / initiation_decrypt_failed
 *   5. peer lookup by static key            → unknown_peer
 *   6. timestamp > the peer's greatest seen → replayed_timestamp; too soon → rate_limited
 *   7. payload parse                        → bad_payload / bad_spi
 * mac1 covers the message from its type octet (the marker is encapsulation, not message).
 *
 * Child SA keys: per label and direction, KEYMAT = HKDF-Expand(HKDF-Extract(salt = h,
 * ikm = the Noise transport key of that direction), info = "sectunnel v1 keymat" ‖ 0x00 ‖
 * direction ‖ algorithm ‖ nameLen ‖ name ‖ SPI, L = key ‖ salt length of the algorithm)
 * with HMAC-BLAKE2s (RFC 5869), where h is the final handshake hash. The algorithm is
 * negotiated: the initiator lists what it accepts in its order of preference, the responder
 * takes the first it accepts too.
 *
 * Nothing here throws on input bytes or reads a clock: time, randomness and the peer table
 * are arguments; failures are HandshakeFailure codes.
 */
import { blake2s } from '@noble/hashes/blake2.js';
import { expand, extract } from '@noble/hashes/hkdf.js';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { aeadKeymatBytes, type AeadAlgorithm } from '../crypto/aead.js';
import { ESP_SPI_MIN, NON_ESP_MARKER_BYTES } from '../wire/constants.js';
import {
  HandshakeState,
  bytesEqual,
  keyPairFromPrivate,
  noiseHash,
  noisePrimitives,
  NOISE_DHLEN,
  NOISE_PSKLEN,
  NOISE_TAGLEN,
  type DhCounter,
  type KeyPair,
  type RandomSource,
} from './noise.js';

// ---------------------------------------------------------------------------------------------
// Constants

export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_CONFIRM = 4;

/** Length of mac1 and mac2 (keyed BLAKE2s-128). */
export const MAC_BYTES = 16;
/** Length of a cookie. */
export const COOKIE_BYTES = 16;
/** XChaCha20-Poly1305 nonce of a cookie reply. */
export const COOKIE_NONCE_BYTES = 24;
/** TAI64N timestamp: 8 octets of TAI64 seconds, 4 of nanoseconds. */
export const TAI64N_BYTES = 12;
/** Protocol version carried in the payloads. */
export const HANDSHAKE_VERSION = 1;
/** Most labels one offer or response carries. */
export const MAX_OFFER_LABELS = 64;
/** Longest label name on the wire (the config allows 64). */
export const MAX_LABEL_NAME_BYTES = 64;

/** Octets of an initiation besides its payload plaintext. */
export const INITIATION_OVERHEAD_BYTES = NON_ESP_MARKER_BYTES + 4 + 4 + NOISE_DHLEN + NOISE_DHLEN + NOISE_TAGLEN + NOISE_TAGLEN + 2 * MAC_BYTES; // 140
/** Octets of a response besides its payload plaintext. */
export const RESPONSE_OVERHEAD_BYTES = NON_ESP_MARKER_BYTES + 4 + 4 + 4 + NOISE_DHLEN + NOISE_TAGLEN + 2 * MAC_BYTES; // 96
/** Smallest initiation payload: timestamp, version, flags, one algorithm, label count. */
const INITIATION_MIN_PAYLOAD_BYTES = TAI64N_BYTES + 1 + 1 + 1 + 1 + 1;
/** Smallest response payload: version, flags, algorithm, timestamp, label count. */
const RESPONSE_MIN_PAYLOAD_BYTES = 3 + TAI64N_BYTES + 1;
export const INITIATION_MIN_BYTES = INITIATION_OVERHEAD_BYTES + INITIATION_MIN_PAYLOAD_BYTES; // 157
export const RESPONSE_MIN_BYTES = RESPONSE_OVERHEAD_BYTES + RESPONSE_MIN_PAYLOAD_BYTES; // 112
export const COOKIE_REPLY_BYTES = NON_ESP_MARKER_BYTES + 4 + 4 + COOKIE_NONCE_BYTES + COOKIE_BYTES + NOISE_TAGLEN; // 68
export const CONFIRM_BYTES = NON_ESP_MARKER_BYTES + 4 + 4 + NOISE_TAGLEN; // 28
/** Largest handshake message accepted (64 labels of 64 octets fit; 4-octet marker included). */
export const MAX_HANDSHAKE_MESSAGE_BYTES = 8192;

/** Default Noise prologue: both sides must use the same. */
export const DEFAULT_PROLOGUE = new TextEncoder().encode('sectunnel v1');
const LABEL_MAC1 = new TextEncoder().encode('sectunnel v1 mac1');
const LABEL_COOKIE = new TextEncoder().encode('sectunnel v1 cookie');
const INFO_KEYMAT = new TextEncoder().encode('sectunnel v1 keymat');
const INFO_CONFIRM = new TextEncoder().encode('sectunnel v1 confirm');

/** Lifetime of the responder's cookie secret, and of a cookie at the initiator (WireGuard: 120 s). */
export const COOKIE_SECRET_MAX_AGE_MS = 120_000;
/** An initiator stops using a cookie a little before the responder rotates its secret. */
export const COOKIE_MAX_AGE_MS = COOKIE_SECRET_MAX_AGE_MS - 5_000;
/** Default least time between two accepted initiations of one peer (WireGuard: 50 per second). */
export const DEFAULT_MIN_INITIATION_INTERVAL_MS = 20;

/** Wire codes of the AEAD algorithms. 0 means "none". */
const ALG_CODES: Record<AeadAlgorithm, number> = {
  'aes-gcm-128': 1,
  'aes-gcm-192': 2,
  'aes-gcm-256': 3,
  'chacha20-poly1305': 4,
};
const ALG_BY_CODE: readonly (AeadAlgorithm | undefined)[] = [undefined, 'aes-gcm-128', 'aes-gcm-192', 'aes-gcm-256', 'chacha20-poly1305'];

/** Wire code of an AEAD algorithm. */
export function algorithmCode(alg: AeadAlgorithm): number {
  return ALG_CODES[alg];
}

// ---------------------------------------------------------------------------------------------
// Failure codes

/**
 * Why a handshake message was refused: stable names for counters, status and logs.
 * A message on any of these paths changes no state and produces no key.
 */
export const HANDSHAKE_FAILURES = [
  /** The UDP payload does not start with the non-ESP marker: not a handshake message. */
  'not_handshake',
  /** Shorter than the smallest message of its type (or than a header). */
  'truncated',
  /** Longer than allowed, or not the fixed size of its type. */
  'bad_length',
  /** Type octet is not 1–4. */
  'unknown_type',
  /** mac1 does not verify: not meant for our static key (or the sender has a wrong public key for us). */
  'bad_mac1',
  /** Under load and mac2 missing or invalid: answered with a cookie reply; no DH was done. */
  'cookie_required',
  /** A DH with a malformed or low-order public key. */
  'bad_public_key',
  /** The encrypted static key or payload of an initiation does not authenticate. */
  'initiation_decrypt_failed',
  /** The initiator's static key (authenticated) is not a configured peer. */
  'unknown_peer',
  /** The initiation's timestamp is not greater than the greatest seen from that peer. */
  'replayed_timestamp',
  /** An initiation sooner than the least interval after the peer's last accepted one. */
  'rate_limited',
  /** The decrypted payload is malformed (version, counts, names, duplicates). */
  'bad_payload',
  /** An SPI in the payload is 0, 1–255 or used twice. */
  'bad_spi',
  /** No AEAD algorithm both sides accept. */
  'no_common_algorithm',
  /** No label both sides carry and grant. */
  'no_common_labels',
  /** A response, cookie reply or confirmation for no handshake we have (late, duplicate or forged). */
  'unknown_index',
  /** The response does not authenticate: a wrong pre-shared key (or a corrupted message). */
  'response_decrypt_failed',
  /** A cookie reply that does not decrypt. */
  'bad_cookie_reply',
  /** A confirmation whose tag does not verify. */
  'bad_confirm',
] as const;

export type HandshakeFailure = (typeof HANDSHAKE_FAILURES)[number];

/** A counter per failure code (every code present, zeros included). */
export type HandshakeFailureCounts = Record<HandshakeFailure, number>;

/** A zeroed counter set. */
export function newFailureCounts(): HandshakeFailureCounts {
  const c = {} as HandshakeFailureCounts;
  for (const f of HANDSHAKE_FAILURES) c[f] = 0;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Byte helpers

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** Keyed BLAKE2s-128 MAC (RFC 7693 §2.5 keyed mode), WireGuard's MAC(). */
function mac16(key: Uint8Array, data: Uint8Array): Uint8Array {
  return blake2s(data, { key, dkLen: MAC_BYTES });
}

/** HMAC-BLAKE2s HKDF-Extract (RFC 5869 §2.2). */
function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return extract(blake2s, ikm, salt);
}

/** HMAC-BLAKE2s HKDF-Expand (RFC 5869 §2.3). */
function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  return expand(blake2s, prk, info, length);
}

const NAME_BYTE = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-') NAME_BYTE[c.charCodeAt(0)] = 1;

/** True if `name` can be carried in a payload: 1–64 octets of A–Z a–z 0–9 _ . - */
export function labelNameCarriable(name: string): boolean {
  if (name.length < 1 || name.length > MAX_LABEL_NAME_BYTES) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 255 || NAME_BYTE[c] !== 1) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// TAI64N (cr.yp.to/libtai/tai64.html), as WireGuard stamps initiations

/** A TAI64N timestamp: 2^62 + 10 + seconds since 1970, and nanoseconds. */
export interface Tai64n {
  seconds: number;
  nanoseconds: number;
}

/** The TAI64N label of a wall-clock time in ms since 1970 (plus extra nanoseconds, < 1e6). */
export function tai64nFromMs(unixMs: number, extraNs = 0): Tai64n {
  const seconds = Math.floor(unixMs / 1000);
  return { seconds, nanoseconds: (unixMs - seconds * 1000) * 1_000_000 + extraNs };
}

/** The 12 octets of a TAI64N timestamp: TAI64 label 2^62 + 10 + seconds, then nanoseconds, big-endian. */
export function encodeTai64n(t: Tai64n): Uint8Array {
  const out = new Uint8Array(TAI64N_BYTES);
  const secs = t.seconds + 10;
  const hi = Math.floor(secs / 4294967296);
  putU32(out, 0, (0x40000000 + hi) >>> 0);
  putU32(out, 4, secs >>> 0);
  putU32(out, 8, t.nanoseconds >>> 0);
  return out;
}

/** Compares two encoded timestamps (or any equal-length octet strings) as big-endian numbers. */
export function compareTimestamps(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Identities and peers

/** The local host's static identity and the keys derived from it. */
export interface HandshakeIdentity {
  readonly staticKey: KeyPair;
  readonly prologue: Uint8Array;
  /** HASH(LABEL_MAC1 ‖ our public key): checks mac1 of messages sent to us. */
  readonly mac1Key: Uint8Array;
  /** HASH(LABEL_COOKIE ‖ our public key): encrypts cookie replies we send. */
  readonly cookieKey: Uint8Array;
}

/** Builds the local identity from a 32-octet X25519 private key. */
export function createIdentity(privateKey: Uint8Array, prologue: Uint8Array = DEFAULT_PROLOGUE): HandshakeIdentity {
  if (privateKey.length !== NOISE_DHLEN) throw new RangeError(`createIdentity: private key must be ${NOISE_DHLEN} octets, got ${privateKey.length}`);
  const staticKey = keyPairFromPrivate(privateKey);
  return {
    staticKey,
    prologue: prologue.slice(),
    mac1Key: noiseHash(LABEL_MAC1, staticKey.publicKey),
    cookieKey: noiseHash(LABEL_COOKIE, staticKey.publicKey),
  };
}

/** A peer's public key, pre-shared key and the keys derived from them. */
export interface PeerKeys {
  readonly publicKey: Uint8Array;
  /** 32 octets; all zeros when no pre-shared key is configured (as WireGuard). */
  readonly psk: Uint8Array;
  /** HASH(LABEL_MAC1 ‖ peer public key): mac1 of messages we send to the peer. */
  readonly mac1Key: Uint8Array;
  /** HASH(LABEL_COOKIE ‖ peer public key): decrypts cookie replies from the peer. */
  readonly cookieKey: Uint8Array;
}

/** Builds a peer's keys from its public key and optional pre-shared key. */
export function createPeerKeys(publicKey: Uint8Array, psk?: Uint8Array): PeerKeys {
  if (publicKey.length !== NOISE_DHLEN) throw new RangeError(`createPeerKeys: public key must be ${NOISE_DHLEN} octets, got ${publicKey.length}`);
  if (psk !== undefined && psk.length !== NOISE_PSKLEN) throw new RangeError(`createPeerKeys: pre-shared key must be ${NOISE_PSKLEN} octets, got ${psk.length}`);
  return {
    publicKey: publicKey.slice(),
    psk: psk ? psk.slice() : new Uint8Array(NOISE_PSKLEN),
    mac1Key: noiseHash(LABEL_MAC1, publicKey),
    cookieKey: noiseHash(LABEL_COOKIE, publicKey),
  };
}

/** Per-peer replay state kept by a responder (WireGuard: greatest timestamp, last initiation time). */
export interface ReplayState {
  /** Greatest timestamp accepted from the peer, or null. */
  greatestTimestamp: Uint8Array | null;
  /** When the last initiation was accepted (ms), or -Infinity. */
  lastInitiationMs: number;
}

/** A fresh replay state. */
export function newReplayState(): ReplayState {
  return { greatestTimestamp: null, lastInitiationMs: -Infinity };
}

/** The cookie an initiator holds from a peer's cookie reply (WireGuard §5.4.7). */
export interface CookieState {
  cookie: Uint8Array | null;
  receivedMs: number;
}

/** A fresh (empty) cookie state. */
export function newCookieState(): CookieState {
  return { cookie: null, receivedMs: -Infinity };
}

/** The responder's rotating cookie secret R_m (WireGuard §5.4.7). */
export class CookieSecret {
  private secret: Uint8Array | null = null;
  private bornMs = -Infinity;

  /** The cookie for a source address (opaque text, e.g. "192.0.2.1:4500") at nowMs; rotates the secret every 2 minutes. */
  cookieFor(source: string, nowMs: number, random: RandomSource): Uint8Array {
    if (this.secret === null || nowMs - this.bornMs >= COOKIE_SECRET_MAX_AGE_MS || nowMs < this.bornMs) {
      this.secret?.fill(0);
      this.secret = random(32).slice(0, 32);
      this.bornMs = nowMs;
    }
    return mac16(this.secret, new TextEncoder().encode(source));
  }
}

// ---------------------------------------------------------------------------------------------
// Framing

/** The outer shape of a handshake message: its type and (types 2–4) receiver index. */
export type PeekResult =
  | { ok: true; type: 1; senderIndex: number }
  | { ok: true; type: 2; senderIndex: number; receiverIndex: number }
  | { ok: true; type: 3 | 4; receiverIndex: number }
  | { ok: false; reason: HandshakeFailure };

/**
 * Checks marker, type and length of a UDP payload (RFC 3948 §2.2 marker first) and returns the
 * type and indexes: cheap, no crypto, for routing a message to its handshake.
 */
export function peekHandshake(msg: Uint8Array): PeekResult {
  if (msg.length < NON_ESP_MARKER_BYTES) return { ok: false, reason: 'truncated' };
  if (msg[0] !== 0 || msg[1] !== 0 || msg[2] !== 0 || msg[3] !== 0) return { ok: false, reason: 'not_handshake' };
  if (msg.length < NON_ESP_MARKER_BYTES + 8) return { ok: false, reason: 'truncated' };
  if (msg.length > MAX_HANDSHAKE_MESSAGE_BYTES) return { ok: false, reason: 'bad_length' };
  const type = msg[4]!;
  switch (type) {
    case MSG_INITIATION:
      if (msg.length < INITIATION_MIN_BYTES) return { ok: false, reason: 'truncated' };
      return { ok: true, type, senderIndex: u32(msg, 8) };
    case MSG_RESPONSE:
      if (msg.length < RESPONSE_MIN_BYTES) return { ok: false, reason: 'truncated' };
      return { ok: true, type, senderIndex: u32(msg, 8), receiverIndex: u32(msg, 12) };
    case MSG_COOKIE_REPLY:
      if (msg.length < COOKIE_REPLY_BYTES) return { ok: false, reason: 'truncated' };
      if (msg.length > COOKIE_REPLY_BYTES) return { ok: false, reason: 'bad_length' };
      return { ok: true, type, receiverIndex: u32(msg, 8) };
    case MSG_CONFIRM:
      if (msg.length < CONFIRM_BYTES) return { ok: false, reason: 'truncated' };
      if (msg.length > CONFIRM_BYTES) return { ok: false, reason: 'bad_length' };
      return { ok: true, type, receiverIndex: u32(msg, 8) };
    default:
      return { ok: false, reason: 'unknown_type' };
  }
}

function macsOk(msg: Uint8Array, mac1Key: Uint8Array): boolean {
  const end = msg.length - 2 * MAC_BYTES;
  return bytesEqual(mac16(mac1Key, msg.subarray(NON_ESP_MARKER_BYTES, end)), msg.subarray(end, end + MAC_BYTES));
}

function mac2Ok(msg: Uint8Array, cookie: Uint8Array): boolean {
  const end = msg.length - MAC_BYTES;
  return bytesEqual(mac16(cookie, msg.subarray(NON_ESP_MARKER_BYTES, end)), msg.subarray(end));
}

/** Writes mac1 and (with a fresh cookie) mac2 into the last 32 octets of `msg`; returns mac1. */
function writeMacs(msg: Uint8Array, peer: PeerKeys, cookie: CookieState | undefined, nowMs: number): Uint8Array {
  const m1 = msg.length - 2 * MAC_BYTES;
  const mac1 = mac16(peer.mac1Key, msg.subarray(NON_ESP_MARKER_BYTES, m1));
  msg.set(mac1, m1);
  const m2 = msg.length - MAC_BYTES;
  if (cookie?.cookie && nowMs - cookie.receivedMs < COOKIE_MAX_AGE_MS && nowMs >= cookie.receivedMs) {
    msg.set(mac16(cookie.cookie, msg.subarray(NON_ESP_MARKER_BYTES, m2)), m2);
  } else {
    msg.fill(0, m2);
  }
  return mac1;
}

// ---------------------------------------------------------------------------------------------
// Payloads

/** One label and the SPI its sender chose for its inbound SA. */
export interface LabelSpi {
  name: string;
  spi: number;
}

/** What an initiator proposes. */
export interface Offer {
  /** Algorithms it accepts, in order of preference (at least one). */
  algorithms: readonly AeadAlgorithm[];
  /** Labels it will carry with this peer and its inbound SPI for each (1..64 labels). */
  labels: readonly LabelSpi[];
}

/** What a responder answers. */
export interface Answer {
  /** Chosen algorithm, or null when none is in common. */
  algorithm: AeadAlgorithm | null;
  /** Agreed labels with the responder's inbound SPI for each; empty when none is in common. */
  labels: readonly LabelSpi[];
}

function labelsBytes(labels: readonly LabelSpi[]): number {
  let n = 1;
  for (const l of labels) n += 1 + l.name.length + 4;
  return n;
}

function writeLabels(out: Uint8Array, p: number, labels: readonly LabelSpi[]): number {
  out[p++] = labels.length;
  for (const l of labels) {
    out[p++] = l.name.length;
    for (let i = 0; i < l.name.length; i++) out[p++] = l.name.charCodeAt(i);
    putU32(out, p, l.spi);
    p += 4;
  }
  return p;
}

type ParsedLabels = { ok: true; labels: LabelSpi[]; end: number } | { ok: false; reason: HandshakeFailure };

function readLabels(b: Uint8Array, p: number, minCount: number): ParsedLabels {
  if (p >= b.length) return { ok: false, reason: 'bad_payload' };
  const n = b[p++]!;
  if (n < minCount || n > MAX_OFFER_LABELS) return { ok: false, reason: 'bad_payload' };
  const labels: LabelSpi[] = [];
  const names = new Set<string>();
  const spis = new Set<number>();
  for (let i = 0; i < n; i++) {
    if (p >= b.length) return { ok: false, reason: 'bad_payload' };
    const len = b[p++]!;
    if (len < 1 || len > MAX_LABEL_NAME_BYTES || p + len + 4 > b.length) return { ok: false, reason: 'bad_payload' };
    let name = '';
    for (let k = 0; k < len; k++) {
      const c = b[p + k]!;
      if (NAME_BYTE[c] !== 1) return { ok: false, reason: 'bad_payload' };
      name += String.fromCharCode(c);
    }
    p += len;
    const spi = u32(b, p);
    p += 4;
    if (names.has(name)) return { ok: false, reason: 'bad_payload' };
    if (spi < ESP_SPI_MIN || spis.has(spi)) return { ok: false, reason: 'bad_spi' };
    names.add(name);
    spis.add(spi);
    labels.push({ name, spi });
  }
  return { ok: true, labels, end: p };
}

function checkLabelsToSend(labels: readonly LabelSpi[], min: number): void {
  if (labels.length < min || labels.length > MAX_OFFER_LABELS) throw new RangeError(`handshake: ${labels.length} labels; between ${min} and ${MAX_OFFER_LABELS} may be sent`);
  const names = new Set<string>();
  const spis = new Set<number>();
  for (const l of labels) {
    if (!labelNameCarriable(l.name)) throw new RangeError(`handshake: label name ${JSON.stringify(l.name)} cannot be carried (1–64 of A–Z a–z 0–9 _ . -)`);
    if (!Number.isInteger(l.spi) || l.spi < ESP_SPI_MIN || l.spi > 0xffffffff) throw new RangeError(`handshake: SPI ${l.spi} of label ${l.name} is not usable (256..2^32-1)`);
    if (names.has(l.name) || spis.has(l.spi)) throw new RangeError(`handshake: label ${l.name} or SPI ${l.spi} repeated`);
    names.add(l.name);
    spis.add(l.spi);
  }
}

/** The plaintext payload of an initiation (exported for tests). */
export function encodeOffer(ts: Uint8Array, offer: Offer): Uint8Array {
  const algs = offer.algorithms;
  if (algs.length < 1 || algs.length > 4) throw new RangeError(`handshake: offer ${algs.length} algorithms; 1 to 4 may be offered`);
  checkLabelsToSend(offer.labels, 1);
  const out = new Uint8Array(TAI64N_BYTES + 3 + algs.length + labelsBytes(offer.labels));
  out.set(ts, 0);
  let p = TAI64N_BYTES;
  out[p++] = HANDSHAKE_VERSION;
  out[p++] = 0; // flags: none defined
  out[p++] = algs.length;
  for (const a of algs) out[p++] = ALG_CODES[a];
  writeLabels(out, p, offer.labels);
  return out;
}

export type ParsedOffer = { ok: true; timestamp: Uint8Array; offer: Offer } | { ok: false; reason: HandshakeFailure };

/** Parses an initiation payload; never throws. */
export function decodeOffer(b: Uint8Array): ParsedOffer {
  if (b.length < INITIATION_MIN_PAYLOAD_BYTES) return { ok: false, reason: 'bad_payload' };
  const timestamp = b.slice(0, TAI64N_BYTES);
  let p = TAI64N_BYTES;
  if (b[p++] !== HANDSHAKE_VERSION) return { ok: false, reason: 'bad_payload' };
  p++; // flags: unknown bits are ignored
  const n = b[p++]!;
  if (n < 1 || p + n > b.length) return { ok: false, reason: 'bad_payload' };
  const algorithms: AeadAlgorithm[] = [];
  for (let i = 0; i < n; i++) {
    const a = ALG_BY_CODE[b[p++]!]; // unknown codes (a newer peer's) are skipped
    if (a !== undefined && !algorithms.includes(a)) algorithms.push(a);
  }
  const l = readLabels(b, p, 1);
  if (!l.ok) return l;
  if (l.end !== b.length) return { ok: false, reason: 'bad_payload' };
  return { ok: true, timestamp, offer: { algorithms, labels: l.labels } };
}

/** The plaintext payload of a response (exported for tests). */
export function encodeAnswer(ts: Uint8Array, a: Answer): Uint8Array {
  checkLabelsToSend(a.labels, 0);
  const out = new Uint8Array(3 + TAI64N_BYTES + labelsBytes(a.labels));
  out[0] = HANDSHAKE_VERSION;
  out[1] = 0;
  out[2] = a.algorithm === null ? 0 : ALG_CODES[a.algorithm];
  out.set(ts, 3);
  writeLabels(out, 3 + TAI64N_BYTES, a.labels);
  return out;
}

export type ParsedAnswer = { ok: true; timestamp: Uint8Array; answer: Answer } | { ok: false; reason: HandshakeFailure };

/** Parses a response payload; never throws. */
export function decodeAnswer(b: Uint8Array): ParsedAnswer {
  if (b.length < RESPONSE_MIN_PAYLOAD_BYTES || b[0] !== HANDSHAKE_VERSION) return { ok: false, reason: 'bad_payload' };
  const code = b[2]!;
  const algorithm = code === 0 ? null : ALG_BY_CODE[code];
  if (algorithm === undefined) return { ok: false, reason: 'bad_payload' };
  const l = readLabels(b, 3 + TAI64N_BYTES, 0);
  if (!l.ok) return l;
  if (l.end !== b.length) return { ok: false, reason: 'bad_payload' };
  if (algorithm === null && l.labels.length > 0) return { ok: false, reason: 'bad_payload' };
  return { ok: true, timestamp: b.slice(3, 3 + TAI64N_BYTES), answer: { algorithm, labels: l.labels } };
}

// ---------------------------------------------------------------------------------------------
// Negotiation

/** What a responder's configuration grants a peer. */
export interface Grant {
  /** Labels this host carries with the peer. */
  labels: readonly string[];
  /** Algorithms this host accepts with the peer. */
  algorithms: readonly AeadAlgorithm[];
}

/** The outcome of negotiating an offer against a grant. */
export interface Negotiation {
  /** First algorithm of the initiator's list that the responder accepts, or null. */
  algorithm: AeadAlgorithm | null;
  /** Labels offered and granted, sorted by name. */
  agreed: string[];
  /** Labels the peer asked for that the local config does not grant it (for the audit log), sorted. */
  notGranted: string[];
}

/** Intersects an offer with the local grant (DESIGN.md "Keys and sessions"). */
export function negotiate(offer: Offer, grant: Grant): Negotiation {
  const granted = new Set(grant.labels);
  const agreed: string[] = [];
  const notGranted: string[] = [];
  for (const l of offer.labels) (granted.has(l.name) ? agreed : notGranted).push(l.name);
  agreed.sort();
  notGranted.sort();
  const algorithm = offer.algorithms.find((a) => grant.algorithms.includes(a)) ?? null;
  return { algorithm, agreed: algorithm === null ? [] : agreed, notGranted };
}

// ---------------------------------------------------------------------------------------------
// Keys

/** The KEYMATs of one label: what this host seals with and what it opens with. */
export interface LabelKeys {
  label: string;
  /** SPI of the outbound SA (chosen by the peer). */
  outboundSpi: number;
  /** SPI of the inbound SA (chosen by us). */
  inboundSpi: number;
  /** key ‖ salt for the outbound SA. */
  outboundKeymat: Uint8Array;
  /** key ‖ salt for the inbound SA. */
  inboundKeymat: Uint8Array;
}

/** Everything a completed handshake yields. */
export interface SessionKeys {
  algorithm: AeadAlgorithm;
  labels: LabelKeys[];
  /** Key of the confirmation message (type 4). */
  confirmKey: Uint8Array;
  /** Final Noise handshake hash h (channel binding, logs). */
  handshakeHash: Uint8Array;
}

const DIR_I2R = 1;
const DIR_R2I = 2;

function keymatInfo(dir: number, alg: AeadAlgorithm, label: string, spi: number): Uint8Array {
  const out = new Uint8Array(INFO_KEYMAT.length + 1 + 1 + 1 + 1 + label.length + 4);
  out.set(INFO_KEYMAT, 0);
  let p = INFO_KEYMAT.length;
  out[p++] = 0;
  out[p++] = dir;
  out[p++] = ALG_CODES[alg];
  out[p++] = label.length;
  for (let i = 0; i < label.length; i++) out[p++] = label.charCodeAt(i);
  putU32(out, p, spi);
  return out;
}

/**
 * Derives the per-label KEYMATs of both directions (see the file comment). `pairs` gives per label
 * the SPI the initiator chose (its inbound, responder→initiator) and the responder's (initiator→responder).
 */
function deriveSessionKeys(
  initiator: boolean,
  noise: HandshakeState,
  algorithm: AeadAlgorithm,
  pairs: readonly { label: string; initiatorSpi: number; responderSpi: number }[],
): SessionKeys {
  const h = noise.handshakeHash.slice();
  const [kI2R, kR2I] = noise.splitKeys();
  const prkI2R = hkdfExtract(h, kI2R);
  const prkR2I = hkdfExtract(h, kR2I);
  kI2R.fill(0);
  kR2I.fill(0);
  const len = aeadKeymatBytes(algorithm);
  const labels: LabelKeys[] = pairs.map((p) => {
    const i2r = hkdfExpand(prkI2R, keymatInfo(DIR_I2R, algorithm, p.label, p.responderSpi), len);
    const r2i = hkdfExpand(prkR2I, keymatInfo(DIR_R2I, algorithm, p.label, p.initiatorSpi), len);
    return initiator
      ? { label: p.label, outboundSpi: p.responderSpi, inboundSpi: p.initiatorSpi, outboundKeymat: i2r, inboundKeymat: r2i }
      : { label: p.label, outboundSpi: p.initiatorSpi, inboundSpi: p.responderSpi, outboundKeymat: r2i, inboundKeymat: i2r };
  });
  const confirmKey = hkdfExpand(prkI2R, INFO_CONFIRM, 32);
  prkI2R.fill(0);
  prkR2I.fill(0);
  noise.destroy();
  return { algorithm, labels, confirmKey, handshakeHash: h };
}

/** Zeroes every key of a SessionKeys (after the SAs took copies, or when it is thrown away). */
export function destroySessionKeys(k: SessionKeys): void {
  for (const l of k.labels) {
    l.inboundKeymat.fill(0);
    l.outboundKeymat.fill(0);
  }
  k.confirmKey.fill(0);
}

// ---------------------------------------------------------------------------------------------
// Initiator: message 1

/** An initiation sent and waiting for its response. */
export interface PendingInitiation {
  readonly senderIndex: number;
  readonly offer: Offer;
  /** The message as sent (for logs and tests). */
  readonly message: Uint8Array;
  /** mac1 of the message: the AAD of a cookie reply to it. */
  readonly mac1: Uint8Array;
  readonly createdMs: number;
  /** @internal Noise state after message 1. */
  readonly noise: HandshakeState;
}

export interface CreateInitiationOptions {
  senderIndex: number;
  offer: Offer;
  /** TAI64N timestamp (strictly increasing per peer; see tai64nFromMs). */
  timestamp: Tai64n;
  /** The cookie from the peer's last cookie reply (mac2 is set while it is fresh). */
  cookie?: CookieState;
  nowMs: number;
  random: RandomSource;
  dhCounter?: DhCounter;
}

export type CreateInitiationResult = { ok: true; message: Uint8Array; pending: PendingInitiation } | { ok: false; reason: HandshakeFailure };

/**
 * Builds an initiation (type 1) to `peer`. Fails only with bad_public_key when the peer's
 * configured public key is of low order. Throws RangeError for a malformed offer (a caller bug).
 */
export function createInitiation(id: HandshakeIdentity, peer: PeerKeys, o: CreateInitiationOptions): CreateInitiationResult {
  const payload = encodeOffer(encodeTai64n(o.timestamp), o.offer);
  const noise = new HandshakeState({
    initiator: true,
    prologue: id.prologue,
    s: id.staticKey,
    rs: peer.publicKey,
    psk: peer.psk,
    random: o.random,
    dhCounter: o.dhCounter,
  });
  const w = noise.writeMessage(payload);
  if (!w.ok) {
    noise.destroy();
    return { ok: false, reason: 'bad_public_key' };
  }
  const msg = new Uint8Array(NON_ESP_MARKER_BYTES + 8 + w.message.length + 2 * MAC_BYTES);
  msg[4] = MSG_INITIATION;
  putU32(msg, 8, o.senderIndex);
  msg.set(w.message, 12);
  const mac1 = writeMacs(msg, peer, o.cookie, o.nowMs);
  return { ok: true, message: msg, pending: { senderIndex: o.senderIndex >>> 0, offer: o.offer, message: msg, mac1, createdMs: o.nowMs, noise } };
}

// ---------------------------------------------------------------------------------------------
// Responder: message 1 in, message 2 out

/** What the responder knows of a configured peer. */
export interface ResponderPeer {
  readonly keys: PeerKeys;
  readonly replay: ReplayState;
}

/** An authenticated initiation, ready to be answered. */
export interface ConsumedInitiation<P extends ResponderPeer = ResponderPeer> {
  readonly peer: P;
  readonly senderIndex: number;
  readonly timestamp: Uint8Array;
  readonly offer: Offer;
  /** @internal Noise state after message 1. */
  readonly noise: HandshakeState;
}

export interface ConsumeInitiationOptions<P extends ResponderPeer> {
  /** The sender's address as opaque text (e.g. "192.0.2.1:4500"): what a cookie is bound to. */
  source: string;
  /** The host is under load: require a valid mac2 (cookie) before doing any DH. */
  underLoad: boolean;
  cookieSecret: CookieSecret;
  /** Looks a peer up by its static public key. */
  lookupPeer: (publicKey: Uint8Array) => P | undefined;
  nowMs: number;
  random: RandomSource;
  dhCounter?: DhCounter;
  /** Least ms between two accepted initiations of one peer; default 20. */
  minInitiationIntervalMs?: number;
}

export type ConsumeInitiationResult<P extends ResponderPeer> =
  | { kind: 'ok'; initiation: ConsumedInitiation<P> }
  | { kind: 'cookie'; reply: Uint8Array }
  | { kind: 'fail'; reason: HandshakeFailure; peer?: P };

/**
 * Checks and decrypts an initiation (type 1) in the order of the file comment. On success the
 * peer's replay state is advanced: the same message is refused the next time.
 */
export function consumeInitiation<P extends ResponderPeer>(id: HandshakeIdentity, msg: Uint8Array, o: ConsumeInitiationOptions<P>): ConsumeInitiationResult<P> {
  const peek = peekHandshake(msg);
  if (!peek.ok) return { kind: 'fail', reason: peek.reason };
  if (peek.type !== MSG_INITIATION) return { kind: 'fail', reason: 'unknown_type' };
  if (!macsOk(msg, id.mac1Key)) return { kind: 'fail', reason: 'bad_mac1' };
  if (o.underLoad) {
    const cookie = o.cookieSecret.cookieFor(o.source, o.nowMs, o.random);
    if (!mac2Ok(msg, cookie)) {
      return { kind: 'cookie', reply: cookieReply(id, cookie, peek.senderIndex, msg.subarray(msg.length - 2 * MAC_BYTES, msg.length - MAC_BYTES), o.random) };
    }
  }
  const noise = new HandshakeState({ initiator: false, prologue: id.prologue, s: id.staticKey, random: o.random, dhCounter: o.dhCounter });
  const r = noise.readMessage(msg.subarray(12, msg.length - 2 * MAC_BYTES));
  if (!r.ok) {
    noise.destroy();
    return { kind: 'fail', reason: r.error === 'dh' ? 'bad_public_key' : 'initiation_decrypt_failed' };
  }
  const peer = o.lookupPeer(noise.remoteStatic!);
  if (peer === undefined) {
    noise.destroy();
    return { kind: 'fail', reason: 'unknown_peer' };
  }
  const parsed = decodeOffer(r.payload);
  if (!parsed.ok) {
    noise.destroy();
    return { kind: 'fail', reason: parsed.reason, peer };
  }
  const replay = peer.replay;
  if (replay.greatestTimestamp !== null && compareTimestamps(parsed.timestamp, replay.greatestTimestamp) <= 0) {
    noise.destroy();
    return { kind: 'fail', reason: 'replayed_timestamp', peer };
  }
  const minGap = o.minInitiationIntervalMs ?? DEFAULT_MIN_INITIATION_INTERVAL_MS;
  if (o.nowMs - replay.lastInitiationMs < minGap && o.nowMs >= replay.lastInitiationMs) {
    noise.destroy();
    return { kind: 'fail', reason: 'rate_limited', peer };
  }
  replay.greatestTimestamp = parsed.timestamp;
  replay.lastInitiationMs = o.nowMs;
  noise.setPsk(peer.keys.psk);
  return { kind: 'ok', initiation: { peer, senderIndex: peek.senderIndex, timestamp: parsed.timestamp, offer: parsed.offer, noise } };
}

export interface CreateResponseOptions {
  senderIndex: number;
  /** The negotiated algorithm, or null (then `labels` must be empty: a refusal the initiator can read). */
  algorithm: AeadAlgorithm | null;
  /** Agreed labels with our inbound SPI for each (empty = nothing in common). */
  labels: readonly LabelSpi[];
  /** Our TAI64N timestamp, from the same strictly increasing per-peer sequence as our initiations. */
  timestamp: Tai64n;
  nowMs: number;
  random: RandomSource;
  /** Our cookie from the initiator (unused by sectunnel initiators; kept for symmetry). */
  cookie?: CookieState;
}

export type CreateResponseResult = { ok: true; message: Uint8Array; keys: SessionKeys | null } | { ok: false; reason: HandshakeFailure };

/**
 * Answers a consumed initiation with a response (type 2) and derives the session keys (null when
 * nothing was agreed). Every agreed label must be one the initiator offered.
 */
export function createResponse(init: ConsumedInitiation, o: CreateResponseOptions): CreateResponseResult {
  const offered = new Map(init.offer.labels.map((l) => [l.name, l.spi]));
  for (const l of o.labels) {
    if (!offered.has(l.name)) throw new RangeError(`createResponse: label ${l.name} was not offered`);
  }
  if (o.algorithm === null && o.labels.length > 0) throw new RangeError('createResponse: labels without an algorithm');
  const sorted = [...o.labels].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const payload = encodeAnswer(encodeTai64n(o.timestamp), { algorithm: o.algorithm, labels: sorted });
  const w = init.noise.writeMessage(payload);
  if (!w.ok) {
    init.noise.destroy();
    return { ok: false, reason: 'bad_public_key' };
  }
  const msg = new Uint8Array(NON_ESP_MARKER_BYTES + 12 + w.message.length + 2 * MAC_BYTES);
  msg[4] = MSG_RESPONSE;
  putU32(msg, 8, o.senderIndex);
  putU32(msg, 12, init.senderIndex);
  msg.set(w.message, 16);
  writeMacs(msg, init.peer.keys, o.cookie, o.nowMs);
  if (o.algorithm === null || sorted.length === 0) {
    init.noise.destroy();
    return { ok: true, message: msg, keys: null };
  }
  const keys = deriveSessionKeys(
    false,
    init.noise,
    o.algorithm,
    sorted.map((l) => ({ label: l.name, initiatorSpi: offered.get(l.name)!, responderSpi: l.spi })),
  );
  return { ok: true, message: msg, keys };
}

// ---------------------------------------------------------------------------------------------
// Initiator: message 2 in

export type ConsumeResponseResult =
  | { ok: true; keys: SessionKeys; responderIndex: number; agreed: string[]; refusedByPeer: string[]; responderTimestamp: Uint8Array }
  | { ok: false; reason: HandshakeFailure };

/**
 * Checks and decrypts the response (type 2) to `pending` (whose senderIndex the response's
 * receiver index must name: the caller routes by peekHandshake) and derives the session keys.
 */
export function consumeResponse(id: HandshakeIdentity, pending: PendingInitiation, msg: Uint8Array): ConsumeResponseResult {
  const peek = peekHandshake(msg);
  if (!peek.ok) return { ok: false, reason: peek.reason };
  if (peek.type !== MSG_RESPONSE) return { ok: false, reason: 'unknown_type' };
  if (peek.receiverIndex !== pending.senderIndex || pending.noise.messageIndex !== 1) return { ok: false, reason: 'unknown_index' };
  if (!macsOk(msg, id.mac1Key)) return { ok: false, reason: 'bad_mac1' };
  // Read on a copy: a forged or corrupted response (mac1 only needs our public key) must not
  // spoil the pending handshake, which the genuine response may still complete (WireGuard does
  // the same with local copies of hash and chaining key).
  const noise = pending.noise.clone();
  const fail = (reason: HandshakeFailure): ConsumeResponseResult => {
    noise.destroy();
    return { ok: false, reason };
  };
  const r = noise.readMessage(msg.subarray(16, msg.length - 2 * MAC_BYTES));
  if (!r.ok) return fail(r.error === 'dh' ? 'bad_public_key' : 'response_decrypt_failed');
  const parsed = decodeAnswer(r.payload);
  if (!parsed.ok) return fail(parsed.reason);
  const a = parsed.answer;
  if (a.algorithm === null) return fail('no_common_algorithm');
  if (!pending.offer.algorithms.includes(a.algorithm)) return fail('bad_payload');
  if (a.labels.length === 0) return fail('no_common_labels');
  const offered = new Map(pending.offer.labels.map((l) => [l.name, l.spi]));
  for (const l of a.labels) if (!offered.has(l.name)) return fail('bad_payload');
  const agreedSet = new Set(a.labels.map((l) => l.name));
  const refusedByPeer = pending.offer.labels.map((l) => l.name).filter((n) => !agreedSet.has(n)).sort();
  pending.noise.destroy();
  const keys = deriveSessionKeys(
    true,
    noise,
    a.algorithm,
    a.labels.map((l) => ({ label: l.name, initiatorSpi: offered.get(l.name)!, responderSpi: l.spi })),
  );
  return { ok: true, keys, responderIndex: peek.senderIndex, agreed: a.labels.map((l) => l.name), refusedByPeer, responderTimestamp: parsed.timestamp };
}

// ---------------------------------------------------------------------------------------------
// Cookie replies (type 3)

function cookieReply(id: HandshakeIdentity, cookie: Uint8Array, receiverIndex: number, mac1: Uint8Array, random: RandomSource): Uint8Array {
  const msg = new Uint8Array(COOKIE_REPLY_BYTES);
  msg[4] = MSG_COOKIE_REPLY;
  putU32(msg, 8, receiverIndex);
  const nonce = random(COOKIE_NONCE_BYTES).slice(0, COOKIE_NONCE_BYTES);
  msg.set(nonce, 12);
  msg.set(xchacha20poly1305(id.cookieKey, nonce, mac1).encrypt(cookie), 12 + COOKIE_NONCE_BYTES);
  return msg;
}

/**
 * Reads a cookie reply (type 3) answering `pending` (sent to `peer`) and stores the cookie in
 * `state` for the next initiation's mac2 (WireGuard §5.4.7).
 */
export function consumeCookieReply(peer: PeerKeys, pending: PendingInitiation, msg: Uint8Array, state: CookieState, nowMs: number): { ok: true } | { ok: false; reason: HandshakeFailure } {
  const peek = peekHandshake(msg);
  if (!peek.ok) return { ok: false, reason: peek.reason };
  if (peek.type !== MSG_COOKIE_REPLY) return { ok: false, reason: 'unknown_type' };
  if (peek.receiverIndex !== pending.senderIndex) return { ok: false, reason: 'unknown_index' };
  let cookie: Uint8Array;
  try {
    cookie = xchacha20poly1305(peer.cookieKey, msg.subarray(12, 12 + COOKIE_NONCE_BYTES), pending.mac1).decrypt(msg.subarray(12 + COOKIE_NONCE_BYTES));
  } catch {
    return { ok: false, reason: 'bad_cookie_reply' };
  }
  state.cookie = cookie;
  state.receivedMs = nowMs;
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------
// Confirmation (type 4): the initiator tells the responder it has installed the new SAs

/** The confirmation message for the responder's index `receiverIndex`, authenticated with the session's confirm key. */
export function createConfirm(receiverIndex: number, confirmKey: Uint8Array): Uint8Array {
  const msg = new Uint8Array(CONFIRM_BYTES);
  msg[4] = MSG_CONFIRM;
  putU32(msg, 8, receiverIndex);
  const tag = noisePrimitives().seal(confirmKey, new Uint8Array(12), msg.subarray(NON_ESP_MARKER_BYTES, 12), new Uint8Array(0));
  msg.set(tag, 12);
  return msg;
}

/** True if `msg` is a confirmation under `confirmKey` (its index already routed by peekHandshake). */
export function verifyConfirm(msg: Uint8Array, confirmKey: Uint8Array): boolean {
  if (msg.length !== CONFIRM_BYTES) return false;
  return noisePrimitives().open(confirmKey, new Uint8Array(12), msg.subarray(NON_ESP_MARKER_BYTES, 12), msg.subarray(12)) !== null;
}
