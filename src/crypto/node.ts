/**
 * The node:crypto AEAD backend: one createCipheriv/createDecipheriv per packet
 * (OpenSSL underneath, but a fresh context and key schedule each time, so it
 * costs several µs per packet). It is the fallback when the native addon is
 * absent and the reference the other backends are compared with.
 *
 * AES-GCM per RFC 4106 §§3–4 and ChaCha20-Poly1305 per RFC 7634 §§2–3:
 * nonce = salt (last 4 octets of KEYMAT) ‖ 8-octet IV from the packet, 16-octet ICV.
 * The descriptor checks and errors of batch.ts are re-exported here, where native.ts imports them.
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import { AEAD_ICV_BYTES, AEAD_IV_BYTES, AEAD_SALT_BYTES, aeadKeyBytes, aeadSpanOk, type Aead, type AeadAlgorithm, type AeadBatch } from './aead.js';
import { badSpanError, destroyedError, openEach, sealEach, type OpenSpan, type SealSpan } from './batch.js';

export { assertBatchDescriptors, badSpanError, batchEntryOk, destroyedError } from './batch.js';

type NodeCipherName = CipherGCMTypes | 'chacha20-poly1305';

const NODE_CIPHER: Record<AeadAlgorithm, NodeCipherName> = {
  'aes-gcm-128': 'aes-128-gcm',
  'aes-gcm-192': 'aes-192-gcm',
  'aes-gcm-256': 'aes-256-gcm',
  'chacha20-poly1305': 'chacha20-poly1305',
};

const TAG_OPTIONS = { authTagLength: AEAD_ICV_BYTES };

/** AEAD over node:crypto. Build it through createAead() in index.ts, which checks the KEYMAT length. */
export class NodeAead implements Aead {
  readonly backend = 'node' as const;
  private readonly cipher: NodeCipherName;
  private readonly key: Buffer;
  /** salt ‖ IV; the IV half is rewritten per packet. */
  private readonly nonce = Buffer.alloc(AEAD_SALT_BYTES + AEAD_IV_BYTES);
  private destroyed = false;

  constructor(
    readonly algorithm: AeadAlgorithm,
    keymat: Uint8Array,
  ) {
    const keyBytes = aeadKeyBytes(algorithm);
    this.cipher = NODE_CIPHER[algorithm];
    this.key = Buffer.from(keymat.subarray(0, keyBytes));
    this.nonce.set(keymat.subarray(keyBytes, keyBytes + AEAD_SALT_BYTES), 0);
  }

  private setIv(data: Uint8Array, ivOff: number): void {
    const n = this.nonce;
    for (let i = 0; i < AEAD_IV_BYTES; i++) n[AEAD_SALT_BYTES + i] = data[ivOff + i]!;
  }

  /** Seals data[textOff, textOff+textLen) in place and writes the ICV behind it (RFC 4106 §3, RFC 7634 §2). */
  seal(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) throw badSpanError(data.length, ivOff, textOff, textLen);
    this.sealSpan(data, ivOff, textOff, textLen, aad);
  }

  private readonly sealSpan: SealSpan = (data, ivOff, textOff, textLen, aad) => {
    this.setIv(data, ivOff);
    const c = createCipheriv(this.cipher as CipherGCMTypes, this.key, this.nonce, TAG_OPTIONS);
    c.setAAD(aad);
    const out = c.update(data.subarray(textOff, textOff + textLen));
    const rest = c.final();
    data.set(out, textOff);
    if (rest.length > 0) data.set(rest, textOff + out.length);
    data.set(c.getAuthTag(), textOff + textLen);
  };

  /** Verifies the ICV and decrypts in place; false (text untouched) if not authentic or out of bounds. */
  open(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) return false;
    return this.openSpan(data, ivOff, textOff, textLen, aad);
  }

  private readonly openSpan: OpenSpan = (data, ivOff, textOff, textLen, aad) => {
    this.setIv(data, ivOff);
    const icvOff = textOff + textLen;
    const d = createDecipheriv(this.cipher as CipherGCMTypes, this.key, this.nonce, TAG_OPTIONS);
    d.setAAD(aad);
    d.setAuthTag(data.subarray(icvOff, icvOff + AEAD_ICV_BYTES));
    const out = d.update(data.subarray(textOff, icvOff));
    let rest: Buffer;
    try {
      rest = d.final();
    } catch {
      return false;
    }
    data.set(out, textOff);
    if (rest.length > 0) data.set(rest, textOff + out.length);
    return true;
  };

  /** Seals every entry; throws before sealing anything if a descriptor is out of bounds. */
  sealBatch(batch: AeadBatch): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    sealEach(batch, this.sealSpan);
  }

  /** Opens every entry; an entry that is out of bounds or not authentic gets ok[i] = 0. */
  openBatch(batch: AeadBatch): number {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    return openEach(batch, this.openSpan);
  }

  /** Zeroes the key and salt; later calls throw ST_AEAD_DESTROYED. */
  destroy(): void {
    this.key.fill(0);
    this.nonce.fill(0);
    this.destroyed = true;
  }
}
