/**
 * The Noise Protocol Framework (revision 34) for exactly one protocol,
 * `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` — the choices WireGuard made:
 *
 *   IKpsk2:
 *     <- s
 *     ...
 *     -> e, es, s, ss
 *     <- e, ee, se, psk
 *
 * - DH: X25519 (Noise §12.1, RFC 7748); a DH whose output would be all zeros
 *   (a low-order public key) is a failure, never a key.
 * - Cipher: ChaCha20-Poly1305 (Noise §12.3, RFC 8439); nonce = 32 zero bits ‖
 *   64-bit little-endian counter.
 * - Hash: BLAKE2s (Noise §12.8, RFC 7693), HASHLEN = 32, BLOCKLEN = 64; HMAC
 *   (RFC 2104) and HKDF as Noise §4.3 defines them.
 *
 * The primitives come from a NoisePrimitives set, chosen process-wide with
 * setNoisePrimitives: by default @noble/curves, @noble/hashes and @noble/ciphers
 * (pure JS, everywhere); the daemon installs node:crypto's (OpenSSL, ~20× faster
 * X25519: bench/handshake.bench.ts) after checking them against these.
 *
 * Objects: CipherState (§5.1), SymmetricState (§5.2), HandshakeState (§5.3)
 * with the pattern fixed above, the psk modifier rules of §9 (every `e` token
 * also calls MixKey(e.public_key)) and Split() at the end.
 *
 * Pure: randomness (ephemeral keys) comes from a caller's `random(n)`;
 * failures are returned as codes, never thrown.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';

/** The protocol name (Noise §8); hashed into the initial chaining key and h. */
export const NOISE_PROTOCOL_NAME = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
/** DH output and public key length of X25519 (Noise §12.1). */
export const NOISE_DHLEN = 32;
/** BLAKE2s output length (Noise §12.8). */
export const NOISE_HASHLEN = 32;
/** Cipher key length (Noise §4.2). */
export const NOISE_KEYLEN = 32;
/** Poly1305 tag appended by every encryption with a key (Noise §4.2). */
export const NOISE_TAGLEN = 16;
/** Pre-shared key length (Noise §9). */
export const NOISE_PSKLEN = 32;
/** Largest Noise message (Noise §3). */
export const NOISE_MAX_MESSAGE_BYTES = 65535;
/** Nonce 2^64 − 1 is reserved (Noise §5.1); we stop far earlier, at 2^53 − 1, where numbers stay exact. */
const NONCE_MAX = Number.MAX_SAFE_INTEGER;

/** A source of random octets: `random(n)` returns n fresh random octets (e.g. crypto.getRandomValues). */
export type RandomSource = (n: number) => Uint8Array;

/** Counts the Diffie-Hellman operations a handshake performs (for DoS accounting and tests). */
export interface DhCounter {
  dhOperations: number;
}

/**
 * The primitives of Noise_*_25519_ChaChaPoly_BLAKE2s. Every implementation must give the same
 * octets (test/core/noise.test.ts runs the published vector on each); none may throw on input.
 */
