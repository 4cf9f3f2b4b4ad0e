/**
 * The AEAD interface every crypto backend implements: seal and open in place,
 * one packet or a batch of packets in one slab, for AES-GCM with a 16-octet
 * ICV (RFC 4106) and ChaCha20-Poly1305 (RFC 7634). The nonce is always
 * salt(4, the tail of KEYMAT) ‖ IV(8, read from the packet at ivOff).
 */

export const AEAD_ALGORITHMS = ['aes-gcm-128', 'aes-gcm-192', 'aes-gcm-256', 'chacha20-poly1305'] as const;
export type AeadAlgorithm = (typeof AEAD_ALGORITHMS)[number];

export const AEAD_BACKENDS = ['native', 'node', 'noble'] as const;
export type AeadBackendName = (typeof AEAD_BACKENDS)[number];

/** Salt at the end of KEYMAT (RFC 4106 §8.1, RFC 7634 §4). */
export const AEAD_SALT_BYTES = 4;
/** Explicit IV carried in each packet. */
export const AEAD_IV_BYTES = 8;
/** ICV (authentication tag) length. */
export const AEAD_ICV_BYTES = 16;
/** Largest AAD a batch entry holds: SPI ‖ seq_hi ‖ seq_lo with ESN is 12; 16 leaves room. */
export const AEAD_BATCH_AAD_STRIDE = 16;

/** Key length in octets of each algorithm (without the salt). */
export function aeadKeyBytes(alg: AeadAlgorithm): number {
  switch (alg) {
    case 'aes-gcm-128':
      return 16;
    case 'aes-gcm-192':
      return 24;
    case 'aes-gcm-256':
      return 32;
    case 'chacha20-poly1305':
      return 32;
  }
}

/** KEYMAT length in octets: key ‖ 4-octet salt. */
export function aeadKeymatBytes(alg: AeadAlgorithm): number {
  return aeadKeyBytes(alg) + AEAD_SALT_BYTES;
}

/** Number of int32 slots per entry in AeadBatch.desc. */
export const AEAD_DESC_STRIDE = 4;

/**
 * A batch of in-place AEAD operations over packets that all live in `data`
 * (normally a pool's slab). Entry i is described by
 * desc[4i+0] = ivOff (8-octet IV), desc[4i+1] = textOff, desc[4i+2] = textLen
 * (plaintext length for seal, ciphertext length without ICV for open; the ICV is at
 * textOff+textLen), desc[4i+3] = aadLen; its AAD is aad[16i, 16i+aadLen).
 * openBatch writes ok[i] = 1 for an authentic entry, 0 otherwise.
 */
export class AeadBatch {
  data: Uint8Array = new Uint8Array(0);
  count = 0;
  readonly desc: Int32Array;
  readonly aad: Uint8Array;
  readonly ok: Uint8Array;

  constructor(readonly capacity: number) {
    this.desc = new Int32Array(capacity * AEAD_DESC_STRIDE);
    this.aad = new Uint8Array(capacity * AEAD_BATCH_AAD_STRIDE);
    this.ok = new Uint8Array(capacity);
  }

  /** Empties the batch and points it at a slab. */
  reset(data: Uint8Array): void {
    this.data = data;
    this.count = 0;
  }

  /** Adds an entry and returns its index, or -1 when the batch is full. The caller then writes its AAD at aad[16*index]. */
  push(ivOff: number, textOff: number, textLen: number, aadLen: number): number {
    if (this.count === this.capacity) return -1;
    const i = this.count++;
    const d = i * AEAD_DESC_STRIDE;
    this.desc[d] = ivOff;
    this.desc[d + 1] = textOff;
    this.desc[d + 2] = textLen;
    this.desc[d + 3] = aadLen;
    this.ok[i] = 0;
    return i;
  }
}

/** One SA's keyed AEAD. Not safe to share between threads. */
export interface Aead {
  readonly algorithm: AeadAlgorithm;
  readonly backend: AeadBackendName;
  /**
   * Encrypts data[textOff, textOff+textLen) in place and writes the 16-octet ICV at
   * textOff+textLen. The nonce is salt ‖ data[ivOff, ivOff+8).
   */
  seal(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): void;
  /**
   * Verifies the ICV at textOff+textLen and decrypts data[textOff, textOff+textLen) in
   * place. Returns false if not authentic; the text is then unspecified and must be dropped.
   */
  open(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean;
  /** Seals every entry of the batch. */
  sealBatch(batch: AeadBatch): void;
  /** Opens every entry, sets batch.ok[i], and returns how many were authentic. */
  openBatch(batch: AeadBatch): number;
  /** Zeroes the key material; the object must not be used afterwards. */
  destroy(): void;
}

/** Stable codes of AeadError. */
export type AeadErrorCode =
  | 'ST_AEAD_BAD_ALGORITHM'
  | 'ST_AEAD_BAD_KEYMAT'
  | 'ST_AEAD_BAD_BACKEND'
  | 'ST_AEAD_BACKEND_UNAVAILABLE'
  | 'ST_AEAD_BAD_DESCRIPTOR'
  | 'ST_AEAD_DESTROYED';

/** A control-path error of the crypto layer (bad configuration or a caller bug), with a stable code. */
export class AeadError extends Error {
  constructor(
    readonly code: AeadErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AeadError';
  }
}

/**
 * True if the IV data[ivOff, ivOff+8) and the text plus ICV data[textOff, textOff+textLen+16)
 * lie inside a buffer of dataLen octets (all offsets non-negative integers).
 * seal/sealBatch throw AeadError ST_AEAD_BAD_DESCRIPTOR when this is false; open returns false
 * and openBatch sets ok[i] = 0 for that entry.
 */
export function aeadSpanOk(dataLen: number, ivOff: number, textOff: number, textLen: number): boolean {
  return (
    ivOff >>> 0 === ivOff &&
    textOff >>> 0 === textOff &&
    textLen >>> 0 === textLen &&
    ivOff + AEAD_IV_BYTES <= dataLen &&
    textOff + textLen + AEAD_ICV_BYTES <= dataLen
  );
}
