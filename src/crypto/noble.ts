/**
 * The @noble/ciphers AEAD backend (audited pure JavaScript, no OpenSSL). Slow but
 * independent of OpenSSL, so the differential tests compare two implementations.
 * ChaCha20-Poly1305 seals and opens truly in place through noble's output argument;
 * noble's AES-GCM takes no output buffer, so its result is copied back.
 *
 * AES-GCM per RFC 4106 §§3–4 and ChaCha20-Poly1305 per RFC 7634 §§2–3:
 * nonce = salt (last 4 octets of KEYMAT) ‖ 8-octet IV from the packet, 16-octet ICV.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AEAD_ICV_BYTES, AEAD_IV_BYTES, AEAD_SALT_BYTES, aeadKeyBytes, aeadSpanOk, type Aead, type AeadAlgorithm, type AeadBatch } from './aead.js';
import { badSpanError, destroyedError, openEach, sealEach, type OpenSpan, type SealSpan } from './batch.js';

/** AEAD over @noble/ciphers. Build it through createAead() in index.ts, which checks the KEYMAT length. */
export class NobleAead implements Aead {
  readonly backend = 'noble' as const;
  private readonly chacha: boolean;
  private readonly key: Uint8Array;
  /** salt ‖ IV; the IV half is rewritten per packet (noble reads it when the cipher is built). */
  private readonly nonce = new Uint8Array(AEAD_SALT_BYTES + AEAD_IV_BYTES);
  private destroyed = false;

  constructor(
    readonly algorithm: AeadAlgorithm,
    keymat: Uint8Array,
  ) {
    const keyBytes = aeadKeyBytes(algorithm);
    this.chacha = algorithm === 'chacha20-poly1305';
    this.key = keymat.slice(0, keyBytes);
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
    const text = data.subarray(textOff, textOff + textLen);
    if (this.chacha) {
      chacha20poly1305(this.key, this.nonce, aad).encrypt(text, data.subarray(textOff, textOff + textLen + AEAD_ICV_BYTES));
    } else {
      data.set(gcm(this.key, this.nonce, aad).encrypt(text), textOff);
    }
  };

  /** Verifies the ICV and decrypts in place; false (text untouched) if not authentic or out of bounds. */
  open(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) return false;
    return this.openSpan(data, ivOff, textOff, textLen, aad);
  }

  private readonly openSpan: OpenSpan = (data, ivOff, textOff, textLen, aad) => {
    this.setIv(data, ivOff);
    const sealed = data.subarray(textOff, textOff + textLen + AEAD_ICV_BYTES);
    try {
      // Both noble ciphers verify the tag before they decrypt (it throws on a bad tag).
      if (this.chacha) {
        chacha20poly1305(this.key, this.nonce, aad).decrypt(sealed, data.subarray(textOff, textOff + textLen));
      } else {
        data.set(gcm(this.key, this.nonce, aad).decrypt(sealed), textOff);
      }
      return true;
    } catch {
      return false;
    }
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