export interface NoisePrimitives {
  /** Shown in logs and benchmarks ("noble", "node"). */
  readonly name: string;
  /** X25519 public key of a 32-octet private key (RFC 7748 §6.1; the scalar is clamped). */
  x25519PublicKey(privateKey: Uint8Array): Uint8Array;
  /** X25519(private, public) (RFC 7748 §5), or null if the public key is refused. */
  x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | null;
  /** BLAKE2s-256 of the concatenation of the parts (RFC 7693). */
  hash(parts: readonly Uint8Array[]): Uint8Array;
  /** HMAC-BLAKE2s-256 (RFC 2104, block length 64) of the concatenation of the parts. */
  hmac(key: Uint8Array, parts: readonly Uint8Array[]): Uint8Array;
  /** ChaCha20-Poly1305 (RFC 8439 §2.8) with a 12-octet nonce: ciphertext ‖ 16-octet tag. */
  seal(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** ChaCha20-Poly1305 open: the plaintext, or null when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null;
}

/** The pure-JS primitives (@noble/curves, @noble/hashes, @noble/ciphers): the default. */
export const NOBLE_NOISE_PRIMITIVES: NoisePrimitives = {
  name: 'noble',
  x25519PublicKey: (privateKey) => x25519.getPublicKey(privateKey),
  x25519: (privateKey, publicKey) => {
    try {
      return x25519.getSharedSecret(privateKey, publicKey);
    } catch {
      return null;
    }
  },
  hash: (parts) => {
    const h = blake2s.create();
    for (const p of parts) h.update(p);
    return h.digest();
  },
  hmac: (key, parts) => {
    const m = hmac.create(blake2s, key);
    for (const p of parts) m.update(p);
    return m.digest();
  },
  seal: (key, nonce, ad, plaintext) => chacha20poly1305(key, nonce, ad).encrypt(plaintext),
  open: (key, nonce, ad, ciphertext) => {
    try {
      return chacha20poly1305(key, nonce, ad).decrypt(ciphertext);
    } catch {
      return null;
    }
  },
};

let primitives: NoisePrimitives = NOBLE_NOISE_PRIMITIVES;

/** The process-wide primitives every Noise operation uses (default NOBLE_NOISE_PRIMITIVES). */
export function noisePrimitives(): NoisePrimitives {
  return primitives;
}

/** Chooses the process-wide primitives; returns the previous set (tests restore it). */
export function setNoisePrimitives(p: NoisePrimitives): NoisePrimitives {
  const prev = primitives;
  primitives = p;
  return prev;
}

/** HASH(data) with BLAKE2s-256 over the concatenation of the parts (Noise §4.3). */
export function noiseHash(...parts: Uint8Array[]): Uint8Array {
  return primitives.hash(parts);
}

/** HMAC-HASH(key, data) with BLAKE2s (RFC 2104, block length 64; Noise §4.3). */
export function noiseHmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  return primitives.hmac(key, parts);
}

const BYTE1 = Uint8Array.of(1);
const BYTE2 = Uint8Array.of(2);
const BYTE3 = Uint8Array.of(3);

/**
 * HKDF(chaining_key, input_key_material, num_outputs) exactly as Noise §4.3 defines it:
 * temp_key = HMAC(ck, ikm); output1 = HMAC(temp_key, 0x01); output_i = HMAC(temp_key, output_{i-1} ‖ i).
 */
export function noiseHkdf(chainingKey: Uint8Array, ikm: Uint8Array, numOutputs: 2 | 3): Uint8Array[] {
  const tempKey = noiseHmac(chainingKey, ikm);
  const o1 = noiseHmac(tempKey, BYTE1);
  const o2 = noiseHmac(tempKey, o1, BYTE2);
  const out = [o1, o2];
  if (numOutputs === 3) out.push(noiseHmac(tempKey, o2, BYTE3));
  tempKey.fill(0);
  return out;
}

/** X25519 public key of a 32-octet private key (RFC 7748 §6.1; the scalar is clamped). */
export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  return primitives.x25519PublicKey(privateKey);
}

/**
 * DH(private, public) (Noise §4.1): the X25519 shared secret, or null when the public key is
 * malformed or of low order (the output would be all zeros; RFC 7748 §6.1 allows the check).
 */
export function noiseDh(privateKey: Uint8Array, publicKey: Uint8Array, counter?: DhCounter): Uint8Array | null {
  if (counter) counter.dhOperations++;
  if (privateKey.length !== NOISE_DHLEN || publicKey.length !== NOISE_DHLEN) return null;
  const out = primitives.x25519(privateKey, publicKey);
  if (out === null || out.length !== NOISE_DHLEN) return null;
  let acc = 0;
  for (let i = 0; i < NOISE_DHLEN; i++) acc |= out[i]!;
  return acc === 0 ? null : out;
}

/** Clamps 32 random octets into an X25519 private key (RFC 7748 §5), in place; returns them. */
export function clampX25519PrivateKey(k: Uint8Array): Uint8Array {
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k;
}

/** Constant-time equality of two byte arrays of the same length (false for different lengths). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** ChaChaPoly nonce (Noise §12.3): 32 bits of zeros, then the 64-bit counter little-endian. */
function chachaNonce(n: number): Uint8Array {
  const nonce = new Uint8Array(12);
  let lo = n >>> 0;
  let hi = Math.floor(n / 4294967296);
  for (let i = 0; i < 4; i++, lo >>>= 8) nonce[4 + i] = lo & 0xff;
  for (let i = 0; i < 4; i++, hi >>>= 8) nonce[8 + i] = hi & 0xff;
  return nonce;
}

/** CipherState (Noise §5.1): a key k (or none) and a nonce counter n. */
export class CipherState {
  private k: Uint8Array | null = null;
  /** The next nonce. */
  n = 0;

  /** InitializeKey(key): sets k and resets n to 0. */
  initializeKey(key: Uint8Array | null): void {
    this.k?.fill(0);
    this.k = key === null ? null : key.slice();
    this.n = 0;
  }

  /** HasKey(). */
  hasKey(): boolean {
    return this.k !== null;
  }

  /**
   * EncryptWithAd(ad, plaintext): ciphertext ‖ tag with the current nonce, then n += 1; the
   * plaintext itself (copied) without a key. Returns null when the nonces are used up.
   */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array | null {
    if (this.k === null) return plaintext.slice();
    if (this.n >= NONCE_MAX) return null;
    const out = primitives.seal(this.k, chachaNonce(this.n), ad, plaintext);
    this.n++;
    return out;
  }

  /**
   * DecryptWithAd(ad, ciphertext): the plaintext, or null if the tag does not verify (n then
   * stays, Noise §5.1). Without a key the ciphertext itself (copied).
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
    if (this.k === null) return ciphertext.slice();
    if (this.n >= NONCE_MAX || ciphertext.length < NOISE_TAGLEN) return null;
    const out = primitives.open(this.k, chachaNonce(this.n), ad, ciphertext);
    if (out === null) return null;
    this.n++;
    return out;
  }

  /** An independent copy (key copied). */
  clone(): CipherState {
    const c = new CipherState();
    c.k = this.k === null ? null : this.k.slice();
    c.n = this.n;
    return c;
  }

  /** Zeroes the key; the state has no key afterwards. */
  destroy(): void {
    this.k?.fill(0);
    this.k = null;
  }
}

/** SymmetricState (Noise §5.2): chaining key ck, handshake hash h and a CipherState. */
export class SymmetricState {
  cipher = new CipherState();
  ck: Uint8Array;
  h: Uint8Array;

  /** InitializeSymmetric(protocol_name). */
  constructor(protocolName: string = NOISE_PROTOCOL_NAME) {
    const name = new TextEncoder().encode(protocolName);
    if (name.length <= NOISE_HASHLEN) {
      this.h = new Uint8Array(NOISE_HASHLEN);
      this.h.set(name);
    } else {
      this.h = noiseHash(name);
    }
    this.ck = this.h.slice();
  }

  /** MixKey(input_key_material). */
  mixKey(ikm: Uint8Array): void {
    const [ck, tempK] = noiseHkdf(this.ck, ikm, 2) as [Uint8Array, Uint8Array];
    this.ck.fill(0);
    this.ck = ck;
    this.cipher.initializeKey(tempK);
    tempK.fill(0);
  }

  /** MixHash(data): h = HASH(h ‖ data). */
  mixHash(data: Uint8Array): void {
    this.h = noiseHash(this.h, data);
  }

  /** MixKeyAndHash(input_key_material) (Noise §5.2, for psk tokens). */
  mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, tempH, tempK] = noiseHkdf(this.ck, ikm, 3) as [Uint8Array, Uint8Array, Uint8Array];
    this.ck.fill(0);
    this.ck = ck;
    this.mixHash(tempH);
    this.cipher.initializeKey(tempK);
    tempK.fill(0);
  }

  /** EncryptAndHash(plaintext): ciphertext = EncryptWithAd(h, plaintext); MixHash(ciphertext). */
  encryptAndHash(plaintext: Uint8Array): Uint8Array | null {
    const c = this.cipher.encryptWithAd(this.h, plaintext);
    if (c === null) return null;
    this.mixHash(c);
    return c;
  }

  /** DecryptAndHash(ciphertext): the plaintext, or null when it does not authenticate. */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array | null {
    const p = this.cipher.decryptWithAd(this.h, ciphertext);
    if (p === null) return null;
    this.mixHash(ciphertext);
    return p;
  }

  /** Split(): the two transport keys (initiator→responder, responder→initiator) from HKDF(ck, empty, 2). */
  splitKeys(): [Uint8Array, Uint8Array] {
    return noiseHkdf(this.ck, new Uint8Array(0), 2) as [Uint8Array, Uint8Array];
  }

  /** An independent copy. */
  clone(): SymmetricState {
    const c = new SymmetricState();
    c.ck = this.ck.slice();
    c.h = this.h.slice();
    c.cipher = this.cipher.clone();
    return c;
  }

  /** Zeroes ck and the cipher key (h is public transcript data and stays). */
  destroy(): void {
    this.ck.fill(0);
    this.cipher.destroy();
  }
}

/** Why a Noise message could not be read or written. */
export type NoiseError =
  | 'short' // message shorter than the pattern needs
  | 'dh' // a DH with a malformed or low-order public key
  | 'decrypt_static' // the encrypted static key did not authenticate
  | 'decrypt_payload' // the payload did not authenticate
  | 'state' // the message is not the one this state expects (a caller bug)
  | 'nonce'; // the cipher nonces are used up

export type NoiseReadResult = { ok: true; payload: Uint8Array } | { ok: false; error: NoiseError };
export type NoiseWriteResult = { ok: true; message: Uint8Array } | { ok: false; error: NoiseError };

/** A static or ephemeral key pair. */
export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

/** Builds a key pair from a private key (clamping is done by X25519 itself). */
export function keyPairFromPrivate(privateKey: Uint8Array): KeyPair {
  return { privateKey: privateKey.slice(), publicKey: x25519PublicKey(privateKey) };
}

export interface HandshakeStateOptions {
  initiator: boolean;
  /** Prologue mixed into h before anything else (Noise §6); both sides must use the same. */
  prologue: Uint8Array;
  /** Local static key pair s. */
  s: KeyPair;
  /** Remote static public key rs: required for the initiator (IK pre-message), learned by the responder. */
  rs?: Uint8Array;
  /** The pre-shared key (32 octets); the responder may set it later with setPsk, before writing message 2. */
  psk?: Uint8Array;
  /** Fixed ephemeral private key (test vectors only); otherwise drawn from `random`. */
  ephemeralPrivateKey?: Uint8Array;
  random?: RandomSource;
  /** Counts DH operations. */
  dhCounter?: DhCounter;
}

/**
 * HandshakeState (Noise §5.3) for IKpsk2. The initiator calls writeMessage (1) then readMessage (2);
 * the responder readMessage (1), looks at remoteStatic, setPsk, then writeMessage (2). After message 2
 * both call splitKeys().
 */
export class HandshakeState {
  readonly initiator: boolean;
  symmetric: SymmetricState;
  private readonly s: KeyPair;
  private e: KeyPair | null = null;
  private rs: Uint8Array | null;
  private re: Uint8Array | null = null;
  private psk: Uint8Array | null;
  private readonly fixedE: Uint8Array | undefined;
  private readonly random: RandomSource | undefined;
  private readonly dhCounter: DhCounter | undefined;
  /** Messages processed so far (0, 1 or 2). */
  messageIndex = 0;

  /** Initialize(): InitializeSymmetric, MixHash(prologue), then the pre-message `<- s` (Noise §5.3). */
  constructor(o: HandshakeStateOptions) {
    this.initiator = o.initiator;
    this.symmetric = new SymmetricState(NOISE_PROTOCOL_NAME);
    this.s = o.s;
    this.rs = o.rs ? o.rs.slice() : null;
    this.psk = o.psk ? o.psk.slice() : null;
    this.fixedE = o.ephemeralPrivateKey;
    this.random = o.random;
    this.dhCounter = o.dhCounter;
    this.symmetric.mixHash(o.prologue);
    // Pre-message pattern "<- s": both sides hash the responder's static public key.
    if (this.initiator) {
      if (this.rs === null || this.rs.length !== NOISE_DHLEN) throw new RangeError('HandshakeState: the IK initiator needs the responder static public key rs (32 octets)');
      this.symmetric.mixHash(this.rs);
    } else {
      this.symmetric.mixHash(this.s.publicKey);
    }
  }

  /** The remote static public key (known to the responder after reading message 1). */
  get remoteStatic(): Uint8Array | null {
    return this.rs;
  }

  /** The remote ephemeral public key, once read. */
  get remoteEphemeral(): Uint8Array | null {
    return this.re;
  }

  /** The handshake hash h (Noise §11.2, channel binding). */
  get handshakeHash(): Uint8Array {
    return this.symmetric.h;
  }

  /** Sets the pre-shared key (before the psk token is processed). */
  setPsk(psk: Uint8Array): void {
    this.psk = psk.slice();
  }

  private dh(priv: Uint8Array, pub: Uint8Array): boolean {
    const out = noiseDh(priv, pub, this.dhCounter);
    if (out === null) return false;
    this.symmetric.mixKey(out);
    out.fill(0);
    return true;
  }

  private newEphemeral(): KeyPair {
    let priv: Uint8Array;
    if (this.fixedE) priv = this.fixedE.slice();
    else if (this.random) priv = clampX25519PrivateKey(this.random(NOISE_DHLEN).slice(0, NOISE_DHLEN));
    else throw new RangeError('HandshakeState: no random source for the ephemeral key');
    return { privateKey: priv, publicKey: x25519PublicKey(priv) };
  }

  /** WriteMessage(payload) (Noise §5.3): message 1 for the initiator, message 2 for the responder. */
  writeMessage(payload: Uint8Array): NoiseWriteResult {
    const sym = this.symmetric;
    const parts: Uint8Array[] = [];
    if (this.initiator && this.messageIndex === 0) {
      // -> e, es, s, ss
      this.e = this.newEphemeral();
      parts.push(this.e.publicKey);
      sym.mixHash(this.e.publicKey);
      sym.mixKey(this.e.publicKey); // psk modifier (Noise §9.2)
      if (!this.dh(this.e.privateKey, this.rs!)) return { ok: false, error: 'dh' };
      const encS = sym.encryptAndHash(this.s.publicKey);
      if (encS === null) return { ok: false, error: 'nonce' };
      parts.push(encS);
      if (!this.dh(this.s.privateKey, this.rs!)) return { ok: false, error: 'dh' };
    } else if (!this.initiator && this.messageIndex === 1) {
      // <- e, ee, se, psk
      if (this.psk === null || this.psk.length !== NOISE_PSKLEN) return { ok: false, error: 'state' };
      this.e = this.newEphemeral();
      parts.push(this.e.publicKey);
      sym.mixHash(this.e.publicKey);
      sym.mixKey(this.e.publicKey);
      if (!this.dh(this.e.privateKey, this.re!)) return { ok: false, error: 'dh' };
      if (!this.dh(this.e.privateKey, this.rs!)) return { ok: false, error: 'dh' };
      sym.mixKeyAndHash(this.psk);
    } else {
      return { ok: false, error: 'state' };
    }
    const body = sym.encryptAndHash(payload);
    if (body === null) return { ok: false, error: 'nonce' };
    parts.push(body);
    this.messageIndex++;
    return { ok: true, message: concat(...parts) };
  }

  /** ReadMessage(message) (Noise §5.3): message 1 for the responder, message 2 for the initiator. */
  readMessage(message: Uint8Array): NoiseReadResult {
    const sym = this.symmetric;
    let p = 0;
    if (!this.initiator && this.messageIndex === 0) {
      // -> e, es, s, ss
      if (message.length < NOISE_DHLEN + NOISE_DHLEN + NOISE_TAGLEN + NOISE_TAGLEN) return { ok: false, error: 'short' };
      this.re = message.slice(0, NOISE_DHLEN);
      p = NOISE_DHLEN;
      sym.mixHash(this.re);
      sym.mixKey(this.re);
      if (!this.dh(this.s.privateKey, this.re)) return { ok: false, error: 'dh' };
      const rs = sym.decryptAndHash(message.subarray(p, p + NOISE_DHLEN + NOISE_TAGLEN));
      if (rs === null) return { ok: false, error: 'decrypt_static' };
      p += NOISE_DHLEN + NOISE_TAGLEN;
      this.rs = rs;
      if (!this.dh(this.s.privateKey, this.rs)) return { ok: false, error: 'dh' };
    } else if (this.initiator && this.messageIndex === 1) {
      // <- e, ee, se, psk
      if (message.length < NOISE_DHLEN + NOISE_TAGLEN) return { ok: false, error: 'short' };
      if (this.psk === null || this.psk.length !== NOISE_PSKLEN) return { ok: false, error: 'state' };
      this.re = message.slice(0, NOISE_DHLEN);
      p = NOISE_DHLEN;
      sym.mixHash(this.re);
      sym.mixKey(this.re);
      if (!this.dh(this.e!.privateKey, this.re)) return { ok: false, error: 'dh' };
      if (!this.dh(this.s.privateKey, this.re)) return { ok: false, error: 'dh' };
      sym.mixKeyAndHash(this.psk);
    } else {
      return { ok: false, error: 'state' };
    }
    const payload = sym.decryptAndHash(message.subarray(p));
    if (payload === null) return { ok: false, error: 'decrypt_payload' };
    this.messageIndex++;
    return { ok: true, payload };
  }

  /** True once both messages are processed: splitKeys() may be called. */
  get complete(): boolean {
    return this.messageIndex === 2;
  }

  /**
   * Split() (Noise §5.2) after message 2: [initiator→responder key, responder→initiator key].
   * Throws (a caller bug) if the handshake is not complete.
   */
  splitKeys(): [Uint8Array, Uint8Array] {
    if (!this.complete) throw new RangeError('HandshakeState.splitKeys: the handshake is not complete');
    return this.symmetric.splitKeys();
  }

  /** Split() as two CipherStates (initiator→responder, responder→initiator). */
  split(): [CipherState, CipherState] {
    const [k1, k2] = this.splitKeys();
    const c1 = new CipherState();
    const c2 = new CipherState();
    c1.initializeKey(k1);
    c2.initializeKey(k2);
    k1.fill(0);
    k2.fill(0);
    return [c1, c2];
  }

  /**
   * An independent copy, so a message can be tried without committing: readMessage on the copy,
   * keep it on success, destroy it on failure (a forged message then leaves the original intact).
   */
  clone(): HandshakeState {
    const c = Object.create(HandshakeState.prototype) as HandshakeState;
    Object.assign(c, this);
    c.symmetric = this.symmetric.clone();
    c.e = this.e === null ? null : { privateKey: this.e.privateKey.slice(), publicKey: this.e.publicKey.slice() };
    c.rs = this.rs === null ? null : this.rs.slice();
    c.re = this.re === null ? null : this.re.slice();
    c.psk = this.psk === null ? null : this.psk.slice();
    return c;
  }

  /** Zeroes the ephemeral private key, psk, ck and cipher key. */
  destroy(): void {
    this.e?.privateKey.fill(0);
    this.psk?.fill(0);
    this.symmetric.destroy();
  }
}
